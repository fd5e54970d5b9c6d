//! The dump half of mounts: the mountinfo of the tree's root task (mountpoints as its
//! root sees them) classified against crust's own, into CRIU's `mnt_entry`s for
//! `mountpoints-<mnt ns id>.img`.

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crust_images::{pb, ImageKind};

use super::classify::{classify, describe, fstype_number, DumpMountOptions, MountClass};
use super::mountinfo::{self, MountInfo};
use super::{mount_io, MountError};
use crate::userns::IdMaps;

/// The dumped mount namespace of a tree.
#[derive(Debug)]
pub(crate) struct DumpedMounts {
    /// The namespace's id: the image is `mountpoints-<ns_id>.img`.
    pub(crate) ns_id: u32,
    /// One per dumped mount, in the namespace's order (the image holds them reversed).
    pub(crate) entries: Vec<pb::MntEntry>,
    /// Ids of the mounts left out with `--skip-mnt`.
    pub(crate) skipped: BTreeSet<u32>,
    /// Where crust reaches the tree's files by their paths in the namespace:
    /// `/proc/ROOT/root`.
    pub(crate) view_root: PathBuf,
    /// Each tmpfs superblock of the tree: its `root_dev`, how messages name it, and a
    /// detached clone of its mount (that mount alone), archived when the images are
    /// written.
    pub(crate) tmpfs: Vec<(u32, String, OwnedFd)>,
    /// The maps of the tree's own user namespace: the owners of a tmpfs's files are
    /// archived in its view (CRIU runs tar in the namespace).
    pub(crate) id_maps: Option<IdMaps>,
}

impl DumpedMounts {
    /// Ids of the dumped mounts: a file of the tree must be on one of them.
    pub(crate) fn mount_ids(&self) -> BTreeSet<u32> {
        self.entries.iter().map(|e| e.mnt_id).collect()
    }
}

