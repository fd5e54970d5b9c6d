//! The dump half of memory: which areas a stopped process has, what each is (CRIU's
//! VMA status), and which pages hold data worth writing (present or swapped, and not
//! what a file already holds), copied into `pages-N.img` with `pagemap-PID.img`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crust_images::pb;
use crust_images::{ImageKind, ImageWriter};

use super::checksums::Piece;
use super::incremental::Parent;
use super::pages::{page_runs, pagemap_chunks, push_run, read_target, PageCopier, PagemapEntries};
use super::remote_pipes::RemotePipes;
use super::snapshot::{ArmedProcess, Arming, Pending, PendingLayout, Run};
use super::{PE_PRESENT, PM_GUARD_REGION};
use super::to_server::ProcessSender;
use super::MemDumpError;
use super::io_err;
use crate::files::FileTable;
use crate::model::vma as vs;
use crate::model::Collected;
use crate::procfs::MapsLine;
use crate::sys;

/// Dumps every memory area and the pages that hold data; `pipes`: the target's page
/// pipes (`remote_pipes.rs`) and their read ends, when it has them.
#[allow(clippy::too_many_arguments)] // one caller, each argument a different thing it owns
pub(crate) fn dump_memory(
    pid: i32,
    dir: &Path,
    collected: &Collected,
    mem: &File,
    files: &mut FileTable,
    pages_id: u32,
    image_pid: i32,
    pipes: Option<(RemotePipes, Vec<OwnedFd>)>,
    parent: Option<&Parent>,
    mut server: Option<&mut ProcessSender>,
    mut lazy: Option<&mut LazyDump>,
) -> Result<(Vec<pb::VmaEntry>, u64, Vec<Piece>), MemDumpError> {
    let (mut remote_pipes, read_ends) = match pipes {
        Some((remote, read_ends)) => (Some(remote), read_ends),
        None => (None, Vec::new()),
    };
    let page = sys::page_size();
    // To a page server (`to_server.rs`): headers and pages go into its socket, nothing
    // is written here.
    let (pagemap, pages_file, mut pagemap_out) = match server.as_ref() {
        Some(sender) => {
            let pagemap = File::open(format!("/proc/{pid}/pagemap")).map_err(io_err(pid, "open pagemap"))?;
            (pagemap, sender.stream().map_err(io_err(pid, "dup the page server's socket"))?, None)
        }
        None => {
            let (pagemap, pages_file, pagemap_out) = open_outputs(pid, dir, pages_id, image_pid)?;
            (pagemap, pages_file, Some(pagemap_out))
        }
    };
    let mut pages_out =
        PageCopier::with_pipes(pid, pages_file, read_ends).map_err(io_err(pid, "make the pages copier"))?;
    if server.is_some() {
        pages_out = pages_out.without_checksums();
    }

    let mut vmas = Vec::new();
    let mut guards = GuardRuns::default();
    let mut total_pages = 0u64;
    let mut pagemap_buf = PagemapEntries::default();
    for entry in &collected.smaps {
        let map = &entry.map;
        let Some(mut vma) = classify_vma(pid, map, &entry.vm_flags, files)? else { continue };
        let status = vma.status;
        let no_pages = keeps_no_pages(&vma);
        let left_at_source = lazy.is_some() && super::can_be_lazy(&vma);
        for (index, count) in pagemap_chunks((map.end - map.start) / page) {
            let entries = pagemap_buf
                .read(&pagemap, map.start + index * page, count, page)
                .map_err(io_err(pid, format!("read pagemap at {:#x}", map.start + index * page)))?;
            for (first, run) in page_runs(entries, is_guard) {
                guards.add(map.start + (index + first) * page, run * page);
            }
            for (first, run) in page_runs(entries, |bits| !no_pages && wants_page(status, bits)) {
                let addr = map.start + (index + first) * page;
                if let (true, Some(lazy)) = (left_at_source, lazy.as_deref_mut()) {
                    // Left in the frozen tree for the destination's daemon (PE_LAZY),
                    // but what the parent dump already has.
                    let pagemap_out = pagemap_out.as_mut().expect("a lazy dump writes its pagemap");
                    let pieces = lazy
                        .split(pid, mem, parent, addr, run * page, map.read)
                        .map_err(io_err(pid, format!("compare pages {:#x}-{:#x} with the parent dump", addr, addr + run * page)))?;
                    for (start, bytes, same) in pieces {
                        let flags = if same {
                            lazy.in_parent += bytes / page;
                            PE_PARENT
                        } else {
                            lazy.left.push(start, start + bytes);
                            PE_LAZY
                        };
                        pagemap_out.write_entry(&pb::PagemapEntry::run(start, bytes / page, flags)).map_err(|source| MemDumpError::Image { pid, source })?;
                    }
                    continue;
                }
                if let Some(sender) = server.as_deref_mut() {
                    total_pages += sender
                        .send_run(&mut pages_out, pid, mem, addr, run, map.read, remote_pipes.as_mut())
                        .map_err(copy_failed(pid, entry, addr, run * page))?;
                    continue;
                }
                let pagemap_out = pagemap_out.as_mut().expect("a local dump writes its pagemap");
                if let Some(parent) = parent {
                    // Pages equal to the parent dump's are not written again.
                    let pieces = parent
                        .split(mem, addr, run * page, page)
                        .map_err(io_err(pid, format!("compare pages {:#x}-{:#x} with the parent dump", addr, addr + run * page)))?;
                    for (start, bytes, same) in pieces {
                        if !same {
                            pages_out.copy(mem, start, bytes, map.read).map_err(copy_failed(pid, entry, start, bytes))?;
                            total_pages += bytes / page;
                        }
                        let flags = if same { PE_PARENT } else { PE_PRESENT };
                        pagemap_out.write_entry(&pb::PagemapEntry::run(start, bytes / page, flags)).map_err(|source| MemDumpError::Image { pid, source })?;
                    }
                    continue;
                }
                let copied = match remote_pipes.as_mut() {
                    Some(remote) => pages_out.copy_spliced(mem, addr, run * page, map.read, &mut |index, from, len| {
                        remote.vmsplice(index, from, len)
                    }),
                    None => pages_out.copy(mem, addr, run * page, map.read),
                };
                copied.map_err(copy_failed(pid, entry, addr, run * page))?;
                pagemap_out
                    .write_entry(&pb::PagemapEntry::run(addr, run, PE_PRESENT))
                    .map_err(|source| MemDumpError::Image { pid, source })?;
                total_pages += run;
            }
        }
        vma.fd = -1;
        vmas.push(vma);
    }
    vmas.extend(guards.into_vmas());
    // The writer has emptied every pipe once it finished: only then may they close.
    let (_, pieces) = pages_out.finish().map_err(io_err(pid, "write pages"))?;
    if let Some(remote) = remote_pipes {
        remote.close().map_err(io_err(pid, "close the page pipes in the target"))?;
    }
    if let Some(pagemap_out) = pagemap_out {
        pagemap_out.finish().map_err(|source| MemDumpError::Image { pid, source })?;
    }
    Ok((vmas, total_pages, if server.is_some() { Vec::new() } else { pieces }))
}

