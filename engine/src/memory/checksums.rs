//! Page integrity, a part of memory with its dump half and its restore half: the CRC-32C
//! of every run of pages a pagemap stores in its pages file, and the list of images of
//! the dump, in `crust-checksums.img` (crust's own image, which CRIU does not read:
//! `crust_images::checksums`).
//!
//! - dump: the page copier checksums each piece it appends while the bytes are in the
//!   cache ([`Piece`]: the buffer it filled, or the pages the target spliced, read back
//!   from the pages file by a thread of their own once spliced); [`write`] puts the pieces of each run
//!   together (CRC-32C combines) and reads back from the pages file only the runs no
//!   piece covers (the copy-on-write snapshot's, memfd data).
//! - restore: [`verify`] reads every stored run of every pagemap the image lists, on
//!   all cores, and names the first whose bytes differ (image, offset, address); the
//!   parent dumps of an incremental dump are verified the same way. The runs of the big
//!   areas crust fills itself are left to the fill ([`RunCheck`], `lazy/fill.rs`), which
//!   sums the bytes it reads anyway. A dump without the image (CRIU's) has nothing to
//!   verify.
//!
//! Why CRC-32C: on 1 GiB the `crc-fast` crate's CRC-32C (carry-less multiply, every
//! x86-64 since 2010 and every arm64 with the crypto extension) takes 12.5 ms from the
//! cache and 87 ms from memory, xxh3 (`xxhash-rust`, SSE2: crust is built for plain
//! x86-64) 52 ms and 160 ms (`cargo bench -p crust-benches --bench checksums`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crust_images::checksums::{self, Checksums, CHECKSUMS_FILE};
use crust_images::{pb, ByteOrder, ImageKind, ImageReader, PagemapReader};

/// CRC-32C of `bytes`.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// CRC-32C of `a` then `b`, from the CRC-32C of each and the length of `b`: `a` moved
/// past `b_len` zero bytes (times x^(8 b_len) modulo the polynomial), plus `b`. That
/// power is made of the squares x^(2^k) (`X_POW_2K`), one product per bit of the length:
/// about 0.1 us, where crc_fast's combine took about 8 us (three times the CRC itself of
/// the 256 KiB steps a 1 GiB dump sums).
pub(crate) fn crc32c_combine(a: u32, b: u32, b_len: u64) -> u32 {
    let mut shift = 1u32 << 31; // x^0
    let (mut n, mut k) = (b_len, 3); // 8 b_len = b_len * 2^3
    while n != 0 {
        if n & 1 != 0 {
            shift = gf2_product(X_POW_2K[k], shift);
        }
        n >>= 1;
        k += 1;
    }
    gf2_product(shift, a) ^ b
}

/// CRC-32C's polynomial, bit-reflected (x^0 in the top bit).
const CRC32C_REFLECTED: u32 = 0x82f6_3b78;

/// The product of `a` and `b` modulo CRC-32C's polynomial (bit-reflected).
const fn gf2_product(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ CRC32C_REFLECTED } else { b >> 1 };
    }
    product
}

