//! The copy-on-write snapshot of `dump --leave-running`: the target is frozen only while
//! its state is collected and its memory is write-protected, and runs again while its
//! pages are written out; the image still holds every page as it was at the freeze.
//!
//! While the tree is frozen, each process makes a userfaultfd (an injected
//! `userfaultfd(O_CLOEXEC|O_NONBLOCK)`, borrowed with `pidfd_getfd` and closed in the
//! target at once, so crust holds the only reference), and crust registers each private
//! anonymous area that has pages to dump with UFFDIO_REGISTER_MODE_WP and
//! write-protects it ([`Arming`]). The pagemap of the small areas is read in the same
//! frozen instant; that of the big ones after the release ([`settle_layout`]: their
//! pages at the freeze are the ones that keep the write-protect bit, or that the fault
//! handler copied meanwhile), and then every run gets its place in `pages-N.img`.
//! A fault handler thread is started before the tree is released ([`Snapshot::start`]),
//! and [`Snapshot::copy`] runs once it is:
//!
//! - the copier walks the runs in 1 MiB chunks: reads a chunk (`process_vm_readv`),
//!   *claims* its pages that nobody handled yet, lifts the write protection of those
//!   pages, marks them done and hands the bytes to a writer thread (`pwrite` at the
//!   page's fixed offset);
//! - a handler thread reads the userfaultfds: a write fault on a protected page makes it
//!   claim, read, unprotect (which wakes the faulting thread) and write the 64 KiB block
//!   around the page first, so a page is always read before anybody may write it.
//!
//! Every page's bytes are read while its write protection is still on, so they are the
//! bytes of the freeze. What write protection cannot see is reported as an event the
//! kernel holds the target on until crust reads it: madvise(DONTNEED/FREE) before it
//! drops pages, munmap and mremap after (UFFDIO_WRITEPROTECT fails with EAGAIN from the
//! start of those until the event is read, and a page is marked done only after its
//! unprotect succeeded). An event over a page not yet done makes the snapshot
//! [`CopyError::Broken`]: the dump is then done again with the frozen copy. At the end
//! crust closes the userfaultfds, which unregisters every area and lets any thread still
//! waiting go; the kernel does the same when crust dies, so a killed crust leaves the
//! target running with its memory as it made it.
//!
//! Not covered (the frozen copy has the same limits): device DMA into pages pinned before
//! the freeze (io_uring fixed buffers, RDMA), which bypasses the page tables. Visible to
//! the target during the copy: its own UFFDIO_REGISTER of an armed area fails with EBUSY.
//!
//! Why userfaultfd and not a forked copy of the target (the kernel's own COW): a child
//! of the target is visible to it (a pid, `wait(__WALL)` reaping it, SIGCHLD, its
//! `/proc/PID/task/*/children`), and it would need the target's cooperation to fork.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crust_arch::Sys;
use crust_images::ImageWriter;

use super::checksums::{crc32c, Piece, Pieces};
use super::{PE_PRESENT, PM_GUARD_REGION};
use super::pages::{page_runs, pagemap_chunks, push_run, PagemapEntries};
use crate::parasite::{Arg, Batch, Parasite};
use crate::sys;
use crate::sys::uffd;

/// Bytes the copier reads (and unprotects) at a time.
const CHUNK: u64 = 1 << 20;
/// Bytes the fault handler copies around a faulting page.
const FAULT_BLOCK: u64 = 64 << 10;
/// Events the snapshot asks for: every way the target can drop or move pages.
const FEATURES: u64 = uffd::FEATURE_EVENT_REMAP | uffd::FEATURE_EVENT_REMOVE | uffd::FEATURE_EVENT_UNMAP;

/// Why the copy-on-write copy did not produce the pages.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The snapshot could not be kept (the target dropped or moved memory not yet copied,
    /// or a page could not be read): nothing is wrong with the target, the dump must be
    /// done again frozen.
    #[error("pid {pid}: copy-on-write snapshot given up: {reason}")]
    Broken { pid: i32, reason: String },
    /// Writing the pages image failed.
    #[error("pid {pid}: write pages: {source}")]
    Write { pid: i32, source: io::Error },
    /// A fault injected by a test.
    #[error("fault injected while pages were copied")]
    FaultInjected,
    /// A stop request (`interrupt.rs`) came during the copy; the tree runs on.
    #[error("stopped while pages were copied")]
    Interrupted,
}

/// Ranges from this many bytes on are write-protected by several threads.
const PROTECT_SPLIT_FROM: u64 = 64 << 20;
/// The most threads that write-protect at once.
const PROTECT_THREADS_MAX: usize = 4;

/// Cuts `ranges` into `parts` shares of about equal bytes (page-aligned cuts), each a
/// list of `(index of the range, start, end)`, in address order.
fn split_shares(ranges: &[(u64, u64)], parts: usize, page: u64) -> Vec<Vec<(usize, u64, u64)>> {
    let total: u64 = ranges.iter().map(|&(start, end)| end - start).sum();
    let share = (total.div_ceil(parts as u64)).div_ceil(page) * page;
    let mut shares = vec![Vec::new()];
    let mut room = share;
    for (index, &(start, end)) in ranges.iter().enumerate() {
        let mut from = start;
        while from < end {
            if room == 0 && shares.len() < parts {
                shares.push(Vec::new());
                room = share;
            }
            let to = if shares.len() < parts { end.min(from + room) } else { end };
            shares.last_mut().expect("one share at least").push((index, from, to));
            room = room.saturating_sub(to - from);
            from = to;
        }
    }
    shares
}

/// The pages image's layout of an armed process whose big areas' pagemap is read after
/// the release (`dump.rs`, `dump_memory_armed`): every area with pages, in address order.
pub(crate) struct PendingLayout {
    /// The process's /proc/PID/pagemap, read once the tree runs.
    pub pagemap: File,
    /// `pagemap-PID.img`, its head written.
    pub pagemap_out: ImageWriter,
    pub areas: Vec<Pending>,
}

/// A [`PendingLayout`] in the snapshot, its pagemap kept beside it.
struct Layout {
    pagemap_out: ImageWriter,
    areas: Vec<Pending>,
}

