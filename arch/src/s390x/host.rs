//! s390x host side: ptrace register access (NT_PRSTATUS, NT_S390_SYSTEM_CALL,
//! NT_PRFPREG, NT_S390_VXRS_LOW/HIGH) and the restorer blob.
//!
//! Guarantees: every ptrace call passes buffers that outlive the call and whose size the
//! kernel is told; the restorer blob is position independent, uses no stack and no
//! memory but the op program it is given (and, for its SIGRETURN op, the frame the
//! op points at).
#![allow(unsafe_code)]

use super::{ext, Regs, S390x, REGSET_SIZE};
use crate::{Host, HostError, RestorerOp, ThreadRegs};

const NT_PRSTATUS: libc::c_int = 1;
const NT_PRFPREG: libc::c_int = 2;
const NT_S390_SYSTEM_CALL: libc::c_int = 0x307;
const NT_S390_VXRS_LOW: libc::c_int = 0x309;
const NT_S390_VXRS_HIGH: libc::c_int = 0x30a;

// The restorer: r2 = address of the op program (an array of RestorerOp, 80 bytes each),
// kept in r9. For each op: nr into r1, six args into r2..r7 (for old_mmap, nr 90, r2
// points at the op's own six arguments: they are its `struct mmap_arg_struct`), svc 0,
// store r2, check it. At the END marker r8 = 0 and trap (0x0001, which the kernel turns
// into SIGTRAP for a traced task); on a failed check r8 = 1 and trap, with r9 on the op
// and r2 its result; in a thread just created by a CHECK_CLONE op (result 0) r8 = 2 and
// trap. The program's start stays in r10: CHECK_BRANCH_POSITIVE continues at op
// `expect` when the result is > 0. SIGRETURN: r15 = args[0], rt_sigreturn (if it ever
// returns, the op failed).
std::arch::global_asm!(
    ".pushsection .text.crust_restorer,\"ax\",@progbits",
    ".balign 16",
    ".globl crust_restorer_start",
    "crust_restorer_start:",
    "    lgr %r9, %r2",
    "    lgr %r10, %r2",
    "2:",
    "    lg %r1, 0(%r9)",
    "    cghi %r1, -1",
    "    je 5f",
    "    cghi %r1, -2",
    "    je 9f",
    "    lg %r2, 8(%r9)",
    "    lg %r3, 16(%r9)",
    "    lg %r4, 24(%r9)",
    "    lg %r5, 32(%r9)",
    "    lg %r6, 40(%r9)",
    "    lg %r7, 48(%r9)",
    "    cghi %r1, 90",
    "    jne 8f",
    "    la %r2, 8(%r9)",
    "8:",
    "    svc 0",
    "    stg %r2, 72(%r9)",
    "    lg %r0, 56(%r9)",
    "    cghi %r0, 2",
    "    je 4f",
    "    cghi %r0, 1",
    "    je 3f",
    "    cghi %r0, {branch}",
    "    je 10f",
    "    cghi %r0, 3",
    "    jne 7f",
    "    cghi %r2, 0",
    "    jne 7f",
    // A new thread: trap at once for the tracer.
    "    lghi %r8, 2",
    "    .short 0x0001",
    "7:",
    "    cg %r2, 64(%r9)",
    "    jne 6f",
    "    j 4f",
    "3:",
    // An error is -4095..-1, i.e. unsigned >= -4095.
    "    lghi %r0, -4095",
    "    clgr %r2, %r0",
    "    jhe 6f",
    "4:",
    "    la %r9, 80(%r9)",
    "    j 2b",
    "5:",
    "    lghi %r8, 0",
    "    .short 0x0001",
    "6:",
    "    lghi %r8, 1",
    "    .short 0x0001",
    // CHECK_BRANCH_POSITIVE: a signed result > 0 goes to op `expect`.
    "10:",
    "    cghi %r2, 0",
    "    jle 4b",
    "    lg %r11, 64(%r9)",
    "    mghi %r11, 80",
    "    lgr %r9, %r10",
    "    agr %r9, %r11",
    "    j 2b",
    // SIGRETURN: the frame's context replaces this one.
    "9:",
    "    lg %r15, 8(%r9)",
    "    lghi %r1, {nr_rt_sigreturn}",
    "    svc 0",
    "    stg %r2, 72(%r9)",
    "    j 6b",
    ".globl crust_restorer_syscall",
    "crust_restorer_syscall:",
    "    svc 0",
    "    .short 0x0001",
    ".globl crust_restorer_end",
    "crust_restorer_end:",
    ".popsection",
    branch = const RestorerOp::CHECK_BRANCH_POSITIVE,
    nr_rt_sigreturn = const super::NR_RT_SIGRETURN,
);

