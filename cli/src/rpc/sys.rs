//! The raw process calls of the RPC server: adopting the socket fd number a client
//! passed on the command line, forking a worker per service connection, and the
//! service's signal dispositions. The only `unsafe` of `rpc/`; each block says why it
//! holds.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::{fstat, SFlag};

/// Takes ownership of inherited fd `number` (`crust swrk FD`, `--status-fd FD`), after
/// checking that it is open and, with `socket`, a socket.
pub fn adopt_fd(number: i32, socket: bool) -> io::Result<OwnedFd> {
    if number < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: fstat only reads the fd's metadata; an fd number that is not open fails
    // with EBADF.
    let stat = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(number) })?;
    if socket && SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket"));
    }
    // SAFETY: the fd is open (fstat succeeded) and was inherited for this use: nothing
    // else in this process refers to it, so it gets exactly one owner.
    Ok(unsafe { OwnedFd::from_raw_fd(number) })
}

/// What a `fork()` returned, seen from the caller.
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork()`. Called only while the process has a single thread (the service's accept
/// loop and daemon start run before any thread is made).
#[doc(alias = "fork")]
pub fn fork_process() -> io::Result<Forked> {
    // SAFETY: the service runs single-threaded when it forks, so the child may run any
    // code, not only async-signal-safe functions.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// The service's dispositions: finished workers are reaped by the kernel (SIGCHLD
/// ignored), and SIGTERM/SIGINT interrupt `accept` (no SA_RESTART) and set
/// [`stop_requested`].
pub fn service_signals() -> io::Result<()> {
    let stop = SigAction::new(SigHandler::Handler(request_stop), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal::sigaction(Signal::SIGTERM, &stop)?;
        signal::sigaction(Signal::SIGINT, &stop)?;
    }
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN installs no code.
    unsafe { signal::sigaction(Signal::SIGCHLD, &ignore) }?;
    Ok(())
}

/// A worker's dispositions: back to the defaults, because dump and restore wait for
/// the processes they fork and trace.
pub fn worker_signals() -> io::Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: SIG_DFL installs no code.
        unsafe { signal::sigaction(sig, &default) }?;
    }
    Ok(())
}

/// Whether SIGTERM or SIGINT arrived since [`service_signals`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// `waitpid(pid, &status, 0)`: the raw wait status, as CRIU's WAIT_PID answers it.
#[doc(alias = "waitpid")]
pub fn wait_raw_status(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer for the duration of the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}
