//! CRIU's RPC, driven the way runtimes drive criu: a client spawns `crust swrk 3` with
//! one end of a SOCK_SEQPACKET socketpair (or connects to `crust service`), sends
//! criu_req messages, acknowledges NOTIFY callbacks and reads the responses.
//!
//! Two clients: one written here from rpc.proto (every request type, every field of
//! the answers, refused options, failed hooks), first checked against the reference
//! CRIU (`ci/criu swrk`) so it is known to speak the real protocol; and the rust-criu
//! crate from crates.io, which runs crust under the name `criu`. A dumped process is
//! restored with its pid and checks its own memory (tests/data/pattern.c).

mod common;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;

use common::{compile, signal, skip_reason, subreaper, tempdir, wait_exit, KillOnDrop};
use crust_images::rpc::{CriuFeatures, CriuOpts, CriuReq, CriuReqType, CriuResp};
use nix::sys::socket::{self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr};
use prost::Message;

/// The tests of this file spawn clients and targets one test at a time: rust-criu
/// makes its socketpair without close-on-exec, so a target spawned meanwhile by
/// another test would hold the swrk end open.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serialized() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A CRIU RPC client written from rpc.proto.
struct Client {
    socket: OwnedFd,
    server: Option<Child>,
}

/// A NOTIFY seen by the client: the script name and the pid it carried.
#[derive(Clone, Debug, PartialEq)]
struct Notification {
    script: String,
    pid: Option<i32>,
}

impl Client {
    /// Starts `program swrk 3` with the server's end of the socketpair as its fd 3.
    fn swrk(program: &Path) -> Client {
        let (client, server) =
            socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).expect("socketpair");
        let server_fd = server.as_raw_fd();
        let mut command = Command::new(program);
        command.args(["swrk", "3"]).stdin(Stdio::null());
        // SAFETY: the closure only calls dup2/fcntl, which are async-signal-safe.
        unsafe {
            command.pre_exec(move || inherit_as(server_fd, 3));
        }
        let child = command.spawn().unwrap_or_else(|error| panic!("spawn {} swrk: {error}", program.display()));
        drop(server);
        Client::with_timeout(client, Some(child))
    }

    /// Connects to a `crust service` socket.
    fn connect(path: &Path) -> Client {
        let socket = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
        socket::connect(socket.as_raw_fd(), &UnixAddr::new(path).expect("socket path")).expect("connect to the service");
        Client::with_timeout(socket, None)
    }

    /// A hung server fails the test instead of hanging it.
    fn with_timeout(socket: OwnedFd, server: Option<Child>) -> Client {
        let timeout = nix::sys::time::TimeVal::new(120, 0);
        socket::setsockopt(&socket, socket::sockopt::ReceiveTimeout, &timeout).expect("SO_RCVTIMEO");
        Client { socket, server }
    }

    fn send(&self, request: &CriuReq) {
        socket::send(self.socket.as_raw_fd(), &request.encode_to_vec(), MsgFlags::empty()).expect("send a request");
    }

    /// The next message and the fds that came with it; `None` at EOF.
    fn receive(&self) -> Option<(CriuResp, Vec<OwnedFd>)> {
        let mut buffer = vec![0u8; 1 << 16];
        let mut control = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let message = socket::recvmsg::<()>(self.socket.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC)
            .expect("receive a response (timed out?)");
        let mut fds = Vec::new();
        for cmsg in message.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: SCM_RIGHTS fds are new in this process and owned by nobody else.
                fds.extend(raw.into_iter().map(|fd| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }));
            }
        }
        let length = message.bytes;
        if length == 0 {
            return None;
        }
        Some((CriuResp::decode(&buffer[..length]).expect("criu_resp decodes"), fds))
    }

    /// Sends `request`, answers every NOTIFY with `ack(script)` and returns the final
    /// response with the notifications seen, in order.
    fn call(&self, request: &CriuReq, ack: impl Fn(&str) -> bool) -> (CriuResp, Vec<Notification>) {
        self.send(request);
        let mut seen = Vec::new();
        loop {
            let (response, _fds) = self.receive().expect("a response before EOF");
            if response.r#type != CriuReqType::Notify as i32 {
                return (response, seen);
            }
            assert!(response.success, "a NOTIFY says success");
            let notify = response.notify.expect("a NOTIFY carries criu_notify");
            let script = notify.script.unwrap_or_default();
            let success = ack(&script);
            seen.push(Notification { script, pid: notify.pid });
            self.send(&CriuReq { r#type: CriuReqType::Notify as i32, notify_success: Some(success), ..CriuReq::default() });
            if !success {
                // As libcriu: a failed hook ends the exchange on the client's side, but
                // the server still answers the request.
                let (response, _fds) = self.receive().expect("a response after a failed hook");
                return (response, seen);
            }
        }
    }

    /// Closes the client's end and waits for the swrk process.
    fn finish(self) -> Option<ExitStatus> {
        drop(self.socket);
        self.server.map(|mut child| child.wait().expect("wait for swrk"))
    }
}

