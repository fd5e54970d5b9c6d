//! CRIU's command line: its verbs (dump, pre-dump, restore, check, and the ones crust
//! answers "not supported yet"), every option of CRIU 4.2 (`table.rs`), its
//! configuration files and their order of precedence, its exit codes, and the same
//! behaviour when the binary is called `criu`.
//!
//! The flow: `parse` takes the words apart, `options::CriuOptions` gathers the
//! configuration files' settings and then the command line's, `CriuOptions::refusal`
//! answers for what crust cannot do yet, and the verb runs over the engine.

mod check;
mod help;
mod logging;
pub mod options;
pub mod parse;
mod scripts;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

use crate::hooks::{self, Hook, HookPoint, HookSink};
use options::{CriuOptions, Verb};
use scripts::ActionScripts;

/// The name the binary was called by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Crust,
    /// Called as `criu` (through a link): CRIU's verbs only, CRIU's messages.
    Criu,
}

impl Program {
    /// From argv\[0\]: `criu` if its file name is `criu`.
    pub fn from_argv0(argv0: Option<&std::ffi::OsStr>) -> Self {
        match argv0.map(Path::new).and_then(Path::file_name) {
            Some(name) if name == "criu" => Program::Criu,
            _ => Program::Crust,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Program::Crust => "crust",
            Program::Criu => "criu",
        }
    }
}

/// The version CRIU's tools parse: runc (before its VERSION RPC) and LXC read
/// `Version: X.Y[.Z]` from the first line and take any `-` in the output for a git
/// version, so the output has none.
pub fn version_text() -> String {
    format!("Version: 4.2\ncrust {}: CRIU 4.2 images and command line\n", env!("CARGO_PKG_VERSION"))
}

/// Runs one CRIU command line; returns the exit code (0, or 1 on any error, as CRIU).
pub fn main(program: Program, args: &[String]) -> i32 {
    match run(program, args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}: {}", program.name(), one_line(&error));
            1
        }
    }
}

/// An error and its causes on one line, each cause once (library errors already carry
/// their cause's text).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

fn run(program: Program, args: &[String]) -> anyhow::Result<i32> {
    let line = parse::parse_args(args)?;
    // The command line alone decides --help, --version and which files are read.
    let mut command_line = CriuOptions::default();
    for setting in &line.settings {
        command_line.apply(setting).map_err(|e| anyhow!(e))?;
    }
    if command_line.help {
        print!("{}", help::text(program));
        return Ok(0);
    }
    if command_line.version {
        print!("{}", version_text());
        return Ok(0);
    }
    let mut options = CriuOptions::default();
    for (path, text) in config_files(program, &command_line)? {
        options.apply_config(&text, &path).map_err(|e| anyhow!(e))?;
    }
    for setting in &line.settings {
        options.apply(setting).map_err(|e| anyhow!(e))?;
    }
    let Some((verb, used)) = Verb::parse(&line.positionals) else {
        return match line.positionals.first() {
            Some(word) => Err(anyhow!("unknown command {word} ({} --help lists them)", program.name())),
            None => {
                eprint!("{}", help::usage(program));
                Ok(1)
            }
        };
    };
    if let Some(extra) = line.positionals.get(used) {
        if matches!(verb, Verb::Dump | Verb::PreDump | Verb::Restore | Verb::Check | Verb::Dedup) {
            bail!("unexpected argument {extra}: {} takes options only", verb.name());
        }
    }
    if !(line.after_dashes.is_empty() || verb == Verb::Restore && options.exec_cmd) {
        bail!("the words after -- are the command of restore --exec-cmd");
    }
    for &fd in &options.close_fds {
        crate::sys::close_fd(fd);
    }
    if options.ms {
        bail!("--ms is deprecated; see \"Check options\" of {} --help", program.name());
    }
    match verb {
        Verb::Dump | Verb::PreDump => dump(program, verb, options),
        Verb::Restore => restore(program, options, &line.after_dashes),
        Verb::Check => check::run(program, &options),
        Verb::Exec => {
            eprintln!("{}: the exec action is deprecated by the Compel library", program.name());
            Ok(255)
        }
        Verb::Show => {
            eprintln!("{}: the show action is deprecated by crit: use `crust show IMAGE` (or `crit show`)", program.name());
            Ok(255)
        }
        Verb::Swrk => {
            let word = line.positionals.get(used).ok_or_else(|| anyhow!("swrk needs the fd number of its socket (swrk FD)"))?;
            let fd = word.parse().map_err(|_| anyhow!("swrk {word}: not an fd number"))?;
            // Each request starts from these options (the configuration files' and the
            // command line's), as CRIU's requests do.
            crate::rpc::run(crate::rpc::RpcCmd::Swrk { fd }, options)
        }
        Verb::Service => {
            let args = crate::rpc::service::ServiceArgs {
                address: options.address.clone().unwrap_or_else(|| "criu_service.socket".into()).into(),
                daemon: options.daemon,
                pidfile: options.pidfile.clone(),
                status_fd: options.status_fd,
            };
            crate::rpc::run(crate::rpc::RpcCmd::Service(args), options)
        }
        Verb::PageServer => page_server(options),
        Verb::LazyPages => lazy_pages(options),
        Verb::Dedup | Verb::CpuinfoDump | Verb::CpuinfoCheck => {
            bail!("{} is not supported yet", verb.name())
        }
    }
}

