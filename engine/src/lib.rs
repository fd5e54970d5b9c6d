//! The checkpoint/restore engine: freeze, collect, dump and restore pipelines.
//!
//! The engine talks to the CPU only through `crust_arch::HostArch`, and to disk only
//! through `crust_images`.
#![deny(unsafe_code)]

pub mod procfs;
mod sys;
pub mod dump;
mod infect;
mod vma_status;
mod program;
pub mod restore;
pub mod check;
mod files;
mod ipc;
mod memory;
mod page_sources;
mod incremental;
mod remote_pipes;
pub mod fast_pages;
mod snapshot;
mod uffd;
