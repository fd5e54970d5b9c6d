//! memfd files. Each inode (name, size, mode, owner, seals) goes once to memfd.img and
//! its data pages to pagemap-shmem-INO.img plus a pages image, as CRIU writes them; each
//! open description, and each mapping, is a MEMFD entry of files.img naming the inode.
//! Restore creates the inode with memfd_create and opens every description of it again
//! through /proc/self/fd, so fds, mappings and processes keep sharing one inode.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{file_io, FileError};
use crust_images::{pb, ImageKind, ImageReader};

use crate::sys;

/// The memfd name under which CRIU 4.2 records a shared anonymous object
/// (MAP_SHARED|MAP_ANONYMOUS, or /dev/zero mapped MAP_SHARED): its areas are MEMFD file
/// mappings of an inode of this name (`memory/shmem.rs` reads them back as shared
/// anonymous memory).
pub(crate) const SHARED_ANON_NAME: &str = "/dev/zero";

/// CRIU's pagemap entry flag: the pages are in this image's pages file.
const PE_PRESENT: u32 = 1 << 2;
/// Largest read or write of memfd data at once.
const CHUNK: u64 = 1 << 20;

/// Every memfd inode met during a dump, by inode number.
#[derive(Default)]
pub(crate) struct MemfdInodes {
    by_ino: BTreeMap<u64, u32>,
    /// Each inode's entry and a path its data can be read through.
    entries: Vec<(pb::MemfdInodeEntry, PathBuf)>,
}

impl MemfdInodes {
    /// The inode id of the memfd behind `source` (a /proc/PID/fd or map_files link of the
    /// target); `link` is its name as /proc shows it (`/memfd:NAME (deleted)`).
    pub(crate) fn add(&mut self, source: &Path, link: &str) -> Result<u32, FileError> {
        let name = link.strip_prefix("/memfd:").map(|n| n.strip_suffix(" (deleted)").unwrap_or(n)).unwrap_or(link);
        self.add_named(source, name)
    }

    /// [`MemfdInodes::add`] for an inode recorded under `name` (memfd_inode_entry.name):
    /// a shared anonymous object is the memfd [`SHARED_ANON_NAME`], as CRIU 4.2 writes it.
    pub(crate) fn add_named(&mut self, source: &Path, name: &str) -> Result<u32, FileError> {
        let file = File::open(source).map_err(file_io(format!("open {}", source.display())))?;
        let meta = file.metadata().map_err(file_io(format!("stat {}", source.display())))?;
        if let Some(&id) = self.by_ino.get(&meta.ino()) {
            return Ok(id);
        }
        if sys::file::is_hugetlbfs(&file).map_err(file_io(format!("fstatfs {}", source.display())))? {
            return Err(FileError::refused("hugetlb memfd"));
        }
        // Without MFD_ALLOW_SEALING the kernel reports F_SEAL_SEAL: recreated the same.
        let seals = sys::file::seals(&file).map_err(file_io("F_GET_SEALS"))?;
        let id = self.entries.len() as u32 + 1;
        self.entries.push((
            pb::MemfdInodeEntry {
                name: name.to_string(),
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.len(),
                shmid: meta.ino() as u32,
                seals,
                inode_id: id as u64,
                hugetlb_flag: None,
                mode: Some(meta.mode() & 0o7777),
            },
            source.to_path_buf(),
        ));
        self.by_ino.insert(meta.ino(), id);
        Ok(id)
    }

