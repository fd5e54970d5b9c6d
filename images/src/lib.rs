//! CRIU-compatible image files: our own `.proto` schema, the on-disk framing, page maps
//! and crit's JSON.
//!
//! - [`pb`]: the generated messages (`pb::CoreEntry`, `pb::MmEntry`, ...). prost makes
//!   `required` scalars plain fields, `optional` ones `Option`s, and `required` messages
//!   plain (non-`Option`) fields.
//! - [`image`]: [`ImageWriter`] / [`ImageReader`] and the pure [`parse`]; integers in the
//!   framing are in the writer's byte order, found again from the magic on read.
//! - [`magic`]: [`ImageKind`], CRIU's magic numbers and file names.
//! - [`pagemap`]: [`PagemapReader`], from virtual addresses to offsets in `pages-N.img`.
//! - [`dir`]: [`ImageDir`], typed access to one dump directory, and [`PagesWriter`].
//! - [`json`]: crit's JSON, both directions.
//! - [`iproute`]: iproute2 save streams (raw `ifaddr-N`, `route-N`, `route6-N`,
//!   `rule-N` images), typed with netlink-packet-route.
//! - [`tar`]: GNU tar archives (raw `tmpfs-dev-N.tar.gz` images): a writer and a
//!   reader of the format CRIU's `tar` invocation makes, sparse files included.
//! - [`checksums`]: `crust-checksums.img`, crust's own image (no CRIU kind): the
//!   list of images of a dump and the CRC-32C of every run of pages.
//!
//! Invariant: this crate knows nothing about ptrace or live processes; every parser is
//! pure (`&[u8]` in, types out) and the file helpers are thin wrappers around them.
//!
//! ```
//! use crust_images::{pb, ByteOrder, ImageKind, ImageReader, ImageWriter};
//!
//! let mut writer = ImageWriter::with_sink(Vec::new(), "pstree.img", ImageKind::Pstree, ByteOrder::Big)?;
//! writer.write_entry(&pb::PstreeEntry { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: vec![1] })?;
//! let bytes = writer.into_inner()?;
//!
//! let mut reader = ImageReader::from_bytes("pstree.img", bytes)?;
//! assert_eq!(reader.kind(), ImageKind::Pstree);
//! assert_eq!(reader.byte_order(), ByteOrder::Big);
//! let entry: pb::PstreeEntry = reader.next_entry()?.expect("one entry");
//! assert_eq!(entry.threads, [1]);
//! # Ok::<(), crust_images::ImageError>(())
//! ```
#![deny(unsafe_code)]

pub mod checksums;
pub mod dir;
pub mod error;
pub mod image;
pub mod iproute;
pub mod json;
pub mod magic;
pub mod pagemap;
pub mod tar;

/// Generated protobuf types (package `criu`), e.g. [`pb::CoreEntry`].
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/criu.rs"));
}

/// Generated protobuf types of CRIU's RPC (package `criu.rpc`), e.g. [`rpc::CriuReq`]:
/// what `crust swrk` and `crust service` speak with their clients.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/criu.rpc.rs"));
}

/// The encoded `FileDescriptorSet` of all our `.proto` files (for field options at run time).
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/criu_descriptor_set.bin"));

pub use dir::{ImageDir, PagesWriter};
pub use error::ImageError;
pub use image::{
    parse, parse_header, read_entries, read_single, write_entries, ByteOrder, Header, ImageReader,
    ImageWriter, RawEntry, RawImage, StreamReader, MAX_ENTRY_SIZE,
};
pub use magic::{Framing, ImageKind, IMAGES_VERSION, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
pub use pagemap::{PageRun, PagemapReader, PE_LAZY, PE_PARENT, PE_PRESENT};
