//! UTS namespaces, dump half and restore half: the host name and the domain name of a
//! tree in a UTS namespace of its own, in `utsns-<id>.img` (CRIU's `utsns_entry`).
//! The dump reads them with `uname` in a crust thread that joined the namespace; the
//! restored root, forked into a new UTS namespace, sets them before anything else of
//! the tree runs.
//!
//! Invariant: imports no pipeline.

use std::fs;
use std::io;
use std::path::Path;

use crust_images::{pb, ImageKind};

/// Why the UTS namespace could not be dumped or restored.
#[derive(Debug, thiserror::Error)]
pub enum UtsError {
    /// `what` names the step.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(transparent)]
    Image(#[from] crust_images::ImageError),
}

fn uts_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> UtsError {
    let what = what.into();
    move |source| UtsError::Io { what, source }
}

fn os(error: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(error as i32)
}

/// Reads the host and domain name of the UTS namespace of `pid` (from a thread that
/// joins it) into `utsns-<ns_id>.img`.
pub(crate) fn dump(pid: i32, dir: &Path, ns_id: u32) -> Result<pb::UtsnsEntry, UtsError> {
    let ns_path = format!("/proc/{pid}/ns/uts");
    let ns = fs::File::open(&ns_path).map_err(uts_io(format!("open {ns_path}")))?;
    let entry = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<pb::UtsnsEntry> {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWUTS).map_err(os)?;
                let names = nix::sys::utsname::uname().map_err(os)?;
                Ok(pb::UtsnsEntry {
                    nodename: names.nodename().to_string_lossy().into_owned(),
                    domainname: names.domainname().to_string_lossy().into_owned(),
                })
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread that reads the names panicked")))
    })
    .map_err(uts_io(format!("read the host and domain name of pid {pid}'s UTS namespace")))?;
    crust_images::ImageDir::new(dir).write_single(ImageKind::Utsns, u64::from(ns_id), &entry)?;
    Ok(entry)
}

/// The names of the tree's own UTS namespace, if it has one: the root's `uts_ns_id`
/// names a `utsns-<id>.img` (dumps write it only for a namespace of the tree's own).
pub(crate) fn read_for_restore(dir: &Path, uts_ns_id: Option<u32>) -> Result<Option<pb::UtsnsEntry>, UtsError> {
    let images = crust_images::ImageDir::new(dir);
    match uts_ns_id.filter(|&id| images.exists(ImageKind::Utsns, u64::from(id))) {
        Some(id) => Ok(Some(images.read_single(ImageKind::Utsns, u64::from(id))?)),
        None => Ok(None),
    }
}

/// In the restored root, in its new UTS namespace: sets the host and domain name.
pub(crate) fn apply(entry: &pb::UtsnsEntry) -> Result<(), UtsError> {
    crate::sys::set_host_name(&entry.nodename).map_err(uts_io(format!("sethostname {:?}", entry.nodename)))?;
    crate::sys::set_domain_name(&entry.domainname).map_err(uts_io(format!("setdomainname {:?}", entry.domainname)))
}
