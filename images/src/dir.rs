//! An images directory: typed access to the files of one dump by kind and id, and a
//! writer for a task's pagemap together with its pages file.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::ImageError;
use crate::image::{read_entries, read_single, ImageWriter};
use crate::magic::ImageKind;
use crate::pagemap::{PagemapReader, PE_PARENT, PE_PRESENT};
use crate::pb;

/// The directory a dump is written to or restored from.
#[derive(Clone, Debug)]
pub struct ImageDir {
    path: PathBuf,
}

impl ImageDir {
    /// Wraps an existing directory.
    pub fn new(path: impl Into<PathBuf>) -> ImageDir {
        ImageDir { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the image of `kind` for `id` (`core-4711.img`).
    pub fn image_path(&self, kind: ImageKind, id: u64) -> PathBuf {
        self.path.join(kind.file_name(id))
    }

    /// Whether that image exists.
    pub fn exists(&self, kind: ImageKind, id: u64) -> bool {
        self.image_path(kind, id).exists()
    }

    /// Creates the image of `kind` for `id`.
    pub fn create(&self, kind: ImageKind, id: u64) -> Result<ImageWriter, ImageError> {
        ImageWriter::create(&self.path, kind, id)
    }

    /// Writes a one-entry image (core, mm, fs, ids, inventory...).
    pub fn write_single<M: Message>(
        &self,
        kind: ImageKind,
        id: u64,
        entry: &M,
    ) -> Result<(), ImageError> {
        let mut writer = self.create(kind, id)?;
        writer.write_entry(entry)?;
        writer.finish()
    }

    /// Reads the one entry of an image.
    pub fn read_single<M: Message + Default>(
        &self,
        kind: ImageKind,
        id: u64,
    ) -> Result<M, ImageError> {
        read_single(&self.image_path(kind, id))
    }

    /// Reads every entry of an image.
    pub fn read_entries<M: Message + Default>(
        &self,
        kind: ImageKind,
        id: u64,
    ) -> Result<Vec<M>, ImageError> {
        read_entries(&self.image_path(kind, id))
    }

    /// Opens and validates `pagemap-{id}.img` against its pages file.
    pub fn pagemap(&self, id: u64, page_size: u64) -> Result<PagemapReader, ImageError> {
        PagemapReader::open(&self.path, id, page_size)
    }

    /// Starts `pagemap-{id}.img` and `pages-{pages_id}.img` for one task.
    pub fn create_pages(
        &self,
        id: u64,
        pages_id: u32,
        page_size: u64,
    ) -> Result<PagesWriter, ImageError> {
        let mut pagemap = self.create(ImageKind::Pagemap, id)?;
        pagemap.write_entry(&pb::PagemapHead { pages_id })?;
        let pages = self.create(ImageKind::Pages, u64::from(pages_id))?;
        Ok(PagesWriter {
            pagemap,
            pages,
            page_size,
            last_end: None,
        })
    }
}

/// Writes a pagemap and its pages file in step, keeping runs sorted and page-sized.
pub struct PagesWriter {
    pagemap: ImageWriter,
    pages: ImageWriter,
    page_size: u64,
    last_end: Option<u64>,
}

impl PagesWriter {
    /// Adds a run of pages whose contents go into the pages file. `contents` must be a
    /// whole number of pages; `vaddr` must be page aligned and above the previous run.
    pub fn add_present(&mut self, vaddr: u64, contents: &[u8]) -> Result<(), ImageError> {
        let nr_pages = self.check_run(vaddr, contents.len() as u64)?;
        self.pagemap.write_entry(&pb::PagemapEntry::run(
            vaddr,
            u64::from(nr_pages),
            PE_PRESENT,
        ))?;
        self.pages.write_payload(contents)
    }

    /// Adds a run of pages that the parent (pre-dump) images hold.
    pub fn add_in_parent(&mut self, vaddr: u64, nr_pages: u32) -> Result<(), ImageError> {
        self.check_run(vaddr, u64::from(nr_pages) * self.page_size)?;
        self.pagemap.write_entry(&pb::PagemapEntry::run(
            vaddr,
            u64::from(nr_pages),
            PE_PARENT,
        ))
    }

    /// Flushes both files.
    pub fn finish(self) -> Result<(), ImageError> {
        self.pagemap.finish()?;
        self.pages.finish()
    }

    // `%` rather than `is_multiple_of`: the workspace supports Rust 1.85
    #[allow(clippy::manual_is_multiple_of)]
    fn check_run(&mut self, vaddr: u64, len: u64) -> Result<u32, ImageError> {
        let file = ImageKind::Pagemap.name().to_owned();
        let misaligned = vaddr % self.page_size != 0 || len % self.page_size != 0;
        let nr_pages = u32::try_from(len / self.page_size).ok();
        let end = vaddr.checked_add(len);
        match (misaligned, nr_pages, end) {
            (false, Some(nr_pages), Some(end)) => {
                if let Some(previous_end) =
                    self.last_end.filter(|&previous_end| vaddr < previous_end)
                {
                    return Err(ImageError::PagemapUnsorted {
                        file,
                        index: 0,
                        vaddr,
                        previous_end,
                    });
                }
                self.last_end = Some(end);
                Ok(nr_pages)
            }
            _ => Err(ImageError::PagemapOverflow {
                file,
                index: 0,
                vaddr,
                nr_pages: len / self.page_size,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_written_are_found_again() {
        let path = std::env::temp_dir().join(format!("crust-imagedir-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        let dir = ImageDir::new(&path);
        let mut writer = dir.create_pages(42, 7, 4096).expect("create");
        writer.add_present(0x1000, &[1u8; 8192]).expect("first run");
        writer.add_in_parent(0x4000, 1).expect("parent run");
        writer.add_present(0x8000, &[2u8; 4096]).expect("third run");
        assert!(
            writer.add_present(0x2000, &[0u8; 4096]).is_err(),
            "runs must ascend"
        );
        assert!(
            writer.add_present(0x9001, &[0u8; 4096]).is_err(),
            "runs must be aligned"
        );
        writer.finish().expect("flush");

        let map = dir.pagemap(42, 4096).expect("valid pagemap");
        assert_eq!(map.pages_id(), 7);
        assert_eq!(map.offset_of(0x8000), Some(8192));
        assert_eq!(map.offset_of(0x4000), None);

        dir.write_single(
            ImageKind::Fs,
            42,
            &pb::FsEntry {
                cwd_id: 1,
                root_id: 2,
                umask: None,
            },
        )
        .expect("fs");
        let fs: pb::FsEntry = dir.read_single(ImageKind::Fs, 42).expect("read fs");
        assert_eq!(fs.root_id, 2);
        std::fs::remove_dir_all(&path).expect("cleanup");
    }
}
