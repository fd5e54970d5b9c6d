//! `kill_random`: crust is signalled at a random moment of a dump, over and over, and
//! the target must come out of every one of them as it was (issue 13's "no kill harms
//! the target").
//!
//! The target (`kill_target` in `src/bin/zdtm-rs/kill.rs`) holds 256 MiB of patterned
//! memory, a child, two threads besides the main one, a pipe with unread bytes and a
//! signal mask of its own in each thread. Per trial the harness starts
//! `crust dump` (with `--leave-running` or without, at random), waits a random delay
//! (the test's input: from 0 to 1.3 times a whole dump, half of the trials within its
//! first tenth, where the seize and the parasite are), sends SIGKILL, SIGTERM or SIGINT
//! (in turn), and then checks:
//! - crust's end: killed by the signal, or exit 1 with the one line
//!   `crust: dump interrupted by SIGNAL; pid N released unchanged`, or (the dump was
//!   done first) exit 0, after which a dump without `--leave-running` has killed the
//!   target by design and a new one is started; a signal that ends crust after such
//!   a dump killed the target (SIGKILL, or SIGTERM/SIGINT once crust let them go on
//!   its way out) (its images complete: the engine writes `stats-dump`
//!   last, before the kill) is that case too, told apart by the target's own end:
//!   it answers no check and was killed by SIGKILL;
//! - the target answers `check N` on its FIFO (every word of its memory, the pipe's
//!   bytes, the child and both threads answering): synchronised on the FIFOs, so the
//!   threads that were in the parasite when crust died are back in their own code;
//! - /proc: the whole tree as recorded before the first trial (`tree::TreeSnapshot`:
//!   processes, threads, state, signal masks and pending sets, every mapping, every fd
//!   with its position and flags), no tracer on any thread, no nftables table of
//!   crust's. Nothing may differ: the parasite's area that a crust killed while it
//!   lives leaves mapped is removed by the dump's guardian (counted from its line on
//!   crust's stderr, whose end of file, when crust and the guardian are both gone, is
//!   what the check waits for).
//!
//! The randomness is seeded (`--kill-seed S`, else from the clock) and the seed printed,
//! so a failing run can be replayed.
//!
//! Unsafe: one `poll` of the answer FIFO with a timeout.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::catalog::{AtDump, Flavor, Program, TestSpec};
use crate::harness::{Harness, HostInfo, Launched, LiveTree, TestOutcome, Verdict, ZdtmTest};
use crate::reaper::ExitStatus;
use crate::tree::TreeSnapshot;

/// The test's name.
pub const NAME: &str = "kill_random";
/// Trials when not told otherwise (`--kill-trials`; `cargo xtest nightly` runs 200).
/// Where crust does not chain the parasite's two injected syscalls (its dump log says
/// "not chained": the target has no rt_sigreturn trampoline or no syscall site the
/// backend follows), a SIGKILL inside one of them harms the target, and the test
/// skips, saying so.
pub const DEFAULT_TRIALS: u32 = 10;

/// What crust's dump log says of a parasite whose windows were not chained.
const NOT_CHAINED: &str = "not chained";

const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The random-kill test: `trials` dumps, each with crust signalled at a random moment.
pub struct KillTest {
    pub trials: u32,
    pub seed: Option<u64>,
}

fn target_spec() -> TestSpec {
    TestSpec {
        name: NAME,
        program: Program::Rust("kill_target"),
        args: &[],
        requirements: &[],
        volatile_status: &[],
        at_dump: AtDump::Running,
        host_only: Some("the harness signals crust, whose pid is in the host's namespace"),
        container_skip: Some("the harness signals crust, whose pid is in the host's namespace"),
        userns_skip: None,
        dump_args: &[],
        group: "core",
    }
}

