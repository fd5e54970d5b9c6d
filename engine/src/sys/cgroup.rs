//! Cgroup calls: a detached mount of one cgroup hierarchy (the new mount API through
//! rustix, so crust does not depend on where, or whether, the host mounted it), files
//! and directories relative to such a mount (rustix's `*at` calls), and entering or
//! making a cgroup namespace (nix). No unsafe code.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

fn os(error: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(error.raw_os_error())
}

/// `fsopen("cgroup2")` or `fsopen("cgroup")` with one `fsconfig` per controller
/// (`FSCONFIG_SET_FLAG "pids"`, `FSCONFIG_SET_STRING name=systemd` plus the `none`
/// flag for a named hierarchy alone), `FSCONFIG_CMD_CREATE`, `fsmount`: a detached
/// mount of the hierarchy whose controllers /proc/PID/cgroup names `controllers`
/// (`""`: the unified one). The kernel hands back the existing hierarchy (a v1 mount
/// asking for other controllers than an existing hierarchy's fails with EBUSY). Its
/// root is the caller's cgroup namespace root.
#[doc(alias = "fsopen")]
#[doc(alias = "fsmount")]
pub(crate) fn mount_hierarchy(controllers: &str) -> io::Result<OwnedFd> {
    let context = if controllers.is_empty() {
        rustix::mount::fsopen("cgroup2", FsOpenFlags::FSOPEN_CLOEXEC).map_err(os)?
    } else {
        let context = rustix::mount::fsopen("cgroup", FsOpenFlags::FSOPEN_CLOEXEC).map_err(os)?;
        let mut named_only = true;
        for controller in controllers.split(',') {
            match controller.strip_prefix("name=") {
                Some(name) => rustix::mount::fsconfig_set_string(&context, "name", name).map_err(os)?,
                None => {
                    named_only = false;
                    rustix::mount::fsconfig_set_flag(&context, controller).map_err(os)?
                }
            }
        }
        if named_only {
            rustix::mount::fsconfig_set_flag(&context, "none").map_err(os)?;
        }
        context
    };
    rustix::mount::fsconfig_create(&context).map_err(os)?;
    rustix::mount::fsmount(&context, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOEXEC)
        .map_err(os)
}

/// `openat(dir, path, O_DIRECTORY | O_RDONLY)`: a cgroup directory below `dir` (`""`
/// or `"."`: `dir` itself, a new fd).
#[doc(alias = "openat")]
pub(crate) fn open_dir(dir: impl AsFd, path: &str) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { "." } else { path };
    rustix::fs::openat(dir, path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(os)
}

/// Reads the file `name` of the cgroup directory `dir` and its `fstat`: (text, mode,
/// uid, gid).
#[doc(alias = "openat")]
pub(crate) fn read_file(dir: impl AsFd, name: &str) -> io::Result<(String, u32, u32, u32)> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(os)?;
    let stat = rustix::fs::fstat(&fd).map_err(os)?;
    let mut text = String::new();
    File::from(fd).read_to_string(&mut text)?;
    Ok((text, stat.st_mode, stat.st_uid, stat.st_gid))
}

/// Writes `value` into the file `name` of the cgroup directory `dir` in one write(2)
/// (a cgroup file takes one value per write).
#[doc(alias = "openat")]
pub(crate) fn write_file(dir: impl AsFd, name: &str, value: &str) -> io::Result<()> {
    let fd = rustix::fs::openat(dir, name, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(os)?;
    let mut file = File::from(fd);
    let written = file.write(value.as_bytes())?;
    if written != value.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write ({written} of {} bytes)", value.len())));
    }
    Ok(())
}

/// `fstatat(dir, path, AT_SYMLINK_NOFOLLOW)`: (mode, uid, gid, dev, inode), or `None`
/// when nothing is there.
#[doc(alias = "fstatat")]
pub(crate) fn stat_at(dir: impl AsFd, path: &str) -> io::Result<Option<(u32, u32, u32, u64, u64)>> {
    let path = if path.is_empty() { "." } else { path };
    match rustix::fs::statat(dir, path, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some((stat.st_mode, stat.st_uid, stat.st_gid, stat.st_dev, stat.st_ino))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(error) => Err(os(error)),
    }
}

/// `stat(path)`: (dev, inode) of a path of crust's own mount namespace.
pub(crate) fn dev_inode(path: &std::path::Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// `mkdirat(dir, path, mode)`: one new cgroup.
#[doc(alias = "mkdirat")]
pub(crate) fn make_dir(dir: impl AsFd, path: &str, mode: u32) -> io::Result<()> {
    rustix::fs::mkdirat(dir, path, Mode::from_raw_mode(mode)).map_err(os)
}

/// `unlinkat(dir, path, AT_REMOVEDIR)`: removes an empty cgroup.
#[doc(alias = "unlinkat")]
pub(crate) fn remove_dir(dir: impl AsFd, path: &str) -> io::Result<()> {
    rustix::fs::unlinkat(dir, path, AtFlags::REMOVEDIR).map_err(os)
}

/// `fchownat(dir, path, uid, gid, AT_SYMLINK_NOFOLLOW)` and `fchmodat(dir, path, mode)`.
#[doc(alias = "fchownat")]
#[doc(alias = "fchmodat")]
pub(crate) fn set_owner_mode(dir: impl AsFd, path: &str, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let path = if path.is_empty() { "." } else { path };
    let dir = dir.as_fd();
    rustix::fs::chownat(
        dir,
        path,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(os)?;
    rustix::fs::chmodat(dir, path, Mode::from_raw_mode(mode & 0o7777), AtFlags::empty()).map_err(os)
}

/// The names of the subdirectories (child cgroups) of the directory `dir`, in readdir
/// order.
#[doc(alias = "getdents64")]
pub(crate) fn child_dirs(dir: impl AsFd) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(os)? {
        let entry = entry.map_err(os)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type() == rustix::fs::FileType::Directory && name != "." && name != ".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// `setns(/proc/PID/ns/cgroup, CLONE_NEWCGROUP)`: the calling thread enters the cgroup
/// namespace of `pid` (allowed for one thread of a multithreaded process).
#[doc(alias = "setns")]
pub(crate) fn enter_cgroup_namespace_of(pid: i32) -> io::Result<()> {
    let ns = File::open(format!("/proc/{pid}/ns/cgroup"))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// `unshare(CLONE_NEWCGROUP)`: the caller's cgroups become the roots of a new cgroup
/// namespace.
#[doc(alias = "unshare")]
pub(crate) fn new_cgroup_namespace() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// `poll(fd, POLLPRI, timeout)`: waits until the cgroup file `file` (`cgroup.events`)
/// changes, or `timeout` passes; true when it changed.
#[doc(alias = "poll")]
pub(crate) fn wait_changed(file: &File, timeout: std::time::Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut polled = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
    match poll(&mut polled, PollTimeout::from(millis)) {
        Ok(ready) => Ok(ready > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(error) => Err(io::Error::from_raw_os_error(error as i32)),
    }
}
