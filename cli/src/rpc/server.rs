//! One client's session: requests in; NOTIFY messages (each waiting for the client's
//! acknowledgement) and one response per request out. The dump and restore requests are
//! thin over the engine, like `crust dump` and `crust restore`: their options become
//! the command line's `CriuOptions` (`options.rs`), which refuses what crust cannot do
//! and builds the engine's options, and the session is the RPC's `HookSink`.

use std::error::Error as StdError;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crust_images::rpc::{
    CriuDumpResp, CriuFeatures, CriuNotify, CriuOpts, CriuReq, CriuReqType, CriuResp, CriuRestoreResp, CriuVersion,
};
use prost::Message;

use super::options::{self, EngineRequest, RequestDirs};
use super::transport::Connection;
use crate::criu::options::{CriuOptions, Verb};
use crate::hooks::{self, Hook, HookError, HookPoint, HookSink};

/// The CRIU release whose RPC and images crust follows (and is tested against): what
/// VERSION answers, so that clients' version checks (runc wants 3.0 or newer) pass.
pub const CRIU_COMPAT_VERSION: (i32, i32, i32) = (4, 2, 1);

/// Serves one client until it closes, or until a request without `keep_open` is
/// answered; returns the exit code (0 when every request succeeded). Each request's
/// options start from `base`, the server's own (configuration files, command line).
pub fn serve(connection: Connection, base: &CriuOptions) -> i32 {
    let peer = connection.peer_pid().unwrap_or_else(|error| {
        let parent = nix::unistd::getppid().as_raw();
        log::warn!("SO_PEERCRED: {error}; taking the parent {parent} as the client");
        parent
    });
    let mut session = Session { connection: Arc::new(connection), peer, base: base.clone(), notify_scripts: false };
    match session.run() {
        Ok(code) => code,
        Err(error) => {
            log::error!("rpc connection to pid {peer}: {error}");
            1
        }
    }
}

/// Why a request failed: the message and errno the response carries.
#[derive(Debug)]
struct Failure {
    message: String,
    errno: Option<i32>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), errno: None }
    }

    fn with_errno(message: impl Into<String>, errno: i32) -> Self {
        Failure { message: message.into(), errno: Some(errno) }
    }

    /// An engine error: its text with each cause once, and the first OS error in the
    /// chain as the errno.
    fn from_error(error: &(dyn StdError + 'static)) -> Self {
        let mut message = error.to_string();
        let mut errno = None;
        let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(current) = cause {
            let text = current.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            if errno.is_none() {
                errno = current.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error);
            }
            cause = current.source();
        }
        Failure { message, errno }
    }
}

/// A request's directories and the fds held open for it.
struct Prepared {
    engine: EngineRequest,
    /// Kept open for the request: the images and work directories (their paths may go
    /// through /proc/self/fd) and the status fd.
    _held: Vec<File>,
}

struct Session {
    /// Shared with the engine's stage callback ([`Notifier`]) while a request runs.
    connection: Arc<Connection>,
    peer: i32,
    /// The server's options, where each request's start.
    base: CriuOptions,
    /// The current request asked for NOTIFY messages.
    notify_scripts: bool,
}