/// In a child between fork and exec: makes `fd` the inherited fd `number`. dup2 onto
/// itself would keep close-on-exec, so an fd already at that number has it cleared.
#[allow(unsafe_code)]
fn inherit_as(fd: RawFd, number: RawFd) -> std::io::Result<()> {
    // SAFETY: plain fd calls on fds this process holds.
    let rc = unsafe { if fd == number { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, number) } };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn request(kind: CriuReqType) -> CriuReq {
    CriuReq { r#type: kind as i32, ..CriuReq::default() }
}

fn crust_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crust"))
}

/// The reference CRIU's wrapper, if its root is installed (`ci/criu-reference.sh`).
fn reference_criu() -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ sits in the repository");
    let root = std::env::var_os("CRUST_CRIU_ROOT").map(PathBuf::from).unwrap_or_else(|| repo.join(".cache/criu-root"));
    if !root.join("usr/sbin/criu").exists() {
        return Err(format!("reference CRIU not installed at {} (run ci/criu-reference.sh)", root.display()));
    }
    Ok(repo.join("ci/criu"))
}

/// VERSION and FEATURE_CHECK through this file's client: the reference CRIU first (so
/// the client is known to speak CRIU's protocol), then crust, whose answers must have
/// the same shape and what crust honestly has.
#[test]
fn version_and_feature_check_answer_like_criu() {
    let _one = serialized();
    let mut servers = vec![("crust", crust_binary())];
    match reference_criu() {
        Ok(criu) => servers.insert(0, ("reference criu", criu)),
        Err(reason) if std::env::var("CI").is_ok_and(|value| value == "true") => panic!("{reason}"),
        Err(reason) => eprintln!("skipped the reference half: {reason}"),
    }
    let mut shapes = Vec::new();
    for (name, program) in &servers {
        let client = Client::swrk(program);
        let mut version_request = request(CriuReqType::Version);
        version_request.keep_open = Some(true);
        let (version, notes) = client.call(&version_request, |_| true);
        assert!(notes.is_empty());
        assert!(version.success && version.r#type == CriuReqType::Version as i32, "{name}: {version:?}");
        let numbers = version.version.clone().expect("VERSION carries criu_version");
        // What go-criu and runc compute: major*10000 + minor*100 + sublevel, >= 30000.
        let level = numbers.major_number * 10000 + numbers.minor_number * 100 + numbers.sublevel.unwrap_or(0);
        assert!(level >= 40200 && numbers.gitid.is_none(), "{name}: version {numbers:?}");
        let mut check = request(CriuReqType::FeatureCheck);
        check.features = Some(CriuFeatures { mem_track: Some(true), lazy_pages: Some(true), pidfd_store: Some(true) });
        let (answer, _) = client.call(&check, |_| true);
        assert!(answer.success && answer.r#type == CriuReqType::FeatureCheck as i32, "{name}: {answer:?}");
        let features = answer.features.expect("FEATURE_CHECK carries criu_features");
        assert!(features.mem_track.is_some() && features.lazy_pages.is_some() && features.pidfd_store.is_some(), "{name}: every feature answered: {features:?}");
        eprintln!("{name}: version {numbers:?}, features {features:?}");
        if *name == "crust" {
            // Pre-dumps work without soft-dirty (pages are compared); no lazy pages, no pidfd store.
            assert_eq!((features.mem_track, features.lazy_pages, features.pidfd_store), (Some(true), Some(false), Some(false)));
            assert!(numbers.name.as_deref().is_some_and(|n| n.starts_with("crust ")), "{numbers:?}");
        }
        let status = client.finish().expect("a swrk child");
        assert!(status.success(), "{name} swrk exits 0 once the client closes: {status}");
        let fields = |response: &CriuResp| {
            (response.dump.is_some(), response.restore.is_some(), response.notify.is_some(), response.cr_errno.is_some(), response.version.is_some(), response.features.is_some())
        };
        shapes.push((fields(&version), fields(&answer)));
    }
    if shapes.len() == 2 {
        assert_eq!(shapes[0], shapes[1], "crust's responses have the reference's fields");
    }
}

/// CHECK: success where crust has what it needs (root), a failure naming what is
/// missing otherwise; never an unknown-request error.
#[test]
fn check_answers() {
    let _one = serialized();
    let client = Client::swrk(&crust_binary());
    let (response, _) = client.call(&request(CriuReqType::Check), |_| true);
    assert_eq!(response.r#type, CriuReqType::Check as i32);
    if skip_reason().is_none() {
        assert!(response.success, "{:?}", response.cr_errmsg);
    } else {
        assert!(response.success || response.cr_errmsg.is_some_and(|m| m.starts_with("missing: ")));
    }
    client.finish();
}

/// Starts the pattern target (4 MiB) and returns its pid once it is ready.
fn start_pattern(dir: &Path, out: &Path) -> i32 {
    let binary = dir.join("pattern");
    if !binary.exists() {
        compile(dir, "pattern", &[]);
    }
    let mut command = Command::new(&binary);
    command.arg(out).arg("4");
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    assert_eq!(text.trim(), child.id().to_string(), "target wrote its pid");
    child.id() as i32
}

fn state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with("State:"))
        .unwrap_or_default()
        .to_string()
}

/// Waits until `pid` is this process's child: a process restored by a service worker
/// is the worker's child until the worker exits (its pidfd turns readable; the kernel
/// hands its children to this subreaper before that).
#[allow(unsafe_code)]
fn wait_until_adopted(pid: i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("restored process exists");
    let parent: i32 = stat.rsplit_once(')').expect("stat has a comm").1.split_whitespace().nth(1).expect("ppid").parse().expect("ppid");
    if parent == std::process::id() as i32 {
        return;
    }
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) } as i32;
    if pidfd < 0 {
        return; // the worker is gone already
    }
    let mut poll = libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; the fd is ours and closed right after.
    unsafe {
        libc::poll(&mut poll, 1, 60_000);
        libc::close(pidfd);
    }
}

