//! The restore's plan of a mount namespace, from `mountpoints-<id>.img` and the
//! options: where each mount comes from (the `--root` directory, a host directory named
//! by an external key, or a directory of another mount of the tree), the
//! `mount_setattr` bits its flags become, the order in which mounts are made (sources
//! before their binds) and placed (the namespace's order, parents first). Pure: every
//! check of the image and of the options happens here, before anything is created.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crust_images::pb;

use super::classify::{bind_sources, fs_kind_name, fs_mounts, fstype_number, is_under, relative, AUTO_EXTERNAL_KEY, EXTERNAL_DEVICE_KEY};
use super::mountinfo::{MS_NOATIME, MS_NODEV, MS_UNBINDABLE, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME, MS_STRICTATIME};
use super::MountError;
use crate::sys::mount as attr;

/// What the restore was given for mounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreMountOptions {
    /// `--root DIR`: the directory the tree's root mount is made of.
    pub root: Option<PathBuf>,
    /// (key, host path): `--external mnt[KEY]:PATH`, `--ext-mount-map KEY:PATH`.
    pub externals: Vec<(String, PathBuf)>,
}

/// Where a mount is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The `--root` directory.
    Root(PathBuf),
    /// A host path, opened by crust before the tree's root is forked.
    Host { key: String, path: PathBuf },
    /// `rel` below the root of mount `from` (an index into the plan's mounts), once
    /// that is made.
    Bind { from: usize, rel: String },
    /// A new mount of a kernel filesystem, made by the restored root in the tree's
    /// namespaces.
    Fs(NewFs),
}

/// A kernel filesystem to mount anew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewFs {
    /// `proc`, `tmpfs`, ... (`fsopen`'s name).
    pub(crate) fstype: String,
    /// The mount's source (`mnt_entry.source`).
    pub(crate) source: String,
    /// The superblock's options, `key=value` or a flag (`mnt_entry.options`).
    pub(crate) options: Vec<(String, Option<String>)>,
    /// The superblock is read-only (`sb_flags` MS_RDONLY): set after the contents.
    pub(crate) read_only: bool,
    /// The directory of the new mount that is the mount's root (`""`: its root).
    pub(crate) rel: String,
    /// A tmpfs's contents: the archive image.
    pub(crate) archive: Option<String>,
}

/// `mnt_entry.options` as `fsconfig` takes them: `key=value` strings and flags.
pub(crate) fn fs_options(options: &str) -> Vec<(String, Option<String>)> {
    options
        .split(',')
        .filter(|o| !o.is_empty())
        .map(|o| match o.split_once('=') {
            Some((key, value)) => (key.to_string(), Some(value.to_string())),
            None => (o.to_string(), None),
        })
        .collect()
}

/// One mount to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlannedMount {
    pub(crate) mnt_id: u32,
    /// Index of the parent mount; `None` for the root.
    pub(crate) parent: Option<usize>,
    /// Where it goes, relative to the tree's root (`/` for the root).
    pub(crate) mountpoint: String,
    pub(crate) source: Source,
    /// `MOUNT_ATTR_*` bits to set and to clear, from `mnt_entry.flags`.
    pub(crate) set: u64,
    pub(crate) clear: u64,
}

/// A mount namespace to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountPlan {
    /// The image it comes from, for messages.
    pub(crate) image: String,
    /// In the namespace's order (the image's, reversed).
    pub(crate) mounts: Vec<PlannedMount>,
    /// Order of making them: the namespace's, every source before the binds of it.
    pub(crate) create_order: Vec<usize>,
    /// Order of placing them in the tree: the root, then the namespace's order with
    /// every mount after its parent.
    pub(crate) place_order: Vec<usize>,
    /// The `--root` directory; the yard is mounted over it in the new namespace.
    pub(crate) root_dir: PathBuf,
    /// Mount propagation, set once every mount is in the tree (earlier, later mounts
    /// would propagate copies), in this order.
    pub(crate) propagation: Vec<Propagation>,
}