use crate::regset::{read_regset, write_regset};

impl Host for S390x {
    fn read_regs(tid: i32) -> Result<ThreadRegs<Regs>, HostError> {
        let mut gpr = [0u8; REGSET_SIZE];
        read_regset(tid, NT_PRSTATUS, &mut gpr)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_PRSTATUS)", tid, source })?;
        let mut system_call = [0u8; 4];
        read_regset(tid, NT_S390_SYSTEM_CALL, &mut system_call)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_S390_SYSTEM_CALL)", tid, source })?;
        let mut x = vec![0u8; ext::SIZE];
        read_regset(tid, NT_PRFPREG, &mut x[ext::FPR..ext::FPR + ext::FPR_SIZE])
            .map_err(|source| HostError::Ptrace { op: "PTRACE_GETREGSET(NT_PRFPREG)", tid, source })?;
        // The vector facility is optional (z13 and later).
        let low = read_regset(tid, NT_S390_VXRS_LOW, &mut x[ext::VXRS_LOW..ext::VXRS_LOW + ext::VXRS_LOW_SIZE]);
        let high = read_regset(tid, NT_S390_VXRS_HIGH, &mut x[ext::VXRS_HIGH..ext::VXRS_HIGH + ext::VXRS_HIGH_SIZE]);
        let flags = if low.is_ok() && high.is_ok() { ext::HAS_VXRS } else { 0 };
        x[ext::FLAGS..ext::FLAGS + 8].copy_from_slice(&flags.to_be_bytes());
        let mut gpr = <S390x as crate::Abi>::regs_from_bytes(&gpr).expect("buffer has REGSET_SIZE bytes");
        gpr.system_call = u32::from_be_bytes(system_call);
        Ok(ThreadRegs { gpr, ext: x })
    }

    /// Writes NT_PRSTATUS, then NT_S390_SYSTEM_CALL (after r2, whose write also
    /// changes the kernel's idea of the syscall number).
    fn write_gpr(tid: i32, regs: &Regs) -> Result<(), HostError> {
        let bytes = <S390x as crate::Abi>::regs_to_bytes(regs);
        write_regset(tid, NT_PRSTATUS, &bytes)
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_PRSTATUS)", tid, source })?;
        write_regset(tid, NT_S390_SYSTEM_CALL, &regs.system_call.to_be_bytes())
            .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_S390_SYSTEM_CALL)", tid, source })
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
        if super::word_at(x, ext::FLAGS) & ext::HAS_VXRS != 0 {
            write_regset(tid, NT_S390_VXRS_LOW, &x[ext::VXRS_LOW..ext::VXRS_LOW + ext::VXRS_LOW_SIZE])
                .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_S390_VXRS_LOW)", tid, source })?;
            write_regset(tid, NT_S390_VXRS_HIGH, &x[ext::VXRS_HIGH..ext::VXRS_HIGH + ext::VXRS_HIGH_SIZE])
                .map_err(|source| HostError::Ptrace { op: "PTRACE_SETREGSET(NT_S390_VXRS_HIGH)", tid, source })?;
        }
        Ok(())
    }

    crate::restorer::host_restorer_methods!();

    /// Access registers a0 (high half) and a1 (low half).
    fn thread_pointer() -> u64 {
        let pointer: u64;
        // SAFETY: reading access registers has no side effects.
        unsafe {
            std::arch::asm!(
                "ear {p}, %a0",
                "sllg {p}, {p}, 32",
                "ear {p}, %a1",
                p = out(reg) pointer,
                options(nostack, nomem)
            )
        };
        pointer
    }

    fn enter_restorer(entry: u64, program: u64) -> ! {
        // SAFETY: the caller mapped the restorer blob at `entry` and a valid op program at
        // `program`; the blob never returns (it traps for the tracer).
        unsafe { std::arch::asm!("br {entry}", entry = in(reg_addr) entry, in("r2") program, options(noreturn)) }
    }
}
