//! Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, shared through fork), in CRIU's
//! format: every area over the object is a `VMA_ANON_SHARED` vma naming the object's
//! inode as `shmid`, and the object's contents go once per dump into
//! `pagemap-shmem-SHMID.img` with a pages image of their own, run addresses being
//! offsets in the object.
//!
//! The contents are read from the object itself (through `/proc/PID/map_files`), not
//! from the processes' page tables: a page of the object that no dumped process maps
//! (shrunk or moved away with mremap, dropped with MADV_DONTNEED, reclaimed) still holds
//! data. Only `[0, largest pgoff + length of any area over it)` is written: what the
//! tree can reach, and the size CRIU gives the object on restore.
//!
//! Restore creates each object once in crust, fills it from that image and lets every
//! process inherit it through fork (`restore/mod.rs`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crust_images::pb;

use crate::files::memfd::{fill_shmem_pages, write_shmem_pages};
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
}
