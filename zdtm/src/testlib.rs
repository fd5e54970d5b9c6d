//! The Rust side of the zdtm test library: what a test program calls to take part in the
//! harness protocol (see `docs` in `lib.rs`). The C side is `c/zdtmtst.{h,c}`, with the
//! same protocol.
//!
//! Unsafe here: fork/setsid/dup2 for daemonizing, `sigaction` for the SIGTERM handler,
//! `futex` to wait on the handler's flag, `getrandom`. Guarantee: these run while the test
//! is single-threaded, and the handler only stores to an atomic.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::Write;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Env var naming the write end of the ready pipe.
pub const READY_FD_ENV: &str = "ZDTM_READY_FD";
/// Env var naming the directory for the verdict file and the test's own files.
pub const OUTDIR_ENV: &str = "ZDTM_OUTDIR";

static TERM_RECEIVED: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigterm(_signal: libc::c_int) {
    TERM_RECEIVED.store(1, Ordering::SeqCst);
}

/// A running test program, between `init` and `finish`.
pub struct Test {
    /// Test name, also the stem of `<outdir>/<name>.out`.
    pub name: String,
    /// Where the verdict and the test's files go.
    pub outdir: PathBuf,
    ready_fd: Option<RawFd>,
    token: u64,
}

impl Test {
    /// Daemonizes (fork, parent exits, setsid), points stdin at /dev/null and stdout/stderr
    /// at `<outdir>/<name>.log`, and installs the SIGTERM handler (no SA_RESTART, so sleeps
    /// end with EINTR). Exits with status 2 when the env is not set up by a harness.
    pub fn init(name: &str) -> Test {
        let outdir = std::env::var_os(OUTDIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                eprintln!("{name}: {OUTDIR_ENV} not set: run me from the zdtm harness");
                std::process::exit(2)
            });
        let ready_fd = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|fd| fd.parse::<RawFd>().ok());
        // SAFETY: getpid takes no arguments.
        let launcher_pid = unsafe { libc::getpid() };
        // SAFETY: the test is single-threaded here; the parent only calls _exit.
        match unsafe { libc::fork() } {
            -1 => {
                eprintln!("{name}: fork: {}", std::io::Error::last_os_error());
                std::process::exit(2)
            }
            0 => {}
            // SAFETY: _exit never returns and touches no Rust state.
            _ => unsafe { libc::_exit(0) },
        }
        // Wait until the launcher is gone and we are the subreaper's child, so the
        // process tree (and anything tied to the parent, like PR_SET_PDEATHSIG) is
        // settled before the test builds its state.
        // SAFETY: getppid takes no arguments.
        while unsafe { libc::getppid() } == launcher_pid {
            // SAFETY: sched_yield takes no arguments.
            unsafe { libc::sched_yield() };
        }
        // SAFETY: setsid takes no arguments.
        unsafe { libc::setsid() };
        redirect_stdio(&outdir.join(format!("{name}.log")));
        close_inherited_fds(ready_fd);
        // SAFETY: `action` is fully initialised (zeroed, then handler and mask set); the
        // handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        }
        Test {
            name: name.to_string(),
            outdir,
            ready_fd,
            token: random_u64(),
        }
    }

    /// Tells the harness the state is built: writes `<pid> <token>` into the ready pipe
    /// and closes it, so no pipe is open at dump time.
    pub fn ready(&mut self) {
        self.send_ready(&format!("{} {:016x}\n", std::process::id(), self.token));
    }

    /// For tests that must send the ready message themselves from inside an asm block
    /// (so registers loaded there are provably held at dump time): the pipe fd (-1 when
    /// run without a harness) and the message. The caller writes the message and closes
    /// the fd; `ready` becomes a no-op.
    pub fn take_ready_for_asm(&mut self) -> (RawFd, String) {
        let message = format!("{} {:016x}\n", std::process::id(), self.token);
        (self.ready_fd.take().unwrap_or(-1), message)
    }

    /// Address of the word the SIGTERM handler sets to 1, for asm spin loops.
    pub fn term_flag_address(&self) -> *const u32 {
        TERM_RECEIVED.as_ptr()
    }

    /// Tells the harness this test cannot run here, then exits.
    pub fn skip(&mut self, reason: &str) -> ! {
        self.send_ready(&format!("skip {reason}\n"));
        std::process::exit(0)
    }

    fn send_ready(&mut self, message: &str) {
        if let Some(fd) = self.ready_fd.take() {
            // SAFETY: `message` is a live buffer of `len` bytes; fd is ours to close.
            unsafe {
                libc::write(fd, message.as_ptr().cast(), message.len());
                libc::close(fd);
            }
        }
    }

    /// Whether SIGTERM (the harness's "check now") has arrived.
    pub fn term_requested(&self) -> bool {
        TERM_RECEIVED.load(Ordering::SeqCst) != 0
    }

    /// Sleeps in `futex(FUTEX_WAIT)` on the handler's flag until SIGTERM arrives. Race-free:
    /// the kernel refuses to sleep once the flag is no longer 0.
    #[doc(alias = "FUTEX_WAIT")]
    pub fn wait_for_term(&self) {
        while !self.term_requested() {
            // SAFETY: the futex word is a static AtomicU32; no timeout pointer.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    TERM_RECEIVED.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    0u32,
                    std::ptr::null::<libc::timespec>(),
                );
            }
        }
    }

    /// Writes `PASS`/`FAIL: reason` and `token <hex>` to `<outdir>/<name>.out`, then exits
    /// 0 or 1.
    pub fn finish(self, result: Result<(), String>) -> ! {
        let (verdict, code) = match &result {
            Ok(()) => ("PASS".to_string(), 0),
            Err(reason) => (format!("FAIL: {reason}"), 1),
        };
        let path = self.outdir.join(format!("{}.out", self.name));
        let text = format!("{verdict}\ntoken {:016x}\n", self.token);
        if let Err(error) = std::fs::write(&path, text) {
            eprintln!("{}: write {}: {error}", self.name, path.display());
            std::process::exit(3);
        }
        eprintln!("{}: {verdict}", self.name);
        std::process::exit(code)
    }

    /// `<outdir>/<file>`, for the test's own files.
    pub fn path(&self, file: &str) -> PathBuf {
        self.outdir.join(file)
    }
}