/// The target checks every byte of its memory and exits 0 if all are as it wrote them.
fn check_and_reap(pid: i32, out: &Path) {
    signal(pid, libc::SIGUSR1);
    let status = wait_exit(pid);
    assert_eq!(std::fs::read_to_string(out).unwrap_or_default(), "PASS\n");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
}

fn dump_opts(pid: i32, images: &std::fs::File) -> CriuOpts {
    CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(pid),
        log_file: Some("dump.log".into()),
        log_level: Some(4),
        notify_scripts: Some(true),
        ..CriuOpts::default()
    }
}

/// DUMP of a sleeping process into images_dir_fd, then RESTORE of it: the notify
/// callbacks arrive in CRIU's order and wait for their acknowledgements, the restore
/// response carries the pid, and the process is the same one, alive, with its memory.
#[test]
fn dump_and_restore_through_swrk() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let _one = serialized();
    subreaper();
    let dir = tempdir("rpc-roundtrip");
    let out = dir.join("pattern.out");
    let pid = start_pattern(&dir, &out);
    let images_path = dir.join("img");
    std::fs::create_dir(&images_path).unwrap();
    let images = std::fs::File::open(&images_path).unwrap();

    let client = Client::swrk(&crust_binary());
    let mut dump = request(CriuReqType::Dump);
    dump.opts = Some(dump_opts(pid, &images));
    let (response, notes) = client.call(&dump, |_| true);
    let log = std::fs::read_to_string(images_path.join("dump.log")).unwrap_or_default();
    assert!(response.success, "dump: {:?}\n{log}", response.cr_errmsg);
    assert_eq!(response.r#type, CriuReqType::Dump as i32);
    assert_eq!(response.dump.and_then(|d| d.restored), Some(false), "CRIU sets restored=false on a plain dump");
    let scripts: Vec<&str> = notes.iter().map(|n| n.script.as_str()).collect();
    assert_eq!(scripts, ["pre-dump", "post-dump"], "no network scripts for a tree in crust's net namespace");
    assert!(client.finish().unwrap().success());
    assert!(log.contains("dumped pid"), "the log file is in the images dir at level 4:\n{log}");
    let killed = wait_exit(pid);
    assert!(libc::WIFSIGNALED(killed), "the dump killed the target");

    let client = Client::swrk(&crust_binary());
    let mut restore = request(CriuReqType::Restore);
    restore.opts = Some(CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        log_file: Some("restore.log".into()),
        log_level: Some(4),
        notify_scripts: Some(true),
        // runc sets these on every restore: the root becomes the client's child.
        evasive_devices: Some(true),
        orphan_pts_master: Some(true),
        rst_sibling: Some(true),
        ..CriuOpts::default()
    });
    let (response, notes) = client.call(&restore, |_| true);
    let log = std::fs::read_to_string(images_path.join("restore.log")).unwrap_or_default();
    assert!(response.success, "restore: {:?}\n{log}", response.cr_errmsg);
    assert_eq!(response.restore.map(|r| r.pid), Some(pid), "the response names the restored root");
    // The reference CRIU 4.2.1 reaches no namespace point for a tree in its own
    // namespaces; the pid goes with post-restore only.
    let expected = [
        ("pre-restore", None),
        ("post-restore", Some(pid)),
        ("pre-resume", None),
        ("post-resume", None),
    ];
    let expected: Vec<Notification> = expected.iter().map(|(script, pid)| Notification { script: script.to_string(), pid: *pid }).collect();
    assert_eq!(notes, expected);
    // rst_sibling: the restored root is this process's child while swrk still runs.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat.rsplit_once(") ").unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(ppid, std::process::id(), "rst_sibling makes the root the client's child");
    assert!(client.finish().unwrap().success());
    assert!(!state(pid).is_empty() && !state(pid).contains("zombie"), "restored pid {pid} runs: {}", state(pid));
    check_and_reap(pid, &out);
}

