//! s390x's chained syscalls ([`crate::chain`]).
//!
//! The vDSO has an rt_sigreturn trampoline (`__kernel_rt_sigreturn`: `svc 173`, which
//! the kernel's signal delivery returns through), reading the frame at r15. glibc's
//! `syscall()` runs `svc 0` (number in r1) and goes on with `lmg %r6,%r7,48(%r15);
//! lghi %r0,-4095; clgr %r2,%r0; jgnl <error>; br %r14`, and its assembly wrappers of
//! syscalls numbered from 256 with `lghi %r4,-4095; clgr %r2,%r4; jgnl <error>; br
//! %r14`: a return through r14 as it is, whose only memory read is two words at r15 +
//! 48, inside the frame's 160-byte callee area. So the syscall runs from there with r14
//! on the trampoline and r15 on the frame. An injected call that fails takes glibc's
//! error path first (errno stored through the thread pointer in a0/a1, then `br %r14`).
//!
//! mmap takes a pointer to its arguments ([`crate::Abi::MMAP_ARGS_IN_MEMORY`]): a
//! chained mmap writes the block just below the frame, in the same run, and points r2
//! at it; after the call nothing reads it again (a thread let go leaves it below its
//! stack pointer, where its next signal frame goes).

use super::Regs;
use crate::chain::{ChainPoints, Chained, ReturnPath};
use crate::SigreturnFrame;

/// `svc 173` (rt_sigreturn by its number in the instruction).
pub(super) const TRAMPOLINES: &[&[u8]] = &[&[0x0a, super::NR_RT_SIGRETURN as u8]];

const LMG_R6_R7_48_R15: [u8; 6] = [0xeb, 0x67, 0xf0, 0x30, 0x00, 0x04];
const BR_R14: [u8; 2] = [0x07, 0xfe];

/// After the `svc 0`: glibc's error check (optionally after reloading r6 and r7 from
/// the stack) ending in `br %r14`, or a bare `br %r14`.
pub(super) fn return_path(code: &[u8]) -> Option<ReturnPath> {
    if code.starts_with(&BR_R14) {
        return Some(ReturnPath::LinkRegister);
    }
    let code = code.strip_prefix(&LMG_R6_R7_48_R15[..]).unwrap_or(code);
    // lghi %rX,-4095: a7 X9 f0 01, X neither r2 (the result) nor r14/r15.
    let [0xa7, lghi, 0xf0, 0x01, 0xb9, 0x21, 0x00, clgr, 0xc0, 0xb4, _, _, _, _, 0x07, 0xfe, ..] = *code else {
        return None;
    };
    let scratch = lghi >> 4;
    (lghi & 0x0f == 0x09 && !matches!(scratch, 2 | 14 | 15) && clgr == 0x20 | scratch).then_some(ReturnPath::LinkRegister)
}