/// `dump --lazy-pages`: what one process's dump leaves in the frozen tree, for the
/// source to serve (`page_server/source.rs`).
pub(crate) struct LazyDump {
    /// The parent dump's page digests (a pre-dump sent to a page server): pages equal
    /// to them are in the destination's parent dump (PE_PARENT).
    pub(crate) digests: Option<crate::page_server::digests::Digests>,
    pub(crate) left: crate::page_server::source::LeftAtSource,
    /// Pages marked PE_PARENT.
    pub(crate) in_parent: u64,
    buffer: Vec<u8>,
}

impl LazyDump {
    pub(crate) fn new(id: u64, pid: i32, digests: Option<crate::page_server::digests::Digests>) -> LazyDump {
        // The parent's digests go with the pages left at the source: the comparison is
        // made there for the destination (`CHANGED`) once the tree runs at the
        // destination, not while it is frozen here.
        LazyDump { digests: None, left: crate::page_server::source::LeftAtSource { id, pid, runs: Vec::new(), parent: digests }, in_parent: 0, buffer: Vec::new() }
    }

    /// Splits `len` bytes at `addr` into runs equal to the parent dump's (`true`: by
    /// digest, or by bytes with a parent dump here) or not.
    fn split(&mut self, pid: i32, mem: &File, parent: Option<&Parent>, addr: u64, len: u64, readable: bool) -> std::io::Result<Vec<(u64, u64, bool)>> {
        let page = sys::page_size();
        let Some(digests) = self.digests.as_ref() else {
            return match parent {
                Some(parent) => parent.split(mem, addr, len, page),
                None => Ok(vec![(addr, len, false)]),
            };
        };
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        let mut done = 0u64;
        while done < len {
            let step = (super::pages::READ_BUFFER as u64).min(len - done);
            let start = addr + done;
            self.buffer.resize(step as usize, 0);
            let read = if readable { super::pages::read_remote(pid, &mut self.buffer, start).unwrap_or(0) } else { 0 };
            if read < self.buffer.len() {
                mem.read_exact_at(&mut self.buffer[read..], start + read as u64)?;
            }
            for (index, bytes) in self.buffer.chunks(page as usize).enumerate() {
                let at = start + index as u64 * page;
                let same = digests.get(at) == Some(crate::page_server::digests::digest(bytes));
                match out.last_mut() {
                    Some(last) if last.2 == same && last.0 + last.1 == at => last.1 += page,
                    _ => out.push((at, page, same)),
                }
            }
            done += step;
        }
        Ok(out)
    }
}

