//! The fill of big areas in a restore that is not lazy: the restorer maps each private
//! anonymous area holding at least [`FILL_AT_LEAST`] bytes of pages empty, like a lazy
//! area, and crust puts the pages in before the process runs, through a userfaultfd of
//! the process (UFFDIO_COPY, `restore/finish.rs` makes it), from several threads.
//!
//! Why: the restorer is one thread in the process, and the pages it reads land in
//! memory the kernel zeroes first (a fault, or MADV_POPULATE_WRITE); UFFDIO_COPY puts
//! each page in without zeroing it, and the threads (one per CPU, at most 4) share the
//! copies out over the CPUs. 4 GiB here: populate + pread on one thread 1.63-1.65 s,
//! pread + UFFDIO_COPY 1.3-1.6 s on one thread, 0.69-0.71 s on two.
//!
//! Where the process could not make a userfaultfd, the same threads write the pages
//! through its /proc/PID/mem instead (faulted in as the restorer's reads would be).
//!
//! The checksums of these runs are taken here, from the bytes just read (the up-front
//! pass of `restore/mod.rs` leaves them out): a damaged run fails the restore before
//! the tree has run an instruction of its own, and the restore kills the tree. 4 GiB:
//! the up-front pass took 0.29-0.34 s of a 1.07-1.44 s restore; summed here, the fill
//! takes about as long as without any checksum.

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::LazyArea;
use crate::memory::checksums::{combine_per_run, crc32c, RunCheck};
use crate::memory::page_sources::file_index;
use crate::sys::uffd;

/// Private anonymous areas with at least this many bytes of pages are filled by crust.
pub(crate) const FILL_AT_LEAST: u64 = 16 << 20;
/// Bytes read and put in at a time.
const CHUNK: u64 = 1 << 20;
/// The most threads that fill at once.
const THREADS_MAX: usize = 4;

/// Where the pages go.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A userfaultfd of the process with the areas registered for missing pages.
    Uffd(BorrowedFd<'a>),
    /// The process's /proc/PID/mem, opened for writing.
    Mem(&'a File),
}

/// What [`fill`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filled {
    pub bytes: u64,
    pub threads: usize,
    /// Bytes whose checksum the fill took and found right.
    pub checked: u64,
}

/// One piece of at most [`CHUNK`] bytes: `(address, length, file index, file offset,
/// run index)`.
type Piece = (u64, u64, usize, u64, usize);

/// Cuts the runs of `areas` into [`CHUNK`] pieces; the files they name, each once.
fn pieces(areas: &[LazyArea]) -> io::Result<(Vec<Piece>, Vec<PathBuf>)> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut pieces = Vec::new();
    for (index, run) in areas.iter().flat_map(|area| &area.runs).enumerate() {
        let path = run.file.as_ref().ok_or_else(|| io::Error::other(format!("pages at {:#x} are not in a pages image", run.addr)))?;
        let file = file_index(&mut files, path);
        let mut done = 0;
        while done < run.bytes {
            let len = (run.bytes - done).min(CHUNK);
            pieces.push((run.addr + done, len, file, run.offset + done, index));
            done += len;
        }
    }
    Ok((pieces, files))
}

/// Puts the pages of `areas` (every run in a pages image) into the process through
/// `target`, on one thread per CPU (at most [`THREADS_MAX`]); the first failure stops
/// every thread.
/// `checks`, by run of the areas in order (or empty): the stored checksum of a run
/// that the up-front pass left to the fill, taken from the bytes as they are read
/// (CRC-32C of each piece, combined per run once all are in).
pub(crate) fn fill(target: Target, areas: &[LazyArea], checks: &[Option<RunCheck>]) -> io::Result<Filled> {
    let (pieces, paths) = pieces(areas)?;
    let files: Vec<File> = paths
        .iter()
        .map(|path| File::open(path).map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display()))))
        .collect::<io::Result<_>>()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()).min(THREADS_MAX);
    let threads = cpus.min(pieces.len()).max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let checked = |run: usize| checks.get(run).is_some_and(Option::is_some);
    // The CRC-32C of each checked piece: `(piece index, crc)`.
    let work = || -> io::Result<Vec<(usize, u32)>> {
        let mut buffer = vec![0u8; CHUNK as usize];
        let mut crcs = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(addr, len, file, offset, run)) = pieces.get(index) else { break };
            let bytes = &mut buffer[..len as usize];
            let outcome = files[file]
                .read_exact_at(bytes, offset)
                .map_err(|e| io::Error::new(e.kind(), format!("read {} at {offset}: {e}", paths[file].display())))
                .and_then(|()| put(target, addr, bytes));
            if let Err(error) = outcome {
                failed.store(true, Ordering::Relaxed);
                return Err(error);
            }
            if checked(run) {
                crcs.push((index, crc32c(bytes)));
            }
        }
        Ok(crcs)
    };
    let crcs = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut outcome = work();
        for helper in helpers {
            let joined = helper.join().unwrap_or_else(|_| Err(io::Error::other("fill thread panicked")));
            outcome = match (outcome, joined) {
                (Ok(mut mine), Ok(theirs)) => {
                    mine.extend(theirs);
                    Ok(mine)
                }
                (Err(error), _) | (_, Err(error)) => Err(error),
            };
        }
        outcome
    })?;
    let checked_bytes = verify_runs(&pieces, crcs, checks)?;
    Ok(Filled { bytes: pieces.iter().map(|p| p.1).sum(), threads, checked: checked_bytes })
}