/// The registers of a chained syscall: r14 on the trampoline, r15 on the frame; for
/// mmap, r2 on its argument block just below the frame.
pub(super) fn chained_syscall(saved: &Regs, points: &ChainPoints, nr: u64, args: [u64; 6], frame: &SigreturnFrame, frame_address: u64) -> Option<Chained<Regs>> {
    use crate::Abi;
    if points.path != ReturnPath::LinkRegister || frame.sp != frame_address || frame_address % 8 != 0 {
        return None;
    }
    let mmap = super::S390x::syscall_number(crate::Sys::Mmap) == Some(nr);
    let (address, mut bytes, args) = if mmap {
        let block = super::S390x::mmap_arg_block(args);
        let address = frame_address.checked_sub(block.len() as u64)?;
        (address, block, [address, 0, 0, 0, 0, 0])
    } else {
        (frame_address, Vec::new(), args)
    };
    bytes.extend_from_slice(&frame.bytes);
    let mut regs = super::S390x::syscall_regs(saved, points.syscall_ip, nr, args);
    regs.gprs[14] = points.trampoline;
    regs.gprs[15] = frame.sp;
    Some(Chained { regs, address, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Abi;

    #[test]
    fn glibcs_syscall_and_wrappers_return_through_r14() {
        // glibc 2.36's syscall(), after svc 0.
        let syscall = [&LMG_R6_R7_48_R15[..], &[0xa7, 0x09, 0xf0, 0x01, 0xb9, 0x21, 0x00, 0x20, 0xc0, 0xb4, 0, 0, 0, 4, 0x07, 0xfe]].concat();
        assert_eq!(return_path(&syscall), Some(ReturnPath::LinkRegister));
        // Its dup3 wrapper (number 326): lghi %r4,-4095; clgr %r2,%r4; jgnl; br %r14.
        let wrapper = [0xa7, 0x49, 0xf0, 0x01, 0xb9, 0x21, 0x00, 0x24, 0xc0, 0xb4, 0, 0, 0, 4, 0x07, 0xfe, 0x13, 0x02];
        assert_eq!(return_path(&wrapper), Some(ReturnPath::LinkRegister));
        assert_eq!(return_path(&BR_R14), Some(ReturnPath::LinkRegister));
    }

    #[test]
    fn other_code_after_svc_is_not_followed() {
        // clgr against another register than the one loaded.
        assert_eq!(return_path(&[0xa7, 0x49, 0xf0, 0x01, 0xb9, 0x21, 0x00, 0x20, 0xc0, 0xb4, 0, 0, 0, 4, 0x07, 0xfe]), None);
        // lghi into r15 (the stack pointer) or r14 (the return address).
        assert_eq!(return_path(&[0xa7, 0xf9, 0xf0, 0x01, 0xb9, 0x21, 0x00, 0x2f, 0xc0, 0xb4, 0, 0, 0, 4, 0x07, 0xfe]), None);
        // br to another register, lghi %r1,-4096 (vfork's check), a short read.
        assert_eq!(return_path(&[0x07, 0xf1]), None);
        assert_eq!(return_path(&[0xa7, 0x19, 0xf0, 0x00, 0xb9, 0x21, 0x00, 0x21]), None);
        assert_eq!(return_path(&LMG_R6_R7_48_R15), None);
    }

    #[test]
    fn the_trampoline_is_svc_rt_sigreturn() {
        assert_eq!(TRAMPOLINES[0], &[0x0a, 173]);
    }

    #[test]
    fn a_chained_munmap_returns_into_the_trampoline_on_the_frame() {
        let saved = Regs { psw_addr: 0x2aa_0000_1000, gprs: [7; 16], system_call: 0x0002_005b, ..Regs::default() };
        let points = ChainPoints { syscall_ip: 0x3ff_9a02_a60, path: ReturnPath::LinkRegister, trampoline: 0x3ff_fff0_0800 };
        let frame = SigreturnFrame { bytes: vec![0x22; 64], sp: 0x3ff_ffff_e000 };
        let chained = chained_syscall(&saved, &points, 91, [0x3ff_8000_0000, 0x4000, 0, 0, 0, 0], &frame, 0x3ff_ffff_e000).expect("chains");
        assert_eq!((chained.regs.psw_addr, chained.regs.gprs[1], chained.regs.gprs[14], chained.regs.gprs[15]), (0x3ff_9a02_a60, 91, 0x3ff_fff0_0800, 0x3ff_ffff_e000));
        assert_eq!(chained.regs.gprs[2..4], [0x3ff_8000_0000, 0x4000]);
        assert_eq!(chained.regs.system_call, 0);
        assert_eq!((chained.address, chained.bytes), (0x3ff_ffff_e000, vec![0x22; 64]));
        assert_eq!(chained_syscall(&saved, &points, 91, [0; 6], &SigreturnFrame { bytes: vec![0; 64], sp: 0x3ff_ffff_e004 }, 0x3ff_ffff_e004), None);
    }

    #[test]
    fn a_chained_mmap_carries_its_argument_block_below_the_frame() {
        let saved = Regs { gprs: [7; 16], ..Regs::default() };
        let points = ChainPoints { syscall_ip: 0x3ff_9a02_a60, path: ReturnPath::LinkRegister, trampoline: 0x3ff_fff0_0800 };
        let frame = SigreturnFrame { bytes: vec![0x22; 64], sp: 0x3ff_ffff_e000 };
        let args = [0, 0x5000, 7, 0x22, u64::MAX, 0];
        let chained = chained_syscall(&saved, &points, 90, args, &frame, 0x3ff_ffff_e000).expect("chains");
        assert_eq!(chained.address, 0x3ff_ffff_e000 - 48);
        assert_eq!(chained.bytes[..48], super::super::S390x::mmap_arg_block(args)[..]);
        assert_eq!(chained.bytes[8..16], 0x5000u64.to_be_bytes());
        assert_eq!(chained.bytes[48..], [0x22; 64]);
        assert_eq!((chained.regs.gprs[1], chained.regs.gprs[2], chained.regs.orig_gpr2, chained.regs.gprs[3]), (90, 0x3ff_ffff_e000 - 48, 0x3ff_ffff_e000 - 48, 0));
    }
}
