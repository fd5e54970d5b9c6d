//! Page maps: which virtual pages of a task were dumped, and where their contents sit in
//! the matching `pages-N.img`.

use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::image::ImageReader;
use crate::magic::ImageKind;
use crate::pb;

/// `pagemap_entry.flags`: the pages are in the parent (pre-dump) image.
pub const PE_PARENT: u32 = 1 << 0;
/// `pagemap_entry.flags`: the pages are served lazily, not stored here.
pub const PE_LAZY: u32 = 1 << 1;
/// `pagemap_entry.flags`: the pages are stored in this dump's pages file.
pub const PE_PRESENT: u32 = 1 << 2;

impl pb::PagemapEntry {
    /// A run of `nr_pages` pages at `vaddr`, written as CRIU 4.2 reads it (`nr_pages`,
    /// field 5) and as older readers do (`compat_nr_pages`, field 2, when it fits).
    pub fn run(vaddr: u64, nr_pages: u64, flags: u32) -> pb::PagemapEntry {
        pb::PagemapEntry {
            vaddr,
            compat_nr_pages: u32::try_from(nr_pages).unwrap_or(0),
            in_parent: None,
            flags: Some(flags),
            nr_pages: Some(nr_pages),
        }
    }

    /// The run's page count: `nr_pages` (field 5) when present, else `compat_nr_pages`
    /// (images from before CRIU 4.2).
    pub fn page_count(&self) -> u64 {
        self.nr_pages
            .unwrap_or_else(|| u64::from(self.compat_nr_pages))
    }
}

/// One run of pages from a pagemap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// first virtual address
    pub vaddr: u64,
    /// number of pages
    pub nr_pages: u64,
    /// `PE_*` flags (old images' `in_parent` folded in)
    pub flags: u32,
    /// byte offset of the run's contents in the pages file, when they are stored there
    pub pages_offset: Option<u64>,
}

impl PageRun {
    /// One past the last byte of the run.
    pub fn end(&self, page_size: u64) -> u64 {
        self.vaddr + self.nr_pages * page_size
    }
}

/// A validated pagemap: runs sorted by address, not overlapping, each stored run inside
/// the pages file.
#[derive(Clone, Debug)]
pub struct PagemapReader {
    pages_id: u32,
    pages_path: Option<PathBuf>,
    page_size: u64,
    runs: Vec<PageRun>,
}

impl PagemapReader {
    /// Reads `dir/pagemap-{id}.img` and checks it against the size of the pages file it names.
    pub fn open(dir: &Path, id: u64, page_size: u64) -> Result<PagemapReader, ImageError> {
        let pagemap_path = dir.join(ImageKind::Pagemap.file_name(id));
        let mut reader = ImageReader::open(&pagemap_path)?;
        let (head, entries) = read_head_and_entries(&mut reader)?;
        let pages_path = dir.join(ImageKind::Pages.file_name(u64::from(head.pages_id)));
        let pages_len = std::fs::metadata(&pages_path)
            .map_err(|source| ImageError::ReadFile {
                path: pages_path.clone(),
                source,
            })?
            .len();
        let mut pagemap =
            PagemapReader::from_parts(reader.file_name(), &head, &entries, pages_len, page_size)?;
        pagemap.pages_path = Some(pages_path);
        Ok(pagemap)
    }

