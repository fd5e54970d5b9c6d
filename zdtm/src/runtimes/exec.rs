//! Running the runtimes' commands under the harness's reaper, and reading what the
//! containers hold: their processes (by pid namespace) and their count logs.
//!
//! A command's stdout and stderr go to files, never pipes: `runc run -d` and `runc
//! restore -d` hand their stdio to the container, which would hold a pipe open for
//! as long as it lives.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::reaper::{ExitStatus, Reaper};

/// What a finished command printed and how long it took.
#[derive(Debug, Clone)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Exited(0)
    }
}

static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// Runs `command` (stdin /dev/null, stdout and stderr into files under `scratch`) and
/// waits up to `timeout` for it; a command still running then is killed and is an
/// error. A command that ran and failed is not an error here: see [`Ran::success`].
pub fn run(reaper: &Reaper, command: &mut Command, scratch: &Path, timeout: Duration) -> anyhow::Result<Ran> {
    run_with(reaper, command, scratch, timeout, true)
}

/// `run` for a command that hands its stdio to the container it starts (`runc run
/// -d`, `runc restore -d`): stdin, stdout and stderr are /dev/null, which the
/// container may keep (a file of the harness would be an open file the checkpoint
/// must find in the container's mounts). Its messages go to runc's `--log`.
pub fn run_detached(reaper: &Reaper, command: &mut Command, scratch: &Path, timeout: Duration) -> anyhow::Result<Ran> {
    run_with(reaper, command, scratch, timeout, false)
}

fn run_with(reaper: &Reaper, command: &mut Command, scratch: &Path, timeout: Duration, capture: bool) -> anyhow::Result<Ran> {
    let shown = shown(command);
    let number = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let program = Path::new(command.get_program()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out_path = scratch.join(format!("cmd-{number:03}-{program}.out"));
    let err_path = scratch.join(format!("cmd-{number:03}-{program}.err"));
    let out = std::fs::File::create(&out_path).with_context(|| format!("create {}", out_path.display()))?;
    let err = std::fs::File::create(&err_path).with_context(|| format!("create {}", err_path.display()))?;
    if capture {
        command.stdin(Stdio::null()).stdout(out).stderr(err);
    } else {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    }
    let started = Instant::now();
    let child = reaper.spawn(command).with_context(|| format!("run {shown}"))?;
    let pid = i32::try_from(child.id()).context("pid")?;
    drop(child);
    let Some(status) = reaper.wait_exit(pid, timeout) else {
        reaper.kill_and_reap(pid);
        bail!("{shown}: still running after {} s, killed", timeout.as_secs());
    };
    let elapsed = started.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    Ok(Ran { status, stdout, stderr, elapsed })
}

/// `run`, and a failure (non-zero exit) is an error naming the command and its last
/// line of stderr.
pub fn run_ok(reaper: &Reaper, command: &mut Command, scratch: &Path, timeout: Duration) -> anyhow::Result<Ran> {
    let shown = shown(command);
    let ran = run(reaper, command, scratch, timeout)?;
    if !ran.success() {
        bail!("{shown}: {}: {}", ran.status, last_line(&ran.stderr));
    }
    Ok(ran)
}

/// The command line as a shell would show it (program name and arguments).
pub fn shown(command: &Command) -> String {
    let program = Path::new(command.get_program()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("{program} {}", args.join(" "))
}

/// The last non-empty line of `text`, trimmed ("(nothing)" when there is none).
pub fn last_line(text: &str) -> String {
    text.lines().rev().map(str::trim).find(|line| !line.is_empty()).unwrap_or("(nothing)").to_string()
}

/// The processes in `init`'s pid namespace: pid inside that namespace → command line
/// (arguments joined by spaces). Read from /proc of the host.
pub fn namespace_processes(init: i32) -> anyhow::Result<BTreeMap<i32, String>> {
    let namespace = std::fs::read_link(format!("/proc/{init}/ns/pid")).with_context(|| format!("pid namespace of {init}"))?;
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").context("read /proc")?.filter_map(|e| e.ok()) {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&namespace) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let Some(inner) = crate::procfs::parse_key_values(&status)
            .get("NSpid")
            .and_then(|field| field.split_whitespace().last())
            .and_then(|last| last.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<String> = cmdline.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
        found.insert(inner, words.join(" "));
    }
    Ok(found)
}

/// The long-lived processes of a counting container: all but the counter's `sleep 0.2`
/// and the short `/bin/true`s of its start.
pub fn lasting(processes: &BTreeMap<i32, String>) -> BTreeMap<i32, String> {
    processes.iter().filter(|(_, cmdline)| *cmdline != "sleep 0.2" && *cmdline != "/bin/true").map(|(pid, c)| (*pid, c.clone())).collect()
}

/// The counts of the log at `path` (empty while it does not exist).
pub fn read_log(path: &Path) -> anyhow::Result<Vec<u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    };
    super::counter::values(&text).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

/// Waits until the log at `path` has at least `lines` counts (the counter writes one
/// every 0.2 s; `timeout` bounds the wait), and returns them.
pub fn wait_for_log(path: &Path, lines: usize, timeout: Duration) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = read_log(path)?;
        if log.len() >= lines {
            return Ok(log);
        }
        if Instant::now() >= deadline {
            bail!("{}: {} counts after {} s, waited for {lines}", path.display(), log.len(), timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first error a criu log (CRIU's or crust's) names: CRIU's `Error (file:line):`
/// lines, crust's `ERROR:` lines; else the last line. CRIU's failure to raise its own
/// RLIMIT_NOFILE (no CAP_SYS_RESOURCE here) is an error it goes on from: left out.
pub fn first_log_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let error = text
        .lines()
        .filter(|line| !line.contains("RLIMIT_NOFILE"))
        .find(|line| line.contains("Error (") || line.contains("ERROR:") || line.contains(" error: ") || line.starts_with("Error"))
        .map(|line| line.trim().to_string());
    error.or_else(|| Some(last_line(&text)))
}

/// A scratch directory, emptied first.
pub fn fresh_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    Ok(path.to_path_buf())
}