/// The kill tests' directory, or the verdict when they cannot run (host flavor only).
fn test_dir(harness: &Harness, flavor: Flavor, name: &str) -> Result<std::path::PathBuf, Verdict> {
    if flavor != Flavor::Host {
        return Err(Verdict::Skipped("host flavor only".into()));
    }
    harness.test_dir(name).map_err(Verdict::Failed)
}

impl ZdtmTest for KillTest {
    fn name(&self) -> &str {
        NAME
    }

    fn can_run(&self, host: &HostInfo) -> Result<(), String> {
        target_spec().can_run(host)
    }

    fn run(&self, harness: &Harness, flavor: Flavor) -> TestOutcome {
        let mut outcome = TestOutcome { verdict: Verdict::Passed, dump_ms: None, restore_ms: None };
        let outdir = match test_dir(harness, flavor, NAME) {
            Ok(dir) => dir,
            Err(verdict) => {
                outcome.verdict = verdict;
                return outcome;
            }
        };
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        println!("{NAME}: seed {seed} (--kill-seed {seed} replays it), {} trials", self.trials);
        let mut run = Run { harness, outdir: &outdir, rng: SplitMix(seed), live: LiveTree::default(), target: None, tally: Tally::default() };
        outcome.verdict = match run.trials(self.trials) {
            Ok(None) => Verdict::Passed,
            Ok(Some(reason)) => Verdict::Skipped(reason),
            Err(error) => Verdict::Failed(error.context(format!("{NAME} seed {seed}"))),
        };
        println!("{NAME}: {}", run.tally.summary());
        if let Some(target) = run.target.take() {
            let finished = target.finish(harness);
            if let (Verdict::Passed, Err(error)) = (&outcome.verdict, finished) {
                outcome.verdict = Verdict::Failed(error);
            }
        }
        harness.kill_tree(&run.live);
        outcome.dump_ms = run.tally.dump_ms;
        if !harness.config.keep && matches!(outcome.verdict, Verdict::Passed) {
            let _ = std::fs::remove_dir_all(&outdir);
        }
        outcome
    }
}

/// Deterministic randomness (splitmix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next() % bound
        }
    }
}

#[derive(Default)]
struct Tally {
    trials: u32,
    by_signal: [u32; 3],
    leave_running: u32,
    interrupted: u32,
    killed: u32,
    finished_first: u32,
    before_handlers: u32,
    killed_after_done: u32,
    areas_removed: u32,
    dump_ms: Option<u64>,
}

impl Tally {
    fn summary(&self) -> String {
        format!(
            "{} trials (SIGKILL {}, SIGTERM {}, SIGINT {}; {} with --leave-running): {} stopped mid-dump by SIGTERM/SIGINT, \
             {} killed by SIGKILL, {} ended by the signal after the dump had killed the target, {} signalled before crust caught signals, \
             {} dumps done before the signal; parasite areas removed by the guardian after a SIGKILL: {}",
            self.trials,
            self.by_signal[0],
            self.by_signal[1],
            self.by_signal[2],
            self.leave_running,
            self.interrupted,
            self.killed,
            self.killed_after_done,
            self.before_handlers,
            self.finished_first,
            self.areas_removed
        )
    }
}

/// The image a dump writes last (CRIU's dump statistics).
const STATS_IMAGE: &str = "stats-dump";

/// What the dump's guardian says on crust's stderr when it removed an area.
const AREA_REMOVED: &str = "its parasite area";

/// crust's stderr, read until end of file by a thread: the end comes when crust and
/// its guardian (which inherits it) are both gone.
struct Stderr(std::sync::mpsc::Receiver<String>);

impl Stderr {
    fn read(stderr: std::process::ChildStderr) -> Stderr {
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Stderr(received)
    }

    /// Every line until end of file; `None` when it did not come within `timeout`.
    fn until_end(&self, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut said = Vec::new();
        loop {
            match self.0.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => said.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Some(said),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return None,
            }
        }
    }
}

/// A started target and its FIFOs.
struct Target {
    pid: i32,
    control: std::fs::File,
    answer: std::fs::File,
    record: TreeSnapshot,
    checks: u64,
}

