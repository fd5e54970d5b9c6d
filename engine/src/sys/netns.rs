//! Network namespaces: opening one, entering it from a thread, and running a program in
//! one (`nft`, `iptables-legacy-save`). Opening and entering go through std and nix;
//! what is own code here is the `pre_exec` hook of a program to run, which calls
//! `setns`/`unshare` between fork and exec, where only async-signal-safe calls may run.
//!
//! Guarantees: the hooks touch no memory but the fd number they were given.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::CloneFlags;

/// Opens the network namespace of `pid` (`/proc/PID/ns/net`).
pub fn open_net_namespace(pid: i32) -> io::Result<OwnedFd> {
    Ok(File::open(format!("/proc/{pid}/ns/net"))?.into())
}

/// Opens the network namespace of the calling thread (`/proc/thread-self/ns/net`).
pub fn open_own_net_namespace() -> io::Result<OwnedFd> {
    Ok(File::open("/proc/thread-self/ns/net")?.into())
}

/// Moves the calling thread into the network namespace `netns` (`setns(CLONE_NEWNET)`).
/// A thread may: only its own view of the network changes.
#[doc(alias = "setns")]
pub fn enter_net_namespace(netns: impl AsFd) -> io::Result<()> {
    Ok(nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)?)
}

/// Moves the calling thread into the network namespace of inherited fd `fd` (`setns(fd,
/// CLONE_NEWNET)`): one the caller passed by number with `--inherit-fd fd[N]:KEY`.
#[doc(alias = "setns")]
pub fn enter_inherited_net_namespace(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns takes two integers; a number that is not an open namespace fd fails
    // with EBADF or EINVAL, nothing is dereferenced.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the calling thread a new, empty network namespace (`unshare(CLONE_NEWNET)`).
#[doc(alias = "unshare")]
pub fn enter_new_net_namespace() -> io::Result<()> {
    Ok(nix::sched::unshare(CloneFlags::CLONE_NEWNET)?)
}

/// The inode of a namespace file: the namespace's identity (`/proc/PID/ns/net` ->
/// `net:[INODE]`).
pub fn namespace_inode(netns: impl AsFd) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(netns.as_fd())?.st_ino)
}

/// Makes `command` run in the network namespace `netns`: the child calls
/// `setns(netns, CLONE_NEWNET)` between fork and exec. `netns` must stay open until the
/// command is spawned.
#[doc(alias = "setns")]
pub fn run_in_net_namespace(command: &mut Command, netns: RawFd) {
    // SAFETY: the hook runs in the forked child before exec and calls only setns, which
    // is async-signal-safe; it reads nothing but the fd number captured by value.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(netns, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
