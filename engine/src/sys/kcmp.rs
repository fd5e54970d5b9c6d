//! kcmp(2), which nix does not have: whether two fds (or an epoll's watch and an fd)
//! are one open file description, as a total order so sharing is found by binary search.
#![allow(unsafe_code)]

use std::io;

use super::check;

#[doc(alias = "kcmp")]
/// `kcmp(pid1, pid2, KCMP_FILE, fd1, fd2)` as an order: equal when both fds share one
/// open file description; otherwise the kernel's (stable) order of the two descriptions.
pub fn order_file_descriptions(pid1: i32, fd1: u32, pid2: i32, fd2: u32) -> io::Result<std::cmp::Ordering> {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: KCMP_FILE takes no pointers.
    let rc = check(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1 as libc::c_long, fd2 as libc::c_long) })?;
    Ok(match rc {
        0 => std::cmp::Ordering::Equal,
        1 => std::cmp::Ordering::Less,
        _ => std::cmp::Ordering::Greater,
    })
}

/// `kcmp(pid, pid, KCMP_EPOLL_TFD, fd, {epfd, tfd, 0})`: whether the file epoll `epfd`
/// watches under number `tfd` is the one at `fd`.
#[doc(alias = "kcmp")]
pub fn epoll_watches_file(pid: i32, epfd: u32, tfd: u32, fd: u32) -> io::Result<bool> {
    const KCMP_EPOLL_TFD: libc::c_long = 7;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot { efd: epfd, tfd, toff: 0 };
    // SAFETY: slot lives across the call and has the kernel's kcmp_epoll_slot layout.
    let rc = check(unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, fd as libc::c_long, &slot as *const Slot) })?;
    Ok(rc == 0)
}


/// The kernel objects two processes may share, for [`share`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    /// The fd table (`KCMP_FILES`, shared by `CLONE_FILES`).
    FdTable,
    /// The cwd, root and umask (`KCMP_FS`, shared by `CLONE_FS`).
    FsInfo,
}

/// `kcmp(pid1, pid2, KCMP_FILES or KCMP_FS, 0, 0)` as an order: equal when the two
/// processes share one fd table or one fs info; otherwise the kernel's (stable) order of
/// the two objects, so that sharing in a tree is found by sorting.
#[doc(alias = "kcmp")]
pub fn order_shared(pid1: i32, pid2: i32, what: Shared) -> io::Result<std::cmp::Ordering> {
    let kind: libc::c_long = match what {
        Shared::FdTable => 2,
        Shared::FsInfo => 3,
    };
    // SAFETY: KCMP_FILES and KCMP_FS take no pointers.
    let rc = check(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, kind, 0 as libc::c_long, 0 as libc::c_long) })?;
    Ok(match rc {
        0 => std::cmp::Ordering::Equal,
        1 => std::cmp::Ordering::Less,
        _ => std::cmp::Ordering::Greater,
    })
}
