//! ppc64le: r0..r31, lr, ctr, cr, xer, fpr0..31 and fpscr, vr0..31, vscr, vrsave,
//! the VSX low halves and the signal mask.

use super::{first, Expected};
use crust_arch::ppc64le::{ext, Regs};
use crust_arch::{Host, HostArch, ThreadRegs};

/// What the landing routine stores.
#[repr(C, align(16))]
pub struct Landed {
    gpr: [u64; 32],
    lr: u64,
    ctr: u64,
    cr: u64,
    xer: u64,
    fpscr: u64,
    vrsave: u64,
    mask: u64,
    _pad: u64,
    fpr: [u64; 32],
    vr: [[u8; 16]; 32],
    vscr: [u8; 16],
    vsr: [[u8; 16]; 32],
}

/// A user MSR: 64-bit, external interrupts, problem state, FP, machine check,
/// translation, recoverable, little endian (only LE is taken from a frame).
const MSR: u64 = 0x8000_0000_0000_d033;
const CR: u64 = 0x2480_1357;
/// SO and CA set.
const XER: u64 = 0xa000_0000;
/// Round towards minus infinity, no exception enabled.
const FPSCR: u64 = 0x3;
/// SAT set, non-Java mode off (Linux starts threads with NJ on).
const VSCR: u32 = 0x1;
const VRSAVE: u32 = 0xdead_beef;

/// qemu-user 7.2 (Debian bookworm's) reads a ppc64 rt_sigreturn frame at r1 + 144
/// (SIGNAL_FRAMESIZE + 16, the gap of the 32-bit layout; later releases use r1 + 128);
/// Linux reads the ucontext at r1. Under qemu the SIGRETURN op gets the frame's sp
/// minus this.
pub const QEMU_SP_OFFSET: u64 = 144;
pub const QEMU_GAPS: &[&str] =
    &["vscr (qemu-user does not restore it)", "the frame's place (qemu-user 7.2 reads it at r1 + 144, Linux at r1)"];

