//! Where the bytes of each dumped page are: in this dump's pages file, or, for a run
//! marked PE_PARENT, in an earlier dump's (a pre-dump), found through the `parent` link
//! of the images directory and followed as far as the chain goes. A run marked PE_LAZY
//! (`dump --lazy-pages`) has its bytes in the source's frozen tree, not in any file:
//! its [`Run::file`] is [`AT_SOURCE`], and only a lazy restore may use it.

use std::path::{Path, PathBuf};

use crust_images::{PagemapReader, PE_LAZY, PE_PARENT};

/// Why the pages of a process cannot be found. Each message names the pagemap (or the
/// directory) it is about.
#[derive(Debug, thiserror::Error)]
pub enum PageSourcesError {
    #[error(transparent)]
    Image(#[from] crust_images::ImageError),
    #[error("{}: more than {MAX_DEPTH} parent dumps (a loop of `parent` links?)", dir.display())]
    TooDeep { dir: PathBuf },
    #[error("{pagemap}: pages at {vaddr:#x} are neither in this dump nor in its parent (pagemap_entry.flags {flags:#x})")]
    NotDumped { pagemap: String, vaddr: u64, flags: u32 },
    #[error("{pagemap}: pages at {vaddr:#x} are in the parent dump, but {} does not lead to one", link.display())]
    NoParent { pagemap: String, vaddr: u64, link: PathBuf },
    #[error("{pagemap}: pages {start:#x}-{end:#x} are marked as in the parent dump, which does not have them")]
    ParentLacks { pagemap: String, start: u64, end: u64 },
    #[error("open {}: {source}", path.display())]
    OpenPages { path: PathBuf, source: std::io::Error },
}

/// The longest chain of parent dumps followed (a loop of links ends here too).
const MAX_DEPTH: usize = 64;

/// The `file` of a run whose pages stayed at the source (PE_LAZY): a lazy-pages daemon
/// fetches them from the dumping side's page server.
pub(crate) const AT_SOURCE: usize = usize::MAX;

/// One run of pages with its bytes in `files[file]` at `offset` (or left at the source:
/// `file` is [`AT_SOURCE`], `offset` 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub vaddr: u64,
    pub bytes: u64,
    pub file: usize,
    pub offset: u64,
}

/// Every dumped page of one process: runs in address order, and the pages files they
/// are in (this dump's first).
#[derive(Clone, Debug, Default)]
pub(crate) struct PageSources {
    pub files: Vec<PathBuf>,
    pub runs: Vec<Run>,
}

/// The name of the link from a dump to the dump it builds on (CRIU's).
pub(crate) const PARENT_LINK: &str = "parent";

/// The page sources of the process whose pagemap is `pagemap-{id}.img` in `dir`.
pub(crate) fn resolve(dir: &Path, id: u64, page: u64) -> Result<PageSources, PageSourcesError> {
    let mut sources = PageSources::default();
    sources.runs = resolve_in(dir, id, page, 0, &mut sources.files)?;
    Ok(sources)
}

/// The index of `path` in `files`, pushed there the first time.
pub(crate) fn file_index(files: &mut Vec<PathBuf>, path: &Path) -> usize {
    match files.iter().position(|f| f == path) {
        Some(index) => index,
        None => {
            files.push(path.to_path_buf());
            files.len() - 1
        }
    }
}

