//! The check that every image of a dump is one this restore reads (or may leave
//! unread), so that a CRIU dump holding state crust cannot restore yet (a mount tree, a
//! network namespace, a tty's unread data, ...) fails in one line naming the image,
//! before anything is created, instead of coming back without it.

use std::path::Path;

use crust_images::ImageKind;

use crate::restore::images::ImagesError;

/// What this restore does with each kind of image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handling {
    /// Read and restored.
    Restored,
    /// Left unread, and why that loses nothing.
    Unread(&'static str),
    /// Not restored: the dump is refused.
    Refused,
}

/// How this restore handles images of `kind`.
pub(crate) fn handling(kind: ImageKind) -> Handling {
    use ImageKind::*;
    match kind {
        Inventory | Pstree | Core | Ids | Mm | Pagemap | PagemapShmem | Pages | Fdinfo | Files | Fs | Seccomp | PipesData
        | FifoData | SkQueues | TcpStream | TtyInfo | MemfdInode | FileLocks | RemapFpath | GhostFile | IpcVar | IpcnsShm
        | IpcnsMsg | IpcnsSem => Handling::Restored,
        Timens => Handling::Unread("the clocks a new time namespace would be set to; the tree shares this one (ids checked)"),
        StatsDump | StatsRestore => Handling::Unread("statistics of the dump or of a restore"),
        IrmapCache => Handling::Unread("a cache of the dumping tool"),
        Cgroup => Handling::Unread("cgroups are not managed yet: the tree is restored into crust's own"),
        _ => Handling::Refused,
    }
}

/// Checks every image in `dir` (files named as CRIU names images; anything else, like
/// logs, is left alone).
pub(crate) fn check(dir: &Path) -> Result<(), ImagesError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ImagesError::Missing { pid: 0, what: format!("list {}", dir.display()), source })?;
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names {
        let Some((kind, _)) = ImageKind::from_file_name(&name) else { continue };
        match handling(kind) {
            Handling::Restored => {}
            Handling::Unread(why) => log::info!("{name} left unread: {why}"),
            Handling::Refused => {
                return Err(ImagesError::BadImage { image: name, what: format!("{} images are not supported yet", kind.name()) });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_crust_cannot_restore_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("crust-image-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for name in ["inventory.img", "core-1.img", "stats-dump", "timens-0.img", "dump.log", "restore.pid"] {
            std::fs::write(dir.join(name), b"").expect("file");
        }
        check(&dir).expect("all read or harmless");
        std::fs::write(dir.join("mountpoints-12.img"), b"").expect("file");
        let error = check(&dir).expect_err("mounts").to_string();
        assert_eq!(error, "restore: mountpoints-12.img: MNTS images are not supported yet");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
