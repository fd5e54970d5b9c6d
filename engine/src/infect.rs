//! Remote syscalls in a seized thread (what CRIU's compel does with a parasite, done
//! here one syscall at a time through ptrace).
//!
//! The thread is pointed at an existing `syscall` instruction (in the target's vDSO, or
//! in the restorer blob), resumed with PTRACE_SYSCALL to the syscall's entry and exit,
//! and its result read. No byte of the target's memory is written, except the scratch
//! page this module maps and unmaps itself (and, on s390x, whose mmap takes a pointer
//! to its arguments, a 48-byte block below the stack pointer, put back after the call). While a session is open every signal is
//! blocked in the thread, so nothing is delivered (or lost) behind the engine's back.

use crust_arch::{Abi, Host, HostArch, Sys};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::sys;

type Regs = <HostArch as Abi>::Regs;

/// Why a remote syscall failed.
#[derive(Debug, thiserror::Error)]
pub enum InfectError {
    #[error("tid {tid}: {op}: {source}")]
    Io { tid: i32, op: &'static str, source: io::Error },
    #[error("tid {tid}: {0}", tid = .1)]
    Arch(crust_arch::HostError, i32),
    #[error("tid {tid}: unexpected stop (signal {signal}, event {event}) during remote {call:?}")]
    UnexpectedStop { tid: i32, signal: i32, event: i32, call: Sys },
    #[error("tid {tid}: exited during remote {call:?}")]
    Exited { tid: i32, call: Sys },
    #[error("tid {tid}: {call:?} has no number on this architecture")]
    NoSyscall { tid: i32, call: Sys },
    #[error("tid {tid}: mmap argument block on the stack at {address:#x}: {source}")]
    MmapArgBlock { tid: i32, address: u64, source: io::Error },
    #[error("tid {tid}: no syscall instruction found in the vdso at {vdso:#x}")]
    NoSyscallInsn { tid: i32, vdso: u64 },
}

/// A seized, stopped thread into which syscalls can be injected.
pub struct RemoteThread {
    pub tid: i32,
    syscall_ip: u64,
    base: Regs,
}

impl RemoteThread {
    /// Prepares to run syscalls in `tid` from the syscall instruction at `syscall_ip`;
    /// `base` are the thread's registers (segment and flag registers are kept from it).
    pub fn new(tid: i32, syscall_ip: u64, base: Regs) -> Self {
        RemoteThread { tid, syscall_ip, base }
    }

    /// Runs one syscall in the thread and returns its raw result (negative errno on
    /// failure). The thread ends stopped at the syscall's exit.
    pub fn syscall(&mut self, call: Sys, args: [u64; 6]) -> Result<i64, InfectError> {
        let tid = self.tid;
        let nr = HostArch::syscall_number(call).ok_or(InfectError::NoSyscall { tid, call })?;
        let regs = HostArch::syscall_regs(&self.base, self.syscall_ip, nr, args);
        HostArch::write_gpr(tid, &regs).map_err(|e| InfectError::Arch(e, tid))?;
        for _stage in ["entry", "exit"] {
            sys::continue_to_syscall(tid)
                .map_err(|source| InfectError::Io { tid, op: "PTRACE_SYSCALL", source })?;
            match sys::wait_thread(tid).map_err(|source| InfectError::Io { tid, op: "waitpid", source })? {
                sys::WaitEvent::Stopped { signal, .. } if signal == (libc::SIGTRAP | 0x80) => {}
                sys::WaitEvent::Stopped { signal, event } => {
                    return Err(InfectError::UnexpectedStop { tid, signal, event, call })
                }
                _ => return Err(InfectError::Exited { tid, call }),
            }
        }
        let after = HostArch::read_regs(tid).map_err(|e| InfectError::Arch(e, tid))?;
        Ok(HostArch::syscall_result(&after.gpr))
    }