    /// Builds and validates a pagemap from decoded entries. Pure; `file` names it in errors.
    pub fn from_parts(
        file: &str,
        head: &pb::PagemapHead,
        entries: &[pb::PagemapEntry],
        pages_len: u64,
        page_size: u64,
    ) -> Result<PagemapReader, ImageError> {
        let mut runs = Vec::with_capacity(entries.len());
        let mut previous_end = 0u64;
        let mut pages_offset = 0u64;
        for (position, entry) in entries.iter().enumerate() {
            let index = position + 1; // the head is entry 0
            let nr_pages = entry.page_count();
            let overflow = || ImageError::PagemapOverflow {
                file: file.to_owned(),
                index,
                vaddr: entry.vaddr,
                nr_pages,
            };
            let run_bytes = nr_pages.checked_mul(page_size).ok_or_else(overflow)?;
            let end = entry.vaddr.checked_add(run_bytes).ok_or_else(overflow)?;
            if position > 0 && entry.vaddr < previous_end {
                return Err(ImageError::PagemapUnsorted {
                    file: file.to_owned(),
                    index,
                    vaddr: entry.vaddr,
                    previous_end,
                });
            }
            previous_end = end;
            let flags = effective_flags(entry);
            let stored = flags & PE_PRESENT != 0;
            let run_offset = if stored {
                let run_end = pages_offset.checked_add(run_bytes).ok_or_else(overflow)?;
                if run_end > pages_len {
                    return Err(ImageError::PagemapPastEnd {
                        file: file.to_owned(),
                        index,
                        vaddr: entry.vaddr,
                        pages_file: ImageKind::Pages.file_name(u64::from(head.pages_id)),
                        needed: run_end,
                        available: pages_len,
                    });
                }
                let start = pages_offset;
                pages_offset = run_end;
                Some(start)
            } else {
                None
            };
            runs.push(PageRun {
                vaddr: entry.vaddr,
                nr_pages,
                flags,
                pages_offset: run_offset,
            });
        }
        Ok(PagemapReader {
            pages_id: head.pages_id,
            pages_path: None,
            page_size,
            runs,
        })
    }

    /// The N of the matching `pages-N.img`.
    pub fn pages_id(&self) -> u32 {
        self.pages_id
    }

    /// Path of the pages file, when opened from a directory.
    pub fn pages_path(&self) -> Option<&Path> {
        self.pages_path.as_deref()
    }

    /// Page size the map was read with.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The runs in address order.
    pub fn runs(&self) -> impl Iterator<Item = &PageRun> + '_ {
        self.runs.iter()
    }

    /// Total pages stored in the pages file.
    pub fn stored_pages(&self) -> u64 {
        self.runs
            .iter()
            .filter(|run| run.pages_offset.is_some())
            .map(|run| run.nr_pages)
            .sum()
    }

    /// The run that covers `vaddr`, if any.
    pub fn run_for(&self, vaddr: u64) -> Option<&PageRun> {
        let after = self.runs.partition_point(|run| run.vaddr <= vaddr);
        let run = self.runs.get(after.checked_sub(1)?)?;
        (vaddr < run.end(self.page_size)).then_some(run)
    }

    /// Offset in the pages file of the byte at `vaddr`, if that page is stored here.
    pub fn offset_of(&self, vaddr: u64) -> Option<u64> {
        let run = self.run_for(vaddr)?;
        Some(run.pages_offset? + (vaddr - run.vaddr))
    }
}

/// Reads the `pagemap_head` and every `pagemap_entry` from an open pagemap image.
pub fn read_head_and_entries(
    reader: &mut ImageReader,
) -> Result<(pb::PagemapHead, Vec<pb::PagemapEntry>), ImageError> {
    if reader.kind() != ImageKind::Pagemap {
        return Err(ImageError::WrongKind {
            file: reader.file_name().to_owned(),
            expected: ImageKind::Pagemap.name(),
            found: reader.kind().name(),
        });
    }
    let head: pb::PagemapHead = reader.next_entry()?.ok_or_else(|| ImageError::Empty {
        file: reader.file_name().to_owned(),
    })?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        entries.push(entry);
    }
    Ok((head, entries))
}

