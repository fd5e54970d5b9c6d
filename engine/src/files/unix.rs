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
}

/// TCP_LISTEN, as unix sockets report it.
pub(crate) const STATE_LISTEN: u8 = 10;

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
        let mut at = 16;
        while let Some(attr) = payload.get(at..at + 4) {
            let len = u16::from_ne_bytes([attr[0], attr[1]]) as usize;
            let attr_kind = u16::from_ne_bytes([attr[2], attr[3]]);
            let Some(data) = payload.get(at + 4..at + len.max(4)) else { break };
            let word = |i: usize| data.get(i * 4..i * 4 + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
            match attr_kind {
                0 => socket.name = data.to_vec(),
                2 => socket.peer = word(0).unwrap_or(0),
                4 => {
                    socket.rqueue = word(0).unwrap_or(0);
                    socket.wqueue = word(1).unwrap_or(0);
                }
                6 => socket.shutdown = data.first().copied().unwrap_or(0),
                _ => {}
            }
            if len < 4 {
                break;
            }
            at += (len + 3) & !3;
        }
        out.insert(socket.ino, socket);
    }
    Ok(out)
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

/// Builds every unix socket of the image; returns file id → fd with status flags set.
/// `queues` holds each socket's queued messages by its file id.
pub(crate) fn create_sockets(
    sockets: &[pb::UnixSkEntry],
    queues: &BTreeMap<u32, Vec<Vec<u8>>>,
) -> Result<BTreeMap<u32, OwnedFd>, FileError> {
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
        let fd = if socket.state as u8 == STATE_LISTEN || (!socket.name.is_empty() && socket.peer == 0) {
            let fd = sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?;
            bind_name(&fd, &socket.name).map_err(file_within(what.clone()))?;
            if socket.state as u8 == STATE_LISTEN {
                sys::socket::listen(fd.as_raw_fd(), socket.backlog).map_err(file_io(format!("{what}: listen")))?;
            } else if !queue_of(socket.id).is_empty() {
                let sender = sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?;
                sys::socket::connect_unix(sender.as_raw_fd(), &socket.name).map_err(file_io(format!("{what}: connect to requeue")))?;
                send_all(&sender, queue_of(socket.id), &what)?;
            }
            fd
        } else if let Some(peer) = peer.filter(|p| !p.name.is_empty()) {
            // Connected to a named socket that is not its peer in turn (a datagram socket
            // sending to a bound one): connect to the name again.
            let fd = sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?;
            if !socket.name.is_empty() {
                bind_name(&fd, &socket.name).map_err(file_within(what.clone()))?;
            }
            sys::socket::connect_unix(fd.as_raw_fd(), &peer.name).map_err(file_io(format!("{what}: connect")))?;
            fd
        } else if socket.peer != 0 || !queue_of(socket.id).is_empty() || socket.shutdown.unwrap_or(0) != 0 {
            // The peer is gone: a pair whose other end sends the queue and is closed.
            let (mine, theirs) =
                sys::socket::create_socketpair(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socketpair")))?;
            send_all(&theirs, queue_of(socket.id), &what)?;
            drop(theirs);
            mine
        } else {
            sys::socket::create_socket(libc::AF_UNIX, kind).map_err(file_io(format!("{what}: socket")))?
        };
        out.insert(socket.id, fd);
    }
    for socket in sockets {
        let fd = out.get(&socket.id).expect("every socket was created above");
        super::sockopts::apply(fd, &socket.opts, None, super::sockopts::Kind::Unix, &format!("unix socket {}", socket.id))?;
        sys::file::set_status_flags(fd, socket.flags as i32)
            .map_err(file_io(format!("unix socket {}: flags", socket.id)))?;
    }
    Ok(out)
}

/// Binds to a name; a path still there from the dumped process (a stale socket file) is
/// removed first.
fn bind_name(fd: &OwnedFd, name: &[u8]) -> Result<(), FileError> {
    if name.is_empty() {
        return Ok(());
    }
    // A path name comes from sock_diag with its terminating NUL.
    let name = if name[0] != 0 { name.split(|b| *b == 0).next().unwrap_or(name) } else { name };
    if name[0] != 0 {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::FileTypeExt;
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(path);
        }
    }
    sys::socket::bind_unix(fd.as_raw_fd(), name).map_err(file_io(format!("bind {}", String::from_utf8_lossy(name))))
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
