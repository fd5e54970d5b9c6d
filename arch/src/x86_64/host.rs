//! x86_64 host side: ptrace register access and the restorer blob.
//!
//! Guarantees: every ptrace call passes buffers that outlive the call and whose size the
//! kernel is told; the restorer blob is position independent, uses no stack and no
//! memory but the op program it is given (and, for its SIGRETURN op, the frame the
//! op points at).
#![allow(unsafe_code)]

use super::{Regs, X86_64, REGS_WORDS};
use crate::{Host, HostError, RestorerOp, ThreadRegs};

const NT_PRSTATUS: libc::c_int = 1;
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Upper bound of the XSAVE area (AVX-512 + PKRU + AMX would be larger; 16 KiB covers all).
const XSTATE_MAX: usize = 16384;

// The restorer: rdi = address of the op program (an array of RestorerOp, 80 bytes each),
// kept in r13; rbx walks the ops. For each op: load nr and six args, syscall, store the
// result, check it. At the END marker set r12 = 0 and trap; on a failed check set r12 =
// 1 and trap, with rbx on the op; in a thread just created by a CHECK_CLONE op (result 0)
// set r12 = 2 and trap. CHECK_BRANCH_POSITIVE: a result > 0 continues at op `expect`.
// SIGRETURN: rsp = args[0], rt_sigreturn (if it ever returns, the op failed).
std::arch::global_asm!(
    ".pushsection .text.crust_restorer,\"ax\",@progbits",
    ".balign 16",
    ".globl crust_restorer_start",
    "crust_restorer_start:",
    "    mov rbx, rdi",
    "    mov r13, rdi",
    "2:",
    "    mov rax, [rbx]",
    "    cmp rax, -1",
    "    je 5f",
    "    cmp rax, {sigreturn_op}",
    "    je 9f",
    "    mov rdi, [rbx + 8]",
    "    mov rsi, [rbx + 16]",
    "    mov rdx, [rbx + 24]",
    "    mov r10, [rbx + 32]",
    "    mov r8, [rbx + 40]",
    "    mov r9, [rbx + 48]",
    "    syscall",
    "    mov [rbx + 72], rax",
    "    mov rcx, [rbx + 56]",
    "    cmp rcx, 2",
    "    je 4f",
    "    cmp rcx, 1",
    "    je 3f",
    "    cmp rcx, {branch}",
    "    je 8f",
    "    cmp rcx, 3",
    "    jne 7f",
    "    test rax, rax",
    "    jnz 7f",
    // A new thread: trap at once for the tracer.
    "    mov r12, 2",
    "    int3",
    "    ud2",
    "7:",
    "    cmp rax, [rbx + 64]",
    "    jne 6f",
    "    jmp 4f",
    "3:",
    "    cmp rax, -4095",
    "    jae 6f",
    "4:",
    "    add rbx, 80",
    "    jmp 2b",
    "5:",
    "    xor r12, r12",
    "    int3",
    "    ud2",
    "6:",
    "    mov r12, 1",
    "    int3",
    "    ud2",
    // CHECK_BRANCH_POSITIVE: a signed result > 0 goes to op `expect`.
    "8:",
    "    test rax, rax",
    "    jle 4b",
    "    imul rbx, [rbx + 64], 80",
    "    add rbx, r13",
    "    jmp 2b",
    // SIGRETURN: the frame's context replaces this one.
    "9:",
    "    mov rsp, [rbx + 8]",
    "    mov eax, {nr_rt_sigreturn}",
    "    syscall",
    "    mov [rbx + 72], rax",
    "    jmp 6b",
    ".globl crust_restorer_syscall",
    "crust_restorer_syscall:",
    "    syscall",
    "    int3",
    "    ud2",
    ".globl crust_restorer_end",
    "crust_restorer_end:",
    ".popsection",
    sigreturn_op = const RestorerOp::SIGRETURN as i64,
    branch = const RestorerOp::CHECK_BRANCH_POSITIVE,
    nr_rt_sigreturn = const super::NR_RT_SIGRETURN,
);

use crate::regset::{read_regset as get_regset, write_regset as set_regset};

impl Host for X86_64 {
    fn read_regs(tid: i32) -> Result<ThreadRegs<Regs>, HostError> {
        let mut gpr = [0u8; REGS_WORDS * 8];
        get_regset(tid, NT_PRSTATUS, &mut gpr)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_PRSTATUS)", tid, source })?;
        let mut ext = vec![0u8; XSTATE_MAX];
        let len = get_regset(tid, NT_X86_XSTATE, &mut ext)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_X86_XSTATE)", tid, source })?;
        ext.truncate(len);
        let gpr = <X86_64 as crate::Abi>::regs_from_bytes(&gpr).expect("buffer has REGS_WORDS words");
        Ok(ThreadRegs { gpr, ext })
    }

    fn write_gpr(tid: i32, regs: &Regs) -> Result<(), HostError> {
        let bytes = <X86_64 as crate::Abi>::regs_to_bytes(regs);
        set_regset(tid, NT_PRSTATUS, &bytes)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_PRSTATUS)", tid, source })
    }

    fn write_ext(tid: i32, ext: &[u8]) -> Result<(), HostError> {
        set_regset(tid, NT_X86_XSTATE, ext)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_X86_XSTATE)", tid, source })
    }

    crate::restorer::host_restorer_methods!();

    fn thread_pointer() -> u64 {
        let pointer: u64;
        // SAFETY: glibc's x86_64 TCB starts with a pointer to itself at fs:0; reading it
        // has no side effects.
        unsafe { std::arch::asm!("mov {}, fs:0", out(reg) pointer, options(nostack, readonly, preserves_flags)) };
        pointer
    }

    fn enter_restorer(entry: u64, program: u64) -> ! {
        // SAFETY: the caller mapped the restorer blob at `entry` and a valid op program at
        // `program`; the blob never returns (it traps for the tracer).
        unsafe {
            std::arch::asm!(
                "jmp {entry}",
                entry = in(reg) entry,
                in("rdi") program,
                options(noreturn)
            )
        }
    }
}