/// x^(2^k) modulo CRC-32C's polynomial, k = 0..67 (8 times any u64 length).
const X_POW_2K: [u32; 67] = {
    let mut table = [0u32; 67];
    table[0] = 1 << 30; // x^1
    let mut k = 1;
    while k < 67 {
        table[k] = gf2_product(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
};

/// The checksum of `len` bytes at `offset` of a pages file, taken as they were written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

/// Pieces taken while writing, by pages file name (`pages-1.img`).
pub(crate) type Pieces = BTreeMap<String, Vec<Piece>>;

/// Why the checksums could not be written, or do not match.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("{0}")]
    Image(#[from] crust_images::ImageError),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("{pages}: offset {offset}: pages {start:#x}-{end:#x} ({pagemap} entry {entry}) fail their checksum (CRC-32C {found:#010x}, {CHECKSUMS_FILE} says {expected:#010x}): the image is damaged; --skip-checksums restores it anyway")]
    Mismatch { pages: String, offset: u64, start: u64, end: u64, pagemap: String, entry: usize, expected: u32, found: u32 },
    #[error("{pagemap}: {runs} runs of pages, but {CHECKSUMS_FILE} has {checksums} checksums for it")]
    RunCount { pagemap: String, runs: usize, checksums: usize },
    #[error("{pagemap}: has pages, but {CHECKSUMS_FILE} has no checksums for it")]
    Unlisted { pagemap: String },
    #[error("{}: more than {MAX_PARENTS} parent dumps (a loop of `parent` links?)", dir.display())]
    TooDeep { dir: PathBuf },
}

/// How far parent links are followed (as `page_sources`).
const MAX_PARENTS: usize = 64;

/// What [`verify`] went through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Dumps whose pages were verified (this one and its parents).
    pub dumps: usize,
    /// Dumps without checksums (made by CRIU).
    pub without: usize,
    /// Bytes of pages read.
    pub bytes: u64,
}

/// Reads `crust-checksums.img` in `dir`, or `None` where there is none (a CRIU dump).
pub(crate) fn read(dir: &Path) -> Result<Option<Checksums>, ChecksumError> {
    let path = dir.join(CHECKSUMS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ChecksumError::Io { what: "read", path, source }),
    };
    let entries = checksums::decode(CHECKSUMS_FILE, &bytes)?;
    Ok(Some(Checksums::from_entries(CHECKSUMS_FILE, entries)?))
}

/// Writes `crust-checksums.img` into `dir` once every other image is there: the list
/// of images, and the checksum of every stored run of every pagemap, from `pieces`
/// where they cover a run exactly, else from the pages file.
pub(crate) fn write(dir: &Path, pieces: &Pieces, page_size: u64) -> Result<(), ChecksumError> {
    let started = std::time::Instant::now();
    let mut read_back = 0u64;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| ChecksumError::Io { what: "read", path: dir.to_path_buf(), source })?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name != CHECKSUMS_FILE && ImageKind::from_file_name(name).is_some())
        .collect();
    names.sort();
    let mut out = Checksums { images: names.clone(), pagemaps: BTreeMap::new() };
    let mut buffer = Vec::new();
    for name in &names {
        if !matches!(ImageKind::from_file_name(name), Some((ImageKind::Pagemap | ImageKind::PagemapShmem, _))) {
            continue;
        }
        let (pagemap, pages_path) = open_pagemap(dir, name, page_size)?;
        let pages_name = ImageKind::Pages.file_name(pagemap.pages_id().into());
        let mut known = pieces.get(&pages_name).cloned().unwrap_or_default();
        known.sort_by_key(|p| p.offset);
        let mut file = None;
        let mut crcs = Vec::new();
        for run in pagemap.runs() {
            let Some(offset) = run.pages_offset else { continue };
            let len = run.nr_pages * page_size;
            let crc = match from_pieces(&known, offset, len) {
                Some(crc) => crc,
                None => {
                    if file.is_none() {
                        file = Some(File::open(&pages_path).map_err(|source| ChecksumError::Io { what: "open", path: pages_path.clone(), source })?);
                    }
                    let file = file.as_ref().expect("opened above");
                    read_back += len;
                    crc_of_range(file, offset, len, &mut buffer).map_err(|source| ChecksumError::Io { what: "read", path: pages_path.clone(), source })?
                }
            };
            crcs.push(crc);
        }
        out.pagemaps.insert(name.clone(), crcs);
    }
    let bytes = checksums::encode(&out.to_entries(), ByteOrder::native());
    let path = dir.join(CHECKSUMS_FILE);
    crate::private::write_file(&path, &bytes).map_err(|source| ChecksumError::Io { what: "write", path, source })?;
    log::info!("{CHECKSUMS_FILE}: {} images, {} pagemaps, {} KiB of pages read back, in {:?}", out.images.len(), out.pagemaps.len(), read_back >> 10, started.elapsed());
    Ok(())
}