/// An option crust cannot honour gets an error response naming it (and errno
/// EOPNOTSUPP), before anything touches the target, which runs on unchanged.
#[test]
fn unsupported_options_are_refused_by_name() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let _one = serialized();
    subreaper();
    let dir = tempdir("rpc-refused");
    let out = dir.join("pattern.out");
    let pid = start_pattern(&dir, &out);
    // Killed and reaped if an assertion below fails first.
    let mut target = KillOnDrop(pid);
    let images = std::fs::File::open(&dir).unwrap();
    let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();

    let client = Client::swrk(&crust_binary());
    let mut dump = request(CriuReqType::Dump);
    dump.opts = Some(CriuOpts { auto_dedup: Some(true), ..dump_opts(pid, &images) });
    let (response, notes) = client.call(&dump, |_| true);
    assert!(!response.success && response.r#type == CriuReqType::Dump as i32);
    assert!(notes.is_empty(), "refused before the pre-dump point: {notes:?}");
    let message = response.cr_errmsg.unwrap_or_default();
    // The command line's refusals, named by their criu_opts fields.
    assert!(message.contains("auto_dedup ("), "{message}");
    assert_eq!(response.cr_errno, Some(libc::EOPNOTSUPP));
    assert!(!client.finish().unwrap().success(), "swrk exits non-zero after a failed request");

    let client = Client::swrk(&crust_binary());
    let mut restore = request(CriuReqType::Restore);
    restore.opts = Some(CriuOpts { images_dir_fd: images.as_raw_fd(), lsm_profile: Some("apparmor:x".into()), ..CriuOpts::default() });
    let (response, _) = client.call(&restore, |_| true);
    assert!(!response.success && response.cr_errmsg.unwrap_or_default().contains("lsm_profile"));
    client.finish();

    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(), maps_before);
    assert!(!state(pid).contains("stopped") && !state(pid).contains("tracing"), "{}", state(pid));
    check_and_reap(pid, &out);
    target.disarm();
}

