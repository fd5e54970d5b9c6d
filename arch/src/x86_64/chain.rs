//! x86_64's chained syscalls ([`crate::chain`]): the epilogues that follow the vDSO's
//! syscall instructions, decoded, and the rt_sigreturn trampolines of the C libraries
//! and Go.
//!
//! The x86_64 vDSO has no rt_sigreturn of its own (signal frames return through the
//! libc's `sa_restorer`), so the trampoline comes from the target's libc (or Go
//! runtime); the vDSO's syscall fallbacks end in an ordinary function epilogue (`leave;
//! ret`, or `lea -N(%rbp),%rsp; pop ...; ret`, with the call-used registers zeroed
//! between), which returns through the stack. With the stack and frame pointers both
//! at `B`, the epilogue reads its return address at `B + ret_offset`: the frame's
//! `pretcode` word goes there, holding the trampoline's address, and after the `ret`
//! the stack pointer is `frame + 8`, where rt_sigreturn looks for the frame (`sp - 8`).

use super::Regs;
use crate::chain::{self, ChainPoints, Chained, ReturnPath};
use crate::SigreturnFrame;

/// `mov $15, %rax; syscall` (glibc's and musl's `__restore_rt`, Go's
/// `runtime.sigreturn__sigaction`), and `mov $15, %eax; syscall`.
pub(super) const TRAMPOLINES: &[&[u8]] = &[&[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05], &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]];

/// The longest epilogue followed, in instructions.
const MAX_INSNS: usize = 32;

/// Follows the code after a syscall instruction, tracking the stack pointer and the
/// frame pointer as offsets from `B` (both start there), until its `ret`. Only
/// instructions that move the stack, pop, zero a register or do nothing are known; any
/// other instruction, a use of the frame pointer after it was reloaded, or a write of
/// the stack pointer from elsewhere gives `None`.
pub(super) fn return_path(code: &[u8]) -> Option<ReturnPath> {
    let mut at = 0usize;
    let mut rsp: i64 = 0;
    let mut rbp: Option<i64> = Some(0);
    let mut lowest: i64 = 0;
    let byte = |i: usize| code.get(i).copied();
    for _ in 0..MAX_INSNS {
        let op = byte(at)?;
        match op {
            // ret
            0xc3 => {
                lowest = lowest.min(rsp);
                return Some(ReturnPath::Stack { ret_offset: rsp, lowest_offset: lowest });
            }
            // rep ret
            0xf3 if byte(at + 1)? == 0xc3 => {
                lowest = lowest.min(rsp);
                return Some(ReturnPath::Stack { ret_offset: rsp, lowest_offset: lowest });
            }
            // endbr64
            0xf3 if code.get(at..at + 4)? == [0xf3, 0x0f, 0x1e, 0xfa] => at += 4,
            // nop
            0x90 => at += 1,
            // leave: mov %rbp,%rsp; pop %rbp
            0xc9 => {
                rsp = rbp?;
                lowest = lowest.min(rsp);
                rsp += 8;
                rbp = None;
                at += 1;
            }
            // pop %rbp
            0x5d => {
                lowest = lowest.min(rsp);
                rsp += 8;
                rbp = None;
                at += 1;
            }
            // pop %rsp
            0x5c => return None,
            // pop of another register
            0x58..=0x5f => {
                lowest = lowest.min(rsp);
                rsp += 8;
                at += 1;
            }
            // pop %r8..%r15 (41 58+r)
            0x41 if (0x58..=0x5f).contains(&byte(at + 1)?) => {
                lowest = lowest.min(rsp);
                rsp += 8;
                at += 2;
            }
            // xor r32, r32 (31 /r, 33 /r), with a REX.R/B/W prefix or without
            0x40..=0x4f if matches!(byte(at + 1)?, 0x31 | 0x33) => {
                let modrm = byte(at + 2)?;
                zeroed_register(op, modrm, &mut rbp)?;
                at += 3;
            }
            0x31 | 0x33 => {
                let modrm = byte(at + 1)?;
                zeroed_register(0x40, modrm, &mut rbp)?;
                at += 2;
            }
            0x48 => {
                let (next, modrm) = (byte(at + 1)?, byte(at + 2)?);
                match (next, modrm) {
                    // lea disp8(%rbp),%rsp
                    (0x8d, 0x65) => {
                        rsp = rbp? + i64::from(byte(at + 3)? as i8);
                        at += 4;
                    }
                    // lea disp32(%rbp),%rsp
                    (0x8d, 0xa5) => {
                        rsp = rbp? + i64::from(i32::from_le_bytes(code.get(at + 3..at + 7)?.try_into().ok()?));
                        at += 7;
                    }
                    // mov %rbp,%rsp
                    (0x89, 0xec) | (0x8b, 0xe5) => {
                        rsp = rbp?;
                        at += 3;
                    }
                    // add $imm8,%rsp
                    (0x83, 0xc4) => {
                        rsp += i64::from(byte(at + 3)? as i8);
                        at += 4;
                    }
                    // add $imm32,%rsp
                    (0x81, 0xc4) => {
                        rsp += i64::from(i32::from_le_bytes(code.get(at + 3..at + 7)?.try_into().ok()?));
                        at += 7;
                    }
                    _ => {
                        let modrm = byte(at + 2)?;
                        if matches!(next, 0x31 | 0x33) {
                            zeroed_register(op, modrm, &mut rbp)?;
                            at += 3;
                        } else {
                            return None;
                        }
                    }
                }
            }
            _ => return None,
        }
    }
    None
}