/// Dumps every memory area like [`dump_memory`], for a process that stays frozen only
/// until its memory is write-protected (`snapshot.rs`): the private anonymous areas are
/// registered with `arming`'s userfaultfd and write-protected (by other threads while
/// this one reads the pagemap of the areas that need it now), and the pages of every
/// other area (or of an area the kernel would not register or protect) are copied now.
/// The armed process's pages are copied by [`super::snapshot::Snapshot::copy`] once the
/// tree runs again.
///
/// Where the pages go in `pages-N.img` depends on the pagemap. For an area of
/// [`DEFER_PAGEMAP_FROM`] bytes or more it is read after the release instead of now (it
/// is most of the frozen time of a big process: 10 ms a GiB here, and twice that beside
/// the write-protect): its pages at the freeze are then the ones whose entry still has
/// the userfaultfd write-protect bit, or that the fault handler copied before it lifted
/// that bit. The images' layout waits for that scan: what is copied now is kept in
/// memory (up to [`FROZEN_BYTES_KEPT`], or the pagemap is read now) and the pagemap
/// image is written after the scan, in address order as always.
#[allow(clippy::too_many_arguments)] // one caller, each argument a different thing it owns
pub(crate) fn dump_memory_armed(
    pid: i32,
    dir: &Path,
    collected: &Collected,
    mem: &File,
    files: &mut FileTable,
    pages_id: u32,
    image_pid: i32,
    mut arming: Arming,
) -> Result<(Vec<pb::VmaEntry>, u64, ArmedProcess), MemDumpError> {
    let page = sys::page_size();
    let (pagemap, pages_file, mut pagemap_out) = open_outputs(pid, dir, pages_id, image_pid)?;

    // Classify every area, and register the ones the snapshot may protect.
    let mut areas = Vec::new();
    for entry in &collected.smaps {
        let map = &entry.map;
        let Some(mut vma) = classify_vma(pid, map, &entry.vm_flags, files)? else { continue };
        vma.fd = -1;
        let registered = !keeps_no_pages(&vma)
            && snapshot_can_protect(vma.status, map.shared, &entry.vm_flags)
            && match arming.register(map.start, map.end) {
                Ok(()) => true,
                Err(error) => {
                    log::info!("pid {pid}: area {:#x}-{:#x} copied while frozen: not registered: {error}", map.start, map.end);
                    false
                }
            };
        areas.push((map, vma, registered));
    }
    let protected: Vec<(u64, u64)> = areas.iter().filter(|a| a.2).map(|a| (a.0.start, a.0.end)).collect();
    let may_defer = |map: &MapsLine, registered: bool| registered && map.end - map.start >= DEFER_PAGEMAP_FROM;
    // An area's runs, from the pagemap read now.
    let mut pagemap_buf = PagemapEntries::default();
    let mut runs_now = |map: &MapsLine, vma: &pb::VmaEntry, guards: &mut GuardRuns| {
        area_runs(pid, &pagemap, map.start, map.end, vma.status, !keeps_no_pages(vma), guards, &mut pagemap_buf)
    };

    // Write-protect them on other threads while this one reads the pagemap of the areas
    // that are not deferred (both only walk the page tables of the frozen process, so
    // neither changes what the other sees).
    let mut guards = GuardRuns::default();
    let timer = std::time::Instant::now();
    let arming_ref = &arming;
    let (protect_results, protect_time, mut area_runs) = std::thread::scope(|scope| -> Result<_, MemDumpError> {
        let protecting = scope.spawn(move || {
            let timer = std::time::Instant::now();
            (arming_ref.write_protect(&protected), timer.elapsed())
        });
        let mut area_runs: Vec<Option<Vec<(u64, u64)>>> = Vec::new();
        let walked = (|| -> Result<(), MemDumpError> {
            for (map, vma, registered) in &areas {
                if may_defer(map, *registered) {
                    area_runs.push(None);
                    continue;
                }
                area_runs.push(Some(runs_now(map, vma, &mut guards)?));
            }
            Ok(())
        })();
        let (results, protect_time) = protecting.join().map_err(|_| MemDumpError::Io {
            pid,
            what: "write-protect thread".into(),
            source: std::io::Error::other("panicked"),
        })?;
        walked?;
        Ok((results, protect_time, area_runs))
    })?;
    // An area that was registered but not protected is copied now: its pagemap too.
    let mut protect_results = protect_results.into_iter();
    let mut protected_ok = Vec::new();
    for ((map, vma, registered), runs) in areas.iter().zip(area_runs.iter_mut()) {
        let ok = *registered
            && match protect_results.next().expect("one result per protected area") {
                Ok(()) => true,
                Err(error) => {
                    log::info!("pid {pid}: area {:#x}-{:#x} copied while frozen: not write-protected: {error}", map.start, map.end);
                    false
                }
            };
        if !ok && runs.is_none() {
            *runs = Some(runs_now(map, vma, &mut guards)?);
        }
        protected_ok.push(ok);
    }
    // Deferred only while what is copied now fits in memory; otherwise the pagemap of
    // the deferred areas is read now after all.
    let frozen_bytes: u64 = areas
        .iter()
        .zip(&area_runs)
        .zip(&protected_ok)
        .filter(|(_, ok)| !**ok)
        .flat_map(|((_, runs), _)| runs.iter().flatten())
        .map(|&(_, pages)| pages * page)
        .sum();
    let mut defer = area_runs.iter().any(Option::is_none);
    if defer && frozen_bytes > FROZEN_BYTES_KEPT {
        log::info!("pid {pid}: pagemap read while frozen: {} MiB of pages copied now would wait in memory", frozen_bytes >> 20);
        defer = false;
        for ((map, vma, _), runs) in areas.iter().zip(area_runs.iter_mut()) {
            if runs.is_none() {
                *runs = Some(runs_now(map, vma, &mut guards)?);
            }
        }
    }
    let walk_time = timer.elapsed();

    let mut vmas = Vec::new();
    let mut buffer = Vec::new();
    let mut frozen_pieces = Vec::new();
    let mut total_pages = 0u64;
    let mut layout = Vec::new();
    let mut offset = 0u64;
    for (((map, vma, _), runs), ok) in areas.into_iter().zip(area_runs).zip(protected_ok) {
        if let Some(runs) = &runs {
            total_pages += runs.iter().map(|r| r.1).sum::<u64>();
        }
        match (runs, ok) {
            (None, _) => layout.push(Pending::Deferred { start: map.start, end: map.end, readable: map.read }),
            (Some(runs), true) if defer => layout.push(Pending::Armed { start: map.start, end: map.end, readable: map.read, runs }),
            (Some(runs), true) => {
                let runs = place_runs(pid, runs, &mut offset, &mut pagemap_out)?;
                if !runs.is_empty() {
                    arming.arm(map.start, map.end, map.read, runs);
                }
            }
            (Some(runs), false) if defer => {
                // Kept in memory until the layout is known after the release.
                let mut data = Vec::new();
                for &(addr, pages) in &runs {
                    let from = data.len();
                    data.resize(from + (pages * page) as usize, 0);
                    read_target(pid, mem, &mut data[from..], addr, map.read).map_err(io_err(pid, format!("read pages at {addr:#x}")))?;
                }
                layout.push(Pending::Copied { runs, data });
            }
            (Some(runs), false) => {
                for run in &place_runs(pid, runs, &mut offset, &mut pagemap_out)? {
                    copy_now(pid, mem, &pages_file, run, map.read, &mut buffer, &mut frozen_pieces)?;
                }
            }
        }
        vmas.push(vma);
    }
    vmas.extend(guards.into_vmas());
    let own_mem = File::open(format!("/proc/{pid}/mem")).map_err(io_err(pid, "open /proc/PID/mem"))?;
    let pages_name = ImageKind::Pages.file_name(pages_id.into());
    if defer {
        log::info!(
            "pid {pid}: pages of the big areas found after release; {total_pages} pages of the others (frozen: pagemap read \
             and other areas read {walk_time:?}, beside it write-protect {protect_time:?})"
        );
        let pending = PendingLayout { pagemap, pagemap_out, areas: layout };
        return Ok((vmas, total_pages, arming.finish_pending(pages_file, own_mem, pages_name, pending)));
    }
    pagemap_out.finish().map_err(|source| MemDumpError::Image { pid, source })?;
    log::info!(
        "pid {pid}: {} of {total_pages} pages left to copy after release (frozen: pagemap read and other \
         areas copied {walk_time:?}, beside it write-protect {protect_time:?})",
        arming.pages()
    );
    Ok((vmas, total_pages, arming.finish(pages_file, own_mem, pages_name, frozen_pieces)))
}