/// Combines the pieces' CRC-32Cs run by run and checks each checked run; the bytes
/// checked.
fn verify_runs(pieces: &[Piece], mut crcs: Vec<(usize, u32)>, checks: &[Option<RunCheck>]) -> io::Result<u64> {
    crcs.sort_unstable_by_key(|&(index, _)| index);
    let found = combine_per_run(checks.len(), crcs.into_iter().map(|(index, crc)| (pieces[index].4, pieces[index].1, crc)));
    let mut bytes = 0;
    for (check, found) in checks.iter().zip(found) {
        let Some(check) = check else { continue };
        check.check(found).map_err(io::Error::other)?;
        bytes += check.len;
    }
    Ok(bytes)
}

/// Puts `bytes` at `addr` of the process.
fn put(target: Target, addr: u64, bytes: &[u8]) -> io::Result<()> {
    match target {
        Target::Mem(mem) => mem.write_all_at(bytes, addr).map_err(|e| io::Error::new(e.kind(), format!("write pages at {addr:#x}: {e}"))),
        Target::Uffd(fd) => {
            let mut done = 0;
            while done < bytes.len() {
                let at = addr + done as u64;
                match uffd::copy_pages(fd, at, &bytes[done..]) {
                    Ok(0) => return Err(io::Error::other(format!("UFFDIO_COPY at {at:#x}: nothing copied"))),
                    Ok(copied) => done += copied as usize,
                    Err(error) => return Err(io::Error::new(error.kind(), format!("UFFDIO_COPY at {at:#x}: {error}"))),
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lazy::LazyRun;

    fn run(addr: u64, bytes: u64, file: &str, offset: u64) -> LazyRun {
        LazyRun { addr, bytes, file: Some(PathBuf::from(file)), offset }
    }

    #[test]
    fn runs_are_cut_into_chunks_and_files_named_once() {
        let areas = vec![
            LazyArea { start: 0x1000_0000, end: 0x1040_0000, runs: vec![run(0x1000_0000, CHUNK + 0x3000, "a", 0x5000), run(0x1020_0000, 0x1000, "b", 0)] },
            LazyArea { start: 0x2000_0000, end: 0x2010_0000, runs: vec![run(0x2000_0000, CHUNK, "a", 0x9000_0000)] },
        ];
        let (pieces, files) = pieces(&areas).unwrap();
        assert_eq!(files, vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(
            pieces,
            vec![
                (0x1000_0000, CHUNK, 0, 0x5000, 0),
                (0x1000_0000 + CHUNK, 0x3000, 0, 0x5000 + CHUNK, 0),
                (0x1020_0000, 0x1000, 1, 0, 1),
                (0x2000_0000, CHUNK, 0, 0x9000_0000, 2),
            ]
        );
    }

    #[test]
    fn pages_left_at_the_source_are_refused() {
        let areas = vec![LazyArea { start: 0, end: 0x1000, runs: vec![LazyRun { addr: 0, bytes: 0x1000, file: None, offset: 0 }] }];
        assert!(pieces(&areas).is_err());
    }

    /// A pages file of its own for each test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str, data: &[u8]) -> Scratch {
            let path = std::env::temp_dir().join(format!("crust-fill-{name}-{}", std::process::id()));
            std::fs::write(&path, data).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Fills memory of this process through its own /proc/self/mem from a file on two
    /// threads and more: every byte where the runs say, the holes untouched.
    #[test]
    fn fill_through_mem_puts_every_run_in_place() {
        let total = 3 * CHUNK as usize + 0x2000;
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let scratch = Scratch::new("runs", &data);
        let path = scratch.0.clone();
        let mut memory = vec![0u8; total + 0x4000];
        let base = memory.as_mut_ptr() as u64;
        let areas = vec![LazyArea {
            start: base,
            end: base + memory.len() as u64,
            runs: vec![
                LazyRun { addr: base, bytes: 2 * CHUNK, file: Some(path.clone()), offset: 0 },
                LazyRun { addr: base + 2 * CHUNK + 0x4000, bytes: CHUNK + 0x2000, file: Some(path.clone()), offset: 2 * CHUNK },
            ],
        }];
        let mem = File::options().write(true).open("/proc/self/mem").unwrap();
        let filled = fill(Target::Mem(&mem), &areas, &[]).unwrap();
        // Written behind the compiler's back, through /proc/self/mem.
        let memory = std::hint::black_box(memory);
        assert_eq!(filled.bytes, total as u64);
        assert_eq!(&memory[..2 * CHUNK as usize], &data[..2 * CHUNK as usize]);
        assert!(memory[2 * CHUNK as usize..2 * CHUNK as usize + 0x4000].iter().all(|&b| b == 0));
        assert_eq!(&memory[2 * CHUNK as usize + 0x4000..], &data[2 * CHUNK as usize..]);
    }

    /// Runs with a stored checksum are checked from the bytes the fill read: a right one
    /// passes, a wrong one fails the fill with the checksum's words.
    #[test]
    fn checked_runs_are_summed_from_the_pieces() {
        let total = 2 * CHUNK as usize + 0x3000;
        let data: Vec<u8> = (0..total).map(|i| (i * 7 % 253) as u8).collect();
        let scratch = Scratch::new("checked", &data);
        let path = scratch.0.clone();
        let mut memory = vec![0u8; total];
        let base = memory.as_mut_ptr() as u64;
        let first = 2 * CHUNK + 0x1000;
        let areas = vec![LazyArea {
            start: base,
            end: base + total as u64,
            runs: vec![
                LazyRun { addr: base, bytes: first, file: Some(path.clone()), offset: 0 },
                LazyRun { addr: base + first, bytes: 0x2000, file: Some(path.clone()), offset: first },
            ],
        }];
        let mem = File::options().write(true).open("/proc/self/mem").unwrap();
        let right = [
            Some(RunCheck::for_test(&path, 0, first, crc32c(&data[..first as usize]))),
            Some(RunCheck::for_test(&path, first, 0x2000, crc32c(&data[first as usize..]))),
        ];
        let filled = fill(Target::Mem(&mem), &areas, &right).unwrap();
        assert_eq!((filled.bytes, filled.checked), (total as u64, total as u64));
        let one = [Some(RunCheck::for_test(&path, 0, first, crc32c(&data[..first as usize]))), None];
        assert_eq!(fill(Target::Mem(&mem), &areas, &one).unwrap().checked, first);
        let wrong = [None, Some(RunCheck::for_test(&path, first, 0x2000, 0x1234_5678))];
        let error = fill(Target::Mem(&mem), &areas, &wrong).unwrap_err().to_string();
        assert!(error.contains("fail their checksum"), "{error}");
        let memory = std::hint::black_box(memory);
        assert_eq!(memory, data);
    }

    #[test]
    fn a_short_pages_file_fails_the_fill() {
        let scratch = Scratch::new("short", &[7u8; 0x1000]);
        let path = scratch.0.clone();
        let mut memory = vec![0u8; 0x2000];
        let base = memory.as_mut_ptr() as u64;
        let areas = vec![LazyArea { start: base, end: base + 0x2000, runs: vec![LazyRun { addr: base, bytes: 0x2000, file: Some(path), offset: 0 }] }];
        let mem = File::options().write(true).open("/proc/self/mem").unwrap();
        let error = fill(Target::Mem(&mem), &areas, &[]).unwrap_err();
        assert!(error.to_string().contains("crust-fill-short"), "{error}");
        drop(memory);
    }
}
