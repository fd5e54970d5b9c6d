//! The zdtm harness: starts a test program, waits for it to be ready, records its /proc
//! state, dumps it with `crust dump`, restores it with `crust restore -d`, compares the
//! restored process's /proc state with the record, asks the test to check itself
//! (SIGTERM) and collects its verdict. After every test it looks for what the test left
//! (`leftovers`): processes, crust's nftables lock tables for its connections, mounts
//! under its directory, and in the container flavors the test's veth and cgroups; it
//! removes them and fails the test that left them. The container flavors' own parts
//! (rootfs, network, cgroups, engine options, comparison) live in `container`.
//!
//! Unsafe here: one `pre_exec` hook that clears FD_CLOEXEC on the ready pipe's write end
//! (and the container flavor's go pipe's read end) in the forked child, `poll` on the
//! read end, and `mknod` of the mntns rootfs's `/dev/null`. Guarantee: the hook calls
//! only the async-signal-safe `fcntl`.
#![allow(unsafe_code)]

use crate::catalog::{AtDump, Flavor, Program, Requirement, TestSpec};
use crate::container::{ContainerRun, ContainerTest};
use crate::leftovers::{self, Leftovers};
use crate::reaper::{ExitStatus, Reaper};
use crate::tree::{ns_pid_of, TreeSnapshot};
use crate::testlib::{OUTDIR_ENV, READY_FD_ENV};
use anyhow::{bail, Context};
use std::io::{Read, Write};
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
    /// Runs the test under `harness` in `flavor`.
    fn run(&self, harness: &Harness, flavor: Flavor) -> TestOutcome;
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
    /// The kernel takes `pidfd_open(PIDFD_THREAD)` (Linux 6.9).
    pub pidfd_thread: bool,
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
            pidfd_thread: crate::container::sys::has_pidfd_thread(),
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
                Requirement::PidfdThread if !host.pidfd_thread => {
                    return Err("pidfd_open refuses PIDFD_THREAD (Linux 6.9): crust cannot reach the fds of a process whose leader exited".into());
                }
                Requirement::Program(program) => which(program).map(|_| ())?,
                _ => {}
            }
        }
        Ok(())
    }

    fn run(&self, harness: &Harness, flavor: Flavor) -> TestOutcome {
        harness.run_program_test(self, flavor)
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
    /// Pre-dump first (`crust pre-dump` into `img-N-pre`), then dump with
    /// `--prev-images-dir` on it: the restore reads unchanged pages from the pre-dump.
    pub pre_dump: bool,
    /// Restore lazily: `ENGINE lazy-pages` in the images directory first, then
    /// `restore --lazy-pages`; the daemon must end (every page in) after the restore.
    pub lazy: bool,
    /// Keep every test's images and logs (else they are removed).
    pub keep: bool,
    /// Also run tests gated behind `Requirement::Big`.
    pub big: bool,
    /// Write the JSON report here.
    pub json: Option<PathBuf>,
    /// Flavors to run each test in (`--flavor host|ns|mntns|container|container-uns|all`).
    pub flavors: Vec<Flavor>,
    /// Only tests of this group (`--group core|runtime`); `None`: `core` unless the
    /// filter names a runtime test.
    pub group: Option<String>,
    /// `--dump-with PATH`: dump with this binary (CRIU's command line), restore with
    /// `engine` (`cross.rs`).
    pub dump_with: Option<PathBuf>,
    /// `--restore-with PATH`: dump with `engine`, restore with this binary.
    pub restore_with: Option<PathBuf>,
    /// Trials of `kill_random` (`--kill-trials`, `kill.rs`).
    pub kill_trials: u32,
    /// Seed of `kill_random`'s randomness (`--kill-seed`); `None`: from the clock.
    pub kill_seed: Option<u64>,
}

/// How long a test may take to become ready, to check itself, and crust to work.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);
// A hung restore (seen with killed-by-signal zombies) must not stall the suite.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);
const GONE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a passed test's processes (a peer finishing its exit) may take to go.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);

/// A started test program after its ready message.
#[derive(Debug)]
pub enum Launched {
    /// Ready for the dump: the daemon's pid and its incarnation token.
    Ready {
        /// Pid of the daemonized test (in its own pid namespace for the `ns` flavor).
        pid: i32,
        /// `ns` flavor: host pid of the namespace's init.
        init: Option<i32>,
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
    runtime_dir: PathBuf,
    /// `<workdir>/bin`: every test program runs from a copy in here.
    bin_dir: PathBuf,
    /// Why the runtime group cannot run here, when its sources are not on this machine
    /// (a VM has the binaries, not the source tree).
    runtime_unavailable: Option<String>,
    /// Interpreters (`py`) and built programs (`go`) resolved before the reaper started.
    runtimes: std::collections::HashMap<&'static str, Result<Vec<String>, String>>,
    /// The mntns flavor's root filesystem (`<workdir>/bin/rootfs`), or why it could
    /// not be built.
    rootfs: Result<PathBuf, String>,
    /// Host pid of the ns init of the test being launched, once it reported itself.
    pending_init: std::cell::Cell<Option<i32>>,
    /// The container flavors' per-run state, when one of them runs and can run here.
    container: Option<ContainerRun>,
    /// Why the container flavors cannot run here (no busybox): their tests skip with it.
    container_unavailable: Option<String>,
    /// In a cross run with CRIU as the other tool: what it does, for its skip table;
    /// and why every test is skipped, when CRIU cannot do its part here at all.
    criu_other: Option<(crate::cross::OtherDoes, Option<String>)>,
    /// `flock`ed `<workdir>/.lock`, held while this harness lives.
    _workdir_lock: std::fs::File,
}

impl Harness {
    /// Becomes a subreaper and locates the test programs (`zdtm-rs` next to this
    /// executable, the C programs in build.rs's output directory).
    pub fn new(mut config: Config) -> anyhow::Result<Harness> {
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
        for other in [&mut config.dump_with, &mut config.restore_with].into_iter().flatten() {
            *other = std::fs::canonicalize(&*other).with_context(|| format!("resolve {}", other.display()))?;
        }
        // Before the reaper starts (it would collect `output`'s child).
        let criu_other = criu_in_cross_run(&config);
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
        let runtime_dir = bin_dir.join("runtime");
        std::fs::create_dir_all(&runtime_dir)
            .with_context(|| format!("create {}", runtime_dir.display()))?;
        // Runtimes are resolved (and Go built) now: once the reaper thread runs, it
        // collects every child, including those `Command::output` waits for. Their
        // sources come from the source tree, which only runs that want them need (a VM
        // has the binaries, not the tree).
        let wants_runtimes = matches!(config.group.as_deref(), Some("runtime" | "all"))
            || config.filter.as_deref().is_some_and(|f| f.split(',').any(|word| word == "runtime" || word.starts_with("rt")));
        let mut runtimes = std::collections::HashMap::new();
        let runtime_sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime");
        let runtime_unavailable = (!runtime_sources.is_dir())
            .then(|| format!("runtime sources {} not on this machine", runtime_sources.display()));
        if wants_runtimes && runtime_unavailable.is_none() {
            for entry in std::fs::read_dir(&runtime_sources)
                .with_context(|| format!("list {}", runtime_sources.display()))?
            {
                let entry = entry.with_context(|| format!("list {}", runtime_sources.display()))?;
                copy_file(&entry.path(), &runtime_dir.join(entry.file_name()))?;
            }
            runtimes.insert("py", find_python().map(|python| vec![python]));
            runtimes.insert(
                "go",
                build_go(&runtime_dir.join("threads.go")).map(|exe| vec![exe.display().to_string()]),
            );
        }
        // The container rootfs runs `busybox --list`: before the reaper takes every child.
        let (container, container_unavailable) = if config.flavors.iter().any(|flavor| flavor.is_container()) {
            match crate::container::rootfs::find_busybox() {
                None => (None, Some(format!("busybox not installed{}", install_hint("busybox")))),
                Some(busybox) => {
                    let run = ContainerRun::setup(&config.workdir, &bin_dir, &busybox, config.keep)
                        .context("set up the container flavor")?;
                    (Some(run), None)
                }
            }
        } else {
            (None, None)
        };
        // ldd runs before the reaper, like the runtimes' commands.
        let rootfs = if config.flavors.contains(&Flavor::Mntns) {
            build_rootfs(&bin_dir)
        } else {
            Err("the mntns flavor was not asked for".to_string())
        };
        let reaper = Reaper::start()?;
        Ok(Harness {
            container,
            container_unavailable,
            rootfs,
            runtimes,
            config,
            reaper,
            rust_tests_exe,
            c_tests_dir,
            runtime_dir,
            bin_dir,
            runtime_unavailable,
            pending_init: std::cell::Cell::new(None),
            criu_other,
            _workdir_lock: workdir_lock,
        })
    }

