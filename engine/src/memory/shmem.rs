//! Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, shared through fork, or /dev/zero
//! mapped shared). CRIU 4.2.1 on Linux 6.18 writes it, and crust since 2026-12-06
//! (`memory/dump.rs`, `files/memfd.rs`), as shared mappings (`VMA_FILE_SHARED |
//! VMA_AREA_MEMFD`) of a memfd inode named `/dev/zero`, one inode per object, whose
//! contents go once per dump into `pagemap-shmem-INODE.img` with a pages image of their
//! own, run addresses being offsets in the object. CRIU's older form, and crust's before,
//! is a `VMA_ANON_SHARED` area naming the object's inode as `shmid`, with the same
//! pagemap-shmem image; [`SharedAnonObjects`] still writes that image for every area
//! that has the bit at dump time (System V attaches).
//!
//! The contents are read from the object itself (through `/proc/PID/map_files`), not
//! from the processes' page tables: a page of the object that no dumped process maps
//! (shrunk or moved away with mremap, dropped with MADV_DONTNEED, reclaimed) still holds
//! data.
//!
//! On restore, [`memfd_areas_as_shared_anon`] turns the memfd form back into shared
//! anonymous areas, so that the restored area is what it was (`/dev/zero (deleted)` in
//! /proc/PID/maps, not a memfd). crust creates each object once, fills it from its
//! pagemap-shmem image and lets every process inherit it through fork
//! (`restore/mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use crust_images::pb;

use crate::files::memfd::{fill_shmem_pages, write_shmem_pages, SHARED_ANON_NAME};
use crate::files::FileError;
use crate::model::vma as vs;

/// The shared anonymous objects met during a dump, by shmid (the object's inode).
#[derive(Default)]
pub(crate) struct SharedAnonObjects {
    /// shmid → (a path the object reads through, largest pgoff + length of an area).
    objects: BTreeMap<u64, (PathBuf, u64)>,
}

impl SharedAnonObjects {
    /// Notes every shared anonymous area of process `pid` (host pid, still frozen) among
    /// its dumped `vmas`.
    pub(crate) fn add_areas(&mut self, pid: i32, vmas: &[pb::VmaEntry]) {
        for vma in vmas.iter().filter(|v| v.status & vs::ANON_SHARED != 0) {
            let extent = vma.pgoff + (vma.end - vma.start);
            let source = || PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", vma.start, vma.end));
            let entry = self.objects.entry(vma.shmid).or_insert_with(|| (source(), 0));
            entry.1 = entry.1.max(extent);
        }
    }

    /// How many objects there are (each takes one pages id).
    pub(crate) fn len(&self) -> u32 {
        self.objects.len() as u32
    }

    /// Writes each object's contents as pagemap-shmem-SHMID.img, with pages images
    /// numbered from `first_pages_id`. Runs while the tree is frozen.
    pub(crate) fn write(&self, dir: &Path, first_pages_id: u32) -> Result<(), FileError> {
        for (index, (shmid, (source, extent))) in self.objects.iter().enumerate() {
            let what = format!("shared anonymous memory {shmid}");
            let file = File::open(source).map_err(crate::files::file_io(format!("open {} ({what})", source.display())))?;
            write_shmem_pages(&file, *extent, dir, *shmid, first_pages_id + index as u32, &what)?;
        }
        Ok(())
    }
}

/// Fills shared anonymous object `shmid` of `size` bytes (just created, all zeros) from
/// its pagemap-shmem image. Images without one (crust's before 2026-12-06, which kept
/// the pages in each process's pagemap) leave it as it is.
pub(crate) fn fill_object(file: &File, size: u64, dir: &Path, shmid: u64) -> Result<(), FileError> {
    let image = dir.join(crust_images::ImageKind::PagemapShmem.file_name(shmid));
    if !image.exists() {
        return Ok(());
    }
    fill_shmem_pages(file, size, dir, shmid, &format!("shared anonymous memory {shmid}"))
}

/// Turns the areas that map a memfd inode named [`SHARED_ANON_NAME`] (CRIU 4.2's form of
/// a shared anonymous object) back into shared anonymous areas of the object: status
/// `VMA_ANON_SHARED`, MAP_ANONYMOUS, `shmid` the inode's (whose pagemap-shmem image holds
/// the data), the offset kept. An inode is taken for a real memfd and left alone when a
/// file id in `held` (every fd's, and every file in a socket queue) names it, or when an
/// area maps it otherwise than shared. `file_entries`: files.img; `inodes`: memfd.img.
/// Returns the size of each object turned back (the inode's size), by `shmid`.
pub(crate) fn memfd_areas_as_shared_anon<'a>(
    areas: impl IntoIterator<Item = &'a mut pb::VmaEntry>,
    file_entries: &[pb::FileEntry],
    inodes: &[pb::MemfdInodeEntry],
    held: &BTreeSet<u32>,
) -> BTreeMap<u64, u64> {
    let inode_of: BTreeMap<u32, u32> = file_entries.iter().filter_map(|f| Some((f.id, f.memfd.as_ref()?.inode_id))).collect();
    let mut candidates: BTreeMap<u32, &pb::MemfdInodeEntry> =
        inodes.iter().filter(|i| i.name == SHARED_ANON_NAME).map(|i| (i.inode_id as u32, i)).collect();
    for id in held {
        if let Some(inode) = inode_of.get(id) {
            candidates.remove(inode);
        }
    }
    let areas: Vec<&mut pb::VmaEntry> = areas.into_iter().filter(|v| v.status & vs::MEMFD != 0).collect();
    for vma in &areas {
        let shared = vma.flags as i32 & MAP_TYPE == libc::MAP_SHARED && vma.status & vs::FILE_SHARED != 0;
        if let (false, Some(inode)) = (shared, inode_of.get(&(vma.shmid as u32))) {
            candidates.remove(inode);
        }
    }
    let mut sizes = BTreeMap::new();
    for vma in areas {
        let Some(inode) = inode_of.get(&(vma.shmid as u32)).and_then(|inode| candidates.get(inode)) else { continue };
        vma.status = vs::REGULAR | vs::ANON_SHARED;
        vma.flags |= libc::MAP_ANONYMOUS as u32;
        vma.shmid = u64::from(inode.shmid);
        vma.fdflags = None;
        sizes.insert(vma.shmid, inode.size);
    }
    sizes
}