/// The CRC-32C of `offset..offset+len` from pieces that tile it exactly.
fn from_pieces(sorted: &[Piece], offset: u64, len: u64) -> Option<u32> {
    let end = offset.checked_add(len)?;
    let first = sorted.partition_point(|p| p.offset < offset);
    let mut at = offset;
    let mut crc: Option<u32> = None;
    for piece in &sorted[first..] {
        if at == end {
            break;
        }
        if piece.offset != at || piece.offset + piece.len > end {
            return None;
        }
        crc = Some(match crc {
            None => piece.crc,
            Some(crc) => crc32c_combine(crc, piece.crc, piece.len),
        });
        at += piece.len;
    }
    if at != end {
        return None;
    }
    Some(crc.unwrap_or_else(|| crc32c(&[])))
}

/// The CRC-32C of `len` bytes at `offset` of `file`, read in 1 MiB steps.
pub(crate) fn crc_of_range(file: &File, offset: u64, len: u64, buffer: &mut Vec<u8>) -> io::Result<u32> {
    buffer.resize(1 << 20, 0);
    let mut crc: Option<u32> = None;
    let mut done = 0u64;
    while done < len {
        let step = (len - done).min(buffer.len() as u64) as usize;
        file.read_exact_at(&mut buffer[..step], offset + done)?;
        let piece = crc32c(&buffer[..step]);
        crc = Some(match crc {
            None => piece,
            Some(crc) => crc32c_combine(crc, piece, step as u64),
        });
        done += step as u64;
    }
    Ok(crc.unwrap_or_else(|| crc32c(&[])))
}

/// A pagemap (of a process or of shared memory) checked against its pages file, and
/// that file's path.
fn open_pagemap(dir: &Path, name: &str, page_size: u64) -> Result<(PagemapReader, PathBuf), ChecksumError> {
    // Process and shared-memory pagemaps share PAGEMAP's magic and messages.
    let mut reader = ImageReader::open(&dir.join(name))?;
    let head: pb::PagemapHead = reader.next_entry()?.ok_or_else(|| crust_images::ImageError::Empty { file: name.to_owned() })?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry::<pb::PagemapEntry>()? {
        entries.push(entry);
    }
    let pages_path = dir.join(ImageKind::Pages.file_name(head.pages_id.into()));
    let pages_len = match std::fs::metadata(&pages_path) {
        Ok(metadata) => metadata.len(),
        // A pagemap with no stored run needs no pages file (CRIU writes none then).
        Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
        Err(source) => return Err(ChecksumError::Io { what: "stat", path: pages_path, source }),
    };
    let pagemap = PagemapReader::from_parts(name, &head, &entries, pages_len, page_size)?;
    Ok((pagemap, pages_path))
}

/// One stretch of a run to read and checksum (runs are cut into stretches so that all
/// cores share a big one).
struct Stretch {
    run: usize,
    file: usize,
    offset: u64,
    len: u64,
}

/// Bytes one stretch reads at most.
const STRETCH: u64 = 8 << 20;

/// A stored run that [`verify`] left to be checksummed where its bytes are read anyway
/// (the fill of big areas, `lazy/fill.rs`): its pages file as verify opened it, its
/// place there, and what a mismatch names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunCheck {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    expected: u32,
    pages: String,
    start: u64,
    pagemap: String,
    entry: usize,
}

impl RunCheck {
    /// A check of `len` bytes at `offset` of `path` that expects `expected` (tests).
    #[cfg(test)]
    pub(crate) fn for_test(path: &Path, offset: u64, len: u64, expected: u32) -> RunCheck {
        RunCheck { path: path.to_path_buf(), offset, len, expected, pages: "pages-1.img".into(), start: 0x1000, pagemap: "pagemap-1.img".into(), entry: 1 }
    }

