//! aarch64's chained syscalls ([`crate::chain`]).
//!
//! The vDSO has an rt_sigreturn trampoline (`__kernel_rt_sigreturn`: `mov x8, #139;
//! svc #0`), but its syscall fallbacks end in `autiasp; ret` (Debian's 6.1 arm64 vDSO):
//! the return address must be signed with the thread's pointer-authentication key, so
//! no vDSO `svc` can return into the trampoline. glibc's `syscall()` is assembly
//! without pointer authentication: `svc #0; cmn x0, #0xfff; b.cs <error>; ret`, a
//! return through the link register as it is. So the syscall runs from there with x30
//! on the trampoline and sp on the frame (rt_sigreturn reads it at sp). An injected
//! call that fails takes glibc's error path first, which sets errno and returns
//! through x30 the same way.

use super::Regs;
use crate::chain::{ChainPoints, Chained, ReturnPath};
use crate::SigreturnFrame;

/// `mov x8, #139; svc #0` (the vDSO's `__kernel_rt_sigreturn`).
pub(super) const TRAMPOLINES: &[&[u8]] = &[&[0x68, 0x11, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4]];

const RET: u32 = 0xd65f_03c0;
const CMN_X0_FFF: u32 = 0xb13f_fc1f;

fn word(code: &[u8], index: usize) -> Option<u32> {
    Some(u32::from_le_bytes(code.get(index * 4..index * 4 + 4)?.try_into().ok()?))
}

/// `ret` right after the `svc`, or glibc's `cmn x0, #0xfff; b.cs <error>; ret`.
pub(super) fn return_path(code: &[u8]) -> Option<ReturnPath> {
    match word(code, 0)? {
        RET => Some(ReturnPath::LinkRegister),
        CMN_X0_FFF => {
            // b.cond: 0101 0100 imm19 0 cond; cond 2 is cs (hs).
            let branch = word(code, 1)?;
            (branch & 0xff00_001f == 0x5400_0002 && word(code, 2)? == RET).then_some(ReturnPath::LinkRegister)
        }
        _ => None,
    }
}

/// The registers of a chained syscall: x30 on the trampoline, sp on the frame.
pub(super) fn chained_syscall(saved: &Regs, points: &ChainPoints, nr: u64, args: [u64; 6], frame: &SigreturnFrame, frame_address: u64) -> Option<Chained<Regs>> {
    if points.path != ReturnPath::LinkRegister || frame.sp != frame_address || frame_address % 16 != 0 {
        return None;
    }
    let mut regs = <super::Aarch64 as crate::Abi>::syscall_regs(saved, points.syscall_ip, nr, args);
    regs.x[30] = points.trampoline;
    regs.sp = frame.sp;
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
        // svc #0 is before: cmn x0, #0xfff; b.cs +0x8; ret.
        assert_eq!(return_path(&bytes(&[CMN_X0_FFF, 0x5400_0042, RET])), Some(ReturnPath::LinkRegister));
        assert_eq!(return_path(&bytes(&[RET])), Some(ReturnPath::LinkRegister));
    }

    #[test]
    fn the_vdsos_signed_returns_are_not_followed() {
        // Debian 6.1's __kernel_clock_gettime fallback: svc #0; autiasp; ret.
        assert_eq!(return_path(&bytes(&[0xd503_23bf, RET])), None);
        // __kernel_gettimeofday's: svc #0; b <back into the function>.
        assert_eq!(return_path(&bytes(&[0x17ff_ffeb])), None);
        // b.eq instead of b.cs.
        assert_eq!(return_path(&bytes(&[CMN_X0_FFF, 0x5400_0040, RET])), None);
    }

    #[test]
    fn a_chained_syscall_returns_into_the_trampoline_on_the_frame() {
        let saved = Regs { sp: 0x7fff_2000, pc: 0x40_0000, x: [7; 31], pstate: 0x6000_0000 };
        let points = ChainPoints { syscall_ip: 0x7f00_1234, path: ReturnPath::LinkRegister, trampoline: 0x7f10_07bc };
        let frame = SigreturnFrame { bytes: vec![0x22; 64], sp: 0x7fff_1000 };
        let chained = chained_syscall(&saved, &points, 222, [0, 0x1000, 7, 0x22, u64::MAX, 0], &frame, 0x7fff_1000).expect("chains");
        assert_eq!((chained.regs.pc, chained.regs.x[8], chained.regs.x[30], chained.regs.sp), (0x7f00_1234, 222, 0x7f10_07bc, 0x7fff_1000));
        assert_eq!(chained.regs.x[..6], [0, 0x1000, 7, 0x22, u64::MAX, 0]);
        assert_eq!((chained.address, chained.bytes.len()), (0x7fff_1000, 64));
        assert_eq!(chained_syscall(&saved, &points, 222, [0; 6], &SigreturnFrame { bytes: vec![0; 64], sp: 0x7fff_1008 }, 0x7fff_1008), None);
    }
}
