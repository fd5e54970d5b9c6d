//! Signals and sleeps: sigaltstack, asleep in nanosleep and in poll at dump time.
//!
//! Unsafe: sigaltstack/sigaction with a handler that only writes atomics, raw nanosleep
//! and poll.
#![allow(unsafe_code)]

use crust_zdtm::testlib::{ensure, log, random_u64, Test};
use std::sync::atomic::{AtomicUsize, Ordering};

static HANDLER_STACK_ADDRESS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn record_stack(_signal: libc::c_int) {
    let local = 0u8;
    HANDLER_STACK_ADDRESS.store(
        std::hint::black_box(&local) as *const u8 as usize,
        Ordering::SeqCst,
    );
}

/// An alternate signal stack at a random size; after restore `sigaltstack` reports it and
/// an SA_ONSTACK handler runs on it.
pub fn sigaltstack(test: &mut Test) -> Result<(), String> {
    let size = (libc::SIGSTKSZ.max(64 * 1024)) + (random_u64() as usize % 16) * 4096;
    let stack = crate::memory::map(
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let wanted = libc::stack_t {
        ss_sp: stack.cast(),
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: the stack memory is ours and stays mapped; the handler only stores an atomic.
    unsafe {
        if libc::sigaltstack(&wanted, std::ptr::null_mut()) != 0 {
            return Err(format!("sigaltstack: {}", std::io::Error::last_os_error()));
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = record_stack as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
    }
    test.ready();
    test.wait_for_term();
    let mut current = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    // SAFETY: sigaltstack writes into `current` on our stack.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    ensure(
        current.ss_sp == wanted.ss_sp && current.ss_size == size && current.ss_flags == 0,
        || {
            format!(
                "altstack {:p}+{:#x} flags {}, was {:p}+{size:#x}",
                current.ss_sp, current.ss_size, current.ss_flags, wanted.ss_sp
            )
        },
    )?;
    // SAFETY: raising a signal whose handler is installed above.
    unsafe { libc::raise(libc::SIGUSR1) };
    let address = HANDLER_STACK_ADDRESS.load(Ordering::SeqCst);
    ensure(
        (stack as usize..stack as usize + size).contains(&address),
        || format!("handler ran at {address:#x}, not on the altstack {stack:p}+{size:#x}"),
    )
}

/// Asleep in nanosleep(1000 s) at dump time; after restore it must still be asleep until
/// SIGTERM. A restorer may end the sleep early with EINTR (CRIU cannot restart a
/// restart_block syscall and returns EINTR); the test then sleeps on for the remainder,
/// as any caller must, and logs it.
pub fn sleep_nanosleep(test: &mut Test) -> Result<(), String> {
    let mut request = libc::timespec {
        tv_sec: 1000,
        tv_nsec: 0,
    };
    test.ready();
    let mut early_wakeups = 0;
    while !test.term_requested() {
        let mut remaining = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: both timespecs live on our stack.
        let result = unsafe { libc::nanosleep(&request, &mut remaining) };
        let error = std::io::Error::last_os_error();
        ensure(
            result == -1 && error.raw_os_error() == Some(libc::EINTR),
            || format!("nanosleep returned {result} ({error}) instead of sleeping until SIGTERM"),
        )?;
        ensure(remaining.tv_sec <= request.tv_sec, || {
            format!("remaining time grew to {}s", remaining.tv_sec)
        })?;
        request = remaining;
        early_wakeups += 1;
    }
    log(&format!(
        "nanosleep: {} wakeups before SIGTERM's",
        early_wakeups - 1
    ));
    ensure(request.tv_sec > 0, || "slept the whole 1000 s?".into())
}

/// Asleep in poll(no fds, 1000 s) at dump time; sleeps on (after an early EINTR, see
/// `sleep_nanosleep`) until SIGTERM.
pub fn sleep_poll(test: &mut Test) -> Result<(), String> {
    let started = std::time::Instant::now();
    test.ready();
    while !test.term_requested() {
        // SAFETY: no fds, so no pollfd array is read.
        let result = unsafe { libc::poll(std::ptr::null_mut(), 0, 1_000_000) };
        let error = std::io::Error::last_os_error();
        ensure(
            result == -1 && error.raw_os_error() == Some(libc::EINTR),
            || format!("poll returned {result} ({error}) instead of sleeping until SIGTERM"),
        )?;
    }
    ensure(started.elapsed().as_secs() < 1000, || {
        "poll slept its whole timeout".into()
    })
}