/// One area of a [`PendingLayout`].
pub(crate) enum Pending {
    /// Copied while frozen: its runs `(address, pages)` and their bytes, one after the other.
    Copied { runs: Vec<(u64, u64)>, data: Vec<u8> },
    /// Write-protected, its runs read while frozen.
    Armed { start: u64, end: u64, readable: bool, runs: Vec<(u64, u64)> },
    /// Write-protected, its runs found after the release.
    Deferred { start: u64, end: u64, readable: bool },
}

/// A userfaultfd of one process, made while the process is frozen, for [`Arming::protect`].
pub(crate) struct Arming {
    pid: i32,
    uffd: OwnedFd,
    areas: Vec<ArmedArea>,
}

/// A run of pages to copy: `pages` pages at `addr`, at byte `offset` of the pages file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub addr: u64,
    pub pages: u64,
    pub offset: u64,
}

struct ArmedArea {
    start: u64,
    end: u64,
    readable: bool,
    runs: Vec<Run>,
}

impl Arming {
    /// Makes the process's userfaultfd: `userfaultfd(O_CLOEXEC|O_NONBLOCK)` run by its
    /// parasite (every signal blocked), taken with pidfd_getfd, closed in the target, and
    /// its API enabled with the remap, remove and unmap events. Without CAP_SYS_PTRACE
    /// in the target (or vm.unprivileged_userfaultfd) the kernel refuses: crust does not
    /// fall back to UFFD_USER_MODE_ONLY, under which a write by the kernel (`read(2)`
    /// into a protected page) would fail with EFAULT in the target instead of waiting.
    pub(crate) fn open(parasite: &mut Parasite) -> io::Result<Arming> {
        let pid = parasite.pid();
        let expected = parasite.expect_fds(1).map_err(io::Error::other)?;
        let mut batch = Batch::new();
        let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
        let call = batch.call(Sys::Userfaultfd, &[Arg::V(flags)]);
        let fd = parasite.run(&batch).map_err(io::Error::other)?.result(call);
        let made = if fd < 0 { -1 } else { fd as i32 };
        parasite.check_fds("userfaultfd", &expected, &[made]).map_err(io::Error::other)?;
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd as i32));
        }
        let borrowed = parasite.borrow_fd(made).map_err(io::Error::other);
        let closed = parasite.close_fds(&[made]).map_err(io::Error::other);
        let uffd = borrowed?;
        closed?;
        let features = uffd::enable_api(uffd.as_fd(), FEATURES)?;
        if features & FEATURES != FEATURES {
            return Err(io::Error::other(format!("userfaultfd events {FEATURES:#x} not all offered ({features:#x})")));
        }
        Ok(Arming { pid, uffd, areas: Vec::new() })
    }

    /// Registers `start..end` for write-protect faults (UFFDIO_REGISTER_MODE_WP); its
    /// pages are protected by [`Arming::write_protect`] and handed over by [`Arming::arm`].
    pub(crate) fn register(&mut self, start: u64, end: u64) -> io::Result<()> {
        if !uffd::register_write_protect(self.uffd.as_fd(), start, end - start)? {
            // Registered but without UFFDIO_WRITEPROTECT: closing the fd at the end
            // unregisters it.
            return Err(io::Error::other("UFFDIO_WRITEPROTECT not offered for the area"));
        }
        Ok(())
    }

    /// Write-protects the pages of registered areas (`ranges`); one result per range.
    /// Takes `&self` only, so it can run beside the pagemap reads. The kernel walks
    /// every page table entry of the ranges (about 70 ns per present 4 KiB page here,
    /// 18 ms a GiB) under the mmap lock taken for reading, so from
    /// [`PROTECT_SPLIT_FROM`] bytes on the ranges are cut into one share per CPU, each
    /// protected by a thread of its own.
    pub(crate) fn write_protect(&self, ranges: &[(u64, u64)]) -> Vec<io::Result<()>> {
        let total: u64 = ranges.iter().map(|&(start, end)| end - start).sum();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()).min(PROTECT_THREADS_MAX);
        if total < PROTECT_SPLIT_FROM || cpus < 2 {
            return ranges.iter().map(|&(start, end)| uffd::write_protect(self.uffd.as_fd(), start, end - start, true)).collect();
        }
        let shares = split_shares(ranges, cpus, sys::page_size());
        let protect = |share: &Vec<(usize, u64, u64)>| -> Vec<(usize, io::Result<()>)> {
            share.iter().map(|&(index, start, end)| (index, uffd::write_protect(self.uffd.as_fd(), start, end - start, true))).collect()
        };
        let outcomes: Vec<(usize, io::Result<()>)> = std::thread::scope(|scope| {
            let (own, others) = shares.split_first().expect("at least one share");
            let helpers: Vec<_> = others.iter().map(|share| (share, scope.spawn(move || protect(share)))).collect();
            let mut outcomes = protect(own);
            for (share, helper) in helpers {
                // A share whose thread panicked fails each of its ranges.
                outcomes.extend(helper.join().unwrap_or_else(|_| {
                    share.iter().map(|&(index, ..)| (index, Err(io::Error::other("write-protect thread panicked")))).collect()
                }));
            }
            outcomes
        });
        // A range cut into pieces fails with its first piece that failed.
        let mut results: Vec<io::Result<()>> = ranges.iter().map(|_| Ok(())).collect();
        for (index, outcome) in outcomes {
            if let (Err(error), true) = (outcome, results[index].is_ok()) {
                results[index] = Err(error);
            }
        }
        results
    }

    /// Hands a registered, write-protected area and its pages to dump (`runs`) to the
    /// snapshot: [`Snapshot::copy`] copies them.
    pub(crate) fn arm(&mut self, start: u64, end: u64, readable: bool, runs: Vec<Run>) {
        self.areas.push(ArmedArea { start, end, readable, runs });
    }

    /// Pages armed so far.
    pub(crate) fn pages(&self) -> u64 {
        self.areas.iter().flat_map(|a| &a.runs).map(|r| r.pages).sum()
    }

    /// The armed process, whose pages [`Snapshot::copy`] writes into `out`, the pages
    /// file `pages_name` (`mem`: its /proc/PID/mem, for areas without PROT_READ);
    /// `pieces`: the checksums of what was copied into it while frozen.
    pub(crate) fn finish(self, out: File, mem: File, pages_name: String, pieces: Vec<Piece>) -> ArmedProcess {
        ArmedProcess { pid: self.pid, uffd: self.uffd, out, mem, areas: self.areas, pages_name, pieces, pending: None }
    }

    /// Like [`Arming::finish`], for a process whose big areas' pagemap is read after the
    /// release (`pending`: every area with pages, the armed ones among them; the layout,
    /// the pagemap image and what was copied while frozen are written once it is read).
    pub(crate) fn finish_pending(self, out: File, mem: File, pages_name: String, pending: PendingLayout) -> ArmedProcess {
        let areas = pending
            .areas
            .iter()
            .filter_map(|area| match area {
                Pending::Copied { .. } => None,
                Pending::Armed { start, end, readable, .. } | Pending::Deferred { start, end, readable } => {
                    Some(ArmedArea { start: *start, end: *end, readable: *readable, runs: Vec::new() })
                }
            })
            .collect();
        ArmedProcess { pid: self.pid, uffd: self.uffd, out, mem, areas, pages_name, pieces: Vec::new(), pending: Some(pending) }
    }
}

