//! aarch64 host side: ptrace register access (NT_PRSTATUS, NT_PRFPREG, NT_ARM_TLS and
//! the pointer-authentication key regsets) and the restorer blob.
//!
//! Guarantees: every ptrace call passes buffers that outlive the call and whose size the
//! kernel is told; the restorer blob is position independent, uses no stack and no
//! memory but the op program it is given (and, for its SIGRETURN op, the frame the
//! op points at).
#![allow(unsafe_code)]

use super::{ext, Aarch64, Regs, REGS_WORDS};
use crate::{Host, HostError, RestorerOp, ThreadRegs};

const NT_PRSTATUS: libc::c_int = 1;
const NT_PRFPREG: libc::c_int = 2;
const NT_ARM_TLS: libc::c_int = 0x401;
const NT_ARM_PACA_KEYS: libc::c_int = 0x407;
const NT_ARM_PACG_KEYS: libc::c_int = 0x408;
const NT_ARM_PAC_ENABLED_KEYS: libc::c_int = 0x40a;

// The restorer: x0 = address of the op program (an array of RestorerOp, 80 bytes each),
// kept in x20. For each op: load nr into x8 and six args into x0..x5, svc, store x0,
// check it. At the END marker x19 = 0 and brk; on a failed check x19 = 1 and brk, with
// x20 on the op and x0 its result; in a thread just created by a CHECK_CLONE op (result
// 0) x19 = 2 and brk. The program's start stays in x21: CHECK_BRANCH_POSITIVE
// continues at op `expect` when the result is > 0. SIGRETURN: sp = args[0],
// rt_sigreturn (if it ever returns, the op failed).
std::arch::global_asm!(
    ".pushsection .text.crust_restorer,\"ax\",%progbits",
    ".balign 16",
    ".globl crust_restorer_start",
    "crust_restorer_start:",
    "    mov x20, x0",
    "    mov x21, x0",
    "2:",
    "    ldr x8, [x20]",
    "    cmn x8, #1",
    "    b.eq 5f",
    "    cmn x8, #2",
    "    b.eq 9f",
    "    ldp x0, x1, [x20, #8]",
    "    ldp x2, x3, [x20, #24]",
    "    ldp x4, x5, [x20, #40]",
    "    svc #0",
    "    str x0, [x20, #72]",
    "    ldr x9, [x20, #56]",
    "    cmp x9, #2",
    "    b.eq 4f",
    "    cmp x9, #1",
    "    b.eq 3f",
    "    cmp x9, #{branch}",
    "    b.eq 8f",
    "    cmp x9, #3",
    "    b.ne 7f",
    "    cbnz x0, 7f",
    // A new thread: trap at once for the tracer.
    "    mov x19, #2",
    "    brk #0",
    "7:",
    "    ldr x10, [x20, #64]",
    "    cmp x0, x10",
    "    b.ne 6f",
    "    b 4f",
    "3:",
    // An error is -4095..-1: x0 + 4095 carries out.
    "    cmn x0, #4095",
    "    b.hs 6f",
    "4:",
    "    add x20, x20, #80",
    "    b 2b",
    "5:",
    "    mov x19, #0",
    "    brk #0",
    "6:",
    "    mov x19, #1",
    "    brk #0",
    // CHECK_BRANCH_POSITIVE: a signed result > 0 goes to op `expect`.
    "8:",
    "    cmp x0, #0",
    "    b.le 4b",
    "    ldr x10, [x20, #64]",
    "    mov x11, #80",
    "    madd x20, x10, x11, x21",
    "    b 2b",
    // SIGRETURN: the frame's context replaces this one.
    "9:",
    "    ldr x9, [x20, #8]",
    "    mov sp, x9",
    "    mov x8, #{nr_rt_sigreturn}",
    "    svc #0",
    "    str x0, [x20, #72]",
    "    b 6b",
    ".globl crust_restorer_syscall",
    "crust_restorer_syscall:",
    "    svc #0",
    "    brk #0",
    ".globl crust_restorer_end",
    "crust_restorer_end:",
    ".popsection",
    branch = const RestorerOp::CHECK_BRANCH_POSITIVE,
    nr_rt_sigreturn = const super::NR_RT_SIGRETURN,
);

