//! aarch64: x0..x30, sp, the condition flags, v0..v31, fpsr, fpcr and the signal mask.

use super::{first, Expected};
use crust_arch::aarch64::{ext, Regs};
use crust_arch::ThreadRegs;

/// What the landing routine stores.
#[repr(C, align(16))]
pub struct Landed {
    x: [u64; 31],
    sp: u64,
    nzcv: u64,
    fpsr: u64,
    fpcr: u64,
    mask: u64,
    v: [[u8; 16]; 32],
}

/// N and C set, EL0t, no exception masks.
const PSTATE: u64 = 0xa000_0000;
/// Cumulative exception flags IOC, OFC, IXC and QC raised.
const FPSR: u32 = 0x0800_0015;
/// Flush to zero, default NaN, round towards plus infinity.
const FPCR: u32 = 0x0340_0000;

/// The frame is read where rt_sigreturn expects it, on Linux and in qemu-user.
pub const QEMU_SP_OFFSET: u64 = 0;
pub const QEMU_GAPS: &[&str] = &[];

std::arch::global_asm!(
    ".pushsection .text.crust_test_landing,\"ax\",%progbits",
    ".globl crust_test_landing",
    "crust_test_landing:",
    "    sub sp, sp, #{size}",
    "    stp x0, x1, [sp, #0]",
    "    stp x2, x3, [sp, #16]",
    "    stp x4, x5, [sp, #32]",
    "    stp x6, x7, [sp, #48]",
    "    stp x8, x9, [sp, #64]",
    "    stp x10, x11, [sp, #80]",
    "    stp x12, x13, [sp, #96]",
    "    stp x14, x15, [sp, #112]",
    "    stp x16, x17, [sp, #128]",
    "    stp x18, x19, [sp, #144]",
    "    stp x20, x21, [sp, #160]",
    "    stp x22, x23, [sp, #176]",
    "    stp x24, x25, [sp, #192]",
    "    stp x26, x27, [sp, #208]",
    "    stp x28, x29, [sp, #224]",
    "    str x30, [sp, #240]",
    "    mrs x0, nzcv",
    "    str x0, [sp, #256]",
    "    add x0, sp, #{size}",
    "    str x0, [sp, #248]",
    "    mrs x0, fpsr",
    "    str x0, [sp, #264]",
    "    mrs x0, fpcr",
    "    str x0, [sp, #272]",
    "    add x0, sp, #288",
    "    st1 {{v0.16b, v1.16b, v2.16b, v3.16b}}, [x0], #64",
    "    st1 {{v4.16b, v5.16b, v6.16b, v7.16b}}, [x0], #64",
    "    st1 {{v8.16b, v9.16b, v10.16b, v11.16b}}, [x0], #64",
    "    st1 {{v12.16b, v13.16b, v14.16b, v15.16b}}, [x0], #64",
    "    st1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [x0], #64",
    "    st1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [x0], #64",
    "    st1 {{v24.16b, v25.16b, v26.16b, v27.16b}}, [x0], #64",
    "    st1 {{v28.16b, v29.16b, v30.16b, v31.16b}}, [x0], #64",
    // rt_sigprocmask(SIG_BLOCK, NULL, &mask, 8): reads the mask.
    "    mov x0, #0",
    "    mov x1, #0",
    "    add x2, sp, #280",
    "    mov x3, #8",
    "    mov x8, #135",
    "    svc #0",
    "    mov x0, sp",
    "    bl {landed}",
    "    brk #0",
    ".popsection",
    size = const std::mem::size_of::<Landed>(),
    landed = sym super::crust_test_landed,
);

extern "C" {
    fn crust_test_landing();
}

/// Where the frame sends the thread.
pub fn landing_address() -> u64 {
    crust_test_landing as *const () as u64
}

/// Distinct values in every register; sp and pc as given.
pub fn chosen_regs(stack_top: u64, landing: u64) -> ThreadRegs<Regs> {
    let mut x = [0u64; 31];
    for (i, value) in x.iter_mut().enumerate() {
        *value = 0x0123_4567_89ab_cdefu64.rotate_left(i as u32 * 5) ^ ((i as u64) << 56);
    }
    let gpr = Regs { x, sp: stack_top, pc: landing, pstate: PSTATE };
    let mut ext = vec![0u8; ext::SIZE];
    for (i, byte) in ext[ext::FPSIMD..ext::FPSIMD + 512].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(7).wrapping_add(0x31) | 1;
    }
    ext[ext::FPSIMD + 512..ext::FPSIMD + 516].copy_from_slice(&FPSR.to_le_bytes());
    ext[ext::FPSIMD + 516..ext::FPSIMD + 520].copy_from_slice(&FPCR.to_le_bytes());
    ThreadRegs { gpr, ext }
}

/// The first register whose landed value differs from the frame's.
pub fn first_mismatch(l: &Landed, e: &Expected) -> Option<&'static str> {
    let r = &e.regs.gpr;
    let v = &e.regs.ext[ext::FPSIMD..ext::FPSIMD + 512];
    let x_equal = |from: usize, to: usize| l.x[from..to] == r.x[from..to];
    let v_equal = (0..32).all(|i| l.v[i] == v[i * 16..i * 16 + 16]);
    first([
        ("x0..x7", x_equal(0, 8)),
        ("x8..x15", x_equal(8, 16)),
        ("x16..x23", x_equal(16, 24)),
        ("x24..x30", x_equal(24, 31)),
        ("sp", l.sp == r.sp),
        ("nzcv", l.nzcv == r.pstate & 0xf000_0000),
        ("signal mask", l.mask == e.mask),
        ("fpsr", l.fpsr as u32 == FPSR),
        ("fpcr", l.fpcr as u32 == FPCR),
        ("v0..v31", v_equal),
    ])
}
