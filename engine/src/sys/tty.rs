//! Terminal requests on ptys: the TIOC* ioctls that read and set a pty's index, lock,
//! packet mode, exclusive mode, controlling terminal and foreground group, and its
//! termios (and locked termios) and window size. nix has no safe function for these ioctls (its
//! `ioctl_*!` macros make `unsafe fn`s), so each is one typed function here; blocking
//! SIGTTOU goes through nix.
//!
//! Guarantees: every pointer handed to the kernel points at a local of the size the
//! request reads or writes, alive for the call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use super::check;

/// `ioctl(fd, request, &int)` that writes or reads one int argument.
pub fn ioctl_int_arg(fd: RawFd, request: u64, value: i32) -> io::Result<i32> {
    let mut value: libc::c_int = value;
    // SAFETY: the kernel reads or writes one int at `value`.
    check(unsafe { libc::ioctl(fd, request as _, &mut value as *mut libc::c_int) } as libc::c_long)?;
    Ok(value)
}

/// `ioctl(fd, request, value)` whose argument is a plain number (TIOCSCTTY, TIOCPKT's
/// pointer-free forms are not used: see callers).
pub fn ioctl_value(fd: RawFd, request: u64, value: u64) -> io::Result<()> {
    // SAFETY: the request takes its argument by value, no pointer.
    check(unsafe { libc::ioctl(fd, request as _, value as libc::c_ulong) } as libc::c_long)?;
    Ok(())
}

/// `ioctl(master, TIOCGPTPEER, flags)`: a new fd on the slave side of the pty whose
/// master is `master`, whatever mount namespace or devpts instance it lives in.
#[doc(alias = "TIOCGPTPEER")]
pub fn open_peer(master: RawFd, flags: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the request takes its argument (open flags) by value, no pointer.
    let fd = check(unsafe { libc::ioctl(master, libc::TIOCGPTPEER as _, flags as libc::c_ulong) } as libc::c_long)?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Terminal attributes (TCGETS) and window size (TIOCGWINSZ).
pub fn terminal_state(fd: RawFd) -> io::Result<(libc::termios, libc::winsize)> {
    // SAFETY: termios and winsize are plain data; the kernel fills at most their size.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        check(libc::ioctl(fd, libc::TCGETS as _, &mut termios as *mut libc::termios) as libc::c_long)?;
        let mut winsize: libc::winsize = std::mem::zeroed();
        check(libc::ioctl(fd, libc::TIOCGWINSZ as _, &mut winsize as *mut libc::winsize) as libc::c_long)?;
        Ok((termios, winsize))
    }
}

/// Sets terminal attributes (TCSETS) and window size (TIOCSWINSZ).
pub fn set_terminal_state(fd: RawFd, termios: &libc::termios, winsize: &libc::winsize) -> io::Result<()> {
    // SAFETY: both structures live across the calls; the kernel only reads them.
    unsafe {
        check(libc::ioctl(fd, libc::TCSETS as _, termios as *const libc::termios) as libc::c_long)?;
        check(libc::ioctl(fd, libc::TIOCSWINSZ as _, winsize as *const libc::winsize) as libc::c_long)?;
    }
    Ok(())
}

/// The locked terminal attributes (`TIOCGLCKTRMIOS`): bits and characters that
/// TCSETS may not change.
#[doc(alias = "TIOCGLCKTRMIOS")]
pub fn locked_termios(fd: RawFd) -> io::Result<libc::termios> {
    let mut termios = zeroed_termios();
    // SAFETY: the kernel fills at most one termios at the pointer, a local.
    check(unsafe { libc::ioctl(fd, libc::TIOCGLCKTRMIOS as _, &mut termios as *mut libc::termios) } as libc::c_long)?;
    Ok(termios)
}

/// Sets the locked terminal attributes (`TIOCSLCKTRMIOS`, needs CAP_SYS_ADMIN).
#[doc(alias = "TIOCSLCKTRMIOS")]
pub fn set_locked_termios(fd: RawFd, termios: &libc::termios) -> io::Result<()> {
    // SAFETY: the kernel reads one termios at the pointer, which lives across the call.
    check(unsafe { libc::ioctl(fd, libc::TIOCSLCKTRMIOS as _, termios as *const libc::termios) } as libc::c_long)?;
    Ok(())
}

/// An all-zero `termios` (plain data).
pub fn zeroed_termios() -> libc::termios {
    // SAFETY: termios is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Blocks (`true`) or unblocks SIGTTOU in the calling thread: a background process
/// setting its terminal's foreground group would otherwise be stopped.
pub fn block_sigttou(block: bool) -> io::Result<()> {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTTOU);
    let how = if block { SigmaskHow::SIG_BLOCK } else { SigmaskHow::SIG_UNBLOCK };
    Ok(pthread_sigmask(how, Some(&set), None)?)
}