/// Areas from this size on have their pagemap read after the release
/// ([`dump_memory_armed`]).
const DEFER_PAGEMAP_FROM: u64 = 16 << 20;
/// The most bytes copied while frozen that wait in memory for a deferred layout.
const FROZEN_BYTES_KEPT: u64 = 64 << 20;

/// Gives each run `(address, pages)` its place in the pages file from `offset` on, and
/// writes its pagemap entry.
fn place_runs(pid: i32, runs: Vec<(u64, u64)>, offset: &mut u64, pagemap_out: &mut ImageWriter) -> Result<Vec<Run>, MemDumpError> {
    let page = sys::page_size();
    let mut placed = Vec::with_capacity(runs.len());
    for (addr, pages) in runs {
        pagemap_out.write_entry(&pb::PagemapEntry::run(addr, pages, PE_PRESENT)).map_err(|source| MemDumpError::Image { pid, source })?;
        placed.push(Run { addr, pages, offset: *offset });
        *offset += pages * page;
    }
    Ok(placed)
}

/// Whether an area's pages may be left to the copy-on-write snapshot: private anonymous
/// memory (heap and stacks too) that no userfaultfd of the target's own watches and that
/// KSM does not merge. Everything else (file and shared memory, the vDSO) is copied
/// while frozen.
fn snapshot_can_protect(status: u32, shared: bool, vm_flags: &[String]) -> bool {
    let has = |f: &str| vm_flags.iter().any(|v| v == f);
    status & vs::ANON_PRIVATE != 0
        && !shared
        && !has("uf")
        && !has("uw")
        && !has("ui")
        && !has("mg")
        && status & (vs::VDSO | vs::VVAR | vs::VSYSCALL) == 0
}