    /// Executable and leading arguments for a program (`Err(reason)`: cannot run here).
    pub fn command_for(&self, program: Program, name: &str) -> Result<(PathBuf, Vec<String>), String> {
        match program {
            Program::Rust(test) => Ok((self.rust_tests_exe.clone(), vec![test.to_string()])),
            Program::C(test) => Ok((self.c_tests_dir.join(test), Vec::new())),
            Program::Runtime(file) => {
                if let Some(reason) = &self.runtime_unavailable {
                    return Err(reason.clone());
                }
                let script = self.runtime_dir.join(file);
                let interpreter: Vec<String> = match file.rsplit_once('.').map(|(_, ext)| ext) {
                    Some("py") => self.runtime("py")?,
                    Some("java") => vec![which("java")?, "--add-opens".into(), "java.base/java.io=ALL-UNNAMED".into()],
                    Some("js") => vec![which("node")?],
                    Some("go") => {
                        let mut args = vec![name.to_string()];
                        args.extend(self.runtime("go")?);
                        return Ok((self.c_tests_dir.join("rt_daemon"), args));
                    }
                    _ => return Err(format!("no runtime for {file}")),
                };
                let mut args = vec![name.to_string()];
                args.extend(interpreter);
                args.push(script.display().to_string());
                Ok((self.c_tests_dir.join("rt_daemon"), args))
            }
        }
    }