fn redirect_stdio(log_path: &std::path::Path) {
    let dev_null = CString::new("/dev/null").expect("no NUL in a literal");
    let log =
        CString::new(log_path.as_os_str().as_encoded_bytes()).unwrap_or_else(|_| dev_null.clone());
    // SAFETY: both paths are NUL-terminated C strings that outlive the calls; dup2 onto
    // 0/1/2 replaces the inherited descriptors.
    unsafe {
        let null_fd = libc::open(dev_null.as_ptr(), libc::O_RDONLY);
        let log_fd = libc::open(
            log.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
            0o644,
        );
        if null_fd >= 0 {
            libc::dup2(null_fd, 0);
            if null_fd > 2 {
                libc::close(null_fd);
            }
        }
        if log_fd >= 0 {
            libc::dup2(log_fd, 1);
            libc::dup2(log_fd, 2);
            if log_fd > 2 {
                libc::close(log_fd);
            }
        }
    }
}

/// Closes every fd above 2 but the ready pipe: whatever the harness's own parent leaked
/// must not be open at dump time.
#[doc(alias = "close_range")]
fn close_inherited_fds(keep: Option<RawFd>) {
    let ranges: Vec<(u32, u32)> = match keep {
        Some(fd) if fd > 3 => vec![(3, fd as u32 - 1), (fd as u32 + 1, u32::MAX)],
        Some(3) => vec![(4, u32::MAX)],
        _ => vec![(3, u32::MAX)],
    };
    for (first, last) in ranges {
        // SAFETY: close_range only closes descriptors; none of them backs a Rust object yet.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    }
}

/// 64 random bits from `getrandom(2)`: the state a test builds must differ on every run,
/// so that a "restore" which re-runs the program cannot pass.
#[doc(alias = "getrandom")]
pub fn random_u64() -> u64 {
    let mut value = 0u64;
    // SAFETY: writes at most 8 bytes into `value`.
    let got = unsafe { libc::getrandom((&mut value as *mut u64).cast(), 8, 0) };
    if got != 8 {
        // Mix in time and pid instead: still different on every run.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        value = now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    }
    value
}

/// The pattern word at `index` for `seed` (splitmix64), so any page can be checked alone.
pub fn pattern_word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `words` with the pattern for `seed`.
pub fn fill_pattern(words: &mut [u64], seed: u64) {
    for (index, word) in words.iter_mut().enumerate() {
        *word = pattern_word(seed, index as u64);
    }
}

/// Checks `words` against the pattern for `seed`; names the first bad word.
pub fn check_pattern(words: &[u64], seed: u64) -> Result<(), String> {
    for (index, word) in words.iter().enumerate() {
        let expected = pattern_word(seed, index as u64);
        if *word != expected {
            return Err(format!(
                "word {index} (byte offset {:#x}) is {word:#018x}, expected {expected:#018x}",
                index * 8
            ));
        }
    }
    Ok(())
}

/// Writes a line to the test's log (stderr after `init`).
pub fn log(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Fails with a message when `condition` is false: `ensure(a == b, || format!(...))?`.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_round_trips_and_catches_a_flipped_bit() {
        let mut words = vec![0u64; 1024];
        fill_pattern(&mut words, 42);
        assert!(check_pattern(&words, 42).is_ok());
        assert!(check_pattern(&words, 43).is_err());
        words[700] ^= 1 << 5;
        let error = check_pattern(&words, 42).expect_err("flipped bit is found");
        assert!(error.starts_with("word 700 "), "{error}");
    }
}
