//! Remote syscalls in a seized thread (what CRIU's compel does with a parasite, done
//! here one syscall at a time through ptrace).
//!
//! The thread is pointed at an existing `syscall` instruction (in the target's vDSO, or
//! in the restorer blob), resumed with PTRACE_SYSCALL to the syscall's entry and exit,
//! and its result read. No byte of the target's memory is written, except the scratch
//! page this module maps and unmaps itself (and, on s390x, whose mmap takes a pointer
//! to its arguments, a 48-byte block below the stack pointer, put back after the call). While a session is open every signal is
//! blocked in the thread, so nothing is delivered (or lost) behind the engine's back.

use crust_arch::{Abi, ChainPoints, Host, HostArch, Sys};
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
            match step_to_syscall_stop(tid).map_err(|(op, source)| InfectError::Io { tid, op, source })? {
                Step::Syscall => {}
                Step::Stop { signal, event } => return Err(InfectError::UnexpectedStop { tid, signal, event, call }),
                Step::Exited => return Err(InfectError::Exited { tid, call }),
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

/// Where [`step_to_syscall_stop`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// At a syscall entry or exit stop.
    Syscall,
    /// At another stop: a signal-delivery-stop (`event` 0) of a signal other than
    /// SIGSTOP, or a ptrace event.
    Stop { signal: i32, event: i32 },
    /// The thread is gone.
    Exited,
}

/// PTRACE_SYSCALL to the thread's next syscall stop, through the stops a SIGSTOP makes
/// on the way. SIGSTOP is the one signal a thread whose mask blocks every other can
/// still take: at its signal-delivery-stop it is handed on to the thread, which starts
/// the group stop the signal asked for, as it would have without crust; that stop is
/// reported as a PTRACE_EVENT_STOP, after which a traced thread may run on (so may one
/// whose group stop was already under way). The stop holds again once the thread is
/// detached: the kernel puts a thread of a stopped group back into its stop then.
/// Errors name the ptrace request that failed.
pub fn step_to_syscall_stop(tid: i32) -> Result<Step, (&'static str, io::Error)> {
    let mut hand_on = 0;
    // A thread that traps again and again (no such kernel behaviour is known) is
    // reported rather than stepped forever.
    for _ in 0..MAX_STOP_TRAPS {
        sys::continue_to_syscall_with(tid, hand_on).map_err(|e| ("PTRACE_SYSCALL", e))?;
        hand_on = 0;
        match sys::wait_thread(tid).map_err(|e| ("waitpid", e))? {
            sys::WaitEvent::Stopped { signal, .. } if signal == (libc::SIGTRAP | 0x80) => return Ok(Step::Syscall),
            sys::WaitEvent::Stopped { signal: libc::SIGSTOP, event: 0 } => hand_on = libc::SIGSTOP,
            sys::WaitEvent::Stopped { event: libc::PTRACE_EVENT_STOP, .. } => {}
            sys::WaitEvent::Stopped { signal, event } => return Ok(Step::Stop { signal, event }),
            _ => return Ok(Step::Exited),
        }
    }
    Ok(Step::Stop { signal: libc::SIGSTOP, event: libc::PTRACE_EVENT_STOP })
}

/// How many stop signals and group-stop traps in a row [`step_to_syscall_stop`] steps
/// through.
const MAX_STOP_TRAPS: u32 = 64;

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


/// The most bytes of executable mappings read while looking for an rt_sigreturn
/// trampoline (a libc's text is 1-2 MiB; a big static binary is not read whole).
const TRAMPOLINE_SEARCH_LIMIT: u64 = 64 << 20;

/// Finds the points of a chained syscall ([`crust_arch::chain`]) in a target: a
/// syscall instruction whose following code the backend can follow, and an
/// rt_sigreturn trampoline, both searched in its vDSO (`vdso`: start and end) first,
/// then in `executable` (start and end of each executable mapping, in the order to
/// search: the libc first). `None` where the backend chains no syscall or the target
/// has no such instruction or trampoline (the injected syscall is then not chained).
pub fn find_chain_points(mem: &File, vdso: (u64, u64), executable: &[(u64, u64)]) -> Option<ChainPoints> {
    if HostArch::SIGRETURN_TRAMPOLINES.is_empty() {
        return None;
    }
    let mut places = vec![vdso];
    places.extend(executable.iter().copied().filter(|place| *place != vdso));
    // The processes of a tree mostly have their libc and vDSO where their parent has
    // them: the points found last are checked first (two small reads, not a search).
    let last = *LAST_FOUND.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(points) = last.filter(|points| points_hold(mem, &places, points)) {
        return Some(points);
    }
    // Each read starts at a mapping's start plus whole chunks (page aligned): an
    // instruction is at an offset that is a multiple of the code alignment.
    let aligned = |offset: &usize| *offset as u64 % HostArch::CODE_ALIGN == 0;
    let trampoline = search(mem, &places, |text| {
        HostArch::SIGRETURN_TRAMPOLINES
            .iter()
            .find_map(|pattern| text.windows(pattern.len()).enumerate().filter(|(offset, w)| aligned(offset) && *w == *pattern).map(|(offset, _)| offset).next())
    })?;
    let insn = HostArch::SYSCALL_INSN;
    let syscall_ip = search(mem, &places, |text| {
        text.windows(insn.len()).enumerate().filter(|(offset, window)| aligned(offset) && *window == insn).find_map(|(offset, _)| {
            let after = &text[offset + insn.len()..];
            // A site too near the end of this read is found again in the next one.
            (after.len() >= SEARCH_OVERLAP - insn.len() && HostArch::return_path(after).is_some()).then_some(offset)
        })
    })?;
    let mut code = vec![0u8; SEARCH_OVERLAP];
    mem.read_exact_at(&mut code, syscall_ip + insn.len() as u64).ok()?;
    let path = HostArch::return_path(&code)?;
    let points = ChainPoints { syscall_ip, path, trampoline };
    *LAST_FOUND.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(points);
    Some(points)
}

