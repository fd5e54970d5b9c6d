//! The ppc64 rt_sigreturn frame (arch/powerpc/kernel/signal_64.c, uapi
//! asm/ucontext.h, asm/sigcontext.h). rt_sigreturn reads `struct ucontext` at r1, so
//! the frame is the ucontext alone: uc_flags, uc_link, uc_stack, uc_sigmask (and 120
//! bytes for its growth), then `struct sigcontext` at 168: four unused words, signal,
//! handler, oldmask, the `regs` pointer, `gp_regs` (48 words), `fp_regs` (fpr0..fpr31,
//! fpscr), the `v_regs` pointer, and `vmx_reserve`, in which `v_regs` points at the
//! first 16-byte boundary: vr0..vr31, vscr, vrsave (34 quadwords), then the low
//! doublewords of vsr0..vsr31.
//!
//! rt_sigreturn restores: r0..r31, nip, ctr, lr, xer, ccr, orig_gpr3, dar, dsisr,
//! the signal mask, the FPRs and fpscr, and (read from the MSR word of
//! `gp_regs`, which says which are present) the VMX registers with vscr and vrsave when
//! MSR_VEC is set and the VSX low halves when MSR_VSX is set. The frame sets those
//! bits from what the thread had ([`ext::HAS_VMX`], [`ext::HAS_VSX`]).
//!
//! Not restored: the MSR itself (only its LE bit is taken from the frame), softe, trap
//! (set to "no restart"), `result` (the kernel's record of the last syscall's return,
//! which user code never sees: Linux 6.1 leaves it 0 after an rt_sigreturn entered
//! with `sc`, measured in a chained window of 2026-12-06), the syscall restart block (see [`crate::sigframe`]), and the
//! TM, DSCR, PPR, TAR and EBB registers, which crust does not read. A thread inside a
//! transaction (MSR[TS] set) is refused: its frame would need a second, transactional
//! ucontext.

use super::{ext, Regs, REGS_WORDS};
use crate::sigframe::{check_aligned, check_ext_len, FrameBytes, SigframeError, SigreturnFrame};
use crate::ThreadRegs;

/// The ucontext is 16-byte aligned, so `v_regs` lands at a fixed place.
pub const ALIGN: u64 = 16;

const UC_SIGMASK: usize = 40;
/// `uc_mcontext`: `struct sigcontext`.
const SIGCONTEXT: usize = 168;
const SC_OLDMASK: usize = SIGCONTEXT + 48;
const SC_REGS_POINTER: usize = SIGCONTEXT + 56;
const SC_GP_REGS: usize = SIGCONTEXT + 64;
const SC_FP_REGS: usize = SIGCONTEXT + 448;
const SC_V_REGS_POINTER: usize = SIGCONTEXT + 712;
/// `vmx_reserve` starts at sigcontext + 720 (8 mod 16); `v_regs` is its first
/// 16-byte boundary.
const V_REGS: usize = SIGCONTEXT + 728;
/// vr0..vr31, vscr and vrsave: 34 quadwords, then the VSX low halves.
const VSX_LOW: usize = V_REGS + 34 * 16;
/// `sizeof(struct ucontext)`.
const SIZE: usize = 1696;

/// Index of the MSR in `gp_regs`.
const PT_MSR: usize = 33;
const MSR_VSX: u64 = 1 << 23;
const MSR_VEC: u64 = 1 << 25;
/// MSR[TS]: transactional or suspended.
const MSR_TS_MASK: u64 = 3 << 33;