/// A client whose pre-dump hook fails gets a failed DUMP naming the hook, and the
/// target was never touched.
#[test]
fn a_failed_hook_aborts_the_dump() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let _one = serialized();
    subreaper();
    let dir = tempdir("rpc-hook");
    let out = dir.join("pattern.out");
    let pid = start_pattern(&dir, &out);
    let images = std::fs::File::open(&dir).unwrap();
    let client = Client::swrk(&crust_binary());
    let mut dump = request(CriuReqType::Dump);
    dump.opts = Some(dump_opts(pid, &images));
    let (response, notes) = client.call(&dump, |script| script != "pre-dump");
    assert_eq!(notes.len(), 1);
    assert!(!response.success);
    assert!(response.cr_errmsg.unwrap_or_default().contains("pre-dump"));
    client.finish();
    assert!(!dir.join(format!("core-{pid}.img")).exists() && !dir.join("pstree.img").exists(), "nothing dumped");
    check_and_reap(pid, &out);
}

/// runc's pre-copy on one socket: PRE_DUMP (the tree runs on), then DUMP with
/// parent_img and track_mem; the final images build on the pre-dump and restore.
#[test]
fn pre_dump_then_dump_on_one_socket() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let _one = serialized();
    subreaper();
    let dir = tempdir("rpc-predump");
    let out = dir.join("pattern.out");
    let pid = start_pattern(&dir, &out);
    for name in ["pre", "final"] {
        std::fs::create_dir(dir.join(name)).unwrap();
    }
    let pre = std::fs::File::open(dir.join("pre")).unwrap();
    let last = std::fs::File::open(dir.join("final")).unwrap();
    let client = Client::swrk(&crust_binary());
    let mut pre_dump = request(CriuReqType::PreDump);
    pre_dump.opts = Some(CriuOpts { track_mem: Some(true), ..dump_opts(pid, &pre) });
    let (response, notes) = client.call(&pre_dump, |_| true);
    assert!(response.success && response.r#type == CriuReqType::PreDump as i32, "{:?}", response.cr_errmsg);
    assert!(notes.is_empty(), "CRIU runs no scripts around a pre-dump: {notes:?}");
    assert!(!state(pid).contains("stopped") && !state(pid).contains("tracing"), "{}", state(pid));
    let mut dump = request(CriuReqType::Dump);
    dump.opts = Some(CriuOpts { parent_img: Some("../pre".into()), track_mem: Some(true), ..dump_opts(pid, &last) });
    let (response, _) = client.call(&dump, |_| true);
    assert!(response.success, "{:?}", response.cr_errmsg);
    assert!(client.finish().unwrap().success());
    assert_eq!(std::fs::read_link(dir.join("final/parent")).unwrap(), Path::new("../pre"));
    wait_exit(pid);

    let client = Client::swrk(&crust_binary());
    let mut restore = request(CriuReqType::Restore);
    restore.opts = Some(CriuOpts { images_dir_fd: last.as_raw_fd(), ..CriuOpts::default() });
    let (response, notes) = client.call(&restore, |_| true);
    assert!(response.success, "{:?}", response.cr_errmsg);
    assert!(notes.is_empty(), "no notify_scripts, no notifications");
    client.finish();
    check_and_reap(pid, &out);
}

static RUST_CRIU_NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_note(script: &str, _notify: &rust_criu::rust_criu_protobuf::rpc::Criu_notify, _fd: Option<RawFd>) -> i32 {
    RUST_CRIU_NOTES.lock().unwrap().push(script.to_string());
    0
}