/// Reads and classifies the mount namespace of `root` (a stopped task whose root is the
/// namespace's root), as namespace `ns_id`. The mountinfo is read from a thread in the
/// root's cgroup namespace, so cgroup mounts' roots are the tree's view (CRIU's); each
/// tmpfs is cloned from a thread in the tree's mount namespace. With the maps of the
/// tree's own user namespace (`id_maps`), `uid=`/`gid=` options are written in its view.
pub(crate) fn collect(root: i32, ns_id: u32, options: &DumpMountOptions, id_maps: Option<&IdMaps>) -> Result<DumpedMounts, MountError> {
    let root_link = format!("/proc/{root}/root");
    let seen_root = fs::read_link(&root_link).map_err(mount_io(format!("readlink {root_link}")))?;
    if seen_root != Path::new("/") {
        return Err(MountError::refused(format!(
            "the tree's root task is chrooted inside its mount namespace (its root is {}): not supported yet",
            seen_root.display()
        )));
    }
    let read = |path: &str| -> Result<Vec<MountInfo>, MountError> {
        let text = fs::read_to_string(path).map_err(mount_io(format!("read {path}")))?;
        mountinfo::parse(&text).map_err(|source| MountError::Parse { source })
    };
    let host = read("/proc/self/mountinfo")?;
    let tree = in_thread(|| {
        crate::sys::cgroup::enter_cgroup_namespace_of(root).map_err(mount_io(format!("enter the cgroup namespace of pid {root} (setns)")))?;
        read(&format!("/proc/{root}/mountinfo"))
    })?;
    let classes = classify(&tree, &host, options).map_err(|refused| MountError::refused(refused.0))?;
    let mut entries = Vec::new();
    let mut skipped = BTreeSet::new();
    let mut tmpfs_mounts = Vec::new();
    for (mount, class) in tree.iter().zip(&classes) {
        let (ext_key, source) = match class {
            MountClass::Skipped => {
                skipped.insert(mount.id);
                continue;
            }
            MountClass::External { key, host_path } => (Some(key.clone()), host_path.clone().unwrap_or_else(|| mount.source.clone())),
            MountClass::Fs if mount.fstype == "tmpfs" => {
                tmpfs_mounts.push(mount);
                (None, mount.source.clone())
            }
            MountClass::Root | MountClass::Bind { .. } | MountClass::Fs => (None, mount.source.clone()),
        };
        let mut made = entry(mount, source, ext_key);
        if let Some(maps) = id_maps {
            made.options = maps.options_inside(&made.options);
        }
        entries.push(made);
    }
    for entry in &entries {
        log::debug!("mount {} {} at {} from {} (parent {}, flags {:#x}, key {:?})", entry.mnt_id, entry.fstype, entry.mountpoint, entry.root, entry.parent_mnt_id, entry.flags, entry.ext_key);
    }
    let tmpfs = if tmpfs_mounts.is_empty() {
        Vec::new()
    } else {
        let mnt_ns_path = format!("/proc/{root}/ns/mnt");
        let mnt_ns = fs::File::open(&mnt_ns_path).map_err(mount_io(format!("open {mnt_ns_path}")))?;
        let covered = tmpfs_mounts.iter().any(|m| is_covered(m, &tree));
        in_thread(|| {
            crate::sys::mount::enter_mount_namespace(&mnt_ns).map_err(mount_io(format!("enter the mount namespace of pid {root} (setns)")))?;
            if !covered {
                // Each tmpfs is the topmost mount at its path: cloned where it is (a
                // detached clone changes nothing in the tree's namespace). The copy
                // below cannot be made of a namespace another user namespace owns:
                // copied into crust's, its mounts are locked and cannot be detached.
                let mut clones = Vec::new();
                for mount in &tmpfs_mounts {
                    let name = describe(mount);
                    let clone = crate::sys::mount::clone_tree(Path::new(&mount.mountpoint)).map_err(mount_io(format!("{name}: clone it to read its files (open_tree)")))?;
                    clones.push((mount.device(), name, clone));
                }
                return Ok(clones);
            }
            if id_maps.is_some() {
                let names: Vec<String> = tmpfs_mounts.iter().filter(|m| is_covered(m, &tree)).map(|m| describe(m)).collect();
                return Err(MountError::refused(format!(
                    "{}: a tmpfs covered by a later mount in a mount namespace of a user namespace of the tree's own: not supported yet",
                    names.join(", ")
                )));
            }
            // A copy of the namespace of this thread's own, made private (nothing done
            // in it propagates to the tree's), where the mounts are detached from the
            // last one up: each is then the topmost at its path when it is cloned, so
            // a tmpfs covered by a later mount is read, not the one covering it.
            crate::sys::mount::new_mount_namespace().map_err(mount_io("copy the tree's mount namespace (unshare CLONE_NEWNS)"))?;
            crate::sys::mount::make_private_recursive(Path::new("/")).map_err(mount_io("make the copy of the tree's mount namespace private"))?;
            let mut clones = Vec::new();
            for mount in tree.iter().rev() {
                if tmpfs_mounts.iter().any(|m| m.id == mount.id) {
                    let name = describe(mount);
                    let clone = crate::sys::mount::clone_tree(Path::new(&mount.mountpoint)).map_err(mount_io(format!("{name}: clone it to read its files (open_tree)")))?;
                    clones.push((mount.device(), name, clone));
                }
                if tree.iter().any(|m| m.id == mount.parent) {
                    crate::sys::mount::detach(Path::new(&mount.mountpoint)).map_err(mount_io(format!("{}: detach it in the copy of the namespace", describe(mount))))?;
                }
            }
            clones.reverse();
            Ok(clones)
        })?
    };
    Ok(DumpedMounts { ns_id, entries, skipped, view_root: PathBuf::from(root_link), tmpfs, id_maps: id_maps.cloned() })
}

/// Whether a later mount of `tree` hides `mount`: one at the same path or at a
/// directory above it. Pure.
fn is_covered(mount: &MountInfo, tree: &[MountInfo]) -> bool {
    let Some(position) = tree.iter().position(|m| m.id == mount.id) else { return false };
    let path = Path::new(&mount.mountpoint);
    tree[position + 1..].iter().any(|later| path.starts_with(&later.mountpoint))
}

