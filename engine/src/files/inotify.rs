//! inotify: the watches (wd, mask, file handle) from fdinfo; each watched file is found
//! through its handle (`open_by_handle_at` on its mount) and kept by path. Restore adds
//! the watches again with the same watch descriptors. Events queued at dump are not kept.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys;
use super::{file_io, FileError};
use crust_images::pb;


/// One `inotify wd:...` line. Pure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WatchLine {
    pub(crate) wd: u32,
    pub(crate) ino: u64,
    pub(crate) sdev: u32,
    pub(crate) mask: u32,
    pub(crate) ignored_mask: u32,
    pub(crate) handle_type: i32,
    pub(crate) handle: Vec<u8>,
}

/// Parses the watch lines of an inotify fdinfo.
pub(crate) fn parse_watches(fdinfo: &str) -> Result<Vec<WatchLine>, FileError> {
    let mut out = Vec::new();
    for line in fdinfo.lines().filter_map(|l| l.strip_prefix("inotify ")) {
        let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key));
        let hex = |key: &str| field(key).and_then(|v| u64::from_str_radix(v, 16).ok()).ok_or_else(|| FileError::refused(format!("inotify line {line:?}: no {key}")));
        let handle_text = field("f_handle:").ok_or_else(|| FileError::refused(format!("inotify line {line:?}: no f_handle")))?;
        let handle = (0..handle_text.len() / 2)
            .map(|i| u8::from_str_radix(&handle_text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| FileError::refused(format!("inotify line {line:?}: bad f_handle")))?;
        out.push(WatchLine {
            wd: hex("wd:")? as u32,
            ino: hex("ino:")?,
            sdev: hex("sdev:")? as u32,
            mask: hex("mask:")? as u32,
            ignored_mask: hex("ignored_mask:")? as u32,
            handle_type: hex("fhandle-type:")? as i32,
            handle,
        });
    }
    Ok(out)
}

/// The path of a watched file: its handle opened on the mount of its device (from
/// /proc/PID/mountinfo), read back through /proc/self/fd.
pub(crate) fn watched_path(pid: i32, watch: &WatchLine) -> Result<String, FileError> {
    // The kernel's dev_t: 12 bits of major above 20 bits of minor.
    let (major, minor) = (watch.sdev >> 20, watch.sdev & 0xf_ffff);
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(file_io("read mountinfo"))?;
    let wanted = format!("{major}:{minor}");
    let mut last_error = format!("no mount of device {wanted}");
    for line in mountinfo.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.get(2) != Some(&wanted.as_str()) {
            continue;
        }
        let Some(mount_point) = words.get(4) else { continue };
        let mount_path = format!("/proc/{pid}/root{mount_point}");
        let mount = match sys::file::open_path(&mount_path, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(e) => {
                last_error = format!("open mount {mount_point}: {e}");
                continue;
            }
        };
        match sys::file::open_by_handle(mount.as_raw_fd(), watch.handle_type, &watch.handle) {
            Ok(file) => {
                // The link is the path in the tree's mount namespace, but only if the file
                // lies below the mount's root: a handle opens on any mount of its
                // superblock, and one whose root is elsewhere (a container's rootfs bind,
                // when the file is on a bind of another directory of the same disk)
                // yields a path that is not the file's. The path must lead back to it.
                let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(file_io("readlink"))?;
                let path = link.to_string_lossy().into_owned();
                if path.ends_with(" (deleted)") || leads_to(pid, &path, watch) {
                    return Ok(path);
                }
                last_error = format!("the file is not below mount {mount_point} ({path} through it is another)");
            }
            Err(e) => last_error = format!("open_by_handle_at on {mount_point}: {e}"),
        }
    }
    Err(FileError::refused(format!("watch {}: {last_error}", watch.wd)))
}

/// Whether `path` of process `pid`'s mount namespace is the watched file (its inode and
/// device).
fn leads_to(pid: i32, path: &str, watch: &WatchLine) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/root{path}")) else { return false };
    let (major, minor) = (watch.sdev >> 20, watch.sdev & 0xf_ffff);
    meta.ino() == watch.ino && libc::major(meta.dev()) == major && libc::minor(meta.dev()) == minor
}

/// An inotify entry from its fdinfo; `Err` names what failed.
pub(crate) fn dump_inotify(pid: i32, id: u32, flags: u32, fdinfo: &str) -> Result<pb::InotifyFileEntry, FileError> {
    let mut wds = Vec::new();
    for watch in parse_watches(fdinfo)? {
        let path = watched_path(pid, &watch)?;
        if path.ends_with(" (deleted)") {
            return Err(FileError::refused(format!("watch {} of a deleted file {path}", watch.wd)));
        }
        wds.push(pb::InotifyWdEntry {
            id,
            i_ino: watch.ino,
            mask: watch.mask,
            ignored_mask: watch.ignored_mask,
            s_dev: watch.sdev,
            wd: watch.wd,
            f_handle: pb::FhEntry {
                bytes: watch.handle.len() as u32,
                r#type: watch.handle_type as u32,
                handle: watch.handle.chunks(8).map(|c| {
                    let mut word = [0u8; 8];
                    word[..c.len()].copy_from_slice(c);
                    u64::from_ne_bytes(word)
                }).collect(),
                path: Some(path),
                mnt_id: None,
            },
        });
    }
    Ok(pb::InotifyFileEntry { id, flags, wd: wds, ..Default::default() })
}

/// Creates an inotify instance with every watch at its old watch descriptor (watch
/// descriptors count up, so a gap is crossed by adding and removing the watch again).
pub(crate) fn create_inotify(entry: &pb::InotifyFileEntry) -> Result<OwnedFd, FileError> {
    let fd = sys::file::create_inotify(0).map_err(file_io(format!("inotify {}", entry.id)))?;
    let mut wds: Vec<&pb::InotifyWdEntry> = entry.wd.iter().collect();
    wds.sort_by_key(|w| w.wd);
    for watch in wds {
        let path = watch.f_handle.path.as_deref().ok_or_else(|| FileError::refused(format!("inotify {}: watch {} has no path", entry.id, watch.wd)))?;
        // IN_MASK_ADD etc. are not part of the stored mask; only event bits and flags.
        let mask = watch.mask & !(libc::IN_MASK_ADD);
        loop {
            let wd = sys::file::inotify_add(fd.as_raw_fd(), path, mask).map_err(file_io(format!("inotify {}: watch {path}", entry.id)))?;
            if wd as u32 == watch.wd {
                break;
            }
            if wd as u32 > watch.wd {
                return Err(FileError::refused(format!("inotify {}: watch {path} got wd {wd}, wanted {}", entry.id, watch.wd)));
            }
            sys::file::inotify_remove(fd.as_raw_fd(), wd).map_err(file_io(format!("inotify {}: remove wd {wd}", entry.id)))?;
        }
    }
    sys::file::set_status_flags(&fd, entry.flags as i32).map_err(file_io(format!("inotify {}: flags", entry.id)))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines() {
        let text = "pos:\t0\nflags:\t00\nmnt_id:\t13\nino:\t1057\ninotify wd:2 ino:1a2b sdev:800001 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:2b1a000000000000\n";
        let w = &parse_watches(text).unwrap()[0];
        assert_eq!((w.wd, w.ino, w.sdev, w.mask, w.handle_type), (2, 0x1a2b, 0x800001, 0xfce, 1));
        assert_eq!(w.handle, vec![0x2b, 0x1a, 0, 0, 0, 0, 0, 0]);
    }
}