/// The rust-criu crate drives crust installed as `criu`: version, dump (with a notify
/// callback), restore.
#[test]
fn rust_criu_drives_crust_as_criu() {
    let _one = serialized();
    let dir = tempdir("rpc-rust-criu");
    let criu = dir.join("criu");
    std::os::unix::fs::symlink(crust_binary(), &criu).unwrap();
    let mut client = rust_criu::Criu::new_with_criu_path(criu.display().to_string()).unwrap();
    assert_eq!(client.get_criu_version().expect("VERSION through rust-criu"), 40201);
    if let Some(reason) = skip_reason() {
        eprintln!("skipped the dump and restore: {reason}");
        return;
    }
    subreaper();
    let out = dir.join("pattern.out");
    let pid = start_pattern(&dir, &out);
    let images_path = dir.join("img");
    std::fs::create_dir(&images_path).unwrap();
    let images = std::fs::File::open(&images_path).unwrap();
    client.set_pid(pid);
    client.set_images_dir_fd(images.as_raw_fd());
    client.set_log_file("dump.log".into());
    client.set_log_level(4);
    client.set_notify_scripts(true);
    client.set_notify_cb(record_note);
    client.dump().unwrap_or_else(|error| {
        panic!("rust-criu dump: {error}\n{}", std::fs::read_to_string(images_path.join("dump.log")).unwrap_or_default())
    });
    assert_eq!(*RUST_CRIU_NOTES.lock().unwrap(), ["pre-dump", "post-dump"]);
    wait_exit(pid);
    client.set_images_dir_fd(images.as_raw_fd());
    client.set_log_file("restore.log".into());
    client.set_log_level(4);
    client.restore().unwrap_or_else(|error| {
        panic!("rust-criu restore: {error}\n{}", std::fs::read_to_string(images_path.join("restore.log")).unwrap_or_default())
    });
    check_and_reap(pid, &out);
}

/// `crust service --daemon --pidfile --status-fd`: the status fd gets one zero byte once
/// the socket listens, each connection is served, SIGTERM removes the socket.
#[test]
fn service_mode_serves_connections() {
    let _one = serialized();
    subreaper();
    let dir = tempdir("rpc-service");
    let address = dir.join("criu_service.socket");
    let pidfile = dir.join("service.pid");
    let (mut status_read, status_write) = std::io::pipe().unwrap();
    let status_raw = OwnedFd::from(status_write);
    let raw = status_raw.as_raw_fd();
    let mut command = Command::new(crust_binary());
    command.arg("service").arg("--address").arg(&address).arg("--pidfile").arg(&pidfile).args(["--daemon", "--status-fd", "5"]);
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure only calls dup2/fcntl, which are async-signal-safe.
    unsafe {
        command.pre_exec(move || inherit_as(raw, 5));
    }
    let status = command.status().unwrap();
    drop(status_raw);
    assert!(status.success(), "service --daemon returns once it listens");
    let mut ready = Vec::new();
    std::io::Read::read_to_end(&mut status_read, &mut ready).unwrap();
    assert_eq!(ready, [0], "one zero byte on the status fd");
    let daemon: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let mut daemon_guard = KillOnDrop(daemon);
    for _ in 0..2 {
        let client = Client::connect(&address);
        let (response, _) = client.call(&request(CriuReqType::Version), |_| true);
        assert!(response.success && response.version.is_some());
        client.finish();
    }
    if skip_reason().is_none() {
        // A dump and a restore through the service: the client's fds are found through
        // the connecting process's pid (SO_PEERCRED of the accepted socket).
        let out = dir.join("pattern.out");
        let pid = start_pattern(&dir, &out);
        let images = std::fs::File::open(&dir).unwrap();
        let client = Client::connect(&address);
        let mut dump = request(CriuReqType::Dump);
        dump.opts = Some(dump_opts(pid, &images));
        let (response, notes) = client.call(&dump, |_| true);
        assert!(response.success, "{:?}", response.cr_errmsg);
        assert_eq!(notes.len(), 2);
        client.finish();
        wait_exit(pid);
        let client = Client::connect(&address);
        let mut restore = request(CriuReqType::Restore);
        restore.opts = Some(CriuOpts { images_dir_fd: images.as_raw_fd(), ..CriuOpts::default() });
        let (response, _) = client.call(&restore, |_| true);
        assert_eq!(response.restore.map(|r| r.pid), Some(pid), "{:?}", response.cr_errmsg);
        client.finish();
        wait_until_adopted(pid);
        check_and_reap(pid, &out);
    }
    signal(daemon, libc::SIGTERM);
    wait_exit(daemon);
    daemon_guard.disarm();
    assert!(!address.exists(), "the socket is removed on SIGTERM");
}

