//! CRIU-compatible image files: our own `.proto` schema, the on-disk framing, and crit's JSON.
//!
//! Invariant: this crate knows nothing about ptrace or live processes; every parser is pure
//! (`&[u8]` in, types out) and the file helpers are thin wrappers around them.
#![deny(unsafe_code)]

/// Generated protobuf types (package `criu`), e.g. [`pb::CoreEntry`].
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/criu.rs"));
}

/// The encoded `FileDescriptorSet` of all our `.proto` files.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/criu_descriptor_set.bin"));
