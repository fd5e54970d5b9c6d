//! `crust lazy-pages`: the daemon that fills a lazily restored tree's memory.
//!
//! One restore connects (`handoff.rs`) and hands over each process's userfaultfd with
//! its areas; from then on one loop polls the connection and every userfaultfd:
//! - a fault is served first: the run of missing pages around it (at most
//!   [`FAULT_BLOCK`], within its area) from the pages images (UFFDIO_COPY), or from
//!   the source's page server for pages the dump left there (PE_LAZY: a GET request),
//!   zero pages where the dump held none (UFFDIO_ZEROPAGE); a page the tree dropped since
//!   (madvise DONTNEED) faults in as zeros, as it would have;
//! - between faults the rest is prefetched, [`PREFETCH_BLOCK`] at a time, from the
//!   last fault on (the pages the tree is touching), then in address order;
//! - events: a fork gives the child's userfaultfd (the child starts with its parent's
//!   state: what the parent had is in the child too), mremap moves the bookkeeping,
//!   munmap drops it, madvise(DONTNEED/REMOVE) marks the pages done (zeros from now on);
//! - a page that cannot be read (an image gone or damaged, the source gone) kills the
//!   process it is for, with a log line, instead of leaving it waiting for ever.
//! It ends when every page is in (or every process gone) and the restore has closed
//! the connection.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{handoff, LazyArea, LazyError, LazyRun};
use crate::page_server::Client;
use crate::sys;
use crate::sys::uffd::{self, Message};

/// Bytes served around a fault.
pub const FAULT_BLOCK: u64 = 64 << 10;
/// Bytes prefetched at a time between faults.
pub const PREFETCH_BLOCK: u64 = 1 << 20;

/// What `crust lazy-pages` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct LazyOptions {
    /// The socket the restore connects to.
    pub socket: PathBuf,
}

/// The dumping side's page server, which holds the pages a `dump --lazy-pages` left at
/// the source (`lazy-pages --page-server --address A --port P`).
pub struct Source {
    client: Client,
    /// The images directory: when the dump left `crust-lazy-parent` there, its pages are
    /// compared with the parent dump's at the source (`CHANGED`) and only the changed
    /// ones fetched; the others come from the parent dump (`DIR/parent`).
    images: PathBuf,
}

impl Source {
    /// Connects to the source (before the restore starts, so a source that cannot be
    /// reached fails at once).
    pub fn connect(address: &str, port: u16, images: &Path) -> Result<Source, LazyError> {
        let client = Client::connect(address, port).map_err(|e| LazyError::Protocol { what: e.to_string() })?;
        Ok(Source { client, images: images.to_path_buf() })
    }
}

/// What the daemon did.
#[derive(Clone, Debug, Default)]
pub struct LazyReport {
    pub processes: usize,
    /// Pages copied on a fault, prefetched, and zero pages mapped.
    pub faulted: u64,
    pub prefetched: u64,
    pub zero: u64,
    /// Pages fetched from the source (faulted or prefetched).
    pub from_source: u64,
    /// Pages left at the source that the source said are unchanged since the parent
    /// dump, taken from it here.
    pub from_parent: u64,
    /// From the first process handed over until every page was in.
    pub elapsed: Duration,
}

/// Serves the one restore that connects to `listener` and returns once its tree has
/// every page.
/// `source`: where the pages the dump left at the source come from.
pub fn serve(listener: &UnixListener, source: Option<Source>) -> Result<LazyReport, LazyError> {
    let (stream, _) = listener.accept().map_err(|source| LazyError::Io { what: "accept the restore".into(), source })?;
    serve_restore(stream, source)
}

