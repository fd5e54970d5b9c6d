//! What the planning stages share: their error, and small arithmetic.

use std::io;

/// Why a restore cannot be planned: the images ask for what this restore cannot do, or
/// contradict themselves. Nothing was started yet.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("restore: {image}: {what}")]
    BadImage { image: String, what: String },
    #[error("restore pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    #[error("restore pid {pid}: {what}")]
    Host { pid: i32, what: String },
    #[error("restore pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
}
crate::error::io_failure!(PlanError);

/// `value` rounded up to a multiple of `to`.
pub(crate) fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}
