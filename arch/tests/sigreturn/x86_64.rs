//! x86_64: every GPR, the status flags, x87, SSE, AVX, AVX-512 (opmask, upper ZMM
//! halves, zmm16..31) and PKRU as far as the CPU has them, and the signal mask.

use super::{first, Expected};
use crust_arch::x86_64::{xsave, Regs};
use crust_arch::ThreadRegs;
use std::sync::OnceLock;

/// What the landing routine stores: rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8..r15,
/// rflags, the signal mask, and an XSAVE image (x87 to PKRU).
#[repr(C, align(64))]
pub struct Landed {
    gpr: [u64; 16],
    flags: u64,
    mask: u64,
    _pad: [u64; 6],
    xsave: [u8; 4096],
}

/// The flags rt_sigreturn restores and the test sets: CF, PF, ZF, SF, DF, OF (not TF,
/// AC or RF, which would trap or fault).
const FLAGS_CHOSEN: u64 = 0x1 | 0x4 | 0x40 | 0x80 | 0x400 | 0x800;
/// x87 control word (53-bit precision) and MXCSR (flush to zero, denormals are zero,
/// all exceptions masked, the invalid flag raised): not the defaults.
const FCW: u16 = 0x027f;
const MXCSR: u32 = 0x9fc1;
/// PKRU with key 1 allowed (the default denies keys 1..15); key 0 stays allowed.
const PKRU: u32 = 0x5555_5550;
/// The XSAVE components the test fills, when the CPU has them: AVX, AVX-512 opmask,
/// ZMM_Hi256, Hi16_ZMM, PKRU.
const COMPONENTS: [(u32, &str); 5] =
    [(2, "ymm upper halves"), (5, "opmask k0..k7"), (6, "zmm upper halves"), (7, "zmm16..zmm31"), (9, "pkru")];

/// The frame is read where rt_sigreturn expects it (x86_64 never runs under qemu here).
pub const QEMU_SP_OFFSET: u64 = 0;
pub const QEMU_GAPS: &[&str] = &[];

/// (bit, offset, size) of the components the test filled, set before the fork (the
/// check must not allocate).
static FILLED: OnceLock<Vec<(u32, usize, usize)>> = OnceLock::new();

std::arch::global_asm!(
    ".pushsection .text.crust_test_landing,\"ax\",@progbits",
    ".globl crust_test_landing",
    "crust_test_landing:",
    // The flags first, before anything changes them; rax into the red zone.
    "    pushfq",
    "    mov [rsp - 8], rax",
    "    lea rax, [rsp - 16 - {size}]",
    "    and rax, -64",
    "    mov [rax + 8], rbx",
    "    mov [rax + 16], rcx",
    "    mov [rax + 24], rdx",
    "    mov [rax + 32], rsi",
    "    mov [rax + 40], rdi",
    "    mov [rax + 48], rbp",
    "    mov [rax + 64], r8",
    "    mov [rax + 72], r9",
    "    mov [rax + 80], r10",
    "    mov [rax + 88], r11",
    "    mov [rax + 96], r12",
    "    mov [rax + 104], r13",
    "    mov [rax + 112], r14",
    "    mov [rax + 120], r15",
    "    mov rbx, [rsp - 8]",
    "    mov [rax], rbx",
    "    pop rbx",
    "    mov [rax + 128], rbx",
    "    mov [rax + 56], rsp",
    "    mov rbx, rax",
    "    mov rsp, rax",
    // x87 to PKRU (bits 0..9), not AMX.
    "    mov eax, 0x2ff",
    "    xor edx, edx",
    "    xsave [rbx + 192]",
    // rt_sigprocmask(SIG_BLOCK, NULL, &mask, 8): reads the mask.
    "    mov eax, 14",
    "    xor edi, edi",
    "    xor esi, esi",
    "    lea rdx, [rbx + 136]",
    "    mov r10d, 8",
    "    syscall",
    "    cld",
    "    mov rdi, rbx",
    "    call {landed}",
    "    ud2",
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

fn pattern(seed: u8, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = seed.wrapping_mul(31).wrapping_add((i as u8).wrapping_mul(7)) | 1;
    }
}

/// XCR0: the XSAVE components the OS enabled.
fn xcr0() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: XGETBV(0) reads XCR0; every x86_64 CPU Linux runs on with XSAVE has it.
    unsafe { std::arch::asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") high, options(nomem, nostack)) };
    u64::from(high) << 32 | u64::from(low)
}