fn resolve_in(dir: &Path, id: u64, page: u64, depth: usize, files: &mut Vec<PathBuf>) -> Result<Vec<Run>, PageSourcesError> {
    if depth > MAX_DEPTH {
        return Err(PageSourcesError::TooDeep { dir: dir.to_path_buf() });
    }
    let reader = PagemapReader::open(dir, id, page)?;
    let own = file_index(files, reader.pages_path().expect("opened from a directory"));
    let mut parent: Option<Vec<Run>> = None;
    let mut runs = Vec::new();
    for run in reader.runs() {
        let bytes = run.nr_pages * page;
        if let Some(offset) = run.pages_offset {
            runs.push(Run { vaddr: run.vaddr, bytes, file: own, offset });
            continue;
        }
        let pagemap_name = || dir.join(crust_images::ImageKind::Pagemap.file_name(id)).display().to_string();
        if run.flags & PE_LAZY != 0 && run.flags & PE_PARENT == 0 {
            runs.push(Run { vaddr: run.vaddr, bytes, file: AT_SOURCE, offset: 0 });
            continue;
        }
        if run.flags & PE_PARENT == 0 {
            return Err(PageSourcesError::NotDumped { pagemap: pagemap_name(), vaddr: run.vaddr, flags: run.flags });
        }
        if parent.is_none() {
            let link = dir.join(PARENT_LINK);
            if !link.exists() {
                return Err(PageSourcesError::NoParent { pagemap: pagemap_name(), vaddr: run.vaddr, link });
            }
            parent = Some(resolve_in(&link, id, page, depth + 1, files)?);
        }
        let from_parent = parent.as_deref().expect("resolved above");
        let (start, end) = (run.vaddr, run.vaddr + bytes);
        let mut at = start;
        let first = from_parent.partition_point(|r| r.vaddr + r.bytes <= start);
        for piece in &from_parent[first..] {
            if piece.vaddr >= end || piece.vaddr > at {
                break;
            }
            let take_end = (piece.vaddr + piece.bytes).min(end);
            let offset = if piece.file == AT_SOURCE { 0 } else { piece.offset + (at - piece.vaddr) };
            runs.push(Run { vaddr: at, bytes: take_end - at, file: piece.file, offset });
            at = take_end;
        }
        if at < end {
            return Err(PageSourcesError::ParentLacks { pagemap: pagemap_name(), start: at, end });
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crust_images::{pb, ImageKind, ImageWriter, PE_PRESENT};

    fn write_dump(dir: &Path, runs: &[(u64, u64, u32)], pages_id: u32, data: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        let mut w = ImageWriter::create(dir, ImageKind::Pagemap, 1).unwrap();
        w.write_entry(&pb::PagemapHead { pages_id }).unwrap();
        for &(vaddr, n, flags) in runs {
            w.write_entry(&pb::PagemapEntry::run(vaddr, n, flags)).unwrap();
        }
        w.finish().unwrap();
        std::fs::write(dir.join(ImageKind::Pages.file_name(pages_id as u64)), data).unwrap();
    }

    #[test]
    fn parent_runs_are_cut_to_what_the_child_names() {
        let base = std::env::temp_dir().join(format!("crust-page-sources-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let page = 4096;
        // The pre-dump: 4 pages at 0x10000, 2 at 0x20000.
        write_dump(&base.join("pre"), &[(0x10000, 4, PE_PRESENT), (0x20000, 2, PE_PRESENT)], 1, &vec![1u8; 6 * 4096]);
        // The dump: page 0x10000 new, 0x11000-0x12fff from the parent, 0x20000-0x21fff from the parent.
        let dump = base.join("dump");
        write_dump(&dump, &[(0x10000, 1, PE_PRESENT), (0x11000, 2, PE_PARENT), (0x20000, 2, PE_PARENT)], 1, &vec![2u8; 4096]);
        std::os::unix::fs::symlink("../pre", dump.join(PARENT_LINK)).unwrap();
        let sources = resolve(&dump, 1, page).unwrap();
        assert_eq!(sources.files.len(), 2);
        assert_eq!(
            sources.runs,
            vec![
                Run { vaddr: 0x10000, bytes: 4096, file: 0, offset: 0 },
                Run { vaddr: 0x11000, bytes: 8192, file: 1, offset: 4096 },
                Run { vaddr: 0x20000, bytes: 8192, file: 1, offset: 4 * 4096 },
            ]
        );
        // A parent run the pre-dump lacks is an error naming the pages.
        write_dump(&dump, &[(0x30000, 1, PE_PARENT)], 1, &[]);
        let error = resolve(&dump, 1, page).unwrap_err().to_string();
        assert!(error.contains("0x30000"), "{error}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