/// Where Debian's golang-github-checkpoint-restore-go-criu-dev puts go-criu.
const GO_CRIU_SOURCE: &str = "/usr/share/gocode/src/github.com/checkpoint-restore/go-criu";

/// Builds tests/data/go-criu-client.go against Debian's go-criu (GOPATH mode, offline)
/// into the target's scratch directory; `Err` says why it cannot.
fn build_go_criu_client() -> Result<PathBuf, String> {
    let has_go = Command::new("go").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !has_go || !Path::new(GO_CRIU_SOURCE).join("main.go").exists() {
        return Err("needs go and go-criu (ci/setup.sh installs golang-go and golang-github-checkpoint-restore-go-criu-dev)".into());
    }
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-criu");
    let package = scratch.join("gopath/src/crust-go-criu-client");
    std::fs::create_dir_all(&package).map_err(|e| e.to_string())?;
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-criu-client.go"), package.join("main.go")).map_err(|e| e.to_string())?;
    // go-criu imports itself as .../go-criu/v5, which GOPATH mode finds only under
    // that name: a link gives Debian's copy that name.
    let versioned = scratch.join("gopath/src/github.com/checkpoint-restore/go-criu/v5");
    if !versioned.exists() {
        std::fs::create_dir_all(versioned.parent().expect("a parent")).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(GO_CRIU_SOURCE, &versioned).map_err(|e| e.to_string())?;
    }
    let binary = scratch.join("go-criu-client");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&package)
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:/usr/share/gocode", scratch.join("gopath").display()))
        .env("GOCACHE", scratch.join("cache"))
        .env("GOFLAGS", "")
        .output()
        .map_err(|e| e.to_string())?;
    assert!(output.status.success(), "go build: {}", String::from_utf8_lossy(&output.stderr));
    Ok(binary)
}

fn run_go_client(client: &Path, args: &[&str]) -> String {
    let output = Command::new(client).args(args).stdin(Stdio::null()).output().expect("run go-criu-client");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "go-criu-client {args:?}: {}{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// go-criu (what runc and podman link) gets the answers it expects: a version runc
/// accepts (>= 3.0.0), a feature check, and a dump and restore with its callbacks.
#[test]
fn go_criu_drives_crust() {
    // `go build` is a spawn too (see ONE_AT_A_TIME).
    let _one = serialized();
    let client = match build_go_criu_client() {
        Ok(client) => client,
        Err(reason) if std::env::var("CI").is_ok_and(|value| value == "true") => panic!("{reason}"),
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let crust = crust_binary().display().to_string();
    assert_eq!(run_go_client(&client, &[&crust, "version"]), "version 40201\nfeature check ok\n");
    if let Ok(criu) = reference_criu() {
        // The same client, the same answers from the reference.
        assert_eq!(run_go_client(&client, &[&criu.display().to_string(), "version"]), "version 40201\nfeature check ok\n");
    }
    if let Some(reason) = skip_reason() {
        eprintln!("skipped the dump and restore: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("rpc-go-criu");
    let out = dir.join("pattern.out");
    let pid = start_pattern(&dir, &out);
    let images = dir.join("img");
    std::fs::create_dir(&images).unwrap();
    let images_arg = images.display().to_string();
    let dumped = run_go_client(&client, &[&crust, "dump", &pid.to_string(), &images_arg]);
    assert_eq!(dumped, "dump notify pre-dump,post-dump\n");
    wait_exit(pid);
    let restored = run_go_client(&client, &[&crust, "restore", &images_arg]);
    assert_eq!(
        restored,
        // As the reference CRIU 4.2.1: no namespace points for a tree in crust's
        // namespaces (go-criu has no pre-resume callback).
        format!("restore notify pre-restore,post-restore:{pid},post-resume\n")
    );
    check_and_reap(pid, &out);
}
