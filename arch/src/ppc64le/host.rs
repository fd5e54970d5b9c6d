//! ppc64le host side: ptrace register access (NT_PRSTATUS, NT_PRFPREG, NT_PPC_VMX,
//! NT_PPC_VSX) and the restorer blob.
//!
//! Guarantees: every ptrace call passes buffers that outlive the call and whose size the
//! kernel is told; the restorer blob is position independent, uses no stack and no
//! memory but the op program it is given (and, for its SIGRETURN op, the frame the
//! op points at).
#![allow(unsafe_code)]

use super::{ext, Ppc64le, Regs, REGSET_SIZE};
use crate::{Host, HostError, RestorerOp, ThreadRegs};

const NT_PRSTATUS: libc::c_int = 1;
const NT_PRFPREG: libc::c_int = 2;
const NT_PPC_VMX: libc::c_int = 0x100;
const NT_PPC_VSX: libc::c_int = 0x102;

// The restorer: r3 = address of the op program (an array of RestorerOp, 80 bytes each),
// kept in r15 (non-volatile across `sc`). For each op: nr into r0, six args into r3..r8,
// sc, turn an error (CR0.SO) into -errno, store r3, check it. At the END marker r14 = 0
// and trap; on a failed check r14 = 1 and trap, with r15 on the op and r3 its result; in
// a thread just created by a CHECK_CLONE op (result 0) r14 = 2 and trap. The program's
// start stays in r16: CHECK_BRANCH_POSITIVE continues at op `expect` when the result is
// > 0. SIGRETURN: r1 = args[0], rt_sigreturn (if it ever returns, the op failed).
std::arch::global_asm!(
    ".pushsection .text.crust_restorer,\"ax\",@progbits",
    ".balign 16",
    ".globl crust_restorer_start",
    "crust_restorer_start:",
    "    mr 15, 3",
    "    mr 16, 3",
    "2:",
    "    ld 0, 0(15)",
    "    cmpdi 0, -1",
    "    beq 5f",
    "    cmpdi 0, -2",
    "    beq 9f",
    "    ld 3, 8(15)",
    "    ld 4, 16(15)",
    "    ld 5, 24(15)",
    "    ld 6, 32(15)",
    "    ld 7, 40(15)",
    "    ld 8, 48(15)",
    "    sc",
    "    bns 8f",
    "    neg 3, 3",
    "8:",
    "    std 3, 72(15)",
    "    ld 9, 56(15)",
    "    cmpdi 9, 2",
    "    beq 4f",
    "    cmpdi 9, 1",
    "    beq 3f",
    "    cmpdi 9, {branch}",
    "    beq 10f",
    "    cmpdi 9, 3",
    "    bne 7f",
    "    cmpdi 3, 0",
    "    bne 7f",
    // A new thread: trap at once for the tracer.
    "    li 14, 2",
    "    trap",
    "7:",
    "    ld 10, 64(15)",
    "    cmpd 3, 10",
    "    bne 6f",
    "    b 4f",
    "3:",
    // An error is -4095..-1, i.e. unsigned >= -4095.
    "    li 10, -4095",
    "    cmpld 3, 10",
    "    bge 6f",
    "4:",
    "    addi 15, 15, 80",
    "    b 2b",
    "5:",
    "    li 14, 0",
    "    trap",
    "6:",
    "    li 14, 1",
    "    trap",
    // CHECK_BRANCH_POSITIVE: a signed result > 0 goes to op `expect`.
    "10:",
    "    cmpdi 3, 0",
    "    ble 4b",
    "    ld 10, 64(15)",
    "    mulli 10, 10, 80",
    "    add 15, 16, 10",
    "    b 2b",
    // SIGRETURN: the frame's context replaces this one.
    "9:",
    "    ld 1, 8(15)",
    "    li 0, {nr_rt_sigreturn}",
    "    sc",
    "    bns 11f",
    "    neg 3, 3",
    "11:",
    "    std 3, 72(15)",
    "    b 6b",
    ".globl crust_restorer_syscall",
    "crust_restorer_syscall:",
    "    sc",
    "    trap",
    ".globl crust_restorer_end",
    "crust_restorer_end:",
    ".popsection",
    branch = const RestorerOp::CHECK_BRANCH_POSITIVE,
    nr_rt_sigreturn = const super::NR_RT_SIGRETURN,
);

use crate::regset::{read_regset, write_regset};

/// The optional regsets: (note, offset in ext, size, flag, name).
const OPTIONAL: [(libc::c_int, usize, usize, u64, &str); 2] = [
    (NT_PPC_VMX, ext::VMX, ext::VMX_SIZE, ext::HAS_VMX, "PTRACE_SETREGSET(NT_PPC_VMX)"),
    (NT_PPC_VSX, ext::VSX, ext::VSX_SIZE, ext::HAS_VSX, "PTRACE_SETREGSET(NT_PPC_VSX)"),
];

impl Host for Ppc64le {
    fn read_regs(tid: i32) -> Result<ThreadRegs<Regs>, HostError> {
        let mut gpr = [0u8; REGSET_SIZE];
        read_regset(tid, NT_PRSTATUS, &mut gpr)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_PRSTATUS)", tid, source })?;
        let mut x = vec![0u8; ext::SIZE];
        read_regset(tid, NT_PRFPREG, &mut x[ext::FPR..ext::FPR + ext::FPR_SIZE])
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_PRFPREG)", tid, source })?;
        // Altivec and VSX exist on every POWER7+ CPU, but not on every ppc64.
        let mut flags = 0u64;
        for (note, offset, size, flag, _) in OPTIONAL {
            if read_regset(tid, note, &mut x[offset..offset + size]).is_ok() {
                flags |= flag;
            }
        }
        x[ext::FLAGS..ext::FLAGS + 8].copy_from_slice(&flags.to_le_bytes());
        let gpr = <Ppc64le as crate::Abi>::regs_from_bytes(&gpr).expect("buffer has REGSET_SIZE bytes");
        Ok(ThreadRegs { gpr, ext: x })
    }

    fn write_gpr(tid: i32, regs: &Regs) -> Result<(), HostError> {
        let bytes = <Ppc64le as crate::Abi>::regs_to_bytes(regs);
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
        write_regset(tid, NT_PRFPREG, &x[ext::FPR..ext::FPR + ext::FPR_SIZE])
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_PRFPREG)", tid, source })?;
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

    /// r13, which glibc's `__rseq_offset` is relative to.
    fn thread_pointer() -> u64 {
        let pointer: u64;
        // SAFETY: reading r13 has no side effects.
        unsafe { std::arch::asm!("mr {}, 13", out(reg) pointer, options(nostack, nomem, preserves_flags)) };
        pointer
    }

    fn enter_restorer(entry: u64, program: u64) -> ! {
        // SAFETY: the caller mapped the restorer blob at `entry` and a valid op program at
        // `program`; the blob never returns (it traps for the tracer).
        unsafe {
            std::arch::asm!(
                "mtctr {entry}",
                "bctr",
                entry = in(reg) entry,
                in("r3") program,
                options(noreturn)
            )
        }
    }
}
