//! The aarch64 rt_sigreturn frame (arch/arm64/kernel/signal.c, uapi asm/sigcontext.h,
//! asm/ucontext.h): `struct rt_sigframe` = `siginfo` (128 bytes), then
//! `struct ucontext` whose `uc_mcontext` (16-byte aligned, at 176) is
//! `struct sigcontext`: fault_address, x0..x30, sp, pc, pstate, then 4096 bytes of
//! `__reserved` records. Here the records are one `fpsimd_context` (v0..v31, fpsr,
//! fpcr) and the null terminator.
//!
//! rt_sigreturn finds the frame at sp (which must be 16-byte aligned) and restores:
//! x0..x30, sp, pc, pstate (which must be a valid EL0 state), the signal mask and the
//! FPSIMD registers.
//!
//! Not restored: tpidr_el0 (NT_ARM_TLS) and the pointer-authentication keys, which
//! only ptrace sets (a parasite leaves them alone); the SVE/SME state, which crust
//! does not read: a thread whose SVE registers were live keeps only their low 128 bits
//! (v0..v31), as after any syscall; the syscall number (becomes "none") and the restart
//! block, as for every backend (see [`crate::sigframe`]).

use super::{ext, Regs};
use crate::sigframe::{check_aligned, check_ext_len, FrameBytes, SigframeError, SigreturnFrame};
use crate::ThreadRegs;

/// The kernel refuses a frame at a stack pointer not 16-byte aligned.
pub const ALIGN: u64 = 16;

/// `struct ucontext` follows the 128-byte siginfo.
const UCONTEXT: usize = 128;
/// `uc_sigmask`, after uc_flags, uc_link and uc_stack.
const UC_SIGMASK: usize = UCONTEXT + 40;
/// `uc_mcontext`: `struct sigcontext`.
const SIGCONTEXT: usize = UCONTEXT + 176;
/// x0..x30, sp, pc, pstate follow fault_address.
const SC_REGS: usize = SIGCONTEXT + 8;
const SC_SP: usize = SIGCONTEXT + 256;
const SC_PC: usize = SIGCONTEXT + 264;
const SC_PSTATE: usize = SIGCONTEXT + 272;
/// The `__reserved` records.
const SC_RESERVED: usize = SIGCONTEXT + 288;
/// Size of the whole frame (the reserved area is 4096 bytes).
const SIZE: usize = SC_RESERVED + 4096;

const FPSIMD_MAGIC: u32 = 0x4650_8001;
/// `struct fpsimd_context`: head (magic, size), fpsr, fpcr, then v0..v31.
const FPSIMD_CONTEXT_SIZE: u32 = 528;

/// The frame for `regs` and `sigmask` at `address`.
pub fn build(regs: &ThreadRegs<Regs>, sigmask: u64, address: u64) -> Result<SigreturnFrame, SigframeError> {
    check_aligned(address, ALIGN)?;
    check_ext_len(&regs.ext, ext::FPSIMD + ext::FPSIMD_SIZE)?;
    let mut frame = FrameBytes::little_endian(SIZE);
    frame.put_u64(UC_SIGMASK, sigmask);
    let r = &regs.gpr;
    for (index, value) in r.x.iter().enumerate() {
        frame.put_u64(SC_REGS + index * 8, *value);
    }
    frame.put_u64(SC_SP, r.sp);
    frame.put_u64(SC_PC, r.pc);
    frame.put_u64(SC_PSTATE, r.pstate);
    // NT_PRFPREG is v0..v31, fpsr, fpcr; the record wants fpsr, fpcr, then v0..v31.
    let fpsimd = &regs.ext[ext::FPSIMD..ext::FPSIMD + ext::FPSIMD_SIZE];
    frame.put_u32(SC_RESERVED, FPSIMD_MAGIC);
    frame.put_u32(SC_RESERVED + 4, FPSIMD_CONTEXT_SIZE);
    frame.put(SC_RESERVED + 8, &fpsimd[512..520]);
    frame.put(SC_RESERVED + 16, &fpsimd[..512]);
    // The null record after it ends the list: its 8 bytes are already zero.
    Ok(SigreturnFrame { bytes: frame.into_bytes(), sp: address })
}

/// Names of the NT_PRSTATUS words (`Regs::to_words`).
const REG_NAMES: [&str; super::REGS_WORDS] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16",
    "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30", "sp", "pc",
    "pstate",
];