impl Target {
    /// Asks the target to check itself (`check N` on its FIFO) and waits for `ok N`.
    fn check(&mut self) -> anyhow::Result<()> {
        self.checks += 1;
        let number = self.checks;
        // One write (atomic on a FIFO): the target reads a line with one read.
        self.control.write_all(format!("check {number}\n").as_bytes()).context("write the target's control FIFO")?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if Instant::now() > deadline {
                bail!("the target did not answer check {number} within {} s", ANSWER_TIMEOUT.as_secs());
            }
            match self.answer.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                Ok(_) => bail!("the target's answer FIFO ended"),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => wait_readable(&self.answer, deadline)?,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error).context("read the target's answer FIFO"),
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        if line != format!("ok {number}") {
            bail!("the target's check {number}: {line}");
        }
        Ok(())
    }

    /// SIGTERM, then its verdict (exit status and `.out`).
    fn finish(self, harness: &Harness) -> anyhow::Result<()> {
        harness.reaper.signal_child(self.pid, libc::SIGTERM);
        match harness.reaper.wait_exit(self.pid, ANSWER_TIMEOUT) {
            Some(ExitStatus::Exited(0)) => Ok(()),
            Some(status) => {
                let out = std::fs::read_to_string(harness.config.workdir.join(NAME).join(format!("{NAME}.out"))).unwrap_or_default();
                bail!("the target ended with {status}: {}", out.lines().next().unwrap_or(""))
            }
            None => bail!("the target did not end after SIGTERM"),
        }
    }
}

fn wait_readable(file: &std::fs::File, deadline: Instant) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let left = deadline.saturating_duration_since(Instant::now());
    let mut poll_fd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on the stack, count 1.
    let ready = unsafe { libc::poll(&mut poll_fd, 1, left.as_millis().min(60_000) as i32) };
    if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
        return Err(std::io::Error::last_os_error()).context("poll the target's answer FIFO");
    }
    Ok(())
}

struct Run<'h> {
    harness: &'h Harness,
    outdir: &'h Path,
    rng: SplitMix,
    live: LiveTree,
    target: Option<Target>,
    tally: Tally,
}

