//! Fast page transfer from a stopped process into its pages image, and the pure run
//! building over pagemap entries that decides what to transfer.
//!
//! [`PageCopier`] reads the target's pages with `process_vm_readv(2)` into 1 MiB buffers
//! (pages pinned in batches and copied once, where `/proc/PID/mem` goes through a one-page
//! bounce buffer) and a writer thread (started with the first full buffer: pages that fit
//! in one are written by the copier itself) writes them to `pages-N.img` while the next
//! buffer fills, in 256 KiB `write(2)`s: measured on the development machine's ext4
//! (kernel 6.18), writing 1 GiB of fresh file data as 8 MiB writes takes 8-11 s, as 256 KiB writes
//! 1.5-2 s, since a big write asks for large page-cache folios whose allocation stalls.
//! Areas the target cannot read itself (no PROT_READ) and ranges `process_vm_readv`
//! refuses go through `/proc/PID/mem`, which reads them with FOLL_FORCE.
//!
//! Where the target can put its own pages into pipes (`vmsplice(2)` injected into it, see
//! `remote_pipes.rs`), [`PageCopier::copy_spliced`] skips the copy into crust: the writer
//! `splice(2)`s the pipe into the image, so each page is copied once, by the kernel, into
//! the page cache (measured on 1 GiB: crust's dump CPU 0.50-0.55 s with the extra
//! `process_vm_readv` copy, see docs/bench/README.md for the figures after). Their
//! checksums are read back from the page cache by a thread of their own once the writer
//! has spliced them.
//!
//! The kernel calls (process_vm_readv, splice, F_SETPIPE_SZ) are nix's, through `sys/`.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Instant;

use super::checksums::{crc32c, crc32c_combine, Piece};
use crate::sys;
pub(crate) use crate::sys::read_remote;

/// Size of one read buffer: one `process_vm_readv` per buffer at most (per run when runs
/// are short).
pub const READ_BUFFER: usize = 1 << 20;
/// Size of one `write(2)` of page data.
pub const WRITE_CHUNK: usize = 256 << 10;
/// Runs shorter than this are copied even when pipes are there: one injected vmsplice
/// costs about 30 µs, what process_vm_readv takes for a few hundred KiB.
pub const SPLICE_AT_LEAST: u64 = 256 << 10;
/// Buffers in flight between the reader and the writer.
const BUFFERS: usize = 4;
/// Progress is logged every this many bytes.
const PROGRESS_EVERY: u64 = 256 << 20;

/// Runs of consecutive pages in `entries` (one pagemap entry per page) that `want`
/// accepts, as `(first index, page count)`.
pub fn page_runs(entries: &[u64], want: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut run_start: Option<usize> = None;
    for (index, &entry) in entries.iter().enumerate() {
        match (want(entry), run_start) {
            (true, None) => run_start = Some(index),
            (false, Some(first)) => {
                runs.push((first as u64, (index - first) as u64));
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(first) = run_start {
        runs.push((first as u64, (entries.len() - first) as u64));
    }
    runs
}

/// Appends a run `(address, pages)` to `runs`, joined to the last one where they touch.
pub(crate) fn push_run(runs: &mut Vec<(u64, u64)>, addr: u64, pages: u64, page: u64) {
    match runs.last_mut() {
        Some(last) if last.0 + last.1 * page == addr => last.1 += pages,
        _ => runs.push((addr, pages)),
    }
}

/// Pages whose /proc/PID/pagemap entries are read at a time (512 KiB of entries).
const PAGEMAP_CHUNK: u64 = 65536;

/// `npages` pages as the pagemap is read: `(first page, pages)` chunks.
pub(crate) fn pagemap_chunks(npages: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..npages.div_ceil(PAGEMAP_CHUNK)).map(move |chunk| {
        let first = chunk * PAGEMAP_CHUNK;
        (first, PAGEMAP_CHUNK.min(npages - first))
    })
}

/// /proc/PID/pagemap entries, read into buffers kept from one read to the next.
#[derive(Default)]
pub(crate) struct PagemapEntries {
    bytes: Vec<u8>,
    entries: Vec<u64>,
}

impl PagemapEntries {
    /// The entries of the `count` pages from `addr` (page-aligned) of `pagemap`.
    pub(crate) fn read(&mut self, pagemap: &File, addr: u64, count: u64, page: u64) -> io::Result<&[u64]> {
        self.bytes.resize((count * 8) as usize, 0);
        pagemap.read_exact_at(&mut self.bytes, addr / page * 8)?;
        self.entries.clear();
        self.entries.extend(self.bytes.chunks_exact(8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))));
        Ok(&self.entries)
    }
}

