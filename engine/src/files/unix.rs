//! Unix sockets: what the kernel's sock_diag says about each (type, state, name, peer,
//! queue), the queued messages peeked without consuming them, and how the broker builds
//! them again: a pair of mutual peers is one `socketpair`, a listener is bound and
//! listens, a socket whose peer is gone gets its queue from a peer that is then closed.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{file_io, file_within, FileError};
use crust_images::pb;

use crate::sys;
use crate::sys::netlink::{netlink_messages as messages, NLMSG_DONE, NLMSG_ERROR};

/// One AF_UNIX socket as sock_diag reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UnixDiag {
    pub(crate) ino: u32,
    pub(crate) kind: u8,
    pub(crate) state: u8,
    /// Bound name (abstract ones start with a NUL byte); empty when unbound.
    pub(crate) name: Vec<u8>,
    pub(crate) peer: u32,
    /// Messages queued (listeners: connections waiting for accept).
    pub(crate) rqueue: u32,
    /// Listeners: the backlog given to listen.
    pub(crate) wqueue: u32,
    pub(crate) shutdown: u8,
    /// Bound to a path: the inode of the socket file the bind made (UNIX_DIAG_VFS), to
    /// tell whether the name still leads to this socket.
    pub(crate) vfs_ino: u32,
}

/// TCP_LISTEN, as unix sockets report it.
pub(crate) const STATE_LISTEN: u8 = 10;
/// TCP_ESTABLISHED: connected, or was (its peer may be gone since).
pub(crate) const STATE_ESTABLISHED: u8 = 1;

