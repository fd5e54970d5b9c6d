//! static_rust: a Rust program linked statically (`-C target-feature=+crt-static`, no
//! ld.so, no libc.so), built by build.rs with plain rustc, so it cannot use the crate's
//! test library or the libc crate: the protocol (see `src/lib.rs`) is spoken here with
//! std and a handful of C declarations. State: a heap pattern, a HashMap with per-process
//! random hasher keys, the pid.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

extern "C" {
    fn fork() -> i32;
    fn setsid() -> i32;
    fn getpid() -> i32;
    fn getppid() -> i32;
    fn sched_yield() -> i32;
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn syscall(number: i64, ...) -> i64;
    fn _exit(status: i32) -> !;
    fn write(fd: i32, buffer: *const u8, count: usize) -> isize;
    fn close(fd: i32) -> i32;
    fn dup2(old: i32, new: i32) -> i32;
}

const SIGTERM: i32 = 15;
/// `futex`: its number differs per architecture (close_range's does not).
#[cfg(target_arch = "x86_64")]
const SYS_FUTEX: i64 = 202;
#[cfg(target_arch = "aarch64")]
const SYS_FUTEX: i64 = 98;
#[cfg(target_arch = "powerpc64")]
const SYS_FUTEX: i64 = 221;
#[cfg(target_arch = "s390x")]
const SYS_FUTEX: i64 = 238;
const SYS_CLOSE_RANGE: i64 = 436;
const FUTEX_WAIT_PRIVATE: i32 = 128;

static TERM: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_term(_signal: i32) {
    TERM.store(1, Ordering::SeqCst);
}

fn pattern(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = urandom.read_exact(&mut bytes);
    }
    u64::from_ne_bytes(bytes)
}

fn main() {
    let Some(outdir) = std::env::var_os("ZDTM_OUTDIR").map(std::path::PathBuf::from) else {
        eprintln!("static_rust: ZDTM_OUTDIR not set: run me from the zdtm harness");
        std::process::exit(2);
    };
    let ready_fd: i32 = std::env::var("ZDTM_READY_FD").ok().and_then(|fd| fd.parse().ok()).unwrap_or(-1);
    // SAFETY: single-threaded; the parent only calls _exit; the child waits for it to go.
    unsafe {
        let launcher = getpid();
        if fork() != 0 {
            _exit(0);
        }
        while getppid() == launcher {
            sched_yield();
        }
        setsid();
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(outdir.join("static_rust.log"));
    let null = std::fs::File::open("/dev/null");
    // SAFETY: dup2 onto stdio and close_range on fds this process does not use.
    unsafe {
        use std::os::fd::AsRawFd;
        if let Ok(null) = &null {
            dup2(null.as_raw_fd(), 0);
        }
        if let Ok(log) = &log {
            dup2(log.as_raw_fd(), 1);
            dup2(log.as_raw_fd(), 2);
        }
        drop(null);
        drop(log);
        if ready_fd > 3 {
            syscall(SYS_CLOSE_RANGE, 3u32, (ready_fd - 1) as u32, 0u32);
        }
        syscall(SYS_CLOSE_RANGE, if ready_fd >= 3 { ready_fd as u32 + 1 } else { 3 }, u32::MAX, 0u32);
        signal(SIGTERM, on_term);
    }
    let token = random();
    let seed = random();
    let heap: Vec<u64> = (0..(4 << 20) / 8).map(|index| pattern(seed, index)).collect();
    let map: HashMap<u64, u64> = (0..1000).map(|index| (random(), index)).collect();
    let keys: Vec<(u64, u64)> = map.iter().map(|(key, value)| (*key, *value)).collect();
    // SAFETY: getpid takes no arguments.
    let pid = unsafe { getpid() };
    let message = format!("{pid} {token:016x}\n");
    if ready_fd >= 0 {
        // SAFETY: a live buffer and the ready fd, closed right after.
        unsafe {
            write(ready_fd, message.as_ptr(), message.len());
            close(ready_fd);
        }
    }
    while TERM.load(Ordering::SeqCst) == 0 {
        // SAFETY: futex wait on a static word, no timeout.
        unsafe { syscall(SYS_FUTEX, TERM.as_ptr(), FUTEX_WAIT_PRIVATE, 0u32, std::ptr::null::<u8>()) };
    }
    let mut verdict = "PASS".to_string();
    // SAFETY: getpid takes no arguments.
    if unsafe { getpid() } != pid {
        verdict = format!("FAIL: pid changed from {pid}");
    } else if heap.iter().enumerate().any(|(index, word)| *word != pattern(seed, index as u64)) {
        verdict = "FAIL: heap pattern changed".into();
    } else if keys.iter().any(|(key, value)| map.get(key) != Some(value)) {
        verdict = "FAIL: HashMap lookups fail after restore".into();
    } else if std::fs::read_to_string("/proc/self/maps").is_ok_and(|maps| maps.contains("ld-linux")) {
        verdict = "FAIL: a static program has ld.so mapped".into();
    }
    let text = format!("{verdict}\ntoken {token:016x}\n");
    let written = std::fs::File::create(outdir.join("static_rust.out")).and_then(|mut out| out.write_all(text.as_bytes()));
    eprintln!("static_rust: {verdict}");
    std::process::exit(if written.is_ok() && verdict == "PASS" { 0 } else { 1 });
}