/// Reads the pagemap of `start..end`: the runs `(address, pages)` of pages the image
/// keeps ([`wants_page`]; none without `keeps_pages`), joined across chunks; notes its
/// guard regions in `guards`.
#[allow(clippy::too_many_arguments)] // three callers, each argument a different thing
fn area_runs(
    pid: i32,
    pagemap: &File,
    start: u64,
    end: u64,
    status: u32,
    keeps_pages: bool,
    guards: &mut GuardRuns,
    pagemap_buf: &mut PagemapEntries,
) -> Result<Vec<(u64, u64)>, MemDumpError> {
    let page = sys::page_size();
    let mut runs = Vec::new();
    for (index, count) in pagemap_chunks((end - start) / page) {
        let entries = pagemap_buf
            .read(pagemap, start + index * page, count, page)
            .map_err(io_err(pid, format!("read pagemap at {:#x}", start + index * page)))?;
        for (first, pages) in page_runs(entries, is_guard) {
            guards.add(start + (index + first) * page, pages * page);
        }
        for (first, pages) in page_runs(entries, |bits| keeps_pages && wants_page(status, bits)) {
            push_run(&mut runs, start + (index + first) * page, pages, page);
        }
    }
    Ok(runs)
}

/// Copies a run of a stopped process into the pages file at the run's offset, with the
/// checksum of each piece.
fn copy_now(pid: i32, mem: &File, out: &File, run: &Run, readable: bool, buffer: &mut Vec<u8>, pieces: &mut Vec<Piece>) -> Result<(), MemDumpError> {
    let page = sys::page_size();
    let len = run.pages * page;
    let mut done = 0u64;
    buffer.resize(super::pages::READ_BUFFER, 0);
    while done < len {
        let step = (len - done).min(buffer.len() as u64) as usize;
        let target = &mut buffer[..step];
        let addr = run.addr + done;
        read_target(pid, mem, target, addr, readable).map_err(io_err(pid, format!("read pages at {addr:#x}")))?;
        out.write_all_at(target, run.offset + done).map_err(io_err(pid, "write pages"))?;
        pieces.push(Piece { offset: run.offset + done, len: step as u64, crc: super::checksums::crc32c(target) });
        done += step as u64;
    }
    Ok(())
}

/// What both memory dumpers open: the target's /proc pagemap, `pages-N.img`, and
/// `pagemap-PID.img` with its head written.
fn open_outputs(pid: i32, dir: &Path, pages_id: u32, image_pid: i32) -> Result<(File, File, ImageWriter), MemDumpError> {
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).map_err(io_err(pid, "open pagemap"))?;
    let pages_path = dir.join(ImageKind::Pages.file_name(pages_id as u64));
    let pages_file = crate::private::create_file(&pages_path).map_err(io_err(pid, format!("create {}", pages_path.display())))?;
    let mut pagemap_out =
        crate::private::create_image(dir, ImageKind::Pagemap, image_pid as u64).map_err(|source| MemDumpError::Image { pid, source })?;
    pagemap_out.write_entry(&pb::PagemapHead { pages_id }).map_err(|source| MemDumpError::Image { pid, source })?;
    Ok((pagemap, pages_file, pagemap_out))
}

/// CRIU's pagemap entry flags: the pages are in the parent dump's, or left at the source
/// for a lazy restore (PE_PRESENT, in this image's pages file, is in `mod.rs`).
const PE_PARENT: u32 = 1 << 0;
const PE_LAZY: u32 = 1 << 1;

fn is_guard(bits: u64) -> bool {
    bits & PM_GUARD_REGION != 0
}