    /// Writes memfd.img and each inode's data: pages-N.img from `first_pages_id` on.
    /// Holes are skipped (SEEK_DATA), so sparse memfds stay sparse.
    /// With `owners`, the maps of the tree's own user namespace, owners are written in
    /// its view.
    pub(crate) fn write(&self, dir: &Path, first_pages_id: u32, owners: Option<&crate::userns::IdMaps>) -> Result<(), FileError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut w = crate::private::create_image(dir, ImageKind::MemfdInode, 0)?;
        for (entry, _) in &self.entries {
            match owners {
                Some(maps) => w.write_entry(&pb::MemfdInodeEntry { uid: maps.uid_inside(entry.uid), gid: maps.gid_inside(entry.gid), ..entry.clone() })?,
                None => w.write_entry(entry)?,
            }
        }
        w.finish()?;
        for (index, (entry, source)) in self.entries.iter().enumerate() {
            let file = File::open(source).map_err(file_io(format!("open {}", source.display())))?;
            let what = format!("memfd {}", entry.name);
            write_shmem_pages(&file, entry.size, dir, entry.shmid as u64, first_pages_id + index as u32, &what)?;
        }
        Ok(())
    }
}

/// Writes the data of a shmem file (a memfd, a System V segment) of `size` bytes as
/// pagemap-shmem-`shmid`.img and pages-`pages_id`.img, as CRIU lays them out. Holes are
/// skipped (SEEK_DATA), so sparse files stay sparse.
pub(crate) fn write_shmem_pages(file: &File, size: u64, dir: &Path, shmid: u64, pages_id: u32, what: &str) -> Result<(), FileError> {
    let page = sys::page_size();
    let mut pagemap = crate::private::create_image(dir, ImageKind::PagemapShmem, shmid)?;
    pagemap.write_entry(&pb::PagemapHead { pages_id })?;
    let pages_path = dir.join(ImageKind::Pages.file_name(pages_id as u64));
    let pages = crate::private::create_file(&pages_path).map_err(file_io(format!("create {}", pages_path.display())))?;
    let end = size.div_ceil(page) * page;
    let (mut at, mut written) = (0u64, 0u64);
    let mut buf = Vec::new();
    while at < end {
        let Some(data) = sys::file::seek_data_or_hole(file, at, true).map_err(file_io(format!("SEEK_DATA in {what}")))? else {
            break;
        };
        let hole = sys::file::seek_data_or_hole(file, data, false)
            .map_err(file_io(format!("SEEK_HOLE in {what}")))?
            .unwrap_or(size);
        let (start, stop) = (data / page * page, (hole.div_ceil(page) * page).min(end));
        if stop <= start {
            break;
        }
        let mut offset = start;
        while offset < stop {
            let len = CHUNK.min(stop - offset) as usize;
            buf.clear();
            buf.resize(len, 0);
            // Past the size the page reads short: the rest stays zero.
            let mut got = 0;
            while got < len {
                match file.read_at(&mut buf[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(source) => return Err(FileError::Io { what: format!("read {what} at {}", offset + got as u64), source }),
                }
            }
            pages.write_all_at(&buf, written).map_err(file_io(format!("write {}", pages_path.display())))?;
            written += len as u64;
            offset += len as u64;
        }
        pagemap.write_entry(&pb::PagemapEntry::run(start, (stop - start) / page, PE_PRESENT))?;
        at = stop;
    }
    Ok(pagemap.finish()?)
}

/// Fills a shmem file of `size` bytes from pagemap-shmem-`shmid`.img and its pages image
/// (what `write_shmem_pages` wrote); `what` names the object in errors.
pub(crate) fn fill_shmem_pages(file: &File, size: u64, dir: &Path, shmid: u64, what: &str) -> Result<(), FileError> {
    let page = sys::page_size();
    let pagemap_path = dir.join(ImageKind::PagemapShmem.file_name(shmid));
    let name = pagemap_path.display().to_string();
    let mut reader = ImageReader::open(&pagemap_path)?;
    let head: pb::PagemapHead = reader.next_entry()?.ok_or_else(|| FileError::refused(format!("{name}: no pagemap head")))?;
    let pages_path = dir.join(ImageKind::Pages.file_name(head.pages_id as u64));
    let pages = File::open(&pages_path).map_err(file_io(format!("open {}", pages_path.display())))?;
    let end = size.div_ceil(page) * page;
    let mut from = 0u64;
    let mut buf = Vec::new();
    while let Some(run) = reader.next_entry::<pb::PagemapEntry>()? {
        let count = run.nr_pages.unwrap_or(run.compat_nr_pages as u64);
        let bytes = count.checked_mul(page).filter(|&b| run.vaddr % page == 0 && run.vaddr.checked_add(b).is_some_and(|e| e <= end));
        let Some(bytes) = bytes else {
            return Err(FileError::refused(format!("{name}: pages at offset {:#x} ({count} pages) outside {what} of {size} bytes (pagemap_entry.vaddr)", run.vaddr)));
        };
        let mut done = 0;
        while done < bytes {
            let len = CHUNK.min(bytes - done) as usize;
            buf.resize(len, 0);
            pages.read_exact_at(&mut buf, from).map_err(file_io(format!("read {} at {from}", pages_path.display())))?;
            // The last page reaches past the size: write only up to it.
            let keep = len.min(size.saturating_sub(run.vaddr + done) as usize);
            file.write_all_at(&buf[..keep], run.vaddr + done).map_err(file_io(format!("fill {what}")))?;
            from += len as u64;
            done += len as u64;
        }
    }
    Ok(())
}

/// Creates the inodes of memfd.img named in `wanted` with their data, owner, mode and
/// seals: inode id → fd.
pub(crate) fn create_inodes(dir: &Path, wanted: &std::collections::BTreeSet<u32>) -> Result<BTreeMap<u32, OwnedFd>, FileError> {
    let path = dir.join(ImageKind::MemfdInode.file_name(0));
    let mut made = BTreeMap::new();
    if !path.exists() {
        return Ok(made);
    }
    let entries = crust_images::read_entries::<pb::MemfdInodeEntry>(&path)?;
    for entry in entries.iter().filter(|e| wanted.contains(&(e.inode_id as u32))) {
        let fd = create_inode(dir, entry)?;
        made.insert(entry.inode_id as u32, fd);
    }
    Ok(made)
}

fn create_inode(dir: &Path, entry: &pb::MemfdInodeEntry) -> Result<OwnedFd, FileError> {
    let fd = sys::file::create_memfd(&entry.name, libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC)
        .map_err(file_io(format!("memfd_create {}", entry.name)))?;
    let file = File::from(fd);
    file.set_len(entry.size).map_err(file_io(format!("memfd {}: set size {}", entry.name, entry.size)))?;
    fill_shmem_pages(&file, entry.size, dir, entry.shmid as u64, &format!("memfd {}", entry.name))?;
    let fd = OwnedFd::from(file);
    sys::file::set_owner_and_mode(&fd, entry.uid, entry.gid, entry.mode.unwrap_or(0o777))
        .map_err(file_io(format!("memfd {}: owner and mode", entry.name)))?;
    if entry.seals != 0 {
        sys::file::add_seals(&fd, entry.seals).map_err(file_io(format!("memfd {}: add seals {:#x}", entry.name, entry.seals)))?;
    }
    Ok(fd)
}

/// One open description of a memfd inode: opened again through /proc/self/fd with the
/// dumped flags, at the dumped offset.
pub(crate) fn open_description(inodes: &BTreeMap<u32, OwnedFd>, entry: &pb::MemfdFileEntry) -> Result<OwnedFd, FileError> {
    let inode = inodes.get(&entry.inode_id).ok_or_else(|| FileError::refused(format!("memfd file {} names inode {}, not in memfd.img (memfd_file_entry.inode_id)", entry.id, entry.inode_id)))?;
    let flags = entry.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
    let fd = sys::file::reopen(inode, flags).map_err(file_io(format!("open memfd file {}", entry.id)))?;
    if entry.pos != 0 {
        sys::seek_to(fd.as_raw_fd(), entry.pos).map_err(file_io(format!("seek memfd file {} to {}", entry.id, entry.pos)))?;
    }
    Ok(fd)
}
