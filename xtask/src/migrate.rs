//! `cargo xtest migrate [--vs-criu PATH] [--size BYTES] [--rate BYTES] [--rounds N]`: a
//! live migration on one machine, with its figures.
//!
//! The process (`xtask/migrate/writer.c`, 1 GiB rewritten at 64 MiB/s by default) runs
//! as the init of a pid namespace of its own (`unshare --pid --fork`). It is pre-dumped
//! over the page server (`pre-dump --page-server` to `page-server`, each round with
//! `--prev-images-dir` on both sides) until the changed set stops shrinking (a round
//! sends at least 90% of the one before, or under 1 MiB, or `--rounds` are done), then
//! dumped with `--lazy-pages`: the source keeps the tree frozen and serves the pages
//! that changed since the last round. The destination copies the images (not the
//! pages), starts `lazy-pages --page-server` against the source and restores with
//! `--lazy-pages`: the source still holds the old pids, so the restore makes a new pid
//! namespace. The restored writer runs on, its pages coming in on faults and in the
//! background; then it checks every page (a page lost or older than its last write
//! fails) and the figures are printed: bytes and time per round, downtime (from the
//! final dump's start, and from its freeze, until `restore` returned with the tree
//! running) and the time until every page had arrived. Without soft-dirty bits
//! (missing on this kernel) crust finds the changed pages by comparing page digests:
//! each pre-dump reads the whole memory in its freeze; the final dump does not, its
//! source compares when the destination asks (`CHANGED`, `page_server/source.rs`).
//!
//! `--vs-criu ci/criu` runs the same flow with CRIU and prints its figures, or its
//! own words where it fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const DEFAULT_SIZE: u64 = 1 << 30;
const DEFAULT_RATE: u64 = 64 << 20;
const DEFAULT_ROUNDS: usize = 6;