/// One step of setting the tree's propagation (indices into the plan's mounts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    /// `mount_setattr(MS_SHARED)`: the mount starts a new peer group.
    Shared(usize),
    /// `move_mount(from, to, MOVE_MOUNT_SET_GROUP)`: `to` (private) takes `from`'s peer
    /// group and master.
    SetGroup { from: usize, to: usize },
    /// `mount_setattr(MS_SLAVE)`: a shared mount becomes a slave of its peer group.
    Slave(usize),
    /// `mount_setattr(MS_UNBINDABLE)`.
    Unbindable(usize),
}

/// The steps that give every mount its dumped peer group (`shared`, 0 for none),
/// master group (`master`, 0 for none) and unbindable flag (`mounts[i]`: device,
/// root, shared, master, unbindable), for mounts made private. A group's leader is
/// its member with the shortest root (`MOVE_MOUNT_SET_GROUP` needs the other's root
/// under the leader's, on one superblock); a group is made after its master group. A
/// master group none of the tree's mounts is in, a group spanning superblocks or one
/// whose members' roots are not under its leader's are refused. Pure.
pub(crate) fn propagation(mounts: &[(u32, &str, u32, u32, bool)]) -> Result<Vec<Propagation>, String> {
    use std::collections::BTreeSet;
    let members = |group: u32| -> Vec<usize> { (0..mounts.len()).filter(|&i| mounts[i].2 == group).collect() };
    let leader_of = |group: u32| -> Option<usize> { members(group).into_iter().min_by_key(|&i| (mounts[i].1.len(), i)) };
    // A source in master group `group` for a slave whose root is `root` on `device`.
    let master_source = |group: u32, device: u32, root: &str| -> Option<usize> {
        members(group).into_iter().filter(|&i| mounts[i].0 == device && is_under(root, mounts[i].1)).min_by_key(|&i| (mounts[i].1.len(), i))
    };
    let mut steps = Vec::new();
    let mut done: BTreeSet<u32> = BTreeSet::new();
    let groups: BTreeSet<u32> = mounts.iter().map(|m| m.2).filter(|&g| g != 0).collect();
    for &(_, _, _, master, _) in mounts {
        if master != 0 && !groups.contains(&master) {
            return Err(format!("a slave of peer group {master}, which no mount of the tree is in (an external master)"));
        }
    }
    // Slave of `master` for mount `index`: a peer of the master first, then a slave.
    let enslave = |index: usize, master: u32, steps: &mut Vec<Propagation>| -> Result<(), String> {
        let (device, root, ..) = mounts[index];
        let from = master_source(master, device, root)
            .ok_or_else(|| format!("mount {index}: no mount of its master group {master} on its superblock holds its root {root}"))?;
        steps.push(Propagation::SetGroup { from, to: index });
        steps.push(Propagation::Slave(index));
        Ok(())
    };
    while done.len() < groups.len() {
        let before = done.len();
        for &group in &groups {
            if done.contains(&group) {
                continue;
            }
            let leader = leader_of(group).expect("a group has members");
            let master = mounts[leader].3;
            if master != 0 && master != group && !done.contains(&master) {
                continue;
            }
            if master != 0 && master != group {
                enslave(leader, master, &mut steps)?;
            }
            steps.push(Propagation::Shared(leader));
            for member in members(group).into_iter().filter(|&m| m != leader) {
                let (device, root, _, member_master, _) = mounts[member];
                if device != mounts[leader].0 {
                    return Err(format!("peer group {group} spans two superblocks (a corrupt image)"));
                }
                if member_master != master {
                    return Err(format!("peer group {group}: its members have different masters ({member_master} and {master})"));
                }
                if !is_under(root, mounts[leader].1) {
                    return Err(format!("peer group {group}: the root {root} of a member is not under its leader's {}", mounts[leader].1));
                }
                steps.push(Propagation::SetGroup { from: leader, to: member });
            }
            done.insert(group);
        }
        if done.len() == before {
            return Err("peer groups whose masters form a loop".into());
        }
    }
    for (index, &(_, _, shared, master, _)) in mounts.iter().enumerate() {
        if shared == 0 && master != 0 {
            enslave(index, master, &mut steps)?;
        }
    }
    for (index, mount) in mounts.iter().enumerate() {
        if mount.4 {
            steps.push(Propagation::Unbindable(index));
        }
    }
    Ok(steps)
}