/// `xor reg, reg` with REX prefix `rex` (0x40: none): only a register with itself (a
/// zeroing), never the stack pointer; zeroing the frame pointer forgets it.
fn zeroed_register(rex: u8, modrm: u8, rbp: &mut Option<i64>) -> Option<()> {
    if modrm >> 6 != 3 {
        return None;
    }
    let reg = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
    let rm = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
    if reg != rm || reg == 4 {
        return None;
    }
    if reg == 5 {
        *rbp = None;
    }
    Some(())
}

/// The registers and stack run of a chained syscall (see the module doc).
pub(super) fn chained_syscall(saved: &Regs, points: &ChainPoints, nr: u64, args: [u64; 6], frame: &SigreturnFrame, frame_address: u64) -> Option<Chained<Regs>> {
    let ReturnPath::Stack { ret_offset, .. } = points.path else { return None };
    if frame.bytes.len() < 8 || frame.sp != frame_address + 8 {
        return None;
    }
    let base = frame_address.checked_add_signed(-ret_offset)?;
    let (address, bytes) = chain::stack_run(frame, frame_address, points.path.below_frame(), points.trampoline.to_le_bytes());
    let regs = Regs { sp: base, bp: base, ..<super::X86_64 as crate::Abi>::syscall_regs(saved, points.syscall_ip, nr, args) };
    Some(Chained { regs, address, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code after the first syscall of Linux 6.18's x86_64 vDSO
    /// (`__vdso_gettimeofday`'s fallback): leave, the call-used registers zeroed, ret.
    const LEAVE_ZERO_RET: &[u8] = &[
        0xc9, 0x31, 0xd2, 0x31, 0xc9, 0x31, 0xf6, 0x31, 0xff, 0x45, 0x31, 0xc0, 0x45, 0x31, 0xc9, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xdb,
        0xc3, 0x48, 0x0f, 0xba,
    ];
    /// `__vdso_clock_gettime`'s: lea -0x10(%rbp),%rsp; pop %rbx; pop %r14; pop %rbp; ret.
    const LEA_POPS_RET: &[u8] = &[0x48, 0x8d, 0x65, 0xf0, 0x5b, 0x41, 0x5e, 0x5d, 0xc3];

    #[test]
    fn the_vdso_epilogues_return_through_the_stack() {
        assert_eq!(return_path(LEAVE_ZERO_RET), Some(ReturnPath::Stack { ret_offset: 8, lowest_offset: 0 }));
        assert_eq!(return_path(LEA_POPS_RET), Some(ReturnPath::Stack { ret_offset: 8, lowest_offset: -16 }));
        assert_eq!(return_path(&[0xc3]), Some(ReturnPath::Stack { ret_offset: 0, lowest_offset: 0 }));
        assert_eq!(return_path(&[0x48, 0x83, 0xc4, 0x30, 0x5b, 0x41, 0x5c, 0xc3]), Some(ReturnPath::Stack { ret_offset: 0x40, lowest_offset: 0 }));
    }

    #[test]
    fn other_code_is_not_followed() {
        // xor %edi,%esi (not a zeroing), a call, a jump, pop %rsp, a store.
        for code in [&[0x31, 0xfe, 0xc3][..], &[0xe8, 0, 0, 0, 0], &[0xeb, 0x00, 0xc3], &[0x5c, 0xc3], &[0x48, 0x89, 0x07, 0xc3], &[0x48, 0x31, 0xe4, 0xc3]] {
            assert_eq!(return_path(code), None, "{code:x?}");
        }
        // The frame pointer after it was popped; code that ends before its ret.
        assert_eq!(return_path(&[0x5d, 0xc9, 0xc3]), None);
        assert_eq!(return_path(&LEAVE_ZERO_RET[..10]), None);
    }

    #[test]
    fn a_chained_syscall_returns_through_the_frames_pretcode() {
        let saved = Regs { cs: 0x33, ss: 0x2b, sp: 0x7fff_2000, bp: 0x7fff_2100, ..Default::default() };
        let points = ChainPoints { syscall_ip: 0x7000_0947, path: ReturnPath::Stack { ret_offset: 8, lowest_offset: -16 }, trampoline: 0x7100_0050 };
        let frame = SigreturnFrame { bytes: vec![0x11; 64], sp: 0x7fff_1000 + 8 };
        let chained = chained_syscall(&saved, &points, 9, [0, 0x1000, 7, 0x22, u64::MAX, 0], &frame, 0x7fff_1000).expect("chains");
        // B = frame - 8: leave's pop reads B, ret reads B + 8 = the frame's pretcode.
        assert_eq!((chained.regs.sp, chained.regs.bp, chained.regs.ip, chained.regs.ax), (0x7fff_0ff8, 0x7fff_0ff8, 0x7000_0947, 9));
        assert_eq!((chained.regs.di, chained.regs.si, chained.regs.dx, chained.regs.r10), (0, 0x1000, 7, 0x22));
        assert_eq!(chained.address, 0x7fff_1000 - 24);
        assert_eq!(&chained.bytes[..24], &[0; 24]);
        assert_eq!(&chained.bytes[24..32], &0x7100_0050u64.to_le_bytes());
        assert_eq!(&chained.bytes[32..], &[0x11; 56]);
        // A frame whose stack pointer is not the one the path leaves is refused.
        assert_eq!(chained_syscall(&saved, &points, 9, [0; 6], &SigreturnFrame { bytes: vec![0; 64], sp: 0x7fff_1000 }, 0x7fff_1000), None);
    }
}