    /// Runs `mmap(args...)` in the thread; returns the raw result like [`Self::syscall`].
    ///
    /// Where mmap takes a pointer to its arguments ([`Abi::MMAP_ARGS_IN_MEMORY`], s390x)
    /// the thread has no memory of crust's yet, so the block goes on its stack below the
    /// stack pointer and the red zone (signals are blocked, so nothing else writes
    /// there), written through `mem` (`/proc/TID/mem`), and the bytes it covered are
    /// put back after the call.
    pub fn mmap(&mut self, mem: &File, args: [u64; 6]) -> Result<i64, InfectError> {
        if !HostArch::MMAP_ARGS_IN_MEMORY {
            return self.syscall(Sys::Mmap, args);
        }
        let tid = self.tid;
        let block = HostArch::mmap_arg_block(args);
        let address = (HostArch::sp(&self.base) - HostArch::STACK_RED_ZONE - block.len() as u64) & !15;
        let block_err = |source| InfectError::MmapArgBlock { tid, address, source };
        let mut covered = vec![0u8; block.len()];
        mem.read_exact_at(&mut covered, address).map_err(block_err)?;
        mem.write_all_at(&block, address).map_err(block_err)?;
        let result = self.syscall(Sys::Mmap, [address, 0, 0, 0, 0, 0]);
        let put_back = mem.write_all_at(&covered, address).map_err(block_err);
        let result = result?;
        put_back?;
        Ok(result)
    }
}

/// Finds a syscall instruction in the target's vDSO text, read through /proc/PID/mem.
pub fn find_syscall_in_vdso(tid: i32, mem: &File, vdso_start: u64, vdso_end: u64) -> Result<u64, InfectError> {
    let mut text = vec![0u8; (vdso_end - vdso_start) as usize];
    mem.read_exact_at(&mut text, vdso_start)
        .map_err(|source| InfectError::Io { tid, op: "read vdso", source })?;
    let pattern = HostArch::SYSCALL_INSN;
    text.windows(pattern.len())
        .position(|w| w == pattern)
        .map(|offset| vdso_start + offset as u64)
        .ok_or(InfectError::NoSyscallInsn { tid, vdso: vdso_start })
}


/// Makes a stopped thread ready to go with `regs`; [`let_go`] then releases it. Until
/// then it stays in a stop, traced (a tracer that dies takes it along with EXITKILL).
///
/// When `regs` re-enter an interrupted syscall (`restarts` true), the thread is first
/// run, with every signal blocked, to that syscall's entry, and released there: a signal
/// sent right after the release then interrupts the syscall exactly as it would have
/// without the checkpoint, instead of being handled in user space just before the
/// syscall starts again (and then sleeping through it).
pub fn ready_thread(tid: i32, regs: &Regs, restarts: bool) -> Result<(), InfectError> {
    HostArch::write_gpr(tid, regs).map_err(|e| InfectError::Arch(e, tid))?;
    if restarts {
        sys::write_sigmask(tid, !0u64).map_err(|source| InfectError::Io { tid, op: "PTRACE_SETSIGMASK", source })?;
        sys::continue_to_syscall(tid).map_err(|source| InfectError::Io { tid, op: "PTRACE_SYSCALL", source })?;
        match sys::wait_thread(tid).map_err(|source| InfectError::Io { tid, op: "waitpid", source })? {
            sys::WaitEvent::Stopped { signal, .. } if signal == (libc::SIGTRAP | 0x80) => {}
            sys::WaitEvent::Stopped { signal, event } => {
                return Err(InfectError::UnexpectedStop { tid, signal, event, call: Sys::Getpid })
            }
            _ => return Err(InfectError::Exited { tid, call: Sys::Getpid }),
        }
    }
    Ok(())
}

/// Lets a thread made ready by [`ready_thread`] go with `sigmask`. `detach_signal` (0:
/// none) is sent to the thread as it leaves its stop: a stop signal there stops it
/// before it runs a single user instruction.
pub fn let_go(tid: i32, sigmask: u64, detach_signal: i32) -> Result<(), InfectError> {
    sys::write_sigmask(tid, sigmask).map_err(|source| InfectError::Io { tid, op: "PTRACE_SETSIGMASK", source })?;
    sys::detach_thread(tid, detach_signal).map_err(|source| InfectError::Io { tid, op: "PTRACE_DETACH", source })?;
    Ok(())
}