/// The configuration files to read, in CRIU's order (a later one overrides an earlier
/// one, and the command line overrides them all): /etc/criu/default.conf and
/// $HOME/.criu/default.conf unless `--config` or `--no-default-config` is given, then
/// $CRIU_CONFIG_FILE, then `--config FILE`. A file that is not there is skipped (a named
/// one with a warning), as CRIU skips it.
fn config_files(program: Program, command_line: &CriuOptions) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut paths: Vec<(PathBuf, bool)> = Vec::new();
    if command_line.config.is_none() && !command_line.no_default_config {
        paths.push((PathBuf::from("/etc/criu/default.conf"), false));
        if let Some(home) = std::env::var_os("HOME") {
            paths.push((Path::new(&home).join(".criu/default.conf"), false));
        }
    }
    if let Some(path) = std::env::var_os("CRIU_CONFIG_FILE").filter(|p| !p.is_empty()) {
        paths.push((PathBuf::from(path), true));
    }
    if let Some(path) = &command_line.config {
        paths.push((path.clone(), true));
    }
    let mut out = Vec::new();
    for (path, named) in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => out.push((path, text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if named {
                    eprintln!("{}: warning: configuration file {} not found, skipped", program.name(), path.display());
                }
            }
            Err(error) => return Err(error).with_context(|| format!("read configuration file {}", path.display())),
        }
    }
    Ok(out)
}

/// Makes the images directory absolute (creating it for a dump) and changes to the
/// work directory (the images directory unless `-W`), as CRIU does: relative log
/// files, pidfiles and action scripts are then found there.
fn enter_work_dir(options: &mut CriuOptions, create_images: bool) -> anyhow::Result<()> {
    let images = options.images_dir();
    if create_images {
        // Images hold process memory: a new directory is 0700, and none that others
        // can write is used.
        crust_engine::private::create_dir(&images).with_context(|| format!("create images directory {}", images.display()))?;
        crust_engine::private::check_dir(&images).map_err(|e| anyhow!("images directory {e}"))?;
    }
    let images = images.canonicalize().with_context(|| format!("images directory {}", images.display()))?;
    let work = options.work_dir.clone().unwrap_or_else(|| images.clone());
    std::env::set_current_dir(&work).with_context(|| format!("work directory {}", work.display()))?;
    options.images_dir = Some(images);
    Ok(())
}

/// `--fault-inject hold:POINT` (testing).
fn hold(options: &CriuOptions) -> anyhow::Result<()> {
    match &options.fault_hold {
        Some(point) => crust_engine::interrupt::hold_at(point).map_err(|e| anyhow!(e)),
        None => Ok(()),
    }
}