/// The map-type bits of mmap's flags.
const MAP_TYPE: i32 = 0x0f;

#[cfg(test)]
mod tests {
    use super::*;

    fn area(start: u64, end: u64, pgoff: u64, shmid: u64, status: u32) -> pb::VmaEntry {
        pb::VmaEntry { start, end, pgoff, shmid, status, ..Default::default() }
    }

    #[test]
    fn each_object_once_with_the_largest_extent_of_its_areas() {
        let mut objects = SharedAnonObjects::default();
        // The parent maps pgoff 0-15 of object 7; a child moved pgoff 8-11 elsewhere and
        // maps pgoff 12-27 of it through a grown view; object 9 is another one.
        objects.add_areas(10, &[area(0x10000, 0x20000, 0, 7, vs::REGULAR | vs::ANON_SHARED), area(0x30000, 0x31000, 0, 0, vs::REGULAR | vs::ANON_PRIVATE)]);
        objects.add_areas(11, &[area(0x50000, 0x60000, 0xc000, 7, vs::REGULAR | vs::ANON_SHARED), area(0x70000, 0x72000, 0, 9, vs::REGULAR | vs::ANON_SHARED)]);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects.objects[&7], (PathBuf::from("/proc/10/map_files/10000-20000"), 0x1c000));
        assert_eq!(objects.objects[&9], (PathBuf::from("/proc/11/map_files/70000-72000"), 0x2000));
    }

    fn memfd_file(id: u32, inode_id: u32) -> pb::FileEntry {
        pb::FileEntry { id, r#type: pb::FdTypes::Memfd as i32, memfd: Some(pb::MemfdFileEntry { id, inode_id, ..Default::default() }), ..Default::default() }
    }

    fn inode(inode_id: u64, name: &str, shmid: u32, size: u64) -> pb::MemfdInodeEntry {
        pb::MemfdInodeEntry { name: name.into(), inode_id, shmid, size, ..Default::default() }
    }

    #[test]
    fn memfds_named_dev_zero_that_no_fd_holds_come_back_as_shared_anonymous_memory() {
        let memfd_shared = vs::REGULAR | vs::FILE_SHARED | vs::MEMFD;
        let shared = |start, shmid| pb::VmaEntry { flags: libc::MAP_SHARED as u32, fdflags: Some(2), ..area(start, start + 0x2000, 0x1000, shmid, memfd_shared) };
        // Files 3 and 4 map inode 1 (/dev/zero, object 7122), file 5 inode 2 (/dev/zero,
        // but fd 5 holds it), file 6 inode 3 (a memfd of another name), file 8 inode 4
        // (/dev/zero, also mapped privately).
        let files = [memfd_file(3, 1), memfd_file(4, 1), memfd_file(5, 2), memfd_file(6, 3), memfd_file(8, 4)];
        let inodes = [inode(1, "/dev/zero", 7122, 0x10000), inode(2, "/dev/zero", 7123, 0x1000), inode(3, "data", 7124, 0x1000), inode(4, "/dev/zero", 7125, 0x3000)];
        let mut private = shared(0x90000, 8);
        private.flags = libc::MAP_PRIVATE as u32;
        private.status = vs::REGULAR | vs::FILE_PRIVATE | vs::MEMFD;
        let mut vmas = vec![shared(0x10000, 3), shared(0x20000, 4), shared(0x30000, 5), shared(0x40000, 6), shared(0x50000, 8), private, area(0x60000, 0x61000, 0, 0, vs::REGULAR | vs::ANON_PRIVATE)];
        let before = vmas.clone();
        let sizes = memfd_areas_as_shared_anon(vmas.iter_mut(), &files, &inodes, &BTreeSet::from([5]));
        assert_eq!(sizes, BTreeMap::from([(7122, 0x10000)]));
        for vma in &vmas[..2] {
            assert_eq!((vma.status, vma.flags as i32, vma.shmid, vma.pgoff, vma.fdflags), (vs::REGULAR | vs::ANON_SHARED, libc::MAP_SHARED | libc::MAP_ANONYMOUS, 7122, 0x1000, None));
        }
        assert_eq!(vmas[2..], before[2..]);
    }
}
