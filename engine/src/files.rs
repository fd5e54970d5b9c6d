//! Open files: which fds a process holds, how they are written to files.img, fdinfo,
//! remap-fpath and ghost-file images, and how the restore child opens them again.
//!
//! Dump side runs in crust against /proc of the stopped target; restore side runs in the
//! forked child before the restorer, where fds are still ordinary fds of "this" process.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crust_images::pb;
use crust_images::{ImageKind, ImageReader, ImageWriter};

use crate::dump::{io_err, DumpError};
use crate::procfs;
use crate::sys;

/// The files the images refer to, by id (files.img), plus ghost copies of unlinked ones.
#[derive(Default)]
pub(crate) struct FileTable {
    pub(crate) entries: Vec<pb::FileEntry>,
    by_path: BTreeMap<(PathBuf, i32), u32>,
    /// Every dumped fd of every process so far, by (dev, inode) of its file: only fds of
    /// one file can share an open file description, so kcmp runs within these.
    by_inode: BTreeMap<(u64, u64), Vec<(i32, u32, u32)>>,
    /// (reg file id, ghost id, source to copy from)
    ghosts: Vec<(u32, u32, PathBuf, fs::Metadata)>,
    /// Ghosts of mapped unlinked files, by (dev, inode).
    ghost_by_inode: BTreeMap<(u64, u64), u32>,
}

impl FileTable {
    fn next_id(&self) -> u32 {
        self.entries.len() as u32 + 1
    }