    fn runtime(&self, kind: &str) -> Result<Vec<String>, String> {
        self.runtimes
            .get(kind)
            .cloned()
            .unwrap_or_else(|| Err(format!("{kind} runtime not resolved: run with --group runtime")))
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
    /// pipe until EOF (the daemon closes it once its state is built). In the `ns` flavor
    /// the program runs under `ns_init`, which reports `nsinit <host pid>` first; in the
    /// container flavors under `ct_init`, which reports the same and then waits on the
    /// go pipe until the harness has given the container its network.
    pub fn launch(
        &self,
        spec: &TestSpec,
        outdir: &Path,
        flavor: Flavor,
        container: Option<&ContainerTest>,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Launched> {
        let (mut exe, mut args) = match self.command_for(spec.program, spec.name) {
            Ok(command) => command,
            Err(reason) => return Ok(Launched::Skip(reason)),
        };
        args.extend(spec.args.iter().map(|arg| arg.to_string()));
        if !exe.exists() {
            // build.rs leaves out what cannot be built for the target (x86 asm elsewhere).
            return Ok(Launched::Skip(format!(
                "{} not built for this target",
                exe.display()
            )));
        }
        let mut test_outdir = outdir.to_path_buf();
        let mut env: Vec<(String, String)> = Vec::new();
        let mut go_pipe = None;
        match (flavor, container, &self.container) {
            (Flavor::Ns, _, _) => {
                args.insert(0, exe.display().to_string());
                exe = self.c_tests_dir.join("ns_init");
                env.extend(extra_env.iter().cloned());
            }
            (_, Some(test), Some(run)) => {
                args.insert(0, crate::container::program_path(&self.bin_dir, &exe)?);
                exe = self.c_tests_dir.join("ct_init");
                env = run.launcher_env(test, outdir);
                go_pipe = Some(cloexec_pipe().context("create go pipe")?);
                if test.userns {
                    // Root of the container is this host uid: the test writes its log and
                    // verdict into its directory.
                    let id = crate::container::USERNS_FIRST_ID;
                    crate::container::sys::chown(outdir, id, id)?;
                }
            }
            (Flavor::Mntns, _, _) => {
                let rootfs = match &self.rootfs {
                    Ok(rootfs) => rootfs,
                    Err(reason) => return Ok(Launched::Skip(reason.clone())),
                };
                // The program by its path inside the rootfs, which holds the copies.
                let Ok(inside) = exe.strip_prefix(&self.bin_dir) else {
                    return Ok(Launched::Skip(format!("{} is not in the mntns rootfs", exe.display())));
                };
                let mut front = vec![
                    rootfs.display().to_string(),
                    outdir.display().to_string(),
                    mntns_hostname(spec.name),
                    Path::new("/").join(inside).display().to_string(),
                ];
                front.append(&mut args);
                args = front;
                exe = self.c_tests_dir.join("mntns_init");
                test_outdir = PathBuf::from(MNTNS_OUTDIR);
            }
            (Flavor::Host, _, _) => {}
            _ => bail!("{} flavor without its container state", flavor.name()),
        }
        let (mut ready_reader, ready_writer) = cloexec_pipe().context("create ready pipe")?;
        let writer_fd = ready_writer.as_raw_fd();
        let go_fd = go_pipe.as_ref().map_or(-1, |(reader, _)| reader.as_raw_fd());
        let mut command = Command::new(&exe);
        command
            .args(&args)
            .envs(env)
            .env(READY_FD_ENV, writer_fd.to_string())
            .env(OUTDIR_ENV, &test_outdir)
            .env("ZDTM_NAME", spec.name)
            .current_dir(outdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if go_fd >= 0 {
            command.env("ZDTM_GO_FD", go_fd.to_string());
        }
        // SAFETY: runs in the forked child before exec; fcntl is async-signal-safe and
        // touches only the pipe ends the child inherited.
        unsafe {
            command.pre_exec(move || {
                for fd in [writer_fd, go_fd] {
                    if fd >= 0 && libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let launcher = self
            .reaper
            .spawn(&mut command)
            .with_context(|| format!("spawn {}", exe.display()))?;
        let launcher_pid = launcher.id() as i32;
        drop(ready_writer);

        let message = match go_pipe {
            None => read_to_eof_with_timeout(&mut ready_reader, READY_TIMEOUT),
            Some((go_reader, go_writer)) => {
                drop(go_reader);
                self.connect_container(&mut ready_reader, go_writer, container)
            }
        };
        // The init reports itself first: remember it even when the test then fails, so
        // the caller can kill the namespace.
        let (init, rest) = split_init_line(message.as_deref().unwrap_or(""));
        if let Some(init) = init {
            self.pending_init.set(Some(init));
        }
        let message = message.with_context(|| format!("wait for {} to get ready", spec.name))?;
        if rest.is_empty() {
            bail!("{} exited before it was ready (got {message:?})", spec.name);
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
        if flavor.has_init() && init.is_none() {
            bail!("the {} flavor's init did not report its pid (got {message:?})", flavor.name());
        }
        Ok(match parse_ready_message(&rest)? {
            Launched::Ready { pid, token, .. } => Launched::Ready { pid, init, token },
            skip => skip,
        })
    }

    /// Container flavors: reads the init's `nsinit PID` line, gives the container its
    /// network, writes `go`, then reads the rest of the ready pipe to EOF. Returns
    /// everything read.
    fn connect_container(
        &self,
        ready: &mut std::fs::File,
        mut go: std::fs::File,
        container: Option<&ContainerTest>,
    ) -> anyhow::Result<String> {
        let (Some(run), Some(test)) = (&self.container, container) else {
            bail!("container flavor without its container state");
        };
        let first = read_line_with_timeout(ready, READY_TIMEOUT)?;
        let (init, _) = split_init_line(&first);
        let Some(init) = init else {
            // The launcher failed before it forked the init: what it said is all there is.
            let rest = read_to_eof_with_timeout(ready, READY_TIMEOUT).unwrap_or_default();
            return Ok(first + &rest);
        };
        self.pending_init.set(Some(init));
        run.connect(test, init).context("set up the container's network")?;
        go.write_all(b"go").context("write the go pipe")?;
        drop(go);
        Ok(first + &read_to_eof_with_timeout(ready, READY_TIMEOUT)?)
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
        let binary = self.binary_for(stage);
        let child = self
            .reaper
            .spawn(
                Command::new(binary)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(stdout_file)
                    .stderr(stderr_file),
            )
            .with_context(|| format!("spawn {}", binary.display()))?;
        let pid = child.id() as i32;
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

    /// Starts `ENGINE lazy-pages` on `images` (its log `lazy.log`) and waits until it
    /// listens (its `--status-fd 1`); its pid.
    fn start_lazy_daemon(&self, images: &Path) -> anyhow::Result<i32> {
        let stderr_path = images.join("lazy.stderr");
        let stderr_file = std::fs::File::create(&stderr_path).with_context(|| format!("create {}", stderr_path.display()))?;
        let binary = self.binary_for("restore");
        let mut child = self
            .reaper
            .spawn(
                Command::new(binary)
                    .args(["lazy-pages", "-o", "lazy.log", "-v4", "--status-fd", "1", "-D"])
                    .arg(images)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(stderr_file),
            )
            .with_context(|| format!("spawn {} lazy-pages", binary.display()))?;
        let mut ready = [0u8; 1];
        let _ = std::io::Read::read(&mut child.stdout.take().context("the daemon's stdout")?, &mut ready);
        Ok(child.id() as i32)
    }

    /// The standard test: launch, `iters` × (record, dump, restore, compare), check.
    pub fn run_program_test(&self, spec: &TestSpec, flavor: Flavor) -> TestOutcome {
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
        let mut live = LiveTree::default();
        self.pending_init.set(None);
        let mut container = None;
        if flavor.is_container() {
            let Some(run) = &self.container else {
                let reason = self.container_unavailable.clone().unwrap_or_else(|| "container flavor not set up".into());
                outcome.verdict = Verdict::Skipped(reason);
                return outcome;
            };
            match run.start_test(spec.name, flavor == Flavor::ContainerUserns) {
                Ok(test) => container = Some(test),
                Err(error) => {
                    outcome.verdict = Verdict::Failed(error);
                    let _ = std::fs::remove_dir_all(&outdir);
                    return outcome;
                }
            }
        }
        let mut own_cgroups = None;
        if flavor == Flavor::Ns && spec.requirements.contains(&crate::catalog::Requirement::OwnCgroups) {
            match crate::own_cgroups::OwnCgroups::create(spec.name) {
                Ok(own) => own_cgroups = Some(own),
                Err(error) => {
                    outcome.verdict = Verdict::Failed(error);
                    let _ = std::fs::remove_dir_all(&outdir);
                    return outcome;
                }
            }
        }
        outcome.verdict = match self.drive(spec, flavor, &outdir, &mut live, &mut outcome, container.as_mut(), own_cgroups.as_mut()) {
            Ok(verdict) => verdict,
            Err(error) => {
                let tail = log_tail(&outdir.join(format!("{}.log", spec.name)), "test log");
                Verdict::Failed(anyhow::anyhow!("{error:#}\n{tail}"))
            }
        };
        // The init reported itself but the launch failed before `drive` knew the root.
        if let Some(init) = self.pending_init.take() {
            live.root.get_or_insert(init);
        }
        // A test that passed ends with nothing of it running (but an ns flavor's init,
        // which the harness kills): what has not exited after a grace period leaked.
        let mut leftovers = Leftovers::default();
        if !matches!(outcome.verdict, Verdict::Failed(_)) {
            let expected: Vec<i32> = live.root.into_iter().collect();
            leftovers.processes = self.wait_strays_gone(&expected, LEFTOVER_GRACE);
        }
        if let (Some(run), Some(test)) = (&self.container, &container) {
            run.thaw(test);
        }
        self.kill_tree(&live);
        self.remove_leftovers(&live, &outdir, &mut leftovers);
        if let (Some(run), Some(test)) = (&self.container, &container) {
            leftovers.merge(run.finish_test(test));
        }
        if let Some(own) = &own_cgroups {
            leftovers.cgroups.extend(own.finish());
        }
        if !leftovers.is_empty() {
            outcome.verdict = match std::mem::replace(&mut outcome.verdict, Verdict::Passed) {
                Verdict::Failed(error) => Verdict::Failed(anyhow::anyhow!("{error:#}\n{}", leftovers.describe())),
                _ => Verdict::Failed(anyhow::anyhow!("{}", leftovers.describe())),
            };
        }
        if !self.config.keep {
            let _ = std::fs::remove_dir_all(&outdir);
        }
        outcome
    }

    /// SIGKILLs what is left of a test: the root (the ns init takes its namespace with
    /// it), every descendant, and whatever still sits in the test's session; returns
    /// once they are all dead.
    pub(crate) fn kill_tree(&self, live: &LiveTree) {
        let mut victims = Vec::new();
        if let Some(root) = live.root {
            victims.extend(crate::tree::descendants(root).into_iter().rev());
        }
        if let Some(session) = live.session {
            victims.extend(processes_in_session(session));
        }
        for pid in &victims {
            if self.reaper.is_alive_child(*pid) || *pid != live.root.unwrap_or(0) {
                // Only our children or members of the test's own session/tree.
                // SAFETY: kill takes integers only.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
        if let Some(root) = live.root {
            self.reaper.kill_and_reap(root);
        }
        let _ = wait_dead(&victims, GONE_TIMEOUT);
    }

    /// Waits up to `grace` until no process of the test is left but `expected`; returns
    /// those still there.
    fn wait_strays_gone(&self, expected: &[i32], grace: Duration) -> Vec<leftovers::StrayProcess> {
        let deadline = Instant::now() + grace;
        loop {
            let strays = leftovers::stray_processes(std::process::id() as i32, &self.bin_dir, expected);
            if strays.is_empty() || Instant::now() >= deadline {
                return strays;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After `kill_tree`: SIGKILLs every process still under the harness or running a
    /// test program, deletes crust's lock tables for the test's connections and detaches
    /// mounts under `outdir`, adding each to `found`.
    fn remove_leftovers(&self, live: &LiveTree, outdir: &Path, found: &mut Leftovers) {
        let strays = leftovers::stray_processes(std::process::id() as i32, &self.bin_dir, &[]);
        for stray in &strays {
            // SAFETY: kill takes integers only; the pid is under the harness or runs one
            // of this run's test programs.
            unsafe { libc::kill(stray.pid, libc::SIGKILL) };
        }
        for stray in &strays {
            self.reaper.kill_and_reap(stray.pid);
        }
        let pids: Vec<i32> = strays.iter().map(|stray| stray.pid).collect();
        let _ = wait_dead(&pids, GONE_TIMEOUT);
        for stray in strays {
            if !found.processes.iter().any(|known| known.pid == stray.pid) {
                found.processes.push(stray);
            }
        }
        if !live.sockets.is_empty() || !live.lock_tables.is_empty() {
            if let Some(listing) = self.nft(&["list", "tables"]) {
                for table in leftovers::tables_of(&leftovers::parse_tables(&listing), &live.sockets, &live.lock_tables) {
                    if self.nft(&["delete", "table", &table.family, &table.name]).is_none() {
                        eprintln!("zdtm: could not delete nftables table {} {}", table.family, table.name);
                    }
                    found.tables.push(table);
                }
            }
        }
        for mount in leftovers::own_mounts_under(outdir) {
            if let Err(error) = leftovers::detach_mount(&mount) {
                eprintln!("zdtm: could not detach {}: {error}", mount.display());
            }
            found.mounts.push(mount);
        }
    }

    /// `nft ARGS`'s output, or `None` when nft is not installed (then crust cannot have
    /// made a table either) or fails.
    fn nft(&self, args: &[&str]) -> Option<String> {
        let nft = which("nft").ok()?;
        let mut child = self
            .reaper
            .spawn(Command::new(nft).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()))
            .ok()?;
        let mut text = String::new();
        let read = child.stdout.take().map(|mut out| out.read_to_string(&mut text));
        let status = self.reaper.wait_exit(child.id() as i32, ENGINE_TIMEOUT);
        (status == Some(ExitStatus::Exited(0)) && matches!(read, Some(Ok(_)))).then_some(text)
    }

    fn drive(
        &self,
        spec: &TestSpec,
        flavor: Flavor,
        outdir: &Path,
        live: &mut LiveTree,
        outcome: &mut TestOutcome,
        mut container: Option<&mut ContainerTest>,
        mut own_cgroups: Option<&mut crate::own_cgroups::OwnCgroups>,
    ) -> anyhow::Result<Verdict> {
        if let Some(reason) = self.cross_skip_reason(spec, flavor) {
            return Ok(Verdict::Skipped(reason));
        }
        let extra_env: Vec<(String, String)> = own_cgroups.as_deref().map(|own| own.launcher_env()).into_iter().collect();
        let (ns_pid, init, token) = match self.launch(spec, outdir, flavor, container.as_deref(), &extra_env)? {
            Launched::Ready { pid, init, token } => (pid, init, token),
            Launched::Skip(reason) => return Ok(Verdict::Skipped(reason)),
        };
        // Host flavor: the test is the dumped root and the harness's child. Ns and
        // container flavors: the init is, and the test is found under it by its
        // namespace pid.
        let mut root = init.unwrap_or(ns_pid);
        live.root = Some(root);
        let container_run = self.container.as_ref().filter(|_| flavor.is_container());
        if let (Some(run), Some(test)) = (container_run, container.as_deref_mut()) {
            run.note_init(test, root);
        }
        let mut pid = self.locate(flavor, root, ns_pid)?;
        live.session = Some(pid);
        if let Some(own) = own_cgroups.as_deref_mut() {
            own.split(pid).context("move the test into its sub-cgroup")?;
        }
        if !self.reaper.is_alive_child(root) {
            bail!("root pid {root} is not alive as the harness's child after ready");
        }
        if spec.at_dump == AtDump::Asleep {
            wait_until_asleep(pid, READY_TIMEOUT)?;
        }
        for iteration in 0..self.config.iters {
            let images = outdir.join(format!("img-{iteration}"));
            std::fs::create_dir_all(&images)
                .with_context(|| format!("create {}", images.display()))?;
            if flavor.has_init() {
                wait_init_reaped(root, READY_TIMEOUT)?;
            }
            let pre_dir = outdir.join(format!("img-{iteration}-pre"));
            if self.config.pre_dump {
                std::fs::create_dir_all(&pre_dir).with_context(|| format!("create {}", pre_dir.display()))?;
                let mut args: Vec<String> = ["pre-dump", "-t", &root.to_string(), "-D"].map(String::from).to_vec();
                args.push(pre_dir.display().to_string());
                args.extend(["-o", "dump.log", "-v4"].map(String::from));
                if let (Some(run), Some(test)) = (container_run, container.as_deref()) {
                    args.extend(run.dump_args(test));
                }
                args.extend(spec.dump_args.iter().map(|a| a.to_string()));
                let (status, _) = self.run_engine(&args, &pre_dir, "dump")?;
                if status != ExitStatus::Exited(0) {
                    bail!(
                        "iteration {iteration}: {} pre-dump: {status}{}\n{}",
                        self.tool_name("dump"),
                        first_error_suffix(&pre_dir, "dump"),
                        engine_logs(&pre_dir, "dump")
                    );
                }
            }
            let before = TreeSnapshot::capture(root, spec.volatile_status)
                .context("record state before dump")?;
            let container_before = match (container_run, container.as_deref()) {
                (Some(run), Some(test)) => Some(run.snapshot(test, root).context("record the container before dump")?),
                _ => None,
            };
            let cgroups_before = match own_cgroups.as_deref() {
                Some(own) => Some(own.snapshot(root, &tree_processes(root)).context("record the cgroups before dump")?),
                None => None,
            };

            let old_tree = crate::tree::descendants(root);
            // crust before CRIU's lock table locked each connection in a table named
            // after its socket: remember the sockets, to find such a table left behind.
            live.sockets.extend(leftovers::socket_inodes(&old_tree));
            let mut dump_args: Vec<String> = ["dump", "-t", &root.to_string(), "-D"]
                .map(String::from)
                .to_vec();
            dump_args.push(images.display().to_string());
            dump_args.extend(["-o", "dump.log", "-v4"].map(String::from));
            if self.config.snap {
                dump_args.push("--leave-running".into());
            }
            if self.config.pre_dump {
                dump_args.extend(["--prev-images-dir".to_string(), format!("../img-{iteration}-pre")]);
            }
            if let (Some(run), Some(test)) = (container_run, container.as_deref()) {
                dump_args.extend(run.dump_args(test));
            }
            if let Some(own) = own_cgroups.as_deref() {
                dump_args.extend(own.dump_args());
            }
            dump_args.extend(spec.dump_args.iter().map(|a| a.to_string()));
            if flavor == Flavor::Mntns {
                // The test's directory is the host's: external, given back by key.
                dump_args.extend(["--ext-mount-map".to_string(), format!("{MNTNS_OUTDIR}:{MNTNS_OUTDIR_KEY}")]);
            }
            let mounts_before = (flavor == Flavor::Mntns).then(|| mount_shape(root)).transpose()?;
            let (status, elapsed) = self.run_engine(&dump_args, &images, "dump")?;
            *outcome.dump_ms.get_or_insert(0) += elapsed.as_millis() as u64;
            // The dump's TCP lock table is named after its run id (CRIU's name,
            // whichever tool dumped): remember it, to find it left behind.
            if let Some(run_id) = std::fs::read(images.join("inventory.img")).ok().and_then(|bytes| leftovers::run_id_of_inventory(&bytes)) {
                live.lock_tables.insert(leftovers::lock_table_of_run(&run_id));
            }
            if status != ExitStatus::Exited(0) {
                bail!(
                    "iteration {iteration}: {} dump: {status}{}\n{}",
                    self.tool_name("dump"),
                    first_error_suffix(&images, "dump"),
                    engine_logs(&images, "dump")
                );
            }
            if self.config.snap {
                if !self.reaper.is_alive_child(root) {
                    bail!("iteration {iteration}: pid {root} gone after dump --leave-running");
                }
                // The root's descendants, then the root, waiting until its exit is
                // recorded: an exit recorded after the `forget` below would be taken for
                // the restored root's.
                for pid in crate::tree::descendants(root).into_iter().rev().filter(|&pid| pid != root) {
                    // SAFETY: kill takes integers only; the pid is in the test's tree.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                self.reaper.signal_child(root, libc::SIGKILL);
                if self.reaper.wait_exit(root, GONE_TIMEOUT).is_none() {
                    bail!("iteration {iteration}: pid {root} still alive {}s after SIGKILL", GONE_TIMEOUT.as_secs());
                }
                self.kill_tree(live);
            } else if self.reaper.wait_exit(root, GONE_TIMEOUT).is_none() {
                bail!(
                    "iteration {iteration}: pid {root} still alive {}s after dump",
                    GONE_TIMEOUT.as_secs()
                );
            }
            // Children of the root are gone with it: wait until their pids are free.
            wait_all_gone(&old_tree, GONE_TIMEOUT)
                .with_context(|| format!("iteration {iteration}: after dump"))?;
            self.reaper.forget(root);
            if let (Some(run), Some(test)) = (container_run, container.as_deref()) {
                run.after_dump(test).with_context(|| format!("iteration {iteration}"))?;
            }
            if let Some(own) = own_cgroups.as_deref() {
                own.after_dump().with_context(|| format!("iteration {iteration}"))?;
            }

            let pidfile = images.join("restore.pid");
            let mut restore_args: Vec<String> = ["restore", "-D"].map(String::from).to_vec();
            restore_args.push(images.display().to_string());
            restore_args.extend(["-d", "--pidfile"].map(String::from));
            restore_args.push(pidfile.display().to_string());
            restore_args.extend(["-o", "restore.log", "-v4"].map(String::from));
            if let (Flavor::Mntns, Ok(rootfs)) = (flavor, &self.rootfs) {
                restore_args.extend(["--root".to_string(), rootfs.display().to_string()]);
                restore_args.extend(["--ext-mount-map".to_string(), format!("{MNTNS_OUTDIR_KEY}:{}", outdir.display())]);
            }
            restore_args.extend(spec.dump_args.iter().filter(|a| crate::cross::ALSO_ON_RESTORE.contains(a)).map(|a| a.to_string()));
            if let (Some(run), Some(test)) = (container_run, container.as_deref()) {
                restore_args.extend(run.restore_args(test, outdir));
            }
            if let Some(own) = own_cgroups.as_deref() {
                restore_args.extend(own.restore_args());
            }
            let lazy_daemon = if self.config.lazy {
                restore_args.push("--lazy-pages".into());
                Some(self.start_lazy_daemon(&images)?)
            } else {
                None
            };
            let (status, elapsed) = self.run_engine(&restore_args, &images, "restore")?;
            *outcome.restore_ms.get_or_insert(0) += elapsed.as_millis() as u64;
            if let Some(daemon) = lazy_daemon {
                if status != ExitStatus::Exited(0) {
                    self.reaper.kill_and_reap(daemon);
                } else {
                    // Every page comes in (faults and prefetch) whatever the test does.
                    match self.reaper.wait_exit(daemon, ENGINE_TIMEOUT) {
                        Some(ExitStatus::Exited(0)) => {}
                        Some(other) => bail!("iteration {iteration}: lazy-pages daemon: {other}{}\n{}", first_error_suffix(&images, "lazy"), engine_logs(&images, "lazy")),
                        None => {
                            self.reaper.kill_and_reap(daemon);
                            bail!("iteration {iteration}: lazy-pages daemon did not finish in {}s", ENGINE_TIMEOUT.as_secs());
                        }
                    }
                }
            }
            let restored_root = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok());
            if let Some(restored) = restored_root {
                if flavor.has_init() {
                    live.root = Some(restored);
                    if let (Some(run), Some(test)) = (container_run, container.as_deref_mut()) {
                        run.note_init(test, restored);
                    }
                }
            }
            if status != ExitStatus::Exited(0) {
                bail!(
                    "iteration {iteration}: {} restore: {status}{}\n{}",
                    self.tool_name("restore"),
                    first_error_suffix(&images, "restore"),
                    engine_logs(&images, "restore")
                );
            }
            match (flavor, restored_root) {
                (Flavor::Host, Some(restored)) if restored != root => bail!(
                    "iteration {iteration}: restored pid {restored} differs from dumped pid {root}"
                ),
                (_, None) if flavor.has_init() => bail!(
                    "iteration {iteration}: no pid in {} after restore",
                    pidfile.display()
                ),
                (_, Some(restored)) if flavor.has_init() => root = restored,
                _ => {}
            }
            if !self.reaper.is_alive_child(root) {
                bail!(
                    "iteration {iteration}: pid {root} not running as our child after restore\n{}",
                    engine_logs(&images, "restore")
                );
            }
            if flavor.has_init() {
                match ns_pid_of(root) {
                    Some(1) => {}
                    other => bail!(
                        "iteration {iteration}: restored root {root} has namespace pid {other:?}, not 1\n{}",
                        engine_logs(&images, "restore")
                    ),
                }
            }
            pid = self.locate(flavor, root, ns_pid)
                .with_context(|| format!("iteration {iteration}: after restore\n{}", engine_logs(&images, "restore")))?;
            // `restore -d` returns once the task runs on its own, which may be on its way
            // back into the syscall it slept in (sigsuspend puts its temporary mask back
            // only then): record it where it was recorded before the dump.
            if spec.at_dump == AtDump::Asleep {
                wait_until_asleep(pid, READY_TIMEOUT)
                    .with_context(|| format!("iteration {iteration}: after restore"))?;
            }
            // CRIU's restore sends a stopped process its stop signal and returns without
            // waiting for it to take (crust waits): record such a process once it shows T.
            if self.config.restore_with.is_some() {
                for (&ns, _) in before.processes.iter().filter(|(_, record)| record.state == "T") {
                    if let Some(host) = crate::tree::find_by_ns_pid(root, ns) {
                        wait_for_state(host, "T", Duration::from_secs(5))
                            .with_context(|| format!("iteration {iteration}: after restore, pid {ns} dumped stopped"))?;
                    }
                }
            }
            let after = TreeSnapshot::capture(root, spec.volatile_status)
                .context("record state after restore")?;
            // The container's own state (mounts, network, uts, cgroups, id maps) first:
            // a namespace that came back wrong explains what differs in its processes.
            let mut differences = Vec::new();
            if let (Some(run), Some(test), Some(container_before)) = (container_run, container.as_deref(), &container_before) {
                let container_after = run.snapshot(test, root).context("record the container after restore")?;
                differences.extend(container_before.differences(&container_after));
            }
            if let (Some(own), Some(cgroups_before)) = (own_cgroups.as_deref(), &cgroups_before) {
                let cgroups_after = own.snapshot(root, &tree_processes(root)).context("record the cgroups after restore")?;
                for (what, value) in cgroups_before {
                    match cgroups_after.get(what) {
                        Some(now) if now == value => {}
                        Some(now) => differences.push(format!("{what}: {value} -> {now}")),
                        None => differences.push(format!("{what}: {value} -> gone")),
                    }
                }
            }
            differences.extend(before.differences(&after));
            if let Some(mounts_before) = &mounts_before {
                let mounts_after = mount_shape(root)?;
                if &mounts_after != mounts_before {
                    differences.push(format!(
                        "mounts of the namespace (mountpoint, root, options, propagation, fs, source, super options; parents by position):\n    before: {}\n    after:  {}",
                        mounts_before.join("\n            "),
                        mounts_after.join("\n            ")
                    ));
                }
            }
            if !differences.is_empty() {
                bail!("iteration {iteration}: {}", describe_differences(&differences));
            }
        }

        // SAFETY: kill takes integers only; `pid` was just found in the test's tree.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = match flavor {
            Flavor::Host => self.reaper.wait_exit(pid, VERDICT_TIMEOUT),
            // The test is the init's child: the init reaps it; its status stays inside.
            Flavor::Ns | Flavor::Mntns | Flavor::Container | Flavor::ContainerUserns => {
                wait_all_gone(&[pid], VERDICT_TIMEOUT).ok().map(|()| ExitStatus::Exited(0))
            }
        };
        if flavor == Flavor::Host && status.is_some() {
            live.root = None;
        }
        let verdict_path = outdir.join(format!("{}.out", spec.name));
        let verdict_text = std::fs::read_to_string(&verdict_path).unwrap_or_default();
        let mut lines = verdict_text.lines();
        let verdict_line = lines.next().unwrap_or("").to_string();
        let token_line = lines.next().unwrap_or("").to_string();
        match status {
            None => bail!("no exit {}s after SIGTERM", VERDICT_TIMEOUT.as_secs()),
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

    /// The binary that runs `stage` ("dump", also for pre-dumps, or "restore"): a cross
    /// run's other binary for its half, the engine otherwise.
    fn binary_for(&self, stage: &str) -> &Path {
        match stage {
            "dump" => self.config.dump_with.as_ref(),
            "restore" => self.config.restore_with.as_ref(),
            _ => None,
        }
        .unwrap_or(&self.config.engine)
    }

    /// The name errors give the binary of `stage` (`crust`, `criu`).
    fn tool_name(&self, stage: &str) -> String {
        self.binary_for(stage).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "engine".into())
    }

    /// Why `spec` is skipped in this cross run with CRIU (`cross.rs`), if it is.
    fn cross_skip_reason(&self, spec: &TestSpec, flavor: Flavor) -> Option<String> {
        if std::env::var_os(crate::cross::RUN_ALL_ENV).is_some() {
            return None;
        }
        let (role, everything) = self.criu_other.as_ref()?;
        everything
            .clone()
            .or_else(|| crate::cross::criu_flavor_skip_reason(*role, flavor))
            .or_else(|| crate::cross::criu_skip_reason(spec.name, *role, flavor))
    }

    /// Ends the run's container state (bridge, cgroups, rootfs); `Some` names what was
    /// left besides them (and is removed).
    pub fn finish_run(&mut self) -> Option<Leftovers> {
        let run = self.container.take()?;
        let left = run.teardown();
        (!left.is_empty()).then_some(left)
    }

    /// Host pid of the test: itself in the host flavor, found under the init by its
    /// namespace pid in the `ns` flavor.
    fn locate(&self, flavor: Flavor, root: i32, ns_pid: i32) -> anyhow::Result<i32> {
        match flavor {
            Flavor::Host => Ok(root),
            Flavor::Ns | Flavor::Mntns | Flavor::Container | Flavor::ContainerUserns => crate::tree::find_by_ns_pid(root, ns_pid)
                .with_context(|| format!("no process with namespace pid {ns_pid} under init {root}")),
        }
    }
}

/// Where the mntns flavor's test finds its directory (`ZDTM_OUTDIR`), and the key
/// of that external mount in the images.
const MNTNS_OUTDIR: &str = "/zdtm";
const MNTNS_OUTDIR_KEY: &str = "zdtm";

/// The mntns flavor's host name for a test: `zdtm-<test>`, cut to the kernel's 64
/// bytes.
fn mntns_hostname(test: &str) -> String {
    let mut name = format!("zdtm-{test}");
    name.truncate(64);
    name
}

/// The mntns flavor's root filesystem, `<bin_dir>/rootfs`: the test programs of
/// `bin_dir` at the same relative paths (hard links), the shared libraries `ldd` names
/// for them at their own paths, `/dev/null`, and the empty mountpoint `/zdtm`.
/// `Err(reason)`, a skip reason, when it cannot be made.
fn build_rootfs(bin_dir: &Path) -> Result<PathBuf, String> {
    let rootfs = bin_dir.join("rootfs");
    let fail = |what: &str, path: &Path, error: std::io::Error| format!("mntns rootfs: {what} {}: {error}", path.display());
    let mut programs = Vec::new();
    for sub in ["c-tests", "."] {
        let dir = bin_dir.join(sub);
        let entries = std::fs::read_dir(&dir).map_err(|e| fail("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| fail("list", &dir, e))?;
            let path = entry.path();
            if entry.file_type().map_err(|e| fail("stat", &path, e))?.is_file() {
                programs.push(path);
            }
        }
    }
    for program in &programs {
        let relative = program.strip_prefix(bin_dir).unwrap_or(program);
        let target = rootfs.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail("create", parent, e))?;
        }
        std::fs::hard_link(program, &target).map_err(|e| fail("link", &target, e))?;
    }
    let ldd = which("ldd").map_err(|reason| format!("mntns rootfs: {reason}"))?;
    let output = Command::new(ldd).args(&programs).output().map_err(|e| fail("run", Path::new("ldd"), e))?;
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2
    // (0x...)`; each program's own `PATH:` header line is left out.
    let libraries: std::collections::BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/') && !word.ends_with(':')))
        .map(str::to_string)
        .collect();
    if libraries.is_empty() {
        return Err("mntns rootfs: ldd named no library for the test programs".into());
    }
    for library in libraries {
        let target = rootfs.join(library.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail("create", parent, e))?;
        }
        std::fs::copy(&library, &target).map_err(|e| fail("copy", Path::new(&library), e))?;
    }
    for dir in ["zdtm", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir)).map_err(|e| fail("create", &rootfs.join(dir), e))?;
    }
    let null = rootfs.join("dev/null");
    let c_path = std::ffi::CString::new(null.as_os_str().as_encoded_bytes()).map_err(|_| format!("mntns rootfs: {} has a NUL", null.display()))?;
    // SAFETY: mknod reads the NUL-terminated path, which lives across the call.
    if unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } != 0 {
        return Err(fail("mknod", &null, std::io::Error::last_os_error()));
    }
    // mknod's mode is cut by the umask.
    std::fs::set_permissions(&null, std::os::unix::fs::PermissionsExt::from_mode(0o666)).map_err(|e| fail("chmod", &null, e))?;
    Ok(rootfs)
}

/// The mounts of `pid`'s namespace as it sees them, one line each, without what a
/// restore renumbers: mount ids become positions (the parent of each by its position,
/// `-` outside), peer group numbers are dropped. Mountpoint, root, per-mount options,
/// propagation kind, filesystem, source and super options stay.
fn mount_shape(pid: i32) -> anyhow::Result<Vec<String>> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let lines: Vec<Vec<&str>> = text.lines().map(|line| line.split(' ').collect()).collect();
    let ids: Vec<&str> = lines.iter().map(|fields| fields.first().copied().unwrap_or("")).collect();
    // Anonymous superblocks (major 0: tmpfs, proc, ...) get new numbers in a restore:
    // named by first appearance, so which mounts share one is still compared.
    let mut anonymous: Vec<&str> = Vec::new();
    lines
        .iter()
        .map(|fields| {
            let device = fields.get(2).copied().unwrap_or("");
            let device = if device.starts_with("0:") {
                let position = anonymous.iter().position(|d| *d == device).unwrap_or_else(|| {
                    anonymous.push(device);
                    anonymous.len() - 1
                });
                format!("anon{position}")
            } else {
                device.to_string()
            };
            let dash = fields.iter().position(|field| *field == "-").filter(|&dash| dash >= 6 && fields.len() >= dash + 4);
            let Some(dash) = dash else { bail!("{path}: bad line {:?}", fields.join(" ")) };
            let parent = ids.iter().position(|id| *id == fields[1]).map_or("-".to_string(), |index| index.to_string());
            let propagation: Vec<&str> = fields[6..dash].iter().map(|tag| tag.split(':').next().unwrap_or(tag)).collect();
            Ok(format!(
                "{parent} {} {} {} [{}] {} {} {} {}",
                fields[4],
                fields[3],
                fields[5],
                propagation.join(" "),
                fields[dash + 1],
                fields[dash + 2],
                fields[dash + 3],
                device
            ))
        })
        .collect()
}

/// In a run where CRIU does one half or both (`--dump-with`, `--restore-with`, or the
/// engine itself: its `--version` says `Version: `, and not crust's second line): what
/// CRIU does, and why no test can run when CRIU cannot pre-dump here.
fn criu_in_cross_run(config: &Config) -> Option<(crate::cross::OtherDoes, Option<String>)> {
    let dumper = config.dump_with.as_ref().unwrap_or(&config.engine);
    let restorer = config.restore_with.as_ref().unwrap_or(&config.engine);
    let (dumps, restores) = (is_criu(dumper), is_criu(restorer));
    let (other, role) = match (dumps, restores) {
        (true, true) => (dumper, crate::cross::OtherDoes::Both),
        (true, false) => (dumper, crate::cross::OtherDoes::Dump),
        (false, true) => (restorer, crate::cross::OtherDoes::Restore),
        (false, false) => return None,
    };
    let mut everything = None;
    if config.pre_dump && role != crate::cross::OtherDoes::Restore {
        let check = Command::new(other).args(["check", "--feature", "mem_dirty_track"]).stdin(Stdio::null()).output();
        if !check.is_ok_and(|c| c.status.success()) {
            everything = Some(
                "CRIU cannot pre-dump here: no soft-dirty (`check --feature mem_dirty_track` fails; `criu pre-dump` aborts with \"BUG at criu/mem.c:46\")"
                    .to_string(),
            );
        }
    }
    Some((role, everything))
}

/// Whether `binary` is CRIU itself: its `--version` says `Version: ` (crust answers as
/// CRIU 4.2 too, and names itself on the next line).
fn is_criu(binary: &Path) -> bool {
    let Ok(output) = Command::new(binary).arg("--version").stdin(Stdio::null()).output() else { return false };
    let version = String::from_utf8_lossy(&output.stdout);
    version.starts_with("Version: ") && !version.contains("crust")
}

/// What is left to kill after a test.
#[derive(Debug, Default)]
pub struct LiveTree {
    /// The dumped root: the test (host flavor) or the ns init.
    pub root: Option<i32>,
    /// The test's session (it calls setsid), host pid.
    pub session: Option<i32>,
    /// Inodes of the sockets the tree held at each dump.
    pub sockets: std::collections::BTreeSet<u64>,
    /// The TCP lock tables of the test's dumps (`CRIU-<run id>`, inet family).
    pub lock_tables: std::collections::BTreeSet<String>,
}

/// (host pid, namespace pid) of `root` and every descendant.
fn tree_processes(root: i32) -> Vec<(i32, i32)> {
    crate::tree::descendants(root).into_iter().filter_map(|pid| crate::tree::ns_pid_of(pid).map(|ns_pid| (pid, ns_pid))).collect()
}

/// Host pids whose session (field 6 of /proc/PID/stat) is `session`.
fn processes_in_session(session: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    // `) S ppid pgrp session ...`
                    rest.split_whitespace().nth(3)?.parse::<i32>().ok()
                })
                == Some(session)
        })
        .collect()
}

/// Waits until each of `pids` is gone or a zombie.
fn wait_dead(pids: &[i32], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"))
            })
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("pids {alive:?} still alive {}s after SIGKILL", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until none of `pids` exists any more (or is a zombie nobody reaps yet).
fn wait_all_gone(pids: &[i32], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("pids {left:?} still there {}s later", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Splits the `nsinit <pid>` line the ns flavor's init writes off the test's message.
fn split_init_line(message: &str) -> (Option<i32>, String) {
    let mut init = None;
    let mut rest = String::new();
    for line in message.lines() {
        match line.strip_prefix("nsinit ").and_then(|pid| pid.trim().parse().ok()) {
            Some(pid) => init = Some(pid),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (init, rest)
}

/// `PATH` lookup of a program.
fn which(program: &str) -> Result<String, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .map(|found| found.display().to_string())
        .ok_or_else(|| format!("{program} not installed{}", install_hint(program)))
}

/// ` (ci/setup.sh SET installs it)`: nft for --tcp-established is in the CI set, the
/// language runtimes are not. Empty off the build machine (in a VM, where the harness
/// finds no source tree, setup.sh installs nothing).
fn install_hint(program: &str) -> &'static str {
    if !Path::new(env!("CARGO_MANIFEST_DIR")).is_dir() {
        return "";
    }
    match program {
        "nft" | "busybox" => " (ci/setup.sh --ci installs it)",
        _ => " (ci/setup.sh --full installs it)",
    }
}

/// The real python3 executable (not a pyenv shim script).
fn find_python() -> Result<String, String> {
    let output = Command::new(which("python3")?)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|error| format!("run python3: {error}"))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && !path.is_empty() {
        Ok(path)
    } else {
        Err("python3 does not start".into())
    }
}

/// `go build` of one file next to it; `Err` (a skip reason) without a Go toolchain.
fn build_go(source: &Path) -> Result<PathBuf, String> {
    let go = which("go").or_else(|_| {
        let debian = "/usr/lib/go/bin/go";
        if Path::new(debian).exists() { Ok(debian.to_string()) } else { Err(format!("go not installed{}", install_hint("go"))) }
    })?;
    let output = source.with_extension("");
    if output.exists() {
        return Ok(output);
    }
    let dir = source.parent().unwrap_or(Path::new("."));
    let result = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&output)
        .arg(source)
        .current_dir(dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GO111MODULE", "off")
        .output()
        .map_err(|error| format!("run go build: {error}"))?;
    if !result.status.success() {
        return Err(format!("go build failed: {}", String::from_utf8_lossy(&result.stderr).trim()));
    }
    Ok(output)
}

/// Waits until /proc/PID/stat shows the task asleep (`S`). Polls: the kernel offers no
/// notification for "went to sleep"; the test has already said it is about to.
/// Ns flavor: waits until the namespace's init `init` has reaped every zombie child
/// (the test daemonizes: its first process exits under the init, which reaps it when
/// next scheduled), so the recorded tree holds no zombie the dump will not see.
fn wait_init_reaped(init: i32, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let zombie = crate::tree::descendants(init).into_iter().skip(1).find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace()).into_iter().flatten();
                let state = fields.next();
                let parent = fields.next().and_then(|p| p.parse::<i32>().ok());
                // A leader thread that exited while its threads run on is no zombie.
                let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(1);
                state == Some("Z") && parent == Some(init) && threads <= 1
            })
        });
        let Some(zombie) = zombie else { return Ok(()) };
        if Instant::now() >= deadline {
            bail!("ns init {init} left its child {zombie} a zombie for {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_until_asleep(pid: i32, timeout: Duration) -> anyhow::Result<()> {
    wait_for_state(pid, "S", timeout)
}

/// Waits until `/proc/<pid>/stat` shows state `want`, for at most `timeout`.
fn wait_for_state(pid: i32, want: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // `pid (comm) S ...`: the state follows the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state == Some(want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "pid {pid} not in state {want} {}s after ready (state {state:?})",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
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
    // A launcher's failed step (`error ct_init: mount ...: EPERM`).
    if let Some(error) = message.lines().find_map(|line| line.strip_prefix("error ")) {
        bail!("{error}");
    }
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
        init: None,
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
    read_with_timeout(reader, timeout, false)
}

/// Reads one line (up to and with its newline, or to EOF), failing if that takes longer
/// than `timeout`.
fn read_line_with_timeout(reader: &mut std::fs::File, timeout: Duration) -> anyhow::Result<String> {
    read_with_timeout(reader, timeout, true)
}

fn read_with_timeout(reader: &mut std::fs::File, timeout: Duration, one_line: bool) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "no {} on the ready pipe after {}s (got {:?})",
                if one_line { "line" } else { "EOF" },
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
        // A line is read a byte at a time, so nothing after it is taken from the pipe.
        let mut chunk = [0u8; 256];
        let want = if one_line { 1 } else { chunk.len() };
        let got = reader.read(&mut chunk[..want]).context("read ready pipe")?;
        if got == 0 {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(&chunk[..got]);
        if one_line && bytes.ends_with(b"\n") {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
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

/// `: FIRST ERROR` of the engine's log for `stage` (`dump.log`, `restore.log`: crust's
/// `ERROR:` lines, CRIU's `Error (FILE:LINE):` ones), else of its stderr; empty when
/// neither says anything. The table row of a failed test shows this one line.
fn first_error_suffix(images: &Path, stage: &str) -> String {
    let log = std::fs::read_to_string(images.join(format!("{stage}.log"))).unwrap_or_default();
    let stderr = std::fs::read_to_string(images.join(format!("{stage}.stderr"))).unwrap_or_default();
    first_error(&log, &stderr).map(|line| format!(": {line}")).unwrap_or_default()
}

/// The error that ended an engine's run: the first error line of the log's last
/// [`FATAL_TAIL`] lines (an engine stops soon after the error that ends it; CRIU logs
/// errors it goes on from, such as failing to raise its own RLIMIT_NOFILE, early on),
/// else the log's first, its level and time stamp cut off; else the first non-empty
/// line of its stderr.
pub fn first_error(log: &str, stderr: &str) -> Option<String> {
    let error_of = |line: &str| {
        if let Some((_, message)) = line.split_once(") ERROR: ") {
            return Some(message.trim().to_string());
        }
        let at = line.find("Error (")?;
        Some(line[at..].trim().to_string())
    };
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(FATAL_TAIL)..];
    let from_log = tail.iter().find_map(|line| error_of(line)).or_else(|| lines.iter().find_map(|line| error_of(line)));
    from_log.or_else(|| stderr.lines().map(str::trim).find(|line| !line.is_empty()).map(str::to_string))
}

/// How many last lines of an engine log [`first_error`] looks at first.
const FATAL_TAIL: usize = 40;

/// `restored state differs in N items, first: ITEM` and then every item, one a line.
pub fn describe_differences(differences: &[String]) -> String {
    let first = differences.first().map(String::as_str).unwrap_or("");
    let count = differences.len();
    let items = if count == 1 { "item" } else { "items" };
    format!("restored state differs in {count} {items}, first: {first}\n  {}", differences.join("\n  "))
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
    fn first_errors_of_both_engines_logs() {
        let crust = "(  0.000100) INFO: dumping pid 7\n(  0.002000) ERROR: dump pid 7: mount namespace not supported\n(  0.003000) ERROR: later\n";
        assert_eq!(first_error(crust, "").as_deref(), Some("dump pid 7: mount namespace not supported"));
        let criu = "(00.001) Warn  (criu/x.c:1): w\n(00.002) Error (criu/mount.c:99): mnt: no root\n";
        assert_eq!(first_error(criu, "").as_deref(), Some("Error (criu/mount.c:99): mnt: no root"));
        assert_eq!(first_error("", "\n  crust: restore: bad image\n").as_deref(), Some("crust: restore: bad image"));
        assert_eq!(first_error("(0.1) INFO: fine\n", ""), None);
        // An error the engine went on from, long before the one that ended it.
        let mut long = String::from("(00.07) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self\n");
        long.push_str(&"(00.08) mnt: something\n".repeat(100));
        long.push_str("(00.12) 1: Error (criu/net.c:1737): net: couldn't restore veth\n(00.13) Error (criu/cr-restore.c:2331): Restoring FAILED.\n");
        assert_eq!(first_error(&long, "").as_deref(), Some("Error (criu/net.c:1737): net: couldn't restore veth"));
    }

    #[test]
    fn differences_name_the_first_item() {
        let text = describe_differences(&["mount - 1 / tmpfs".to_string(), "link - 2 eth0".to_string()]);
        assert_eq!(text.lines().next(), Some("restored state differs in 2 items, first: mount - 1 / tmpfs"));
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn ready_messages() {
        match parse_ready_message("4711 00ff00ff00ff00ff\n").expect("parses") {
            Launched::Ready { pid, token, .. } => {
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
            pidfd_thread: true,
        };
        let spec = TestSpec {
            name: "x",
            program: Program::C("x"),
            args: &[],
            requirements: &[Requirement::CpuFlag("avx512f")],
            volatile_status: &[],
            at_dump: AtDump::Asleep,
            host_only: None,
            container_skip: None,
            userns_skip: None,
            dump_args: &[],
            group: "core",
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