/// `flags` as CRIU reads them: images from before flags existed say `in_parent`.
fn effective_flags(entry: &pb::PagemapEntry) -> u32 {
    match entry.flags {
        Some(flags) => flags,
        None if entry.in_parent == Some(true) => PE_PARENT,
        None => PE_PRESENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn entry(vaddr: u64, nr_pages: u64, flags: u32) -> pb::PagemapEntry {
        pb::PagemapEntry::run(vaddr, nr_pages, flags)
    }

    fn head() -> pb::PagemapHead {
        pb::PagemapHead { pages_id: 7 }
    }

    #[test]
    fn offsets_skip_runs_not_stored_here() {
        let entries = [
            entry(0x1000, 2, PE_PRESENT),
            entry(0x5000, 1, PE_PARENT),
            entry(0x8000, 3, PE_PRESENT),
        ];
        let map = PagemapReader::from_parts("pagemap-1.img", &head(), &entries, 5 * PAGE, PAGE)
            .expect("valid");
        assert_eq!(map.offset_of(0x1000), Some(0));
        assert_eq!(map.offset_of(0x2fff), Some(0x1fff));
        assert_eq!(map.offset_of(0x3000), None);
        assert_eq!(map.offset_of(0x5000), None);
        assert_eq!(map.offset_of(0x9010), Some(2 * PAGE + 0x1010));
        assert_eq!(map.offset_of(0x0), None);
        assert_eq!(map.stored_pages(), 5);
        assert_eq!(map.runs().count(), 3);
    }

    #[test]
    fn old_images_use_in_parent() {
        let old = [
            pb::PagemapEntry {
                vaddr: 0x1000,
                compat_nr_pages: 1,
                in_parent: Some(true),
                flags: None,
                nr_pages: None,
            },
            pb::PagemapEntry {
                vaddr: 0x2000,
                compat_nr_pages: 1,
                in_parent: None,
                flags: None,
                nr_pages: None,
            },
        ];
        let map = PagemapReader::from_parts("p", &head(), &old, PAGE, PAGE).expect("valid");
        assert_eq!(map.offset_of(0x1000), None);
        assert_eq!(map.offset_of(0x2000), Some(0));
    }

    #[test]
    fn nr_pages_wins_over_compat_nr_pages() {
        // CRIU 4.2 writes 0 in compat_nr_pages and the count in nr_pages
        let criu_4_2 = [pb::PagemapEntry {
            vaddr: 0x1000,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(PE_PRESENT),
            nr_pages: Some(3),
        }];
        let map =
            PagemapReader::from_parts("p", &head(), &criu_4_2, 3 * PAGE, PAGE).expect("valid");
        assert_eq!(map.offset_of(0x3fff), Some(0x2fff));
        assert_eq!(map.stored_pages(), 3);
        let big = pb::PagemapEntry::run(0, 1 << 33, PE_PRESENT);
        assert_eq!((big.compat_nr_pages, big.page_count()), (0, 1 << 33));
    }

    #[test]
    fn overlap_is_an_error() {
        let entries = [entry(0x1000, 2, PE_PRESENT), entry(0x2000, 1, PE_PRESENT)];
        let error = PagemapReader::from_parts("pagemap-1.img", &head(), &entries, 10 * PAGE, PAGE)
            .expect_err("overlap");
        assert_eq!(error.to_string(), "pagemap-1.img: entry 2: pages at 0x2000 overlap or precede the previous run ending at 0x3000");
    }

    #[test]
    fn unsorted_is_an_error() {
        let entries = [entry(0x8000, 1, PE_PRESENT), entry(0x1000, 1, PE_PRESENT)];
        let error = PagemapReader::from_parts("p", &head(), &entries, 10 * PAGE, PAGE)
            .expect_err("unsorted");
        assert!(matches!(
            error,
            ImageError::PagemapUnsorted { index: 2, .. }
        ));
    }

    #[test]
    fn past_end_of_pages_file_is_an_error() {
        let entries = [entry(0x1000, 2, PE_PRESENT)];
        let error = PagemapReader::from_parts("pagemap-1.img", &head(), &entries, PAGE, PAGE)
            .expect_err("short pages");
        assert_eq!(error.to_string(), "pagemap-1.img: entry 1: pages at 0x1000 need 8192 bytes of pages-7.img, which has 4096");
    }

    #[test]
    fn wrapping_run_is_an_error() {
        let entries = [entry(u64::MAX - 0xfff, 2, PE_PARENT)];
        let error = PagemapReader::from_parts("p", &head(), &entries, 0, PAGE).expect_err("wraps");
        assert!(matches!(error, ImageError::PagemapOverflow { .. }));
    }
}
