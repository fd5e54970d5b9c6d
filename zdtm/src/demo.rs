//! `cargo xtest demo`: checkpoint a live counter, show it gone, restore it, show it count
//! on from where it stopped, under the same pid.
//!
//! Unsafe here: inotify on the counter's log, so the demo waits on the log's content
//! rather than on sleeps. Guarantee: the inotify fd is owned by an `OwnedFd` and the event
//! buffer is a local array.
#![allow(unsafe_code)]

use crate::catalog::DEMO_COUNTER;
use crate::harness::{engine_logs, Config, Harness, Launched};
use crate::reaper::ExitStatus;
use anyhow::{bail, Context};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs the demo; prints the narrative.
pub fn run_demo(config: Config) -> anyhow::Result<()> {
    let harness = Harness::new(config)?;
    let engine_name = harness
        .config
        .engine
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    let engine_name = engine_name.unwrap_or_else(|| "crust".into());
    let outdir = harness.test_dir("demo")?;
    let log_path = outdir.join("counter.log");
    println!(
        "demo: starting the counter (adds 1 every 100 ms, appends `count N` to {})",
        log_path.display()
    );
    let pid = match harness.launch(&DEMO_COUNTER, &outdir, crate::catalog::Flavor::Host, None, &[])? {
        Launched::Ready { pid, .. } => pid,
        Launched::Skip(reason) => bail!("counter refused to start: {reason}"),
    };
    let result = narrate(&harness, &engine_name, pid, &outdir, &log_path);
    harness.reaper.kill_and_reap(pid);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&outdir);
    }
    result
}

fn narrate(
    harness: &Harness,
    engine_name: &str,
    pid: i32,
    outdir: &Path,
    log_path: &Path,
) -> anyhow::Result<()> {
    println!("demo: counter is pid {pid}; waiting for it to reach count 10");
    wait_for_log(log_path, Duration::from_secs(30), |counts| {
        counts.last().is_some_and(|last| *last >= 10)
    })?;
    let images = outdir.join("images");
    std::fs::create_dir_all(&images).with_context(|| format!("create {}", images.display()))?;
    let dump_args: Vec<String> = vec![
        "dump".into(),
        "-t".into(),
        pid.to_string(),
        "-D".into(),
        images.display().to_string(),
        "-o".into(),
        "dump.log".into(),
        "-v4".into(),
    ];
    println!("demo: $ {engine_name} {}", dump_args.join(" "));
    let (status, elapsed) = harness.run_engine(&dump_args, &images, "dump")?;
    if status != ExitStatus::Exited(0) {
        bail!(
            "{engine_name} dump: {status}\n{}",
            engine_logs(&images, "dump")
        );
    }
    println!("demo: dumped in {} ms", elapsed.as_millis());
    if harness
        .reaper
        .wait_exit(pid, Duration::from_secs(20))
        .is_none()
    {
        bail!("pid {pid} still alive after the dump");
    }
    let stopped_at = *read_counts(log_path)?
        .last()
        .context("log is empty after the dump")?;
    println!(
        "demo: pid {pid} is gone (/proc/{pid} exists: {}); the log stopped at `count {stopped_at}`",
        Path::new(&format!("/proc/{pid}")).exists()
    );
    // A deliberate pause: the point is to show that nothing is counting now.
    std::thread::sleep(Duration::from_millis(500));
    let still = *read_counts(log_path)?.last().context("log is empty")?;
    println!("demo: half a second later the log still ends at `count {still}`");

    let pidfile = images.join("restore.pid");
    let restore_args: Vec<String> = vec![
        "restore".into(),
        "-D".into(),
        images.display().to_string(),
        "-d".into(),
        "--pidfile".into(),
        pidfile.display().to_string(),
        "-o".into(),
        "restore.log".into(),
        "-v4".into(),
    ];
    println!("demo: $ {engine_name} {}", restore_args.join(" "));
    harness.reaper.forget(pid);
    let (status, elapsed) = harness.run_engine(&restore_args, &images, "restore")?;
    if status != ExitStatus::Exited(0) {
        bail!(
            "{engine_name} restore: {status}\n{}",
            engine_logs(&images, "restore")
        );
    }
    println!(
        "demo: restored in {} ms; pid {pid} alive again: {}",
        elapsed.as_millis(),
        harness.reaper.is_alive_child(pid)
    );
    let counts = wait_for_log(log_path, Duration::from_secs(30), |counts| {
        counts.last().is_some_and(|last| *last >= stopped_at + 5)
    })?;
    let resumed: Vec<String> = counts
        .iter()
        .skip_while(|count| **count <= stopped_at)
        .take(5)
        .map(|count| format!("count {count}"))
        .collect();
    println!("demo: the log goes on: {}", resumed.join(", "));
    let first_after = counts.iter().copied().find(|count| *count > stopped_at);
    if first_after != Some(stopped_at + 1)
        || counts.iter().filter(|count| **count == 1).count() != 1
    {
        bail!(
            "counter did not continue from {}: log holds {counts:?}",
            stopped_at + 1
        );
    }
    println!(
        "demo: same pid {pid}, counter continued from {} (not from 1): the memory came back",
        stopped_at + 1
    );
    println!("demo: killing pid {pid}; done");
    Ok(())
}

/// The numbers of the `count N` lines of the counter's log.
fn read_counts(log_path: &Path) -> anyhow::Result<Vec<u64>> {
    let text = std::fs::read_to_string(log_path)
        .with_context(|| format!("read {}", log_path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("count "))
        .filter_map(|n| n.trim().parse().ok())
        .collect())
}

/// Waits, woken by inotify IN_MODIFY, until the log's counts satisfy `done`.
#[doc(alias = "inotify_add_watch")]
fn wait_for_log(
    log_path: &Path,
    timeout: Duration,
    done: impl Fn(&[u64]) -> bool,
) -> anyhow::Result<Vec<u64>> {
    // SAFETY: inotify_init1 takes flags only; the fd is wrapped at once.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("inotify_init1");
    }
    // SAFETY: `raw` is a fresh fd that nobody else owns.
    let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
    let c_path = std::ffi::CString::new(log_path.as_os_str().as_encoded_bytes())
        .context("log path has NUL")?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c_path.as_ptr(), libc::IN_MODIFY) } < 0
    {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("watch {}", log_path.display()));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let counts = read_counts(log_path)?;
        if done(&counts) {
            return Ok(counts);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "log {} did not get there in {}s: {counts:?}",
                log_path.display(),
                timeout.as_secs()
            );
        }
        let mut poll_fd = libc::pollfd {
            fd: inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        let ready = unsafe {
            libc::poll(
                &mut poll_fd,
                1,
                left.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if ready > 0 {
            let mut events = [0u8; 4096];
            // SAFETY: reads at most events.len() bytes into the local buffer.
            unsafe {
                libc::read(
                    inotify.as_raw_fd(),
                    events.as_mut_ptr().cast(),
                    events.len(),
                )
            };
        }
    }
}