    /// The run's error where `found`, the CRC-32C of its bytes, is not the stored one.
    pub(crate) fn check(&self, found: u32) -> Result<(), ChecksumError> {
        if found == self.expected {
            return Ok(());
        }
        Err(ChecksumError::Mismatch {
            pages: self.pages.clone(),
            offset: self.offset,
            start: self.start,
            end: self.start + self.len,
            pagemap: self.pagemap.clone(),
            entry: self.entry,
            expected: self.expected,
            found,
        })
    }
}

/// Verifies the pages of the dump in `dir` and of every dump it builds on (`parent`
/// links) against their `crust-checksums.img`; the first bad run is the error. A run
/// for which `leave(pages file, offset, len)` says true is not read: it comes back as a
/// [`RunCheck`] for whoever reads it.
pub(crate) fn verify(dir: &Path, page_size: u64, leave: &dyn Fn(&Path, u64, u64) -> bool) -> Result<(Verified, Vec<RunCheck>), ChecksumError> {
    let mut verified = Verified::default();
    let mut left = Vec::new();
    let mut at = dir.to_path_buf();
    for _ in 0..=MAX_PARENTS {
        match read(&at)? {
            Some(checksums) => {
                // A parent dump's pages are named with their directory.
                let shown = if at == dir { None } else { Some(at.as_path()) };
                verified.bytes += verify_one(&at, shown, &checksums, page_size, leave, &mut left)?;
                verified.dumps += 1;
            }
            None => verified.without += 1,
        }
        let parent = at.join(super::page_sources::PARENT_LINK);
        if !parent.exists() {
            return Ok((verified, left));
        }
        at = parent;
    }
    Err(ChecksumError::TooDeep { dir: dir.to_path_buf() })
}

/// Verifies one dump; the bytes read.
fn verify_one(
    dir: &Path,
    shown: Option<&Path>,
    checksums: &Checksums,
    page_size: u64,
    leave: &dyn Fn(&Path, u64, u64) -> bool,
    left: &mut Vec<RunCheck>,
) -> Result<u64, ChecksumError> {
    // Every pagemap with stored pages must be listed.
    for name in &checksums.images {
        if matches!(ImageKind::from_file_name(name), Some((ImageKind::Pagemap | ImageKind::PagemapShmem, _))) && !checksums.pagemaps.contains_key(name) {
            return Err(ChecksumError::Unlisted { pagemap: name.clone() });
        }
    }
    // Every pages file opened and its runs listed first, then all runs read at once on
    // every core (a tree's thousand small pages files cost one set of threads).
    struct Listed<'a> {
        name: &'a String,
        expected: &'a Vec<u32>,
        pages_id: u32,
        path: PathBuf,
        runs: Vec<(u64, u64, u64, usize)>,
    }
    let mut listed = Vec::new();
    for (name, expected) in &checksums.pagemaps {
        let (pagemap, pages_path) = open_pagemap(dir, name, page_size)?;
        let runs: Vec<(u64, u64, u64, usize)> = pagemap
            .runs()
            .enumerate()
            .filter_map(|(index, run)| Some((run.pages_offset?, run.nr_pages * page_size, run.vaddr, index + 1)))
            .collect();
        if runs.len() != expected.len() {
            return Err(ChecksumError::RunCount { pagemap: name.clone(), runs: runs.len(), checksums: expected.len() });
        }
        if runs.is_empty() {
            continue;
        }
        listed.push(Listed { name, expected, pages_id: pagemap.pages_id(), path: pages_path, runs });
    }
    // Whether each run (in `listed` order) is left to its reader, asked once.
    let leaving: Vec<bool> = listed.iter().flat_map(|l| l.runs.iter().map(|r| leave(&l.path, r.0, r.1))).collect();
    let all: Vec<(usize, u64, u64)> = listed
        .iter()
        .enumerate()
        .flat_map(|(file, l)| l.runs.iter().map(move |r| (file, r.0, r.1)))
        .zip(&leaving)
        .filter_map(|(run, &left)| (!left).then_some(run))
        .collect();
    let paths: Vec<&Path> = listed.iter().map(|l| l.path.as_path()).collect();
    let found = checksum_runs(&paths, &all).map_err(|(file, what, source)| ChecksumError::Io { what, path: listed[file].path.clone(), source })?;
    let mut found = found.into_iter();
    let mut leaving = leaving.into_iter();
    let mut bytes = 0;
    for l in &listed {
        for (&(offset, len, start, entry), &expected) in l.runs.iter().zip(l.expected) {
            // Made only for a run left or found damaged: this loop runs once per run.
            let check = || {
                let pages = ImageKind::Pages.file_name(l.pages_id.into());
                RunCheck {
                    path: l.path.clone(),
                    offset,
                    len,
                    expected,
                    pages: shown.map_or(pages.clone(), |dir| dir.join(&pages).display().to_string()),
                    start,
                    pagemap: l.name.clone(),
                    entry,
                }
            };
            if leaving.next().unwrap_or(false) {
                left.push(check());
                continue;
            }
            let found = found.next().unwrap_or_default();
            if found != expected {
                check().check(found)?;
            }
            bytes += len;
        }
    }
    Ok(bytes)
}