impl Session {
    fn run(&mut self) -> io::Result<i32> {
        let mut pending: Option<CriuReq> = None;
        loop {
            let request = match pending.take() {
                Some(request) => request,
                None => match self.receive()? {
                    Some(request) => request,
                    None => return Ok(0),
                },
            };
            let kind = CriuReqType::try_from(request.r#type).ok();
            log::info!("rpc request {} from pid {}", kind.map_or("unknown", |k| k.as_str_name()), self.peer);
            let ok = match kind {
                Some(CriuReqType::Version) => self.version()?,
                Some(CriuReqType::Check) => self.check()?,
                Some(CriuReqType::FeatureCheck) => self.feature_check(request.features.unwrap_or_default())?,
                Some(CriuReqType::Dump) => self.dump(Verb::Dump, request.opts.clone())?,
                Some(CriuReqType::Restore) => self.restore(request.opts.clone())?,
                Some(CriuReqType::WaitPid) => self.wait_pid(request.pid)?,
                Some(CriuReqType::PreDump) => {
                    if !self.dump(Verb::PreDump, request.opts.clone())? {
                        return Ok(1);
                    }
                    // As CRIU: after a pre-dump, more pre-dumps or the final dump may
                    // follow on the same socket; a client that closes is done.
                    match self.receive()? {
                        None => return Ok(0),
                        Some(next) if matches!(CriuReqType::try_from(next.r#type), Ok(CriuReqType::PreDump | CriuReqType::Dump)) => {
                            pending = Some(next);
                            continue;
                        }
                        Some(next) => {
                            let failure = Failure::with_errno(format!("request type {} after a PRE_DUMP: expected PRE_DUMP or DUMP", next.r#type), libc::EINVAL);
                            self.send(&failed(CriuReqType::Empty, &failure))?;
                            return Ok(1);
                        }
                    }
                }
                Some(other @ (CriuReqType::PageServer | CriuReqType::PageServerChld)) => {
                    self.refuse(other, "the page server is not supported yet")?
                }
                Some(other @ (CriuReqType::CpuinfoDump | CriuReqType::CpuinfoCheck)) => {
                    self.refuse(other, "cpuinfo images are not supported yet (restore checks the XSAVE layout itself)")?
                }
                Some(CriuReqType::SinglePreDump) => {
                    self.refuse(CriuReqType::SinglePreDump, "single pre-dumps are not supported yet: use PRE_DUMP")?
                }
                Some(CriuReqType::Notify) => {
                    self.refuse(CriuReqType::Empty, "a NOTIFY acknowledgement outside a notification")?
                }
                Some(CriuReqType::Empty) | None => {
                    self.refuse(CriuReqType::Empty, &format!("invalid request type {}", request.r#type))?
                }
            };
            if !ok {
                return Ok(1);
            }
            if !request.keep_open() {
                return Ok(0);
            }
        }
    }

    /// The next request; `None` once the client closed. A message that does not decode
    /// is answered with an error and ends the session.
    fn receive(&self) -> io::Result<Option<CriuReq>> {
        let Some(bytes) = self.connection.receive()? else { return Ok(None) };
        match CriuReq::decode(bytes.as_slice()) {
            Ok(request) => Ok(Some(request)),
            Err(error) => {
                let failure = Failure::with_errno(format!("request of {} bytes does not decode as criu_req: {error}", bytes.len()), libc::EINVAL);
                log::error!("{}", failure.message);
                self.send(&failed(CriuReqType::Empty, &failure))?;
                Err(io::Error::new(io::ErrorKind::InvalidData, failure.message))
            }
        }
    }

    fn send(&self, response: &CriuResp) -> io::Result<()> {
        self.connection.send(&response.encode_to_vec())
    }

    fn refuse(&self, kind: CriuReqType, why: &str) -> io::Result<bool> {
        log::error!("{why}");
        self.send(&failed(kind, &Failure::with_errno(why, libc::EOPNOTSUPP)))?;
        Ok(false)
    }

    fn version(&self) -> io::Result<bool> {
        let (major, minor, sublevel) = CRIU_COMPAT_VERSION;
        let version = CriuVersion {
            major_number: major,
            minor_number: minor,
            // No gitid: clients take one as "a development build of the next minor".
            gitid: None,
            sublevel: Some(sublevel),
            extra: None,
            name: Some(format!("crust {}", env!("CARGO_PKG_VERSION"))),
        };
        self.send(&CriuResp { version: Some(version), ..succeeded(CriuReqType::Version) })?;
        Ok(true)
    }

    fn check(&self) -> io::Result<bool> {
        let missing: Vec<String> = crust_engine::check::check_features()
            .into_iter()
            .filter(|feature| !feature.present && !feature.optional)
            .map(|feature| format!("{} ({})", feature.name, feature.detail))
            .collect();
        if missing.is_empty() {
            self.send(&succeeded(CriuReqType::Check))?;
            return Ok(true);
        }
        let failure = Failure::new(format!("missing: {}", missing.join(", ")));
        log::error!("check: {}", failure.message);
        self.send(&failed(CriuReqType::Check, &failure))?;
        Ok(false)
    }

    /// Answers every feature (false for those not asked about, as CRIU does).
    fn feature_check(&self, asked: CriuFeatures) -> io::Result<bool> {
        let features = CriuFeatures {
            mem_track: Some(asked.mem_track() && memory_tracking_works()),
            // No lazy restore (userfaultfd page server) yet.
            lazy_pages: Some(false),
            // No pidfd_store_sk yet.
            pidfd_store: Some(false),
        };
        self.send(&CriuResp { features: Some(features), ..succeeded(CriuReqType::FeatureCheck) })?;
        Ok(true)
    }

    fn wait_pid(&self, pid: Option<u32>) -> io::Result<bool> {
        let pid = pid.unwrap_or(0) as i32;
        match super::sys::wait_raw_status(pid) {
            Ok(status) => {
                self.send(&CriuResp { status: Some(status), ..succeeded(CriuReqType::WaitPid) })?;
                Ok(true)
            }
            Err(error) => {
                let failure = Failure::with_errno(format!("wait for pid {pid}: {error}"), error.raw_os_error().unwrap_or(libc::ECHILD));
                self.send(&failed(CriuReqType::WaitPid, &failure))?;
                Ok(false)
            }
        }
    }

    /// DUMP and PRE_DUMP.
    fn dump(&mut self, verb: Verb, opts: Option<CriuOpts>) -> io::Result<bool> {
        let kind = if verb == Verb::PreDump { CriuReqType::PreDump } else { CriuReqType::Dump };
        let outcome = self.try_dump(verb, opts);
        let mut response = match &outcome {
            Ok(()) => succeeded(kind),
            Err(failure) => {
                log::error!("{}", failure.message);
                failed(kind, failure)
            }
        };
        if verb == Verb::Dump {
            // `restored` is true only in the response a self-dumped client gets after
            // its restore, which crust does not do.
            response.dump = Some(CriuDumpResp { restored: Some(false) });
        }
        self.send(&response)?;
        Ok(outcome.is_ok())
    }

    fn try_dump(&mut self, verb: Verb, opts: Option<CriuOpts>) -> Result<(), Failure> {
        let Prepared { engine, _held } = self.prepare(verb, opts)?;
        let EngineRequest::Dump(mut options) = engine else {
            unreachable!("a dump action maps to a dump");
        };
        if !Path::new(&format!("/proc/{}", options.pid)).exists() {
            return Err(Failure::with_errno(format!("dump pid {}: no such process", options.pid), libc::ESRCH));
        }
        if verb == Verb::Dump {
            self.hook(Hook::at(HookPoint::PreDump, Some(options.pid)))?;
            // network-lock, post-dump and network-unlock come from inside the engine.
            options.stages = hooks::engine_stages(self.notifier());
        }
        log::info!("dumping pid {} into {}", options.pid, options.dir.display());
        let report = crust_engine::dump::dump(&options).map_err(|error| Failure::from_error(&error))?;
        log::info!(
            "dumped pid {}: {} processes, {} threads, {} vmas, {} pages, frozen {:.1} ms, total {:.1} ms",
            options.pid,
            report.processes,
            report.threads,
            report.vmas,
            report.pages,
            report.frozen.as_secs_f64() * 1e3,
            report.total.as_secs_f64() * 1e3
        );
        Ok(())
    }

    fn restore(&mut self, opts: Option<CriuOpts>) -> io::Result<bool> {
        match self.try_restore(opts) {
            Ok(pid) => {
                self.send(&CriuResp { restore: Some(CriuRestoreResp { pid }), ..succeeded(CriuReqType::Restore) })?;
                Ok(true)
            }
            Err(failure) => {
                log::error!("{}", failure.message);
                self.send(&failed(CriuReqType::Restore, &failure))?;
                Ok(false)
            }
        }
    }

    /// Restores and returns the root's pid. Every point from pre-restore to post-resume
    /// comes from inside the engine; a failed hook before the resume kills the tree
    /// there, as CRIU does.
    fn try_restore(&mut self, opts: Option<CriuOpts>) -> Result<i32, Failure> {
        let Prepared { engine, _held } = self.prepare(Verb::Restore, opts)?;
        let EngineRequest::Restore(mut options) = engine else {
            unreachable!("a restore action maps to a restore");
        };
        options.stages = hooks::engine_stages(self.notifier());
        log::info!("restoring from {}", options.dir.display());
        let report = crust_engine::restore::restore(&options).map_err(|error| {
            let mut failure = Failure::from_error(&error);
            if let crust_engine::restore::RestoreError::PidBusy { .. } = error {
                failure.errno = Some(libc::EEXIST);
            }
            failure
        })?;
        log::info!("restored pid {}: {} processes in {:.1} ms", report.pid, report.processes, report.total.as_secs_f64() * 1e3);
        Ok(report.pid)
    }

    /// Everything a dump or restore needs before the engine runs: the client's
    /// directories, the options (the server's, the request's, its config file), the
    /// log, the status fd, and the engine options.
    fn prepare(&mut self, verb: Verb, opts: Option<CriuOpts>) -> Result<Prepared, Failure> {
        let opts = opts.ok_or_else(|| Failure::with_errno("request without criu_opts", libc::EINVAL))?;
        let mut held = Vec::new();
        let images = match (&opts.images_dir, opts.images_dir_fd) {
            (Some(path), _) => PathBuf::from(path),
            (None, fd) if fd >= 0 => self.open_client_dir("images_dir_fd", fd, &mut held)?,
            (None, _) => return Err(Failure::with_errno("neither images_dir_fd nor images_dir given", libc::EINVAL)),
        };
        let work = match opts.work_dir_fd {
            Some(fd) if fd >= 0 => self.open_client_dir("work_dir_fd", fd, &mut held)?,
            _ => images.clone(),
        };
        let config = match opts.config_file.as_deref() {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some((Path::new(path), text)),
                // CRIU skips a config file that is not there (runc always names one).
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => return Err(Failure::from_error(&error).prefixed(&format!("config_file {path}"))),
            },
            None => None,
        };
        let request_options = options::request_options(
            &self.base,
            &opts,
            &RequestDirs { images, work },
            config.as_ref().map(|(path, text)| (*path, text.as_str())),
        )
        .map_err(option_failure)?;
        self.open_log(&request_options, opts.log_to_stderr())?;
        if let Some(path) = &opts.config_file {
            log::info!("config file {path} {}", if config.is_some() { "applied" } else { "not found: skipped" });
        }
        // Only a page server or lazy restore writes to it (refused below); like CRIU,
        // crust holds it until the request ends.
        if let Some(fd) = opts.status_fd.filter(|&fd| fd >= 0) {
            let path = format!("/proc/{}/fd/{fd}", self.peer);
            let status = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|error| Failure::from_error(&error).prefixed(&format!("status_fd {fd}: open {path}")))?;
            held.push(status);
        }
        self.notify_scripts = opts.notify_scripts();
        let engine = options::engine_request(verb, &request_options, &opts).map_err(option_failure)?;
        Ok(Prepared { engine, _held: held })
    }

    /// Opens the client's directory fd through /proc/CLIENT/fd/N. Its path is the
    /// directory's own when that path leads to the same directory here; otherwise the
    /// directory is reached through crust's own fd, held for the request.
    fn open_client_dir(&self, option: &str, fd: i32, held: &mut Vec<File>) -> Result<PathBuf, Failure> {
        let link = format!("/proc/{}/fd/{fd}", self.peer);
        let directory = File::open(&link).map_err(|error| Failure::from_error(&error).prefixed(&format!("{option} {fd}: open {link}")))?;
        let metadata = directory.metadata().map_err(|error| Failure::from_error(&error).prefixed(&format!("{option} {fd}: stat")))?;
        if !metadata.is_dir() {
            return Err(Failure::with_errno(format!("{option} {fd}: {link} is not a directory"), libc::ENOTDIR));
        }
        let same_directory = |path: &Path| {
            std::fs::metadata(path).is_ok_and(|there| there.dev() == metadata.dev() && there.ino() == metadata.ino())
        };
        let path = match std::fs::read_link(&link) {
            Ok(path) if path.is_absolute() && same_directory(&path) => path,
            _ => PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), directory.as_raw_fd())),
        };
        held.push(directory);
        Ok(path)
    }

    /// Points the log at the request's log file in the work directory (CRIU's
    /// default name for RPC: `criu.log`).
    fn open_log(&self, options: &CriuOptions, to_stderr: bool) -> Result<(), Failure> {
        let name = options.log_file.clone().unwrap_or_else(|| PathBuf::from("criu.log"));
        let path = options.work_dir.clone().unwrap_or_else(|| options.images_dir()).join(name);
        let file = File::create(&path).map_err(|error| Failure::from_error(&error).prefixed(&format!("log_file: create {}", path.display())))?;
        super::log::configure(Some(file), options.verbosity, to_stderr);
        Ok(())
    }

    /// The NOTIFY side of this request, for the engine's stage callback.
    fn notifier(&self) -> Arc<Notifier> {
        Arc::new(Notifier { connection: self.connection.clone(), enabled: self.notify_scripts })
    }
}

/// The RPC's listener: NOTIFY messages, when the request set `notify_scripts`.
impl HookSink for Session {
    fn reached(&self, hook: &Hook<'_>) -> Result<(), HookError> {
        self.notifier().reached(hook)
    }
}

/// NOTIFY messages on a session's connection: what the engine's stage callback reaches
/// during a request.
struct Notifier {
    connection: Arc<Connection>,
    /// The request set `notify_scripts`.
    enabled: bool,
}

impl HookSink for Notifier {
    /// Sends NOTIFY for `hook` and waits for the client's acknowledgement. The pid
    /// goes with `setup-namespaces` and `post-restore` only, as CRIU sends it; an fd
    /// (orphan-pts-master's pty master) goes over SCM_RIGHTS.
    fn reached(&self, hook: &Hook<'_>) -> Result<(), HookError> {
        if !self.enabled {
            return Ok(());
        }
        let point = hook.point;
        log::info!("notify {point}");
        let pid = hook.root.filter(|_| matches!(point, HookPoint::SetupNamespaces | HookPoint::PostRestore));
        let message = CriuResp {
            notify: Some(CriuNotify { script: Some(point.name().to_string()), pid }),
            ..succeeded(CriuReqType::Notify)
        };
        let fds: Vec<BorrowedFd<'_>> = hook.fd.into_iter().collect();
        let io_failure = |what: &str, error: &io::Error| match error.raw_os_error() {
            Some(errno) => HookError::with_errno(point, format!("notify {point}: {what}: {error}"), errno),
            None => HookError::new(point, format!("notify {point}: {what}: {error}")),
        };
        self.connection.send_with_fds(&message.encode_to_vec(), &fds).map_err(|error| io_failure("send", &error))?;
        let ack = match self.connection.receive() {
            Ok(Some(bytes)) => CriuReq::decode(bytes.as_slice()).map_err(|error| {
                HookError::with_errno(point, format!("notify {point}: acknowledgement does not decode: {error}"), libc::EINVAL)
            })?,
            Ok(None) => return Err(HookError::with_errno(point, format!("notify {point}: the client closed the connection"), libc::EPIPE)),
            Err(error) => return Err(io_failure("receive", &error)),
        };
        if ack.r#type != CriuReqType::Notify as i32 {
            return Err(HookError::with_errno(
                point,
                format!("notify {point}: the client answered with request type {}, not NOTIFY", ack.r#type),
                libc::EINVAL,
            ));
        }
        if !ack.notify_success() {
            return Err(HookError::new(point, format!("notify {point}: the client's hook failed")));
        }
        Ok(())
    }
}

impl From<HookError> for Failure {
    fn from(error: HookError) -> Self {
        Failure { message: error.message, errno: error.errno }
    }
}

/// A request's options that cannot be carried out, as a response says it.
fn option_failure(error: options::OptionError) -> Failure {
    Failure::with_errno(error.to_string(), error.errno())
}

impl Failure {
    fn prefixed(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// A successful response of `kind`.
fn succeeded(kind: CriuReqType) -> CriuResp {
    CriuResp { r#type: kind as i32, success: true, ..CriuResp::default() }
}

/// A failed response of `kind`, with the message and errno CRIU's clients print.
fn failed(kind: CriuReqType, failure: &Failure) -> CriuResp {
    CriuResp {
        r#type: kind as i32,
        success: false,
        cr_errno: failure.errno,
        cr_errmsg: Some(failure.message.clone()),
        ..CriuResp::default()
    }
}

/// Whether pre-dumps and dumps on top of them work here: crust compares pages with the
/// parent's instead of tracking them (no soft-dirty needed), reading /proc/PID/pagemap.
fn memory_tracking_works() -> bool {
    Path::new("/proc/self/pagemap").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_are_on_the_wire_even_when_false() {
        // protobuf-c and Go refuse a criu_resp without `success` (required).
        let bytes = failed(CriuReqType::Dump, &Failure::new("x")).encode_to_vec();
        assert_eq!(&bytes[..4], &[0x08, 0x01, 0x10, 0x00], "type DUMP then success false");
        let bytes = CriuResp { restore: Some(CriuRestoreResp { pid: 0 }), ..succeeded(CriuReqType::Restore) }.encode_to_vec();
        assert!(bytes.windows(4).any(|w| w == [0x22, 0x02, 0x08, 0x00]), "restore.pid 0 is written: {bytes:02x?}");
    }

    #[test]
    fn feature_answers_match_criu_byte_for_byte_in_shape() {
        // The reference CRIU answers FEATURE_CHECK{mem_track} on a kernel without
        // soft-dirty with 08 09 10 01 42 06 08 00 10 00 18 00: every feature present.
        let response = CriuResp {
            features: Some(CriuFeatures { mem_track: Some(false), lazy_pages: Some(false), pidfd_store: Some(false) }),
            ..succeeded(CriuReqType::FeatureCheck)
        };
        assert_eq!(response.encode_to_vec(), [0x08, 0x09, 0x10, 0x01, 0x42, 0x06, 0x08, 0x00, 0x10, 0x00, 0x18, 0x00]);
    }

    #[test]
    fn engine_errors_carry_their_os_errno() {
        let error = io::Error::from_raw_os_error(libc::ENOENT);
        let failure = Failure::from_error(&error).prefixed("open x");
        assert_eq!(failure.errno, Some(libc::ENOENT));
        assert!(failure.message.starts_with("open x: "), "{}", failure.message);
    }

    /// orphan-pts-master's way: a NOTIFY with an fd attached (SCM_RIGHTS), which the
    /// client gets as a new fd of its own, then acknowledges.
    #[test]
    #[allow(unsafe_code)] // taking ownership of the fd that came over the socket
    fn a_notification_can_carry_an_fd() {
        use std::io::{Read, Write};
        use std::os::fd::AsFd;

        let (client, server) = super::super::transport::pair().unwrap();
        let session =
            Session { connection: Arc::new(server), peer: std::process::id() as i32, base: CriuOptions::default(), notify_scripts: true };
        let (mut reader, writer) = std::io::pipe().unwrap();
        let acknowledging = std::thread::spawn(move || {
            let fd = nix::sys::socket::recvmsg::<()>(
                std::os::fd::AsRawFd::as_raw_fd(&client.as_fd()),
                &mut [std::io::IoSliceMut::new(&mut [0u8; 256])],
                Some(&mut nix::cmsg_space!([std::os::fd::RawFd; 1])),
                nix::sys::socket::MsgFlags::empty(),
            )
            .unwrap()
            .cmsgs()
            .unwrap()
            .find_map(|cmsg| match cmsg {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("an fd came with the NOTIFY");
            // SAFETY: the fd arrived with the message; nothing else owns it.
            let mut passed = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            passed.write_all(b"through the socket").unwrap();
            drop(passed);
            let ack = CriuReq { r#type: CriuReqType::Notify as i32, notify_success: Some(true), ..CriuReq::default() };
            client.send(&ack.encode_to_vec()).unwrap();
        });
        session.hook(Hook { point: HookPoint::OrphanPtsMaster, root: None, fd: Some(writer.as_fd()) }).unwrap();
        drop(writer);
        acknowledging.join().unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the socket");
    }

    #[test]
    fn bytes_that_are_no_request_get_an_error_and_end_the_session() {
        let (client, server) = super::super::transport::pair().unwrap();
        client.send(&[0xff, 0xff, 0xff]).unwrap();
        let worker = std::thread::spawn(move || serve(server, &CriuOptions::default()));
        let response = CriuResp::decode(client.receive().unwrap().unwrap().as_slice()).unwrap();
        assert_eq!(worker.join().unwrap(), 1);
        assert!(!response.success);
        assert_eq!((response.r#type, response.cr_errno), (CriuReqType::Empty as i32, Some(libc::EINVAL)));
        assert!(response.cr_errmsg.unwrap().contains("does not decode as criu_req"));
    }

    #[test]
    fn a_session_answers_version_and_ends_without_keep_open() {
        let (client, server) = super::super::transport::pair().unwrap();
        let request = CriuReq { r#type: CriuReqType::Version as i32, ..CriuReq::default() };
        client.send(&request.encode_to_vec()).unwrap();
        let worker = std::thread::spawn(move || serve(server, &CriuOptions::default()));
        let response = CriuResp::decode(client.receive().unwrap().unwrap().as_slice()).unwrap();
        assert_eq!(worker.join().unwrap(), 0);
        assert!(response.success);
        let version = response.version.unwrap();
        assert_eq!((version.major_number, version.minor_number, version.sublevel), (4, 2, Some(1)));
        assert_eq!(version.gitid, None);
    }

    #[test]
    fn keep_open_serves_the_next_request_and_a_bad_one_ends_the_session() {
        let (client, server) = super::super::transport::pair().unwrap();
        let worker = std::thread::spawn(move || serve(server, &CriuOptions::default()));
        let mut features = CriuReq { r#type: CriuReqType::FeatureCheck as i32, keep_open: Some(true), ..CriuReq::default() };
        features.features = Some(CriuFeatures { mem_track: Some(true), lazy_pages: Some(true), pidfd_store: Some(true) });
        client.send(&features.encode_to_vec()).unwrap();
        let response = CriuResp::decode(client.receive().unwrap().unwrap().as_slice()).unwrap();
        let answered = response.features.unwrap();
        assert_eq!((answered.lazy_pages, answered.pidfd_store), (Some(false), Some(false)));
        client.send(&CriuReq { r#type: CriuReqType::PageServer as i32, ..CriuReq::default() }.encode_to_vec()).unwrap();
        let response = CriuResp::decode(client.receive().unwrap().unwrap().as_slice()).unwrap();
        assert!(!response.success);
        assert_eq!(response.r#type, CriuReqType::PageServer as i32);
        assert!(response.cr_errmsg.unwrap().contains("page server"));
        assert_eq!(worker.join().unwrap(), 1);
    }
}