/// Parses sock_diag replies for AF_UNIX into sockets by inode. Pure.
pub(crate) fn parse_diag(bytes: &[u8]) -> Result<BTreeMap<u32, UnixDiag>, FileError> {
    let mut out = BTreeMap::new();
    for (kind, payload) in messages(bytes) {
        match kind {
            NLMSG_DONE => break,
            NLMSG_ERROR => {
                let errno = payload.get(0..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
                return Err(FileError::refused(format!("sock_diag: {}", std::io::Error::from_raw_os_error(-errno))));
            }
            _ => {}
        }
        let Some(head) = payload.get(0..16) else { return Err(FileError::refused("sock_diag: short unix_diag_msg")) };
        let mut socket = UnixDiag {
            kind: head[1],
            state: head[2],
            ino: u32::from_ne_bytes(head[4..8].try_into().expect("4 bytes")),
            ..Default::default()
        };
        for (attr_kind, data) in sys::netlink::netlink_attributes(&payload[16..]) {
            let word = |i: usize| data.get(i * 4..i * 4 + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
            match attr_kind {
                0 => socket.name = data.to_vec(),
                1 => socket.vfs_ino = word(0).unwrap_or(0),
                2 => socket.peer = word(0).unwrap_or(0),
                4 => {
                    socket.rqueue = word(0).unwrap_or(0);
                    socket.wqueue = word(1).unwrap_or(0);
                }
                6 => socket.shutdown = data.first().copied().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(socket.ino, socket);
    }
    Ok(out)
}

/// What the image says of a socket bound to a path (CRIU's fields).
#[derive(Debug, Default)]
pub(crate) struct PathName {
    /// For a relative name, the directory it is bound in: the process's working
    /// directory (`name_dir`).
    pub(crate) name_dir: Option<String>,
    /// The name no longer leads to this socket: its file was unlinked or its directory
    /// removed (`deleted`); restore binds and unlinks it again.
    pub(crate) deleted: bool,
    /// Mode, owner and group of the socket file (`file_perms`), set again at restore.
    pub(crate) perms: Option<pb::FilePermsEntry>,
}

/// Where the path a socket is bound to leads now (see [`PathName`]); sockets without a
/// path name get the default.
pub(crate) fn resolve_path_name(pid: i32, diag: &UnixDiag) -> Result<PathName, FileError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let name = diag.name.split(|b| *b == 0).next().unwrap_or(&[]);
    if name.is_empty() {
        return Ok(PathName::default());
    }
    let shown = String::from_utf8_lossy(name);
    let perms_here = |path: &std::path::Path| {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.file_type().is_socket() && m.ino() == diag.vfs_ino as u64)
            .map(|m| pb::FilePermsEntry { mode: m.mode(), uid: m.uid(), gid: m.gid() })
    };
    let relative = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
    if name[0] != b'/' {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(file_io("read the working directory"))?;
        let Some(perms) = perms_here(&std::path::Path::new(&format!("/proc/{pid}/cwd")).join(relative)) else {
            return Err(FileError::refused(format!(
                "unix socket bound to the relative path {shown}, which does not lead to it from the working directory {}",
                cwd.display()
            )));
        };
        return Ok(PathName { name_dir: Some(cwd.to_string_lossy().into_owned()), deleted: false, perms: Some(perms) });
    }
    let through_root = std::path::Path::new(&format!("/proc/{pid}/root")).join(relative.strip_prefix("/").unwrap_or(relative));
    let perms = perms_here(&through_root);
    Ok(PathName { name_dir: None, deleted: perms.is_none(), perms })
}

/// A message peeked from a queue and crust's copies of the fds in flight with it.
pub(crate) type Peeked = (Vec<u8>, Vec<OwnedFd>);

/// Every message queued for reading on a socket, in order, without consuming any: the
/// socket (borrowed from the target) is peeked with SO_PEEK_OFF walking forward, then its
/// peek offset is put back.
pub(crate) fn peek_queue(socket: &OwnedFd) -> Result<Vec<Peeked>, FileError> {
    let fd = socket.as_raw_fd();
    let old_offset = sys::socket::socket_option(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).map_err(file_io("SO_PEEK_OFF"))?;
    sys::socket::set_socket_option(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0).map_err(file_io("set SO_PEEK_OFF"))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4 << 20];
    let result = loop {
        match sys::socket::peek_message(fd, &mut buf) {
            Ok(p) if p.other_control => break Err(FileError::refused("a queued message carries credentials or more fds than fit")),
            Ok(p) if p.truncated => break Err(FileError::refused(format!("a queued message is larger than {} bytes", buf.len()))),
            Ok(p) if p.len == 0 && p.fds.is_empty() => break Ok(()),
            Ok(p) => out.push((buf[..p.len].to_vec(), p.fds)),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break Ok(()),
            Err(e) => break Err(FileError::refused(format!("peek queue: {e}"))),
        }
    };
    let _ = sys::socket::set_socket_option(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old_offset);
    result.map(|()| out)
}

/// The unix sockets of an image, built; what is left to do once the messages with fds
/// in flight are queued too (they are sent later, when every file exists).
pub(crate) struct UnixSockets {
    /// File id → fd, status flags set.
    pub(crate) fds: BTreeMap<u32, OwnedFd>,
    /// For a socket whose peer was gone at dump time and whose queue carries fds in
    /// flight: the other end of the pair made for it, which sends that queue and is then
    /// closed (by socket file id).
    pub(crate) stand_ins: BTreeMap<u32, OwnedFd>,
    /// (file id, shutdown bits) to shut down once every queue is filled: a socket shut
    /// for reading refuses new data.
    pub(crate) shutdowns: Vec<(u32, u32)>,
}

/// Builds every unix socket of the image. `queues` holds each socket's queued messages
/// by its file id; `deferred`, the ids of the sockets whose queues carry fds in flight.
pub(crate) fn create_sockets(
    sockets: &[pb::UnixSkEntry],
    queues: &BTreeMap<u32, Vec<Vec<u8>>>,
    deferred: &std::collections::BTreeSet<u32>,
) -> Result<UnixSockets, FileError> {
    let mut stand_ins = BTreeMap::new();
    let by_ino: BTreeMap<u32, &pb::UnixSkEntry> = sockets.iter().map(|s| (s.ino, s)).collect();
    let mut out: BTreeMap<u32, OwnedFd> = BTreeMap::new();
    let empty = Vec::new();
    let queue_of = |id: u32| queues.get(&id).unwrap_or(&empty);
    let send_all = |from: &OwnedFd, messages: &[Vec<u8>], what: &str| -> Result<(), FileError> {
        for message in messages {
            sys::socket::send_message(from.as_raw_fd(), message).map_err(file_io(format!("{what}: requeue {} bytes", message.len())))?;
        }
        Ok(())
    };
    // Names that were unlinked at dump time: bound (and connected to) first, removed
    // once every socket is built.
    let mut unlink_after = Vec::new();
    // Listeners and bound sockets first: others may connect to them.
    let mut order: Vec<&pb::UnixSkEntry> = sockets.iter().collect();
    order.sort_by_key(|s| (s.peer != 0, s.id));
    for socket in order {
        if out.contains_key(&socket.id) {
            continue;
        }
        let what = format!("unix socket {} (ino {})", socket.id, socket.ino);
        let kind = socket.r#type as i32;
        let peer = by_ino.get(&socket.peer).copied();
        let mutual = peer.filter(|p| p.peer == socket.ino && p.ino != socket.ino);
        if let Some(peer) = mutual {
            let (mine, theirs) =
                sys::socket::create_socketpair(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socketpair")))?;
            send_all(&theirs, queue_of(socket.id), &what)?;
            send_all(&mine, queue_of(peer.id), &what)?;
            out.insert(socket.id, mine);
            out.insert(peer.id, theirs);
            continue;
        }
        // A connected stream or seqpacket socket with a name and no peer (an accepted
        // one shares its listener's name) lost its peer: it is not bound again below.
        let lost_peer = kind != libc::SOCK_DGRAM && socket.state as u8 == STATE_ESTABLISHED && socket.peer == 0;
        let fd = if socket.state as u8 == STATE_LISTEN || (!socket.name.is_empty() && socket.peer == 0 && !lost_peer) {
            let fd = sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?;
            bind_name(&fd, socket, &mut unlink_after).map_err(file_within(what.clone()))?;
            if socket.state as u8 == STATE_LISTEN {
                sys::socket::listen(fd.as_raw_fd(), socket.backlog).map_err(file_io(format!("{what}: listen")))?;
            } else if !queue_of(socket.id).is_empty() {
                let sender = sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?;
                connect_name(&sender, socket).map_err(file_within(format!("{what}: to requeue")))?;
                send_all(&sender, queue_of(socket.id), &what)?;
            }
            fd
        } else if let Some(peer) = peer.filter(|p| !p.name.is_empty()) {
            // Connected to a named socket that is not its peer in turn (a datagram socket
            // sending to a bound one): connect to the name again.
            let fd = sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?;
            if !socket.name.is_empty() {
                bind_name(&fd, socket, &mut unlink_after).map_err(file_within(what.clone()))?;
            }
            connect_name(&fd, peer).map_err(file_within(what.clone()))?;
            fd
        } else if socket.peer != 0 || !queue_of(socket.id).is_empty() || socket.state as u8 == STATE_ESTABLISHED {
            // The peer is gone (sock_diag names no peer for a connected socket whose
            // peer was closed): a pair whose other end sends the queue and is closed.
            let (mine, theirs) =
                sys::socket::create_socketpair(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socketpair")))?;
            send_all(&theirs, queue_of(socket.id), &what)?;
            if deferred.contains(&socket.id) {
                stand_ins.insert(socket.id, theirs);
            }
            mine
        } else {
            sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?
        };
        out.insert(socket.id, fd);
    }
    remove_names(unlink_after)?;
    for socket in sockets {
        let fd = out.get(&socket.id).expect("every socket was created above");
        super::sockopts::apply(fd, &socket.opts, None, super::sockopts::Kind::Unix, &format!("unix socket {}", socket.id))?;
        sys::file::set_status_flags(fd, socket.flags as i32)
            .map_err(file_io(format!("unix socket {}: flags", socket.id)))?;
    }
    // Shutting down one end of a stream or seqpacket pair sets the mirror bits on the
    // other, which its own entry also holds, so each socket is shut as dumped.
    let shutdowns = sockets.iter().map(|s| (s.id, s.shutdown.unwrap_or(0) as u32)).filter(|s| s.1 != 0).collect();
    Ok(UnixSockets { fds: out, stand_ins, shutdowns })
}

/// `shutdown(fd, bits)` for a socket of [`UnixSockets::shutdowns`].
pub(crate) fn shut_down(fd: std::os::fd::RawFd, id: u32, bits: u32) -> Result<(), FileError> {
    sys::socket::shut_down(fd, bits).map_err(file_io(format!("unix socket {id}: shutdown {bits}")))
}

/// A name as sock_diag and the image give it: an abstract one (from its NUL byte on),
/// or a path up to its terminating NUL.
fn plain_name(name: &[u8]) -> &[u8] {
    if name.first().is_some_and(|b| *b != 0) {
        name.split(|b| *b == 0).next().unwrap_or(name)
    } else {
        name
    }
}

/// A path name as a path: `name_dir` joined with a relative one.
fn name_path(socket: &pb::UnixSkEntry) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = plain_name(&socket.name);
    if name.first().is_none_or(|b| *b == 0) {
        return None;
    }
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
    Some(match socket.name_dir.as_deref().filter(|_| path.is_relative()) {
        Some(dir) => std::path::Path::new(dir).join(path),
        None => path.to_path_buf(),
    })
}

/// Runs `call` where a relative name of `socket` means what it meant to the process
/// that bound it: in a thread of crust's own whose working directory (unshared with
/// CLONE_FS, so crust's other threads keep theirs) is the image's `name_dir`.
fn in_name_dir<T: Send>(socket: &pb::UnixSkEntry, call: impl FnOnce() -> Result<T, FileError> + Send) -> Result<T, FileError> {
    let relative = socket.name.first().is_some_and(|b| *b != 0 && *b != b'/');
    let Some(dir) = socket.name_dir.as_deref().filter(|dir| relative && !dir.is_empty()) else { return call() };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("crust-unix-name".into())
            .spawn_scoped(scope, || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|e| file_io("unshare CLONE_FS")(e.into()))?;
                nix::unistd::chdir(dir).map_err(|e| file_io(format!("chdir {dir}"))(e.into()))?;
                call()
            })
            .map_err(file_io("spawn a thread to bind in the socket's directory"))?
            .join()
            .unwrap_or_else(|_| Err(FileError::refused("the thread binding a relative unix socket name panicked")))
    })
}