impl MountPlan {
    /// How messages name mount `index`: `mount 85 (/data)`.
    pub(crate) fn describe(&self, index: usize) -> String {
        let mount = &self.mounts[index];
        format!("mount {} ({})", mount.mnt_id, mount.mountpoint)
    }
}

/// `MOUNT_ATTR_*` bits to set and to clear for a mount with MS_* `flags`: exactly the
/// entry's, whatever the source had (a read-only bind of a writable directory, an atime
/// mode of its own).
pub(crate) fn attributes(flags: u32) -> (u64, u64) {
    let mut set = 0;
    let mut clear = attr::MOUNT_ATTR_ATIME;
    for (ms, bit) in [
        (MS_RDONLY, attr::MOUNT_ATTR_RDONLY),
        (MS_NOSUID, attr::MOUNT_ATTR_NOSUID),
        (MS_NODEV, attr::MOUNT_ATTR_NODEV),
        (MS_NOEXEC, attr::MOUNT_ATTR_NOEXEC),
        (MS_NODIRATIME, attr::MOUNT_ATTR_NODIRATIME),
    ] {
        if flags & ms != 0 {
            set |= bit;
        } else {
            clear |= bit;
        }
    }
    set |= if flags & MS_NOATIME != 0 {
        attr::MOUNT_ATTR_NOATIME
    } else if flags & MS_STRICTATIME != 0 && flags & MS_RELATIME == 0 {
        attr::MOUNT_ATTR_STRICTATIME
    } else {
        attr::MOUNT_ATTR_RELATIME
    };
    (set, clear)
}

