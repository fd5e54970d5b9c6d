//! The target of the random-kill test (`kill_random`, `src/kill.rs`): a process the
//! harness dumps again and again while it kills crust at random moments, and which must
//! come out of every one of them unharmed.
//!
//! Its state: a child process, two threads besides the main one, a pipe holding unread
//! bytes, a different signal mask in each thread, and MiB of memory (256 by default,
//! the first argument) filled with a seeded pattern. The main thread waits in `read` of
//! the FIFO `control` (an interrupted syscall that restarts), one thread sleeps in
//! `nanosleep` (whose restart goes through the kernel's restart block), one spins in user
//! space computing the same sequence twice and comparing (so a register that comes back
//! wrong shows), and the child waits in `read` of a pipe from its parent.
//!
//! The harness writes `check N` into `control`; the main thread checks every word of the
//! memory, the pipe's unread bytes, and that the child and both threads answer a ping
//! numbered N, then writes `ok N` (or `fail N REASON`) into the FIFO `answer`. Nothing is
//! allocated after the ready message, so the heap's mappings do not move.
//!
//! Unsafe: fork, pipes, FIFOs, read/write on raw fds, signal masks, nanosleep, FIONREAD.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crust_zdtm::testlib::{check_pattern, fill_pattern, random_u64, Test};

/// Bytes left unread in the pipe.
const PIPE_BYTES: usize = 4096;

struct Shared {
    /// The ping number the threads must answer.
    request: AtomicU64,
    sleeper_ack: AtomicU64,
    spinner_ack: AtomicU64,
    /// The spinner's two computations disagreed.
    spinner_broken: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    answered: Condvar,
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn make_pipe() -> Result<[RawFd; 2], String> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two ints into `fds`.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", errno()));
    }
    Ok(fds)
}

fn block(signals: &[libc::c_int], how: libc::c_int) {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask changes
    // only the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

fn read_byte(fd: RawFd) -> Option<u8> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a live local.
        match unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) } {
            1 => return Some(byte),
            -1 if errno().kind() == std::io::ErrorKind::Interrupted => continue,
            _ => return None,
        }
    }
}

fn write_all(fd: RawFd, bytes: &[u8]) -> bool {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            if n == -1 && errno().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        done += n as usize;
    }
    true
}

/// The child: answers each byte from its parent with the same byte, until EOF.
fn child_main(from_parent: RawFd, to_parent: RawFd) -> ! {
    // Nothing of the parent's stays open here (the ready pipe above all: the harness
    // waits for its end of file).
    for fd in 3..4096 {
        if fd != from_parent && fd != to_parent {
            // SAFETY: closing numbers in the forked child, which owns no Rust object over them.
            unsafe { libc::close(fd) };
        }
    }
    block(&[libc::SIGWINCH, libc::SIGUSR1], libc::SIG_BLOCK);
    while let Some(byte) = read_byte(from_parent) {
        if !write_all(to_parent, &[byte]) {
            break;
        }
    }
    // SAFETY: ends the child without running the parent's exit code.
    unsafe { libc::_exit(0) }
}

fn sleeper(shared: Arc<Shared>) {
    block(&[libc::SIGUSR1], libc::SIG_BLOCK);
    while !shared.stop.load(Ordering::SeqCst) {
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 };
        // SAFETY: a relative sleep on a live timespec; no remainder wanted.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
        let request = shared.request.load(Ordering::SeqCst);
        if shared.sleeper_ack.load(Ordering::SeqCst) != request {
            let _guard = shared.lock.lock();
            shared.sleeper_ack.store(request, Ordering::SeqCst);
            shared.answered.notify_all();
        }
    }
}

fn step(x: u64, n: u64) -> u64 {
    (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9).wrapping_add(n)
}

fn spinner(shared: Arc<Shared>, seed: u64) {
    block(&[libc::SIGUSR2, libc::SIGRTMIN() + 2], libc::SIG_UNBLOCK);
    let (mut a, mut b, mut n) = (seed, seed, 0u64);
    while !shared.stop.load(Ordering::Relaxed) {
        for _ in 0..4096 {
            a = step(a, n);
            b = step(black_box(b), n);
            n += 1;
            if a != b {
                shared.spinner_broken.store(true, Ordering::SeqCst);
                a = b;
            }
        }
        let request = shared.request.load(Ordering::Relaxed);
        if shared.spinner_ack.load(Ordering::Relaxed) != request {
            let _guard = shared.lock.lock();
            shared.spinner_ack.store(request, Ordering::SeqCst);
            shared.answered.notify_all();
        }
    }
}

