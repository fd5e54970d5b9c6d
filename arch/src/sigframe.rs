//! rt_sigreturn frames: the bytes that, with the stack pointer where the kernel looks
//! for them, make `rt_sigreturn` put a thread back into a given register state and
//! signal mask. Each backend lays out its kernel's `struct rt_sigframe` in
//! `<arch>/sigframe.rs`; this module holds what they share.
//!
//! The frame is how a parasite hands a thread back to itself without its tracer: the
//! last op of its program ([`RestorerOp::SIGRETURN`](crate::RestorerOp::SIGRETURN))
//! points the stack pointer at the frame and runs rt_sigreturn.
//!
//! What every backend's frame shares:
//! - the registers must be the ones the thread resumes with: rt_sigreturn clears the
//!   "in a syscall" state (x86 orig_ax, ppc64 trap, s390x system_call, arm64
//!   syscallno) and resets the restart block, so a thread stopped inside an
//!   interrupted syscall needs [`Abi::resume_regs`]`(regs, false)` first;
//! - `uc_stack` is all zero: rt_sigreturn hands it to sigaltstack, which then either
//!   finds it equal to the thread's own (no alternate stack) or refuses it as too
//!   small, so the thread's alternate stack is left as it was;
//! - `siginfo` and `uc_link` are zero (rt_sigreturn reads neither, except ppc64's
//!   uc_link for a transaction, which the ppc64 frame refuses).
//!
//! [`Abi::resume_regs`]: crate::Abi::resume_regs

/// An rt_sigreturn frame built for one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigreturnFrame {
    /// What to write at the address the frame was built for, in the target's byte
    /// order. Pointers inside the frame (x86's fpstate, ppc64's v_regs) point into it.
    pub bytes: Vec<u8>,
    /// The stack pointer the thread must hold when it runs rt_sigreturn (the
    /// [`RestorerOp::SIGRETURN`](crate::RestorerOp::SIGRETURN) op's `args[0]`).
    pub sp: u64,
}

/// Why a sigreturn frame could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigframeError {
    /// The frame's address is not aligned as the kernel requires.
    #[error("sigreturn frame at {address:#x}: not {align}-byte aligned")]
    Misaligned { address: u64, align: u64 },
    /// The extended register state is shorter than its layout says.
    #[error("sigreturn frame: extended register state is {len} bytes, the frame needs {need}")]
    ExtTooShort { len: usize, need: usize },
    /// An XSAVE component whose place in the area is unknown.
    #[error("sigreturn frame: XSAVE feature {bit} is in use but its place in the area is unknown")]
    UnknownXsaveComponent { bit: u32 },
    /// State that rt_sigreturn cannot put back (and the frame would silently drop).
    #[error("sigreturn frame: {what} cannot be put back by rt_sigreturn")]
    Unrestorable { what: &'static str },
}

/// A zeroed frame written field by field in one byte order.
pub(crate) struct FrameBytes {
    bytes: Vec<u8>,
    big_endian: bool,
}

impl FrameBytes {
    /// `len` zero bytes, written little endian.
    pub(crate) fn little_endian(len: usize) -> Self {
        FrameBytes { bytes: vec![0; len], big_endian: false }
    }

    /// `len` zero bytes, written big endian.
    pub(crate) fn big_endian(len: usize) -> Self {
        FrameBytes { bytes: vec![0; len], big_endian: true }
    }

    /// Copies `value` to `offset`. The frame's layout is fixed and every caller writes
    /// inside it, so an out-of-range write is a layout bug.
    pub(crate) fn put(&mut self, offset: usize, value: &[u8]) {
        self.bytes[offset..offset + value.len()].copy_from_slice(value);
    }

    pub(crate) fn put_u64(&mut self, offset: usize, value: u64) {
        let bytes = if self.big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        self.put(offset, &bytes);
    }

    pub(crate) fn put_u32(&mut self, offset: usize, value: u32) {
        let bytes = if self.big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        self.put(offset, &bytes);
    }

    pub(crate) fn put_u16(&mut self, offset: usize, value: u16) {
        let bytes = if self.big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        self.put(offset, &bytes);
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Fails unless `address` is a multiple of `align`.
pub(crate) fn check_aligned(address: u64, align: u64) -> Result<(), SigframeError> {
    match address % align {
        0 => Ok(()),
        _ => Err(SigframeError::Misaligned { address, align }),
    }
}

/// Fails unless `ext` holds at least `need` bytes.
pub(crate) fn check_ext_len(ext: &[u8], need: usize) -> Result<(), SigframeError> {
    match ext.len() >= need {
        true => Ok(()),
        false => Err(SigframeError::ExtTooShort { len: ext.len(), need }),
    }
}

/// The name of the first word that differs between `expected` and `found` (same
/// length as `names`), for the backends' `mismatch`.
pub(crate) fn first_differing_word(names: &[&str], expected: &[u64], found: &[u64]) -> Option<String> {
    names
        .iter()
        .zip(expected.iter().zip(found))
        .find(|(_, (e, f))| e != f)
        .map(|(name, (e, f))| format!("{name} ({f:#x}, not {e:#x})"))
}

/// The first byte offset in `range` where `expected` and `found` differ (or where one
/// of them ends), named `what` and the offset.
pub(crate) fn first_differing_byte(what: &str, expected: &[u8], found: &[u8], range: std::ops::Range<usize>) -> Option<String> {
    let end = range.end;
    for offset in range {
        if expected.get(offset) != found.get(offset) {
            return Some(format!("{what} byte {offset} of {end}"));
        }
    }
    None
}