/// A path of the image that the restore joins to a directory: absolute, without `.`
/// or `..` components.
fn plain_path(path: &str) -> bool {
    path.starts_with('/') && Path::new(path).components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The plan of the tree's own mount namespace, if it has one: the root's `mnt_ns_id`
/// names a `mountpoints-<id>.img` (dumps write it only for a namespace of the tree's
/// own, never for the dumping tool's).
pub(crate) fn plan_for_restore(dir: &Path, mnt_ns_id: Option<u32>, options: &RestoreMountOptions) -> Result<Option<MountPlan>, MountError> {
    let image = mnt_ns_id.map(|id| crust_images::ImageKind::Mnts.file_name(u64::from(id)));
    let Some(image) = image.filter(|image| dir.join(image).exists()) else {
        if options.root.as_ref().is_some_and(|r| r != Path::new("/")) || !options.externals.is_empty() {
            log::warn!("restore: the tree shares the dumping tool's mount namespace: --root and --external mnt[...] do not apply");
        }
        return Ok(None);
    };
    let entries = crust_images::read_entries::<pb::MntEntry>(&dir.join(&image))?;
    // The root is made and pivoted into from other working directories: absolute.
    let mut options = options.clone();
    if let Some(root) = options.root.take() {
        let canonical = root.canonicalize().map_err(super::mount_io(format!("restore: --root {}", root.display())))?;
        if canonical == Path::new("/") {
            return Err(MountError::refused(format!("restore: the tree has a mount namespace of its own ({image}): --root / cannot be its root; give the directory of its root")));
        }
        options.root = Some(canonical);
    }
    let mut planned = plan(&image, &entries, &options)?;
    // A tmpfs's archive by its superblock (`tmpfs-dev-N`), or by the older name of its
    // mount (`tmpfs-<mnt_id>`).
    for index in 0..planned.mounts.len() {
        let mnt_id = planned.mounts[index].mnt_id;
        if let Source::Fs(NewFs { archive: Some(archive), .. }) = &mut planned.mounts[index].source {
            if !dir.join(&*archive).exists() {
                let old = crust_images::ImageKind::TmpfsImg.file_name(u64::from(mnt_id));
                if !dir.join(&old).exists() {
                    return Err(MountError::refused(format!("restore: {image}: mount {mnt_id} is a tmpfs, but its contents ({archive}) are not in the images")));
                }
                *archive = old;
            }
        }
    }
    Ok(Some(planned))
}

/// Plans the namespace of `image` (its file name) from its entries in the image's order.
pub(crate) fn plan(image: &str, entries: &[pb::MntEntry], options: &RestoreMountOptions) -> Result<MountPlan, MountError> {
    let corrupt = |what: String| MountError::refused(format!("restore: {image}: {what}"));
    let entries: Vec<&pb::MntEntry> = entries.iter().rev().collect();
    let mut by_id = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        if by_id.insert(entry.mnt_id, index).is_some() {
            return Err(corrupt(format!("mount {} appears twice (mnt_entry.mnt_id)", entry.mnt_id)));
        }
        for (path, field) in [(&entry.mountpoint, "mountpoint"), (&entry.root, "root")] {
            if !plain_path(path) {
                return Err(corrupt(format!("mount {}: {field} {path:?} is not a plain absolute path (mnt_entry.{field})", entry.mnt_id)));
            }
        }
    }
    let roots: Vec<usize> = (0..entries.len()).filter(|&i| !by_id.contains_key(&entries[i].parent_mnt_id)).collect();
    let root = match roots.as_slice() {
        [root] if entries[*root].mountpoint == "/" => *root,
        [root] => return Err(corrupt(format!("the root mount {} is mounted at {}, not / (mnt_entry.mountpoint)", entries[*root].mnt_id, entries[*root].mountpoint))),
        [] => return Err(corrupt("no root mount (every mnt_entry.parent_mnt_id names a mount of the image)".into())),
        _ => return Err(corrupt(format!("{} mounts whose parent is not in the image; one root expected (mnt_entry.parent_mnt_id)", roots.len()))),
    };
    let root_dir = options.root.clone().ok_or_else(|| {
        MountError::refused(format!("restore: the tree has a mount namespace of its own ({image}): give its root with --root"))
    })?;
    let name = |entry: &pb::MntEntry| format!("mount {} ({})", entry.mnt_id, entry.mountpoint);
    let mut sources: Vec<Option<Source>> = vec![None; entries.len()];
    for (index, entry) in entries.iter().enumerate() {
        if entry.deleted == Some(true) {
            return Err(MountError::refused(format!("restore: {image}: {}: a mount of a deleted file is not supported yet", name(entry))));
        }
        if index == root {
            sources[index] = Some(Source::Root(root_dir.clone()));
            continue;
        }
        let Some(key) = &entry.ext_key else { continue };
        let path = match key.as_str() {
            AUTO_EXTERNAL_KEY if plain_path(&entry.source) => PathBuf::from(&entry.source),
            AUTO_EXTERNAL_KEY => {
                return Err(corrupt(format!("{}: external by --external mnt[] but its source {:?} is not an absolute path", name(entry), entry.source)))
            }
            EXTERNAL_DEVICE_KEY => return Err(MountError::refused(format!("restore: {image}: {}: an external device mount is not supported yet", name(entry)))),
            key => options.externals.iter().rev().find(|(k, _)| k == key).map(|(_, path)| path.clone()).ok_or_else(|| {
                MountError::refused(format!(
                    "restore: {image}: {} is external with key {key:?}: pass --external mnt[{key}]:PATH (or --ext-mount-map {key}:PATH)",
                    name(entry)
                ))
            })?,
        };
        sources[index] = Some(Source::Host { key: key.clone(), path });
    }
    let keys: Vec<(u32, &str)> = entries.iter().map(|e| (e.root_dev, e.root.as_str())).collect();
    // Kernel filesystems: one new mount per superblock, the rest binds of it.
    let candidate: Vec<bool> = entries.iter().zip(&sources).map(|(e, s)| s.is_none() && fs_kind_name(e.fstype).is_some()).collect();
    let primary: Vec<bool> = sources.iter().map(Option::is_some).collect();
    for (index, fs) in fs_mounts(&keys, &candidate, &primary).into_iter().enumerate() {
        if !fs {
            continue;
        }
        let entry = entries[index];
        let fstype = fs_kind_name(entry.fstype).expect("a candidate has a known kind");
        let archive = (fstype == "tmpfs").then(|| crust_images::ImageKind::TmpfsDev.file_name(u64::from(entry.root_dev)));
        if archive.is_some() && entry.root != "/" {
            return Err(MountError::refused(format!("restore: {image}: {}: a directory ({}) of a tmpfs whose root is not in the image is not supported", name(entry), entry.root)));
        }
        sources[index] = Some(Source::Fs(NewFs {
            fstype: fstype.to_string(),
            source: entry.source.clone(),
            options: fs_options(&entry.options),
            read_only: entry.sb_flags.unwrap_or(0) & MS_RDONLY != 0,
            rel: relative(&entry.root, "/"),
            archive,
        }));
    }
    let primary: Vec<bool> = sources.iter().map(Option::is_some).collect();
    for (index, from) in bind_sources(&keys, &primary).into_iter().enumerate() {
        if primary[index] {
            continue;
        }
        let entry = entries[index];
        let Some(from) = from else {
            if entry.fstype != 0 {
                return Err(MountError::refused(format!("restore: {image}: {}: {} mounts are not supported yet", name(entry), fstype_name(entry))));
            }
            return Err(MountError::refused(format!(
                "restore: {image}: {} is neither a bind of the root or of an external mount nor external itself (no ext_key): crust cannot make it",
                name(entry)
            )));
        };
        debug_assert!(is_under(&entry.root, &entries[from].root));
        sources[index] = Some(Source::Bind { from, rel: relative(&entry.root, &entries[from].root) });
    }
    let mounts: Vec<PlannedMount> = entries
        .iter()
        .zip(sources)
        .enumerate()
        .map(|(index, (entry, source))| {
            let (set, clear) = attributes(entry.flags);
            PlannedMount {
                mnt_id: entry.mnt_id,
                parent: (index != root).then(|| by_id[&entry.parent_mnt_id]),
                mountpoint: entry.mountpoint.clone(),
                source: source.expect("every mount has a source"),
                set,
                clear,
            }
        })
        .collect();
    // The namespace's order, but a bind waits for its source (binds are only of
    // sources, which wait for nothing, so one pass over the rest finishes it).
    let mut create_order: Vec<usize> = Vec::with_capacity(mounts.len());
    let mut waiting = Vec::new();
    for index in 0..mounts.len() {
        match mounts[index].source {
            Source::Bind { from, .. } if !create_order.contains(&from) => waiting.push(index),
            _ => {
                create_order.push(index);
                let (ready, still): (Vec<usize>, Vec<usize>) = waiting.iter().partition(|&&w| matches!(mounts[w].source, Source::Bind { from, .. } if create_order.contains(&from)));
                create_order.extend(ready);
                waiting = still;
            }
        }
    }
    create_order.extend(waiting);
    let mut place_order = vec![root];
    let mut placed = vec![false; mounts.len()];
    placed[root] = true;
    while place_order.len() < mounts.len() {
        let before = place_order.len();
        for index in 0..mounts.len() {
            if !placed[index] && mounts[index].parent.is_some_and(|p| placed[p]) {
                placed[index] = true;
                place_order.push(index);
            }
        }
        if place_order.len() == before {
            return Err(corrupt("mounts whose parents form a loop (mnt_entry.parent_mnt_id)".into()));
        }
    }
    let shape: Vec<(u32, &str, u32, u32, bool)> = entries
        .iter()
        .map(|e| (e.root_dev, e.root.as_str(), e.shared_id.unwrap_or(0), e.master_id.unwrap_or(0), e.flags & MS_UNBINDABLE != 0))
        .collect();
    let propagation = propagation(&shape).map_err(|what| corrupt(format!("mount propagation: {what} (mnt_entry.shared_id, master_id)")))?;
    Ok(MountPlan { image: image.to_string(), mounts, create_order, place_order, root_dir, propagation })
}