/// Distinct values in every register; rsp and rip as given, cs and ss the live ones.
pub fn chosen_regs(stack_top: u64, landing: u64) -> ThreadRegs<Regs> {
    let (cs, ss): (u64, u64);
    // SAFETY: reading segment selectors has no side effects.
    unsafe { std::arch::asm!("mov {0:x}, cs", "mov {1:x}, ss", out(reg) cs, out(reg) ss, options(nomem, nostack)) };
    let value = |i: u64| 0x0123_4567_89ab_cdefu64.rotate_left(i as u32 * 5) ^ (i << 56);
    let gpr = Regs {
        ax: value(0),
        bx: value(1),
        cx: value(2),
        dx: value(3),
        si: value(4),
        di: value(5),
        bp: value(6),
        r8: value(8),
        r9: value(9),
        r10: value(10),
        r11: value(11),
        r12: value(12),
        r13: value(13),
        r14: value(14),
        r15: value(15),
        sp: stack_top,
        ip: landing,
        flags: 0x202 | FLAGS_CHOSEN,
        cs: cs & 0xffff,
        ss: ss & 0xffff,
        orig_ax: u64::MAX,
        ..Default::default()
    };

    let layout = xsave::host_layout();
    let xcr0 = xcr0();
    let filled: Vec<(u32, usize, usize)> =
        layout.iter().copied().filter(|&(bit, _, _)| xcr0 & (1 << bit) != 0 && COMPONENTS.iter().any(|c| c.0 == bit)).collect();
    let size = filled.iter().map(|&(_, offset, len)| offset + len).max().unwrap_or(0).max(576);
    let mut ext = vec![0u8; size];
    ext[0..2].copy_from_slice(&FCW.to_le_bytes());
    ext[4] = 0xff; // abridged tag word: st0..st7 valid
    ext[24..28].copy_from_slice(&MXCSR.to_le_bytes());
    ext[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
    for st in 0..8 {
        pattern(0x10 + st as u8, &mut ext[32 + st * 16..32 + st * 16 + 10]);
    }
    pattern(0x40, &mut ext[160..416]);
    let xstate_bv = filled.iter().fold(0b11u64, |bv, &(bit, _, _)| bv | 1 << bit);
    ext[512..520].copy_from_slice(&xstate_bv.to_le_bytes());
    for &(bit, offset, len) in &filled {
        if bit == 9 {
            ext[offset..offset + 4].copy_from_slice(&PKRU.to_le_bytes());
        } else {
            pattern(0x50 + bit as u8, &mut ext[offset..offset + len]);
        }
    }
    // PKRU is 4 bytes in an 8-byte slot; only those 4 are compared.
    let _ = FILLED.set(filled.into_iter().map(|(bit, offset, len)| (bit, offset, if bit == 9 { 4 } else { len })).collect());
    ThreadRegs { gpr, ext }
}

/// The first register whose landed value differs from the frame's.
pub fn first_mismatch(l: &Landed, e: &Expected) -> Option<&'static str> {
    let r = &e.regs.gpr;
    let x = &e.regs.ext;
    let saved = &l.xsave;
    let filled: &[(u32, usize, usize)] = FILLED.get().map(Vec::as_slice).unwrap_or(&[]);
    let component = |bit: u32| {
        filled.iter().find(|c| c.0 == bit).is_none_or(|&(_, offset, len)| saved[offset..offset + len] == x[offset..offset + len])
    };
    let st_equal = (0..8).all(|st| saved[32 + st * 16..42 + st * 16] == x[32 + st * 16..42 + st * 16]);
    first([
        ("rax", l.gpr[0] == r.ax),
        ("rbx", l.gpr[1] == r.bx),
        ("rcx", l.gpr[2] == r.cx),
        ("rdx", l.gpr[3] == r.dx),
        ("rsi", l.gpr[4] == r.si),
        ("rdi", l.gpr[5] == r.di),
        ("rbp", l.gpr[6] == r.bp),
        ("rsp", l.gpr[7] == r.sp),
        ("r8", l.gpr[8] == r.r8),
        ("r9", l.gpr[9] == r.r9),
        ("r10", l.gpr[10] == r.r10),
        ("r11", l.gpr[11] == r.r11),
        ("r12", l.gpr[12] == r.r12),
        ("r13", l.gpr[13] == r.r13),
        ("r14", l.gpr[14] == r.r14),
        ("r15", l.gpr[15] == r.r15),
        ("rflags", l.flags & FLAGS_CHOSEN == r.flags & FLAGS_CHOSEN),
        ("signal mask", l.mask == e.mask),
        ("x87 control word", saved[0..2] == x[0..2]),
        ("x87 tag word", saved[4] == x[4]),
        ("mxcsr", saved[24..28] == x[24..28]),
        ("st0..st7", st_equal),
        ("xmm0..xmm15", saved[160..416] == x[160..416]),
        (COMPONENTS[0].1, component(COMPONENTS[0].0)),
        (COMPONENTS[1].1, component(COMPONENTS[1].0)),
        (COMPONENTS[2].1, component(COMPONENTS[2].0)),
        (COMPONENTS[3].1, component(COMPONENTS[3].0)),
        (COMPONENTS[4].1, component(COMPONENTS[4].0)),
    ])
}
