//! Stop requests: SIGTERM, SIGINT or SIGHUP, caught by the front end, ask the dump or
//! restore in progress to stop at its next safe point and undo what it did: a dump
//! releases the tree unchanged (`dump::DumpError::Interrupted`), a restore kills every
//! process it created (`restore::RestoreError::Interrupted`).
//!
//! The front end's handler calls [`request_stop`], one atomic store, so it is
//! async-signal-safe; the pipelines look at [`stop_requested`] between their steps and
//! in their long loops (the parasite's waits, the copy-on-write copy).

use std::sync::atomic::{AtomicI32, Ordering};

static REQUESTED: AtomicI32 = AtomicI32::new(0);

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
