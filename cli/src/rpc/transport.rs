//! The RPC transport: a SOCK_SEQPACKET unix socket carrying one protobuf message per
//! datagram, as CRIU's clients expect (no length prefix: the datagram is the message).
//! A NOTIFY may carry one fd (SCM_RIGHTS). Only safe nix calls here; adopting an
//! inherited fd number and forking live in `sys.rs`.

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr};

/// One client connection: the swrk socket or an accepted service connection.
pub struct Connection {
    socket: OwnedFd,
}

impl Connection {
    /// Wraps a connected SOCK_SEQPACKET socket.
    pub fn new(socket: OwnedFd) -> Self {
        Connection { socket }
    }

    /// The client's pid (`SO_PEERCRED`): for a socketpair, the process that made it.
    #[doc(alias = "SO_PEERCRED")]
    pub fn peer_pid(&self) -> io::Result<i32> {
        let credentials = socket::getsockopt(&self.socket, sockopt::PeerCredentials)?;
        Ok(credentials.pid())
    }

    /// The next message, or `None` once the client closed its end (or sent an empty
    /// datagram, which no CRIU client does).
    pub fn receive(&self) -> io::Result<Option<Vec<u8>>> {
        let fd = self.socket.as_raw_fd();
        // MSG_TRUNC with MSG_PEEK: the datagram's whole length, whatever the buffer.
        let length = retry(|| socket::recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC))?;
        if length == 0 {
            return Ok(None);
        }
        let mut buffer = vec![0u8; length];
        let received = retry(|| socket::recv(fd, &mut buffer, MsgFlags::empty()))?;
        buffer.truncate(received);
        Ok(Some(buffer))
    }

    /// Sends one message.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        self.send_with_fds(message, &[])
    }

    /// Sends one message with `fds` attached (SCM_RIGHTS); the client receives copies.
    pub fn send_with_fds(&self, message: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let raw: Vec<i32> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let control = [ControlMessage::ScmRights(&raw)];
        let control: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &control };
        let sent = retry(|| {
            socket::sendmsg::<()>(self.socket.as_raw_fd(), &[IoSlice::new(message)], control, MsgFlags::MSG_NOSIGNAL, None)
        })?;
        if sent != message.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("sent {sent} of {} bytes", message.len())));
        }
        Ok(())
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// `crust service`'s listening socket, bound to a path.
pub struct Listener {
    socket: OwnedFd,
    path: PathBuf,
}

impl Listener {
    /// Binds and listens on `path`. A socket file nobody listens on any more (a service
    /// that was killed) is replaced; a live one is an error.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let address = UnixAddr::new(path)?;
        if let Ok(metadata) = std::fs::symlink_metadata(path) {
            if !metadata.file_type().is_socket() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"));
            }
            let probe = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
            match socket::connect(probe.as_raw_fd(), &address) {
                Ok(()) => return Err(io::Error::new(io::ErrorKind::AddrInUse, "a service already listens there")),
                Err(nix::errno::Errno::ECONNREFUSED) => std::fs::remove_file(path)?,
                Err(error) => return Err(error.into()),
            }
        }
        let socket = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
        socket::bind(socket.as_raw_fd(), &address)?;
        socket::listen(&socket, Backlog::new(16).expect("16 is a valid backlog"))?;
        Ok(Listener { socket, path: path.to_path_buf() })
    }

    /// Waits for the next client. `Err(Interrupted)` when a signal came first.
    pub fn accept(&self) -> io::Result<Connection> {
        let socket = socket::accept4(&self.socket, SockFlag::SOCK_CLOEXEC)?;
        Ok(Connection::new(socket))
    }

    /// Where it is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A connected pair, for tests of the protocol without a process.
#[cfg(test)]
pub fn pair() -> io::Result<(Connection, Connection)> {
    let (a, b) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((Connection::new(a), Connection::new(b)))
}

/// Retries a call interrupted by a signal.
fn retry<T>(mut call: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}