/// Runs one check; `Err` names what is wrong.
#[allow(clippy::too_many_arguments)] // the test's whole state, one piece each
fn check(
    number: u64,
    memory: &[u64],
    seed: u64,
    pipe_read: RawFd,
    to_child: RawFd,
    from_child: RawFd,
    shared: &Shared,
) -> Result<(), String> {
    check_pattern(memory, seed).map_err(|e| format!("memory: {e}"))?;
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `queued`.
    if unsafe { libc::ioctl(pipe_read, libc::FIONREAD, &mut queued) } != 0 || queued as usize != PIPE_BYTES {
        return Err(format!("pipe holds {queued} bytes, not {PIPE_BYTES}"));
    }
    let ping = number as u8;
    if !write_all(to_child, &[ping]) || read_byte(from_child) != Some(ping) {
        return Err("the child did not answer".into());
    }
    if shared.spinner_broken.load(Ordering::SeqCst) {
        return Err("the spinning thread's two computations disagreed (a register came back wrong)".into());
    }
    shared.request.store(number, Ordering::SeqCst);
    let guard = shared.lock.lock().map_err(|_| "lock poisoned".to_string())?;
    let (_guard, timeout) = shared
        .answered
        .wait_timeout_while(guard, Duration::from_secs(20), |_| {
            shared.sleeper_ack.load(Ordering::SeqCst) != number || shared.spinner_ack.load(Ordering::SeqCst) != number
        })
        .map_err(|_| "lock poisoned".to_string())?;
    if timeout.timed_out() {
        return Err("a thread did not answer".into());
    }
    Ok(())
}

fn open_fifo(test: &Test, name: &str) -> Result<RawFd, String> {
    let path = test.path(name);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path that outlives both calls.
    unsafe {
        if libc::mkfifo(c_path.as_ptr(), 0o600) != 0 && errno().raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("mkfifo {}: {}", path.display(), errno()));
        }
        // Read and write: the main thread's read never sees end of file, and the
        // harness's opens never wait.
        let fd = libc::open(c_path.as_ptr(), libc::O_RDWR);
        if fd < 0 {
            return Err(format!("open {}: {}", path.display(), errno()));
        }
        Ok(fd)
    }
}

/// `kill_target [MiB]`.
pub fn kill_target(test: &mut Test) -> Result<(), String> {
    let mib: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(256);
    let control = open_fifo(test, "control")?;
    let answer = open_fifo(test, "answer")?;
    // The child first, so it does not share the big memory.
    let [from_parent, to_child] = make_pipe()?;
    let [from_child, to_parent] = make_pipe()?;
    // SAFETY: single-threaded here; the child only runs `child_main`, which uses raw
    // syscalls and ends with _exit.
    let child = unsafe { libc::fork() };
    match child {
        -1 => return Err(format!("fork: {}", errno())),
        0 => {
            child_main(from_parent, to_parent)
        }
        _ => {}
    }
    // SAFETY: the child's ends, not needed here.
    unsafe {
        libc::close(from_parent);
        libc::close(to_parent);
    }
    let seed = random_u64();
    let mut memory = vec![0u64; mib << 17];
    fill_pattern(&mut memory, seed);
    let [pipe_read, pipe_write] = make_pipe()?;
    let filler: Vec<u8> = (0..PIPE_BYTES).map(|i| (i * 7) as u8).collect();
    if !write_all(pipe_write, &filler) {
        return Err(format!("fill the pipe: {}", errno()));
    }
    block(&[libc::SIGUSR2, libc::SIGRTMIN() + 2], libc::SIG_BLOCK);
    let shared = Arc::new(Shared {
        request: AtomicU64::new(0),
        sleeper_ack: AtomicU64::new(0),
        spinner_ack: AtomicU64::new(0),
        spinner_broken: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        lock: Mutex::new(()),
        answered: Condvar::new(),
    });
    let sleeping = std::thread::spawn({
        let shared = shared.clone();
        move || sleeper(shared)
    });
    let spinning = std::thread::spawn({
        let shared = shared.clone();
        let seed = random_u64();
        move || spinner(shared, seed)
    });
    let mut line = [0u8; 64];
    let mut reply = [0u8; 256];
    let mut failures = 0u64;
    let mut first_failure: Option<String> = None;
    test.ready();
    while !test.term_requested() {
        // SAFETY: reads into a live buffer; SIGTERM (no SA_RESTART) ends it with EINTR.
        let n = unsafe { libc::read(control, line.as_mut_ptr().cast(), line.len()) };
        if n <= 0 {
            continue;
        }
        let text = std::str::from_utf8(&line[..n as usize]).unwrap_or("");
        let Some(number) = text.trim().strip_prefix("check ").and_then(|n| n.parse::<u64>().ok()) else { continue };
        let result = check(number, &memory, seed, pipe_read, to_child, from_child, &shared);
        let mut cursor = std::io::Cursor::new(&mut reply[..]);
        let _ = match &result {
            Ok(()) => std::io::Write::write_fmt(&mut cursor, format_args!("ok {number}\n")),
            Err(reason) => std::io::Write::write_fmt(&mut cursor, format_args!("fail {number} {reason}\n")),
        };
        let len = cursor.position() as usize;
        if let Err(reason) = result {
            failures += 1;
            first_failure.get_or_insert(reason);
        }
        write_all(answer, &reply[..len]);
    }
    shared.stop.store(true, Ordering::SeqCst);
    let _ = sleeping.join();
    let _ = spinning.join();
    // SAFETY: end of file for the child, then its exit status.
    unsafe {
        libc::close(to_child);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
    }
    match first_failure {
        None => Ok(()),
        Some(reason) => Err(format!("{failures} checks failed; the first: {reason}")),
    }
}
