//! The memory stage of a dump: for each live process, its areas and the pages worth
//! writing (`memory/`), copied while frozen through pipes the target fills itself
//! (`memory/remote_pipes.rs`, through its parasite), compared with a parent dump (`memory/incremental.rs`),
//! or left to the copy-on-write snapshot (`memory/snapshot.rs`) with
//! `--leave-running`.

use std::fs;
use std::io;
use std::path::Path;

use crust_images::pb;

use crate::dump::freeze::{Frozen, OutsideNamespace};
use crate::error::io_failure;
use crate::files::FileTable;
use crate::memory::shmem::SharedAnonObjects;
use crate::memory::snapshot::Snapshot;
use crate::memory::{self, MemDumpError};
use crate::model::Collected;
use crate::parasite::{Parasite, ParasiteError};
use crate::sys;

/// Why the memory of the tree could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error(transparent)]
    Dump(#[from] MemDumpError),
    #[error(transparent)]
    OutsideNamespace(#[from] OutsideNamespace),
    #[error("dump pid {pid}: read the parent dump: {source}")]
    Parent { pid: i32, source: memory::PageSourcesError },
    #[error("dump pid {pid}: parasite: {source}")]
    Parasite { pid: i32, source: ParasiteError },
    #[error("dump pid {pid}: {source}")]
    SharedAnon { pid: i32, source: crate::files::FileError },
    #[error(transparent)]
    PageServer(#[from] crate::page_server::PageServerError),
}
io_failure!(MemoryError);

/// What the memory stage made: each live process's areas (in tree order), the pages
/// written, how many pages images the shared anonymous objects took (after the
/// processes' own), and the snapshot whose pages are copied once the tree runs again.
pub(crate) struct DumpedMemory {
    pub(crate) vmas: Vec<Vec<pb::VmaEntry>>,
    pub(crate) pages: u64,
    pub(crate) vma_count: usize,
    pub(crate) shared_anon_pages_ids: u32,
    pub(crate) snapshot: Snapshot,
    /// The longest of the parasites' windows.
    pub(crate) window_longest: std::time::Duration,
    /// The checksums taken while the pages were written, by pages file.
    pub(crate) pieces: memory::checksums::Pieces,
    /// The parasites kept alive (`keep_parasites`), in tree order.
    pub(crate) parasites: Vec<Parasite>,
}

/// Dumps the memory of every live process of `frozen` into `dir` (`parasites`: each
/// live process's, in the same order, each cured as soon as its process needs it no
/// more: before its pages are copied, or after, when the target fills pipes with
/// them). `parent_dir`: the parent dump's link (`--prev-images-dir`); `cow`: use the
/// copy-on-write snapshot. `keep_parasites`: pages copied while frozen keep their
/// parasite alive and handed back (a dump that kills its tree need not cure them; the
/// files stage leaves their fds out).
#[allow(clippy::too_many_arguments)] // one caller, each argument a different thing it owns
pub(crate) fn dump_tree_memory(
    frozen: &Frozen,
    collected: &[Collected],
    parasites: Vec<Parasite>,
    dir: &Path,
    parent_dir: Option<&Path>,
    cow: bool,
    files: &mut FileTable,
    mut server: Option<&mut crate::memory::to_server::Session>,
    mut lazy: Option<&mut Vec<crate::page_server::source::LeftAtSource>>,
    keep_parasites: bool,
) -> Result<DumpedMemory, MemoryError> {
    let root = frozen.processes[0].pid;
    let mut memory = Vec::new();
    let (mut pages, mut vma_count) = (0, 0);
    // Processes whose pages are copied after the release (copy-on-write snapshot); their
    // userfaultfds close (lifting every protection) on every error path.
    let mut armed = Vec::new();
    let mut shared_anon = SharedAnonObjects::default();
    let mut pieces = memory::checksums::Pieces::new();
    let mut window_longest = std::time::Duration::ZERO;
    // Cured on every error path (dropped) before the tree is let go.
    let mut kept = Vec::new();
    let mut cure = |parasite: Parasite| -> Result<(), MemoryError> {
        let pid = parasite.pid();
        let stats = parasite.cure().map_err(|source| MemoryError::Parasite { pid, source })?;
        log::info!(
            "pid {pid}: parasite: {} round trips, {} threads; windows (injected mmap and munmap) {} us and {} us, {}",
            stats.round_trips,
            stats.threads,
            stats.map_window.as_micros(),
            stats.unmap_window.as_micros(),
            if stats.chained { "chained (a thread let go in them goes home by itself)" } else { "not chained (a thread let go in them runs on with crust's registers)" }
        );
        if !stats.chained {
            window_longest = window_longest.max(stats.map_window).max(stats.unmap_window);
        }
        Ok(())
    };
    let live = frozen.processes.iter().filter(|p| !p.is_zombie());
    for (index, ((process, collected), mut parasite)) in live.zip(collected).zip(parasites).enumerate() {
        let pid = process.proc_pid();
        if crate::interrupt::stop_requested().is_some() {
            // `dump` names the stop as the cause.
            return Err(MemoryError::Io { pid, what: "memory stage".into(), source: io::Error::from_raw_os_error(libc::EINTR) });
        }
        let mem = fs::File::open(format!("/proc/{pid}/mem")).map_err(io_err(pid, "open /proc/PID/mem"))?;
        // Images name processes by their pid in the tree's own namespace.
        let image_pid = frozen.to_virtual(process.pid, "pid")?;
        if let Some(session) = server.as_deref_mut() {
            // To a page server: copied while frozen, without checksums (a page server
            // keeps none). Where no digests are taken, through the target's page pipes
            // (its parasite vmsplices the pages in, the writer splices them into the
            // socket: no copy through crust); otherwise process_vm_readv into the
            // copier's buffers, whose pages are digested, then the socket.
            let mut sender = session.open_process(image_pid as u64)?;
            let pipes = if sender.streams_plainly() { open_page_pipes(pid, &mut parasite) } else { None };
            let dumped = if pipes.is_some() {
                crate::interrupt::hold("memory-pipes");
                let dumped = memory::dump::dump_memory(pid, dir, collected, &mem, files, 0, image_pid, pipes, None, Some(&mut sender), None);
                cure(parasite)?;
                dumped
            } else {
                drop(pipes);
                cure(parasite)?;
                memory::dump::dump_memory(pid, dir, collected, &mem, files, 0, image_pid, None, None, Some(&mut sender), None)
            };
            let (vmas, written, _) = dumped?;
            session.close_process(sender)?;
            pages += written;
            vma_count += vmas.len();
            shared_anon.add_areas(pid, &vmas);
            memory.push(vmas);
            continue;
        }
        let parent = match parent_dir {
            Some(dir) => memory::incremental::Parent::open(dir, image_pid as u64, sys::page_size())
                .map_err(|source| MemoryError::Parent { pid, source })?,
            None => None,
        };
        if let Some(left) = lazy.as_deref_mut() {
            // `--lazy-pages`: private anonymous pages stay in the frozen tree (PE_LAZY)
            // unless the parent dump has them (its pages here, or the digests a
            // pre-dump to a page server kept); the rest is written here.
            let digests = match parent_dir {
                Some(dir) => crate::page_server::digests::Digests::read(dir, image_pid as u64)
                    .map_err(io_err(pid, format!("read {}", dir.join(crate::page_server::digests::file_name(image_pid as u64)).display())))?,
                None => None,
            };
            let mut lazy_dump = memory::dump::LazyDump::new(image_pid as u64, pid, digests);
            cure(parasite)?;
            let pages_id = index as u32 + 1;
            let (vmas, written, process_pieces) =
                memory::dump::dump_memory(pid, dir, collected, &mem, files, pages_id, image_pid, None, parent.as_ref(), None, Some(&mut lazy_dump))?;
            log::info!(
                "pid {pid}: {} pages left at the source for the lazy-pages daemon ({}), {} in the parent dump, {written} written",
                lazy_dump.left.bytes() / sys::page_size(),
                if lazy_dump.left.parent.is_some() { "compared with the parent's digests for the destination" } else { "every one fetched" },
                lazy_dump.in_parent
            );
            if lazy_dump.left.parent.is_some() {
                let marker = dir.join(crate::page_server::source::PARENT_MARKER);
                crate::private::write_file(&marker, b"CHANGED\n").map_err(io_err(pid, format!("write {}", marker.display())))?;
            }
            left.push(lazy_dump.left);
            pieces.insert(crust_images::ImageKind::Pages.file_name(pages_id.into()), process_pieces);
            pages += written;
            vma_count += vmas.len();
            shared_anon.add_areas(pid, &vmas);
            memory.push(vmas);
            continue;
        }
        // Pages compared with a parent dump are read while frozen: no snapshot then.
        if cow && parent.is_none() {
            match crate::memory::snapshot::Arming::open(&mut parasite) {
                Ok(arming) => {
                    cure(parasite)?;
                    let (vmas, written, process_armed) =
                        memory::dump::dump_memory_armed(pid, dir, collected, &mem, files, index as u32 + 1, image_pid, arming)?;
                    pages += written;
                    vma_count += vmas.len();
                    shared_anon.add_areas(pid, &vmas);
                    memory.push(vmas);
                    armed.push(process_armed);
                    continue;
                }
                Err(error) => log::info!("pid {pid}: no copy-on-write snapshot, pages copied while frozen: {error}"),
            }
        }
        let pipes = if parent.is_some() { None } else { open_page_pipes(pid, &mut parasite) };
        if pipes.is_some() {
            // The parasite holds pipes in the target, which it fills with its pages.
            crate::interrupt::hold("memory-pipes");
        }
        let pages_id = index as u32 + 1;
        let (vmas, written, process_pieces) = if keep_parasites && parent.is_none() {
            // The parasite lives on (its area and fds are left out of the images).
            let dumped = memory::dump::dump_memory(pid, dir, collected, &mem, files, pages_id, image_pid, pipes, None, None, None);
            kept.push(parasite);
            dumped?
        } else if pipes.is_some() {
            // The target fills the pipes: its parasite lives until they are closed.
            let dumped = memory::dump::dump_memory(pid, dir, collected, &mem, files, pages_id, image_pid, pipes, parent.as_ref(), None, None);
            cure(parasite)?;
            dumped?
        } else {
            drop(pipes);
            cure(parasite)?;
            memory::dump::dump_memory(pid, dir, collected, &mem, files, pages_id, image_pid, None, parent.as_ref(), None, None)?
        };
        pieces.insert(crust_images::ImageKind::Pages.file_name(pages_id.into()), process_pieces);
        pages += written;
        vma_count += vmas.len();
        shared_anon.add_areas(pid, &vmas);
        memory.push(vmas);
    }
    // Shared anonymous objects once each, from the objects themselves, while frozen;
    // their pages images come after the processes'.
    shared_anon
        .write(dir, memory.len() as u32 + 1)
        .map_err(|source| MemoryError::SharedAnon { pid: root, source })?;
    // The fault handler runs from here on: the tree stays frozen until the images are
    // written, but a thread leaving its stop may already write a protected page.
    let snapshot = Snapshot::start(armed).map_err(io_err(root, "start the userfaultfd handler"))?;
    Ok(DumpedMemory { vmas: memory, pages, vma_count, shared_anon_pages_ids: shared_anon.len(), snapshot, window_longest, pieces, parasites: kept })
}

const PIPES_FROM_RESIDENT: u64 = 16 << 20;

/// Pipes the target fills with its own pages (`remote_pipes.rs`), or `None` where they
/// cannot be made (no free fd, ...): its pages are then copied through crust.
fn open_page_pipes(
    pid: i32,
    parasite: &mut Parasite,
) -> Option<(crate::memory::remote_pipes::RemotePipes<'_>, Vec<std::os::fd::OwnedFd>)> {
    // Setting the pipes up costs three round trips: not worth it for a small process
    // (its resident pages from /proc/PID/statm).
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    if resident_pages * sys::page_size() < PIPES_FROM_RESIDENT {
        return None;
    }
    match crate::memory::remote_pipes::RemotePipes::open(parasite) {
        Ok(pipes) => Some(pipes),
        Err(error) => {
            log::debug!("pid {pid}: pages copied through crust, no pipes in the target: {error}");
            None
        }
    }
}
