//! Builds the restorer's op program: a list of syscalls with checks, plus a data arena
//! for the structs they point at, laid out for a fixed load address.

use crust_arch::{Abi, HostArch, RestorerOp, Sys};

/// A restorer program under construction, for an area loaded at `base`.
pub struct Program {
    /// Address the data arena will have.
    data_base: u64,
    /// The arena's bytes.
    pub data: Vec<u8>,
    /// The ops, in order.
    pub ops: Vec<RestorerOp>,
    /// What each op does, for error messages.
    pub descriptions: Vec<String>,
}

impl Program {
    /// A new program whose data arena starts at `data_base`.
    pub fn new(data_base: u64) -> Self {
        Program { data_base, data: Vec::new(), ops: Vec::new(), descriptions: Vec::new() }
    }

    /// Puts `bytes` in the arena (16-byte aligned) and returns their future address.
    pub fn data(&mut self, bytes: &[u8]) -> u64 {
        while !self.data.len().is_multiple_of(16) {
            self.data.push(0);
        }
        let address = self.data_base + self.data.len() as u64;
        self.data.extend_from_slice(bytes);
        address
    }

    /// Puts u64 words in the arena and returns their address.
    pub fn words(&mut self, words: &[u64]) -> u64 {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        self.data(&bytes)
    }

    /// Appends a syscall op.
    pub fn call(&mut self, call: Sys, args: [u64; 6], check: u64, expect: u64, description: String) {
        let nr = HostArch::syscall_number(call).expect("restorer syscalls exist on the host");
        self.raw(RestorerOp { nr, args, check, expect, result: 0 }, description);
    }

    /// Appends a ready-made op.
    pub fn raw(&mut self, op: RestorerOp, description: String) {
        log::debug!("restorer op {}: {description}: nr {} args {:x?}", self.ops.len(), op.nr, op.args);
        self.ops.push(op);
        self.descriptions.push(description);
    }

    /// Ends the program and returns the ops as bytes.
    pub fn finish_ops(&mut self) -> Vec<u8> {
        self.raw(RestorerOp { nr: RestorerOp::END, ..Default::default() }, "end".into());
        self.ops.iter().flat_map(|op| op.to_ne_bytes()).collect()
    }
}