std::arch::global_asm!(
    ".pushsection .text.crust_test_landing,\"ax\",@progbits",
    ".globl crust_test_landing",
    "crust_test_landing:",
    // r31 first, then r31 = the record's start (r1 - size) for every other store.
    "    std 31, 248{neg}(1)",
    "    addi 31, 1, {neg}",
    "    std 0, 0(31)",
    "    std 1, 8(31)",
    "    std 2, 16(31)",
    "    std 3, 24(31)",
    "    std 4, 32(31)",
    "    std 5, 40(31)",
    "    std 6, 48(31)",
    "    std 7, 56(31)",
    "    std 8, 64(31)",
    "    std 9, 72(31)",
    "    std 10, 80(31)",
    "    std 11, 88(31)",
    "    std 12, 96(31)",
    "    std 13, 104(31)",
    "    std 14, 112(31)",
    "    std 15, 120(31)",
    "    std 16, 128(31)",
    "    std 17, 136(31)",
    "    std 18, 144(31)",
    "    std 19, 152(31)",
    "    std 20, 160(31)",
    "    std 21, 168(31)",
    "    std 22, 176(31)",
    "    std 23, 184(31)",
    "    std 24, 192(31)",
    "    std 25, 200(31)",
    "    std 26, 208(31)",
    "    std 27, 216(31)",
    "    std 28, 224(31)",
    "    std 29, 232(31)",
    "    std 30, 240(31)",
    "    mflr 0",
    "    std 0, 256(31)",
    "    mfctr 0",
    "    std 0, 264(31)",
    "    mfcr 0",
    "    std 0, 272(31)",
    "    mfxer 0",
    "    std 0, 280(31)",
    "    mfspr 0, 256",
    "    std 0, 296(31)",
    // vs0..vs31 before f0 is reused for mffs.
    "    li 0, 1104",
    "    stxvd2x 0, 31, 0",
    "    li 0, 1120",
    "    stxvd2x 1, 31, 0",
    "    li 0, 1136",
    "    stxvd2x 2, 31, 0",
    "    li 0, 1152",
    "    stxvd2x 3, 31, 0",
    "    li 0, 1168",
    "    stxvd2x 4, 31, 0",
    "    li 0, 1184",
    "    stxvd2x 5, 31, 0",
    "    li 0, 1200",
    "    stxvd2x 6, 31, 0",
    "    li 0, 1216",
    "    stxvd2x 7, 31, 0",
    "    li 0, 1232",
    "    stxvd2x 8, 31, 0",
    "    li 0, 1248",
    "    stxvd2x 9, 31, 0",
    "    li 0, 1264",
    "    stxvd2x 10, 31, 0",
    "    li 0, 1280",
    "    stxvd2x 11, 31, 0",
    "    li 0, 1296",
    "    stxvd2x 12, 31, 0",
    "    li 0, 1312",
    "    stxvd2x 13, 31, 0",
    "    li 0, 1328",
    "    stxvd2x 14, 31, 0",
    "    li 0, 1344",
    "    stxvd2x 15, 31, 0",
    "    li 0, 1360",
    "    stxvd2x 16, 31, 0",
    "    li 0, 1376",
    "    stxvd2x 17, 31, 0",
    "    li 0, 1392",
    "    stxvd2x 18, 31, 0",
    "    li 0, 1408",
    "    stxvd2x 19, 31, 0",
    "    li 0, 1424",
    "    stxvd2x 20, 31, 0",
    "    li 0, 1440",
    "    stxvd2x 21, 31, 0",
    "    li 0, 1456",
    "    stxvd2x 22, 31, 0",
    "    li 0, 1472",
    "    stxvd2x 23, 31, 0",
    "    li 0, 1488",
    "    stxvd2x 24, 31, 0",
    "    li 0, 1504",
    "    stxvd2x 25, 31, 0",
    "    li 0, 1520",
    "    stxvd2x 26, 31, 0",
    "    li 0, 1536",
    "    stxvd2x 27, 31, 0",
    "    li 0, 1552",
    "    stxvd2x 28, 31, 0",
    "    li 0, 1568",
    "    stxvd2x 29, 31, 0",
    "    li 0, 1584",
    "    stxvd2x 30, 31, 0",
    "    li 0, 1600",
    "    stxvd2x 31, 31, 0",
    "    stfd 0, 320(31)",
    "    stfd 1, 328(31)",
    "    stfd 2, 336(31)",
    "    stfd 3, 344(31)",
    "    stfd 4, 352(31)",
    "    stfd 5, 360(31)",
    "    stfd 6, 368(31)",
    "    stfd 7, 376(31)",
    "    stfd 8, 384(31)",
    "    stfd 9, 392(31)",
    "    stfd 10, 400(31)",
    "    stfd 11, 408(31)",
    "    stfd 12, 416(31)",
    "    stfd 13, 424(31)",
    "    stfd 14, 432(31)",
    "    stfd 15, 440(31)",
    "    stfd 16, 448(31)",
    "    stfd 17, 456(31)",
    "    stfd 18, 464(31)",
    "    stfd 19, 472(31)",
    "    stfd 20, 480(31)",
    "    stfd 21, 488(31)",
    "    stfd 22, 496(31)",
    "    stfd 23, 504(31)",
    "    stfd 24, 512(31)",
    "    stfd 25, 520(31)",
    "    stfd 26, 528(31)",
    "    stfd 27, 536(31)",
    "    stfd 28, 544(31)",
    "    stfd 29, 552(31)",
    "    stfd 30, 560(31)",
    "    stfd 31, 568(31)",
    "    mffs 0",
    "    stfd 0, 288(31)",
    "    li 0, 576",
    "    stvx 0, 31, 0",
    "    li 0, 592",
    "    stvx 1, 31, 0",
    "    li 0, 608",
    "    stvx 2, 31, 0",
    "    li 0, 624",
    "    stvx 3, 31, 0",
    "    li 0, 640",
    "    stvx 4, 31, 0",
    "    li 0, 656",
    "    stvx 5, 31, 0",
    "    li 0, 672",
    "    stvx 6, 31, 0",
    "    li 0, 688",
    "    stvx 7, 31, 0",
    "    li 0, 704",
    "    stvx 8, 31, 0",
    "    li 0, 720",
    "    stvx 9, 31, 0",
    "    li 0, 736",
    "    stvx 10, 31, 0",
    "    li 0, 752",
    "    stvx 11, 31, 0",
    "    li 0, 768",
    "    stvx 12, 31, 0",
    "    li 0, 784",
    "    stvx 13, 31, 0",
    "    li 0, 800",
    "    stvx 14, 31, 0",
    "    li 0, 816",
    "    stvx 15, 31, 0",
    "    li 0, 832",
    "    stvx 16, 31, 0",
    "    li 0, 848",
    "    stvx 17, 31, 0",
    "    li 0, 864",
    "    stvx 18, 31, 0",
    "    li 0, 880",
    "    stvx 19, 31, 0",
    "    li 0, 896",
    "    stvx 20, 31, 0",
    "    li 0, 912",
    "    stvx 21, 31, 0",
    "    li 0, 928",
    "    stvx 22, 31, 0",
    "    li 0, 944",
    "    stvx 23, 31, 0",
    "    li 0, 960",
    "    stvx 24, 31, 0",
    "    li 0, 976",
    "    stvx 25, 31, 0",
    "    li 0, 992",
    "    stvx 26, 31, 0",
    "    li 0, 1008",
    "    stvx 27, 31, 0",
    "    li 0, 1024",
    "    stvx 28, 31, 0",
    "    li 0, 1040",
    "    stvx 29, 31, 0",
    "    li 0, 1056",
    "    stvx 30, 31, 0",
    "    li 0, 1072",
    "    stvx 31, 31, 0",
    "    mfvscr 0",
    "    li 0, 1088",
    "    stvx 0, 31, 0",
    // rt_sigprocmask(SIG_BLOCK, NULL, &mask, 8): reads the mask.
    "    li 0, 174",
    "    li 3, 0",
    "    li 4, 0",
    "    addi 5, 31, 304",
    "    li 6, 8",
    "    sc",
    "    mr 3, 31",
    "    addi 1, 31, -128",
    "    bl {landed}",
    "    nop",
    "    trap",
    ".popsection",
    neg = const -(std::mem::size_of::<Landed>() as i64),
    landed = sym super::crust_test_landed,
);