/// Reads `buf.len()` bytes at `addr` of process `pid` (stopped, or a page it cannot
/// change meanwhile): `process_vm_readv` where the area is `readable`, `mem` (its
/// /proc/PID/mem, which reads with FOLL_FORCE) for the rest.
pub(crate) fn read_target(pid: i32, mem: &File, buf: &mut [u8], addr: u64, readable: bool) -> io::Result<()> {
    let read = if readable { read_remote(pid, buf, addr).unwrap_or(0) } else { 0 };
    if read < buf.len() {
        mem.read_exact_at(&mut buf[read..], addr + read as u64)?;
    }
    Ok(())
}

/// What the writer thread appends next.
enum Job {
    /// `len` bytes at the start of the buffer (which then goes back to the reader).
    Buffer(Vec<u8>, usize),
    /// `len` bytes waiting in pipe number `index` (which then goes back, empty); with
    /// `source` (their address in the target), the checksum thread sums them there once
    /// they are spliced.
    Pipe { index: usize, len: usize, source: Option<u64> },
}

/// What [`write_jobs`] is started with, kept by a copier without pipes until its first
/// full buffer.
struct Unstarted {
    out: File,
    jobs: Receiver<Job>,
    give_back: std::sync::mpsc::Sender<Vec<u8>>,
}

/// Copies ranges of a stopped process's memory to the end of a pages image, in order.
pub struct PageCopier {
    pid: i32,
    /// At most `READ_BUFFER` long, grown (zeroed once, never again) as pages come, so a
    /// process with little memory zeroes little; `filled` bytes hold pages.
    current: Vec<u8>,
    /// Buffers made so far (at most `BUFFERS`): more are made only while the writer has
    /// none to give back.
    made: usize,
    filled: usize,
    to_writer: Option<SyncSender<Job>>,
    /// Pipes (by index) the writer has emptied; only the writer sends, so a writer that
    /// ended shows as a closed channel.
    free_pipes: Option<Receiver<usize>>,
    /// An empty pipe taken but not used.
    spare_pipe: Option<usize>,
    free_buffers: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    /// The writer thread's file and ends of its channels while it is not started: a
    /// copier without pipes starts it with its first full buffer, and one whose pages
    /// fit in one buffer writes them itself (a tree of 100 small processes spawned and
    /// joined 100 writers).
    unstarted: Option<Unstarted>,
    /// The thread that takes the checksums of spliced pages from the page cache, once
    /// the writer has spliced them into the file; its pieces come with [`PageCopier::finish`].
    summer: Option<JoinHandle<io::Result<Vec<Piece>>>>,
    copied: u64,
    started: Instant,
    next_progress: u64,
    /// The CRC-32C of each piece appended (`checksums.rs`), taken while its bytes are
    /// in the cache; offsets from the start of the file.
    pieces: Vec<Piece>,
    /// Where spliced pages are read once more for their checksum.
    scratch: Vec<u8>,
    /// Time spent on checksums (logged, for the bench).
    checksum_time: std::time::Duration,
    /// Take the checksums (off for a stream to a page server, which has no use for them).
    checksums: bool,
}

