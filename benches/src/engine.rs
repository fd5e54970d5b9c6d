//! The checkpointers under test and one measured round: start a workload, dump it (the
//! dump kills it), restore it detached, verify it, kill it.
//!
//! Both engines are driven by their CRIU command line, so the harness measures what a user
//! gets: process start, image writing, everything.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use crust_images::pb;

use crate::sys;
use crate::workload::{Running, Workload};

/// Which checkpointer a command line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// This project's `crust` binary.
    Crust,
    /// The reference CRIU (e.g. `ci/criu`).
    Criu,
}

/// A checkpointer binary.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Which one.
    pub kind: EngineKind,
    /// Its binary or wrapper script.
    pub path: PathBuf,
    /// Extra arguments of its dump command (`--frozen-copy` to measure crust's old
    /// `--leave-running` path).
    pub dump_args: Vec<String>,
}

impl Engine {
    /// `crust` or `criu`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            EngineKind::Crust => "crust",
            EngineKind::Criu => "criu",
        }
    }
}

/// The figures of one good round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// How long the target was stopped (crust: seize to kill or release; CRIU:
    /// `frozen_time`), ms.
    pub freeze_ms: Option<f64>,
    /// Wall time of the dump command, ms.
    pub dump_ms: f64,
    /// Wall time of `restore -d` until it returned with the process running, ms.
    pub restore_ms: f64,
    /// Bytes of image files (logs and stats not counted).
    pub image_bytes: u64,
    /// Peak RSS of the dump command, KiB.
    pub dump_rss_kib: u64,
    /// Peak RSS of the restore command, KiB.
    pub restore_rss_kib: u64,
    /// User plus system CPU time of the dump command and the children it waited for, ms
    /// (not the target's: CRIU's parasite and both restorers run in the target).
    pub dump_cpu_ms: f64,
    /// The same for `restore -d`, ms.
    pub restore_cpu_ms: f64,
}

/// What one round came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Dumped, restored and verified.
    Measured(Figures),
    /// The engine refused the workload as not supported (its own words).
    Unsupported(String),
    /// Something broke: a failed dump or restore, or a restored process that differs.
    Failed(String),
}

/// Where a round works.
pub struct RoundPlace<'a> {
    /// Images go to `scratch/<engine>-<workload>/` (removed after the round).
    pub scratch: &'a Path,
}

/// Runs one round of `workload` under `engine`.
pub fn run_round(engine: &Engine, workload: &Workload, place: &RoundPlace) -> anyhow::Result<Outcome> {
    let images = place.scratch.join(format!("{}-{}", engine.name(), workload.name));
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir_all(&images).with_context(|| format!("create {}", images.display()))?;
    let outcome = measure(engine, workload, place.scratch, &images);
    let _ = std::fs::remove_dir_all(&images);
    outcome
}

fn measure(engine: &Engine, workload: &Workload, scratch: &Path, images: &Path) -> anyhow::Result<Outcome> {
    let mut running = Running::start(workload, scratch)?;
    let pid = running.pid;

    let pid_text = pid.to_string();
    let mut dump_args = vec!["dump", "-t", &pid_text];
    if workload.leave_running {
        dump_args.push("--leave-running");
    }
    dump_args.extend(engine.dump_args.iter().map(String::as_str));
    dump_args.push("-D");
    let dump = run_engine(engine, &dump_args, images, "dump.log")?;
    if dump.usage.code != 0 {
        let reason = failure_reason(&dump.stderr, &images.join("dump.log"));
        running.kill();
        return Ok(classify(engine, "dump", reason));
    }
    if workload.leave_running {
        // The original ran on: it must be the process it was.
        if let Err(error) = running.verify(Duration::from_secs(60)) {
            running.kill();
            return Ok(Outcome::Failed(format!("{} dump --leave-running: the original after the dump: {error:#}", engine.name())));
        }
    }
    running.reap_after_dump();
    let freeze_ms = match engine.kind {
        EngineKind::Crust => parse_crust_frozen_ms(&dump.stderr),
        EngineKind::Criu => read_criu_frozen_ms(images),
    };
    let image_bytes = image_size(images)?;

    let restore = run_engine(engine, &["restore", "-d", "-D"], images, "restore.log")?;
    if restore.usage.code != 0 {
        let reason = format!(
            "{} (after a good dump: {:.0} ms, frozen {} ms)",
            failure_reason(&restore.stderr, &images.join("restore.log")),
            dump.wall.as_secs_f64() * 1e3,
            freeze_ms.map(|v| format!("{v:.0}")).unwrap_or_else(|| "?".into())
        );
        running.kill();
        return Ok(classify(engine, "restore", reason));
    }
    let verified = running.verify(Duration::from_secs(60));
    running.kill();
    if let Err(error) = verified {
        return Ok(Outcome::Failed(format!("verify: {error:#}")));
    }
    Ok(Outcome::Measured(Figures {
        freeze_ms,
        dump_ms: dump.wall.as_secs_f64() * 1e3,
        restore_ms: restore.wall.as_secs_f64() * 1e3,
        image_bytes,
        dump_rss_kib: dump.usage.max_rss_kib,
        restore_rss_kib: restore.usage.max_rss_kib,
        dump_cpu_ms: dump.usage.cpu.as_secs_f64() * 1e3,
        restore_cpu_ms: restore.usage.cpu.as_secs_f64() * 1e3,
    }))
}

