//! s390x: r0..r15, a0..a15, the condition code, fpc, f0..f15, v0..v31 and the signal
//! mask.

use super::{first, Expected};
use crust_arch::s390x::{ext, Regs};
use crust_arch::{Host, HostArch, ThreadRegs};

/// What the landing routine stores.
#[repr(C, align(16))]
pub struct Landed {
    gprs: [u64; 16],
    /// r1 after `ipm`: condition code and program mask in bits 28..31 and 24..27.
    cc: u64,
    mask: u64,
    acrs: [u32; 16],
    fpc: u32,
    _pad: u32,
    fprs: [u64; 16],
    _pad2: u64,
    v: [[u8; 16]; 32],
}

/// A 64-bit user PSW (DAT, I/O, external, machine check, problem state, EA, BA) with
/// condition code 2.
const PSW_MASK: u64 = 0x0705_0001_8000_0000 | 2 << 44;
/// Round towards minus infinity.
const FPC: u32 = 0x0000_0003;

/// The frame is read where rt_sigreturn expects it, on Linux and in qemu-user.
pub const QEMU_SP_OFFSET: u64 = 0;
pub const QEMU_GAPS: &[&str] = &[];

std::arch::global_asm!(
    ".pushsection .text.crust_test_landing,\"ax\",@progbits",
    ".globl crust_test_landing",
    "crust_test_landing:",
    "    stmg %r0, %r15, {neg}(%r15)",
    "    lay %r15, {neg}(%r15)",
    "    ipm %r1",
    "    stg %r1, 128(%r15)",
    "    stam %a0, %a15, 144(%r15)",
    "    stfpc 208(%r15)",
    "    std %f0, 216(%r15)",
    "    std %f1, 224(%r15)",
    "    std %f2, 232(%r15)",
    "    std %f3, 240(%r15)",
    "    std %f4, 248(%r15)",
    "    std %f5, 256(%r15)",
    "    std %f6, 264(%r15)",
    "    std %f7, 272(%r15)",
    "    std %f8, 280(%r15)",
    "    std %f9, 288(%r15)",
    "    std %f10, 296(%r15)",
    "    std %f11, 304(%r15)",
    "    std %f12, 312(%r15)",
    "    std %f13, 320(%r15)",
    "    std %f14, 328(%r15)",
    "    std %f15, 336(%r15)",
    // The vector facility (z13): the target's baseline (z10) lacks it.
    "    .machine push",
    "    .machine z13",
    "    vstm %v0, %v15, 352(%r15)",
    "    vstm %v16, %v31, 608(%r15)",
    "    .machine pop",
    // rt_sigprocmask(SIG_BLOCK, NULL, &mask, 8): reads the mask.
    "    lghi %r2, 0",
    "    lghi %r3, 0",
    "    la %r4, 136(%r15)",
    "    lghi %r5, 8",
    "    svc 175",
    "    lgr %r2, %r15",
    "    lay %r15, -160(%r15)",
    "    brasl %r14, {landed}",
    "    .short 0",
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

/// Distinct values in every register; r15 and the PSW address as given, a0/a1 (the
/// thread pointer) the live ones, which the check function needs.
pub fn chosen_regs(stack_top: u64, landing: u64) -> ThreadRegs<Regs> {
    let mut gpr = Regs { psw_mask: PSW_MASK, psw_addr: landing, ..Default::default() };
    for (i, value) in gpr.gprs.iter_mut().enumerate() {
        *value = 0x0123_4567_89ab_cdefu64.rotate_left(i as u32 * 5) ^ ((i as u64) << 56);
    }
    for (i, value) in gpr.acrs.iter_mut().enumerate() {
        *value = 0x1357_9bdf_u32.rotate_left(i as u32 * 3);
    }
    let thread_pointer = HostArch::thread_pointer();
    gpr.gprs[15] = stack_top;
    (gpr.acrs[0], gpr.acrs[1]) = ((thread_pointer >> 32) as u32, thread_pointer as u32);
    gpr.orig_gpr2 = gpr.gprs[2];
    let mut ext = vec![0u8; ext::SIZE];
    ext[ext::FLAGS..ext::FLAGS + 8].copy_from_slice(&ext::HAS_VXRS.to_be_bytes());
    ext[ext::FPR..ext::FPR + 8].copy_from_slice(&(u64::from(FPC) << 32).to_be_bytes());
    for (i, byte) in ext[ext::FPR + 8..].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(7).wrapping_add(0x29) | 1;
    }
    ThreadRegs { gpr, ext }
}

/// The first register whose landed value differs from the frame's.
pub fn first_mismatch(l: &Landed, e: &Expected) -> Option<&'static str> {
    let r = &e.regs.gpr;
    let x = &e.regs.ext;
    let fpr = |i: usize| &x[ext::FPR + 8 + i * 8..ext::FPR + 16 + i * 8];
    let fprs_equal = (0..16).all(|i| l.fprs[i].to_be_bytes() == fpr(i));
    let low_equal = (0..16).all(|i| l.v[i][..8] == *fpr(i) && l.v[i][8..] == x[ext::VXRS_LOW + i * 8..ext::VXRS_LOW + i * 8 + 8]);
    let high_equal = (16..32).all(|i| l.v[i] == x[ext::VXRS_HIGH + (i - 16) * 16..ext::VXRS_HIGH + (i - 16) * 16 + 16]);
    first([
        ("r0..r7", l.gprs[..8] == r.gprs[..8]),
        ("r8..r15", l.gprs[8..] == r.gprs[8..]),
        ("a0..a15", l.acrs == r.acrs),
        ("condition code", (l.cc >> 28) & 3 == (r.psw_mask >> 44) & 3),
        ("signal mask", l.mask == e.mask),
        ("fpc", l.fpc == FPC),
        ("f0..f15", fprs_equal),
        ("v0..v15", low_equal),
        ("v16..v31", high_equal),
    ])
}