impl PageCopier {
    /// A copier into `out` (positioned where the pages go); its writer thread starts
    /// with the first full buffer.
    pub fn new(pid: i32, out: File) -> io::Result<PageCopier> {
        PageCopier::with_pipes(pid, out, Vec::new())
    }

    /// The same, with the read ends of pipes that [`PageCopier::copy_spliced`] fills (the
    /// writer then starts at once).
    pub fn with_pipes(pid: i32, out: File, pipes: Vec<OwnedFd>) -> io::Result<PageCopier> {
        let (to_writer, filled) = sync_channel::<Job>(BUFFERS + pipes.len());
        let (give_back, free_buffers) = channel::<Vec<u8>>();
        let (pipe_back, free_pipes) = channel::<usize>();
        for index in 0..pipes.len() {
            pipe_back.send(index).expect("receiver is alive here");
        }
        let free_pipes = (!pipes.is_empty()).then_some(free_pipes);
        // Spliced pages are checksummed on a thread of their own, beside the writer's
        // splice and the target's vmsplice (on the thread that drives the target this
        // took 0.4 s a GiB), read from the stopped target's memory once spliced: not from
        // the pages file, whose page cache a dump bigger than the free memory has
        // already written out (16 GiB here: every page read back from the disk).
        // Without /proc/PID/mem, on the driving thread.
        let mem = if pipes.is_empty() { None } else { Some(File::open(format!("/proc/{pid}/mem"))) };
        let (summer, to_summer) = match mem {
            Some(Ok(mem)) => {
                let (to_summer, ranges) = sync_channel::<(u64, u64, u64)>(BUFFERS + pipes.len());
                let summer = std::thread::Builder::new().name("crust-crc".into()).spawn(move || sum_ranges(pid, mem, ranges))?;
                (Some(summer), Some(to_summer))
            }
            Some(Err(error)) => {
                log::debug!("pid {pid}: spliced pages checksummed on the driving thread: open /proc/{pid}/mem: {error}");
                (None, None)
            }
            None => (None, None),
        };
        let (writer, unstarted) = if pipes.is_empty() {
            (None, Some(Unstarted { out, jobs: filled, give_back }))
        } else {
            (Some(spawn_writer(out, filled, give_back, pipes, pipe_back, to_summer)?), None)
        };
        Ok(PageCopier {
            pid,
            current: Vec::new(),
            made: 1,
            filled: 0,
            to_writer: Some(to_writer),
            free_pipes,
            spare_pipe: None,
            free_buffers,
            writer,
            unstarted,
            summer,
            copied: 0,
            started: Instant::now(),
            next_progress: PROGRESS_EVERY,
            pieces: Vec::new(),
            scratch: Vec::new(),
            checksum_time: std::time::Duration::ZERO,
            checksums: true,
        })
    }

    /// No checksums: the pages go to a page server, which keeps none.
    pub fn without_checksums(mut self) -> PageCopier {
        self.checksums = false;
        self
    }

    /// Appends `len` bytes of the target's memory at `addr`. `readable`: the area has
    /// PROT_READ, so `process_vm_readv` may read it; otherwise `mem` (`/proc/PID/mem`)
    /// does.
    pub fn copy(&mut self, mem: &File, addr: u64, len: u64, readable: bool) -> io::Result<()> {
        let mut done = 0u64;
        while done < len {
            if self.filled == READ_BUFFER {
                self.send_current()?;
            }
            let room = (READ_BUFFER - self.filled) as u64;
            let step = room.min(len - done) as usize;
            self.make_room(step);
            let target = &mut self.current[self.filled..self.filled + step];
            // What process_vm_readv would not read (not readable, or a fault) goes
            // through /proc/PID/mem, whose error names it.
            read_target(self.pid, mem, target, addr + done, readable)?;
            if self.checksums {
                let timer = Instant::now();
                self.pieces.push(Piece { offset: self.copied, len: step as u64, crc: crc32c(target) });
                self.checksum_time += timer.elapsed();
            }
            self.filled += step;
            done += step as u64;
            self.copied += step as u64;
        }
        self.log_progress();
        Ok(())
    }