/// The CRC-32C of each `(file, offset, len)` run, `file` an index into `paths`, read on
/// every core (each worker holds one file open at a time). `Err`: the file that failed,
/// what failed ("open" or "read") and why.
fn checksum_runs(paths: &[&Path], runs: &[(usize, u64, u64)]) -> Result<Vec<u32>, (usize, &'static str, io::Error)> {
    let mut stretches = Vec::new();
    for (run, &(file, offset, len)) in runs.iter().enumerate() {
        let mut at = 0;
        loop {
            let step = (len - at).min(STRETCH);
            stretches.push(Stretch { run, file, offset: offset + at, len: step });
            at += step;
            if at >= len {
                break;
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(stretches.len());
    let next = AtomicUsize::new(0);
    type Done = Result<Vec<(usize, u32)>, (usize, &'static str, io::Error)>;
    let results: Vec<Done> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Done {
                    let mut buffer = Vec::new();
                    let mut done = Vec::new();
                    let mut open: Option<(usize, File)> = None;
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(stretch) = stretches.get(index) else { return Ok(done) };
                        let file = match open.take() {
                            Some((number, file)) if number == stretch.file => file,
                            _ => File::open(paths[stretch.file]).map_err(|e| (stretch.file, "open", e))?,
                        };
                        let crc = crc_of_range(&file, stretch.offset, stretch.len, &mut buffer).map_err(|e| (stretch.file, "read", e))?;
                        open = Some((stretch.file, file));
                        done.push((index, crc));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err((0, "read", io::Error::other("checksum thread panicked"))))).collect()
    });
    let mut by_stretch = vec![0u32; stretches.len()];
    for result in results {
        for (index, crc) in result? {
            by_stretch[index] = crc;
        }
    }
    Ok(combine_per_run(runs.len(), stretches.iter().zip(by_stretch).map(|(stretch, crc)| (stretch.run, stretch.len, crc))))
}

/// The CRC-32C of each of `runs` runs from the CRC-32Cs of their pieces
/// `(run, piece length, crc)`, each run's pieces in order; a run without pieces has
/// the CRC-32C of nothing.
pub(crate) fn combine_per_run(runs: usize, pieces: impl Iterator<Item = (usize, u64, u32)>) -> Vec<u32> {
    let mut crcs: Vec<Option<u32>> = vec![None; runs];
    for (run, len, crc) in pieces {
        let slot = &mut crcs[run];
        *slot = Some(match *slot {
            None => crc,
            Some(before) => crc32c_combine(before, crc, len),
        });
    }
    crcs.into_iter().map(|c| c.unwrap_or_else(|| crc32c(&[]))).collect()
}

/// The runs [`verify_except`] left, by pages file (canonical path), offset and length.
#[derive(Default)]
pub(crate) struct LeftRuns {
    runs: HashMap<(PathBuf, u64, u64), RunCheck>,
    canonical: RefCell<HashMap<PathBuf, Option<PathBuf>>>,
}

impl LeftRuns {
    /// `(canonical path, offset, len)`, the path resolved once.
    fn key(&self, path: &Path, offset: u64, len: u64) -> Option<(PathBuf, u64, u64)> {
        let canonical = self.canonical.borrow_mut().entry(path.to_path_buf()).or_insert_with(|| path.canonicalize().ok()).clone();
        canonical.map(|path| (path, offset, len))
    }

    /// The check of the left run `len` bytes at `offset` of `path`, if it was left.
    pub(crate) fn check_of(&self, path: &Path, offset: u64, len: u64) -> Option<RunCheck> {
        self.runs.get(&self.key(path, offset, len)?).cloned()
    }

    /// Bytes of the left runs.
    pub(crate) fn bytes(&self) -> u64 {
        self.runs.values().map(|check| check.len).sum()
    }
}

/// [`verify`], leaving out the stored runs that are exactly one of `skip` (pages file,
/// offset, length; paths compared canonical): their reader checks them.
pub(crate) fn verify_except(dir: &Path, page_size: u64, skip: &[(&Path, u64, u64)]) -> Result<(Verified, LeftRuns), ChecksumError> {
    let mut left = LeftRuns::default();
    let skipped: HashSet<(PathBuf, u64, u64)> = skip.iter().filter_map(|&(path, offset, len)| left.key(path, offset, len)).collect();
    let leave = |path: &Path, offset: u64, len: u64| !skipped.is_empty() && left.key(path, offset, len).is_some_and(|key| skipped.contains(&key));
    let (verified, checks) = verify(dir, page_size, &leave)?;
    for check in checks {
        if let Some(key) = left.key(&check.path, check.offset, check.len) {
            left.runs.insert(key, check);
        }
    }
    Ok((verified, left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crust_images::{ImageWriter, PE_PARENT, PE_PRESENT};

    /// [`verify`] leaving no run.
    fn verify_all(dir: &Path, page: u64) -> Result<Verified, ChecksumError> {
        verify(dir, page, &|_, _, _| false).map(|(verified, left)| {
            assert!(left.is_empty());
            verified
        })
    }

    fn write_dump(dir: &Path, runs: &[(u64, u64, u32)], data: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        let mut w = ImageWriter::create(dir, ImageKind::Pagemap, 7).unwrap();
        w.write_entry(&pb::PagemapHead { pages_id: 1 }).unwrap();
        for &(vaddr, n, flags) in runs {
            w.write_entry(&pb::PagemapEntry::run(vaddr, n, flags)).unwrap();
        }
        w.finish().unwrap();
        std::fs::write(dir.join(ImageKind::Pages.file_name(1)), data).unwrap();
        std::fs::write(dir.join(ImageKind::Inventory.file_name(0)), b"").unwrap();
    }

    #[test]
    fn combine_matches_the_crc_of_the_joined_bytes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for cut in [0, 1, 7, 4096, 65_535, 262_144, 299_999, 300_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(crc32c_combine(crc32c(a), crc32c(b), b.len() as u64), crc32c(&data), "cut at {cut}");
        }
        // Three pieces, combined left to right.
        let (a, rest) = data.split_at(1000);
        let (b, c) = rest.split_at(123_457);
        let ab = crc32c_combine(crc32c(a), crc32c(b), b.len() as u64);
        assert_eq!(crc32c_combine(ab, crc32c(c), c.len() as u64), crc32c(&data));
    }

    #[test]
    fn combined_pieces_equal_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (a, b) = data.split_at(33_333);
        assert_eq!(crc32c_combine(crc32c(a), crc32c(b), b.len() as u64), crc32c(&data));
        let pieces = [Piece { offset: 10, len: a.len() as u64, crc: crc32c(a) }, Piece { offset: 10 + a.len() as u64, len: b.len() as u64, crc: crc32c(b) }];
        assert_eq!(from_pieces(&pieces, 10, data.len() as u64), Some(crc32c(&data)));
        assert_eq!(from_pieces(&pieces, 10, a.len() as u64), Some(crc32c(a)));
        assert_eq!(from_pieces(&pieces, 10, 5), None, "a piece straddles the end");
        assert_eq!(from_pieces(&pieces, 0, 10), None, "no piece there");
    }

    #[test]
    fn a_flipped_byte_is_named_with_its_run() {
        let base = std::env::temp_dir().join(format!("crust-checksums-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let page = 4096;
        let data: Vec<u8> = (0..5 * page as usize).map(|i| (i * 7 % 253) as u8).collect();
        write_dump(&base, &[(0x10000, 2, PE_PRESENT), (0x20000, 1, PE_PARENT), (0x30000, 3, PE_PRESENT)], &data);
        // Pieces for the first run only: the second is read back from the file.
        let pieces: Pieces = [("pages-1.img".to_string(), vec![Piece { offset: 0, len: 2 * page, crc: crc32c(&data[..2 * page as usize]) }])].into();
        write(&base, &pieces, page).unwrap();
        let listed = read(&base).unwrap().unwrap();
        assert_eq!(listed.images, ["inventory.img", "pagemap-7.img", "pages-1.img"]);
        assert_eq!(listed.pagemaps["pagemap-7.img"], [crc32c(&data[..2 * page as usize]), crc32c(&data[2 * page as usize..])]);
        assert_eq!(verify_all(&base, page).unwrap(), Verified { dumps: 1, without: 0, bytes: 5 * page });

        let mut damaged = data.clone();
        damaged[3 * page as usize + 100] ^= 0x40;
        std::fs::write(base.join("pages-1.img"), &damaged).unwrap();
        let error = verify_all(&base, page).unwrap_err().to_string();
        assert!(
            error.starts_with("pages-1.img: offset 8192: pages 0x30000-0x33000 (pagemap-7.img entry 3) fail their checksum"),
            "{error}"
        );
        // Left to its reader, the damaged run passes here and fails its check there,
        // with the same words.
        let (verified, left) = verify(&base, page, &|path, offset, _| path.ends_with("pages-1.img") && offset == 2 * page).unwrap();
        assert_eq!(verified.bytes, 2 * page);
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].path.clone(), left[0].offset, left[0].len), (base.join("pages-1.img"), 2 * page, 3 * page));
        assert_eq!(left[0].check(crc32c(&damaged[2 * page as usize..])).unwrap_err().to_string(), error);
        left[0].check(crc32c(&data[2 * page as usize..])).unwrap();
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn parents_are_verified_and_criu_dumps_pass() {
        let base = std::env::temp_dir().join(format!("crust-checksums-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let page = 4096;
        let data = vec![9u8; 2 * page as usize];
        write_dump(&base.join("pre"), &[(0x10000, 2, PE_PRESENT)], &data);
        write(&base.join("pre"), &Pieces::new(), page).unwrap();
        write_dump(&base.join("dump"), &[(0x10000, 2, PE_PARENT)], &[]);
        std::os::unix::fs::symlink("../pre", base.join("dump").join("parent")).unwrap();
        // The dump itself made by CRIU: no checksums there, its parent's are verified.
        assert_eq!(verify_all(&base.join("dump"), page).unwrap(), Verified { dumps: 1, without: 1, bytes: 2 * page });
        std::fs::write(base.join("pre/pages-1.img"), vec![8u8; 2 * page as usize]).unwrap();
        let error = verify_all(&base.join("dump"), page).unwrap_err().to_string();
        assert!(error.contains("pages 0x10000-0x12000 (pagemap-7.img entry 1) fail their checksum"), "{error}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