/// Whether a page with pagemap entry `bits`, in an area of VMA status `status`, goes into
/// the image: present or swapped pages, but never what a file, a shared object or the
/// kernel holds (the vvar pages, shared file pages, unmodified pages of a private file
/// mapping, shared anonymous memory, whose object is written once, `shmem.rs`), nor a
/// guard page; the vDSO's pages always.
fn wants_page(status: u32, bits: u64) -> bool {
    if is_guard(bits) {
        return false;
    }
    let present = bits & (1 << 63) != 0;
    let swapped = bits & (1 << 62) != 0;
    let file_or_shared = bits & (1 << 61) != 0;
    if status & vs::VDSO != 0 {
        // Every page of the vDSO, as CRIU writes it: its restore reads the dumped vDSO's
        // symbols to tell whether the running one is the same.
        true
    } else if status & (vs::VVAR | vs::VSYSCALL | vs::SYSVIPC | vs::ANON_SHARED) != 0 || status & vs::FILE_SHARED != 0 {
        false
    } else if status & vs::FILE_PRIVATE != 0 {
        (present && !file_or_shared) || swapped
    } else {
        present || swapped
    }
}

/// The guard regions of a process (MADV_GUARD_INSTALL), from its pagemap, in maximal
/// runs: no page of them is copied; each run is recorded as CRIU does, as one more vma
/// after the real ones (status VMA_AREA_GUARD, nothing else), and installed again by
/// the restorer once every area is in place.
#[derive(Default)]
struct GuardRuns {
    runs: Vec<(u64, u64)>,
}

impl GuardRuns {
    /// Guard pages at `start..start + len`, met in address order.
    fn add(&mut self, start: u64, len: u64) {
        match self.runs.last_mut() {
            Some(last) if last.1 == start => last.1 = start + len,
            _ => self.runs.push((start, start + len)),
        }
    }

    fn into_vmas(self) -> impl Iterator<Item = pb::VmaEntry> {
        self.runs.into_iter().map(|(start, end)| pb::VmaEntry {
            start,
            end,
            pgoff: 0,
            shmid: 0,
            prot: 0,
            flags: 0,
            status: vs::GUARD,
            fd: -1,
            madv: None,
            fdflags: None,
        })
    }
}

/// For `map_err` of a page copy in the area of `entry`: a copy that hits EIO in an area
/// with guard regions (VmFlags `gu`) that the pagemap did not mark (Linux 6.13 and 6.14
/// have guards but no pagemap bit for them) is refused in one line naming the cause.
fn copy_failed(pid: i32, entry: &crate::procfs::SmapsEntry, addr: u64, len: u64) -> impl FnOnce(std::io::Error) -> MemDumpError {
    let guarded = entry.vm_flags.iter().any(|f| f == "gu");
    let (start, end) = (entry.map.start, entry.map.end);
    move |source| {
        if guarded && source.raw_os_error() == Some(libc::EIO) {
            MemDumpError::Unsupported {
                pid,
                what: format!("memory area {start:#x}-{end:#x} with guard regions (MADV_GUARD_INSTALL) this kernel's pagemap does not mark (Linux 6.15 does, in bit 58)"),
            }
        } else {
            MemDumpError::Io { pid, what: format!("copy pages {:#x}-{:#x}", addr, addr + len), source }
        }
    }
}

/// Whether an area's pages are never written, whatever the pagemap says: MAP_DROPPABLE
/// memory, which the kernel may empty at any moment (CRIU restores it empty too).
fn keeps_no_pages(vma: &pb::VmaEntry) -> bool {
    vma.flags as i32 & MAP_TYPE == libc::MAP_DROPPABLE
}

/// The map-type bits of mmap's flags (`MAP_SHARED`, `MAP_PRIVATE`, `MAP_SHARED_VALIDATE`,
/// `MAP_DROPPABLE`).
const MAP_TYPE: i32 = 0x0f;

/// madvise bits CRIU records, keyed by smaps VmFlags.
const MADV_BY_FLAG: [(&str, u32); 7] = [
    ("sr", libc::MADV_SEQUENTIAL as u32),
    ("rr", libc::MADV_RANDOM as u32),
    ("dc", libc::MADV_DONTFORK as u32),
    ("mg", libc::MADV_MERGEABLE as u32),
    ("hg", libc::MADV_HUGEPAGE as u32),
    ("nh", libc::MADV_NOHUGEPAGE as u32),
    ("dd", libc::MADV_DONTDUMP as u32),
];