    /// Appends `len` bytes of the target's memory at `addr` through the pipes:
    /// `vmsplice(pipe index, addr, len)` asks the target to put (at most `len` bytes of)
    /// those pages into the pipe and says how many it did. Whatever it refuses (an
    /// error, or nothing spliced) is copied as [`PageCopier::copy`] would.
    pub fn copy_spliced(
        &mut self,
        mem: &File,
        addr: u64,
        len: u64,
        readable: bool,
        vmsplice: &mut dyn FnMut(usize, u64, u64) -> io::Result<u64>,
    ) -> io::Result<()> {
        if self.free_pipes.is_none() || !readable || len < SPLICE_AT_LEAST {
            return self.copy(mem, addr, len, readable);
        }
        // Buffered pages go first: the writer appends in the order it is given work.
        if self.filled > 0 {
            self.send_current()?;
        }
        let mut done = 0u64;
        while done < len {
            let index = match self.spare_pipe.take() {
                Some(index) => index,
                None => match self.free_pipes.as_ref().expect("checked above").recv() {
                    Ok(index) => index,
                    Err(_) => return Err(self.writer_error()),
                },
            };
            let spliced = match vmsplice(index, addr + done, len - done) {
                Ok(n) if n > 0 => n.min(len - done),
                _ => {
                    self.spare_pipe = Some(index);
                    return self.copy(mem, addr + done, len - done, readable);
                }
            };
            // The checksum of what the pipe holds: on the checksum thread once spliced,
            // else read from the stopped target now.
            let on_thread = self.checksums && self.summer.is_some();
            if self.checksums && !on_thread {
                let timer = Instant::now();
                let crc = self.checksum_remote(mem, addr + done, spliced)?;
                self.checksum_time += timer.elapsed();
                self.pieces.push(Piece { offset: self.copied, len: spliced, crc });
            }
            let sender = self.to_writer.as_ref().expect("sender lives until finish");
            if sender.send(Job::Pipe { index, len: spliced as usize, source: on_thread.then_some(addr + done) }).is_err() {
                return Err(self.writer_error());
            }
            done += spliced;
            self.copied += spliced;
        }
        self.log_progress();
        Ok(())
    }

