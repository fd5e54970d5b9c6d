//! Pipes the target fills with its own pages: `vmsplice(2)` run by the target's parasite
//! (`parasite/`) puts references to its pages into a pipe, and crust's pages writer
//! `splice(2)`s them into the image (see `pages.rs`), so the pages are not copied into
//! crust first.
//!
//! The target holds the pipes' write ends only while its memory is dumped:
//! [`RemotePipes::close`] closes them, and a `RemotePipes` dropped on an error path does
//! the same (and the parasite's epilogue, should crust die), so the files step never
//! sees them and a failed dump leaves the target as it was. Each pipe holds 1 MiB, the
//! default `/proc/sys/fs/pipe-max-size` (more needs CAP_SYS_RESOURCE): one vmsplice per
//! MiB, each one round trip to the parasite.

use std::io;
use std::os::fd::OwnedFd;

use crust_arch::Sys;

use crate::parasite::{Arg, Batch, Parasite, ParasiteError};
use crate::sys;

/// Pipes in flight: the target splices into one while the writer empties another.
const PIPES: usize = 4;
/// Capacity asked for each pipe.
const PIPE_BYTES: usize = 1 << 20;
/// `SPLICE_F_NONBLOCK`: a full pipe returns at once instead of stopping the target.
const SPLICE_F_NONBLOCK: u64 = 2;

/// The write ends of the pipes, in the target, and its parasite that fills them.
pub(crate) struct RemotePipes<'p> {
    parasite: &'p mut Parasite,
    write_ends: Vec<i32>,
    /// The capacity of the smallest pipe, in bytes.
    capacity: u64,
    closed: bool,
}

fn other(error: ParasiteError) -> io::Error {
    io::Error::other(error)
}

impl<'p> RemotePipes<'p> {
    /// Makes the pipes in the target (one round trip), keeping their read ends in
    /// crust (pidfd_getfd, then closed in the target: another).
    pub(crate) fn open(parasite: &'p mut Parasite) -> io::Result<(RemotePipes<'p>, Vec<OwnedFd>)> {
        let expected = parasite.expect_fds(2 * PIPES).map_err(other)?;
        let mut batch = Batch::new();
        let made: Vec<_> = (0..PIPES)
            .map(|_| {
                let fds = batch.buffer(8);
                (batch.call(Sys::Pipe2, &[Arg::B(fds), Arg::V(libc::O_CLOEXEC as u64)]), fds)
            })
            .collect();
        let answer = parasite.run(&batch).map_err(other)?;
        let mut found = Vec::new();
        for &(call, fds) in &made {
            let bytes = answer.bytes(fds);
            match answer.result(call) {
                0 => found.extend([
                    i32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes")),
                    i32::from_ne_bytes(bytes[4..8].try_into().expect("4 bytes")),
                ]),
                _ => found.extend([-1, -1]),
            }
        }
        parasite.check_fds("pipe2", &expected, &found).map_err(other)?;
        let (read_ends, write_ends): (Vec<i32>, Vec<i32>) =
            found.chunks(2).filter(|pair| pair[0] >= 0).map(|pair| (pair[0], pair[1])).unzip();
        let mut pipes = RemotePipes { parasite, write_ends, capacity: PIPE_BYTES as u64, closed: false };
        if let Some(&(call, _)) = made.iter().find(|&&(call, _)| answer.result(call) != 0) {
            return Err(io::Error::from_raw_os_error(-answer.result(call) as i32));
        }
        let borrowed: Vec<io::Result<OwnedFd>> =
            read_ends.iter().map(|&fd| pipes.parasite.borrow_fd(fd).map_err(other)).collect();
        pipes.parasite.close_fds(&read_ends).map_err(other)?;
        let page = sys::page_size() as usize;
        let mut owned = Vec::new();
        for read_end in borrowed {
            let read_end = read_end?;
            // A pipe left at its default size still works: vmsplice says how much it took.
            let size = crate::sys::file::set_pipe_size(&read_end, PIPE_BYTES as u32).map_or(page * 16, |n| n as usize);
            pipes.capacity = pipes.capacity.min(size as u64);
            owned.push(read_end);
        }
        Ok((pipes, owned))
    }

    /// Asks the target to put its pages at `addr..addr+len` (at most one pipe's capacity)
    /// into pipe `index`, which is empty; the bytes it put there.
    pub(crate) fn vmsplice(&mut self, index: usize, addr: u64, len: u64) -> io::Result<u64> {
        let len = len.min(self.capacity);
        let mut iovec = [0u8; 16];
        iovec[0..8].copy_from_slice(&addr.to_ne_bytes());
        iovec[8..16].copy_from_slice(&len.to_ne_bytes());
        let mut batch = Batch::new();
        let iov = batch.input(&iovec);
        let fd = self.write_ends[index] as u64;
        let call = batch.call(Sys::Vmsplice, &[Arg::V(fd), Arg::B(iov), Arg::V(1), Arg::V(SPLICE_F_NONBLOCK)]);
        let result = self.parasite.run(&batch).map_err(other)?.result(call);
        if (-4095..0).contains(&result) {
            return Err(io::Error::from_raw_os_error(-result as i32));
        }
        Ok(result as u64)
    }

    /// Closes the write ends in the target.
    pub(crate) fn close(mut self) -> io::Result<()> {
        self.close_remote()
    }

    fn close_remote(&mut self) -> io::Result<()> {
        self.closed = true;
        let write_ends = std::mem::take(&mut self.write_ends);
        self.parasite.close_fds(&write_ends).map_err(other)
    }
}

impl Drop for RemotePipes<'_> {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.close_remote();
        }
    }
}