fn classify_vma(
    pid: i32,
    map: &MapsLine,
    vm_flags: &[String],
    files: &mut FileTable,
) -> Result<Option<pb::VmaEntry>, MemDumpError> {
    let has = |f: &str| vm_flags.iter().any(|v| v == f);
    let mut prot = 0;
    if map.read {
        prot |= libc::PROT_READ;
    }
    if map.write {
        prot |= libc::PROT_WRITE;
    }
    if map.exec {
        prot |= libc::PROT_EXEC;
    }
    // MAP_DROPPABLE is a map type of its own (in MAP_TYPE's bits, where MAP_PRIVATE
    // would be), as CRIU records it; the kernel sets `wf` and `dd` on it by itself.
    let mut flags = if map.shared {
        libc::MAP_SHARED
    } else if has("dp") {
        libc::MAP_DROPPABLE
    } else {
        libc::MAP_PRIVATE
    };
    if has("gd") {
        flags |= libc::MAP_GROWSDOWN;
    }
    if has("nr") {
        flags |= libc::MAP_NORESERVE;
    }
    // mlock: CRIU records it as MAP_LOCKED, which the restore maps with (mlock2's
    // MLOCK_ONFAULT, `lf`, has no field: such an area comes back locked and populated).
    if has("lo") {
        flags |= libc::MAP_LOCKED;
    }
    let mut madv = 0u64;
    for (flag, advice) in MADV_BY_FLAG {
        if has(flag) {
            madv |= 1 << advice;
        }
    }
    if has("wf") {
        madv |= 1 << libc::MADV_WIPEONFORK;
    }
    let mut vma = pb::VmaEntry {
        start: map.start,
        end: map.end,
        pgoff: map.offset,
        shmid: 0,
        prot: prot as u32,
        flags: flags as u32,
        status: vs::REGULAR,
        fd: -1,
        madv: Some(madv),
        fdflags: None,
    };
    let name = map.name.as_str();
    match name {
        "[vsyscall]" => return Ok(None),
        // Huge pages of hugetlbfs (MAP_HUGETLB, a hugetlb memfd or file): no image field
        // of crust's keeps the page size yet (CRIU's VMA_AREA_HUGETLB).
        _ if has("ht") => {
            return Err(MemDumpError::Unsupported { pid, what: format!("memory area {:#x}-{:#x} ({name}) of hugetlb pages", map.start, map.end) });
        }
        // An AIO context's ring (io_setup): CRIU rebuilds the context; crust would take
        // it for an unlinked file.
        "/[aio] (deleted)" => {
            return Err(MemDumpError::Unsupported { pid, what: format!("AIO context (io_setup) ring at {:#x}-{:#x}", map.start, map.end) });
        }
        // CRIU's form: private anonymous areas of a special kind.
        "[vdso]" | "[vvar]" | "[vvar_vclock]" => {
            vma.status |= (if name == "[vdso]" { vs::VDSO } else { vs::VVAR }) | vs::ANON_PRIVATE;
            vma.flags |= libc::MAP_ANONYMOUS as u32;
        }
        "[stack]" | "[heap]" | "" => {
            vma.status |= vs::ANON_PRIVATE;
            if name == "[stack]" {
                vma.status |= vs::STACK;
            }
            if name == "[heap]" {
                vma.status |= vs::HEAP;
            }
            vma.flags |= libc::MAP_ANONYMOUS as u32;
            vma.pgoff = 0;
            if map.shared {
                shared_anon_as_memfd(pid, map, has("mw"), &mut vma, files)?;
            }
        }
        _ if name.starts_with("[anon:") => {
            vma.status |= if map.shared { vs::ANON_SHARED } else { vs::ANON_PRIVATE };
            vma.flags |= libc::MAP_ANONYMOUS as u32;
            vma.pgoff = 0;
        }
        _ if map.shared && name.starts_with("/dev/zero") => shared_anon_as_memfd(pid, map, has("mw"), &mut vma, files)?,
        // A System V shared memory attach: "/SYSV<key> (deleted)", the inode is the
        // segment's id. Its pages belong to the segment (ipc.rs), not to the process.
        _ if map.shared && name.starts_with("/SYSV") => {
            // CRIU's form: a shared anonymous area of the System V kind.
            vma.status |= vs::SYSVIPC | vs::ANON_SHARED;
            vma.flags |= libc::MAP_ANONYMOUS as u32;
            vma.shmid = map.inode;
            vma.fdflags = Some(if has("mw") { libc::O_RDWR } else { libc::O_RDONLY } as u32);
        }
        _ if name.starts_with("/memfd:") => {
            let open_flags = if map.shared && has("mw") { libc::O_RDWR } else { libc::O_RDONLY };
            let id = files.add_memfd_mapping(pid, map.start, map.end, name, open_flags)?;
            vma.shmid = id as u64;
            vma.fdflags = Some(open_flags as u32);
            vma.status |= vs::MEMFD | if map.shared { vs::FILE_SHARED } else { vs::FILE_PRIVATE };
        }
        _ if name.starts_with('/') && !name.ends_with(" (deleted)") && !name.starts_with("/memfd:") && !name.starts_with("/SYSV") => {
            let open_flags = if map.shared && has("mw") { libc::O_RDWR } else { libc::O_RDONLY };
            let id = files.add_path(pid, Path::new(name), open_flags)?;
            vma.shmid = id as u64;
            vma.fdflags = Some(open_flags as u32);
            vma.status |= if map.shared { vs::FILE_SHARED } else { vs::FILE_PRIVATE };
        }
        _ if name.starts_with('/') && name.ends_with(" (deleted)") && !name.starts_with("/memfd:") && !name.starts_with("/SYSV") && !name.starts_with("/dev/zero") => {
            // Every area mapping the inode shares its one ghost; each is opened as its own
            // file was (the map_files link's mode is the file's f_mode, as CRIU reads it).
            let link = format!("/proc/{pid}/map_files/{:x}-{:x}", map.start, map.end);
            let link_mode = std::fs::symlink_metadata(&link).map_err(io_err(pid, format!("lstat {link}")))?.mode();
            let open_flags = if link_mode & libc::S_IWUSR != 0 { libc::O_RDWR } else { libc::O_RDONLY };
            let id = files.add_deleted_mapping(pid, map.start, map.end, name, open_flags)?;
            vma.shmid = id as u64;
            vma.fdflags = Some(open_flags as u32);
            vma.status |= if map.shared { vs::FILE_SHARED } else { vs::FILE_PRIVATE };
        }
        _ => {
            // A socket mapped into memory is a packet socket's ring (PACKET_RX_RING,
            // PACKET_TX_RING), the only sockets that mmap.
            let why = if name.starts_with("socket:[") { " (a packet socket's PACKET_RX_RING or PACKET_TX_RING mapped)" } else { "" };
            return Err(MemDumpError::Unsupported {
                pid,
                what: format!("memory area {:#x}-{:#x} {name:?}{why}", map.start, map.end),
            })
        }
    }
    Ok(Some(vma))
}