struct EngineRun {
    wall: Duration,
    usage: sys::ChildUsage,
    stderr: String,
}

/// `ENGINE VERB... IMAGES -o LOG -vN`, timed from spawn to wait4.
fn run_engine(engine: &Engine, verb_args: &[&str], images: &Path, log: &str) -> anyhow::Result<EngineRun> {
    let stderr_path = images.join(format!("{log}.stderr"));
    let stderr_file = std::fs::File::create(&stderr_path).with_context(|| format!("create {}", stderr_path.display()))?;
    let verbosity = match engine.kind {
        // -v3 makes crust print "frozen X ms"; both log to a file, as CRIU does by default.
        EngineKind::Crust => "-v3",
        EngineKind::Criu => "-v2",
    };
    let started = Instant::now();
    let child = Command::new(&engine.path)
        .args(verb_args)
        .arg(images)
        .args(["-o", log, verbosity])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .with_context(|| format!("run {}", engine.path.display()))?;
    let usage = sys::wait_child(child.id() as i32).context("wait for the engine")?;
    let wall = started.elapsed();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    Ok(EngineRun { wall, usage, stderr })
}

/// crust's `-v3` summary line: `crust: dumped pid N (P pages, frozen 12.3 ms, total 45.6 ms)`.
pub fn parse_crust_frozen_ms(stderr: &str) -> Option<f64> {
    let rest = &stderr[stderr.find("frozen ")? + "frozen ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// CRIU's `stats-dump`: `frozen_time` in microseconds.
fn read_criu_frozen_ms(images: &Path) -> Option<f64> {
    let stats: pb::StatsEntry = crust_images::read_single(&images.join("stats-dump")).ok()?;
    Some(f64::from(stats.dump?.frozen_time) / 1e3)
}

/// Sum of the image files' sizes (`*.img`, not logs or stats).
fn image_size(images: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(images).with_context(|| format!("read {}", images.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".img") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The engine's own words about why it failed: its stderr, else the last error lines of
/// its log.
fn failure_reason(stderr: &str, log: &Path) -> String {
    let from_stderr: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if let Some(last) = from_stderr.last() {
        return last.trim().to_string();
    }
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = log_text.lines().filter(|l| l.contains("Error") || l.contains("ERROR")).collect();
    errors.last().or(log_text.lines().last().as_ref()).map(|l| l.trim().to_string()).unwrap_or_else(|| "no message".into())
}

fn classify(engine: &Engine, step: &str, reason: String) -> Outcome {
    let lower = reason.to_lowercase();
    if lower.contains("not supported") || lower.contains("unsupported") {
        Outcome::Unsupported(reason)
    } else {
        Outcome::Failed(format!("{} {step}: {reason}", engine.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crust_frozen_line() {
        let line = "crust: dumped pid 42 (12 pages, frozen 3.4 ms, total 9.0 ms)\n";
        assert_eq!(parse_crust_frozen_ms(line), Some(3.4));
        assert_eq!(parse_crust_frozen_ms("nothing"), None);
    }

    #[test]
    fn classifies_unsupported() {
        let engine = Engine { kind: EngineKind::Crust, path: "crust".into(), dump_args: Vec::new() };
        let outcome = classify(&engine, "dump", "dump pid 1: not supported: a process with 100 threads".into());
        assert!(matches!(outcome, Outcome::Unsupported(_)));
        assert!(matches!(classify(&engine, "dump", "EPERM".into()), Outcome::Failed(_)));
    }
}
