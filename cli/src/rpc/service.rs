//! `crust service`: CRIU's service mode. A SOCK_SEQPACKET listener at a path; each
//! connection is served by a forked worker (one request, or more with `keep_open`),
//! so a dump or restore never shares a process with another client's.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::sys::{self, Forked};
use crate::criu::options::CriuOptions;
use super::transport::Listener;

/// `crust service` flags (CRIU's).
#[derive(clap::Args)]
pub struct ServiceArgs {
    /// Path of the unix socket to listen on (CRIU's default: criu_service.socket in
    /// the current directory). A socket left by a service that died is replaced
    #[arg(long = "address", default_value = "criu_service.socket")]
    pub address: PathBuf,
    /// Run in the background once the socket listens (the command returns then)
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Write the service's pid to this file
    #[arg(long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Write one zero byte to this fd and close it once the socket listens
    #[arg(long = "status-fd")]
    pub status_fd: Option<i32>,
}

/// Runs the service until SIGTERM or SIGINT (then removes the socket). Each
/// connection's requests start from `base`, the service's own options.
pub fn run(args: ServiceArgs, base: &CriuOptions) -> anyhow::Result<i32> {
    let listener = Listener::bind(&args.address).with_context(|| format!("service: listen on {}", args.address.display()))?;
    if args.daemon {
        match sys::fork_process().context("service: fork the daemon")? {
            Forked::Parent(daemon) => {
                // The socket already listens: a client may connect as soon as this returns.
                if let Some(pidfile) = &args.pidfile {
                    std::fs::write(pidfile, format!("{daemon}")).with_context(|| format!("write {}", pidfile.display()))?;
                }
                return Ok(0);
            }
            Forked::Child => detach_from_terminal().context("service: detach the daemon")?,
        }
    } else if let Some(pidfile) = &args.pidfile {
        std::fs::write(pidfile, format!("{}", std::process::id())).with_context(|| format!("write {}", pidfile.display()))?;
    }
    sys::service_signals().context("service: signal handlers")?;
    if let Some(fd) = args.status_fd {
        let mut status = std::fs::File::from(sys::adopt_fd(fd, false).with_context(|| format!("--status-fd {fd}"))?);
        status.write_all(&[0]).with_context(|| format!("--status-fd {fd}: write"))?;
    }
    log::info!("service listening on {}", listener.path().display());
    while !sys::stop_requested() {
        let connection = match listener.accept() {
            Ok(connection) => connection,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let _ = std::fs::remove_file(listener.path());
                return Err(error).context("service: accept");
            }
        };
        match sys::fork_process() {
            Ok(Forked::Child) => {
                let code = match sys::worker_signals() {
                    Ok(()) => super::server::serve(connection, base),
                    Err(error) => {
                        log::error!("service worker: signal dispositions: {error}");
                        1
                    }
                };
                std::process::exit(code);
            }
            Ok(Forked::Parent(worker)) => log::info!("connection served by worker {worker}"),
            Err(error) => log::error!("service: fork a worker: {error}"),
        }
        drop(connection);
    }
    std::fs::remove_file(listener.path()).with_context(|| format!("remove {}", listener.path().display()))?;
    Ok(0)
}

/// A daemon's session: its own, with stdin, stdout and stderr on /dev/null.
fn detach_from_terminal() -> std::io::Result<()> {
    nix::unistd::setsid()?;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}