/// Binds `socket`'s name. A path still there from the dumped process (a stale socket
/// file) is removed first; a name that was unlinked at dump time (`deleted`) is bound
/// in its directory (made again if it is gone: those made are listed after the socket
/// file in `unlink_after`, to be removed with it once every socket is built).
fn bind_name(fd: &OwnedFd, socket: &pb::UnixSkEntry, unlink_after: &mut Vec<Vec<std::path::PathBuf>>) -> Result<(), FileError> {
    let name = plain_name(&socket.name);
    if name.is_empty() {
        return Ok(());
    }
    let deleted = socket.deleted.unwrap_or(false);
    if let Some(path) = name_path(socket) {
        use std::os::unix::fs::FileTypeExt;
        if deleted {
            let mut made = Vec::new();
            let mut missing: Vec<&std::path::Path> = path.ancestors().skip(1).take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists()).collect();
            missing.reverse();
            for dir in missing {
                std::fs::create_dir(dir).map_err(file_io(format!("make the removed directory {} again", dir.display())))?;
                made.push(dir.to_path_buf());
            }
            made.push(path.clone());
            made.reverse();
            unlink_after.push(made);
        } else if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&path);
        }
    }
    let raw = fd.as_raw_fd();
    in_name_dir(socket, || sys::socket::bind_unix(raw, name).map_err(file_io(format!("bind {}", String::from_utf8_lossy(name)))))?;
    if let (Some(perms), Some(path), false) = (&socket.file_perms, name_path(socket), deleted) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perms.mode & 0o7777))
            .map_err(file_io(format!("chmod {} {:o}", path.display(), perms.mode & 0o7777)))?;
        std::os::unix::fs::lchown(&path, Some(perms.uid), Some(perms.gid))
            .map_err(file_io(format!("chown {} {}:{}", path.display(), perms.uid, perms.gid)))?;
    }
    Ok(())
}

