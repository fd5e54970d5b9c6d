//! Moving bytes between a socket, a pipe and a file without copying them through crust:
//! nix's `splice(2)`, for the page server (`page_server/`). No unsafe code.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{splice, SpliceFFlags};

/// `splice(from, NULL, pipe, NULL, len, SPLICE_F_MOVE | SPLICE_F_MORE)`: bytes moved
/// from a socket (or file at its position) into a pipe; 0 at end of stream.
#[doc(alias = "splice")]
pub fn splice_into_pipe(from: impl AsFd, pipe: &OwnedFd, len: usize) -> io::Result<usize> {
    loop {
        match splice(from.as_fd(), None, pipe.as_fd(), None, len, SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// `splice(pipe, NULL, to, NULL, len, SPLICE_F_MOVE)`: bytes moved from a pipe to a file
/// at its position, or to a socket.
#[doc(alias = "splice")]
pub fn splice_from_pipe(pipe: &OwnedFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    loop {
        match splice(pipe.as_fd(), None, to.as_fd(), None, len, SpliceFFlags::SPLICE_F_MOVE) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return Ok(other?),
        }
    }
}
