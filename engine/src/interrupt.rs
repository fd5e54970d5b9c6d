//! Stop requests: SIGTERM, SIGINT or SIGHUP, caught by the front end, ask the dump or
//! restore in progress to stop at its next safe point and undo what it did: a dump
//! releases the tree unchanged (`dump::DumpError::Interrupted`), a restore kills every
//! process it created (`restore::RestoreError::Interrupted`).
//!
//! The front end's handler calls [`request_stop`], one atomic store, so it is
//! async-signal-safe; the pipelines look at [`stop_requested`] between their steps and
//! in their long loops (the parasite's waits, the copy-on-write copy).
//!
//! Hold points, for tests of what a killed crust leaves behind: [`hold_at`] names one
//! of [`HOLD_POINTS`]; the first time the work reaches it, crust says so on stderr
//! (`crust: held at POINT until stdin closes`) and waits until its stdin reaches end of
//! file or a stop is requested. A test reads that line and kills crust there.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

static REQUESTED: AtomicI32 = AtomicI32::new(0);
static HOLD: OnceLock<&'static str> = OnceLock::new();
static HELD: AtomicBool = AtomicBool::new(false);

/// The moments a dump or restore can be held at, in the order they come.
pub const HOLD_POINTS: &[&str] = &[
    // dump and pre-dump
    "seize",
    "collect",
    "parasite-leader",
    "parasite-threads",
    "parasite",
    "memory-pipes",
    "memory",
    "files",
    "images",
    "pages",
    // a dump without --leave-running: images complete, the tree killed (or left
    // stopped), crust not yet exited
    "killed",
    // restore
    "restore-forked",
    "restore-seized",
    "restore-restorers",
    "restore-finished",
];

/// Why [`hold_at`] refused a point.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("unknown hold point {point} (known: {})", HOLD_POINTS.join(", "))]
    Unknown { point: String },
    #[error("a hold point is already set")]
    AlreadySet,
}

/// Holds the work at `point` (one of [`HOLD_POINTS`]) the first time it gets there.
pub fn hold_at(point: &str) -> Result<(), HoldError> {
    let known = HOLD_POINTS.iter().find(|p| **p == point).ok_or_else(|| HoldError::Unknown { point: point.to_string() })?;
    HOLD.set(known).map_err(|_| HoldError::AlreadySet)
}

/// If `point` is the hold point and not yet held at: says so on stderr and waits for
/// stdin's end of file or a stop request (which the caller's next stop check sees).
pub(crate) fn hold(point: &str) {
    if HOLD.get() != Some(&point) || HELD.swap(true, Ordering::SeqCst) {
        return;
    }
    eprintln!("crust: held at {point} until stdin closes");
    let stdin = std::io::stdin();
    let mut buffer = [0u8; 256];
    while stop_requested().is_none() {
        let mut polled = [nix::poll::PollFd::new(stdin.as_fd(), nix::poll::PollFlags::POLLIN)];
        // poll is never restarted after a handler: a stop request ends the wait.
        match nix::poll::poll(&mut polled, nix::poll::PollTimeout::NONE) {
            Ok(_) => match nix::unistd::read(stdin.as_fd(), &mut buffer) {
                Ok(0) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => break,
            },
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    log::debug!("held at {point}: released");
}

/// Asks the dump or restore in progress to stop; `signal` is what asked (the first
/// one is kept). Async-signal-safe.
pub fn request_stop(signal: i32) {
    let _ = REQUESTED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

/// The signal that asked for a stop, if one did.
pub fn stop_requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Forgets a stop request (a front end serving several requests in one process).
pub fn clear_stop_request() {
    REQUESTED.store(0, Ordering::SeqCst);
}

/// A signal's name (`SIGTERM`), or its number.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_is_kept_until_cleared() {
        clear_stop_request();
        assert_eq!(stop_requested(), None);
        request_stop(libc::SIGINT);
        request_stop(libc::SIGTERM);
        assert_eq!(stop_requested(), Some(libc::SIGINT));
        clear_stop_request();
        assert_eq!(stop_requested(), None);
        assert_eq!(signal_name(libc::SIGHUP), "SIGHUP");
        assert_eq!(signal_name(99), "signal 99");
    }
}
