//! The engine's kernel calls, one typed function per request, each named for what it
//! does with its raw request in the first doc line and `#[doc(alias)]`.
//!
//! nix is used wherever it has a safe API for the call (ptrace seize/interrupt/syscall/
//! setoptions, kill, sessions and groups, sigprocmask, rlimits, prctls, mman,
//! process_vm_readv, splice and tee, fcntl, pipes, open, read/write/lseek, memfd,
//! eventfd, timerfd, epoll, inotify_init1, sockets and SCM_RIGHTS, setns, unshare,
//! mount, poll). What is left here as own code calls `libc` directly, each with a
//! `// SAFETY:` line, because nix has no safe function for it; each module's doc says
//! why, and `docs/ARCHITECTURE.md` lists them.
//!
//! - [`ptrace`]: ptrace requests on threads; [`wait`]: waitpid;
//! - [`process`]: signals, clone3 with set_tid, sessions, limits, prctls, pidfds;
//! - [`memory`]: mappings crust makes, reading another process's memory, splice;
//! - [`fd`]: requests on fd numbers (the fd table a restored process is given);
//! - [`file`]: requests on fds crust owns (pipes, memfd, eventfd, timerfd, ...);
//! - [`socket`], [`netlink`] (sock_diag), [`nftables`] (nf_tables batches), [`netns`]
//!   (network namespaces and programs run in one), [`tty`], [`kcmp`];
//! - [`sysv`]: System V IPC; [`uffd`]: userfaultfd; [`userns`]: a user namespace's parent;
//! - [`mount`]: the new mount API, mount_setattr, pivot_root (mount namespaces).

use std::io;

pub(crate) mod fd;
pub(crate) mod file;
pub(crate) mod kcmp;
pub(crate) mod memory;
pub(crate) mod mount;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod nftables;
pub(crate) mod cgroup;
pub(crate) mod process;
pub(crate) mod ptrace;
pub(crate) mod socket;
pub(crate) mod stream;
pub(crate) mod sysv;
pub(crate) mod tty;
pub(crate) mod uffd;
pub(crate) mod userns;
pub(crate) mod wait;

pub(crate) use fd::*;
pub(crate) use memory::*;
pub(crate) use process::*;
pub(crate) use ptrace::*;
pub(crate) use wait::*;

/// A raw call's result: the errno as an error when negative.
fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
