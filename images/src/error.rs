//! Errors of reading and writing image files; each names the file, and where it
//! applies the byte offset and the index of the entry.

use std::path::PathBuf;

/// What went wrong with an image file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened or read.
    #[error("read {}: {source}", path.display())]
    ReadFile {
        /// the file
        path: PathBuf,
        /// the I/O error
        source: std::io::Error,
    },
    /// The file could not be created or written.
    #[error("write {}: {source}", path.display())]
    WriteFile {
        /// the file
        path: PathBuf,
        /// the I/O error
        source: std::io::Error,
    },
    /// The header is not a magic number we know, in either byte order.
    #[error("{file}: offset {offset}: unknown magic {magic:#010x}")]
    BadMagic {
        /// file name
        file: String,
        /// byte offset of the bad word
        offset: u64,
        /// the word as read little-endian
        magic: u32,
    },
    /// The file ends inside a header, an entry or a payload.
    #[error("{file}: offset {offset}: entry {index}: truncated: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// file name
        file: String,
        /// byte offset where the cut-off item starts
        offset: u64,
        /// index of the entry (0-based)
        index: usize,
        /// what was being read: "header", "size", "entry", "payload"
        what: &'static str,
        /// bytes the item needs
        needed: u64,
        /// bytes the file still has
        available: u64,
    },
    /// An entry claims a size past our sanity bound.
    #[error("{file}: offset {offset}: entry {index}: size {size} is over the {limit} byte limit")]
    EntryTooLarge {
        /// file name
        file: String,
        /// byte offset of the size word
        offset: u64,
        /// index of the entry
        index: usize,
        /// claimed size
        size: u64,
        /// the bound
        limit: u64,
    },
    /// The protobuf bytes do not decode as the expected message.
    #[error("{file}: offset {offset}: entry {index}: decode {message}: {source}")]
    Decode {
        /// file name
        file: String,
        /// byte offset of the entry's size word
        offset: u64,
        /// index of the entry
        index: usize,
        /// the message type expected
        message: String,
        /// prost's reason
        source: prost::DecodeError,
    },
    /// The image is of another kind than the caller asked for.
    #[error("{file}: expected a {expected} image, found {found}")]
    WrongKind {
        /// file name
        file: String,
        /// kind asked for
        expected: &'static str,
        /// kind found
        found: &'static str,
    },
    /// An image that must hold one entry holds none.
    #[error("{file}: no entry")]
    Empty {
        /// file name
        file: String,
    },
    /// Pagemap entries are not sorted by address or overlap.
    #[error("{file}: entry {index}: pages at {vaddr:#x} overlap or precede the previous run ending at {previous_end:#x}")]
    PagemapUnsorted {
        /// file name
        file: String,
        /// index of the offending entry (the head is entry 0)
        index: usize,
        /// start of the offending run
        vaddr: u64,
        /// end of the run before it
        previous_end: u64,
    },
    /// A pagemap entry points past the end of the pages file.
    #[error("{file}: entry {index}: pages at {vaddr:#x} need {needed} bytes of {pages_file}, which has {available}")]
    PagemapPastEnd {
        /// pagemap file name
        file: String,
        /// index of the offending entry
        index: usize,
        /// start of the offending run
        vaddr: u64,
        /// the pages file
        pages_file: String,
        /// bytes needed up to the end of this run
        needed: u64,
        /// size of the pages file
        available: u64,
    },
    /// A pagemap entry's address range does not fit in 64 bits.
    #[error(
        "{file}: entry {index}: run at {vaddr:#x} of {nr_pages} pages wraps the address space"
    )]
    PagemapOverflow {
        /// file name
        file: String,
        /// index of the offending entry
        index: usize,
        /// start of the run
        vaddr: u64,
        /// its length in pages
        nr_pages: u64,
    },
    /// An entry that decodes but does not hold together with the rest.
    #[error("{file}: entry {index}: {what}")]
    Invalid {
        /// file name
        file: String,
        /// index of the entry
        index: usize,
        /// what is wrong
        what: String,
    },
}
