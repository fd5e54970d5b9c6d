//! A tmpfs's contents, both ways, as CRIU keeps them (`tmpfs-dev-<s_dev>.tar.gz.img`,
//! gzipped GNU tar, one archive per superblock): [`archive`] walks a mount given as an
//! fd (a detached clone of that mount alone, so nothing mounted below it is walked and
//! nothing it hides is missed) and [`extract`] fills a new tmpfs given as an fd. The
//! format is `crust_images::tar`'s; this file does the file-system half.
//!
//! Both work relative to fds, never by path from crust's root: extraction opens every
//! parent directory below the mount with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! and creates the last component itself, so a hostile archive (a symlink, then a
//! file "through" it) cannot write outside the new tmpfs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crust_images::tar::{self, member_path, Entry, EntryKind, Extent, FileLayout};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, SeekFrom, Timestamps};
use rustix::io::Errno;

use super::{mount_io, MountError};
use crate::userns::IdMaps;

/// Writes the contents of the tmpfs mounted (alone) at `mount` into `out` as a gzipped
/// GNU tar archive; `name` names the mount in errors; with `owners`, the maps of the
/// tree's user namespace, owners are written in its view. Returns the entries written.
pub(crate) fn archive(mount: BorrowedFd<'_>, name: &str, owners: Option<&IdMaps>, out: impl Write) -> Result<u64, MountError> {
    let root = rustix::fs::openat(mount, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(errno(format!("{name}: open its root")))?;
    let mut walk = Walk { name, writer: tar::gzip_writer(out), links: HashMap::new(), entries: 0, owners };
    let stat = rustix::fs::fstat(&root).map_err(errno(format!("{name}: stat its root")))?;
    walk.put(&entry_of(Path::new(""), &stat, EntryKind::Directory), None)?;
    walk.directory(&root, Path::new(""))?;
    let entries = walk.entries;
    walk.writer.finish_gzip().map_err(|e| MountError::refused(format!("{name}: archive: {e}")))?;
    Ok(entries)
}

struct Walk<'a, W: Write> {
    name: &'a str,
    writer: tar::ArchiveWriter<W>,
    /// (dev, inode) of files with more than one link, by their first archived name.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
    owners: Option<&'a IdMaps>,
}

impl<W: Write> Walk<'_, W> {
    fn put(&mut self, entry: &Entry, file: Option<&mut std::fs::File>) -> Result<(), MountError> {
        let mapped;
        let entry = match self.owners {
            Some(maps) => {
                mapped = Entry { uid: maps.uid_inside(entry.uid), gid: maps.gid_inside(entry.gid), ..entry.clone() };
                &mapped
            }
            None => entry,
        };
        let result = match file {
            Some(file) => self.writer.append_file(entry, file),
            None => self.writer.append(entry),
        };
        result.map_err(|e| MountError::refused(format!("{}: archive {}: {e}", self.name, entry.display_name())))?;
        self.entries += 1;
        Ok(())
    }

    /// Archives what `dir` (at `rel` below the root) holds, each directory before its
    /// contents, in `readdir` order.
    fn directory(&mut self, dir: &OwnedFd, rel: &Path) -> Result<(), MountError> {
        let shown = |rel: &Path| if rel.as_os_str().is_empty() { "/".to_string() } else { format!("/{}", rel.display()) };
        let mut names = Vec::new();
        let reader = rustix::fs::Dir::read_from(dir).map_err(errno(format!("{}: read directory {}", self.name, shown(rel))))?;
        for item in reader {
            let item = item.map_err(errno(format!("{}: read directory {}", self.name, shown(rel))))?;
            let bytes = item.file_name().to_bytes();
            if bytes != b"." && bytes != b".." {
                names.push(OsStr::from_bytes(bytes).to_os_string());
            }
        }
        for file_name in names {
            let path = rel.join(&file_name);
            let mount_name = self.name;
            let what = |step: &str| format!("{mount_name}: {step} {}", shown(&path));
            let stat = rustix::fs::statat(dir, &*file_name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno(what("stat")))?;
            let file_type = FileType::from_raw_mode(stat.st_mode);
            if file_type != FileType::Directory && stat.st_nlink > 1 {
                let key = (stat.st_dev as u64, stat.st_ino as u64);
                if let Some(first) = self.links.get(&key) {
                    let target = member_path(first);
                    self.put(&entry_of(&path, &stat, EntryKind::HardLink { target }), None)?;
                    continue;
                }
                self.links.insert(key, path.clone());
            }
            match file_type {
                FileType::Directory => {
                    self.put(&entry_of(&path, &stat, EntryKind::Directory), None)?;
                    let sub = rustix::fs::openat(dir, &*file_name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                        .map_err(errno(what("open directory")))?;
                    self.directory(&sub, &path)?;
                }
                FileType::RegularFile => {
                    let file = rustix::fs::openat(dir, &*file_name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                        .map_err(errno(what("open")))?;
                    let size = stat.st_size as u64;
                    let data = data_extents(&file, size).map_err(errno(what("find the data of (SEEK_DATA)")))?;
                    let mut file = std::fs::File::from(file);
                    let entry = entry_of(&path, &stat, EntryKind::File(FileLayout { size, data }));
                    self.put(&entry, Some(&mut file))?;
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, &*file_name, Vec::new()).map_err(errno(what("readlink")))?;
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    self.put(&entry_of(&path, &stat, EntryKind::Symlink { target }), None)?;
                }
                FileType::CharacterDevice | FileType::BlockDevice => {
                    let (major, minor) = (rustix::fs::major(stat.st_rdev), rustix::fs::minor(stat.st_rdev));
                    let kind = if file_type == FileType::CharacterDevice { EntryKind::CharDevice { major, minor } } else { EntryKind::BlockDevice { major, minor } };
                    self.put(&entry_of(&path, &stat, kind), None)?;
                }
                FileType::Fifo => self.put(&entry_of(&path, &stat, EntryKind::Fifo), None)?,
                // GNU tar leaves sockets out ("socket ignored"), as CRIU's archives do.
                _ => log::info!("{}: {} is a socket: not archived (as GNU tar does)", self.name, shown(&path)),
            }
        }
        Ok(())
    }
}

