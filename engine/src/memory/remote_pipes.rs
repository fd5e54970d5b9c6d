//! Pipes the target fills with its own pages: `vmsplice(2)` injected into a stopped
//! thread puts references to its pages into a pipe, and crust's pages writer `splice(2)`s
//! them into the image (see `fast_pages.rs`), so the pages are not copied into crust first.
//!
//! The target holds the pipes' write ends (and a scratch page for the iovec) only while
//! its memory is dumped: [`RemotePipes::close`] closes them and unmaps the page, and a
//! `RemotePipes` dropped on an error path does the same, so the files step never sees
//! them and a failed dump leaves the target as it was. Each pipe holds 1 MiB, the default
//! `/proc/sys/fs/pipe-max-size` (more needs CAP_SYS_RESOURCE): one injected vmsplice per
//! MiB, about 30 µs each.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use crust_arch::{Abi, HostArch, Sys};

use crate::sys::set_pipe_size;
use crate::infect::RemoteThread;
use crate::sys;

type Regs = <HostArch as Abi>::Regs;

/// Pipes in flight: the target splices into one while the writer empties another.
const PIPES: usize = 4;
/// Capacity asked for each pipe.
const PIPE_BYTES: usize = 1 << 20;
/// `SPLICE_F_NONBLOCK`: a full pipe returns at once instead of stopping the target.
const SPLICE_F_NONBLOCK: u64 = 2;

/// The write ends of the pipes, in the target, and what is needed to use them.
pub(crate) struct RemotePipes {
    remote: RemoteThread,
    /// `/proc/PID/mem`, opened for writing the iovec into the scratch page.
    mem: File,
    scratch: u64,
    write_ends: Vec<i32>,
    /// The capacity of the smallest pipe, in bytes.
    capacity: u64,
    closed: bool,
}

impl RemotePipes {
    /// Maps the scratch page and makes the pipes in the target (thread `tid`, stopped,
    /// every signal blocked), keeping their read ends in crust. `syscall_ip`: a syscall
    /// instruction in the target; `regs`: the thread's registers as seized.
    pub(crate) fn open(pid: i32, tid: i32, syscall_ip: u64, regs: Regs) -> io::Result<(RemotePipes, Vec<OwnedFd>)> {
        let mem = File::options().read(true).write(true).open(format!("/proc/{pid}/mem"))?;
        let page = sys::page_size();
        let mut pipes = RemotePipes {
            remote: RemoteThread::new(tid, syscall_ip, regs),
            mem,
            scratch: 0,
            write_ends: Vec::new(),
            capacity: PIPE_BYTES as u64,
            closed: false,
        };
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        pipes.scratch = pipes.call(Sys::Mmap, [0, page, prot, flags, u64::MAX, 0])? as u64;
        let mut read_ends = Vec::new();
        for _ in 0..PIPES {
            pipes.call(Sys::Pipe2, [pipes.scratch, libc::O_CLOEXEC as u64, 0, 0, 0, 0])?;
            let mut fds = [0u8; 8];
            pipes.mem.read_exact_at(&mut fds, pipes.scratch)?;
            let read_end = i32::from_ne_bytes(fds[0..4].try_into().expect("4 bytes"));
            let write_end = i32::from_ne_bytes(fds[4..8].try_into().expect("4 bytes"));
            pipes.write_ends.push(write_end);
            let borrowed = crate::sys::process::borrow_fd(pid, read_end as u32);
            pipes.call(Sys::Close, [read_end as u64, 0, 0, 0, 0, 0])?;
            let borrowed = borrowed?;
            // A pipe left at its default size still works: vmsplice says how much it took.
            let size = set_pipe_size(&borrowed, PIPE_BYTES).unwrap_or(page as usize * 16);
            pipes.capacity = pipes.capacity.min(size as u64);
            read_ends.push(borrowed);
        }
        Ok((pipes, read_ends))
    }

    /// Asks the target to put its pages at `addr..addr+len` (at most one pipe's capacity)
    /// into pipe `index`, which is empty; the bytes it put there.
    pub(crate) fn vmsplice(&mut self, index: usize, addr: u64, len: u64) -> io::Result<u64> {
        let len = len.min(self.capacity);
        let mut iovec = [0u8; 16];
        iovec[0..8].copy_from_slice(&addr.to_ne_bytes());
        iovec[8..16].copy_from_slice(&len.to_ne_bytes());
        self.mem.write_all_at(&iovec, self.scratch)?;
        let fd = self.write_ends[index] as u64;
        Ok(self.call(Sys::Vmsplice, [fd, self.scratch, 1, SPLICE_F_NONBLOCK, 0, 0])? as u64)
    }

    /// Closes the write ends and unmaps the scratch page in the target.
    pub(crate) fn close(mut self) -> io::Result<()> {
        self.close_remote()
    }

    fn close_remote(&mut self) -> io::Result<()> {
        self.closed = true;
        let mut first_error = None;
        for fd in std::mem::take(&mut self.write_ends) {
            if let Err(error) = self.call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0]) {
                first_error.get_or_insert(error);
            }
        }
        if self.scratch != 0 {
            let scratch = std::mem::take(&mut self.scratch);
            if let Err(error) = self.call(Sys::Munmap, [scratch, sys::page_size(), 0, 0, 0, 0]) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One injected syscall; its errno as an error.
    fn call(&mut self, call: Sys, args: [u64; 6]) -> io::Result<i64> {
        let result = self.remote.syscall(call, args).map_err(io::Error::other)?;
        if (-4095..0).contains(&result) {
            return Err(io::Error::from_raw_os_error(-result as i32));
        }
        Ok(result)
    }
}

impl Drop for RemotePipes {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.close_remote();
        }
    }
}