/// Serves one restore's connection.
pub fn serve_restore(mut stream: UnixStream, source: Option<Source>) -> Result<LazyReport, LazyError> {
    let page = sys::page_size();
    let mut report = LazyReport::default();
    let mut processes: Vec<Process> = Vec::new();
    let parent_dir = source
        .as_ref()
        .filter(|s| s.images.join(crate::page_server::source::PARENT_MARKER).exists())
        .map(|s| s.images.join(crate::memory::page_sources::PARENT_LINK));
    let mut files = Files { open: HashMap::new(), source: source.map(|s| s.client), page };
    let mut connected = true;
    let mut started: Option<Instant> = None;
    let mut buffer = vec![0u8; PREFETCH_BLOCK as usize];
    loop {
        processes.retain(|p| !p.gone);
        let work_left = processes.iter().any(|p| !p.complete());
        if !connected && !work_left {
            break;
        }
        let mut fds: Vec<BorrowedFd> = processes.iter().map(|p| p.uffd.as_fd()).collect();
        if connected {
            fds.push(stream.as_fd());
        }
        // Prefetching starts once the restore has handed every process over: until
        // then faults come from crust's own injected calls, which wait on them.
        let prefetch = work_left && !connected;
        let ready = uffd::poll_readable(&fds, if prefetch { 0 } else { -1 }).map_err(|source| LazyError::Io { what: "poll".into(), source })?;
        drop(fds);
        if connected && ready[processes.len()] {
            match handoff::receive(&mut stream)? {
                Some((pid, image_pid, fd, areas)) => {
                    started.get_or_insert_with(Instant::now);
                    let pages: u64 = areas.iter().map(|a| (a.end - a.start) / page).sum();
                    let at_source: u64 = areas.iter().flat_map(|a| &a.runs).filter(|r| r.file.is_none()).map(|r| r.bytes / page).sum();
                    log::info!("pid {pid} ({image_pid} in the images): {} lazy areas, {pages} pages, {at_source} of them at the source", areas.len());
                    if at_source > 0 && files.source.is_none() {
                        return Err(LazyError::Protocol {
                            what: format!("pid {pid}: {at_source} pages were left at the source (dump --lazy-pages): start lazy-pages with --page-server --address A --port P"),
                        });
                    }
                    let mut process = Process::new(pid, image_pid, fd, &areas, page);
                    if let (Some(dir), true) = (&parent_dir, at_source > 0) {
                        // The source compares; unchanged pages come from the parent dump here.
                        match crate::memory::page_sources::resolve(dir, image_pid, page) {
                            Ok(sources) => process.parent = Some(Arc::new(sources)),
                            Err(error) => log::warn!("pid {pid}: every page at the source fetched: the parent dump {}: {error}", dir.display()),
                        }
                    }
                    processes.push(process);
                    report.processes += 1;
                }
                None => {
                    log::info!("the restore has handed over every process");
                    connected = false;
                }
            }
            continue;
        }
        let mut any_message = false;
        let mut forked = Vec::new();
        for index in 0..processes.len() {
            if !ready[index] {
                continue;
            }
            let mut raw = [0u8; uffd::MESSAGE_SIZE * 16];
            let read = match uffd::read_messages(processes[index].uffd.as_fd(), &mut raw) {
                Ok(read) => read,
                Err(error) => {
                    log::info!("pid {}: userfaultfd: {error}; done with it", processes[index].pid);
                    processes[index].gone = true;
                    continue;
                }
            };
            for message in raw[..read].chunks_exact(uffd::MESSAGE_SIZE) {
                any_message = true;
                let message = uffd::parse_message(message.try_into().expect("message size"));
                if let Some(child) = processes[index].handle(message, &mut files, &mut buffer, &mut report) {
                    forked.push(child);
                }
            }
        }
        processes.extend(forked);
        if !any_message && prefetch {
            if let Some(process) = processes.iter_mut().find(|p| !p.complete()) {
                process.prefetch(&mut files, &mut buffer, &mut report);
            }
        }
    }
    report.elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    if let Some(mut client) = files.source.take() {
        // Every page is in: the source may let its tree go (CRIU's daemon says so with FLUSH).
        match client.flush() {
            Ok(()) => log::info!("page server {}: every page fetched; the source is let go", client.address()),
            Err(error) => log::warn!("{error}"),
        }
    }
    Ok(report)
}

/// Where pages come from: the pages images (opened once each), and the source.
struct Files {
    open: HashMap<PathBuf, File>,
    source: Option<Client>,
    page: u64,
}

impl Files {
    fn read(&mut self, path: &PathBuf, offset: u64, into: &mut [u8]) -> io::Result<()> {
        if !self.open.contains_key(path) {
            self.open.insert(path.clone(), File::open(path)?);
        }
        self.open[path].read_exact_at(into, offset)
    }