fn entry_of(rel: &Path, stat: &rustix::fs::Stat, kind: EntryKind) -> Entry {
    Entry { path: member_path(rel), kind, mode: stat.st_mode & 0o7777, uid: stat.st_uid, gid: stat.st_gid, mtime: stat.st_mtime }
}

/// The data extents of a file of `size` bytes, from `SEEK_DATA`/`SEEK_HOLE`.
fn data_extents(file: &OwnedFd, size: u64) -> Result<Vec<Extent>, Errno> {
    let mut extents = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        let data = match rustix::fs::seek(file, SeekFrom::Data(offset)) {
            Ok(data) => data,
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e),
        };
        if data >= size {
            break;
        }
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data))?.min(size);
        extents.push(Extent { offset: data, length: hole - data });
        offset = hole;
    }
    Ok(extents)
}

/// Fills the new, empty tmpfs `mount` (its root as an fd) from the gzipped archive
/// `gzip`; `image` names the archive and `name` the mount in errors.
pub(crate) fn extract(mount: BorrowedFd<'_>, image: &str, name: &str, gzip: impl Read) -> Result<u64, MountError> {
    let mut reader = tar::gzip_reader(image, gzip);
    let mut directories: Vec<Entry> = Vec::new();
    let mut count = 0u64;
    let refuse = |e: tar::TarReadError| MountError::refused(format!("{name}: {e}"));
    while let Some(entry) = reader.next_entry().map_err(refuse)? {
        count += 1;
        let rel = entry.relative_path().to_path_buf();
        let what = |step: &str| format!("{name}: {step} /{} (from {image})", rel.display());
        if rel.as_os_str().is_empty() {
            directories.push(entry);
            continue;
        }
        let (parent, file_name) = parent_of(mount, &rel).map_err(errno(what("open the directory of")))?;
        let mode = Mode::from_raw_mode(entry.mode & 0o7777);
        match &entry.kind {
            EntryKind::Directory => {
                match rustix::fs::mkdirat(&parent, &*file_name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(errno(what("mkdir"))(e)),
                }
                directories.push(entry);
                continue;
            }
            EntryKind::File(layout) => {
                let file = rustix::fs::openat(&parent, &*file_name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))
                    .map_err(errno(what("create")))?;
                let file = std::fs::File::from(file);
                reader
                    .read_data(|offset, bytes| file.write_all_at(bytes, offset))
                    .map_err(|e| match &e {
                        tar::TarReadError::Sink { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                            MountError::refused(format!("{}: the tmpfs is full (its size= is too small for what the archive holds)", what("write")))
                        }
                        _ => refuse(e),
                    })?;
                file.set_len(layout.size).map_err(mount_io(what("set the size of")))?;
                finish_node(file.as_fd(), &entry).map_err(errno(what("set owner, mode and time of")))?;
                continue;
            }
            EntryKind::HardLink { target } => {
                let target_rel = tar::relative_to_root(target).to_path_buf();
                let (target_parent, target_name) = parent_of(mount, &target_rel).map_err(errno(what("open the link target's directory of")))?;
                rustix::fs::linkat(&target_parent, &*target_name, &parent, &*file_name, AtFlags::empty()).map_err(errno(what("link")))?;
                continue;
            }
            EntryKind::Symlink { target } => {
                rustix::fs::symlinkat(target.as_path(), &parent, &*file_name).map_err(errno(what("symlink")))?;
            }
            EntryKind::CharDevice { major, minor } => {
                rustix::fs::mknodat(&parent, &*file_name, FileType::CharacterDevice, mode, rustix::fs::makedev(*major, *minor)).map_err(errno(what("mknod")))?
            }
            EntryKind::BlockDevice { major, minor } => {
                rustix::fs::mknodat(&parent, &*file_name, FileType::BlockDevice, mode, rustix::fs::makedev(*major, *minor)).map_err(errno(what("mknod")))?
            }
            EntryKind::Fifo => rustix::fs::mknodat(&parent, &*file_name, FileType::Fifo, mode, 0).map_err(errno(what("mkfifo")))?,
            EntryKind::Socket => continue,
        }
        finish_at(&parent, &file_name, &entry).map_err(errno(what("set owner, mode and time of")))?;
    }
    // Directories last, deepest first: their times change with every entry made in them.
    for entry in directories.iter().rev() {
        let rel = entry.relative_path();
        let what = format!("{name}: set owner, mode and time of /{} (from {image})", rel.display());
        if rel.as_os_str().is_empty() {
            let root = rustix::fs::openat(mount, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(errno(what.clone()))?;
            finish_node(root.as_fd(), entry).map_err(errno(what))?;
        } else {
            let (parent, file_name) = parent_of(mount, rel).map_err(errno(what.clone()))?;
            finish_at(&parent, &file_name, entry).map_err(errno(what))?;
        }
    }
    Ok(count)
}

