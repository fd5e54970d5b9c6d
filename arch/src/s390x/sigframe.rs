//! The s390x rt_sigreturn frame (arch/s390/kernel/signal.c, uapi asm/sigcontext.h,
//! asm/ucontext.h), big endian: `rt_sigframe` = 160 bytes of callee stack, svc_insn,
//! `siginfo` (at 168), then `struct ucontext_extended` (at 296): uc_flags, uc_link,
//! uc_stack, `_sigregs` (psw mask and address, r0..r15, a0..a15, fpc, f0..f15),
//! uc_sigmask (with room to 128 bytes), and `_sigregs_ext` (the right halves of
//! v0..v15, then v16..v31).
//!
//! rt_sigreturn finds the frame at r15 and restores: r0..r15, the PSW address and the
//! PSW mask's user bits (condition code, program mask, addressing mode), a0..a15 (a0/a1
//! are the thread pointer), fpc (which must be valid), the FPRs, the vector registers
//! when the CPU has them, and the signal mask.
//!
//! Not restored: orig_gpr2 and `system_call` (rt_sigreturn leaves the thread outside
//! any syscall, see [`crate::sigframe`]), the PSW's other bits (kept by the kernel),
//! and guarded-storage and runtime-instrumentation state (crust refuses both).

use super::{ext, Regs};
use crate::sigframe::{check_aligned, check_ext_len, FrameBytes, SigframeError, SigreturnFrame};
use crate::ThreadRegs;

/// The kernel aligns its frames to 8 bytes; 16 keeps the vector area aligned too.
pub const ALIGN: u64 = 16;

/// `struct ucontext_extended` after the callee area, svc_insn and siginfo.
const UCONTEXT: usize = 296;
const UC_FLAGS: usize = UCONTEXT;
/// `uc_mcontext`: `_sigregs`.
const SIGREGS: usize = UCONTEXT + 40;
const SR_PSW_MASK: usize = SIGREGS;
const SR_PSW_ADDR: usize = SIGREGS + 8;
const SR_GPRS: usize = SIGREGS + 16;
const SR_ACRS: usize = SIGREGS + 144;
/// `_s390_fp_regs`: fpc, padding, f0..f15 (the NT_PRFPREG layout).
const SR_FPREGS: usize = SIGREGS + 208;
const UC_SIGMASK: usize = UCONTEXT + 384;
/// `uc_mcontext_ext`: `_sigregs_ext`.
const SIGREGS_EXT: usize = UCONTEXT + 512;
const VXRS_LOW: usize = SIGREGS_EXT;
const VXRS_HIGH: usize = SIGREGS_EXT + 128;
/// The whole frame (`_sigregs_ext` ends with 128 reserved bytes).
const SIZE: usize = SIGREGS_EXT + 512;

/// uc_flags: `uc_mcontext_ext` holds the vector registers.
const UC_VXRS: u64 = 2;

/// The frame for `regs` and `sigmask` at `address`.
pub fn build(regs: &ThreadRegs<Regs>, sigmask: u64, address: u64) -> Result<SigreturnFrame, SigframeError> {
    check_aligned(address, ALIGN)?;
    check_ext_len(&regs.ext, ext::SIZE)?;
    let flags = u64::from_be_bytes(regs.ext[ext::FLAGS..ext::FLAGS + 8].try_into().expect("8 bytes"));
    let has_vxrs = flags & ext::HAS_VXRS != 0;
    let r = &regs.gpr;
    let mut frame = FrameBytes::big_endian(SIZE);
    frame.put_u64(UC_FLAGS, if has_vxrs { UC_VXRS } else { 0 });
    frame.put_u64(SR_PSW_MASK, r.psw_mask);
    frame.put_u64(SR_PSW_ADDR, r.psw_addr);
    for (index, value) in r.gprs.iter().enumerate() {
        frame.put_u64(SR_GPRS + index * 8, *value);
    }
    for (index, value) in r.acrs.iter().enumerate() {
        frame.put_u32(SR_ACRS + index * 4, *value);
    }
    frame.put(SR_FPREGS, &regs.ext[ext::FPR..ext::FPR + ext::FPR_SIZE]);
    frame.put_u64(UC_SIGMASK, sigmask);
    if has_vxrs {
        frame.put(VXRS_LOW, &regs.ext[ext::VXRS_LOW..ext::VXRS_LOW + ext::VXRS_LOW_SIZE]);
        frame.put(VXRS_HIGH, &regs.ext[ext::VXRS_HIGH..ext::VXRS_HIGH + ext::VXRS_HIGH_SIZE]);
    }
    Ok(SigreturnFrame { bytes: frame.into_bytes(), sp: address })
}