    /// Fills `into` with process `id`'s pages from `vaddr` on: the ones the source says
    /// changed since the parent dump from the source, the others from `parent`. Pages
    /// (from the source, from the parent).
    fn fetch_changed(&mut self, id: u64, vaddr: u64, into: &mut [u8], parent: &crate::memory::page_sources::PageSources) -> Result<(u64, u64), String> {
        let page = self.page;
        let pages = into.len() as u64 / page;
        let (mut from_source, mut from_parent) = (0, 0);
        let mut done = 0u64;
        while done < pages {
            let client = self.source.as_mut().ok_or_else(|| "no source to ask".to_string())?;
            let (bits, answered) = client.changed(id, vaddr + done * page, pages - done).map_err(|e| e.to_string())?;
            let bit = |i: u64| bits[(i / 8) as usize] & (1 << (i % 8)) != 0;
            let mut i = 0;
            while i < answered {
                let changed = bit(i);
                let mut j = i;
                while j < answered && bit(j) == changed {
                    j += 1;
                }
                let (first, count) = (done + i, j - i);
                let slice = &mut into[(first * page) as usize..((first + count) * page) as usize];
                let at = vaddr + first * page;
                if changed {
                    self.fetch(id, at, slice)?;
                    from_source += count;
                } else {
                    let (source, parent_pages) = self.read_parent(id, at, slice, parent)?;
                    from_source += source;
                    from_parent += parent_pages;
                }
                i = j;
            }
            done += answered;
        }
        Ok((from_source, from_parent))
    }

    /// Fills `into` from the parent dump's pages at `vaddr`; what the parent lacks comes
    /// from the source. Pages (from the source, from the parent).
    fn read_parent(&mut self, id: u64, vaddr: u64, into: &mut [u8], parent: &crate::memory::page_sources::PageSources) -> Result<(u64, u64), String> {
        let page = self.page;
        let end = vaddr + into.len() as u64;
        let (mut from_source, mut from_parent) = (0, 0);
        let mut at = vaddr;
        while at < end {
            let index = parent.runs.partition_point(|r| r.vaddr + r.bytes <= at);
            let run = parent.runs.get(index).filter(|r| r.vaddr <= at && r.file != crate::memory::page_sources::AT_SOURCE);
            let to = match run {
                Some(run) => (run.vaddr + run.bytes).min(end),
                None => parent.runs.get(index).map(|r| r.vaddr.max(at + page)).unwrap_or(end).min(end),
            };
            let slice = &mut into[(at - vaddr) as usize..(to - vaddr) as usize];
            match run {
                Some(run) => {
                    let path = &parent.files[run.file];
                    self.read(path, run.offset + (at - run.vaddr), slice).map_err(|e| format!("read {}: {e}", path.display()))?;
                    from_parent += (to - at) / page;
                }
                None => {
                    self.fetch(id, at, slice)?;
                    from_source += (to - at) / page;
                }
            }
            at = to;
        }
        Ok((from_source, from_parent))
    }

    /// Fills `into` with process `id`'s pages from `vaddr` on, from the source.
    fn fetch(&mut self, id: u64, vaddr: u64, into: &mut [u8]) -> Result<(), String> {
        let page = self.page;
        let client = self.source.as_mut().ok_or_else(|| "no source to fetch them from (lazy-pages without --page-server)".to_string())?;
        let mut done = 0usize;
        while done < into.len() {
            let got = client.get(id, vaddr + done as u64, &mut into[done..], page).map_err(|e| e.to_string())?;
            done += (got * page) as usize;
        }
        Ok(())
    }
}

/// A stretch of a lazy area as it is now (after mremaps), `origin` its first byte's
/// address at the dump; one bit per page: done (copied, zeroed, or dropped by the tree).
#[derive(Clone)]
struct Region {
    start: u64,
    end: u64,
    origin: u64,
    done: Vec<u64>,
    left: u64,
}