const SIGNALS: [(i32, &str); 3] = [(libc::SIGKILL, "SIGKILL"), (libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")];

impl Run<'_> {
    fn start_target(&mut self) -> anyhow::Result<()> {
        let spec = target_spec();
        let pid = match self.harness.launch(&spec, self.outdir, Flavor::Host, None, &[])? {
            Launched::Ready { pid, .. } => pid,
            Launched::Skip(reason) => bail!("the target skipped: {reason}"),
        };
        self.live = LiveTree { root: Some(pid), session: Some(pid), ..LiveTree::default() };
        let fifo = |name: &str| {
            std::fs::OpenOptions::new()
                .read(name == "answer")
                .write(name == "control")
                .custom_flags(libc::O_NONBLOCK)
                .open(self.outdir.join(name))
                .with_context(|| format!("open the target's {name} FIFO"))
        };
        let mut target = Target { pid, control: fifo("control")?, answer: fifo("answer")?, record: TreeSnapshot { processes: Default::default() }, checks: 0 };
        if let Err(error) = target.check() {
            return Err(error.context(format!("a new target\n{}", describe_tree(pid))));
        }
        target.record = TreeSnapshot::capture(pid, &[])?;
        self.target = Some(target);
        Ok(())
    }

    /// Starts `crust dump` of the target into a fresh directory.
    fn start_dump(&self, pid: i32, leave_running: bool) -> anyhow::Result<(i32, std::path::PathBuf, Stderr)> {
        let images = self.outdir.join("img");
        let _ = std::fs::remove_dir_all(&images);
        std::fs::create_dir_all(&images).context("create the images directory")?;
        let mut args = vec!["dump".to_string(), "-t".into(), pid.to_string(), "-D".into(), images.display().to_string()];
        args.extend(["-o".into(), "dump.log".into(), "-v4".into()]);
        if leave_running {
            args.push("--leave-running".into());
        }
        let mut child = self
            .harness
            .reaper
            .spawn(Command::new(&self.harness.config.engine).args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()))
            .context("spawn crust dump")?;
        let stderr = Stderr::read(child.stderr.take().context("crust's stderr")?);
        Ok((child.id() as i32, images, stderr))
    }

    /// `Ok(Some(reason))`: skipped, the windows are not chained here.
    fn trials(&mut self, trials: u32) -> anyhow::Result<Option<String>> {
        self.start_target()?;
        // One whole dump, to know how long one takes (and that a plain one leaves the
        // target as it was).
        let pid = self.target.as_ref().expect("started").pid;
        let started = Instant::now();
        let (engine, images, stderr) = self.start_dump(pid, true)?;
        let status = self.harness.reaper.wait_exit(engine, ENGINE_TIMEOUT);
        stderr.until_end(ENGINE_TIMEOUT).context("crust's stderr (its guardian's) never ended")?;
        match status {
            Some(ExitStatus::Exited(0)) => {}
            other => bail!("a dump with --leave-running: {other:?}\n{}", crate::harness::engine_logs(&images, "dump")),
        }
        let whole = started.elapsed();
        self.tally.dump_ms = Some(whole.as_millis() as u64);
        self.check_target("the dump without a signal")?;
        let log = std::fs::read_to_string(images.join("dump.log")).context("read the whole dump's dump.log")?;
        if let Some(line) = log.lines().find(|line| line.contains(NOT_CHAINED)) {
            return Ok(Some(format!("crust's injected syscalls are not chained here, a SIGKILL inside them would harm the target: {}", line.trim())));
        }
        for trial in 0..trials {
            let (signal, signal_name) = SIGNALS[trial as usize % 3];
            let leave_running = self.rng.below(2) == 1;
            let span = whole.as_micros() as u64 * 13 / 10;
            let delay = Duration::from_micros(if self.rng.below(2) == 0 { self.rng.below(span / 10) } else { self.rng.below(span) });
            self.tally.trials += 1;
            self.tally.by_signal[SIGNALS.iter().position(|s| s.0 == signal).expect("listed")] += 1;
            self.tally.leave_running += leave_running as u32;
            let what = format!("trial {trial}: {signal_name} after {} us{}", delay.as_micros(), if leave_running { ", --leave-running" } else { "" });
            let pid = self.target.as_ref().expect("started").pid;
            let (engine, images, stderr) = self.start_dump(pid, leave_running)?;
            // The delay is the test's input, not a synchronisation.
            std::thread::sleep(delay);
            self.harness.reaper.signal_child(engine, signal);
            let status = self.harness.reaper.wait_exit(engine, ENGINE_TIMEOUT);
            // The end of crust's stderr: crust and its guardian are both done.
            let said = stderr.until_end(ENGINE_TIMEOUT).with_context(|| format!("{what}: crust's stderr (its guardian's) never ended"))?;
            self.tally.areas_removed += said.iter().filter(|line| line.contains(AREA_REMOVED)).count() as u32;
            let stderr = said.join("\n");
            let interrupted_line = format!("crust: dump interrupted by {signal_name}; pid {pid} released unchanged");
            match status {
                Some(ExitStatus::Exited(0)) => {
                    self.tally.finished_first += 1;
                    if !leave_running {
                        // The dump was done and killed the target, as a dump does.
                        self.wait_gone(pid).with_context(|| what.clone())?;
                        self.start_target().with_context(|| format!("{what}: start a new target"))?;
                        continue;
                    }
                }
                Some(ExitStatus::Exited(1)) if signal != libc::SIGKILL && stderr.trim_end() == interrupted_line => {
                    self.tally.interrupted += 1
                }
                Some(ExitStatus::Signaled(got)) if got == signal => {
                    if signal == libc::SIGKILL {
                        self.tally.killed += 1;
                    } else {
                        // Before crust caught signals, or after it let them go again
                        // on its way out.
                        self.tally.before_handlers += 1
                    }
                    if !leave_running && images.join(STATS_IMAGE).exists() && self.killed_by_the_dump(&what)? {
                        continue;
                    }
                }
                other => bail!(
                    "{what}: crust ended with {other:?}, stderr {stderr:?} (expected {interrupted_line:?})\n{}",
                    crate::harness::engine_logs(&images, "dump")
                ),
            }
            self.check_target(&what).with_context(|| format!("crust's stderr (and its guardian's): {stderr:?}"))?;
        }
        Ok(None)
    }

    /// The target answers its check, and /proc shows it as recorded, untraced.
    fn check_target(&mut self, what: &str) -> anyhow::Result<()> {
        let target = self.target.as_mut().expect("started");
        if let Err(error) = target.check() {
            return Err(error.context(format!("{what}: the target\n{}", describe_tree(target.pid))));
        }
        let now = TreeSnapshot::capture(target.pid, &[]).with_context(|| format!("{what}: read the target's /proc"))?;
        let differences = target.record.differences(&now);
        if !differences.is_empty() {
            bail!("{what}: the target changed:\n  {}", differences.join("\n  "));
        }
        for pid in crate::tree::descendants(target.pid) {
            for entry in std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("list /proc/{pid}/task"))? {
                let path = entry?.path().join("status");
                let status = std::fs::read_to_string(&path).unwrap_or_default();
                let tracer = crate::procfs::parse_key_values(&status).get("TracerPid").cloned().unwrap_or_default();
                if tracer != "0" {
                    bail!("{what}: {} shows TracerPid {tracer}", path.display());
                }
            }
        }
        if let Ok(output) = Command::new("nft").args(["list", "tables"]).stderr(Stdio::null()).output() {
            let tables = String::from_utf8_lossy(&output.stdout);
            if let Some(line) = tables.lines().find(|line| line.contains("crust")) {
                bail!("{what}: an nftables table is left: {line}");
            }
        }
        Ok(())
    }

    /// After a dump without `--leave-running` whose images were complete ended by the
    /// signal (SIGKILL, or SIGTERM/SIGINT once crust no longer catches them)
    /// (the engine writes `stats-dump`, its last image, before it kills the tree):
    /// crust may have died after its kill of the target, which is the dump's end, not
    /// harm. Then the target cannot answer its check and must have ended by SIGKILL; a
    /// new target is started and `true` returned. A target that answers was not killed
    /// (`false`: the caller checks it as usual).
    fn killed_by_the_dump(&mut self, what: &str) -> anyhow::Result<bool> {
        let target = self.target.as_mut().expect("started");
        if target.check().is_ok() {
            return Ok(false);
        }
        let pid = target.pid;
        match self.harness.reaper.wait_exit(pid, ENGINE_TIMEOUT) {
            Some(ExitStatus::Signaled(libc::SIGKILL)) => {}
            other => bail!("{what}: the images were complete and the target stopped answering, but it ended with {other:?}, not by the dump's SIGKILL\n{}", describe_tree(pid)),
        }
        self.tally.killed_after_done += 1;
        self.target = None;
        self.harness.kill_tree(&self.live);
        self.start_target().with_context(|| format!("{what}: start a new target"))?;
        Ok(true)
    }

    fn wait_gone(&mut self, pid: i32) -> anyhow::Result<()> {
        match self.harness.reaper.wait_exit(pid, ENGINE_TIMEOUT) {
            Some(_) => {
                self.target = None;
                self.harness.kill_tree(&self.live);
                Ok(())
            }
            None => bail!("the dump said it was done, but the target {pid} is still there"),
        }
    }
}