/// [`Abi::sigreturn_mismatch`](crate::Abi::sigreturn_mismatch) for s390x: the PSW mask
/// and address, r0..r15, a0..a15, and the whole extended area (fpc, FPRs, vector
/// registers). Not compared: orig_gpr2 and `system_call`, which describe a syscall in
/// progress (none after rt_sigreturn).
pub fn mismatch(expected: &ThreadRegs<Regs>, found: &ThreadRegs<Regs>) -> Option<String> {
    let words = |r: &Regs| {
        let mut w = vec![r.psw_mask, r.psw_addr];
        w.extend_from_slice(&r.gprs);
        w.extend(r.acrs.iter().map(|&a| u64::from(a)));
        w
    };
    let mut names: Vec<String> = vec!["psw mask".into(), "psw address".into()];
    names.extend((0..16).map(|i| format!("r{i}")));
    names.extend((0..16).map(|i| format!("a{i}")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::sigframe::first_differing_word(&names, &words(&expected.gpr), &words(&found.gpr)).or_else(|| {
        let len = expected.ext.len().max(found.ext.len()).max(ext::SIZE);
        crate::sigframe::first_differing_byte("extended state", &expected.ext, &found.ext, 0..len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be64(bytes: &[u8], offset: usize) -> u64 {
        u64::from_be_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    fn sample() -> ThreadRegs<Regs> {
        let mut gpr = Regs { psw_mask: 0x0705_2001_8000_0000, psw_addr: 0x2aa_0000_1000, orig_gpr2: 9, ..Default::default() };
        for i in 0..16 {
            gpr.gprs[i] = 0x6000 + i as u64;
            gpr.acrs[i] = 0x700 + i as u32;
        }
        let mut ext = vec![0u8; ext::SIZE];
        for (i, b) in ext.iter_mut().enumerate() {
            *b = (i * 5 % 241) as u8;
        }
        ext[ext::FLAGS..ext::FLAGS + 8].copy_from_slice(&ext::HAS_VXRS.to_be_bytes());
        ThreadRegs { gpr, ext }
    }

    #[test]
    fn registers_and_mask_sit_at_the_kernels_offsets_big_endian() {
        let regs = sample();
        let frame = build(&regs, 0x0000_0000_0001_2000, 0x3ff_ffff_0000).unwrap();
        let b = &frame.bytes;
        assert_eq!((b.len(), frame.sp), (1320, 0x3ff_ffff_0000));
        assert_eq!(b[..296], [0; 296], "callee area, svc_insn, siginfo");
        assert_eq!(be64(b, 296), 2, "uc_flags: UC_VXRS");
        assert_eq!(b[304..336], [0; 32], "uc_link, uc_stack");
        assert_eq!(b[336..344], [0x07, 0x05, 0x20, 0x01, 0x80, 0, 0, 0], "psw mask");
        assert_eq!(be64(b, 344), 0x2aa_0000_1000, "psw addr");
        assert_eq!(be64(b, 352), 0x6000, "r0");
        assert_eq!(be64(b, 352 + 15 * 8), 0x600f, "r15");
        assert_eq!(b[480..488], [0, 0, 0x07, 0x00, 0, 0, 0x07, 0x01], "a0, a1");
        assert_eq!(be64(b, 680), 0x1_2000, "uc_sigmask");
    }

    #[test]
    fn fp_and_vector_state_follow() {
        let regs = sample();
        let b = build(&regs, 0, 0x3ff_ffff_0000).unwrap().bytes;
        assert_eq!(b[544..680], regs.ext[ext::FPR..ext::FPR + 136], "fpc, pad, f0..f15");
        assert_eq!(b[808..936], regs.ext[ext::VXRS_LOW..ext::VXRS_LOW + 128], "vxrs_low");
        assert_eq!(b[936..1192], regs.ext[ext::VXRS_HIGH..ext::VXRS_HIGH + 256], "vxrs_high");
        assert_eq!(b[1192..], [0; 128], "reserved");
    }

    #[test]
    fn no_vector_facility_means_no_uc_vxrs() {
        let mut regs = sample();
        regs.ext[ext::FLAGS..ext::FLAGS + 8].fill(0);
        let b = build(&regs, 0, 0x3ff_ffff_0000).unwrap().bytes;
        assert_eq!(be64(&b, 296), 0);
        assert!(b[808..].iter().all(|&x| x == 0));
    }

    #[test]
    fn mismatch_leaves_the_syscall_state_alone() {
        let expected = sample();
        assert_eq!(mismatch(&expected, &expected), None);
        let mut found = expected.clone();
        (found.gpr.orig_gpr2, found.gpr.system_call) = (1, 0x2_0004);
        assert_eq!(mismatch(&expected, &found), None);
        found.gpr.acrs[1] ^= 1;
        assert!(mismatch(&expected, &found).unwrap().starts_with("a1 "));
    }
}