impl Region {
    fn is_done(&self, index: u64) -> bool {
        self.done[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    fn set_done(&mut self, index: u64) {
        if !self.is_done(index) {
            self.done[(index / 64) as usize] |= 1 << (index % 64);
            self.left -= 1;
        }
    }

    /// The part `from..to` of this region (inside it), with its bits.
    fn part(&self, from: u64, to: u64, page: u64) -> Region {
        let first = (from - self.start) / page;
        let count = (to - from) / page;
        let mut part = Region { start: from, end: to, origin: self.origin + (from - self.start), done: vec![0; count.div_ceil(64) as usize], left: count };
        for index in 0..count {
            if self.is_done(first + index) {
                part.done[(index / 64) as usize] |= 1 << (index % 64);
                part.left -= 1;
            }
        }
        part
    }
}

struct Process {
    pid: i32,
    /// Its pid in the images (names it to the source).
    id: u64,
    uffd: OwnedFd,
    regions: Vec<Region>,
    /// Every run of the images, by address at the dump.
    runs: Arc<Vec<LazyRun>>,
    /// The parent dump's pages, for the pages left at the source that did not change.
    parent: Option<Arc<crate::memory::page_sources::PageSources>>,
    page: u64,
    /// Where prefetching goes on: the last fault.
    cursor: u64,
    gone: bool,
}

impl Process {
    fn new(pid: i32, id: u64, uffd: OwnedFd, areas: &[LazyArea], page: u64) -> Process {
        let mut runs: Vec<LazyRun> = areas.iter().flat_map(|a| a.runs.iter().cloned()).collect();
        runs.sort_by_key(|r| r.addr);
        let regions = areas
            .iter()
            .map(|a| {
                let count = (a.end - a.start) / page;
                Region { start: a.start, end: a.end, origin: a.start, done: vec![0; count.div_ceil(64) as usize], left: count }
            })
            .collect();
        Process { pid, id, uffd, regions, runs: Arc::new(runs), parent: None, page, cursor: 0, gone: false }
    }

    fn complete(&self) -> bool {
        self.regions.iter().all(|r| r.left == 0)
    }

    /// Handles one message; a fork's child process.
    fn handle(&mut self, message: Message, files: &mut Files, buffer: &mut [u8], report: &mut LazyReport) -> Option<Process> {
        let page = self.page;
        match message {
            Message::PageFault { address, .. } => {
                let address = address & !(page - 1);
                self.cursor = address;
                self.serve_fault(address, files, buffer, report);
            }
            Message::Fork { uffd } => {
                // The kernel installed the child's userfaultfd in this process as it
                // delivered the message: this is its one owner.
                let fd = sys::fd::own_received_fd(uffd);
                log::info!("pid {}: forked; the child's pages follow its parent's", self.pid);
                return Some(Process { pid: 0, id: self.id, uffd: fd, regions: self.regions.clone(), runs: self.runs.clone(), parent: self.parent.clone(), page, cursor: 0, gone: false });
            }
            Message::Remap { from, to, len } => self.remap(from, to, len),
            Message::Remove { start, end } => {
                for region in self.regions.iter_mut().filter(|r| r.start < end && start < r.end) {
                    let (from, to) = (start.max(region.start), end.min(region.end));
                    for index in (from - region.start) / page..(to - region.start) / page {
                        region.set_done(index);
                    }
                }
            }
            Message::Unmap { start, end } => self.cut(start, end),
            Message::Other(_) => {}
        }
        None
    }

    fn serve_fault(&mut self, address: u64, files: &mut Files, buffer: &mut [u8], report: &mut LazyReport) {
        let page = self.page;
        let Some(at) = self.regions.iter().position(|r| r.start <= address && address < r.end) else {
            // Not ours (an area the tree mapped since): wake it with a zero page.
            let _ = uffd::zero_pages(self.uffd.as_fd(), address, page);
            return;
        };
        let region = &self.regions[at];
        let index = (address - region.start) / page;
        if region.is_done(index) {
            // Dropped by the tree since (DONTNEED): zeros, as without userfaultfd.
            match uffd::zero_pages(self.uffd.as_fd(), address, page) {
                Ok(_) => report.zero += 1,
                Err(error) => self.failed(address, error),
            }
            return;
        }
        let block_start = (address & !(FAULT_BLOCK - 1)).max(region.start);
        let block_end = (block_start + FAULT_BLOCK).min(region.end);
        let (mut from, mut to) = (address, address + page);
        while from > block_start && !region.is_done((from - page - region.start) / page) {
            from -= page;
        }
        while to < block_end && !region.is_done((to - region.start) / page) {
            to += page;
        }
        let served = self.serve(at, from, to, files, buffer, report);
        report.faulted += served;
    }

    fn prefetch(&mut self, files: &mut Files, buffer: &mut [u8], report: &mut LazyReport) {
        let page = self.page;
        // The first missing page at or after the cursor, else the first one.
        let find = |regions: &[Region], from: u64| -> Option<(usize, u64)> {
            for (at, region) in regions.iter().enumerate().filter(|(_, r)| r.end > from && r.left > 0) {
                let first = from.max(region.start);
                for index in (first - region.start) / page..(region.end - region.start) / page {
                    if !region.is_done(index) {
                        return Some((at, region.start + index * page));
                    }
                }
            }
            None
        };
        let Some((at, from)) = find(&self.regions, self.cursor).or_else(|| find(&self.regions, 0)) else { return };
        let region = &self.regions[at];
        let mut to = from;
        while to < region.end && to - from < PREFETCH_BLOCK && !region.is_done((to - region.start) / page) {
            to += page;
        }
        self.cursor = to;
        let served = self.serve(at, from, to, files, buffer, report);
        report.prefetched += served;
    }

    /// Fills `from..to` of region `at` (pages not done): the images' bytes, zeros where
    /// they hold none. Pages served.
    fn serve(&mut self, at: usize, from: u64, to: u64, files: &mut Files, buffer: &mut [u8], report: &mut LazyReport) -> u64 {
        let page = self.page;
        let origin_of = |region: &Region, address: u64| region.origin + (address - region.start);
        let mut address = from;
        let mut served = 0;
        while address < to {
            let region = &self.regions[at];
            let origin = origin_of(region, address);
            let index = self.runs.partition_point(|r| r.addr + r.bytes <= origin);
            let run = self.runs.get(index).filter(|r| r.addr <= origin);
            let result = match run {
                Some(run) => {
                    let len = (to - address).min(run.addr + run.bytes - origin).min(buffer.len() as u64);
                    let bytes = &mut buffer[..len as usize];
                    let filled = match &run.file {
                        Some(file) => files
                            .read(file, run.offset + (origin - run.addr), bytes)
                            .map_err(|error| format!("read {} at {:#x} for {address:#x}: {error}", file.display(), run.offset + (origin - run.addr))),
                        None => {
                            let fetched = match self.parent.as_deref() {
                                Some(parent) => files.fetch_changed(self.id, origin, bytes, parent),
                                None => files.fetch(self.id, origin, bytes).map(|()| (len / page, 0)),
                            };
                            fetched
                                .map(|(from_source, from_parent)| {
                                    report.from_source += from_source;
                                    report.from_parent += from_parent;
                                })
                                .map_err(|error| format!("fetch {len:#x} bytes at {origin:#x} from the source: {error}"))
                        }
                    };
                    match filled {
                        Ok(()) => uffd::copy_pages(self.uffd.as_fd(), address, bytes),
                        Err(error) => {
                            log::error!("pid {}: {error}; killing pid {} (its memory cannot be complete)", self.pid, self.pid);
                            self.kill();
                            return served;
                        }
                    }
                }
                None => {
                    // Up to the next run: never written at the dump.
                    let next = self.runs.get(index).map(|r| r.addr).unwrap_or(u64::MAX);
                    let len = (to - address).min(next.saturating_sub(origin));
                    let zeroed = uffd::zero_pages(self.uffd.as_fd(), address, len);
                    if let Ok(n) = zeroed {
                        report.zero += n / page;
                    }
                    zeroed
                }
            };
            let done = match result {
                Ok(0) => page,
                Ok(n) => n,
                // Already there (the tree wrote it first: a page it created itself).
                Err(error) if error.raw_os_error() == Some(libc::EEXIST) => page,
                // An event is pending: it is read first, the fault comes again.
                Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => return served,
                Err(error) => {
                    self.failed(address, error);
                    return served;
                }
            };
            let region = &mut self.regions[at];
            for i in 0..done / page {
                region.set_done((address - region.start) / page + i);
            }
            served += done / page;
            address += done;
        }
        served
    }

    fn failed(&mut self, address: u64, error: io::Error) {
        match error.raw_os_error() {
            // The process is gone.
            Some(libc::ESRCH) | Some(libc::ENOENT) => self.gone = true,
            _ => {
                log::error!("pid {}: fill {address:#x}: {error}; killing it (its memory cannot be complete)", self.pid);
                self.kill();
            }
        }
    }

    fn kill(&mut self) {
        if self.pid > 0 {
            let _ = sys::send_signal(self.pid, libc::SIGKILL);
        }
        self.gone = true;
    }

    /// mremap moved `from..from+len` to `to`.
    fn remap(&mut self, from: u64, to: u64, len: u64) {
        let page = self.page;
        let moved: Vec<Region> = self
            .regions
            .iter()
            .filter(|r| r.start < from + len && from < r.end)
            .map(|r| {
                let mut part = r.part(from.max(r.start), (from + len).min(r.end), page);
                let delta = part.start - from;
                part.end = to + delta + (part.end - part.start);
                part.start = to + delta;
                part
            })
            .collect();
        self.cut(from, from + len);
        // The kernel unmapped whatever was at the destination.
        self.cut(to, to + len);
        self.regions.extend(moved);
        self.regions.sort_by_key(|r| r.start);
    }

    /// Drops `start..end` from the regions.
    fn cut(&mut self, start: u64, end: u64) {
        let page = self.page;
        let mut out = Vec::new();
        for region in self.regions.drain(..) {
            if region.end <= start || end <= region.start {
                out.push(region);
                continue;
            }
            if region.start < start {
                out.push(region.part(region.start, start, page));
            }
            if end < region.end {
                out.push(region.part(end, region.end, page));
            }
        }
        self.regions = out;
    }
}