/// [`Abi::sigreturn_mismatch`](crate::Abi::sigreturn_mismatch) for aarch64: x0..x30, sp,
/// pc, pstate, and the whole extended area (FPSIMD, which the frame restores; TLS and
/// the pointer-authentication keys, which a parasite never changes). Read at a stop
/// that is not a syscall stop: at those the kernel shows x7 as the stop's direction.
pub fn mismatch(expected: &ThreadRegs<Regs>, found: &ThreadRegs<Regs>) -> Option<String> {
    crate::sigframe::first_differing_word(&REG_NAMES, &expected.gpr.to_words(), &found.gpr.to_words()).or_else(|| {
        let len = expected.ext.len().max(found.ext.len()).max(ext::SIZE);
        crate::sigframe::first_differing_byte("extended state", &expected.ext, &found.ext, 0..len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le64(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    fn sample() -> ThreadRegs<Regs> {
        let mut x = [0u64; 31];
        for (i, v) in x.iter_mut().enumerate() {
            *v = 0xa000 + i as u64;
        }
        let gpr = Regs { x, sp: 0x7fff_fff0, pc: 0x40_1000, pstate: 0x6000_0000 };
        let mut ext = vec![0u8; ext::SIZE];
        for (i, b) in ext.iter_mut().enumerate().take(512) {
            *b = (i * 13 % 251) as u8;
        }
        ext[512..516].copy_from_slice(&0x0800_0010u32.to_le_bytes()); // fpsr
        ext[516..520].copy_from_slice(&0x0300_0000u32.to_le_bytes()); // fpcr
        ThreadRegs { gpr, ext }
    }

    #[test]
    fn registers_and_mask_sit_at_the_kernels_offsets() {
        let regs = sample();
        let frame = build(&regs, 0x0000_0001_0000_4000, 0x7f00_0000).unwrap();
        let b = &frame.bytes;
        assert_eq!(b.len(), 4688);
        assert_eq!(frame.sp, 0x7f00_0000);
        assert_eq!(b[..168], [0; 168], "siginfo, uc_flags, uc_link, uc_stack");
        assert_eq!(le64(b, 168), 0x0000_0001_0000_4000, "uc_sigmask");
        assert_eq!(le64(b, 304), 0, "fault_address");
        assert_eq!(le64(b, 312), 0xa000, "x0");
        assert_eq!(le64(b, 312 + 30 * 8), 0xa000 + 30, "x30");
        assert_eq!((le64(b, 560), le64(b, 568), le64(b, 576)), (0x7fff_fff0, 0x40_1000, 0x6000_0000));
    }

    #[test]
    fn fpsimd_record_then_null_record() {
        let regs = sample();
        let b = build(&regs, 0, 0x7f00_0000).unwrap().bytes;
        assert_eq!(b[592..600], [0x01, 0x80, 0x50, 0x46, 0x10, 0x02, 0, 0], "FPSIMD_MAGIC, size 528");
        assert_eq!(b[600..604], 0x0800_0010u32.to_le_bytes(), "fpsr");
        assert_eq!(b[604..608], 0x0300_0000u32.to_le_bytes(), "fpcr");
        assert_eq!(b[608..1120], regs.ext[..512], "v0..v31");
        assert!(b[1120..].iter().all(|&x| x == 0), "null record and free space");
    }

    #[test]
    fn misaligned_or_short_state_is_refused() {
        assert_eq!(build(&sample(), 0, 0x7f00_0008), Err(SigframeError::Misaligned { address: 0x7f00_0008, align: 16 }));
        let mut regs = sample();
        regs.ext.truncate(100);
        assert_eq!(build(&regs, 0, 0x7f00_0000), Err(SigframeError::ExtTooShort { len: 100, need: 528 }));
    }

    #[test]
    fn mismatch_names_the_register() {
        let expected = sample();
        assert_eq!(mismatch(&expected, &expected), None);
        let mut found = expected.clone();
        found.gpr.x[7] = 1;
        assert_eq!(mismatch(&expected, &found).as_deref(), Some("x7 (0x1, not 0xa007)"));
        let mut found = expected.clone();
        found.ext[ext::FPSIMD + 512] ^= 1;
        assert_eq!(mismatch(&expected, &found).as_deref(), Some("extended state byte 512 of 632"));
    }
}