/// A shared anonymous area (MAP_SHARED|MAP_ANONYMOUS, or /dev/zero mapped shared) in
/// the form CRIU 4.2.1 dumps it on Linux 6.18: a shared mapping (`VMA_FILE_SHARED |
/// VMA_AREA_MEMFD`, flags without MAP_ANONYMOUS, the offset kept) of a MEMFD file
/// entry whose inode is the object, named `/dev/zero` in memfd.img, its data in
/// pagemap-shmem-INODE.img. crust's restore maps such an area as shared anonymous memory
/// again (`memory/shmem.rs`); CRIU's restore maps the memfd.
fn shared_anon_as_memfd(pid: i32, map: &MapsLine, may_write: bool, vma: &mut pb::VmaEntry, files: &mut FileTable) -> Result<(), MemDumpError> {
    let open_flags = if may_write { libc::O_RDWR } else { libc::O_RDONLY };
    let id = files.add_shared_anon_mapping(pid, map.start, map.end, open_flags)?;
    vma.status = vs::REGULAR | vs::FILE_SHARED | vs::MEMFD;
    vma.flags &= !(libc::MAP_ANONYMOUS as u32);
    vma.pgoff = map.offset;
    vma.shmid = id as u64;
    vma.fdflags = Some(open_flags as u32);
    Ok(())
}

/// Gives a process's special areas the shape CRIU 4.2 writes: `[vvar]` and
/// `[vvar_vclock]` (Linux 6.13 and later) as one VVAR area, as CRIU keeps them (two
/// areas make CRIU's restore think the vDSO changed and put a proxy in its place).
pub(crate) fn special_areas_as_criu(vmas: &mut Vec<pb::VmaEntry>) {
    let mut merged: Vec<pb::VmaEntry> = Vec::with_capacity(vmas.len());
    for vma in vmas.drain(..) {
        match merged.last_mut() {
            Some(last) if last.status & vs::VVAR != 0 && vma.status & vs::VVAR != 0 && last.end == vma.start => last.end = vma.end,
            _ => merged.push(vma),
        }
    }
    *vmas = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_pages_are_never_copied_and_runs_merge() {
        // What this 6.18 kernel shows for a guard page: swap bit, guard bit, a marker.
        let guard = 0x4400_0000_0000_009f_u64;
        let present = 1u64 << 63;
        for status in [vs::REGULAR | vs::ANON_PRIVATE, vs::REGULAR | vs::FILE_PRIVATE, vs::REGULAR | vs::FILE_SHARED] {
            assert!(!wants_page(status, guard));
        }
        assert!(wants_page(vs::REGULAR | vs::ANON_PRIVATE, present));
        assert!(!wants_page(vs::REGULAR | vs::ANON_SHARED, present));
        let mut runs = GuardRuns::default();
        runs.add(0x10000, 0x2000);
        runs.add(0x12000, 0x1000);
        runs.add(0x20000, 0x1000);
        let vmas: Vec<_> = runs.into_vmas().map(|v| (v.start, v.end, v.status, v.flags, v.prot)).collect();
        assert_eq!(vmas, vec![(0x10000, 0x13000, vs::GUARD, 0, 0), (0x20000, 0x21000, vs::GUARD, 0, 0)]);
    }
}
