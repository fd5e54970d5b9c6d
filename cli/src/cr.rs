//! CRIU's verbs: check, dump, pre-dump, restore, with CRIU's flags and exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use crust_engine::dump::{DumpOptions, DumpStep};
use crust_engine::restore::RestoreOptions;

/// Checkpoint/restore commands (CRIU-compatible).
#[derive(clap::Subcommand)]
pub enum CrCmd {
    /// Check that the kernel has what crust needs; non-zero exit if something is missing
    Check,
    /// Checkpoint a running process into image files (kills it unless --leave-running)
    Dump(DumpArgs),
    /// Dump while the process keeps running, for a later dump to build on
    /// (`dump --prev-images-dir`): that dump then writes only the pages that changed
    PreDump(DumpArgs),
    /// Restore a process from image files, with the same PID
    Restore(RestoreArgs),
}

/// Flags every verb shares.
#[derive(clap::Args)]
pub struct CommonArgs {
    /// Directory of the image files
    #[arg(short = 'D', long = "images-dir", default_value = ".")]
    pub images_dir: PathBuf,
    /// Log file, relative to the images directory unless absolute
    #[arg(short = 'o', long = "log-file")]
    pub log_file: Option<PathBuf>,
    /// Verbosity 0-4 (`-v4` logs everything)
    #[arg(short = 'v', num_args = 0..=1, default_missing_value = "3", require_equals = false)]
    pub verbosity: Option<u8>,
    /// The process is a shell job: keep the caller's session and terminal
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
}

/// `crust dump` flags.
#[derive(clap::Args)]
pub struct DumpArgs {
    /// PID of the process to dump
    #[arg(short = 't', long = "tree")]
    pub pid: i32,
    /// Leave the process running after a good dump
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
    /// Dump established TCP connections (TCP_REPAIR). Each is locked with an nftables
    /// table `crust_tcp_INODE` that drops its packets until `crust restore` removes it;
    /// needs the nft command
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// With --leave-running: keep the tree frozen while its pages are copied, instead
    /// of the copy-on-write snapshot that lets it run during the copy
    #[arg(long = "frozen-copy")]
    pub frozen_copy: bool,
    /// Testing: fail the dump right after this step (seize, collect, parasite, memory,
    /// files, images, pages: halfway through the pages copied after a copy-on-write
    /// release, pages-killed: crust SIGKILLs itself there); the target must keep running
    /// unchanged
    #[arg(long = "fault-inject", hide = true)]
    pub fault_inject: Option<String>,
    /// An earlier dump (a pre-dump) to build on, relative to the images directory:
    /// pages still equal to its pages are not written again and restore reads them from
    /// there (the images directory gets a `parent` link to it)
    #[arg(long = "prev-images-dir")]
    pub prev_images_dir: Option<PathBuf>,
    /// Accepted for CRIU's scripts: crust finds the changed pages by comparing them with
    /// the parent dump's, with or without this flag (no soft-dirty tracking needed)
    #[arg(long = "track-mem")]
    pub track_mem: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `crust restore` flags.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Detach once the restored process runs (otherwise wait for it and return its status)
    #[arg(short = 'd', long = "restore-detached")]
    pub detach: bool,
    /// Write the restored process's PID to this file
    #[arg(long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs one C/R verb; returns the process exit code.
pub fn run(cmd: CrCmd) -> anyhow::Result<i32> {
    match cmd {
        CrCmd::Check => {
            let features = crust_engine::check::check_features();
            let mut missing = 0;
            for f in &features {
                let state = match (f.present, f.optional) {
                    (true, _) => "ok",
                    (false, false) => "MISSING",
                    (false, true) => "absent",
                };
                println!("{state:<8} {} ({})", f.name, f.detail);
                missing += usize::from(!f.present && !f.optional);
            }
            if missing == 0 {
                println!("Looks good.");
                Ok(0)
            } else {
                println!("{missing} feature(s) missing");
                Ok(1)
            }
        }
        CrCmd::PreDump(mut args) => {
            // A whole dump the tree survives: every image, so that it is also a
            // complete checkpoint of its own.
            args.leave_running = true;
            run(CrCmd::Dump(args))
        }
        CrCmd::Dump(args) => {
            init_logging(&args.common)?;
            let fail_after = match &args.fault_inject {
                Some(name) => Some(DumpStep::from_name(name).with_context(|| format!("unknown dump step {name}"))?),
                None => None,
            };
            let options = DumpOptions {
                pid: args.pid,
                dir: args.common.images_dir.clone(),
                leave_running: args.leave_running,
                frozen_copy: args.frozen_copy,
                tcp_established: args.tcp_established,
                shell_job: args.common.shell_job,
                fail_after,
                parent: args.prev_images_dir.clone(),
            };
            let report = crust_engine::dump::dump(&options).inspect_err(|e| log::error!("{e}"))?;
            log::info!(
                "dumped pid {}: {} vmas, {} pages, frozen {:?}, total {:?}",
                args.pid, report.vmas, report.pages, report.frozen, report.total
            );
            if args.common.verbosity.unwrap_or(0) >= 3 {
                eprintln!(
                    "crust: dumped pid {} ({} pages, frozen {:.1} ms, total {:.1} ms)",
                    args.pid,
                    report.pages,
                    report.frozen.as_secs_f64() * 1e3,
                    report.total.as_secs_f64() * 1e3
                );
            }
            Ok(0)
        }
        CrCmd::Restore(args) => {
            init_logging(&args.common)?;
            let options = RestoreOptions {
                dir: args.common.images_dir.clone(),
                detach: args.detach,
                pidfile: args.pidfile.clone(),
                shell_job: args.common.shell_job,
            };
            let report = crust_engine::restore::restore(&options).inspect_err(|e| log::error!("{e}"))?;
            log::info!("restored pid {} in {:?}", report.pid, report.total);
            Ok(report.exit_code.unwrap_or(0))
        }
    }
}

/// A logger writing to the `-o` file (or stderr for warnings and errors without one).
struct FileLogger {
    file: Option<std::sync::Mutex<std::fs::File>>,
    level: log::LevelFilter,
}

impl log::Log for FileLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        // Progress of long dumps goes to a terminal whatever the verbosity.
        if record.target() == "crust::progress" {
            use std::io::IsTerminal;
            if std::io::stderr().is_terminal() {
                eprint!("\rcrust: {}   ", record.args());
            }
        }
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("({:>10.6}) {}: {}\n", uptime(), record.level(), record.args());
        match &self.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            // Errors reach stderr once, from main.
            None if record.level() == log::Level::Warn => eprint!("{line}"),
            None => {}
        }
    }

    fn flush(&self) {}
}

fn uptime() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
}

fn init_logging(common: &CommonArgs) -> anyhow::Result<()> {
    let level = match common.verbosity.unwrap_or(2) {
        0 | 1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let file = match &common.log_file {
        Some(path) => {
            let path = if path.is_absolute() { path.clone() } else { common.images_dir.join(path) };
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
                .with_context(|| format!("create log directory for {}", path.display()))?;
            Some(std::sync::Mutex::new(
                std::fs::File::create(&path).with_context(|| format!("create log file {}", path.display()))?,
            ))
        }
        None => None,
    };
    let _ = uptime();
    log::set_boxed_logger(Box::new(FileLogger { file, level })).ok();
    // Info records pass the global filter for the progress lines; `enabled` filters the rest.
    log::set_max_level(level.max(log::LevelFilter::Info));
    Ok(())
}
