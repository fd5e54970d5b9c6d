//! The x86_64 rt_sigreturn frame (arch/x86/kernel/signal_64.c, uapi asm/sigcontext.h,
//! asm/ucontext.h): `struct rt_sigframe` = pretcode, `struct ucontext`, `siginfo`,
//! then the fpstate (the XSAVE area, 64-byte aligned, with its software-reserved bytes
//! and FP_XSTATE_MAGIC2 after it).
//!
//! rt_sigreturn finds the frame at `sp - 8` (as if the handler's `ret` had popped
//! pretcode) and restores: the 17 GPRs with rip and the status flags (`FIX_EFLAGS`:
//! CF PF AF ZF SF TF DF OF AC RF), cs and ss (UC_STRICT_RESTORE_SS: ss as given), the
//! signal mask, and the FPU/vector state with XRSTOR from the fpstate: x87, SSE and
//! every component whose bit is set in the header's XSTATE_BV (AVX, AVX-512, PKRU,
//! AMX when the process may use it); components not set come back in their initial
//! state, as XRSTOR does.
//!
//! Not restored (rt_sigreturn has no slot for it): fs_base, gs_base and the ds, es,
//! fs, gs selectors (a parasite leaves them alone), orig_ax (becomes -1: no syscall in
//! progress, so the frame's registers must already be [`Abi::resume_regs`]'s), the
//! restart block (reset to "return -EINTR"), and the supervisor XSAVE state (CET),
//! which is not in NT_X86_XSTATE anyway.
//!
//! [`Abi::resume_regs`]: crate::Abi::resume_regs

use super::{xsave, Regs};
use crate::sigframe::{check_aligned, check_ext_len, FrameBytes, SigframeError, SigreturnFrame};
use crate::ThreadRegs;

/// The fpstate must be 64-byte aligned (XRSTOR); the frame starts on such a boundary.
pub const ALIGN: u64 = 64;

/// Offset of `struct ucontext` in the frame (after pretcode).
const UCONTEXT: usize = 8;
/// `uc_flags`; then `uc_link` and `uc_stack` (ss_sp, ss_flags, ss_size), left zero.
const UC_FLAGS: usize = UCONTEXT;
/// `uc_mcontext`: `struct sigcontext` (256 bytes).
const SIGCONTEXT: usize = UCONTEXT + 40;
/// `uc_sigmask`, after the sigcontext.
const UC_SIGMASK: usize = UCONTEXT + 296;
/// The fpstate: after siginfo (which ends at 440), rounded up to 64.
const FPSTATE: usize = 448;

/// Offsets of the sigcontext's fields (`struct sigcontext_64`).
mod sc {
    pub const R8: usize = 0;
    pub const DI: usize = 64;
    pub const SI: usize = 72;
    pub const BP: usize = 80;
    pub const BX: usize = 88;
    pub const DX: usize = 96;
    pub const AX: usize = 104;
    pub const CX: usize = 112;
    pub const SP: usize = 120;
    pub const IP: usize = 128;
    pub const FLAGS: usize = 136;
    pub const CS: usize = 144;
    pub const SS: usize = 150;
    pub const OLDMASK: usize = 168;
    pub const FPSTATE: usize = 184;
}

/// Offsets in the fpstate: the software-reserved bytes of the FXSAVE region
/// (`struct _fpx_sw_bytes`) and the XSAVE header.
mod fp {
    pub const SW_MAGIC1: usize = 464;
    pub const SW_EXTENDED_SIZE: usize = 468;
    pub const SW_XFEATURES: usize = 472;
    pub const SW_XSTATE_SIZE: usize = 480;
    pub const SW_END: usize = 512;
    pub const XSTATE_BV: usize = 512;
    pub const HEADER_END: usize = 576;
}

const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
/// x87 and SSE: always requested, so MXCSR and the legacy registers come back.
const XFEATURE_FP_SSE: u64 = 0b11;

