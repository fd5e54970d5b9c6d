//! System V IPC: the shared memory segments, semaphore sets and message queues of a
//! tree's own IPC namespace, with the namespace's limits (CRIU's ipcns-var, ipcns-shm,
//! ipcns-sem and ipcns-msg images; segment data in pagemap-shmem-ID.img).
//!
//! A tree that shares crust's IPC namespace shares its objects with the rest of the
//! host: they are not the tree's to dump, and a segment it has attached must still exist
//! at restore (`host_segment_size`). A tree in an IPC namespace of its own gets a new
//! one at restore: its root creates every object again under its old id (through the
//! `*_next_id` sysctls) before anything attaches, and crust marks the segments that were
//! already removed once every process has attached them again.
//!
//! Dump reads the objects without changing them: messages with MSG_COPY, semaphores with
//! GETALL, segment data through a read-only attach (which the kernel counts in the
//! segment's attach time and last pid). Semaphore undo lists are not dumped.

use std::fs::{self, File};
use std::path::Path;

use crust_images::ImageKind;

use crate::files::FileError;
use crate::sys::sysv;

mod dump;
mod restore;

pub(crate) use dump::{dump_namespace, tree_has_own_namespace};
pub(crate) use restore::{host_segment_size, remove_segments, removed_segments, restore_namespace, segment_sizes};

/// Why a System V IPC namespace could not be dumped or made again.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// `what` names the object and the step.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// An image (the error names it).
    #[error(transparent)]
    Image(#[from] crust_images::ImageError),
    /// A segment's pages (the error names the segment).
    #[error(transparent)]
    Pages(#[from] FileError),
    /// What crust refuses: an object it does not handle, an image that contradicts
    /// itself, a namespace that is not the tree's.
    #[error("{what}")]
    Refused { what: String },
}

impl IpcError {
    fn refused(what: impl Into<String>) -> IpcError {
        IpcError::Refused { what: what.into() }
    }
}

/// For `map_err`: step `what` failed.
fn ipc_io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IpcError {
    let what = what.into();
    move |source| IpcError::Io { what, source }
}

/// Largest piece of segment data read or written at once.
const CHUNK: u64 = 1 << 20;


/// Runs `work` in a thread of its own that has entered `pid`'s IPC namespace (the
/// namespace is a property of the thread; crust's other threads stay where they are).
fn in_namespace_of<T: Send>(pid: i32, work: impl FnOnce() -> Result<T, IpcError> + Send) -> Result<T, IpcError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                sysv::enter_namespace_of(pid).map_err(ipc_io(format!("enter the IPC namespace of pid {pid}")))?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(IpcError::refused("the IPC thread panicked")))
    })
}

const SYSCTL: &str = "/proc/sys";

fn read_sysctl(name: &str) -> Result<Vec<i128>, IpcError> {
    let path = format!("{SYSCTL}/{name}");
    let text = fs::read_to_string(&path).map_err(ipc_io(format!("read {path}")))?;
    text.split_whitespace().map(|w| w.parse::<i128>().map_err(|e| IpcError::refused(format!("{path}: {w:?}: {e}")))).collect()
}

fn read_one(name: &str) -> Result<i128, IpcError> {
    read_sysctl(name)?.first().copied().ok_or_else(|| IpcError::refused(format!("{SYSCTL}/{name} is empty")))
}

/// Like `read_one`, for a sysctl older kernels lack.
fn read_optional(name: &str) -> Result<Option<i128>, IpcError> {
    if Path::new(&format!("{SYSCTL}/{name}")).exists() {
        read_one(name).map(Some)
    } else {
        Ok(None)
    }
}

fn write_sysctl(name: &str, value: &str) -> Result<(), IpcError> {
    let path = format!("{SYSCTL}/{name}");
    // A value the namespace has already is not written: in a user namespace of the
    // tree's own only the namespace's root may write these, and the restored root keeps
    // the host's root's ids until its restorer ends (`userns.rs`).
    if fs::read_to_string(&path).is_ok_and(|now| now.split_whitespace().eq(value.split_whitespace())) {
        return Ok(());
    }
    fs::write(&path, value).map_err(ipc_io(format!("write {value} to {path}")))
}

/// Segment `id` as a shmem file: attached for a moment (read-only or read-write) to open
/// it through /proc/self/map_files, which gives the segment's shmem inode with its own
/// read, write and SEEK_DATA.
fn shmem_file(id: i32, size: u64, writable: bool) -> Result<File, IpcError> {
    let attached = sysv::Attached::new(id, writable).map_err(ipc_io(format!("attach System V shared memory {id}")))?;
    let start = attached.addr as u64;
    let end = start + size.div_ceil(crate::sys::page_size()) * crate::sys::page_size();
    let path = format!("/proc/self/map_files/{start:x}-{end:x}");
    let mut options = fs::OpenOptions::new();
    options.read(true).write(writable);
    options.open(&path).map_err(ipc_io(format!("open {path} (System V shared memory {id})")))
}

/// Whether the dump in `dir` holds IPC namespace `ns_id`.
pub(crate) fn image_has_namespace(dir: &Path, ns_id: u32) -> bool {
    dir.join(ImageKind::IpcVar.file_name(ns_id as u64)).exists()
}

