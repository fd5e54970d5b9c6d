//! Lazy restore (`crust restore --lazy-pages` with `crust lazy-pages`): the tree runs as
//! soon as its memory layout is in place; the pages of its private anonymous areas
//! come in through userfaultfd as they are touched, and the rest are prefetched in the
//! background.
//!
//! - restore: the plan maps those areas empty (`restore/program/memory.rs` records them
//!   as [`LazyArea`]s); before any injected call can touch them, crust makes a
//!   userfaultfd in each process (injected `userfaultfd(2)`, taken with pidfd_getfd),
//!   registers the areas (MODE_MISSING, with the fork, remap, remove and unmap events)
//!   and hands the fd and the areas to the daemon ([`handoff`]) over its unix socket
//!   (`lazy-pages.socket` in the daemon's work directory), connected before anything
//!   is created so a missing daemon fails the restore at once.
//! - the daemon ([`daemon`]): serves faults first (the block around the faulting page,
//!   from the pages images through UFFDIO_COPY, zero pages where the dump had none),
//!   prefetches the rest between faults, follows fork (the child gets the parent's
//!   state and its own userfaultfd), mremap, madvise(DONTNEED) and munmap, and exits
//!   once every page is in or every process is gone.
//!
//! - remote pages (`crust lazy-pages --page-server --address A --port P`): runs the dump
//!   left at the source (`dump --lazy-pages`, PE_LAZY) are fetched from the dumping
//!   side's page server with CRIU's GET request (`page_server/`), faults first, the
//!   rest in the background; the daemon ends the connection (FLUSH) once every page is
//!   in, which lets the source go.
//!
//! Invariant: imports no pipeline; the kernel calls are `sys/uffd.rs`'s and
//! `sys/socket.rs`'s.

use std::path::PathBuf;

pub mod daemon;
pub(crate) mod fill;
pub(crate) mod handoff;

pub use daemon::{serve, LazyOptions, LazyReport, Source};

/// A run of pages of a lazy area and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LazyRun {
    pub addr: u64,
    pub bytes: u64,
    /// The pages image (this dump's or a parent's); `None`: left at the source
    /// (PE_LAZY), fetched from its page server.
    pub file: Option<PathBuf>,
    pub offset: u64,
}

/// An area mapped empty, with the runs of pages the images hold for it (anything else
/// in it was never written: zero pages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LazyArea {
    pub start: u64,
    pub end: u64,
    pub runs: Vec<LazyRun>,
}

/// Why a lazy restore's pages could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    #[error("lazy pages: {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("lazy pages: {what}")]
    Protocol { what: String },
}