    /// Appends `bytes` that are not the target's memory read now (a page server's
    /// header, pages read already), in order with the pages around them; not counted in
    /// [`PageCopier::copied`] and not checksummed (a stream to a page server has neither).
    pub fn append_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.filled == READ_BUFFER {
                self.send_current()?;
            }
            let step = rest.len().min(READ_BUFFER - self.filled);
            self.make_room(step);
            self.current[self.filled..self.filled + step].copy_from_slice(&rest[..step]);
            self.filled += step;
            rest = &rest[step..];
        }
        Ok(())
    }

    /// The CRC-32C of `len` bytes of the target at `addr`, read in 256 KiB steps.
    fn checksum_remote(&mut self, mem: &File, addr: u64, len: u64) -> io::Result<u32> {
        crc_of_target(self.pid, mem, addr, len, &mut self.scratch)
    }


    fn log_progress(&mut self) {
        if self.copied >= self.next_progress {
            let seconds = self.started.elapsed().as_secs_f64().max(1e-6);
            log::info!(
                target: "crust::progress",
                "pid {}: {} MiB of pages written, {:.0} MiB/s",
                self.pid,
                self.copied >> 20,
                (self.copied >> 20) as f64 / seconds
            );
            self.next_progress = (self.copied / PROGRESS_EVERY + 1) * PROGRESS_EVERY;
        }
    }

    /// Bytes appended so far.
    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// Writes what is left and waits for the writer and the checksum thread; the bytes
    /// appended and the checksum of every piece (`checksums.rs`), or the first error.
    pub(crate) fn finish(mut self) -> io::Result<(u64, Vec<Piece>)> {
        if let Some(Unstarted { mut out, .. }) = self.unstarted.take() {
            // Everything fit in one buffer: written here.
            write_chunks(&mut out, &self.current[..self.filled])?;
            self.filled = 0;
        }
        if self.filled > 0 {
            self.send_current()?;
        }
        self.to_writer.take();
        self.join_writer()?;
        let mut pieces = std::mem::take(&mut self.pieces);
        let summed = match self.summer.take() {
            Some(summer) => {
                let timer = Instant::now();
                let summed = summer.join().map_err(|_| io::Error::other("checksum thread panicked"))??;
                self.checksum_time += timer.elapsed();
                summed
            }
            None => Vec::new(),
        };
        if self.checksums {
            let spliced: u64 = summed.iter().map(|p| p.len).sum();
            log::info!(
                "pid {}: page checksums of {} MiB ({} MiB of them on their own thread, beside the splice) waited for {:?}",
                self.pid,
                self.copied >> 20,
                spliced >> 20,
                self.checksum_time
            );
        }
        pieces.extend(summed);
        Ok((self.copied, pieces))
    }

    /// Grows the current buffer to hold `step` more bytes: at least doubled, at least
    /// 64 KiB, at most `READ_BUFFER`.
    fn make_room(&mut self, step: usize) {
        let needed = self.filled + step;
        if self.current.len() < needed {
            let grown = needed.max(self.current.len() * 2).clamp(64 << 10, READ_BUFFER);
            self.current.resize(grown, 0);
        }
    }

    fn send_current(&mut self) -> io::Result<()> {
        if let Some(Unstarted { out, jobs, give_back }) = self.unstarted.take() {
            self.writer = Some(spawn_writer(out, jobs, give_back, Vec::new(), channel().0, None)?);
        }
        let given_back = match self.free_buffers.try_recv() {
            Ok(buffer) => Some(buffer),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            // The writer ended: it failed.
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(self.writer_error()),
        };
        let next = match given_back {
            Some(buffer) => buffer,
            None if self.made < BUFFERS => {
                self.made += 1;
                Vec::new()
            }
            None => match self.free_buffers.recv() {
                Ok(buffer) => buffer,
                Err(_) => return Err(self.writer_error()),
            },
        };
        let full = std::mem::replace(&mut self.current, next);
        let filled = std::mem::take(&mut self.filled);
        let sender = self.to_writer.as_ref().expect("sender lives until finish");
        if sender.send(Job::Buffer(full, filled)).is_err() {
            return Err(self.writer_error());
        }
        Ok(())
    }

    fn writer_error(&mut self) -> io::Error {
        self.to_writer.take();
        match self.join_writer() {
            Err(error) => error,
            Ok(()) => io::Error::other("pages writer thread ended early"),
        }
    }

    fn join_writer(&mut self) -> io::Result<()> {
        match self.writer.take() {
            Some(handle) => handle.join().map_err(|_| io::Error::other("pages writer thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for PageCopier {
    fn drop(&mut self) {
        self.to_writer.take();
        let _ = self.join_writer();
    }
}

/// The CRC-32C of `len` bytes at `addr` in stopped process `pid` (process_vm_readv,
/// else its /proc/PID/mem `mem`), read through `scratch`.
fn crc_of_target(pid: i32, mem: &File, addr: u64, len: u64, scratch: &mut Vec<u8>) -> io::Result<u32> {
    scratch.resize(WRITE_CHUNK, 0);
    let mut crc: Option<u32> = None;
    let mut done = 0u64;
    while done < len {
        let step = (len - done).min(WRITE_CHUNK as u64) as usize;
        let target = &mut scratch[..step];
        let read = read_remote(pid, target, addr + done).unwrap_or(0);
        if read < step {
            mem.read_exact_at(&mut target[read..], addr + done + read as u64)?;
        }
        let piece = crc32c(target);
        crc = Some(crc.map_or(piece, |before| crc32c_combine(before, piece, step as u64)));
        done += step as u64;
    }
    Ok(crc.unwrap_or_else(|| crc32c(&[])))
}

/// The checksum thread: the CRC-32C of each `(file offset, len, address)` it is sent,
/// read at that address of the stopped target once the writer spliced it.
fn sum_ranges(pid: i32, mem: File, ranges: Receiver<(u64, u64, u64)>) -> io::Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut scratch = Vec::new();
    while let Ok((offset, len, addr)) = ranges.recv() {
        pieces.push(Piece { offset, len, crc: crc_of_target(pid, &mem, addr, len, &mut scratch)? });
    }
    Ok(pieces)
}

/// Starts [`write_jobs`] on a thread of its own.
fn spawn_writer(
    out: File,
    jobs: Receiver<Job>,
    give_back: std::sync::mpsc::Sender<Vec<u8>>,
    pipes: Vec<OwnedFd>,
    pipe_back: std::sync::mpsc::Sender<usize>,
    to_summer: Option<SyncSender<(u64, u64, u64)>>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new().name("crust-pages".into()).spawn(move || write_jobs(out, jobs, give_back, pipes, pipe_back, to_summer))
}

/// Appends `bytes` to `out` in `WRITE_CHUNK` writes.
fn write_chunks(out: &mut File, bytes: &[u8]) -> io::Result<()> {
    for chunk in bytes.chunks(WRITE_CHUNK) {
        out.write_all(chunk)?;
    }
    Ok(())
}

fn write_jobs(
    mut out: File,
    jobs: Receiver<Job>,
    give_back: std::sync::mpsc::Sender<Vec<u8>>,
    pipes: Vec<OwnedFd>,
    pipe_back: std::sync::mpsc::Sender<usize>,
    to_summer: Option<SyncSender<(u64, u64, u64)>>,
) -> io::Result<()> {
    // Where the next bytes go: the file is written in order from its start.
    let mut offset = 0u64;
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Buffer(buffer, len) => {
                write_chunks(&mut out, &buffer[..len])?;
                offset += len as u64;
                // The reader may be done already: then nobody wants the buffer back.
                let _ = give_back.send(buffer);
            }
            Job::Pipe { index, len, source } => {
                let mut left = len;
                while left > 0 {
                    let moved = sys::splice_to_file(&pipes[index], &out, left)?;
                    if moved == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "pipe of pages ended early"));
                    }
                    left -= moved;
                }
                let _ = pipe_back.send(index);
                if let Some(addr) = source {
                    let summer = to_summer.as_ref().expect("a checksum thread where a source is given");
                    if summer.send((offset, len as u64, addr)).is_err() {
                        // It failed: its error comes with the copier's finish.
                        return Ok(());
                    }
                }
                offset += len as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_wanted_pages() {
        let entries = [1, 1, 0, 1, 0, 0, 1, 1, 1];
        assert_eq!(page_runs(&entries, |e| e == 1), vec![(0, 2), (3, 1), (6, 3)]);
        assert_eq!(page_runs(&[], |_| true), vec![]);
        assert_eq!(page_runs(&[0, 0], |e| e == 1), vec![]);
    }

    #[test]
    fn copies_own_memory_in_order() {
        let data: Vec<u8> = (0..3 * READ_BUFFER + 12345).map(|i| (i * 7 % 251) as u8).collect();
        let dir = std::env::temp_dir().join(format!("crust-fast-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pages.img");
        let mem = File::open("/proc/self/mem").expect("open own mem");
        let mut copier = PageCopier::new(std::process::id() as i32, File::create(&path).expect("create")).expect("copier");
        let base = data.as_ptr() as u64;
        copier.copy(&mem, base, 100, true).expect("small run");
        copier.copy(&mem, base + 100, (data.len() - 200) as u64, true).expect("big run");
        copier.copy(&mem, base + data.len() as u64 - 100, 100, false).expect("through /proc/self/mem");
        let (copied, pieces) = copier.finish().expect("finish");
        assert_eq!(copied, data.len() as u64);
        assert_pieces_cover(&pieces, &data);
        assert_eq!(std::fs::read(&path).expect("read back"), data);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pages_that_fit_in_one_buffer_are_written_without_a_writer_thread() {
        let data: Vec<u8> = (0..READ_BUFFER - 4096).map(|i| (i * 13 % 251) as u8).collect();
        let dir = std::env::temp_dir().join(format!("crust-small-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pages.img");
        let mem = File::open("/proc/self/mem").expect("open own mem");
        let mut copier = PageCopier::new(std::process::id() as i32, File::create(&path).expect("create")).expect("copier");
        copier.copy(&mem, data.as_ptr() as u64, data.len() as u64, true).expect("copy");
        assert!(copier.writer.is_none(), "no writer thread for one buffer");
        let (copied, pieces) = copier.finish().expect("finish");
        assert_eq!(copied, data.len() as u64);
        assert_pieces_cover(&pieces, &data);
        assert_eq!(std::fs::read(&path).expect("read back"), data);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The pieces cover `data` once each, each with its bytes' checksum.
    fn assert_pieces_cover(pieces: &[Piece], data: &[u8]) {
        let mut sorted = pieces.to_vec();
        sorted.sort_by_key(|p| p.offset);
        let mut at = 0u64;
        for piece in &sorted {
            assert_eq!(piece.offset, at, "pieces follow each other: {sorted:?}");
            let bytes = &data[piece.offset as usize..(piece.offset + piece.len) as usize];
            assert_eq!(piece.crc, crc32c(bytes), "checksum of the piece at {}", piece.offset);
            at += piece.len;
        }
        assert_eq!(at, data.len() as u64);
    }

    #[test]
    fn splices_and_copies_in_order() {
        let data: Vec<u8> = (0..6 * READ_BUFFER).map(|i| (i * 13 % 253) as u8).collect();
        let dir = std::env::temp_dir().join(format!("crust-fast-pages-splice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pages.img");
        let mem = File::open("/proc/self/mem").expect("open own mem");
        let (mut read_ends, mut write_ends) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (read_end, write_end) = crate::sys::file::create_pipe().expect("pipe2");
            read_ends.push(read_end);
            write_ends.push(write_end);
        }
        let mut copier = PageCopier::with_pipes(std::process::id() as i32, File::create(&path).expect("create"), read_ends)
            .expect("copier");
        let mut calls = 0;
        let base = data.as_ptr() as u64;
        let mut vmsplice = |index: usize, addr: u64, len: u64| -> io::Result<u64> {
            calls += 1;
            let from = (addr - base) as usize;
            let piece = [std::io::IoSlice::new(&data[from..from + len.min(64 << 10) as usize])];
            #[allow(unsafe_code)]
            // SAFETY: `data` stays alive and unchanged until the copier has finished (the
            // pipe holds references to its pages until then).
            let n = unsafe { nix::fcntl::vmsplice(&write_ends[index], &piece, nix::fcntl::SpliceFFlags::SPLICE_F_NONBLOCK) }?;
            Ok(n as u64)
        };
        let page = 4096u64;
        copier.copy(&mem, base, page, true).expect("copied first");
        copier.copy_spliced(&mem, base + page, 2 * READ_BUFFER as u64, true, &mut vmsplice).expect("spliced");
        copier.copy_spliced(&mem, base + page + 2 * READ_BUFFER as u64, page, true, &mut vmsplice).expect("short run");
        let rest = base + 2 * page + 2 * READ_BUFFER as u64;
        copier.copy_spliced(&mem, rest, base + data.len() as u64 - rest, true, &mut vmsplice).expect("the rest");
        let (copied, pieces) = copier.finish().expect("finish");
        assert_eq!(copied, data.len() as u64);
        assert_pieces_cover(&pieces, &data);
        assert!(calls > 2, "the pipes were used ({calls} vmsplice calls)");
        assert_eq!(std::fs::read(&path).expect("read back"), data);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
