//! The zdtm harness: starts a test program, waits for it to be ready, records its /proc
//! state, dumps it with `crust dump`, restores it with `crust restore -d`, compares the
//! restored process's /proc state with the record, asks the test to check itself
//! (SIGTERM) and collects its verdict.
//!
//! Unsafe here: one `pre_exec` hook that clears FD_CLOEXEC on the ready pipe's write end
//! in the forked child, and `poll` on the read end. Guarantee: the hook calls only the
//! async-signal-safe `fcntl`.
#![allow(unsafe_code)]

use crate::catalog::{AtDump, Program, Requirement, TestSpec};
use crate::reaper::{ExitStatus, Reaper};
use crate::snapshot::ProcSnapshot;
use crate::testlib::{OUTDIR_ENV, READY_FD_ENV};
use anyhow::{bail, Context};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Outcome of one test.
#[derive(Debug)]
pub enum Verdict {
    /// The restore kept everything the harness and the test checked.
    Passed,
    /// The test cannot run here; the reason says why.
    Skipped(String),
    /// Something went wrong; the error says what, with the log tail.
    Failed(anyhow::Error),
}

/// A verdict plus the time spent in `crust dump` and `crust restore` (summed over
/// iterations; `None` when the stage never ran).
#[derive(Debug)]
pub struct TestOutcome {
    /// Pass, skip or fail.
    pub verdict: Verdict,
    /// Milliseconds in `crust dump`.
    pub dump_ms: Option<u64>,
    /// Milliseconds in `crust restore`.
    pub restore_ms: Option<u64>,
}

/// One zdtm test: a name, what it needs, how it runs.
pub trait ZdtmTest {
    /// Unique name.
    fn name(&self) -> &str;
    /// `Err(reason)` when the host lacks something the test needs.
    fn can_run(&self, host: &HostInfo) -> Result<(), String>;
    /// Runs the test under `harness`.
    fn run(&self, harness: &Harness) -> TestOutcome;
}

/// What the host offers, checked against test requirements.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Running as uid 0.
    pub is_root: bool,
    /// Flags from the first `flags` line of `/proc/cpuinfo`.
    pub cpu_flags: Vec<String>,
    /// `--big` given.
    pub big: bool,
    /// `/sys/kernel/mm/transparent_hugepage` exists.
    pub transparent_huge_pages: bool,
}

impl HostInfo {
    /// Reads uid, cpuinfo and sysfs.
    pub fn probe(big: bool) -> HostInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_flags = cpuinfo
            .lines()
            .find(|line| line.starts_with("flags"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, flags)| flags.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let is_root = crate::procfs::parse_key_values(&status)
            .get("Uid")
            .is_some_and(|uids| uids.split_whitespace().nth(1) == Some("0"));
        HostInfo {
            is_root,
            cpu_flags,
            big,
            transparent_huge_pages: Path::new("/sys/kernel/mm/transparent_hugepage/enabled")
                .exists(),
        }
    }
}

impl ZdtmTest for TestSpec {
    fn name(&self) -> &str {
        self.name
    }