use crate::regset::{read_regset, write_regset};

/// The optional regsets: (note, offset in ext, size, flag, name).
const OPTIONAL: [(libc::c_int, usize, usize, u64, &str); 3] = [
    (NT_ARM_PACA_KEYS, ext::PAC_ADDRESS, ext::PAC_ADDRESS_SIZE, ext::HAS_PAC_ADDRESS, "NT_ARM_PACA_KEYS"),
    (NT_ARM_PACG_KEYS, ext::PAC_GENERIC, ext::PAC_GENERIC_SIZE, ext::HAS_PAC_GENERIC, "NT_ARM_PACG_KEYS"),
    (NT_ARM_PAC_ENABLED_KEYS, ext::PAC_ENABLED, 8, ext::HAS_PAC_ENABLED, "NT_ARM_PAC_ENABLED_KEYS"),
];

impl Host for Aarch64 {
    fn read_regs(tid: i32) -> Result<ThreadRegs<Regs>, HostError> {
        let mut gpr = [0u8; REGS_WORDS * 8];
        read_regset(tid, NT_PRSTATUS, &mut gpr)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_PRSTATUS)", tid, source })?;
        let mut x = vec![0u8; ext::SIZE];
        read_regset(tid, NT_PRFPREG, &mut x[ext::FPSIMD..ext::FPSIMD + ext::FPSIMD_SIZE])
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_PRFPREG)", tid, source })?;
        read_regset(tid, NT_ARM_TLS, &mut x[ext::TLS..ext::TLS + 8])
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_ARM_TLS)", tid, source })?;
        // Pointer authentication exists only on some CPUs (EINVAL/ENODEV elsewhere).
        let mut flags = 0u64;
        for (note, offset, size, flag, _) in OPTIONAL {
            if read_regset(tid, note, &mut x[offset..offset + size]).is_ok() {
                flags |= flag;
            }
        }
        x[ext::FLAGS..ext::FLAGS + 8].copy_from_slice(&flags.to_le_bytes());
        let gpr = <Aarch64 as crate::Abi>::regs_from_bytes(&gpr).expect("buffer has REGS_WORDS words");
        Ok(ThreadRegs { gpr, ext: x })
    }

    fn write_gpr(tid: i32, regs: &Regs) -> Result<(), HostError> {
        let bytes = <Aarch64 as crate::Abi>::regs_to_bytes(regs);
        write_regset(tid, NT_PRSTATUS, &bytes)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_PRSTATUS)", tid, source })
    }

    fn write_ext(tid: i32, x: &[u8]) -> Result<(), HostError> {
        if x.len() < ext::SIZE {
            return Err(HostError::Ptrace {
                op: "PTRACE_SETREGSET(NT_PRFPREG)",
                tid,
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        write_regset(tid, NT_PRFPREG, &x[ext::FPSIMD..ext::FPSIMD + ext::FPSIMD_SIZE])
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_PRFPREG)", tid, source })?;
        write_regset(tid, NT_ARM_TLS, &x[ext::TLS..ext::TLS + 8])
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_ARM_TLS)", tid, source })?;
        let flags = super::word_at(x, ext::FLAGS);
        for (note, offset, size, flag, name) in OPTIONAL {
            if flags & flag != 0 {
                write_regset(tid, note, &x[offset..offset + size])
                    .map_err(|source| HostError::Ptrace { op: name, tid, source })?;
            }
        }
        Ok(())
    }

    crate::restorer::host_restorer_methods!();

    fn thread_pointer() -> u64 {
        let pointer: u64;
        // SAFETY: reading tpidr_el0 has no side effects.
        unsafe { std::arch::asm!("mrs {}, tpidr_el0", out(reg) pointer, options(nostack, nomem, preserves_flags)) };
        pointer
    }

    fn enter_restorer(entry: u64, program: u64) -> ! {
        // SAFETY: the caller mapped the restorer blob at `entry` and a valid op program at
        // `program`; the blob never returns (it traps for the tracer).
        unsafe { std::arch::asm!("br {entry}", entry = in(reg) entry, in("x0") program, options(noreturn)) }
    }
}
