//! Memory, a subsystem with its dump half and its restore half:
//! - dump: `dump.rs` classifies each area (CRIU's VMA status) and writes the pages worth
//!   keeping into `pages-N.img` with `pagemap-PID.img`; `pages.rs` moves them
//!   (process_vm_readv and a writer thread, or splice from pipes the target fills
//!   itself, `remote_pipes.rs`); `incremental.rs` compares them with a parent dump;
//!   `snapshot.rs` is the copy-on-write snapshot of `--leave-running`; `shmem.rs`
//!   writes each shared anonymous object once, from the object; `to_server.rs` sends
//!   the pages to a page server instead (`page_server/`);
//! - restore: `page_sources.rs` finds each dumped page through the chain of parent
//!   dumps; `shmem.rs` fills each shared anonymous object before the first fork.
//! - both: `checksums.rs`, the CRC-32C of every run of pages and the list of images
//!   (`crust-checksums.img`), written at the end of a dump and verified before a
//!   restore creates anything. The restorer's memory ops are planned by `restore/program/memory.rs`.
//!
//! Invariant: imports no pipeline.

use std::io;

use crate::files::FileDumpError;

pub(crate) mod checksums;
pub(crate) mod dump;
pub(crate) mod incremental;
pub(crate) mod page_sources;
pub mod pages;
pub(crate) mod remote_pipes;
pub(crate) mod shmem;
pub(crate) mod snapshot;
pub(crate) mod to_server;

pub use checksums::ChecksumError;
pub use page_sources::PageSourcesError;
pub(crate) use dump::special_areas_as_criu;

/// CRIU's pagemap entry flag: the pages are in this image's pages file.
pub(crate) const PE_PRESENT: u32 = 1 << 2;
/// `/proc/PID/pagemap`: the page is a guard region (MADV_GUARD_INSTALL), bit 58 since
/// Linux 6.15; its entry also has the swap bit (a PTE marker), but it holds nothing.
pub(crate) const PM_GUARD_REGION: u64 = 1 << 58;

/// Whether a lazy restore maps area `vma` empty and leaves its pages to the lazy-pages
/// daemon (and so whether `dump --lazy-pages` leaves them at the source): private
/// anonymous memory, not locked (MAP_LOCKED would fault every page in at mmap), not
/// the kernel's own pages.
pub(crate) fn can_be_lazy(vma: &crust_images::pb::VmaEntry) -> bool {
    use crate::model::vma as vs;
    const MAP_TYPE: i32 = 0x0f;
    vma.status & vs::ANON_PRIVATE != 0
        && vma.status & (vs::ANON_SHARED | vs::FILE_PRIVATE | vs::FILE_SHARED | vs::SYSVIPC | vs::VDSO | vs::VVAR | vs::VSYSCALL | vs::GUARD) == 0
        && vma.flags as i32 & (libc::MAP_LOCKED | MAP_TYPE) == libc::MAP_PRIVATE
}

/// Why the memory of a process could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum MemDumpError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Image { pid: i32, source: crust_images::ImageError },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    #[error(transparent)]
    Files(#[from] FileDumpError),
}
crate::error::io_failure!(MemDumpError);