/// The frame for `regs` and `sigmask` at `address`.
pub fn build(regs: &ThreadRegs<Regs>, sigmask: u64, address: u64) -> Result<SigreturnFrame, SigframeError> {
    check_aligned(address, ALIGN)?;
    check_ext_len(&regs.ext, ext::SIZE)?;
    let r = &regs.gpr;
    if r.msr & MSR_TS_MASK != 0 {
        return Err(SigframeError::Unrestorable { what: "a transaction in flight (MSR[TS])" });
    }
    let flags = u64::from_le_bytes(regs.ext[ext::FLAGS..ext::FLAGS + 8].try_into().expect("8 bytes"));
    let mut frame = FrameBytes::little_endian(SIZE);
    frame.put_u64(UC_SIGMASK, sigmask);
    frame.put_u64(SC_OLDMASK, sigmask);
    frame.put_u64(SC_REGS_POINTER, address + SC_GP_REGS as u64);
    let mut words = r.to_words();
    if flags & ext::HAS_VMX != 0 {
        words[PT_MSR] |= MSR_VEC;
    }
    if flags & ext::HAS_VSX != 0 {
        words[PT_MSR] |= MSR_VSX;
    }
    for (index, word) in words.iter().enumerate().take(REGS_WORDS) {
        frame.put_u64(SC_GP_REGS + index * 8, *word);
    }
    frame.put(SC_FP_REGS, &regs.ext[ext::FPR..ext::FPR + ext::FPR_SIZE]);
    frame.put_u64(SC_V_REGS_POINTER, address + V_REGS as u64);
    if flags & ext::HAS_VMX != 0 {
        frame.put(V_REGS, &regs.ext[ext::VMX..ext::VMX + ext::VMX_SIZE]);
    }
    if flags & ext::HAS_VSX != 0 {
        frame.put(VSX_LOW, &regs.ext[ext::VSX..ext::VSX + ext::VSX_SIZE]);
    }
    Ok(SigreturnFrame { bytes: frame.into_bytes(), sp: address })
}

/// MSR bits the kernel sets and clears by itself: FP, VMX and VSX availability (cleared
/// by rt_sigreturn to force a reload) and the FP exception mode (set from the thread's
/// mode at that reload).
const MSR_KERNEL_MANAGED: u64 = 1 << 13 | 1 << 11 | 1 << 8 | MSR_VEC | MSR_VSX;