fn dump(program: Program, verb: Verb, mut options: CriuOptions) -> anyhow::Result<i32> {
    if let Some(refusal) = options.refusal(verb) {
        bail!(refusal);
    }
    let target = options.dump_options(verb).map_err(|e| anyhow!(e))?.pid;
    // A refused dump leaves nothing behind: no images directory, no log.
    crust_engine::dump::check_access(target)?;
    enter_work_dir(&mut options, true)?;
    logging::init(&options)?;
    let scripts = Arc::new(ActionScripts::new(program, &options));
    let mut dump = options.dump_options(verb).map_err(|e| anyhow!(e))?;
    if verb == Verb::Dump {
        // CRIU's pre-dump verb reaches no point inside the dump.
        dump.stages = hooks::engine_stages(scripts.clone());
    }
    if let (Some(lazy), Some(fd)) = (dump.lazy_pages.as_mut(), options.status_fd) {
        // `--status-fd`: a zero byte once the images are written and the lazy pages served.
        lazy.ready = Some(Arc::new(move || {
            if let Err(error) = crate::sys::report_ready(fd) {
                log::warn!("--status-fd {fd}: {error}");
            }
        }));
    }
    scripts.hook(Hook::at(HookPoint::PreDump, Some(dump.pid)))?;
    hold(&options)?;
    crate::sys::catch_stop_signals().context("catch SIGTERM, SIGINT and SIGHUP")?;
    let dumped = crust_engine::dump::dump(&dump);
    crate::sys::default_stop_signals();
    let report = match dumped {
        // One line, naming the verb the user ran.
        Err(crust_engine::dump::DumpError::Interrupted { pid, signal }) => {
            let line = format!("{} interrupted by {}; pid {pid} released unchanged", verb.name(), crust_engine::interrupt::signal_name(signal));
            log::error!("{line}");
            bail!(line)
        }
        other => other.inspect_err(|e| log::error!("{e}"))?,
    };
    log::info!(
        "dumped pid {}: {} processes, {} threads, {} vmas, {} pages, frozen {:?}, total {:?}",
        dump.pid, report.processes, report.threads, report.vmas, report.pages, report.frozen, report.total
    );
    if options.verbosity >= 3 {
        eprintln!(
            "{}: dumped pid {} ({} pages, frozen {:.1} ms, total {:.1} ms)",
            program.name(),
            dump.pid,
            report.pages,
            report.frozen.as_secs_f64() * 1e3,
            report.total.as_secs_f64() * 1e3
        );
    }
    if options.display_stats {
        print!(
            "Displaying dump stats:\nFrozen time: {} us\nDump time: {} us\nProcesses: {}\nThreads: {}\nMemory areas: {}\nMemory pages written: {} (0x{:x})\n",
            report.frozen.as_micros(),
            report.total.as_micros(),
            report.processes,
            report.threads,
            report.vmas,
            report.pages,
            report.pages
        );
    }
    Ok(0)
}

/// `crust page-server`: listens on `--address` (default: every address) and `--port`
/// (0 or none: any free port, logged), and writes the pages of the first connection
/// into the images directory (`crust_engine::page_server`), as CRIU's page server.
fn page_server(mut options: CriuOptions) -> anyhow::Result<i32> {
    if options.tls {
        bail!("--tls is not supported yet (page server connections over TLS)");
    }
    if options.ps_socket.is_some() {
        bail!("--ps-socket is not supported yet (a page server socket handed over as an fd)");
    }
    enter_work_dir(&mut options, true)?;
    logging::init(&options)?;
    let address = options.address.clone().unwrap_or_else(|| "0.0.0.0".into());
    let port = options.port.unwrap_or(0);
    let listener = std::net::TcpListener::bind((address.as_str(), port)).with_context(|| format!("page server: listen on {address}:{port}"))?;
    let local = listener.local_addr().context("page server: the listening address")?;
    log::info!("page server listening on {local}, images into {}", options.images_dir().display());
    if serve_in_background(&options, "page server")? {
        return Ok(0);
    }
    let serve = crust_engine::page_server::ServeOptions { dir: options.images_dir(), parent: options.prev_images_dir.clone() };
    let report = crust_engine::page_server::server::serve_one(&listener, &serve).inspect_err(|e| log::error!("{e}"))?;
    log::info!(
        "page server: {} pagemaps, {} pages received ({:.0} MiB/s), {} pages in the parent dump, in {:?}",
        report.destinations,
        report.pages,
        (report.pages * crate::sys::page_size() as u64) as f64 / (1 << 20) as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.parent_pages,
        report.elapsed
    );
    Ok(0)
}

/// What a listening server does before it serves, as CRIU's: with --daemon it forks, and
/// the parent (true) writes the daemon's pid to --pidfile and returns; otherwise its own
/// pid goes there. The one that serves then reports ready on --status-fd.
fn serve_in_background(options: &CriuOptions, what: &str) -> anyhow::Result<bool> {
    if options.daemon {
        if let Some(daemon) = crate::sys::fork_daemon().with_context(|| format!("{what}: fork the daemon"))? {
            if let Some(pidfile) = &options.pidfile {
                std::fs::write(pidfile, format!("{daemon}")).with_context(|| format!("write {}", pidfile.display()))?;
            }
            return Ok(true);
        }
    } else if let Some(pidfile) = &options.pidfile {
        std::fs::write(pidfile, format!("{}", std::process::id())).with_context(|| format!("write {}", pidfile.display()))?;
    }
    if let Some(fd) = options.status_fd {
        crate::sys::report_ready(fd).with_context(|| format!("--status-fd {fd}"))?;
    }
    Ok(false)
}

