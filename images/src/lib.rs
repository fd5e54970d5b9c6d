//! CRIU-compatible image files: our own `.proto` schema, the on-disk framing, page maps
//! and crit's JSON.
//!
//! Invariant: this crate knows nothing about ptrace or live processes; every parser is
//! pure (`&[u8]` in, types out) and the file helpers are thin wrappers around them.
#![deny(unsafe_code)]

pub mod dir;
pub mod error;
pub mod image;
pub mod json;
pub mod magic;
pub mod pagemap;

/// Generated protobuf types (package `criu`), e.g. [`pb::CoreEntry`].
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/criu.rs"));
}

/// The encoded `FileDescriptorSet` of all our `.proto` files (for field options at run time).
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/criu_descriptor_set.bin"));

pub use dir::{ImageDir, PagesWriter};
pub use error::ImageError;
pub use image::{
    parse, parse_header, read_entries, read_single, write_entries, ByteOrder, Header, ImageReader,
    ImageWriter, RawEntry, RawImage, MAX_ENTRY_SIZE,
};
pub use magic::{Framing, ImageKind, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
pub use pagemap::{PageRun, PagemapReader, PE_LAZY, PE_PARENT, PE_PRESENT};