/// The frame for `regs` and `sigmask` at `address`, with the XSAVE components placed
/// as `layout` says (the running CPU's: [`xsave::host_layout`]).
///
/// `regs.ext` is the NT_X86_XSTATE area: its own software-reserved bytes (ptrace puts
/// XCR0 there) are replaced by the signal frame's, its XCOMP_BV and reserved header
/// bytes are cleared (XRSTOR faults on them in the standard format), and it is cut to
/// the end of the last component in use, so that the kernel's "no larger than this
/// process's own frame" check passes whether or not the process may use AMX. An area of
/// 512 bytes or less is taken as a bare FXSAVE image.
pub fn build(regs: &ThreadRegs<Regs>, sigmask: u64, address: u64, layout: &xsave::Layout) -> Result<SigreturnFrame, SigframeError> {
    check_aligned(address, ALIGN)?;
    check_ext_len(&regs.ext, xsave::LEGACY_SIZE)?;
    let ext = &regs.ext;
    let xsave_area = ext.len() > xsave::LEGACY_SIZE;
    let xstate_size = if xsave_area { xstate_size(ext, layout)? } else { xsave::LEGACY_SIZE };
    let magic2_size = if xsave_area { 4 } else { 0 };
    let mut frame = FrameBytes::little_endian(FPSTATE + xstate_size + magic2_size);

    let uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if xsave_area { UC_FP_XSTATE } else { 0 };
    frame.put_u64(UC_FLAGS, uc_flags);
    // uc_link and uc_stack stay zero (see crate::sigframe on the sigaltstack).
    let r = &regs.gpr;
    let gprs = [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15];
    for (index, value) in gprs.iter().enumerate() {
        frame.put_u64(SIGCONTEXT + sc::R8 + index * 8, *value);
    }
    for (offset, value) in [
        (sc::DI, r.di),
        (sc::SI, r.si),
        (sc::BP, r.bp),
        (sc::BX, r.bx),
        (sc::DX, r.dx),
        (sc::AX, r.ax),
        (sc::CX, r.cx),
        (sc::SP, r.sp),
        (sc::IP, r.ip),
        (sc::FLAGS, r.flags),
        (sc::OLDMASK, sigmask),
        (sc::FPSTATE, address + FPSTATE as u64),
    ] {
        frame.put_u64(SIGCONTEXT + offset, value);
    }
    frame.put_u16(SIGCONTEXT + sc::CS, r.cs as u16);
    frame.put_u16(SIGCONTEXT + sc::SS, r.ss as u16);
    frame.put_u64(UC_SIGMASK, sigmask);

    frame.put(FPSTATE, &ext[..xstate_size]);
    frame.put(FPSTATE + fp::SW_MAGIC1, &[0; fp::SW_END - fp::SW_MAGIC1]);
    if xsave_area {
        let xstate_bv = u64_at(ext, fp::XSTATE_BV);
        frame.put_u32(FPSTATE + fp::SW_MAGIC1, FP_XSTATE_MAGIC1);
        frame.put_u32(FPSTATE + fp::SW_EXTENDED_SIZE, (xstate_size + magic2_size) as u32);
        frame.put_u64(FPSTATE + fp::SW_XFEATURES, xstate_bv | XFEATURE_FP_SSE);
        frame.put_u32(FPSTATE + fp::SW_XSTATE_SIZE, xstate_size as u32);
        frame.put(FPSTATE + fp::XSTATE_BV + 8, &[0; fp::HEADER_END - fp::XSTATE_BV - 8]);
        frame.put_u32(FPSTATE + xstate_size, FP_XSTATE_MAGIC2);
    }
    Ok(SigreturnFrame { bytes: frame.into_bytes(), sp: address + UCONTEXT as u64 })
}

/// Names of the NT_PRSTATUS words in kernel order (`Regs::to_words`).
const REG_NAMES: [&str; super::REGS_WORDS] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
    "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
];

/// [`Abi::sigreturn_mismatch`](crate::Abi::sigreturn_mismatch) for x86_64: every
/// NT_PRSTATUS word (the frame's registers are the resume registers, orig_rax -1,
/// and what the frame does not carry, fs/gs bases and the data selectors, is never
/// changed by a parasite), and the whole NT_X86_XSTATE area but its XSTATE_BV word:
/// ptrace fills a component not in use with its initial value, and whether a
/// component left in its initial value counts as in use after XRSTOR is the CPU's
/// choice, so the register values are compared, not that bit.
pub fn mismatch(expected: &ThreadRegs<Regs>, found: &ThreadRegs<Regs>) -> Option<String> {
    let words = crate::sigframe::first_differing_word(&REG_NAMES, &expected.gpr.to_words(), &found.gpr.to_words());
    words.or_else(|| {
        let (e, f) = (&expected.ext, &found.ext);
        let len = e.len().max(f.len());
        crate::sigframe::first_differing_byte("xsave area", e, f, 0..fp::XSTATE_BV)
            .or_else(|| crate::sigframe::first_differing_byte("xsave area", e, f, fp::XSTATE_BV + 8..len))
    })
}

