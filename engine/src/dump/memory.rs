//! The memory stage of a dump: for each live process, its areas and the pages worth
//! writing (`memory/`), copied while frozen through pipes the target fills itself
//! (`memory/remote_pipes.rs`), compared with a parent dump (`memory/incremental.rs`),
//! or left to the copy-on-write snapshot (`memory/snapshot.rs`) with
//! `--leave-running`.

use std::fs;
use std::io;
use std::path::Path;

use crust_images::pb;

use crate::dump::freeze::{Frozen, FrozenProcess, OutsideNamespace};
use crate::error::io_failure;
use crate::files::FileTable;
use crate::infect;
use crate::memory::snapshot::Snapshot;
use crate::memory::{self, MemDumpError};
use crate::model::Collected;
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
}
io_failure!(MemoryError);

/// What the memory stage made: each live process's areas (in tree order), the pages
/// written, and the snapshot whose pages are copied once the tree runs again.
pub(crate) struct DumpedMemory {
    pub(crate) vmas: Vec<Vec<pb::VmaEntry>>,
    pub(crate) pages: u64,
    pub(crate) vma_count: usize,
    pub(crate) snapshot: Snapshot,
    /// The checksums taken while the pages were written, by pages file.
    pub(crate) pieces: memory::checksums::Pieces,
}

/// Dumps the memory of every live process of `frozen` into `dir`. `parent_dir`: the
/// parent dump's link (`--prev-images-dir`); `cow`: use the copy-on-write snapshot.
pub(crate) fn dump_tree_memory(
    frozen: &Frozen,
    collected: &[Collected],
    dir: &Path,
    parent_dir: Option<&Path>,
    cow: bool,
    files: &mut FileTable,
) -> Result<DumpedMemory, MemoryError> {
    let root = frozen.processes[0].pid;
    let mut memory = Vec::new();
    let (mut pages, mut vma_count) = (0, 0);
    // Processes whose pages are copied after the release (copy-on-write snapshot); their
    // userfaultfds close (lifting every protection) on every error path.
    let mut armed = Vec::new();
    let mut pieces = memory::checksums::Pieces::new();
    for (index, (process, collected)) in frozen.processes.iter().filter(|p| !p.is_zombie()).zip(collected).enumerate() {
        let pid = process.proc_pid();
        let mem = fs::File::open(format!("/proc/{pid}/mem")).map_err(io_err(pid, "open /proc/PID/mem"))?;
        // Images name processes by their pid in the tree's own namespace.
        let image_pid = frozen.to_virtual(process.pid, "pid")?;
        let parent = match parent_dir {
            Some(dir) => memory::incremental::Parent::open(dir, image_pid as u64, sys::page_size())
                .map_err(|source| MemoryError::Parent { pid, source })?,
            None => None,
        };
        // Pages compared with a parent dump are read while frozen: no snapshot then.
        if cow && parent.is_none() {
            match open_snapshot(process, collected, &mem) {
                Ok(arming) => {
                    let (vmas, written, process_armed) =
                        memory::dump::dump_memory_armed(pid, dir, collected, &mem, files, index as u32 + 1, image_pid, arming)?;
                    pages += written;
                    vma_count += vmas.len();
                    memory.push(vmas);
                    armed.push(process_armed);
                    continue;
                }
                Err(error) => log::info!("pid {pid}: no copy-on-write snapshot, pages copied while frozen: {error}"),
            }
        }
        let pipes = if parent.is_some() { None } else { open_page_pipes(process, collected, &mem) };
        let pages_id = index as u32 + 1;
        let (vmas, written, process_pieces) =
            memory::dump::dump_memory(pid, dir, collected, &mem, files, pages_id, image_pid, pipes, parent.as_ref())?;
        pieces.insert(crust_images::ImageKind::Pages.file_name(pages_id.into()), process_pieces);
        pages += written;
        vma_count += vmas.len();
        memory.push(vmas);
    }
    // The fault handler runs from here on: the tree stays frozen until the images are
    // written, but a thread leaving its stop may already write a protected page.
    let snapshot = Snapshot::start(armed).map_err(io_err(root, "start the userfaultfd handler"))?;
    Ok(DumpedMemory { vmas: memory, pages, vma_count, snapshot, pieces })
}

const PIPES_FROM_RESIDENT: u64 = 16 << 20;

/// Pipes the target fills with its own pages (`remote_pipes.rs`), or `None` where they
/// cannot be made (no vDSO, no free fd, ...): its pages are then copied through crust.
fn open_page_pipes(
    process: &FrozenProcess,
    collected: &Collected,
    mem: &fs::File,
) -> Option<(crate::memory::remote_pipes::RemotePipes, Vec<std::os::fd::OwnedFd>)> {
    let pid = process.proc_pid();
    // Setting the pipes up costs about 14 injected syscalls: not worth it for a small
    // process (its resident pages from /proc/PID/statm).
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    if resident_pages * sys::page_size() < PIPES_FROM_RESIDENT {
        return None;
    }
    let leader = process.threads.first()?;
    let vdso = collected.smaps.iter().find(|e| e.map.name == "[vdso]")?;
    let opened = infect::find_syscall_in_vdso(leader.tid, mem, vdso.map.start, vdso.map.end)
        .map_err(std::io::Error::other)
        .and_then(|syscall_ip| crate::memory::remote_pipes::RemotePipes::open(pid, leader.tid, syscall_ip, leader.regs.gpr));
    match opened {
        Ok(pipes) => Some(pipes),
        Err(error) => {
            log::debug!("pid {pid}: pages copied through crust, no pipes in the target: {error}");
            None
        }
    }
}

/// Why a process gets no copy-on-write snapshot (its pages are then copied while frozen).
#[derive(Debug, thiserror::Error)]
enum NoSnapshot {
    #[error("no thread")]
    NoThread,
    #[error("no vdso")]
    NoVdso,
    #[error(transparent)]
    Infect(#[from] infect::InfectError),
    #[error("userfaultfd: {0}")]
    Userfaultfd(io::Error),
}

/// The process's userfaultfd for the copy-on-write snapshot (`snapshot.rs`), made in its
/// leader; an error where it cannot have one (then its pages are copied while frozen).
fn open_snapshot(process: &FrozenProcess, collected: &Collected, mem: &fs::File) -> Result<crate::memory::snapshot::Arming, NoSnapshot> {
    let leader = process.threads.first().ok_or(NoSnapshot::NoThread)?;
    let vdso = collected.smaps.iter().find(|e| e.map.name == "[vdso]").ok_or(NoSnapshot::NoVdso)?;
    let syscall_ip = infect::find_syscall_in_vdso(leader.tid, mem, vdso.map.start, vdso.map.end)?;
    crate::memory::snapshot::Arming::open(process.proc_pid(), leader.tid, syscall_ip, leader.regs.gpr).map_err(NoSnapshot::Userfaultfd)
}