fn fstype_name(entry: &pb::MntEntry) -> String {
    let known = ["proc", "sysfs", "devtmpfs", "binfmt_misc", "tmpfs", "devpts", "simfs", "pstore", "securityfs", "fusectl", "debugfs", "cgroup", "aufs", "mqueue", "fuse", "overlay", "autofs", "tracefs", "cgroup2"];
    known
        .iter()
        .find(|name| fstype_number(name) == entry.fstype)
        .map(|name| name.to_string())
        .or_else(|| entry.fsname.clone())
        .unwrap_or_else(|| format!("fstype {}", entry.fstype))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, parent: u32, root: &str, mountpoint: &str, flags: u32, key: Option<&str>) -> pb::MntEntry {
        pb::MntEntry {
            fstype: 0,
            mnt_id: id,
            root_dev: 0x0fe0_0000,
            parent_mnt_id: parent,
            flags,
            root: root.into(),
            mountpoint: mountpoint.into(),
            source: "/dev/vda".into(),
            options: String::new(),
            shared_id: Some(0),
            master_id: Some(0),
            sb_flags: Some(0),
            ext_key: key.map(String::from),
            ..Default::default()
        }
    }

    /// The image's order: the namespace's, reversed.
    fn image(mut entries: Vec<pb::MntEntry>) -> Vec<pb::MntEntry> {
        entries.reverse();
        entries
    }

    fn options() -> RestoreMountOptions {
        RestoreMountOptions { root: Some("/new/root".into()), externals: vec![("data".into(), "/host/data".into())] }
    }

    #[test]
    fn root_externals_and_binds() {
        let entries = image(vec![
            entry(10, 1, "/ct/root", "/", MS_RELATIME, None),
            entry(12, 10, "/old/data", "/data", MS_RELATIME, Some("data")),
            entry(13, 10, "/old/data/file", "/etc/file", MS_RDONLY | MS_RELATIME, None),
            entry(11, 10, "/ct/root/etc/conf", "/conf", MS_NOSUID | MS_NODEV | MS_STRICTATIME, None),
            entry(14, 12, "/old/data/sub", "/data/sub", MS_RELATIME, None),
        ]);
        let plan = plan("mountpoints-10.img", &entries, &options()).expect("plan");
        let sources: Vec<&Source> = plan.mounts.iter().map(|m| &m.source).collect();
        assert_eq!(
            sources,
            [
                &Source::Root("/new/root".into()),
                &Source::Host { key: "data".into(), path: "/host/data".into() },
                &Source::Bind { from: 1, rel: "file".into() },
                &Source::Bind { from: 0, rel: "etc/conf".into() },
                &Source::Bind { from: 1, rel: "sub".into() },
            ]
        );
        assert_eq!(plan.create_order, [0, 1, 2, 3, 4]);
        assert_eq!(plan.place_order, [0, 1, 2, 3, 4]);
        assert_eq!(plan.mounts[4].parent, Some(1));
        // A read-only bind is made read-only, relatime; the nosuid,nodev one strictatime.
        assert_eq!(plan.mounts[2].set, attr::MOUNT_ATTR_RDONLY | attr::MOUNT_ATTR_RELATIME);
        assert_eq!(plan.mounts[3].set, attr::MOUNT_ATTR_NOSUID | attr::MOUNT_ATTR_NODEV | attr::MOUNT_ATTR_STRICTATIME);
        assert_eq!(plan.mounts[3].clear, attr::MOUNT_ATTR_ATIME | attr::MOUNT_ATTR_RDONLY | attr::MOUNT_ATTR_NOEXEC | attr::MOUNT_ATTR_NODIRATIME);
    }

    #[test]
    fn parents_are_placed_first() {
        // A mount listed before its parent (moved there after it was made).
        let entries = image(vec![
            entry(10, 1, "/ct", "/", MS_RELATIME, None),
            entry(20, 21, "/ct/a", "/b/a", MS_RELATIME, None),
            entry(21, 10, "/ct/b", "/b", MS_RELATIME, None),
        ]);
        let plan = plan("mountpoints-9.img", &entries, &options()).expect("plan");
        assert_eq!(plan.place_order, [0, 2, 1]);
    }

    #[test]
    fn binds_wait_for_their_source() {
        let entries = image(vec![
            entry(10, 1, "/ct", "/", MS_RELATIME, None),
            entry(30, 10, "/d/x", "/x", MS_RELATIME, None),
            entry(12, 10, "/d", "/data", MS_RELATIME, Some("data")),
            entry(31, 10, "/ct/y", "/y", MS_RELATIME, None),
        ]);
        let plan = plan("mountpoints-9.img", &entries, &options()).expect("plan");
        assert_eq!(plan.mounts[1].source, Source::Bind { from: 2, rel: "x".into() });
        assert_eq!(plan.create_order, [0, 2, 1, 3]);
        assert_eq!(plan.place_order, [0, 1, 2, 3]);
    }

    #[test]
    fn the_criu_container_image_is_planned_whole() {
        let json = include_str!("fixtures/runc-mountpoints-13.json");
        let entries = from_crit_json(json);
        let externals = vec![("/data".into(), "/host/data".into()), ("/etc/bound".into(), "/host/file".into()), ("/dev/null".into(), "/dev/null".into())];
        let planned = plan("mountpoints-13.img", &entries, &RestoreMountOptions { root: Some("/r".into()), externals }).expect("plan");
        let at = |mountpoint: &str| planned.mounts.iter().position(|m| m.mountpoint == mountpoint).expect("mount");
        let source = |mountpoint: &str| &planned.mounts[at(mountpoint)].source;
        let new_fs = |mountpoint: &str| match source(mountpoint) {
            Source::Fs(fs) => fs.clone(),
            other => panic!("{mountpoint}: {other:?}"),
        };
        assert_eq!(source("/proc/bus"), &Source::Bind { from: at("/proc"), rel: "bus".into() });
        assert_eq!(source("/proc/keys"), &Source::Host { key: "/dev/null".into(), path: "/dev/null".into() });
        let dev = new_fs("/dev");
        assert_eq!((dev.fstype.as_str(), dev.archive.as_deref()), ("tmpfs", Some("tmpfs-dev-42.tar.gz.img")));
        assert_eq!(dev.options, [("size".to_string(), Some("65536k".to_string())), ("mode".to_string(), Some("755".to_string()))]);
        let pts = new_fs("/dev/pts");
        assert_eq!(pts.options.last(), Some(&("newinstance".to_string(), None)));
        assert!(new_fs("/sys").read_only && new_fs("/sys/firmware").read_only && !new_fs("/proc").read_only);
        let cpu = new_fs("/sys/fs/cgroup/cpu");
        assert_eq!((cpu.fstype.as_str(), cpu.options.as_slice(), cpu.rel.as_str()), ("cgroup", &[("cpu".to_string(), None)][..], ""));
        assert_eq!(new_fs("/dev/mqueue").fstype, "mqueue");
        // Every kernel filesystem is made before the binds of it, parents placed first.
        assert!(planned.create_order.iter().position(|&i| i == at("/proc")) < planned.create_order.iter().position(|&i| i == at("/proc/sys")));
        assert_eq!(planned.place_order[0], at("/"));
    }

    #[test]
    fn a_cgroup_mount_of_a_directory_is_that_directory_of_a_new_mount() {
        let mut cgroup = entry(11, 10, "/crust/b1", "/sys/fs/cgroup", MS_RDONLY, None);
        cgroup.fstype = fstype_number("cgroup2");
        cgroup.root_dev = 30;
        cgroup.options = "nsdelegate".into();
        let entries = image(vec![entry(10, 1, "/ct", "/", MS_RELATIME, None), cgroup]);
        let planned = plan("m.img", &entries, &options()).expect("plan");
        assert_eq!(
            planned.mounts[1].source,
            Source::Fs(NewFs {
                fstype: "cgroup2".into(),
                source: "/dev/vda".into(),
                options: vec![("nsdelegate".into(), None)],
                read_only: false,
                rel: "crust/b1".into(),
                archive: None
            })
        );
    }

    #[test]
    fn propagation_is_set_leaders_first_masters_before_their_slaves() {
        // a shared:5, b its peer, c a slave of 5, d shared:6 and a slave of 5 with a
        // peer e below it, f unbindable; listed with the slaves' group first.
        let mounts = [
            (1, "/", 6, 5, false),    // 0: d
            (1, "/", 5, 0, false),    // 1: a
            (1, "/sub", 5, 0, false), // 2: b
            (1, "/", 0, 5, false),    // 3: c
            (1, "/x", 6, 5, false),   // 4: e
            (1, "/", 0, 0, true),     // 5: f
        ];
        assert_eq!(
            propagation(&mounts).expect("steps"),
            [
                Propagation::Shared(1),
                Propagation::SetGroup { from: 1, to: 2 },
                Propagation::SetGroup { from: 1, to: 0 },
                Propagation::Slave(0),
                Propagation::Shared(0),
                Propagation::SetGroup { from: 0, to: 4 },
                Propagation::SetGroup { from: 1, to: 3 },
                Propagation::Slave(3),
                Propagation::Unbindable(5),
            ]
        );
        assert!(propagation(&[(1, "/", 0, 9, false)]).expect_err("external master").contains("peer group 9, which no mount of the tree is in"));
        assert!(propagation(&[(1, "/", 3, 0, false), (2, "/", 3, 0, false)]).expect_err("two superblocks").contains("spans two superblocks"));
        assert!(propagation(&[(1, "/a", 3, 0, false), (1, "/b", 3, 0, false)]).expect_err("roots").contains("is not under its leader's"));
        assert!(propagation(&[(1, "/", 3, 4, false), (1, "/", 4, 3, false)]).expect_err("loop").contains("loop"));
    }

    #[test]
    fn refusals() {
        let base = || vec![entry(10, 1, "/ct", "/", MS_RELATIME, None), entry(12, 10, "/d", "/data", MS_RELATIME, Some("data"))];
        let no_root = RestoreMountOptions { root: None, ..options() };
        assert_eq!(
            plan("mountpoints-10.img", &image(base()), &no_root).expect_err("no --root").to_string(),
            "restore: the tree has a mount namespace of its own (mountpoints-10.img): give its root with --root"
        );
        let no_key = RestoreMountOptions { externals: Vec::new(), ..options() };
        assert_eq!(
            plan("mountpoints-10.img", &image(base()), &no_key).expect_err("no key").to_string(),
            "restore: mountpoints-10.img: mount 12 (/data) is external with key \"data\": pass --external mnt[data]:PATH (or --ext-mount-map data:PATH)"
        );
        let mut escaping = base();
        escaping[1].mountpoint = "/../../etc".into();
        assert!(plan("m.img", &image(escaping), &options()).expect_err("..").to_string().contains("is not a plain absolute path"));
        let mut orphan = base();
        orphan.push(entry(13, 99, "/x", "/x", 0, None));
        assert!(plan("m.img", &image(orphan), &options()).expect_err("two roots").to_string().contains("2 mounts whose parent is not in the image"));
        let mut unknown = base();
        unknown.push(entry(13, 10, "/elsewhere", "/x", 0, None));
        assert!(plan("m.img", &image(unknown), &options()).expect_err("no source").to_string().contains("mount 13 (/x) is neither a bind"));
        let mut twice = base();
        twice.push(entry(12, 10, "/d", "/y", 0, None));
        assert!(plan("m.img", &image(twice), &options()).expect_err("twice").to_string().contains("mount 12 appears twice"));
    }

    /// `mnt_entry`s from crit's JSON of a mountpoints image.
    pub(crate) fn from_crit_json(json: &str) -> Vec<pb::MntEntry> {
        let json: serde_json::Value = serde_json::from_str(json).expect("json");
        let bytes = crust_images::json::json_to_image(&json, crust_images::ByteOrder::native()).expect("crit json");
        let image = crust_images::parse("mountpoints-13.img", &bytes).expect("image");
        image.entries.iter().map(|e| prost::Message::decode(e.message.as_slice()).expect("mnt_entry")).collect()
    }
}