/// Entry point of the migrate verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut options = Options { size: DEFAULT_SIZE, rate: DEFAULT_RATE, rounds: DEFAULT_ROUNDS, criu: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--vs-criu" => options.criu = Some(PathBuf::from(value()?)),
            "--size" => options.size = parse_bytes(value()?)?,
            "--rate" => options.rate = parse_bytes(value()?)?,
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--help" | "-h" => {
                eprintln!("usage: cargo xtest migrate [--vs-criu PATH] [--size BYTES] [--rate BYTES/s] [--rounds N]");
                return Ok(());
            }
            other => bail!("migrate: unknown option {other} (see --help)"),
        }
    }
    crate::tools::require("migrate", &crate::tools::migrate())?;
    // SAFETY: geteuid takes no arguments.
    if unsafe { libc::geteuid() } != 0 {
        bail!("migrate: needs root (ptrace, namespaces, userfaultfd)");
    }
    // SAFETY: PR_SET_CHILD_SUBREAPER takes integers; the restored writers are reparented here.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo).current_dir(&workspace).args(["build", "--release", "-p", "crust", "--bin", "crust"]).status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p crust failed: {status}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let scratch = target.join("migrate");
    std::fs::create_dir_all(&scratch).with_context(|| format!("create {}", scratch.display()))?;
    let writer = scratch.join("writer");
    let source = workspace.join("xtask/migrate/writer.c");
    let status = Command::new("cc").args(["-O2", "-Wall", "-o"]).arg(&writer).arg(&source).status().context("run cc")?;
    if !status.success() {
        bail!("cc {}: {status}", source.display());
    }
    println!(
        "migrate: {} MiB rewritten at {} MiB/s, in a pid namespace of its own; figures taken on a shared machine are noisy",
        options.size >> 20,
        options.rate >> 20
    );
    let mut engines = vec![Engine { name: "crust", path: target.join("release/crust") }];
    if let Some(criu) = &options.criu {
        engines.push(Engine { name: "criu", path: workspace.join(criu) });
    }
    let mut failed = false;
    for engine in &engines {
        // Images on tmpfs: the figures are the transfer's, not a disk's.
        let dir = Path::new("/dev/shm").join(format!("crust-migrate-{}", engine.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        match migrate(engine, &writer, &dir, &options) {
            Ok(figures) => figures.print(engine.name),
            Err(error) => {
                println!("{}: {error:#}", engine.name);
                failed |= engine.name == "crust";
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if failed {
        bail!("migrate: crust's migration failed");
    }
    Ok(())
}

struct Options {
    size: u64,
    rate: u64,
    rounds: usize,
    criu: Option<PathBuf>,
}

struct Engine {
    name: &'static str,
    path: PathBuf,
}

impl Engine {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.path);
        command.args(args).stdin(Stdio::null());
        command
    }
}

#[derive(Default)]
struct Figures {
    /// Per pre-dump round: bytes the page server wrote, wall time of the pre-dump.
    rounds: Vec<(u64, Duration)>,
    /// Bytes the source served lazily (crust's log; None for CRIU).
    lazy_bytes: Option<u64>,
    /// From the final dump's start until restore returned (the tree running).
    downtime: Duration,
    /// From the final dump's freeze (its log) until restore returned.
    downtime_from_freeze: Option<Duration>,
    /// From the final dump's start until the lazy-pages daemon had every page.
    all_pages: Duration,
    /// Restore alone (restore-to-running).
    restore: Duration,
    /// From the final dump's start until its images were written and it served.
    dump_ready: Duration,
    /// The writer's check: pages it wrote in all.
    written: String,
}

impl Figures {
    fn print(&self, engine: &str) {
        for (index, (bytes, took)) in self.rounds.iter().enumerate() {
            println!("{engine}: pre-dump round {}: {:.1} MiB sent in {:.0} ms", index + 1, *bytes as f64 / (1 << 20) as f64, took.as_secs_f64() * 1e3);
        }
        if let Some(bytes) = self.lazy_bytes {
            println!("{engine}: final dump --lazy-pages: {:.1} MiB sent by the source on request (changed since the last round; the rest from the pre-dumps)", bytes as f64 / (1 << 20) as f64);
        }
        let from_freeze = self.downtime_from_freeze.map(|d| format!(", {:.0} ms from the freeze", d.as_secs_f64() * 1e3)).unwrap_or_default();
        println!("{engine}: downtime {:.0} ms from the final dump's start{from_freeze} (restore-to-running {:.1} ms)", self.downtime.as_secs_f64() * 1e3, self.restore.as_secs_f64() * 1e3);
        println!("{engine}: final dump's images written (the source serving) {:.0} ms after its start", self.dump_ready.as_secs_f64() * 1e3);
        println!("{engine}: every page at the destination {:.0} ms after the final dump's start", self.all_pages.as_secs_f64() * 1e3);
        println!("{engine}: the migrated writer checked every page: {}", self.written.trim());
    }
}

/// Children killed and reaped when the flow ends early.
#[derive(Default)]
struct Guard {
    children: Vec<Child>,
    pids: Vec<i32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in &self.pids {
            // SAFETY: kill takes integers; the pids are this flow's writers.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in &self.pids {
            let mut status = 0;
            // SAFETY: status is a valid out-pointer; a pid that is not a child fails.
            unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
        }
    }
}

fn migrate(engine: &Engine, writer: &Path, dir: &Path, options: &Options) -> anyhow::Result<Figures> {
    let mut guard = Guard::default();
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir_all(&src)?;
    std::fs::create_dir_all(&dst)?;
    let result = dir.join("writer.result");
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(writer)
        .args([options.size.to_string(), options.rate.to_string()])
        .arg(&result)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("spawn unshare --pid --fork (util-linux)")?;
    let unshare_pid = unshare.id();
    guard.children.push(unshare);
    let ready = PathBuf::from(format!("{}.ready", result.display()));
    wait_for(|| ready.exists(), Duration::from_secs(60)).context("the writer did not fill its memory in 60 s")?;
    let children = std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))?;
    let pid: i32 = children.split_whitespace().next().and_then(|p| p.parse().ok()).context("unshare's child")?;
    guard.pids.push(pid);
    let pid_text = pid.to_string();
    let mut figures = Figures::default();

    // Pre-dumps until the changed set stops shrinking.
    let mut rounds = 0;
    for round in 1..=options.rounds {
        let name = round.to_string();
        let parent = (round > 1).then(|| format!("../{}", round - 1));
        std::fs::create_dir_all(src.join(&name))?;
        std::fs::create_dir_all(dst.join(&name))?;
        let port = free_port()?.to_string();
        let mut server = engine.command(&["page-server", "--address", "127.0.0.1", "--port", &port, "-v4", "-o", "page-server.log", "-D"]);
        server.arg(dst.join(&name));
        if let Some(parent) = &parent {
            server.args(["--prev-images-dir", parent]);
        }
        let server = ready_child(&mut server).context("page server")?;
        guard.children.push(server);
        let mut pre = engine.command(&["pre-dump", "-t", &pid_text, "--page-server", "--address", "127.0.0.1", "--port", &port, "-v4", "-o", "pre-dump.log", "-D"]);
        pre.arg(src.join(&name));
        if let Some(parent) = &parent {
            pre.args(["--prev-images-dir", parent]);
        }
        let started = Instant::now();
        let output = pre.output().context("run pre-dump")?;
        let took = started.elapsed();
        let mut server = guard.children.pop().expect("the page server");
        if !output.status.success() {
            let _ = server.kill();
            let _ = server.wait();
            let words = format!("pre-dump round {round} failed: {}{}", String::from_utf8_lossy(&output.stderr).trim(), log_errors(&src.join(&name).join("pre-dump.log")));
            if round > 1 {
                bail!(words);
            }
            // The final dump alone still shows the rest of the flow.
            println!("{}: {words}\n{}: going on without pre-dumps", engine.name, engine.name);
            break;
        }
        let status = server.wait()?;
        if !status.success() {
            bail!("page server of round {round}: {status}{}", log_errors(&dst.join(&name).join("page-server.log")));
        }
        let bytes = bytes_of(&dst.join(&name), "pages-");
        figures.rounds.push((bytes, took));
        rounds = round;
        let before = figures.rounds.len().checked_sub(2).map(|i| figures.rounds[i].0);
        if bytes < 1 << 20 || before.is_some_and(|before| bytes * 10 >= before * 9) {
            break;
        }
    }

    // The final dump leaves the changed pages at the source and serves them.
    let final_src = src.join("final");
    let final_dst = dst.join("final");
    std::fs::create_dir_all(&final_src)?;
    std::fs::create_dir_all(&final_dst)?;
    let parent = (rounds > 0).then(|| format!("../{rounds}"));
    let port = free_port()?.to_string();
    let started = Instant::now();
    let mut dump = engine.command(&["dump", "-t", &pid_text, "--lazy-pages", "--address", "127.0.0.1", "--port", &port, "-v4", "-o", "dump.log", "-D"]);
    dump.arg(&final_src);
    if let Some(parent) = &parent {
        dump.args(["--prev-images-dir", parent]);
    }
    let dump = match ready_child(&mut dump) {
        Ok(dump) => dump,
        Err(error) => bail!("final dump --lazy-pages: {error:#}{}", log_errors(&final_src.join("dump.log"))),
    };
    guard.children.push(dump);
    figures.dump_ready = started.elapsed();
    copy_files(&final_src, &final_dst)?;
    if let Some(parent) = &parent {
        std::os::unix::fs::symlink(parent, final_dst.join("parent"))?;
    }
    let mut daemon = engine.command(&["lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", &port, "-v4", "-o", "lazy-pages.log", "-D"]);
    daemon.arg(&final_dst);
    let daemon = match ready_child(&mut daemon) {
        Ok(daemon) => daemon,
        Err(error) => bail!("lazy-pages: {error:#}{}{}", log_errors(&final_dst.join("lazy-pages.log")), log_errors(&final_src.join("dump.log"))),
    };
    guard.children.push(daemon);
    let pidfile = dir.join("restored.pid");
    let restore_started = Instant::now();
    let mut restore = engine.command(&["restore", "--lazy-pages", "-d", "-v4", "-o", "restore.log", "--pidfile"]);
    restore.arg(&pidfile).arg("-D").arg(&final_dst);
    let output = restore.output().context("run restore")?;
    let running = started.elapsed();
    figures.restore = restore_started.elapsed();
    if !output.status.success() {
        bail!(
            "restore --lazy-pages failed: {}{}{}",
            String::from_utf8_lossy(&output.stderr).trim(),
            log_errors(&final_dst.join("restore.log")),
            log_errors(&final_src.join("dump.log"))
        );
    }
    let restored: i32 = std::fs::read_to_string(&pidfile)?.trim().parse().context("the restored pid")?;
    guard.pids.push(restored);
    figures.downtime = running;
    if engine.name == "crust" {
        figures.downtime_from_freeze = log_time(&final_src.join("dump.log"), "seized ").map(|at| running.saturating_sub(at));
    }
    let mut daemon = guard.children.pop().expect("the daemon");
    let status = daemon.wait()?;
    figures.all_pages = started.elapsed();
    if !status.success() {
        bail!("lazy-pages: {status}{}", log_errors(&final_dst.join("lazy-pages.log")));
    }
    let mut dump = guard.children.pop().expect("the dump");
    let status = dump.wait()?;
    if !status.success() {
        bail!("final dump: {status}{}", log_errors(&final_src.join("dump.log")));
    }
    figures.lazy_bytes = log_pages_sent(&final_src.join("dump.log")).map(|pages| pages * 4096);
    // The original is gone with the dump; its unshare follows.
    if let Some(mut unshare) = guard.children.pop() {
        let _ = unshare.wait();
    }
    // Let the migrated writer run on at the destination, then ask for its check.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill takes integers; the pid is the restored writer.
    unsafe { libc::kill(restored, libc::SIGUSR1) };
    let mut status = 0;
    // SAFETY: status is a valid out-pointer; the writer was reparented to this subreaper.
    let waited = unsafe { libc::waitpid(restored, &mut status, 0) };
    guard.pids.clear();
    let text = std::fs::read_to_string(&result).unwrap_or_default();
    if waited != restored || status != 0 || !text.starts_with("PASS") {
        bail!("the migrated writer's check: wait status {status:#x}: {}", text.trim());
    }
    figures.written = format!("{} (pages written since the fill)", text.trim());
    Ok(figures)
}