    fn reg_entry(id: u32, name: &Path, flags: i32, pos: u64, meta: Option<&fs::Metadata>) -> pb::FileEntry {
        pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags: flags as u32,
                pos,
                fown: pb::FownEntry::default(),
                name: name.to_string_lossy().into_owned(),
                size: meta.map(|m| m.len()),
                mode: meta.map(|m| m.mode()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A file by path, shared among the areas and fs entries that name it.
    pub(crate) fn add_path(&mut self, pid: i32, path: &Path, flags: i32) -> Result<u32, DumpError> {
        if let Some(&id) = self.by_path.get(&(path.to_path_buf(), flags)) {
            return Ok(id);
        }
        let meta = fs::metadata(path).map_err(io_err(pid, format!("stat {}", path.display())))?;
        let id = self.next_id();
        self.entries.push(Self::reg_entry(id, path, flags, 0, Some(&meta)));
        self.by_path.insert((path.to_path_buf(), flags), id);
        Ok(id)
    }

    /// A mapped file that was unlinked: its contents are copied into a ghost image from
    /// `/proc/PID/map_files/START-END`; one ghost per inode, whoever maps it.
    pub(crate) fn add_deleted_mapping(&mut self, pid: i32, start: u64, end: u64, name: &str, flags: i32) -> Result<u32, DumpError> {
        let source = PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"));
        let meta = fs::metadata(&source).map_err(io_err(pid, format!("stat {}", source.display())))?;
        let key = (meta.dev(), meta.ino());
        if let Some(&id) = self.ghost_by_inode.get(&key) {
            return Ok(id);
        }
        let original = name.strip_suffix(" (deleted)").unwrap_or(name);
        let id = self.next_id();
        let ghost_id = self.ghosts.len() as u32 + 1;
        self.entries.push(Self::reg_entry(id, Path::new(original), flags, 0, Some(&meta)));
        self.ghosts.push((id, ghost_id, source, meta));
        self.ghost_by_inode.insert(key, id);
        Ok(id)
    }
}

/// One open fd of the target.
pub(crate) struct DumpedFd {
    fd: u32,
    id: u32,
    cloexec: bool,
}

pub(crate) fn collect_fds(pid: i32, shell_job: bool, files: &mut FileTable) -> Result<Vec<DumpedFd>, DumpError> {
    let dir = format!("/proc/{pid}/fd");
    let mut numbers: Vec<u32> = fs::read_dir(&dir)
        .map_err(io_err(pid, format!("read {dir}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let mut out = Vec::new();
    for fd in numbers {
        let fd_path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let link = fs::read_link(&fd_path).map_err(io_err(pid, format!("readlink fd {fd}")))?;
        let info_text = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
            .map_err(io_err(pid, format!("read fdinfo {fd}")))?;
        let info = procfs::parse_fdinfo(&info_text).map_err(|source| DumpError::Parse { pid, source })?;
        let meta = fs::metadata(&fd_path).map_err(io_err(pid, format!("stat fd {fd}")))?;
        let kind = meta.mode() & libc::S_IFMT;
        let link_text = link.to_string_lossy().into_owned();
        let is_tty = kind == libc::S_IFCHR && (link_text.starts_with("/dev/pts/") || link_text.starts_with("/dev/tty"));
        let supported = link_text.starts_with('/')
            && (kind == libc::S_IFREG || kind == libc::S_IFDIR || (kind == libc::S_IFCHR && (!is_tty || shell_job)));
        if !supported {
            return Err(DumpError::Unsupported { pid, what: format!("fd {fd} ({link_text})") });
        }
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let open_flags = (info.flags & !(libc::O_CLOEXEC as u32)) as i32;
        // An fd sharing its open file description with an earlier one (dup, fork)
        // names the same file id.
        // Only fds of the same file can share a description: kcmp within those.
        let mut shared = None;
        for &(other_pid, other_fd, other_id) in files.by_inode.get(&(meta.dev(), meta.ino())).into_iter().flatten() {
            if sys::same_file_description(other_pid, other_fd, pid, fd).map_err(io_err(pid, format!("kcmp fd {fd}")))? {
                shared = Some(other_id);
                break;
            }
        }
        let id = shared.unwrap_or_else(|| files.next_id());
        files.by_inode.entry((meta.dev(), meta.ino())).or_default().push((pid, fd, id));
        if shared.is_some() {
            out.push(DumpedFd { fd, id, cloexec });
            continue;
        }
        if let Some(original) = link_text.strip_suffix(" (deleted)").filter(|_| kind == libc::S_IFREG && meta.nlink() == 0) {
            let ghost_id = files.ghosts.len() as u32 + 1;
            files.entries.push(FileTable::reg_entry(id, Path::new(original), open_flags, info.pos, Some(&meta)));
            files.ghosts.push((id, ghost_id, fd_path, meta));
        } else {
            files.entries.push(FileTable::reg_entry(id, &link, open_flags, info.pos, Some(&meta)));
        }
        out.push(DumpedFd { fd, id, cloexec });
    }
    Ok(out)
}


/// Writes files.img, fdinfo-N.img and, for unlinked files, ghost-file and remap-fpath.
/// Writes one process's fd table, fdinfo-N.img (N is its files id).
pub(crate) fn write_fdinfo(pid: i32, dir: &Path, fds: &[DumpedFd], files_id: u32) -> Result<(), DumpError> {
    let image = |source| DumpError::Image { pid, source };
    let mut w = ImageWriter::create(dir, ImageKind::Fdinfo, files_id as u64).map_err(image)?;
    for fd in fds {
        w.write_entry(&pb::FdinfoEntry {
            id: fd.id,
            flags: if fd.cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: pb::FdTypes::Reg as i32,
            fd: fd.fd,
            ..Default::default()
        })
        .map_err(image)?;
    }
    w.finish().map_err(image)?;
    Ok(())
}

/// Writes the tree's files.img and, for unlinked files, ghost-file and remap-fpath.
pub(crate) fn write_images(pid: i32, dir: &Path, files: &FileTable) -> Result<(), DumpError> {
    let image = |source| DumpError::Image { pid, source };
    let mut w = ImageWriter::create(dir, ImageKind::Files, 0).map_err(image)?;
    for entry in &files.entries {
        w.write_entry(entry).map_err(image)?;
    }
    w.finish().map_err(image)?;

    if !files.ghosts.is_empty() {
        let mut remap = ImageWriter::create(dir, ImageKind::RemapFpath, 0).map_err(image)?;
        for (reg_id, ghost_id, source, meta) in &files.ghosts {
            let mut w = ImageWriter::create(dir, ImageKind::GhostFile, *ghost_id as u64).map_err(image)?;
            w.write_entry(&pb::GhostFileEntry {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode(),
                dev: Some(meta.dev() as u32),
                ino: Some(meta.ino()),
                size: Some(meta.len()),
                ..Default::default()
            })
            .map_err(image)?;
            let mut contents = File::open(source).map_err(io_err(pid, format!("open {}", source.display())))?;
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = io::Read::read(&mut contents, &mut chunk).map_err(io_err(pid, "read unlinked file"))?;
                if n == 0 {
                    break;
                }
                w.write_payload(&chunk[..n]).map_err(image)?;
            }
            w.finish().map_err(image)?;
            remap
                .write_entry(&pb::RemapFilePathEntry {
                    orig_id: *reg_id,
                    remap_id: *ghost_id,
                    remap_type: Some(pb::RemapType::Ghost as i32),
                })
                .map_err(image)?;
        }
        remap.finish().map_err(image)?;
    }
    Ok(())
}

/// Every open file description of a restored tree, opened once by crust before the
/// first fork, at fd numbers above every fd of the tree: each restored process inherits
/// them all through fork, installs the ones it holds at their numbers, and closes the
/// rest. Descriptions shared between fds, or between processes, so stay shared.
pub(crate) struct Broker {
    /// file id → broker fd
    pub(crate) fds: BTreeMap<u32, i32>,
}

impl Broker {
    /// Opens the description of every file id that some process holds, at `base`,
    /// `base + 1`, ... Runs in crust: errors name the file and leave nothing behind.
    pub(crate) fn open(
        files: &BTreeMap<u32, pb::RegFileEntry>,
        ghosts: &BTreeMap<u32, u32>,
        dir: &Path,
        ids: impl IntoIterator<Item = u32>,
        base: i32,
    ) -> Result<Broker, String> {
        let mut broker = Broker { fds: BTreeMap::new() };
        for id in ids {
            if broker.fds.contains_key(&id) {
                continue;
            }
            let number = base + broker.fds.len() as i32;
            let reg = files.get(&id).ok_or(format!("file id {id} is not in files.img"))?;
            let flags = reg.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
            let opened = match ghosts.get(&id) {
                Some(ghost_id) => open_ghost(dir, *ghost_id, reg, flags),
                None => sys::open_raw(Path::new(&reg.name), flags, 0).map_err(|e| format!("open {}: {e}", reg.name)),
            };
            let opened = match opened {
                Ok(fd) => fd,
                Err(error) => {
                    broker.close();
                    return Err(error);
                }
            };
            let placed = (|| {
                if reg.pos != 0 {
                    sys::seek_to(opened, reg.pos).map_err(|e| format!("seek {} to {}: {e}", reg.name, reg.pos))?;
                }
                sys::place_fd(opened, number, true).map_err(|e| format!("place {} at fd {number}: {e}", reg.name))
            })();
            if opened != number {
                sys::close_fd(opened);
            }
            if let Err(error) = placed {
                broker.close();
                return Err(error);
            }
            broker.fds.insert(id, number);
        }
        Ok(broker)
    }

    /// The broker's fd numbers.
    pub(crate) fn numbers(&self) -> Vec<i32> {
        self.fds.values().copied().collect()
    }

    /// Closes every broker fd in this process.
    pub(crate) fn close(&self) {
        for &fd in self.fds.values() {
            sys::close_fd(fd);
        }
    }

    /// Installs one process's fds at their numbers, with their close-on-exec flags.
    pub(crate) fn install(&self, fds: &[pb::FdinfoEntry]) -> Result<(), String> {
        for fd in fds {
            let source = self.fds.get(&fd.id).ok_or(format!("fd {}: file id {} was not opened", fd.fd, fd.id))?;
            let cloexec = fd.flags & libc::FD_CLOEXEC as u32 != 0;
            sys::place_fd(*source, fd.fd as i32, cloexec).map_err(|e| format!("fd {}: {e}", fd.fd))?;
        }
        Ok(())
    }
}

/// Recreates an unlinked file from its ghost image: written beside its old name,
/// opened with the dumped flags, then unlinked again.
fn open_ghost(dir: &Path, ghost_id: u32, reg: &pb::RegFileEntry, flags: i32) -> Result<i32, String> {
    let image = dir.join(ImageKind::GhostFile.file_name(ghost_id as u64));
    let name = image.display().to_string();
    let mut reader = ImageReader::open(&image).map_err(|e| format!("{name}: {e}"))?;
    let entry: pb::GhostFileEntry = reader
        .next_entry()
        .map_err(|e| format!("{name}: {e}"))?
        .ok_or(format!("{name}: no ghost_file_entry"))?;
    let contents = reader.read_payload(entry.size.unwrap_or(0)).map_err(|e| format!("{name}: {e}"))?;
    let mut path = PathBuf::from(&reg.name);
    if path.exists() {
        path = PathBuf::from(format!("{}.crust-ghost-{ghost_id}", reg.name));
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(entry.mode & 0o7777)
            .open(&path)
            .map_err(|e| format!("create ghost {}: {e}", path.display()))?;
        file.write_all(&contents).map_err(|e| format!("write ghost {}: {e}", path.display()))?;
    }
    let fd = sys::open_raw(&path, flags, 0).map_err(|e| format!("open ghost {}: {e}", path.display()));
    let _ = fs::remove_file(&path);
    fd
}

