//! The engine's raw kernel calls, one typed function per request.

pub(crate) mod fd;
pub(crate) mod process;
pub(crate) mod sysv;
pub(crate) mod uffd;

pub(crate) use process::*;