/// Where every thread of the tree under `root` is (state, syscall, wchan, tracer, masks),
/// for a failure's message.
fn describe_tree(root: i32) -> String {
    let mut out = String::new();
    for pid in crate::tree::descendants(root) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let dir = task.path();
            let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            let status = crate::procfs::parse_key_values(&read("status"));
            let field = |key: &str| status.get(key).cloned().unwrap_or_default();
            if task.file_name().to_string_lossy() == pid.to_string() {
                let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|fd| format!("{}={}", fd.file_name().to_string_lossy(), std::fs::read_link(fd.path()).unwrap_or_default().display()))
                    .collect();
                fds.sort();
                out.push_str(&format!("  pid {pid} fds: {}\n", fds.join(" ")));
            }
            out.push_str(&format!(
                "  pid {pid} tid {}: {} syscall {} wchan {} tracer {} blocked {} pending {}\n",
                task.file_name().to_string_lossy(),
                field("State"),
                read("syscall").trim(),
                read("wchan").trim(),
                field("TracerPid"),
                field("SigBlk"),
                field("SigPnd"),
            ));
        }
    }
    out
}

/// The step-kill test's name.
pub const STEPS_NAME: &str = "kill_steps";

/// The dump's hold points (`crust --fault-inject hold:POINT`, the engine's
/// `interrupt::HOLD_POINTS`), in order; `false`: not reached by a dump that leaves the
/// tree running (its pages go through the copy-on-write snapshot, not pipes).
const DUMP_POINTS: &[(&str, bool)] = &[
    ("seize", true),
    ("collect", true),
    ("parasite-leader", true),
    ("parasite-threads", true),
    ("parasite", true),
    ("memory-pipes", false),
    ("memory", true),
    ("files", true),
    ("images", true),
    ("pages", true),
];
/// Points at which a parasite lives in the target (from its area's mmap to its munmap):
/// a kill there leaves the area to the guardian.
const PARASITE_POINTS: &[&str] = &["parasite-leader", "parasite-threads", "parasite", "memory-pipes"];
/// Points after the memory stage where a dump that kills its tree still has its parasites
/// (kept to the kill, not cured): there too a kill leaves the area to the guardian.
const KEPT_PARASITE_POINTS: &[&str] = &["memory", "files", "images", "pages"];
/// The restore's hold points.
const RESTORE_POINTS: &[&str] = &["restore-forked", "restore-seized", "restore-restorers", "restore-finished"];

