//! ppc64le's chained syscalls ([`crate::chain`]).
//!
//! The vDSO's `__kernel_sigtramp_rt64` ends in `li r0, 172; sc` (rt_sigreturn), entered
//! there with r1 on the ucontext (the vDSO's own `addi r1, r1, __SIGNAL_FRAMESIZE`
//! comes just before it): the trampoline, with r1 on the frame. glibc's `syscall()`
//! keeps an `sc` for kernels without `scv`: `sc; bnslr+; b __syscall_error`, a return
//! through the link register as it is (so does a bare `sc; blr`). The syscall runs
//! from there with lr on the trampoline and r1 on the frame. An injected call that
//! fails takes glibc's error path first (`__syscall_error`, which sets errno and
//! returns through lr), with the thread's own r2: where that is not libc's TOC the
//! path writes errno through a wrong TOC, so a call that can fail is only chained
//! when crust lives through it (mmap and munmap of a fresh area do not fail).

use super::Regs;
use crate::chain::{ChainPoints, Chained, ReturnPath};
use crate::SigreturnFrame;

/// `li r0, 172; sc`, little endian.
pub(super) const TRAMPOLINES: &[&[u8]] = &[&[0xac, 0x00, 0x00, 0x38, 0x02, 0x00, 0x00, 0x44]];

/// `blr`.
const BLR: u32 = 0x4e80_0020;

fn word(code: &[u8], index: usize) -> Option<u32> {
    Some(u32::from_le_bytes(code.get(index * 4..index * 4 + 4)?.try_into().ok()?))
}

/// `bnslr` with any prediction hint: `bclr` (opcode 19, XO 16, no LK) with BO `001at`
/// (branch if the condition bit is clear) on BI 3 (CR0's summary overflow, which `sc`
/// sets on an error).
fn is_bnslr(insn: u32) -> bool {
    let bo = (insn >> 21) & 0x1f;
    insn & 0xfc1f_ffff == 0x4c03_0020 && bo & 0b11100 == 0b00100
}

/// `blr` right after the `sc`, or glibc's `bnslr`.
pub(super) fn return_path(code: &[u8]) -> Option<ReturnPath> {
    let first = word(code, 0)?;
    (first == BLR || is_bnslr(first)).then_some(ReturnPath::LinkRegister)
}

/// The registers of a chained syscall: lr on the trampoline, r1 on the frame.
pub(super) fn chained_syscall(saved: &Regs, points: &ChainPoints, nr: u64, args: [u64; 6], frame: &SigreturnFrame, frame_address: u64) -> Option<Chained<Regs>> {
    if points.path != ReturnPath::LinkRegister || frame.sp != frame_address || frame_address % 16 != 0 {
        return None;
    }
    let mut regs = <super::Ppc64le as crate::Abi>::syscall_regs(saved, points.syscall_ip, nr, args);
    regs.link = points.trampoline;
    regs.gpr[1] = frame.sp;
    Some(Chained { regs, address: frame_address, bytes: frame.bytes.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn glibcs_syscall_returns_through_the_link_register() {
        // glibc 2.36's syscall(): sc; bnslr+; b __syscall_error.
        assert_eq!(return_path(&bytes(&[0x4ce3_0020, 0x4bed_a730])), Some(ReturnPath::LinkRegister));
        // bnslr without a hint, and a bare blr.
        assert_eq!(return_path(&bytes(&[0x4c83_0020])), Some(ReturnPath::LinkRegister));
        assert_eq!(return_path(&bytes(&[BLR])), Some(ReturnPath::LinkRegister));
    }

    #[test]
    fn other_code_after_sc_is_not_followed() {
        // The vDSO's fallbacks: sc; bns+ 1f; neg r3, r3.
        assert_eq!(return_path(&bytes(&[0x40e3_0008, 0x7c63_00d0])), None);
        // bltlr+ (scv's error check), bnslrl (links), bsolr (the other way round).
        assert_eq!(return_path(&bytes(&[0x4de0_0020])), None);
        assert_eq!(return_path(&bytes(&[0x4c83_0021])), None);
        assert_eq!(return_path(&bytes(&[0x4d83_0020])), None);
        assert_eq!(return_path(&[0x20, 0x00]), None);
    }

    #[test]
    fn the_trampoline_is_the_vdsos_rt_sigreturn() {
        assert_eq!(TRAMPOLINES[0][..4], (0x3800_0000u32 | super::super::NR_RT_SIGRETURN as u32).to_le_bytes());
        assert_eq!(TRAMPOLINES[0][4..], super::super::SC);
    }

    #[test]
    fn a_chained_syscall_returns_into_the_trampoline_on_the_frame() {
        let saved = Regs { gpr: [7; 32], nip: 0x1000_0400, link: 0x1000_0200, trap: 0xc00, ..Regs::default() };
        let points = ChainPoints { syscall_ip: 0x7fff_b7e2_a430, path: ReturnPath::LinkRegister, trampoline: 0x7fff_b7ff_0438 };
        let frame = SigreturnFrame { bytes: vec![0x22; 64], sp: 0x7fff_f000 };
        let chained = chained_syscall(&saved, &points, 90, [0, 0x1000, 7, 0x22, u64::MAX, 0], &frame, 0x7fff_f000).expect("chains");
        assert_eq!((chained.regs.nip, chained.regs.gpr[0], chained.regs.link, chained.regs.gpr[1]), (0x7fff_b7e2_a430, 90, 0x7fff_b7ff_0438, 0x7fff_f000));
        assert_eq!(chained.regs.gpr[3..9], [0, 0x1000, 7, 0x22, u64::MAX, 0]);
        assert_eq!((chained.regs.trap, chained.regs.gpr[2], chained.regs.gpr[13]), (0, 7, 7));
        assert_eq!((chained.address, chained.bytes.len()), (0x7fff_f000, 64));
        assert_eq!(chained_syscall(&saved, &points, 90, [0; 6], &SigreturnFrame { bytes: vec![0; 64], sp: 0x7fff_f008 }, 0x7fff_f008), None);
    }
}