/// Runs `work` in a thread of its own (one that may enter namespaces) and waits for it.
fn in_thread<T: Send>(work: impl FnOnce() -> Result<T, MountError> + Send) -> Result<T, MountError> {
    std::thread::scope(|scope| scope.spawn(work).join().unwrap_or_else(|_| Err(MountError::refused("a thread reading the tree's mounts panicked"))))
}

/// The `mnt_entry` of one mount, as CRIU writes it.
fn entry(mount: &MountInfo, source: String, ext_key: Option<String>) -> pb::MntEntry {
    let (sb_flags, mut options) = mount.super_flags_and_options();
    // A devpts is always a new instance (CRIU writes the option).
    if mount.fstype == "devpts" && !options.split(',').any(|o| o == "newinstance") {
        options = if options.is_empty() { "newinstance".into() } else { format!("{options},newinstance") };
    }
    pb::MntEntry {
        fstype: fstype_number(&mount.fstype),
        mnt_id: mount.id,
        root_dev: mount.device(),
        parent_mnt_id: mount.parent,
        flags: mount.flags(),
        root: mount.root.clone(),
        mountpoint: mount.mountpoint.clone(),
        source,
        options,
        shared_id: Some(mount.shared.unwrap_or(0)),
        master_id: Some(mount.master.unwrap_or(0)),
        sb_flags: Some(sb_flags),
        ext_key,
        ..Default::default()
    }
}

/// Writes `mountpoints-<ns_id>.img`: the entries in reverse order, as CRIU does.
pub(crate) fn write_image(dir: &Path, mounts: &DumpedMounts) -> Result<(), MountError> {
    let mut writer = crate::private::create_image(dir, ImageKind::Mnts, u64::from(mounts.ns_id))?;
    for entry in mounts.entries.iter().rev() {
        writer.write_entry(entry)?;
    }
    writer.finish()?;
    for (device, name, clone) in &mounts.tmpfs {
        let file_name = ImageKind::TmpfsDev.file_name(u64::from(*device));
        let path = dir.join(&file_name);
        let file = fs::File::create(&path).map_err(mount_io(format!("create {}", path.display())))?;
        let mut out = std::io::BufWriter::new(file);
        let entries = super::tmpfs::archive(clone.as_fd(), name, mounts.id_maps.as_ref(), &mut out)?;
        out.into_inner().map_err(|e| MountError::Io { what: format!("write {}", path.display()), source: e.into_error() })?;
        log::info!("{name}: {entries} files and directories in {file_name}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_under_a_later_one_is_covered() {
        let text = "1 0 0:1 / / rw - ext4 /dev/a rw\n2 1 0:2 / /dev rw - tmpfs tmpfs rw\n3 2 0:3 / /dev/pts rw - devpts devpts rw\n4 1 0:4 / /tmp rw - tmpfs tmpfs rw\n5 1 0:5 / /tmp rw - tmpfs tmpfs rw\n";
        let tree = mountinfo::parse(text).expect("tree");
        assert!(!is_covered(&tree[1], &tree), "/dev has a mount below it, not over it");
        assert!(is_covered(&tree[3], &tree), "the first /tmp is under the second");
        assert!(!is_covered(&tree[4], &tree));
    }

    #[test]
    fn entries_are_criu_s() {
        let tree = mountinfo::parse(include_str!("fixtures/runc-container.mountinfo")).expect("tree");
        let bound = tree.iter().find(|m| m.id == 86).expect("/etc/bound");
        let made = entry(bound, bound.source.clone(), Some("/etc/bound".into()));
        // As CRIU wrote it (decoded/runc-dump/mountpoints-13.json).
        assert_eq!(
            made,
            pb::MntEntry {
                fstype: 0,
                mnt_id: 86,
                root_dev: 0x0fe0_0000,
                parent_mnt_id: 68,
                flags: 0x20_0001,
                root: "/work/research/containers/b1/hostfile".into(),
                mountpoint: "/etc/bound".into(),
                source: "/dev/vda".into(),
                options: "discard,no_prefetch_block_bitmaps,resv_strict,resuid=65534,resgid=65534".into(),
                shared_id: Some(0),
                master_id: Some(0),
                sb_flags: Some(0),
                ext_key: Some("/etc/bound".into()),
                ..Default::default()
            }
        );
    }
}