    fn can_run(&self, host: &HostInfo) -> Result<(), String> {
        // Every test: restoring a process under its old pid takes CAP_SYS_ADMIN (clone3
        // set_tid), and dumping a process one did not start takes CAP_SYS_PTRACE.
        for requirement in std::iter::once(&Requirement::Root).chain(self.requirements) {
            match requirement {
                Requirement::Root if !host.is_root => return Err("needs root".into()),
                Requirement::CpuFlag(flag) if !host.cpu_flags.iter().any(|have| have == flag) => {
                    return Err(format!("cpu lacks {flag}"));
                }
                Requirement::Big if !host.big => return Err("big test: run with --big".into()),
                Requirement::TransparentHugePages if !host.transparent_huge_pages => {
                    return Err("kernel has no transparent huge pages".into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn run(&self, harness: &Harness) -> TestOutcome {
        harness.run_program_test(self)
    }
}

/// Harness options (`zdtm-runner run --help`).
#[derive(Debug, Clone)]
pub struct Config {
    /// The `crust` binary (or anything with CRIU's command line).
    pub engine: PathBuf,
    /// Root of test output: `<workdir>/<test>/`.
    pub workdir: PathBuf,
    /// Only tests whose name contains this.
    pub filter: Option<String>,
    /// Dump+restore this many times before the check.
    pub iters: u32,
    /// Dump with `--leave-running`, kill the original, then restore.
    pub snap: bool,
    /// Keep images and logs of failed tests.
    pub keep: bool,
    /// Also run tests gated behind `Requirement::Big`.
    pub big: bool,
    /// Write the JSON report here.
    pub json: Option<PathBuf>,
}

/// How long a test may take to become ready, to check itself, and crust to work.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);
const ENGINE_TIMEOUT: Duration = Duration::from_secs(600);
const GONE_TIMEOUT: Duration = Duration::from_secs(20);

/// A started test program after its ready message.
#[derive(Debug)]
pub enum Launched {
    /// Ready for the dump: the daemon's pid and its incarnation token.
    Ready {
        /// Pid of the daemonized test.
        pid: i32,
        /// Random token the test chose at start; its verdict must carry the same one.
        token: String,
    },
    /// The test refused to run here.
    Skip(String),
}

/// The running harness: configuration, reaper and where the programs are.
pub struct Harness {
    /// Options.
    pub config: Config,
    /// The subreaper thread.
    pub reaper: Reaper,
    rust_tests_exe: PathBuf,
    c_tests_dir: PathBuf,
    /// `flock`ed `<workdir>/.lock`, held while this harness lives.
    _workdir_lock: std::fs::File,
}

impl Harness {
    /// Becomes a subreaper and locates the test programs (`zdtm-rs` next to this
    /// executable, the C programs in build.rs's output directory).
    pub fn new(mut config: Config) -> anyhow::Result<Harness> {
        let reaper = Reaper::start()?;
        let own_exe = std::env::current_exe().context("locate own executable")?;
        let exe_dir = own_exe
            .parent()
            .context("own executable has no directory")?;
        let built_rust_tests = exe_dir.join("zdtm-rs");
        if !built_rust_tests.exists() {
            bail!(
                "{} missing: build with cargo build --release -p crust-zdtm",
                built_rust_tests.display()
            );
        }
        std::fs::create_dir_all(&config.workdir)
            .with_context(|| format!("create {}", config.workdir.display()))?;
        // Absolute paths: they are handed to crust and to tests running elsewhere.
        config.workdir = std::fs::canonicalize(&config.workdir)
            .with_context(|| format!("resolve {}", config.workdir.display()))?;
        config.engine = std::fs::canonicalize(&config.engine)
            .with_context(|| format!("resolve {}", config.engine.display()))?;
        // One run per workdir at a time: test dirs and program copies have fixed names.
        let workdir_lock = lock_workdir(&config.workdir)?;
        // Run the tests from private copies: target/release is shared with whoever builds
        // next, and a test whose executable is replaced mid-run shows `(deleted)` maps.
        let bin_dir = config.workdir.join("bin");
        let c_tests_dir = bin_dir.join("c-tests");
        if bin_dir.exists() {
            std::fs::remove_dir_all(&bin_dir)
                .with_context(|| format!("remove {}", bin_dir.display()))?;
        }
        std::fs::create_dir_all(&c_tests_dir)
            .with_context(|| format!("create {}", c_tests_dir.display()))?;
        let rust_tests_exe = bin_dir.join("zdtm-rs");
        copy_file(&built_rust_tests, &rust_tests_exe)?;
        let built_c_tests = PathBuf::from(env!("ZDTM_C_DIR"));
        for entry in std::fs::read_dir(&built_c_tests)
            .with_context(|| format!("list {}", built_c_tests.display()))?
        {
            let entry = entry.with_context(|| format!("list {}", built_c_tests.display()))?;
            copy_file(&entry.path(), &c_tests_dir.join(entry.file_name()))?;
        }
        Ok(Harness {
            config,
            reaper,
            rust_tests_exe,
            c_tests_dir,
            _workdir_lock: workdir_lock,
        })
    }

    /// Executable and leading arguments for a program.
    pub fn command_for(&self, program: Program) -> (PathBuf, Vec<String>) {
        match program {
            Program::Rust(name) => (self.rust_tests_exe.clone(), vec![name.to_string()]),
            Program::C(name) => (self.c_tests_dir.join(name), Vec::new()),
        }
    }

    /// Fresh output directory for a test (the previous run's is removed).
    pub fn test_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.config.workdir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("remove old {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(dir)
    }

    /// Starts a test program with the ready pipe and output dir in its env, and reads the
    /// pipe until EOF (the daemon closes it once its state is built).
    pub fn launch(&self, spec: &TestSpec, outdir: &Path) -> anyhow::Result<Launched> {
        let (exe, mut args) = self.command_for(spec.program);
        args.extend(spec.args.iter().map(|arg| arg.to_string()));
        if !exe.exists() {
            // build.rs leaves out what cannot be built for the target (x86 asm elsewhere).
            return Ok(Launched::Skip(format!(
                "{} not built for this target",
                exe.display()
            )));
        }
        let (mut ready_reader, ready_writer) = cloexec_pipe().context("create ready pipe")?;
        let writer_fd = ready_writer.as_raw_fd();
        let mut command = Command::new(&exe);
        command
            .args(&args)
            .env(READY_FD_ENV, writer_fd.to_string())
            .env(OUTDIR_ENV, outdir)
            .current_dir(outdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: runs in the forked child before exec; fcntl is async-signal-safe and
        // touches only the pipe's write end, which the child inherited.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(writer_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let launcher = command
            .spawn()
            .with_context(|| format!("spawn {}", exe.display()))?;
        let launcher_pid = launcher.id() as i32;
        self.reaper.child_started();
        drop(ready_writer);

        let message = read_to_eof_with_timeout(&mut ready_reader, READY_TIMEOUT)
            .with_context(|| format!("wait for {} to get ready", spec.name))?;
        if message.is_empty() {
            bail!("{} exited before it was ready", spec.name);
        }
        match self.reaper.wait_exit(launcher_pid, GONE_TIMEOUT) {
            Some(ExitStatus::Exited(0)) => {}
            Some(status) => bail!(
                "launcher of {} ended with {status}; ready message {message:?}",
                spec.name
            ),
            None => {
                self.reaper.kill_and_reap(launcher_pid);
                bail!("launcher of {} did not exit", spec.name)
            }
        }
        parse_ready_message(&message)
    }

    /// Runs `engine ARGS`, stdout and stderr into `<log_dir>/<stage>.stderr`; returns the
    /// status and the wall time.
    pub fn run_engine(
        &self,
        args: &[String],
        log_dir: &Path,
        stage: &str,
    ) -> anyhow::Result<(ExitStatus, Duration)> {
        let stderr_path = log_dir.join(format!("{stage}.stderr"));
        let stderr_file = std::fs::File::create(&stderr_path)
            .with_context(|| format!("create {}", stderr_path.display()))?;
        let stdout_file = stderr_file.try_clone().context("dup engine log fd")?;
        let started = Instant::now();
        let child = Command::new(&self.config.engine)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout_file)
            .stderr(stderr_file)
            .spawn()
            .with_context(|| format!("spawn {}", self.config.engine.display()))?;
        let pid = child.id() as i32;
        self.reaper.child_started();
        match self.reaper.wait_exit(pid, ENGINE_TIMEOUT) {
            Some(status) => Ok((status, started.elapsed())),
            None => {
                self.reaper.kill_and_reap(pid);
                bail!(
                    "{stage}: engine did not finish in {}s",
                    ENGINE_TIMEOUT.as_secs()
                )
            }
        }
    }

    /// The standard test: launch, `iters` × (record, dump, restore, compare), check.
    pub fn run_program_test(&self, spec: &TestSpec) -> TestOutcome {
        let mut outcome = TestOutcome {
            verdict: Verdict::Passed,
            dump_ms: None,
            restore_ms: None,
        };
        let outdir = match self.test_dir(spec.name) {
            Ok(dir) => dir,
            Err(error) => {
                outcome.verdict = Verdict::Failed(error);
                return outcome;
            }
        };
        let mut test_pid = None;
        outcome.verdict = match self.drive(spec, &outdir, &mut test_pid, &mut outcome) {
            Ok(verdict) => verdict,
            Err(error) => {
                let tail = log_tail(&outdir.join(format!("{}.log", spec.name)), "test log");
                Verdict::Failed(anyhow::anyhow!("{error:#}\n{tail}"))
            }
        };
        if let Some(pid) = test_pid {
            self.reaper.kill_and_reap(pid);
        }
        let failed = matches!(outcome.verdict, Verdict::Failed(_));
        if !(failed && self.config.keep) {
            let _ = std::fs::remove_dir_all(&outdir);
        }
        outcome
    }

    fn drive(
        &self,
        spec: &TestSpec,
        outdir: &Path,
        test_pid: &mut Option<i32>,
        outcome: &mut TestOutcome,
    ) -> anyhow::Result<Verdict> {
        let (pid, token) = match self.launch(spec, outdir)? {
            Launched::Ready { pid, token } => (pid, token),
            Launched::Skip(reason) => return Ok(Verdict::Skipped(reason)),
        };
        *test_pid = Some(pid);
        if !self.reaper.is_alive_child(pid) {
            bail!("test pid {pid} is not alive as the harness's child after ready");
        }
        if spec.at_dump == AtDump::Asleep {
            wait_until_asleep(pid, READY_TIMEOUT)?;
        }
        for iteration in 0..self.config.iters {
            let images = outdir.join(format!("img-{iteration}"));
            std::fs::create_dir_all(&images)
                .with_context(|| format!("create {}", images.display()))?;
            let mut before = ProcSnapshot::capture(pid).context("record state before dump")?;
            forget_volatile(&mut before, spec);

            let mut dump_args: Vec<String> = ["dump", "-t", &pid.to_string(), "-D"]
                .map(String::from)
                .to_vec();
            dump_args.push(images.display().to_string());
            dump_args.extend(["-o", "dump.log", "-v4"].map(String::from));
            if self.config.snap {
                dump_args.push("--leave-running".into());
            }
            let (status, elapsed) = self.run_engine(&dump_args, &images, "dump")?;
            *outcome.dump_ms.get_or_insert(0) += elapsed.as_millis() as u64;
            if status != ExitStatus::Exited(0) {
                bail!(
                    "iteration {iteration}: crust dump: {status}\n{}",
                    engine_logs(&images, "dump")
                );
            }
            if self.config.snap {
                if !self.reaper.is_alive_child(pid) {
                    bail!("iteration {iteration}: pid {pid} gone after dump --leave-running");
                }
                self.reaper.kill_and_reap(pid);
            } else if self.reaper.wait_exit(pid, GONE_TIMEOUT).is_none() {
                bail!(
                    "iteration {iteration}: pid {pid} still alive {}s after dump",
                    GONE_TIMEOUT.as_secs()
                );
            }
            self.reaper.forget(pid);

            let pidfile = images.join("restore.pid");
            let mut restore_args: Vec<String> = ["restore", "-D"].map(String::from).to_vec();
            restore_args.push(images.display().to_string());
            restore_args.extend(["-d", "--pidfile"].map(String::from));
            restore_args.push(pidfile.display().to_string());
            restore_args.extend(["-o", "restore.log", "-v4"].map(String::from));
            let (status, elapsed) = self.run_engine(&restore_args, &images, "restore")?;
            *outcome.restore_ms.get_or_insert(0) += elapsed.as_millis() as u64;
            if status != ExitStatus::Exited(0) {
                bail!(
                    "iteration {iteration}: crust restore: {status}\n{}",
                    engine_logs(&images, "restore")
                );
            }
            if let Ok(text) = std::fs::read_to_string(&pidfile) {
                if text.trim() != pid.to_string() {
                    bail!(
                        "iteration {iteration}: restored pid {} differs from dumped pid {pid}",
                        text.trim()
                    );
                }
            }
            if !self.reaper.is_alive_child(pid) {
                bail!(
                    "iteration {iteration}: pid {pid} not running as our child after restore\n{}",
                    engine_logs(&images, "restore")
                );
            }
            // `restore -d` returns once the task runs on its own, which may be on its way
            // back into the syscall it slept in (sigsuspend puts its temporary mask back
            // only then): record it where it was recorded before the dump.
            if spec.at_dump == AtDump::Asleep {
                wait_until_asleep(pid, READY_TIMEOUT)
                    .with_context(|| format!("iteration {iteration}: after restore"))?;
            }
            let mut after = ProcSnapshot::capture(pid).context("record state after restore")?;
            forget_volatile(&mut after, spec);
            let differences = before.differences(&after);
            if !differences.is_empty() {
                bail!(
                    "iteration {iteration}: restored /proc state differs:\n  {}",
                    differences.join("\n  ")
                );
            }
        }

        self.reaper.signal_child(pid, libc::SIGTERM);
        let status = self.reaper.wait_exit(pid, VERDICT_TIMEOUT);
        *test_pid = None;
        let verdict_path = outdir.join(format!("{}.out", spec.name));
        let verdict_text = std::fs::read_to_string(&verdict_path).unwrap_or_default();
        let mut lines = verdict_text.lines();
        let verdict_line = lines.next().unwrap_or("").to_string();
        let token_line = lines.next().unwrap_or("").to_string();
        match status {
            None => {
                self.reaper.kill_and_reap(pid);
                bail!("no exit {}s after SIGTERM", VERDICT_TIMEOUT.as_secs())
            }
            Some(ExitStatus::Exited(0)) if verdict_line == "PASS" => {}
            Some(status) => {
                let said = if verdict_line.is_empty() {
                    "no verdict".to_string()
                } else {
                    verdict_line
                };
                bail!("test ended with {status}: {said}")
            }
        }
        if token_line != format!("token {token}") {
            bail!("verdict token {token_line:?} is not the pre-dump token {token}: the program was re-run, not restored");
        }
        Ok(Verdict::Passed)
    }
}

/// Waits until /proc/PID/stat shows the task asleep (`S`). Polls: the kernel offers no
/// notification for "went to sleep"; the test has already said it is about to.
fn wait_until_asleep(pid: i32, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // `pid (comm) S ...`: the state follows the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state == Some("S") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "pid {pid} not asleep {}s after ready (state {state:?})",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn forget_volatile(snapshot: &mut ProcSnapshot, spec: &TestSpec) {
    for key in spec.volatile_status {
        snapshot.status.remove(*key);
    }
}

/// Takes `flock(LOCK_EX)` on `<workdir>/.lock`, waiting (and saying so) while another
/// run holds it.
#[doc(alias = "flock")]
fn lock_workdir(workdir: &Path) -> anyhow::Result<std::fs::File> {
    let path = workdir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    // SAFETY: flock on an fd we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("zdtm: another run holds {}; waiting for it", path.display());
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("lock {}", path.display()));
        }
    }
    Ok(file)
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Parses `<pid> <token>` or `skip <reason>`.
pub fn parse_ready_message(message: &str) -> anyhow::Result<Launched> {
    let line = message.trim_end_matches('\n');
    if let Some(reason) = line.strip_prefix("skip ") {
        return Ok(Launched::Skip(reason.to_string()));
    }
    let (pid, token) = line
        .split_once(' ')
        .with_context(|| format!("bad ready message {line:?}"))?;
    let pid = pid
        .parse()
        .with_context(|| format!("bad pid in ready message {line:?}"))?;
    Ok(Launched::Ready {
        pid,
        token: token.to_string(),
    })
}

/// `pipe2(O_CLOEXEC)` as (read end, write end).
#[doc(alias = "pipe2")]
fn cloexec_pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((std::fs::File::from(reader), std::fs::File::from(writer)))
}

/// Reads until EOF, failing if that takes longer than `timeout`.
fn read_to_eof_with_timeout(
    reader: &mut std::fs::File,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "no EOF on the ready pipe after {}s (got {:?})",
                timeout.as_secs(),
                String::from_utf8_lossy(&bytes)
            );
        }
        let mut poll_fd = libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack, count 1.
        let ready = unsafe {
            libc::poll(
                &mut poll_fd,
                1,
                left.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error).context("poll ready pipe");
        }
        if ready == 0 {
            continue;
        }
        let mut chunk = [0u8; 256];
        let got = reader.read(&mut chunk).context("read ready pipe")?;
        if got == 0 {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(&chunk[..got]);
    }
}

