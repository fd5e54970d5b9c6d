//! ptrace requests on the threads of a tree: seize, stop, resume, detach, and what
//! only ptrace tells about a stopped thread (signal mask, pending signals, rseq
//! registration, seccomp filters).
//!
//! nix covers seize, interrupt, PTRACE_SYSCALL and PTRACE_SETOPTIONS. Its `cont` and
//! `detach` take a `Signal`, which has no real-time signals, and a thread may have to be
//! resumed with one (a signal that arrived while it was being seized), so those two
//! are wrapped here; so are the requests nix has no function for (GETSIGMASK,
//! SETSIGMASK, PEEKSIGINFO, GET_RSEQ_CONFIGURATION, SECCOMP_GET_FILTER).
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call, and every size passed is that memory's size.
#![allow(unsafe_code)]

use std::io;

use nix::sys::ptrace::{self, Options};
use nix::unistd::Pid;

use super::check;

/// Size of a kernel siginfo.
pub const SIGINFO_SIZE: usize = 128;

/// `PTRACE_O_SUSPEND_SECCOMP`: while traced, the tracee's seccomp filters and strict
/// mode do not apply (needs CAP_SYS_ADMIN), so injected syscalls are not filtered.
pub const PTRACE_O_SUSPEND_SECCOMP: libc::c_int = 0x0020_0000;

/// `PTRACE_SEIZE`: attach to `tid` without stopping it; `options` are PTRACE_O_* bits.
#[doc(alias = "PTRACE_SEIZE")]
pub fn seize_thread(tid: i32, options: libc::c_int) -> io::Result<()> {
    Ok(ptrace::seize(Pid::from_raw(tid), Options::from_bits_retain(options))?)
}

/// `PTRACE_INTERRUPT`: stop a seized thread.
#[doc(alias = "PTRACE_INTERRUPT")]
pub fn interrupt_thread(tid: i32) -> io::Result<()> {
    Ok(ptrace::interrupt(Pid::from_raw(tid))?)
}

/// `PTRACE_SYSCALL`: resume until the next syscall entry or exit.
#[doc(alias = "PTRACE_SYSCALL")]
pub fn continue_to_syscall(tid: i32) -> io::Result<()> {
    Ok(ptrace::syscall(Pid::from_raw(tid), None)?)
}

/// `PTRACE_SYSCALL` with `signal` delivered (a stop signal handed on from a
/// signal-delivery-stop; 0 for none).
#[doc(alias = "PTRACE_SYSCALL")]
pub fn continue_to_syscall_with(tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers; the signal travels in the data word.
    check(unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0usize, signal as usize) })?;
    Ok(())
}

/// `PTRACE_SETOPTIONS` for a thread whose remaining life is its exit: stop at the exit
/// (PTRACE_O_TRACEEXIT), syscall stops marked, killed if crust dies.
#[doc(alias = "PTRACE_SETOPTIONS")]
pub fn add_trace_exit(tid: i32) -> io::Result<()> {
    let options = Options::PTRACE_O_TRACESYSGOOD | Options::PTRACE_O_EXITKILL | Options::PTRACE_O_TRACEEXIT;
    Ok(ptrace::setoptions(Pid::from_raw(tid), options)?)
}

/// `PTRACE_CONT` with `signal` delivered (0 for none; any signal, real-time ones too).
#[doc(alias = "PTRACE_CONT")]
pub fn continue_thread(tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers; the signal travels in the data word.
    check(unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0usize, signal as usize) })?;
    Ok(())
}

/// `PTRACE_DETACH` with `signal` delivered (0 for none; any signal).
#[doc(alias = "PTRACE_DETACH")]
pub fn detach_thread(tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers; the signal travels in the data word.
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, signal as usize) })?;
    Ok(())
}

/// `PTRACE_GETSIGMASK`: the thread's blocked-signal mask.
#[doc(alias = "PTRACE_GETSIGMASK")]
pub fn read_sigmask(tid: i32) -> io::Result<u64> {
    let mut mask = 0u64;
    // SAFETY: the kernel writes 8 bytes (the size passed) into `mask`.
    check(unsafe { libc::ptrace(libc::PTRACE_GETSIGMASK, tid, 8usize, &mut mask as *mut u64) })?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK`: sets the thread's blocked-signal mask.
#[doc(alias = "PTRACE_SETSIGMASK")]
pub fn write_sigmask(tid: i32, mask: u64) -> io::Result<()> {
    // SAFETY: the kernel reads 8 bytes (the size passed) from `mask`.
    check(unsafe { libc::ptrace(libc::PTRACE_SETSIGMASK, tid, 8usize, &mask as *const u64) })?;
    Ok(())
}

/// `PTRACE_PEEKSIGINFO`: the pending signals of a thread (`shared`: of its process) as raw
/// siginfo records, without dequeuing them.
#[doc(alias = "PTRACE_PEEKSIGINFO")]
pub fn peek_pending_signals(tid: i32, shared: bool) -> io::Result<Vec<[u8; SIGINFO_SIZE]>> {
    #[repr(C)]
    struct PeekArgs {
        off: u64,
        flags: u32,
        nr: i32,
    }
    const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
    const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; SIGINFO_SIZE]; 32];
        let args = PeekArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: buf.len() as i32,
        };
        // SAFETY: args is a valid ptrace_peeksiginfo_args; buf holds `nr` siginfo records.
        let n = check(unsafe {
            libc::ptrace(PTRACE_PEEKSIGINFO, tid, &args as *const PeekArgs, buf.as_mut_ptr())
        })? as usize;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// A thread's rseq registration, as PTRACE_GET_RSEQ_CONFIGURATION reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfig {
    pub pointer: u64,
    pub size: u32,
    pub flags: u32,
    pub signature: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION`: the rseq area a stopped tracee registered, if any.
#[doc(alias = "PTRACE_GET_RSEQ_CONFIGURATION")]
pub fn read_rseq_config(tid: i32) -> io::Result<Option<RseqConfig>> {
    const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
    #[repr(C)]
    #[derive(Default)]
    struct Raw {
        pointer: u64,
        size: u32,
        signature: u32,
        flags: u32,
        pad: u32,
    }
    let mut raw = Raw::default();
    // SAFETY: the kernel writes at most the size passed into `raw`.
    check(unsafe {
        libc::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, std::mem::size_of::<Raw>(), &mut raw as *mut Raw)
    })?;
    Ok((raw.pointer != 0).then_some(RseqConfig {
        pointer: raw.pointer,
        size: raw.size,
        flags: raw.flags,
        signature: raw.signature,
    }))
}


/// The `index`-th seccomp filter of a stopped tracee (0 is the oldest) as raw
/// `struct sock_filter` instructions; `None` past the newest.
#[doc(alias = "PTRACE_SECCOMP_GET_FILTER")]
pub fn read_seccomp_filter(tid: i32, index: u64) -> io::Result<Option<Vec<u8>>> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    const INSN_BYTES: usize = 8;
    // SAFETY: with a null buffer the kernel only returns the instruction count.
    let count = match check(unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index as usize, 0usize) }) {
        Ok(count) => count as usize,
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(error) => return Err(error),
    };
    // BPF_MAXINSNS is 4096: a bigger count is not a filter.
    if count > 4096 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("seccomp filter of {count} instructions")));
    }
    let mut buf = vec![0u8; count * INSN_BYTES];
    // SAFETY: the kernel writes `count` 8-byte instructions, the size of `buf`.
    let written = check(unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index as usize, buf.as_mut_ptr()) })? as usize;
    if written != count {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "seccomp filter changed size while read"));
    }
    Ok(Some(buf))
}

