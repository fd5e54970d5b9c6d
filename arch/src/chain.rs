//! Chained syscalls: an injected syscall that a thread left alone finishes by going
//! back to its own context.
//!
//! An injected syscall runs from an existing syscall instruction with the tracer's
//! registers. If the tracer dies before it puts the thread's own registers back, the
//! kernel detaches the thread and it runs on from the instruction after the syscall
//! with those registers: whatever code is there, on whatever stack they name. A chained
//! syscall sets the registers so that this code *is* the way home:
//! 1. the syscall instruction is one whose following code ends in a return the
//!    registers steer ([`ReturnPath`], decoded by each backend from the bytes);
//! 2. it returns into an rt_sigreturn trampoline found in the target (glibc's and
//!    musl's `__restore_rt`, Go's `sigreturn`, a vDSO's);
//! 3. with the stack pointer on an rt_sigreturn frame of the thread's own registers and
//!    signal mask ([`crate::Abi::sigreturn_frame`]), written on its stack below the
//!    stack pointer and the red zone, memory the interrupted code does not own (a
//!    signal handler's frame goes there too).
//!
//! So from the moment the registers are written, a thread that is let go (its tracer
//! gone) runs the syscall and returns home by rt_sigreturn; and a live tracer steps it
//! through the same path, which tests it on every injected syscall.

use crate::SigreturnFrame;

/// How the code after a syscall instruction returns, as a backend decoded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnPath {
    /// Through a word on the stack (x86_64's `ret`), with the stack pointer and the
    /// frame pointer both at the same address `B` when the syscall runs: the code reads
    /// its return address at `B + ret_offset`, reads nothing below `B + lowest_offset`,
    /// and leaves the stack pointer one word above the return address.
    Stack { ret_offset: i64, lowest_offset: i64 },
    /// Through the link register as it is (aarch64's `ret` to x30).
    LinkRegister,
}

impl ReturnPath {
    /// Bytes below the frame's address that the path reads: the frame's first word is
    /// the return address (x86_64's `pretcode`), and these must be mapped.
    pub fn below_frame(&self) -> u64 {
        match *self {
            ReturnPath::Stack { ret_offset, lowest_offset } => (ret_offset - lowest_offset).max(0) as u64,
            ReturnPath::LinkRegister => 0,
        }
    }
}

/// The registers and the stack memory of a chained syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chained<R> {
    /// The registers that run the syscall (written before the thread runs).
    pub regs: R,
    /// Where to write what, before the registers: the frame and the words the path
    /// reads below it (zero), one run, in the target's byte order.
    pub address: u64,
    pub bytes: Vec<u8>,
}

/// Where the syscall instruction and the trampoline are in the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPoints {
    /// The syscall instruction whose following code returns along `path`.
    pub syscall_ip: u64,
    pub path: ReturnPath,
    /// The first byte of an rt_sigreturn trampoline.
    pub trampoline: u64,
}

/// The stack address for a chained syscall's frame of `frame_len` bytes, for a thread
/// whose stack pointer is `sp`: below the red zone, aligned to `align`.
pub fn frame_address(sp: u64, red_zone: u64, frame_len: u64, align: u64) -> Option<u64> {
    let top = sp.checked_sub(red_zone)?.checked_sub(frame_len)?;
    Some(top & !(align - 1))
}

/// The run of stack memory a chained syscall writes: the words the path reads below
/// the frame, as zeros, then `frame`'s bytes with `first_word` (the return address the
/// path reads, in the target's byte order) over its first word.
pub(crate) fn stack_run(frame: &SigreturnFrame, frame_address: u64, below: u64, first_word: [u8; 8]) -> (u64, Vec<u8>) {
    let mut bytes = vec![0u8; below as usize];
    let mut frame_bytes = frame.bytes.clone();
    frame_bytes[..8].copy_from_slice(&first_word);
    bytes.extend_from_slice(&frame_bytes);
    (frame_address - below, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_sit_below_the_red_zone_aligned() {
        assert_eq!(frame_address(0x7fff_1008, 128, 0x300, 64), Some(0x7fff_0c80));
        assert_eq!(frame_address(0x7fff_1000, 0, 0x40, 64), Some(0x7fff_0fc0));
        assert_eq!(frame_address(0x10, 128, 0x40, 64), None);
    }

    #[test]
    fn the_run_puts_the_return_address_over_the_frames_first_word() {
        let frame = SigreturnFrame { bytes: vec![0xaa; 32], sp: 0x1008 };
        let (address, bytes) = stack_run(&frame, 0x1000, 8, 0x4242u64.to_le_bytes());
        assert_eq!(address, 0xff8);
        assert_eq!(&bytes[..8], &[0; 8]);
        assert_eq!(&bytes[8..16], &0x4242u64.to_le_bytes());
        assert_eq!(&bytes[16..], &[0xaa; 24]);
    }
}
