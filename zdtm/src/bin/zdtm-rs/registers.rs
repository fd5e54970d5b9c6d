//! General-purpose registers held across the dump inside a Rust `asm!` loop.
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

/// Only x86_64 has the asm block so far.
#[cfg(not(target_arch = "x86_64"))]
pub fn gpr_asm(test: &mut Test) -> Result<(), String> {
    test.skip("no asm block for this architecture yet")
}