/// Bytes of the XSAVE area up to the end of the last component in use (at least the
/// legacy region and the header).
fn xstate_size(ext: &[u8], layout: &xsave::Layout) -> Result<usize, SigframeError> {
    check_ext_len(ext, fp::HEADER_END)?;
    let xstate_bv = u64_at(ext, fp::XSTATE_BV);
    let mut size = fp::HEADER_END;
    for bit in (2..64).filter(|bit| xstate_bv & (1 << bit) != 0) {
        let &(_, offset, len) = layout
            .iter()
            .find(|component| component.0 == bit)
            .ok_or(SigframeError::UnknownXsaveComponent { bit })?;
        size = size.max(offset + len);
    }
    check_ext_len(ext, size)?;
    Ok(size)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..offset + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes"))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le64(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    fn le32(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    /// A thread with AVX and AVX-512 in use, as ptrace returns it on an AMX machine
    /// (11008 bytes, XCR0 in the software-reserved bytes).
    fn sample() -> ThreadRegs<Regs> {
        let mut words = [0u64; crate::x86_64::REGS_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = 0x1111_0000 + i as u64;
        }
        let mut gpr = Regs::from_words(words);
        (gpr.cs, gpr.ss, gpr.flags) = (0x33, 0x2b, 0x246);
        let mut ext = vec![0u8; 11008];
        for (i, b) in ext.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8 | 1;
        }
        ext[464..472].copy_from_slice(&0x602e7u64.to_le_bytes());
        ext[512..520].copy_from_slice(&0xe7u64.to_le_bytes());
        ext[520..576].fill(0);
        ThreadRegs { gpr, ext }
    }

    #[test]
    fn gprs_mask_and_pointers_sit_at_the_kernels_offsets() {
        let regs = sample();
        let frame = build(&regs, 0x8000_0000_0001_4002, 0x7000_0040, &xsave::intel_layout()).unwrap();
        let b = &frame.bytes;
        assert_eq!(frame.sp, 0x7000_0048);
        assert_eq!(le64(b, 8), 7, "uc_flags: FP_XSTATE | SIGCONTEXT_SS | STRICT_RESTORE_SS");
        assert_eq!(b[24..48], [0; 24], "uc_stack");
        // sigcontext at 48: r8..r15, di, si, bp, bx, dx, ax, cx, sp, ip, flags.
        assert_eq!(le64(b, 48), regs.gpr.r8);
        assert_eq!(le64(b, 48 + 56), regs.gpr.r15);
        assert_eq!(le64(b, 48 + 64), regs.gpr.di);
        assert_eq!(le64(b, 48 + 104), regs.gpr.ax);
        assert_eq!(le64(b, 48 + 112), regs.gpr.cx);
        assert_eq!(le64(b, 48 + 120), regs.gpr.sp);
        assert_eq!(le64(b, 48 + 128), regs.gpr.ip);
        assert_eq!(le64(b, 48 + 136), 0x246);
        assert_eq!(b[48 + 144..48 + 152], [0x33, 0, 0, 0, 0, 0, 0x2b, 0], "cs, gs, fs, ss");
        assert_eq!(le64(b, 48 + 168), 0x8000_0000_0001_4002, "oldmask");
        assert_eq!(le64(b, 48 + 184), 0x7000_0040 + 448, "fpstate pointer");
        assert_eq!(le64(b, 304), 0x8000_0000_0001_4002, "uc_sigmask");
        assert_eq!(b[312..448], [0; 136], "siginfo and padding");
    }

    #[test]
    fn fpstate_is_cut_to_the_last_component_in_use_with_its_magic() {
        let regs = sample();
        let frame = build(&regs, 0x1000, 0x7000_0000, &xsave::intel_layout()).unwrap();
        let fpstate = &frame.bytes[448..];
        // AVX-512 Hi16_ZMM (bit 7) ends at 1664 + 1024.
        assert_eq!(fpstate.len(), 2688 + 4);
        assert_eq!(le32(fpstate, 464), 0x4650_5853, "magic1");
        assert_eq!(le32(fpstate, 468), 2692, "extended_size");
        assert_eq!(le64(fpstate, 472), 0xe7, "xfeatures");
        assert_eq!(le32(fpstate, 480), 2688, "xstate_size");
        assert_eq!(fpstate[484..512], [0; 28]);
        assert_eq!(le32(fpstate, 2688), 0x4650_5845, "magic2");
        assert_eq!(le64(fpstate, 512), 0xe7, "xstate_bv kept");
        assert_eq!(fpstate[520..576], [0; 56], "xcomp_bv and reserved header bytes");
        // Registers: the legacy region and the components are the area's own bytes.
        assert_eq!(fpstate[..464], regs.ext[..464]);
        assert_eq!(fpstate[576..2688], regs.ext[576..2688]);
    }

    #[test]
    fn amx_in_use_needs_its_full_area() {
        let mut regs = sample();
        regs.ext[512..520].copy_from_slice(&0x602e7u64.to_le_bytes());
        let frame = build(&regs, 0, 0x7000_0000, &xsave::intel_layout()).unwrap();
        assert_eq!(frame.bytes.len(), 448 + 11008 + 4);
        regs.ext.truncate(4096);
        assert_eq!(
            build(&regs, 0, 0x7000_0000, &xsave::intel_layout()),
            Err(SigframeError::ExtTooShort { len: 4096, need: 11008 })
        );
    }

    #[test]
    fn a_bare_fxsave_area_has_no_xstate_magic() {
        let mut regs = sample();
        regs.ext.truncate(512);
        let frame = build(&regs, 0, 0x7000_0000, &xsave::intel_layout()).unwrap();
        assert_eq!(frame.bytes.len(), 448 + 512);
        assert_eq!(le64(&frame.bytes, 8), 6, "no UC_FP_XSTATE");
        assert_eq!(frame.bytes[448 + 464..], [0; 48]);
    }

    #[test]
    fn components_follow_the_cpus_layout() {
        // AMD: no MPX hole, AVX-512 right after AVX.
        let amd: xsave::Layout = vec![(2, 576, 256), (5, 832, 64), (6, 896, 512), (7, 1408, 1024), (9, 2432, 8)];
        let mut regs = sample();
        regs.ext[512..520].copy_from_slice(&0x2e7u64.to_le_bytes());
        let frame = build(&regs, 0, 0x7000_0000, &amd).unwrap();
        assert_eq!(le32(&frame.bytes[448..], 480), 2440);
        let mut unknown = sample();
        unknown.ext[512..520].copy_from_slice(&(0xe7u64 | 1 << 14).to_le_bytes());
        assert_eq!(build(&unknown, 0, 0, &amd), Err(SigframeError::UnknownXsaveComponent { bit: 14 }));
    }

    #[test]
    fn mismatch_names_the_register_and_ignores_xstate_bv() {
        let expected = sample();
        assert_eq!(mismatch(&expected, &expected), None);
        let mut found = expected.clone();
        found.ext[512] ^= 0x04;
        assert_eq!(mismatch(&expected, &found), None, "XSTATE_BV alone");
        found.ext[600] ^= 1;
        assert_eq!(mismatch(&expected, &found).as_deref(), Some("xsave area byte 600 of 11008"));
        let mut found = expected.clone();
        found.gpr.r13 += 1;
        assert_eq!(mismatch(&expected, &found).as_deref(), Some("r13 (0x11110003, not 0x11110002)"));
        found.ext.truncate(4096);
        assert!(mismatch(&expected, &found).unwrap().starts_with("r13"));
        let mut short = expected.clone();
        short.ext.truncate(4096);
        assert_eq!(mismatch(&expected, &short).as_deref(), Some("xsave area byte 4096 of 11008"));
    }

    #[test]
    fn misaligned_address_is_refused() {
        assert_eq!(
            build(&sample(), 0, 0x7000_0020, &xsave::intel_layout()),
            Err(SigframeError::Misaligned { address: 0x7000_0020, align: 64 })
        );
    }
}