/// One process whose memory is write-protected, waiting for [`Snapshot::copy`]. Dropping it closes
/// the userfaultfd, which lifts every protection.
pub(crate) struct ArmedProcess {
    pid: i32,
    uffd: OwnedFd,
    out: File,
    mem: File,
    areas: Vec<ArmedArea>,
    pages_name: String,
    pieces: Vec<Piece>,
    pending: Option<PendingLayout>,
}

/// Options of [`Snapshot::copy`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CopyOptions {
    /// For tests: fail once this many pages of a process are copied (0: half the pages
    /// left once every layout is known).
    pub fail_after_pages: Option<u64>,
    /// For tests: there, crust kills itself instead.
    pub kill_instead: bool,
}

/// The armed processes with their fault handler running: started before the tree is
/// released (a thread that writes a protected page on its way out of the ptrace stop,
/// its stack say, must find the handler there), then [`Snapshot::copy`] once it runs.
/// Dropping it stops the handler and closes the userfaultfds, which lifts every
/// protection and wakes every waiting thread.
pub(crate) struct Snapshot {
    shared: Vec<Arc<Shared>>,
    handler: Option<std::thread::JoinHandle<usize>>,
    stop: Option<io::PipeWriter>,
}

impl Snapshot {
    /// Starts the fault handler over the armed processes.
    pub(crate) fn start(processes: Vec<ArmedProcess>) -> io::Result<Snapshot> {
        if processes.is_empty() {
            return Ok(Snapshot { shared: Vec::new(), handler: None, stop: None });
        }
        let shared: Vec<Arc<Shared>> = processes.into_iter().map(|p| Arc::new(Shared::new(p))).collect();
        let (stop_read, stop_write) = io::pipe()?;
        let handler = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("crust-uffd".into())
                .spawn(move || handle_faults(&shared, OwnedFd::from(stop_read)))?
        };
        Ok(Snapshot { shared, handler: Some(handler), stop: Some(stop_write) })
    }

    /// Whether no process was armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.is_empty()
    }

    /// Copies the pages of every armed process (the tree runs meanwhile) and lifts the
    /// protection; pages written over all processes, and the checksum of every piece
    /// written (`checksums.rs`) by pages file.
    /// The third value: pages whose place was found after the release (deferred
    /// pagemaps), which the frozen stage's count did not have.
    pub(crate) fn copy(mut self, options: CopyOptions) -> Result<(u64, Pieces, u64), CopyError> {
        let started = Instant::now();
        let mut result = Ok(0);
        let mut found = 0u64;
        for process in &self.shared {
            match settle_layout(process) {
                Ok(pages) => found += pages,
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        if found > 0 {
            log::info!("copy-on-write: {found} pages of deferred areas found after release in {:?}", started.elapsed());
        }
        let options = CopyOptions {
            fail_after_pages: options.fail_after_pages.map(|pages| if pages == 0 { self.pages_left() / 2 } else { pages }),
            ..options
        };
        for process in &self.shared {
            if result.is_err() {
                break;
            }
            match copy_process(process, options) {
                Ok(pages) => {
                    if let Ok(total) = result.as_mut() {
                        *total += pages;
                    }
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        let faults = self.stop_handler();
        if result.is_ok() {
            for process in &self.shared {
                if let Some(reason) = process.state().broken.clone() {
                    result = Err(CopyError::Broken { pid: process.pid, reason });
                    break;
                }
            }
        }
        log::info!(
            "copy-on-write: {} pages copied after release in {:?}, {faults} write faults served",
            result.as_ref().copied().unwrap_or(0),
            started.elapsed()
        );
        let pieces: Pieces = self
            .shared
            .iter()
            .map(|process| (process.pages_name.clone(), std::mem::take(&mut *process.pieces.lock().unwrap_or_else(|p| p.into_inner()))))
            .collect();
        // Dropping `self` closes the userfaultfds: every area unregistered, every waiting
        // thread woken.
        result.map(|pages| (pages, pieces, found))
    }

    /// Pages not copied yet over every process.
    fn pages_left(&self) -> u64 {
        self.shared.iter().map(|p| p.state().left).sum()
    }

    /// Stops the handler thread; the faults it served.
    fn stop_handler(&mut self) -> usize {
        self.stop.take();
        self.handler.take().and_then(|handler| handler.join().ok()).unwrap_or(0)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.stop_handler();
    }
}

/// What a page of a run is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PageState {
    /// Still write-protected, not read.
    Pending,
    /// Someone read it (or is reading it) and is lifting its protection.
    Claimed,
    /// Read before any write, protection lifted.
    Done,
}

struct RunState {
    run: Run,
    pages: Vec<PageState>,
}

struct AreaState {
    start: u64,
    end: u64,
    readable: bool,
    runs: Vec<RunState>,
}

struct PagesState {
    areas: Vec<AreaState>,
    /// While a deferred layout is not settled: the pages the fault handler copied
    /// (they had the write-protect bit, so they were there at the freeze), which the
    /// settled layout marks done.
    early: Option<Vec<EarlyBlock>>,
    /// Why the snapshot cannot be kept, once it cannot.
    broken: Option<String>,
    /// Pages not done yet.
    left: u64,
}

/// Pages the fault handler copied before the layout was settled: `data.len() / page`
/// pages at `addr`.
struct EarlyBlock {
    addr: u64,
    data: Vec<u8>,
}

struct Shared {
    pid: i32,
    /// The layout to settle after the release, and the pagemap it and the handler read.
    pending: Mutex<Option<Layout>>,
    pagemap: Option<File>,
    uffd: OwnedFd,
    out: File,
    mem: File,
    page: u64,
    pages_name: String,
    /// The checksum of every piece written, by whoever wrote it.
    pieces: Mutex<Vec<Piece>>,
    state: Mutex<PagesState>,
    /// Signalled when pages become done or the snapshot breaks.
    changed: Condvar,
}

impl Shared {
    fn new(process: ArmedProcess) -> Shared {
        let page = sys::page_size();
        let mut left = 0;
        let areas = process
            .areas
            .into_iter()
            .map(|area| AreaState {
                start: area.start,
                end: area.end,
                readable: area.readable,
                runs: area
                    .runs
                    .into_iter()
                    .map(|run| {
                        left += run.pages;
                        RunState { run, pages: vec![PageState::Pending; run.pages as usize] }
                    })
                    .collect(),
            })
            .collect();
        let (pending, pagemap) = match process.pending {
            Some(PendingLayout { pagemap, pagemap_out, areas }) => (Some(Layout { pagemap_out, areas }), Some(pagemap)),
            None => (None, None),
        };
        let early = pending.is_some().then(Vec::new);
        Shared {
            pid: process.pid,
            pending: Mutex::new(pending),
            pagemap,
            uffd: process.uffd,
            out: process.out,
            mem: process.mem,
            page,
            pages_name: process.pages_name,
            pieces: Mutex::new(process.pieces),
            state: Mutex::new(PagesState { areas, early, broken: None, left }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, PagesState> {
        // A panic elsewhere poisons the lock; the state itself stays meaningful.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn uffd(&self) -> BorrowedFd<'_> {
        self.uffd.as_fd()
    }

    fn break_snapshot(&self, reason: String) {
        let mut state = self.state();
        if state.broken.is_none() {
            log::warn!("pid {}: copy-on-write snapshot given up: {reason}", self.pid);
            state.broken = Some(reason);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Gives the snapshot up where the target `what` (dropped or moved `start..end`)
    /// before its pages were copied, or before the layout that finds them was settled.
    fn break_if_lost(&self, start: u64, end: u64, what: &str) {
        let state = self.state();
        let reason = if state.touches_unsettled(start, end) {
            Some("before its pages were found")
        } else if state.any_not_done(start, end, self.page) {
            Some("before it was copied")
        } else {
            None
        };
        drop(state);
        if let Some(reason) = reason {
            self.break_snapshot(format!("the target {what} {reason}"));
        }
    }

    /// Reads `buf.len()` bytes at `addr` of the target.
    fn read(&self, buf: &mut [u8], addr: u64, readable: bool) -> io::Result<()> {
        super::pages::read_target(self.pid, &self.mem, buf, addr, readable)
    }

    /// Lifts the protection of `addr..addr+len` and wakes its waiters, retrying while the
    /// kernel says an event is not read yet (`wait` false: give up at once with EAGAIN).
    fn unprotect(&self, addr: u64, len: u64, wait: bool) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match uffd::write_protect(self.uffd(), addr, len, false) {
                Err(error) if error.raw_os_error() == Some(libc::EAGAIN) && wait => {
                    if self.state().broken.is_some() || Instant::now() > deadline {
                        return Err(error);
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                other => return other,
            }
        }
    }
}

impl PagesState {
    /// Claims the pending pages of run `(area, run)` among its pages `first..first+count`;
    /// the claimed stretches as `(first page, pages)`.
    fn claim(&mut self, area: usize, run: usize, first: u64, count: u64) -> Vec<(u64, u64)> {
        let pages = &mut self.areas[area].runs[run].pages;
        let mut claimed: Vec<(u64, u64)> = Vec::new();
        for index in first..first + count {
            if pages[index as usize] != PageState::Pending {
                continue;
            }
            pages[index as usize] = PageState::Claimed;
            match claimed.last_mut() {
                Some((start, len)) if *start + *len == index => *len += 1,
                _ => claimed.push((index, 1)),
            }
        }
        claimed
    }

    fn mark_done(&mut self, area: usize, run: usize, first: u64, count: u64) {
        let pages = &mut self.areas[area].runs[run].pages;
        for state in &mut pages[first as usize..(first + count) as usize] {
            debug_assert_eq!(*state, PageState::Claimed);
            *state = PageState::Done;
        }
        self.left -= count;
    }

    /// Whether the layout is not settled yet and `start..end` meets an armed area.
    fn touches_unsettled(&self, start: u64, end: u64) -> bool {
        self.early.is_some() && self.areas.iter().any(|a| a.start < end && start < a.end)
    }

    /// Whether any page of `start..end` is not done.
    fn any_not_done(&self, start: u64, end: u64, page: u64) -> bool {
        for area in self.areas.iter().filter(|a| a.start < end && start < a.end) {
            for run in &area.runs {
                let run_end = run.run.addr + run.run.pages * page;
                if run.run.addr >= end || start >= run_end {
                    continue;
                }
                let first = (start.max(run.run.addr) - run.run.addr) / page;
                let last = (end.min(run_end) - run.run.addr).div_ceil(page);
                if run.pages[first as usize..last as usize].iter().any(|s| *s != PageState::Done) {
                    return true;
                }
            }
        }
        false
    }
}

/// Bytes read from the target and where they go in the pages file.
struct WriteJob {
    buffer: Vec<u8>,
    /// `(offset in buffer, offset in file, length)`.
    pieces: Vec<(usize, u64, usize)>,
}

fn copy_process(process: &Shared, options: CopyOptions) -> Result<u64, CopyError> {
    let pid = process.pid;
    let (to_writer, jobs) = sync_channel::<WriteJob>(4);
    let (give_back, free_buffers) = channel::<Vec<u8>>();
    for _ in 0..4 {
        give_back.send(vec![0u8; CHUNK as usize]).expect("receiver alive");
    }
    let out = process.out.try_clone().map_err(|source| CopyError::Write { pid, source })?;
    let writer = std::thread::Builder::new()
        .name("crust-pages".into())
        .spawn(move || write_jobs(out, jobs, give_back))
        .map_err(|source| CopyError::Write { pid, source })?;
    let copied = copy_runs(process, options, &to_writer, &free_buffers);
    drop(to_writer);
    let written = writer.join().map_err(|_| CopyError::Write { pid, source: io::Error::other("pages writer panicked") })?;
    let copied = copied?;
    written.map_err(|source| CopyError::Write { pid, source })?;
    // Pages the fault handler claimed may still be on their way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut state = process.state();
    while state.left > 0 && state.broken.is_none() {
        let now = Instant::now();
        if now >= deadline {
            // The handler thread stopped serving (it cannot, short of a bug): give up
            // rather than wait for ever; the close at the end frees the target.
            state.broken = Some(format!("{} pages still claimed by the fault handler after 30 s", state.left));
            break;
        }
        state = process.changed.wait_timeout(state, deadline - now).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
    }
    if let Some(reason) = state.broken.clone() {
        return Err(CopyError::Broken { pid, reason });
    }
    Ok(copied)
}

fn copy_runs(
    process: &Shared,
    options: CopyOptions,
    to_writer: &std::sync::mpsc::SyncSender<WriteJob>,
    free_buffers: &Receiver<Vec<u8>>,
) -> Result<u64, CopyError> {
    let pid = process.pid;
    let page = process.page;
    let chunk_pages = CHUNK / page;
    let mut copied = 0u64;
    // Pages gone through, whoever copied them (this loop or the fault handler): where
    // an injected fault strikes, however much the target writes meanwhile.
    let mut visited = 0u64;
    let areas: Vec<(usize, bool, Vec<Run>)> = process
        .state()
        .areas
        .iter()
        .enumerate()
        .map(|(index, area)| (index, area.readable, area.runs.iter().map(|r| r.run).collect()))
        .collect();
    for (area_index, readable, runs) in areas {
        for (run_index, run) in runs.iter().enumerate() {
            let mut first = 0u64;
            while first < run.pages {
                if let Some(reason) = process.state().broken.clone() {
                    return Err(CopyError::Broken { pid, reason });
                }
                if crate::interrupt::stop_requested().is_some() {
                    return Err(CopyError::Interrupted);
                }
                if options.fail_after_pages.is_some_and(|limit| visited >= limit) {
                    if options.kill_instead {
                        let _ = sys::send_signal(std::process::id() as i32, libc::SIGKILL);
                    }
                    return Err(CopyError::FaultInjected);
                }
                let count = chunk_pages.min(run.pages - first);
                let addr = run.addr + first * page;
                let mut buffer = free_buffers.recv().map_err(|_| CopyError::Write {
                    pid,
                    source: io::Error::other("pages writer ended early"),
                })?;
                let len = (count * page) as usize;
                if let Err(error) = process.read(&mut buffer[..len], addr, readable) {
                    let reason = format!("read {:#x}-{:#x}: {error}", addr, addr + count * page);
                    process.break_snapshot(reason.clone());
                    return Err(CopyError::Broken { pid, reason });
                }
                let claimed = process.state().claim(area_index, run_index, first, count);
                let mut pieces = Vec::new();
                for &(claim_first, claim_count) in &claimed {
                    let claim_addr = run.addr + claim_first * page;
                    if let Err(error) = process.unprotect(claim_addr, claim_count * page, true) {
                        let reason = format!("unprotect {:#x}-{:#x}: {error}", claim_addr, claim_addr + claim_count * page);
                        process.break_snapshot(reason.clone());
                        return Err(CopyError::Broken { pid, reason });
                    }
                    pieces.push((
                        ((claim_first - first) * page) as usize,
                        run.offset + claim_first * page,
                        (claim_count * page) as usize,
                    ));
                }
                // Their checksums while the bytes are in the cache.
                let crcs: Vec<Piece> = pieces
                    .iter()
                    .map(|&(from, offset, len)| Piece { offset, len: len as u64, crc: crc32c(&buffer[from..from + len]) })
                    .collect();
                process.pieces.lock().unwrap_or_else(|p| p.into_inner()).extend(crcs);
                {
                    let mut state = process.state();
                    for &(claim_first, claim_count) in &claimed {
                        state.mark_done(area_index, run_index, claim_first, claim_count);
                        copied += claim_count;
                    }
                }
                process.changed.notify_all();
                to_writer.send(WriteJob { buffer, pieces }).map_err(|_| CopyError::Write {
                    pid,
                    source: io::Error::other("pages writer ended early"),
                })?;
                first += count;
                visited += count;
            }
        }
    }
    Ok(copied)
}

fn write_jobs(out: File, jobs: Receiver<WriteJob>, give_back: Sender<Vec<u8>>) -> io::Result<()> {
    while let Ok(job) = jobs.recv() {
        for (from, offset, len) in job.pieces {
            // In WRITE_CHUNK writes: big writes stall on large page-cache folios
            // (fast_pages.rs).
            let mut done = 0;
            while done < len {
                let step = (len - done).min(super::pages::WRITE_CHUNK);
                out.write_all_at(&job.buffer[from + done..from + done + step], offset + done as u64)?;
                done += step;
            }
        }
        let _ = give_back.send(job.buffer);
    }
    Ok(())
}

/// The handler thread: serves write faults and watches for events until `stop` hangs up;
/// the number of faults served.
fn handle_faults(processes: &[Arc<Shared>], stop: OwnedFd) -> usize {
    let mut faults = 0;
    let mut messages = vec![0u8; uffd::MESSAGE_SIZE * 64];
    // Blocks read but not unprotected yet (EAGAIN: the kernel is between an event and
    // the end of its munmap, mremap or madvise), per process.
    let mut waiting: Vec<Vec<ReadBlock>> = processes.iter().map(|_| Vec::new()).collect();
    loop {
        let mut fds: Vec<BorrowedFd> = processes.iter().map(|p| p.uffd()).collect();
        fds.push(stop.as_fd());
        let timeout_ms = if waiting.iter().any(|w| !w.is_empty()) { 1 } else { -1 };
        let ready = match uffd::poll_readable(&fds, timeout_ms) {
            Ok(ready) => ready,
            Err(error) => {
                for process in processes {
                    process.break_snapshot(format!("poll userfaultfd: {error}"));
                }
                return faults;
            }
        };
        if ready[processes.len()] {
            return faults;
        }
        for ((process, _), waiting) in processes.iter().zip(&ready).zip(&mut waiting).filter(|((_, ready), _)| **ready) {
            loop {
                let n = match uffd::read_messages(process.uffd(), &mut messages) {
                    Ok(n) => n,
                    Err(error) => {
                        process.break_snapshot(format!("read userfaultfd: {error}"));
                        break;
                    }
                };
                if n == 0 {
                    break;
                }
                for bytes in messages[..n].chunks_exact(uffd::MESSAGE_SIZE) {
                    let message = uffd::parse_message(bytes.try_into().expect("message size"));
                    faults += handle_message(process, message, waiting);
                }
            }
        }
        for (process, waiting) in processes.iter().zip(&mut waiting) {
            let blocks = std::mem::take(waiting);
            for block in blocks {
                if let Some(block) = finish_block(process, block) {
                    waiting.push(block);
                }
            }
        }
    }
}

fn handle_message(process: &Shared, message: uffd::Message, waiting: &mut Vec<ReadBlock>) -> usize {
    let page = process.page;
    match message {
        uffd::Message::PageFault { address, .. } => {
            for block in serve_fault(process, address & !(page - 1)) {
                if let Some(block) = finish_block(process, block) {
                    waiting.push(block);
                }
            }
            1
        }
        uffd::Message::Remove { start, end } | uffd::Message::Unmap { start, end } => {
            process.break_if_lost(start, end, &format!("dropped {start:#x}-{end:#x}"));
            0
        }
        uffd::Message::Remap { from, to, len } => {
            process.break_if_lost(from, from + len, &format!("moved {from:#x}-{:#x} to {to:#x}", from + len));
            0
        }
        uffd::Message::Fork { .. } => {
            // Not asked for (no UFFD_FEATURE_EVENT_FORK here).
            process.break_snapshot("unexpected userfaultfd fork event".into());
            0
        }
        uffd::Message::Other(event) => {
            process.break_snapshot(format!("unexpected userfaultfd event {event:#x}"));
            0
        }
    }
}

/// Pages the fault handler claimed and read, to unprotect, write and mark done.
struct ReadBlock {
    area_index: usize,
    run_index: usize,
    run: Run,
    first: u64,
    count: u64,
    data: Vec<u8>,
}

/// Lifts the protection of a block read by the handler (waking the faulting thread),
/// writes it and marks it done; the block back if the kernel said EAGAIN (to try again
/// once the event behind it is read).
fn finish_block(process: &Shared, block: ReadBlock) -> Option<ReadBlock> {
    let page = process.page;
    let addr = block.run.addr + block.first * page;
    if let Err(error) = process.unprotect(addr, block.count * page, false) {
        if error.raw_os_error() == Some(libc::EAGAIN) && process.state().broken.is_none() {
            return Some(block);
        }
        process.break_snapshot(format!("unprotect {addr:#x}: {error}"));
        return None;
    }
    let offset = block.run.offset + block.first * page;
    if let Err(error) = process.out.write_all_at(&block.data, offset) {
        process.break_snapshot(format!("write pages: {error}"));
        return None;
    }
    let piece = Piece { offset, len: block.data.len() as u64, crc: crc32c(&block.data) };
    process.pieces.lock().unwrap_or_else(|p| p.into_inner()).push(piece);
    process.state().mark_done(block.area_index, block.run_index, block.first, block.count);
    process.changed.notify_all();
    None
}

/// Claims and reads the block around the faulting page (its pages nobody claimed yet),
/// for [`finish_block`].
fn serve_fault(process: &Shared, fault_page: u64) -> Vec<ReadBlock> {
    let page = process.page;
    if serve_fault_early(process, fault_page) {
        return Vec::new();
    }
    let mut claims = Vec::new();
    let readable;
    {
        let mut state = process.state();
        let Some(area_index) = state.areas.iter().position(|a| a.start <= fault_page && fault_page < a.end) else {
            drop(state);
            // Not an area of the snapshot (moved away: the snapshot is broken already).
            let _ = process.unprotect(fault_page, page, false);
            return Vec::new();
        };
        let area = &state.areas[area_index];
        readable = area.readable;
        let block_start = (fault_page & !(FAULT_BLOCK - 1)).max(area.start);
        let block_end = ((fault_page & !(FAULT_BLOCK - 1)) + FAULT_BLOCK).min(area.end);
        let overlapping: Vec<(usize, Run)> = area
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.run.addr < block_end && block_start < r.run.addr + r.run.pages * page)
            .map(|(index, r)| (index, r.run))
            .collect();
        for (run_index, run) in overlapping {
            let first = (block_start.max(run.addr) - run.addr) / page;
            let last = (block_end.min(run.addr + run.pages * page) - run.addr) / page;
            for (claim_first, claim_count) in state.claim(area_index, run_index, first, last - first) {
                claims.push((area_index, run_index, run, claim_first, claim_count));
            }
        }
        if claims.is_empty() {
            let in_run = state.areas[area_index]
                .runs
                .iter()
                .any(|r| (r.run.addr..r.run.addr + r.run.pages * page).contains(&fault_page));
            drop(state);
            // Done already (its waiters were woken then) or claimed by the copier (which
            // wakes them); a page outside every run was not in the image: let it go.
            if !in_run {
                let _ = process.unprotect(fault_page, page, false);
            }
            return Vec::new();
        }
    }
    let mut blocks = Vec::new();
    for (area_index, run_index, run, first, count) in claims {
        let addr = run.addr + first * page;
        let mut data = vec![0u8; (count * page) as usize];
        if let Err(error) = process.read(&mut data, addr, readable) {
            process.break_snapshot(format!("read {:#x}-{:#x}: {error}", addr, addr + count * page));
            let _ = process.unprotect(addr, count * page, false);
            continue;
        }
        blocks.push(ReadBlock { area_index, run_index, run, first, count, data });
    }
    blocks
}

/// `/proc/PID/pagemap`: the page is write-protected by a userfaultfd (bit 57).
const PM_UFFD_WP: u64 = 1 << 57;
/// `/proc/PID/pagemap`: present, swapped (bits 63, 62).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;

/// Whether a page of an armed area with pagemap entry `bits`, read after the release,
/// was there at the freeze and is not copied yet: it still has the write-protect bit,
/// which only crust lifts (after copying it), and the kernel keeps through swap,
/// migration and THP splits.
fn was_there(bits: u64) -> bool {
    bits & PM_UFFD_WP != 0 && bits & (PM_PRESENT | PM_SWAP) != 0
}

/// Reads the pagemap of `start..end` after the release: the runs `(address, pages)` of
/// pages there at the freeze and not copied yet ([`was_there`]). A guard region is an
/// error: whether it was there at the freeze cannot be told any more.
fn scan_runs(pagemap: &File, start: u64, end: u64, page: u64) -> Result<Vec<(u64, u64)>, String> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut pagemap_buf = PagemapEntries::default();
    for (index, count) in pagemap_chunks((end - start) / page) {
        let entries = pagemap_buf
            .read(pagemap, start + index * page, count, page)
            .map_err(|error| format!("read pagemap at {:#x}: {error}", start + index * page))?;
        if let Some(guard) = entries.iter().position(|bits| bits & PM_GUARD_REGION != 0) {
            return Err(format!("a guard region at {:#x}, in an area whose pages are found after the release", start + (index + guard as u64) * page));
        }
        for (first, pages) in page_runs(entries, was_there) {
            push_run(&mut runs, start + (index + first) * page, pages, page);
        }
    }
    Ok(runs)
}

/// The union of two lists of runs `(address, pages)`, each in address order: sorted,
/// overlaps and neighbours joined.
fn union_runs(a: &[(u64, u64)], b: &[(u64, u64)], page: u64) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (addr, pages) in all {
        match out.last_mut() {
            Some(last) if addr <= last.0 + last.1 * page => {
                let end = (last.0 + last.1 * page).max(addr + pages * page);
                last.1 = (end - last.0) / page;
            }
            _ => out.push((addr, pages)),
        }
    }
    out
}

/// Serves a write fault while the layout is not settled (`settle_layout`): copies the
/// pages of the block around it that were there at the freeze ([`was_there`]) into
/// early blocks, then lifts their protection. `false` when the layout is settled: the
/// fault is served the usual way.
fn serve_fault_early(process: &Shared, fault_page: u64) -> bool {
    let page = process.page;
    let (block_start, block_end, readable) = {
        let state = process.state();
        if state.early.is_none() {
            return false;
        }
        let Some(area) = state.areas.iter().find(|a| a.start <= fault_page && fault_page < a.end) else {
            drop(state);
            // Not an area of the snapshot (moved away: the snapshot is broken already).
            let _ = process.unprotect(fault_page, page, false);
            return true;
        };
        let aligned = fault_page & !(FAULT_BLOCK - 1);
        (aligned.max(area.start), (aligned + FAULT_BLOCK).min(area.end), area.readable)
    };
    let Some(pagemap) = &process.pagemap else {
        process.break_snapshot("no pagemap to serve a fault before the layout is settled".into());
        return true;
    };
    let mut pagemap_buf = PagemapEntries::default();
    let entries = match pagemap_buf.read(pagemap, block_start, (block_end - block_start) / page, page) {
        Ok(entries) => entries,
        Err(error) => {
            process.break_snapshot(format!("read pagemap at {block_start:#x}: {error}"));
            return true;
        }
    };
    let mut blocks = Vec::new();
    for (first, pages) in page_runs(entries, was_there) {
        let addr = block_start + first * page;
        let mut data = vec![0u8; (pages * page) as usize];
        if let Err(error) = process.read(&mut data, addr, readable) {
            process.break_snapshot(format!("read {:#x}-{:#x}: {error}", addr, addr + pages * page));
            return true;
        }
        blocks.push(EarlyBlock { addr, data });
    }
    let fault_index = ((fault_page - block_start) / page) as usize;
    let fault_copied = was_there(entries[fault_index]);
    let stretches: Vec<(u64, u64)> = blocks.iter().map(|b| (b.addr, b.data.len() as u64)).collect();
    {
        let mut state = process.state();
        let Some(early) = state.early.as_mut() else {
            // Settled meanwhile, with these pages still protected: the usual way.
            return false;
        };
        early.extend(blocks);
    }
    for (addr, len) in stretches {
        if let Err(error) = process.unprotect(addr, len, false) {
            process.break_snapshot(format!("unprotect {addr:#x}: {error}"));
        }
    }
    if !fault_copied {
        // Its protection is lifted already (by an earlier copy of it): wake the thread.
        let _ = process.unprotect(fault_page, page, false);
    }
    true
}

/// Settles the layout of a process whose big areas' pagemap is read after the release
/// (`dump.rs`, `dump_memory_armed`): finds their pages ([`scan_runs`], and the pages
/// the fault handler copied meanwhile), places every run in the pages file in address
/// order, writes the pagemap image, the pages copied while frozen and the handler's
/// early blocks; the pages found in the deferred areas.
fn settle_layout(process: &Shared) -> Result<u64, CopyError> {
    let pid = process.pid;
    let page = process.page;
    let Some(mut pending) = process.pending.lock().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(0) };
    let broken = |reason: String| {
        process.break_snapshot(reason.clone());
        CopyError::Broken { pid, reason }
    };
    let mut scanned = Vec::new();
    for area in &pending.areas {
        if let Pending::Deferred { start, end, .. } = area {
            let pagemap = process.pagemap.as_ref().expect("a pending layout keeps its pagemap");
            scanned.push(scan_runs(pagemap, *start, *end, page).map_err(broken)?);
        }
    }
    let mut scanned = scanned.into_iter();
    let mut state = process.state();
    if let Some(reason) = state.broken.clone() {
        return Err(CopyError::Broken { pid, reason });
    }
    let early = state.early.take().unwrap_or_default();
    let mut early_runs: Vec<(u64, u64)> = early.iter().map(|b| (b.addr, b.data.len() as u64 / page)).collect();
    early_runs.sort_unstable();
    let mut pieces = Vec::new();
    let write = |data: &[u8], at: u64, pieces: &mut Vec<Piece>| -> Result<(), CopyError> {
        process.out.write_all_at(data, at).map_err(|source| CopyError::Write { pid, source })?;
        pieces.push(Piece { offset: at, len: data.len() as u64, crc: crc32c(data) });
        Ok(())
    };
    let entry = |pagemap_out: &mut crust_images::ImageWriter, addr: u64, pages: u64| -> Result<(), CopyError> {
        pagemap_out
            .write_entry(&crust_images::pb::PagemapEntry::run(addr, pages, PE_PRESENT))
            .map_err(|source| CopyError::Write { pid, source: io::Error::other(source.to_string()) })
    };
    let (mut offset, mut found, mut left, mut armed) = (0u64, 0u64, 0u64, 0usize);
    for area in std::mem::take(&mut pending.areas) {
        let runs = match area {
            Pending::Copied { runs, data } => {
                let mut from = 0usize;
                for (addr, pages) in runs {
                    let len = (pages * page) as usize;
                    entry(&mut pending.pagemap_out, addr, pages)?;
                    write(&data[from..from + len], offset, &mut pieces)?;
                    from += len;
                    offset += pages * page;
                }
                continue;
            }
            Pending::Armed { runs, .. } => runs,
            Pending::Deferred { start, end, .. } => {
                let copied: Vec<(u64, u64)> = early_runs.iter().copied().filter(|&(addr, _)| start <= addr && addr < end).collect();
                let runs = union_runs(&scanned.next().expect("one scan per deferred area"), &copied, page);
                found += runs.iter().map(|r| r.1).sum::<u64>();
                runs
            }
        };
        let area = &mut state.areas[armed];
        armed += 1;
        area.runs = runs
            .into_iter()
            .map(|(addr, pages)| {
                let run = Run { addr, pages, offset };
                offset += pages * page;
                left += pages;
                RunState { run, pages: vec![PageState::Pending; pages as usize] }
            })
            .collect();
        for run in &area.runs {
            entry(&mut pending.pagemap_out, run.run.addr, run.run.pages)?;
        }
    }
    // The handler's early copies go to their places, done.
    for block in &early {
        let block_end = block.addr + block.data.len() as u64;
        let mut placed = 0u64;
        for area in state.areas.iter_mut().filter(|a| a.start < block_end && block.addr < a.end) {
            for run in area.runs.iter_mut() {
                let run_end = run.run.addr + run.run.pages * page;
                let (from, to) = (block.addr.max(run.run.addr), block_end.min(run_end));
                if from >= to {
                    continue;
                }
                let first = (from - run.run.addr) / page;
                let slice = &block.data[(from - block.addr) as usize..(to - block.addr) as usize];
                write(slice, run.run.offset + first * page, &mut pieces)?;
                for state in &mut run.pages[first as usize..((to - run.run.addr) / page) as usize] {
                    *state = PageState::Done;
                    left -= 1;
                }
                placed += (to - from) / page;
            }
        }
        if placed * page != block.data.len() as u64 {
            let reason = format!("pages at {:#x} copied on a write fault belong to no run", block.addr);
            drop(state);
            return Err(broken(reason));
        }
    }
    state.left = left;
    drop(state);
    let early_pages: u64 = early.iter().map(|b| b.data.len() as u64 / page).sum();
    log::debug!("pid {pid}: layout settled: {found} pages in the deferred areas, {early_pages} of them copied on write faults before");
    pending.pagemap_out.finish().map_err(|source| CopyError::Write { pid, source: io::Error::other(source.to_string()) })?;
    process.pieces.lock().unwrap_or_else(|p| p.into_inner()).extend(pieces);
    process.changed.notify_all();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::{split_shares, union_runs, was_there, PM_GUARD_REGION, PM_PRESENT, PM_SWAP, PM_UFFD_WP};

    #[test]
    fn a_page_was_there_at_the_freeze_while_it_keeps_the_write_protect_bit() {
        assert!(was_there(PM_PRESENT | PM_UFFD_WP));
        assert!(was_there(PM_SWAP | PM_UFFD_WP));
        // Populated after the release, or copied and unprotected already.
        assert!(!was_there(PM_PRESENT));
        // A uffd-wp marker on an empty entry holds nothing.
        assert!(!was_there(PM_UFFD_WP));
        assert!(!was_there(PM_GUARD_REGION | PM_SWAP));
    }

    #[test]
    fn runs_found_after_the_release_and_copied_on_faults_join_in_address_order() {
        let page = 4096;
        let base = 0x10_0000u64;
        let scanned = [(base, 2), (base + 5 * page, 3), (base + 20 * page, 1)];
        // Copied by the handler: one between scanned runs, one touching a run, one
        // overlapping (seen by both before the protection was lifted).
        let copied = [(base + 2 * page, 1), (base + 8 * page, 2), (base + 6 * page, 4), (base + 30 * page, 1)];
        assert_eq!(
            union_runs(&scanned, &copied, page),
            vec![(base, 3), (base + 5 * page, 5), (base + 20 * page, 1), (base + 30 * page, 1)]
        );
        assert_eq!(union_runs(&[], &[], page), vec![]);
        assert_eq!(union_runs(&scanned, &[], page), scanned.to_vec());
    }

    #[test]
    fn shares_cover_every_range_once_in_order_and_near_equal() {
        let page = 4096;
        let ranges = [(0x10000, 0x10000 + 100 * page), (0x900000, 0x900000 + 3 * page), (0x2000000, 0x2000000 + 57 * page)];
        for parts in 1..=5 {
            let shares = split_shares(&ranges, parts, page);
            assert!(shares.len() <= parts && !shares.is_empty());
            let pieces: Vec<(usize, u64, u64)> = shares.iter().flatten().copied().collect();
            // Glued back together, the pieces are the ranges.
            let mut glued: Vec<(u64, u64)> = Vec::new();
            for (index, start, end) in pieces {
                assert!(start < end && start % page == 0 && end % page == 0);
                assert!(ranges[index].0 <= start && end <= ranges[index].1);
                match glued.last_mut() {
                    Some(last) if last.1 == start => last.1 = end,
                    _ => glued.push((start, end)),
                }
            }
            assert_eq!(glued, ranges.to_vec(), "{parts} parts");
            let sizes: Vec<u64> = shares.iter().map(|s| s.iter().map(|p| p.2 - p.1).sum()).collect();
            let biggest = *sizes.iter().max().unwrap();
            assert!(biggest <= (160 * page).div_ceil(parts as u64).div_ceil(page) * page, "{parts} parts: {sizes:?}");
        }
    }
}