/// `kill_steps`: crust held at each step of a dump and of a pre-dump (`--fault-inject
/// hold:POINT`: it says so on stderr and waits for its stdin to close) and SIGKILLed
/// there; the target must answer its check and show in /proc as recorded (memory,
/// threads still computing, masks, fds, maps), untraced. Then a dump, and a restore
/// SIGKILLed at each of its steps: no process of the tree may be left. Last, a whole
/// restore, after which the target answers its check again. Synchronised on the pipes
/// of crust's stdin and stderr, the target's FIFOs and the reaper's exits.
pub struct KillSteps;

impl ZdtmTest for KillSteps {
    fn name(&self) -> &str {
        STEPS_NAME
    }

    fn can_run(&self, host: &HostInfo) -> Result<(), String> {
        target_spec().can_run(host)
    }

    fn run(&self, harness: &Harness, flavor: Flavor) -> TestOutcome {
        let mut outcome = TestOutcome { verdict: Verdict::Passed, dump_ms: None, restore_ms: None };
        let outdir = match test_dir(harness, flavor, STEPS_NAME) {
            Ok(dir) => dir,
            Err(verdict) => {
                outcome.verdict = verdict;
                return outcome;
            }
        };
        let mut run = Run { harness, outdir: &outdir, rng: SplitMix(1), live: LiveTree::default(), target: None, tally: Tally::default() };
        outcome.verdict = match run.steps() {
            Ok(()) => Verdict::Passed,
            Err(error) => Verdict::Failed(error),
        };
        println!(
            "{STEPS_NAME}: {} kills at a dump step, {} at a restore step; parasite areas removed by the guardian after a kill: {}",
            run.tally.killed, run.tally.interrupted, run.tally.areas_removed
        );
        if let Some(target) = run.target.take() {
            let finished = target.finish(harness);
            if let (Verdict::Passed, Err(error)) = (&outcome.verdict, finished) {
                outcome.verdict = Verdict::Failed(error);
            }
        }
        harness.kill_tree(&run.live);
        if !harness.config.keep && matches!(outcome.verdict, Verdict::Passed) {
            let _ = std::fs::remove_dir_all(&outdir);
        }
        outcome
    }
}