/// The last lines of the engine's log and stderr for a stage.
pub fn engine_logs(images: &Path, stage: &str) -> String {
    format!(
        "{}\n{}",
        log_tail(
            &images.join(format!("{stage}.log")),
            &format!("{stage}.log")
        ),
        log_tail(
            &images.join(format!("{stage}.stderr")),
            &format!("{stage} stderr")
        )
    )
}

/// `--- what (last lines) ---` and the last 20 lines of a file.
pub fn log_tail(path: &Path, what: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            format!("--- {what} ({}) ---\n{}", path.display(), tail.join("\n"))
        }
        Err(_) => format!("--- {what}: {} not there ---", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_messages() {
        match parse_ready_message("4711 00ff00ff00ff00ff\n").expect("parses") {
            Launched::Ready { pid, token } => {
                assert_eq!(pid, 4711);
                assert_eq!(token, "00ff00ff00ff00ff");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(parse_ready_message("skip no avx\n"), Ok(Launched::Skip(reason)) if reason == "no avx")
        );
        assert!(parse_ready_message("").is_err());
    }

    #[test]
    fn requirements_turn_into_skip_reasons() {
        let host = HostInfo {
            is_root: true,
            cpu_flags: vec!["avx".into()],
            big: false,
            transparent_huge_pages: true,
        };
        let spec = TestSpec {
            name: "x",
            program: Program::C("x"),
            args: &[],
            requirements: &[Requirement::CpuFlag("avx512f")],
            volatile_status: &[],
            at_dump: AtDump::Asleep,
        };
        assert_eq!(spec.can_run(&host), Err("cpu lacks avx512f".to_string()));
        let user = HostInfo {
            is_root: false,
            ..host
        };
        let plain = TestSpec {
            requirements: &[],
            ..spec
        };
        assert_eq!(plain.can_run(&user), Err("needs root".to_string()));
    }
}
