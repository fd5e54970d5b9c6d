//! The RPC server's log: one logger for the process, pointed at each request's
//! `log_file` (in the work directory) with its `log_level`, CRIU's 0-4.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Where the current request logs.
struct Target {
    file: Option<std::fs::File>,
    level: log::LevelFilter,
    to_stderr: bool,
}

struct RpcLogger {
    target: Mutex<Target>,
    started: Instant,
}

static LOGGER: std::sync::OnceLock<RpcLogger> = std::sync::OnceLock::new();

/// Installs the logger (once per process): warnings and errors to stderr until a
/// request says otherwise.
pub fn install() {
    let logger = LOGGER.get_or_init(|| RpcLogger {
        target: Mutex::new(Target { file: None, level: log::LevelFilter::Warn, to_stderr: true }),
        started: Instant::now(),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// Points the log at `file` with CRIU's `level` (0-1 errors, 2 warnings, 3 info, 4
/// everything); `to_stderr` copies every line to stderr (`log_to_stderr`).
pub fn configure(file: Option<std::fs::File>, level: i32, to_stderr: bool) {
    let Some(logger) = LOGGER.get() else { return };
    if let Ok(mut target) = logger.target.lock() {
        *target = Target { file, level: level_filter(level), to_stderr };
    }
}

/// CRIU's verbosity as a filter.
pub fn level_filter(level: i32) -> log::LevelFilter {
    match level {
        i32::MIN..=1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    }
}

impl log::Log for RpcLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.target.lock().is_ok_and(|target| metadata.level() <= target.level)
    }

    fn log(&self, record: &log::Record) {
        if record.target() == "crust::progress" {
            return; // a terminal's progress line: nobody watches one here
        }
        let Ok(mut target) = self.target.lock() else { return };
        if record.level() > target.level {
            return;
        }
        let line = format!(
            "({:>10.6}) {}: {}\n",
            self.started.elapsed().as_secs_f64(),
            record.level(),
            record.args()
        );
        if let Some(file) = target.file.as_mut() {
            let _ = file.write_all(line.as_bytes());
        }
        if target.to_stderr || (target.file.is_none() && record.level() <= log::Level::Warn) {
            eprint!("{line}");
        }
    }

    fn flush(&self) {}
}