/// A crust held at a point: its pid, and its stdin (closing it lets crust go on).
struct Held {
    pid: i32,
    _stdin: std::process::ChildStdin,
    stderr: Stderr,
}

impl Run<'_> {
    /// Starts crust with `args` and `--fault-inject hold:POINT`, and waits until it says
    /// it is held there (its stderr, read by a thread until end of file).
    fn start_held(&self, args: &[String], point: &str, images: &Path, stage: &str) -> anyhow::Result<Held> {
        let mut command = Command::new(&self.harness.config.engine);
        command.args(args).arg("--fault-inject").arg(format!("hold:{point}"));
        command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = self.harness.reaper.spawn(&mut command).context("spawn crust")?;
        let pid = child.id() as i32;
        let stdin = child.stdin.take().context("crust's stdin")?;
        let stderr = Stderr::read(child.stderr.take().context("crust's stderr")?);
        let wanted = format!("crust: held at {point} until stdin closes");
        let mut said = Vec::new();
        loop {
            match stderr.0.recv_timeout(ENGINE_TIMEOUT) {
                Ok(line) if line == wanted => return Ok(Held { pid, _stdin: stdin, stderr }),
                Ok(line) => said.push(line),
                Err(_) => {
                    // End of file (crust is done) or no word: either way not held.
                    self.harness.reaper.signal_child(pid, libc::SIGKILL);
                    let status = self.harness.reaper.wait_exit(pid, ENGINE_TIMEOUT);
                    bail!(
                        "crust {} never held at {point} (it ended with {status:?}, stderr {said:?})\n{}",
                        args.first().map_or("", String::as_str),
                        crate::harness::engine_logs(images, stage)
                    );
                }
            }
        }
    }

    /// SIGKILLs a held crust and waits for its end and its guardian's (the end of its
    /// stderr).
    fn kill_held(&mut self, held: Held, what: &str) -> anyhow::Result<u32> {
        self.harness.reaper.signal_child(held.pid, libc::SIGKILL);
        match self.harness.reaper.wait_exit(held.pid, ENGINE_TIMEOUT) {
            Some(ExitStatus::Signaled(libc::SIGKILL)) => {}
            other => bail!("{what}: crust ended with {other:?}, not by SIGKILL"),
        }
        let said = held.stderr.until_end(ENGINE_TIMEOUT).with_context(|| format!("{what}: crust's stderr (its guardian's) never ended"))?;
        let removed = said.iter().filter(|line| line.contains(AREA_REMOVED)).count() as u32;
        self.tally.areas_removed += removed;
        Ok(removed)
    }

    fn steps(&mut self) -> anyhow::Result<()> {
        self.start_target()?;
        for verb in ["dump", "pre-dump"] {
            for &(point, with_leave_running) in DUMP_POINTS {
                if verb == "pre-dump" && !with_leave_running {
                    continue;
                }
                let what = format!("{verb} killed at {point}");
                let pid = self.target.as_ref().expect("started").pid;
                let images = self.outdir.join("img");
                let _ = std::fs::remove_dir_all(&images);
                std::fs::create_dir_all(&images).context("create the images directory")?;
                let args: Vec<String> =
                    [verb, "-t", &pid.to_string(), "-D", &images.display().to_string(), "-o", "dump.log", "-v4"].map(String::from).to_vec();
                let held = self.start_held(&args, point, &images, "dump").with_context(|| what.clone())?;
                let removed = self.kill_held(held, &what)?;
                self.tally.killed += 1;
                let parasite_lived = PARASITE_POINTS.contains(&point) || (verb == "dump" && KEPT_PARASITE_POINTS.contains(&point));
                if parasite_lived && removed == 0 {
                    bail!("{what}: a parasite lived, but the guardian did not say it removed its area");
                }
                self.check_target(&what)?;
            }
        }

        // A dump to restore from; it kills the target, and crust is SIGKILLed after that
        // kill (held at "killed"): the tree is gone, the images whole (the restores
        // below use them).
        let target = self.target.take().expect("started");
        let pid = target.pid;
        let tree = crate::tree::descendants(pid);
        let images = self.outdir.join("img");
        let _ = std::fs::remove_dir_all(&images);
        std::fs::create_dir_all(&images).context("create the images directory")?;
        let dump_args: Vec<String> = ["dump", "-t", &pid.to_string(), "-D", &images.display().to_string(), "-o", "dump.log", "-v4"].map(String::from).to_vec();
        drop(target);
        let what = "dump killed at killed (after its kill of the target)";
        let held = self.start_held(&dump_args, "killed", &images, "dump").context(what)?;
        self.kill_held(held, what)?;
        self.tally.killed += 1;
        if !images.join(STATS_IMAGE).exists() {
            bail!("{what}: the target is killed but {STATS_IMAGE} is missing\n{}", crate::harness::engine_logs(&images, "dump"));
        }
        self.wait_tree_gone(&tree, what)?;

        let restore_args: Vec<String> =
            ["restore", "-D", &images.display().to_string(), "-d", "-o", "restore.log", "-v4"].map(String::from).to_vec();
        for point in RESTORE_POINTS {
            let what = format!("restore killed at {point}");
            let held = self.start_held(&restore_args, point, &images, "restore").with_context(|| what.clone())?;
            self.kill_held(held, &what)?;
            self.tally.interrupted += 1;
            self.wait_tree_gone(&tree, &what)?;
        }

        // A whole restore: the images are as good as before, the target carries on.
        let child = self
            .harness
            .reaper
            .spawn(Command::new(&self.harness.config.engine).args(&restore_args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()))
            .context("spawn crust restore")?;
        let status = self.harness.reaper.wait_exit(child.id() as i32, ENGINE_TIMEOUT);
        if status != Some(ExitStatus::Exited(0)) {
            bail!("the restore after the killed ones: {status:?}\n{}", crate::harness::engine_logs(&images, "restore"));
        }
        self.live = LiveTree { root: Some(pid), session: Some(pid), ..LiveTree::default() };
        let fifo = |name: &str| {
            std::fs::OpenOptions::new()
                .read(name == "answer")
                .write(name == "control")
                .custom_flags(libc::O_NONBLOCK)
                .open(self.outdir.join(name))
                .with_context(|| format!("open the restored target's {name} FIFO"))
        };
        let checks = 1_000;
        let mut restored = Target { pid, control: fifo("control")?, answer: fifo("answer")?, record: TreeSnapshot { processes: Default::default() }, checks };
        restored.check().with_context(|| format!("the restored target\n{}", describe_tree(pid)))?;
        self.target = Some(restored);
        Ok(())
    }

    /// Waits until every pid of `tree` is reaped (or was never made again), then forgets
    /// their exits, so that a restore can use them.
    fn wait_tree_gone(&self, tree: &[i32], what: &str) -> anyhow::Result<()> {
        for &pid in tree {
            if Path::new(&format!("/proc/{pid}")).exists() && self.harness.reaper.wait_exit(pid, ENGINE_TIMEOUT).is_none() {
                bail!("{what}: pid {pid} of the tree is still there\n{}", describe_tree(pid));
            }
            self.harness.reaper.forget(pid);
        }
        Ok(())
    }
}
