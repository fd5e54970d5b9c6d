//! General-purpose registers held across the dump inside a Rust `asm!` loop.
//!
//! One asm block per architecture (x86_64, aarch64, ppc64le, s390x).
//!
//! Unsafe: one asm block that loads registers, makes the write/close syscalls on the
//! ready pipe, spins on the SIGTERM flag and stores the registers; every register it
//! touches is declared, and it reads/writes only the two arrays passed in.
#![allow(unsafe_code)]

use crust_zdtm::testlib::{random_u64, Test};

/// Random values in r10 and r12-r15 (rbx and rbp belong to LLVM; the rest carry the
/// syscall arguments and operands) are loaded, the ready message is sent from inside the same asm block, the block spins
/// until SIGTERM without touching them, then stores them for comparison.
#[cfg(target_arch = "x86_64")]
pub fn gpr_asm(test: &mut Test) -> Result<(), String> {
    // words[0..5]: the values loaded; words[5..10]: the values found after the dump.
    let mut words = [0u64; 10];
    for word in &mut words[..5] {
        *word = random_u64();
    }
    let (fd, message) = test.take_ready_for_asm();
    let flag = test.term_flag_address();
    // SAFETY: reads and writes only `words` (10 words); the syscalls are write and close
    // on the ready pipe with a live message buffer; all clobbered registers are declared.
    unsafe {
        std::arch::asm!(
            "mov r10, [{words}]",
            "mov r12, [{words} + 8]",
            "mov r13, [{words} + 16]",
            "mov r14, [{words} + 24]",
            "mov r15, [{words} + 32]",
            "test rdi, rdi",
            "js 3f",
            "mov eax, 1",
            "syscall",
            "mov eax, 3",
            "syscall",
            "3:",
            "pause",
            "cmp dword ptr [{flag}], 0",
            "je 3b",
            "mov [{words} + 40], r10",
            "mov [{words} + 48], r12",
            "mov [{words} + 56], r13",
            "mov [{words} + 64], r14",
            "mov [{words} + 72], r15",
            words = in(reg) words.as_mut_ptr(),
            flag = in(reg) flag,
            in("rdi") fd as i64,
            in("rsi") message.as_ptr(),
            in("rdx") message.len(),
            out("rax") _, out("rcx") _, out("r11") _,
            out("r10") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
    let names = ["r10", "r12", "r13", "r14", "r15"];
    for ((name, want), got) in names.iter().zip(&words[..5]).zip(&words[5..]) {
        if want != got {
            return Err(format!("{name} is {got:#018x}, was {want:#018x}"));
        }
    }
    Ok(())
}

/// Random values in x20-x24 (x19 and x29 belong to LLVM, x18 to the platform): as on
/// x86_64, loaded, the ready message written and its pipe closed (`svc #0`, number in
/// x8), a spin until SIGTERM, then stored for comparison.
#[cfg(target_arch = "aarch64")]
pub fn gpr_asm(test: &mut Test) -> Result<(), String> {
    let mut words = [0u64; 10];
    for word in &mut words[..5] {
        *word = random_u64();
    }
    let (fd, message) = test.take_ready_for_asm();
    let flag = test.term_flag_address();
    // SAFETY: reads and writes only `words` (10 words); the syscalls are write and close
    // on the ready pipe with a live message buffer; all clobbered registers are declared.
    unsafe {
        std::arch::asm!(
            "ldr x20, [{words}]",
            "ldr x21, [{words}, #8]",
            "ldr x22, [{words}, #16]",
            "ldr x23, [{words}, #24]",
            "ldr x24, [{words}, #32]",
            "tbnz x0, #63, 3f",
            "mov x9, x0",
            "mov x8, #64",
            "svc #0",
            "mov x0, x9",
            "mov x8, #57",
            "svc #0",
            "3:",
            "yield",
            "ldr w10, [{flag}]",
            "cbz w10, 3b",
            "str x20, [{words}, #40]",
            "str x21, [{words}, #48]",
            "str x22, [{words}, #56]",
            "str x23, [{words}, #64]",
            "str x24, [{words}, #72]",
            words = in(reg) words.as_mut_ptr(),
            flag = in(reg) flag,
            inout("x0") fd as i64 => _,
            in("x1") message.as_ptr(),
            in("x2") message.len(),
            out("x8") _, out("x9") _, out("x10") _,
            out("x20") _, out("x21") _, out("x22") _, out("x23") _, out("x24") _,
        );
    }
    compare(&["x20", "x21", "x22", "x23", "x24"], &words)
}

/// Random values in r14-r18 (callee-saved, untouched by `sc`): loaded, the ready message
/// written and its pipe closed (`sc`, number in r0, arguments from r3), a spin until
/// SIGTERM, then stored for comparison.
#[cfg(target_arch = "powerpc64")]
pub fn gpr_asm(test: &mut Test) -> Result<(), String> {
    let mut words = [0u64; 10];
    for word in &mut words[..5] {
        *word = random_u64();
    }
    let (fd, message) = test.take_ready_for_asm();
    let flag = test.term_flag_address();
    // SAFETY: reads and writes only `words` (10 words); the syscalls are write and close
    // on the ready pipe with a live message buffer; every register `sc` may change
    // (r0, r3-r12, cr0, ctr, xer) and every register loaded is declared.
    unsafe {
        std::arch::asm!(
            "ld 14, 0({words})",
            "ld 15, 8({words})",
            "ld 16, 16({words})",
            "ld 17, 24({words})",
            "ld 18, 32({words})",
            "cmpdi 3, 0",
            "blt 3f",
            "mr 19, 3",
            "li 0, 4",
            "sc",
            "mr 3, 19",
            "li 0, 6",
            "sc",
            "3:",
            "lwz 20, 0({flag})",
            "cmpwi 20, 0",
            "beq 3b",
            "std 14, 40({words})",
            "std 15, 48({words})",
            "std 16, 56({words})",
            "std 17, 64({words})",
            "std 18, 72({words})",
            words = in(reg_nonzero) words.as_mut_ptr(),
            flag = in(reg_nonzero) flag,
            inout("r3") fd as i64 => _,
            inout("r4") message.as_ptr() => _,
            inout("r5") message.len() => _,
            out("r0") _, out("r6") _, out("r7") _, out("r8") _, out("r9") _,
            out("r10") _, out("r11") _, out("r12") _,
            out("r14") _, out("r15") _, out("r16") _, out("r17") _, out("r18") _,
            out("r19") _, out("r20") _,
            out("ctr") _, out("xer") _, out("cr0") _,
        );
    }
    compare(&["r14", "r15", "r16", "r17", "r18"], &words)
}

/// Random values in r6-r10 (callee-saved): loaded, the ready message written and its
/// pipe closed (`svc 0`, number in r1, arguments from r2), a spin until SIGTERM, then
/// stored for comparison.
#[cfg(target_arch = "s390x")]
pub fn gpr_asm(test: &mut Test) -> Result<(), String> {
    let mut words = [0u64; 10];
    for word in &mut words[..5] {
        *word = random_u64();
    }
    let (fd, message) = test.take_ready_for_asm();
    let flag = test.term_flag_address();
    // SAFETY: reads and writes only `words` (10 words); the syscalls are write and close
    // on the ready pipe with a live message buffer; all clobbered registers are declared.
    unsafe {
        std::arch::asm!(
            "lg %r6, 0({words})",
            "lg %r7, 8({words})",
            "lg %r8, 16({words})",
            "lg %r9, 24({words})",
            "lg %r10, 32({words})",
            "ltgr %r2, %r2",
            "jl 3f",
            "lgr %r12, %r2",
            "lghi %r1, 4",
            "svc 0",
            "lgr %r2, %r12",
            "lghi %r1, 6",
            "svc 0",
            "3:",
            "lt %r0, 0({flag})",
            "jz 3b",
            "stg %r6, 40({words})",
            "stg %r7, 48({words})",
            "stg %r8, 56({words})",
            "stg %r9, 64({words})",
            "stg %r10, 72({words})",
            words = in(reg_addr) words.as_mut_ptr(),
            flag = in(reg_addr) flag,
            inout("r2") fd as i64 => _,
            in("r3") message.as_ptr(),
            in("r4") message.len(),
            out("r0") _, out("r1") _, out("r12") _,
            out("r6") _, out("r7") _, out("r8") _, out("r9") _, out("r10") _,
        );
    }
    compare(&["r6", "r7", "r8", "r9", "r10"], &words)
}

/// `words[0..5]` (loaded) against `words[5..10]` (found after the dump), by register name.
#[cfg(any(target_arch = "aarch64", target_arch = "powerpc64", target_arch = "s390x"))]
fn compare(names: &[&str], words: &[u64; 10]) -> Result<(), String> {
    for ((name, want), got) in names.iter().zip(&words[..5]).zip(&words[5..]) {
        if want != got {
            return Err(format!("{name} is {got:#018x}, was {want:#018x}"));
        }
    }
    Ok(())
}

/// Architectures without an asm block.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "powerpc64", target_arch = "s390x")))]
pub fn gpr_asm(test: &mut Test) -> Result<(), String> {
    test.skip("no asm block for this architecture yet")
}
