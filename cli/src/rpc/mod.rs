//! CRIU's RPC, served the way container runtimes reach criu: `crust swrk FD` (the
//! client passes one end of a SOCK_SEQPACKET socketpair as fd FD) and `crust service`
//! (a listening unix socket). Both verbs answer under the name `criu` too.
//!
//! - [`transport`]: one protobuf message per datagram, fds over SCM_RIGHTS, SO_PEERCRED.
//! - [`server`]: a session: VERSION, CHECK, FEATURE_CHECK, DUMP, PRE_DUMP, RESTORE,
//!   WAIT_PID, the NOTIFY callbacks and their acknowledgements, responses and errors.
//! - [`options`]: a request's `criu_opts` (and its `config_file`) onto the command
//!   line's `CriuOptions`, whose refusals and builders answer for RPC too; what only
//!   RPC has, and the `criu_opts` names refusals are told by.
//! - [`service`]: the listener, `--daemon`, `--pidfile`, `--status-fd`, a worker per
//!   connection.
//! - `log`: the per-request log file; `sys`: the few raw calls (the only `unsafe`).
#![deny(unsafe_code)]

mod log;
pub mod options;
pub mod server;
pub mod service;
mod sys;
pub mod transport;

use anyhow::Context;

use crate::criu::options::CriuOptions;

/// CRIU's RPC verbs.
#[derive(clap::Subcommand)]
pub enum RpcCmd {
    /// Serve CRIU RPC requests on inherited socket FD (one end of a SOCK_SEQPACKET
    /// socketpair), as runc, podman and the go-criu and rust-criu clients start criu
    Swrk {
        /// The inherited socket's fd number
        fd: i32,
    },
    /// Serve CRIU RPC requests on a listening unix socket, one worker per connection
    Service(service::ServiceArgs),
}

/// Runs an RPC verb; returns the process exit code (0 when every request succeeded).
/// `base` is the server's own options (its configuration files and command line),
/// where every request's options start, as in CRIU.
pub fn run(cmd: RpcCmd, base: CriuOptions) -> anyhow::Result<i32> {
    log::install();
    match cmd {
        RpcCmd::Swrk { fd } => {
            let socket = sys::adopt_fd(fd, true).with_context(|| format!("swrk: fd {fd}"))?;
            Ok(server::serve(transport::Connection::new(socket), &base))
        }
        RpcCmd::Service(args) => service::run(args, &base),
    }
}