/// The directory holding `rel` (below `mount`, every component a real directory) and
/// `rel`'s last component.
fn parent_of(mount: BorrowedFd<'_>, rel: &Path) -> Result<(OwnedFd, std::ffi::OsString), Errno> {
    let file_name = rel.file_name().ok_or(Errno::INVAL)?.to_os_string();
    let parent = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent,
        None => Path::new("."),
    };
    let fd = rustix::fs::openat2(
        mount,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )?;
    Ok((fd, file_name))
}

fn timestamps(entry: &Entry) -> Timestamps {
    let time = rustix::fs::Timespec { tv_sec: entry.mtime, tv_nsec: 0 };
    Timestamps { last_access: time, last_modification: time }
}

/// Owner (first: chown clears set-id bits), mode and times of an open node.
fn finish_node(fd: BorrowedFd<'_>, entry: &Entry) -> Result<(), Errno> {
    rustix::fs::fchown(fd, Some(rustix::fs::Uid::from_raw(entry.uid)), Some(rustix::fs::Gid::from_raw(entry.gid)))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(entry.mode & 0o7777))?;
    rustix::fs::futimens(fd, &timestamps(entry))
}

/// Owner, mode and times of `file_name` in `parent`, without following a symlink
/// (whose mode cannot be set).
fn finish_at(parent: &OwnedFd, file_name: &OsStr, entry: &Entry) -> Result<(), Errno> {
    let owner = (Some(rustix::fs::Uid::from_raw(entry.uid)), Some(rustix::fs::Gid::from_raw(entry.gid)));
    rustix::fs::chownat(parent, file_name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
    if !matches!(entry.kind, EntryKind::Symlink { .. }) {
        rustix::fs::chmodat(parent, file_name, Mode::from_raw_mode(entry.mode & 0o7777), AtFlags::empty())?;
    }
    rustix::fs::utimensat(parent, file_name, &timestamps(entry), AtFlags::SYMLINK_NOFOLLOW)
}

fn errno(what: impl Into<String>) -> impl FnOnce(Errno) -> MountError {
    let what = what.into();
    move |e| MountError::Io { what, source: io::Error::from_raw_os_error(e.raw_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with every kind the archive holds, archived and extracted again into
    /// plain directories (a tmpfs needs root; the walk does not care).
    #[test]
    fn a_tree_survives_archive_and_extract() {
        let base = std::env::temp_dir().join(format!("crust-tmpfs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let from = base.join("from");
        let to = base.join("to");
        std::fs::create_dir_all(from.join("dir/sub")).expect("mkdir");
        std::fs::create_dir_all(&to).expect("mkdir");
        std::fs::write(from.join("dir/file"), b"hello").expect("write");
        let holes = std::fs::File::create(from.join("holes")).expect("create");
        holes.write_all_at(b"data", 1 << 20).expect("write");
        holes.set_len(4 << 20).expect("size");
        std::fs::hard_link(from.join("dir/file"), from.join("link")).expect("link");
        std::os::unix::fs::symlink("dir/file", from.join("sym")).expect("symlink");
        let long = "x".repeat(150);
        std::fs::write(from.join("dir/sub").join(&long), b"long").expect("write");
        rustix::fs::mknodat(rustix::fs::CWD, &from.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o640), 0).expect("fifo");

        let open = |path: &Path| rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("open");
        let mut bytes = Vec::new();
        let entries = archive(open(&from).as_fd(), "test", None, &mut bytes).expect("archive");
        assert_eq!(entries, 9);
        let extracted = extract(open(&to).as_fd(), "tmpfs-dev-1.tar.gz.img", "test", bytes.as_slice()).expect("extract");
        assert_eq!(extracted, 9);

        assert_eq!(std::fs::read(to.join("dir/file")).expect("read"), b"hello");
        assert_eq!(std::fs::read(to.join("dir/sub").join(&long)).expect("read"), b"long");
        assert_eq!(std::fs::read_link(to.join("sym")).expect("readlink"), Path::new("dir/file"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(to.join("link")).expect("stat").ino(), std::fs::metadata(to.join("dir/file")).expect("stat").ino());
        let fifo = std::fs::symlink_metadata(to.join("fifo")).expect("stat");
        assert_eq!(fifo.mode() & 0o7777, 0o640);
        let holes = rustix::fs::open(&to.join("holes"), OFlags::RDONLY, Mode::empty()).expect("open");
        let size = rustix::fs::fstat(&holes).expect("stat").st_size as u64;
        assert_eq!(size, 4 << 20);
        let data = data_extents(&holes, size).expect("extents");
        assert!(data.iter().all(|e| e.offset <= 1 << 20 && e.end() >= (1 << 20) + 4 && e.length <= 1 << 20), "{data:?}");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn an_archive_cannot_write_through_a_symlink() {
        let base = std::env::temp_dir().join(format!("crust-tmpfs-escape-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let to = base.join("to");
        std::fs::create_dir_all(&to).expect("mkdir");
        let mut writer = tar::gzip_writer(Vec::new());
        let entry = |path: &str, kind| Entry { path: member_path(Path::new(path)), kind, mode: 0o755, uid: 0, gid: 0, mtime: 0 };
        writer.append(&entry("", EntryKind::Directory)).expect("root");
        writer.append(&entry("out", EntryKind::Symlink { target: base.clone() })).expect("symlink");
        writer.append(&entry("out/escaped", EntryKind::Fifo)).expect("fifo");
        let bytes = writer.finish_gzip().expect("finish");
        let root = rustix::fs::open(&to, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("open");
        let error = extract(root.as_fd(), "tmpfs-dev-1.tar.gz.img", "test", bytes.as_slice()).expect_err("escape");
        assert!(error.to_string().contains("open the directory of /out/escaped"), "{error}");
        assert!(!base.join("escaped").exists());
        let _ = std::fs::remove_dir_all(&base);
    }
}