/// `crust lazy-pages`: listens on `lazy-pages.socket` in the work directory, takes the
/// userfaultfds of the tree that `crust restore --lazy-pages` (same work directory)
/// restores, and fills its memory from the images (`crust_engine::lazy`); exits once
/// every page is in.
fn lazy_pages(mut options: CriuOptions) -> anyhow::Result<i32> {
    enter_work_dir(&mut options, false)?;
    logging::init(&options)?;
    // Pages a `dump --lazy-pages` left at the source come from its page server; it is
    // reached before anything else, so an unreachable source fails here.
    let source = if options.page_server {
        let Some(port) = options.port else { bail!("lazy-pages --page-server: --port is required (the source's `dump --lazy-pages --port`)") };
        let address = options.address.clone().unwrap_or_else(|| "127.0.0.1".into());
        Some(crust_engine::lazy::Source::connect(&address, port, &options.images_dir()).inspect_err(|e| log::error!("{e}"))?)
    } else {
        None
    };
    let socket = Path::new(options::LAZY_PAGES_SOCKET);
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            bail!("lazy-pages: {} in {} is served by another daemon", socket.display(), std::env::current_dir().unwrap_or_default().display());
        }
        std::fs::remove_file(socket).with_context(|| format!("remove the stale {}", socket.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(socket).with_context(|| format!("lazy-pages: listen on {}", socket.display()))?;
    log::info!("lazy-pages daemon listening on {} in {}", socket.display(), std::env::current_dir().unwrap_or_default().display());
    if serve_in_background(&options, "lazy-pages")? {
        return Ok(0);
    }
    let served = crust_engine::lazy::serve(&listener, source);
    let _ = std::fs::remove_file(socket);
    let report = served.inspect_err(|e| log::error!("{e}"))?;
    log::info!(
        "lazy pages: {} processes; {} pages on faults, {} prefetched, {} zero pages, {} from the source, {} unchanged from the parent dump, in {:?}",
        report.processes,
        report.faulted,
        report.prefetched,
        report.zero,
        report.from_source,
        report.from_parent,
        report.elapsed
    );
    Ok(0)
}

fn restore(program: Program, mut options: CriuOptions, command: &[String]) -> anyhow::Result<i32> {
    if let Some(refusal) = options.refusal(Verb::Restore) {
        bail!(refusal);
    }
    if options.restore_sibling && !options.restore_detached {
        // As CRIU: the root becomes the child of crust's parent, which waits for it.
        bail!("--restore-sibling only makes sense with --restore-detached (-d)");
    }
    if options.exec_cmd && command.is_empty() {
        bail!("--exec-cmd needs the command after --: restore --exec-cmd -- COMMAND [ARGS]");
    }
    crust_engine::restore::check_access()?;
    enter_work_dir(&mut options, false)?;
    logging::init(&options)?;
    let scripts = Arc::new(ActionScripts::new(program, &options));
    let mut restore = options.restore_options();
    restore.stages = hooks::engine_stages(scripts);
    hold(&options)?;
    crate::sys::catch_stop_signals().context("catch SIGTERM, SIGINT and SIGHUP")?;
    let restored = crust_engine::restore::restore(&restore);
    // From here a signal ends crust as usual; the restored tree runs on.
    crate::sys::default_stop_signals();
    let report = restored.inspect_err(|e| log::error!("{e}"))?;
    log::info!("restored pid {} ({} processes) in {:?}", report.pid, report.processes, report.total);
    if options.display_stats {
        print!(
            "Displaying restore stats:\nRestore time: {} us\nProcesses: {}\n",
            report.total.as_micros(),
            report.processes
        );
    }
    if options.exec_cmd {
        use std::os::unix::process::CommandExt;
        let error = std::process::Command::new(&command[0]).args(&command[1..]).exec();
        bail!("--exec-cmd {}: {error} (the restored tree, pid {}, runs on)", command[0], report.pid);
    }
    if !options.restore_detached {
        // CRIU waits for the restored root and then exits 0, whatever its status.
        match crate::sys::wait_child(report.pid) {
            Ok(status) => log::info!("restored root {} ended: {status}", report.pid),
            Err(error) => log::warn!("wait for the restored root {}: {error}", report.pid),
        }
    }
    Ok(0)
}