extern "C" {
    fn crust_test_landing();
}

/// Where the frame sends the thread.
pub fn landing_address() -> u64 {
    crust_test_landing as *const () as u64
}

fn pattern(seed: u8, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = seed.wrapping_mul(31).wrapping_add((i as u8).wrapping_mul(7)) | 1;
    }
}

/// Distinct values in every register; r1 and nip as given, r2 (TOC) and r13 (thread
/// pointer) the live ones, which the check function needs.
pub fn chosen_regs(stack_top: u64, landing: u64) -> ThreadRegs<Regs> {
    let toc: u64;
    // SAFETY: reading r2 has no side effects.
    unsafe { std::arch::asm!("mr {}, 2", out(reg) toc, options(nomem, nostack, preserves_flags)) };
    let mut gpr = Regs { nip: landing, msr: MSR, ctr: 0x1122_3344_5566_7788, link: 0x8877_6655_4433_2211, xer: XER, ccr: CR, ..Default::default() };
    for (i, value) in gpr.gpr.iter_mut().enumerate() {
        *value = 0x0123_4567_89ab_cdefu64.rotate_left(i as u32 * 5) ^ ((i as u64) << 56);
    }
    (gpr.gpr[1], gpr.gpr[2], gpr.gpr[13]) = (stack_top, toc, HostArch::thread_pointer());
    gpr.orig_gpr3 = gpr.gpr[3];
    let mut ext = vec![0u8; ext::SIZE];
    ext[ext::FLAGS..ext::FLAGS + 8].copy_from_slice(&(ext::HAS_VMX | ext::HAS_VSX).to_le_bytes());
    pattern(0x21, &mut ext[ext::FPR..ext::FPR + 256]);
    ext[ext::FPR + 256..ext::FPR + 264].copy_from_slice(&FPSCR.to_le_bytes());
    pattern(0x43, &mut ext[ext::VMX..ext::VMX + 512]);
    ext[ext::VMX + 512..ext::VMX + 516].copy_from_slice(&VSCR.to_le_bytes());
    ext[ext::VMX + 528..ext::VMX + 532].copy_from_slice(&VRSAVE.to_le_bytes());
    pattern(0x65, &mut ext[ext::VSX..ext::VSX + 256]);
    ThreadRegs { gpr, ext }
}

fn le64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// The first register whose landed value differs from the frame's.
pub fn first_mismatch(l: &Landed, e: &Expected) -> Option<&'static str> {
    let r = &e.regs.gpr;
    let x = &e.regs.ext;
    let gpr_equal = |from: usize, to: usize| l.gpr[from..to] == r.gpr[from..to];
    let fpr_equal = (0..32).all(|i| l.fpr[i] == le64(x, ext::FPR + i * 8));
    let vr_equal = (0..32).all(|i| l.vr[i] == x[ext::VMX + i * 16..ext::VMX + i * 16 + 16]);
    // stxvd2x stores doubleword 0 (the FPR) at +0 and doubleword 1 at +8.
    let vsx_equal = (0..32).all(|i| l.vsr[i][8..] == x[ext::VSX + i * 8..ext::VSX + i * 8 + 8]);
    let vscr_equal = l.vscr == x[ext::VMX + 512..ext::VMX + 528];
    first([
        ("r0..r7", gpr_equal(0, 8)),
        ("r8..r15", gpr_equal(8, 16)),
        ("r16..r23", gpr_equal(16, 24)),
        ("r24..r31", gpr_equal(24, 32)),
        ("lr", l.lr == r.link),
        ("ctr", l.ctr == r.ctr),
        ("cr", l.cr & 0xffff_ffff == r.ccr),
        ("xer", l.xer & 0xffff_ffff == r.xer),
        ("signal mask", l.mask == e.mask),
        ("fpscr", l.fpscr & 0xffff_ffff == FPSCR),
        ("fpr0..fpr31", fpr_equal),
        ("vr0..vr31", vr_equal),
        ("vrsave", l.vrsave as u32 == VRSAVE),
        ("vsx low halves", vsx_equal),
        ("vscr", vscr_equal || e.qemu),
    ])
}