/// The chain points [`find_chain_points`] found last, in whichever target.
static LAST_FOUND: std::sync::Mutex<Option<ChainPoints>> = std::sync::Mutex::new(None);

/// Whether `points` are chain points in this target too: inside its vDSO or an
/// executable mapping of it (`places`), a syscall instruction followed by code that
/// returns along the same path, and an rt_sigreturn trampoline.
fn points_hold(mem: &File, places: &[(u64, u64)], points: &ChainPoints) -> bool {
    let inside = |addr: u64, len: usize| places.iter().any(|&(start, end)| start <= addr && addr.saturating_add(len as u64) <= end);
    let read = |addr: u64, len: usize| {
        let mut bytes = vec![0u8; len];
        (inside(addr, len) && mem.read_exact_at(&mut bytes, addr).is_ok()).then_some(bytes)
    };
    let insn = HostArch::SYSCALL_INSN;
    let syscall_holds = read(points.syscall_ip, insn.len() + SEARCH_OVERLAP)
        .is_some_and(|code| code.starts_with(insn) && HostArch::return_path(&code[insn.len()..]) == Some(points.path));
    syscall_holds && HostArch::SIGRETURN_TRAMPOLINES.iter().any(|pattern| read(points.trampoline, pattern.len()).is_some_and(|bytes| bytes == *pattern))
}

/// Bytes each read of a search shares with the next, so that nothing this long is
/// missed at a boundary (a trampoline, or a syscall instruction and the code after it).
const SEARCH_OVERLAP: usize = 256;

/// The address of the first place in `places` (start and end of each) where `find`
/// finds something in the text (an offset into it), reading at most
/// [`TRAMPOLINE_SEARCH_LIMIT`] bytes.
fn search(mem: &File, places: &[(u64, u64)], find: impl Fn(&[u8]) -> Option<usize>) -> Option<u64> {
    // Reads start small and double: what is sought is usually in the first tens of KiB
    // of the libc's text (the sigreturn trampoline of glibc 2.36 is 88 KiB in), and each
    // process of a tree is searched.
    const FIRST_CHUNK: u64 = 64 << 10;
    const LAST_CHUNK: u64 = 1 << 20;
    let mut budget = TRAMPOLINE_SEARCH_LIMIT;
    let mut buffer = Vec::new();
    for &(start, end) in places {
        let mut at = start;
        let mut chunk = FIRST_CHUNK;
        while at < end && budget > 0 {
            let len = (end - at).min(chunk + SEARCH_OVERLAP as u64);
            buffer.resize(len as usize, 0);
            if mem.read_exact_at(&mut buffer, at).is_err() {
                break;
            }
            budget = budget.saturating_sub(len);
            // The last read of a place: its tail counts too.
            let whole = at + len >= end;
            if let Some(offset) = find(&buffer) {
                if whole || (offset as u64) < chunk {
                    return Some(at + offset as u64);
                }
            }
            at += chunk;
            chunk = (chunk * 2).min(LAST_CHUNK);
        }
    }
    None
}

/// The executable mappings of `maps` in the order a chain's points are searched for
/// (after the vDSO): the C library's first, then the others as mapped.
pub fn trampoline_search_order(maps: &[crate::procfs::MapsLine]) -> Vec<(u64, u64)> {
    let executable = || maps.iter().filter(|m| m.exec && m.end <= HostArch::TASK_SIZE && m.name != "[vsyscall]" && m.name != "[vdso]");
    let libc = |m: &&crate::procfs::MapsLine| m.name.rsplit('/').next().is_some_and(|file| file.starts_with("libc.") || file.starts_with("libc-") || file.starts_with("ld-musl"));
    executable().filter(libc).chain(executable().filter(|m| !libc(m))).map(|m| (m.start, m.end)).collect()
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
        match step_to_syscall_stop(tid).map_err(|(op, source)| InfectError::Io { tid, op, source })? {
            Step::Syscall => {}
            Step::Stop { signal, event } => return Err(InfectError::UnexpectedStop { tid, signal, event, call: Sys::Getpid }),
            Step::Exited => return Err(InfectError::Exited { tid, call: Sys::Getpid }),
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
