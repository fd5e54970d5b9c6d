//! CRIU's page server protocol, both ends: a dump sends the pages of each process (and
//! of each shared memory object) over TCP to `crust page-server` or `criu page-server`,
//! which writes them as `pagemap-*.img` and `pages-N.img` in its own directory.
//!
//! - [`proto`]: the wire format (pure): a 32-byte header per command, pages after it;
//! - [`client`]: the sending end (a connection, its commands and their replies);
//! - [`server`]: the receiving end (`crust page-server`);
//! - [`source`]: the dumping side of a lazy migration (`dump --lazy-pages`), which
//!   answers the destination's `GET` requests from the frozen tree;
//! - [`digests`]: what an incremental dump over the wire compares pages with, since
//!   the parent dump's pages are on the other machine (a digest per page, kept in the
//!   sending side's images directory).
//!
//! The dump's memory stage drives the client through `memory/to_server.rs`.
//!
//! Invariant: imports no pipeline and no subsystem; the sockets are std's, splice and
//! pipes come through `sys/`.

use std::io;
use std::path::PathBuf;

pub mod client;
pub mod digests;
pub mod proto;
pub mod server;
pub mod source;

pub use client::Client;
pub use server::{ServeOptions, ServeReport};

/// Why pages could not be sent to, or received by, a page server.
#[derive(Debug, thiserror::Error)]
pub enum PageServerError {
    #[error("page server {address}: {what}: {source}")]
    Io { address: String, what: String, source: io::Error },
    #[error("page server {address}: {what}")]
    Protocol { address: String, what: String },
    #[error("page server: {}: {source}", path.display())]
    Image { path: PathBuf, source: crust_images::ImageError },
}
