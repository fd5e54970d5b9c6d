//! The log: CRIU's levels (`-v0` nothing, 1 errors, 2 warnings, 3 information, 4
//! debug) into the `-o` file (relative to the work directory; `-` is stderr), or
//! warnings to stderr without one (errors reach stderr once, from `main`).

use std::io::Write;

use anyhow::Context;

use super::options::CriuOptions;

/// Starts logging for one command.
pub fn init(options: &CriuOptions) -> anyhow::Result<()> {
    let level = match options.verbosity {
        i32::MIN..=0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let sink = match &options.log_file {
        Some(path) if path.as_os_str() == "-" => Sink::Stderr,
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("create log directory for {}", path.display()))?;
            }
            // The log is private, as the images beside it are.
            let file = crust_engine::private::create_file(path).with_context(|| format!("create log file {}", path.display()))?;
            Sink::File(std::sync::Mutex::new(file))
        }
        None => Sink::WarningsToStderr,
    };
    let _ = uptime();
    log::set_boxed_logger(Box::new(Logger { sink, level })).ok();
    // Info records pass the global filter for the progress lines; `enabled` filters the rest.
    log::set_max_level(level.max(log::LevelFilter::Info));
    Ok(())
}

enum Sink {
    File(std::sync::Mutex<std::fs::File>),
    Stderr,
    /// No log file: warnings go to stderr, the rest nowhere.
    WarningsToStderr,
}

struct Logger {
    sink: Sink,
    level: log::LevelFilter,
}

impl log::Log for Logger {
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
        match &self.sink {
            Sink::File(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            // Errors reach stderr once, from main.
            Sink::Stderr if record.level() == log::Level::Error => {}
            Sink::Stderr => eprint!("{line}"),
            Sink::WarningsToStderr if record.level() == log::Level::Warn => eprint!("{line}"),
            Sink::WarningsToStderr => {}
        }
    }

    fn flush(&self) {}
}

fn uptime() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
}