/// Spawns `command` with `--status-fd 1` and waits for its ready byte (or its end).
fn ready_child(command: &mut Command) -> anyhow::Result<Child> {
    command.args(["--status-fd", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().context("spawn")?;
    let mut byte = [0u8; 1];
    let got = child.stdout.take().expect("piped").read(&mut byte).unwrap_or(0);
    if got == 0 {
        let status = child.wait()?;
        let mut stderr = String::new();
        let _ = child.stderr.take().expect("piped").read_to_string(&mut stderr);
        bail!("ended before it was ready ({status}): {}", stderr.trim());
    }
    Ok(child)
}

fn wait_for(mut done: impl FnMut() -> bool, timeout: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + timeout;
    while !done() {
        if Instant::now() > until {
            bail!("timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn bytes_of(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)?.flatten() {
        if entry.file_type()?.is_file() && !entry.file_name().to_string_lossy().ends_with(".log") {
            std::fs::copy(entry.path(), to.join(entry.file_name())).with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The log's error lines (CRIU's `Error (...)`, crust's `ERROR:`), for a message.
fn log_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("Error") || l.contains("ERROR")).collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("\n  {}: {}", log.display(), lines.join("\n  "))
    }
}

/// The time stamp `(  S.SSS)` of the first line of `log` holding `what`.
fn log_time(log: &Path, what: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(what))?;
    let stamp = line.strip_prefix('(')?.split(')').next()?.trim();
    stamp.parse::<f64>().ok().map(Duration::from_secs_f64)
}

/// Pages crust's source served (`lazy pages: N pages sent`).
fn log_pages_sent(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("pages sent in"))?;
    line.split("lazy pages: ").nth(1)?.split_whitespace().next()?.parse().ok()
}

fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let (number, shift) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    Ok(number.parse::<u64>().with_context(|| format!("a size: {text}"))? << shift)
}