/// Connects to `peer`'s name (relative ones from the peer's `name_dir`).
fn connect_name(fd: &OwnedFd, peer: &pb::UnixSkEntry) -> Result<(), FileError> {
    let name = plain_name(&peer.name);
    let raw = fd.as_raw_fd();
    in_name_dir(peer, || sys::socket::connect_unix(raw, name).map_err(file_io(format!("connect to {}", String::from_utf8_lossy(name)))))
}

/// Removes the names that were unlinked at dump time, and the directories made again
/// for them.
fn remove_names(unlink_after: Vec<Vec<std::path::PathBuf>>) -> Result<(), FileError> {
    // Every socket file first: two sockets may share a directory made again.
    for path in unlink_after.iter().filter_map(|paths| paths.first()) {
        std::fs::remove_file(path).map_err(file_io(format!("remove {} (unlinked at dump time)", path.display())))?;
    }
    for dir in unlink_after.iter().rev().flat_map(|paths| paths.iter().skip(1)) {
        std::fs::remove_dir(dir).map_err(file_io(format!("remove {} (removed at dump time)", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(4 + data.len() as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn parses_names_peers_and_queues() {
        let mut payload = vec![libc::AF_UNIX as u8, 1, 1, 0];
        payload.extend_from_slice(&77u32.to_ne_bytes());
        payload.extend_from_slice(&[0; 8]);
        payload.extend(attr(0, b"\0abstract"));
        payload.extend(attr(2, &78u32.to_ne_bytes()));
        payload.extend(attr(4, &[3u32.to_ne_bytes(), 0u32.to_ne_bytes()].concat()));
        let mut bytes = message(20, &payload);
        bytes.extend(message(NLMSG_DONE, &[0; 4]));
        assert!(crate::sys::netlink::diag_done(&bytes));
        let sockets = parse_diag(&bytes).unwrap();
        let s = &sockets[&77];
        assert_eq!((s.kind, s.state, s.peer, s.rqueue), (1, 1, 78, 3));
        assert_eq!(s.name, b"\0abstract");
    }

    #[test]
    fn error_reply_is_an_error() {
        let bytes = message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert!(parse_diag(&bytes).is_err());
    }
}