/// [`Abi::sigreturn_mismatch`](crate::Abi::sigreturn_mismatch) for ppc64le: r0..r31,
/// nip, ctr, lr, xer, cr, orig_gpr3, dar, dsisr, the MSR but the bits the
/// kernel manages (`MSR_KERNEL_MANAGED`), and the FPR, VMX and VSX regsets the
/// thread has. Not compared: softe, trap and result, which belong to the kernel.
pub fn mismatch(expected: &ThreadRegs<Regs>, found: &ThreadRegs<Regs>) -> Option<String> {
    let (e, f) = (&expected.gpr, &found.gpr);
    let mut names: Vec<String> = (0..32).map(|i| format!("r{i}")).collect();
    names.extend(["nip", "msr", "orig_gpr3", "ctr", "lr", "xer", "cr", "softe", "trap", "dar", "dsisr", "result"].map(String::from));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let words = |r: &Regs| {
        let mut w = r.to_words();
        w[33] &= !MSR_KERNEL_MANAGED;
        // softe, trap and result.
        (w[39], w[40], w[43]) = (0, 0, 0);
        w
    };
    debug_assert_eq!(names.len(), REGS_WORDS);
    crate::sigframe::first_differing_word(&names, &words(e), &words(f)).or_else(|| {
        let flags = u64::from_le_bytes(expected.ext[ext::FLAGS..ext::FLAGS + 8].try_into().ok()?);
        let mut regions = vec![("flags", ext::FLAGS, 8), ("fpr", ext::FPR, ext::FPR_SIZE)];
        if flags & ext::HAS_VMX != 0 {
            regions.push(("vmx", ext::VMX, ext::VMX_SIZE));
        }
        if flags & ext::HAS_VSX != 0 {
            regions.push(("vsx", ext::VSX, ext::VSX_SIZE));
        }
        regions.into_iter().find_map(|(what, start, len)| {
            crate::sigframe::first_differing_byte(what, &expected.ext, &found.ext, start..start + len)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le64(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    fn sample() -> ThreadRegs<Regs> {
        let mut words = [0u64; REGS_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = 0x5000 + i as u64;
        }
        let mut gpr = Regs::from_words(words);
        gpr.msr = 0x8000_0000_0000_d033;
        let mut ext = vec![0u8; ext::SIZE];
        for (i, b) in ext.iter_mut().enumerate() {
            *b = (i * 11 % 253) as u8;
        }
        ext[ext::FLAGS..ext::FLAGS + 8].copy_from_slice(&(ext::HAS_VMX | ext::HAS_VSX).to_le_bytes());
        ThreadRegs { gpr, ext }
    }

    #[test]
    fn registers_and_mask_sit_at_the_kernels_offsets() {
        let regs = sample();
        let frame = build(&regs, 0x4000_0000_0000_0201, 0x7fff_0000).unwrap();
        let b = &frame.bytes;
        assert_eq!((b.len(), frame.sp), (1696, 0x7fff_0000));
        assert_eq!(b[..40], [0; 40], "uc_flags, uc_link, uc_stack");
        assert_eq!(le64(b, 40), 0x4000_0000_0000_0201, "uc_sigmask");
        assert_eq!(le64(b, 168 + 48), 0x4000_0000_0000_0201, "oldmask");
        assert_eq!(le64(b, 168 + 56), 0x7fff_0000 + 232, "regs pointer at gp_regs");
        assert_eq!(le64(b, 232), 0x5000, "r0");
        assert_eq!(le64(b, 232 + 31 * 8), 0x5000 + 31, "r31");
        assert_eq!(le64(b, 232 + 32 * 8), 0x5000 + 32, "nip");
        assert_eq!(le64(b, 232 + 33 * 8), 0x8000_0000_0000_d033 | 1 << 25 | 1 << 23, "msr with VEC and VSX");
        assert_eq!(le64(b, 232 + 38 * 8), 0x5000 + 38, "ccr");
        assert_eq!(b[232 + 44 * 8..616], [0; 32], "gp_regs words 44..47");
    }

    #[test]
    fn fp_vmx_and_vsx_state_follow_the_v_regs_pointer() {
        let regs = sample();
        let b = build(&regs, 0, 0x7fff_0000).unwrap().bytes;
        assert_eq!(b[616..880], regs.ext[ext::FPR..ext::FPR + 264], "fp_regs: fpr0..31, fpscr");
        assert_eq!(le64(&b, 880), 0x7fff_0000 + 896, "v_regs");
        assert_eq!(b[896..896 + 544], regs.ext[ext::VMX..ext::VMX + 544], "vr0..31, vscr, vrsave");
        assert_eq!(b[1440..1696], regs.ext[ext::VSX..ext::VSX + 256], "vsx low halves");
    }

    #[test]
    fn absent_vector_units_leave_msr_bits_clear() {
        let mut regs = sample();
        regs.ext[ext::FLAGS..ext::FLAGS + 8].fill(0);
        let b = build(&regs, 0, 0x7fff_0000).unwrap().bytes;
        assert_eq!(le64(&b, 232 + 33 * 8), 0x8000_0000_0000_d033);
        assert!(b[896..].iter().all(|&x| x == 0));
    }

    #[test]
    fn a_transaction_is_refused() {
        let mut regs = sample();
        regs.gpr.msr |= 1 << 34;
        assert_eq!(
            build(&regs, 0, 0x7fff_0000),
            Err(SigframeError::Unrestorable { what: "a transaction in flight (MSR[TS])" })
        );
    }

    #[test]
    fn mismatch_leaves_the_kernels_msr_bits_softe_and_trap_alone() {
        let expected = sample();
        assert_eq!(mismatch(&expected, &expected), None);
        let mut found = expected.clone();
        found.gpr.msr ^= 1 << 13 | MSR_VEC;
        found.gpr.trap = 0xc10;
        found.gpr.softe ^= 1;
        assert_eq!(mismatch(&expected, &found), None);
        found.gpr.link += 4;
        assert!(mismatch(&expected, &found).unwrap().starts_with("lr "));
        let mut found = expected.clone();
        found.ext[ext::VMX] ^= 1;
        assert!(mismatch(&expected, &found).unwrap().starts_with("vmx byte"));
    }
}
