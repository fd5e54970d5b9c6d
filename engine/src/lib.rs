//! The checkpoint/restore engine. Two pipelines that say what happens in which order
//! ([`dump`], [`restore`]), the subsystems below them that own each kind of state
//! (`memory/`, `files/`, `ipc/`), the task model they share (`model`), the raw kernel
//! calls (`sys/`) and the remote syscalls into a stopped thread (`infect`). See
//! `docs/ARCHITECTURE.md` for the map.
//!
//! The engine talks to the CPU only through `crust_arch::HostArch` (and, for planning,
//! any `crust_arch::Abi`), and to disk only through `crust_images`.
#![deny(unsafe_code)]

pub mod check;
pub mod dump;
pub mod procfs;
pub mod restore;

mod error;
mod files;
mod infect;
mod ipc;
mod memory;
mod model;
mod sys;

/// Fast page transfer and the pure run building over pagemap entries (`memory/pages.rs`).
pub use memory::pages as fast_pages;
