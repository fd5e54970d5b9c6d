//! User namespaces: the parent of one (`NS_GET_PARENT`), which nix and rustix have no
//! safe call for.
//!
//! Guarantees: the ioctl takes no pointer; the fd it returns is owned at once.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};

/// `NS_GET_PARENT` (uapi linux/nsfs.h: `_IO(0xb7, 0x2)`), with this arch's direction bits.
const NS_GET_PARENT: rustix::ioctl::Opcode = rustix::ioctl::opcode::none(0xb7, 0x2);

/// `ioctl(ns, NS_GET_PARENT)`: the parent of the user (or pid) namespace `ns`, opened.
/// EPERM when the parent is outside the caller's namespace.
#[doc(alias = "NS_GET_PARENT")]
pub fn parent_namespace(ns: impl AsFd) -> io::Result<File> {
    // SAFETY: NS_GET_PARENT takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(ns.as_fd().as_raw_fd(), NS_GET_PARENT as _) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}
