//! User namespaces, dump half and restore half: the uid and gid maps of a tree in a
//! user namespace of its own, in `userns-<id>.img` (CRIU's `userns_entry`: extents of
//! `first` (inside), `lower_first` (in the parent namespace, crust's), `count`).
//!
//! - Dump: the maps of the tree's root as crust reads them (`/proc/ROOT/uid_map`, in
//!   crust's view, which is the parent's: a namespace whose parent is not crust's is
//!   refused). What crust reads of the tree in its own view (creds, file owners of a
//!   tmpfs, mount options `uid=`/`gid=`) is mapped into the tree's view through
//!   [`IdMaps`], as CRIU records them (root in the namespace is uid 0, not 100000).
//!   `setgroups` is not recorded (CRIU's image has no field for it): a namespace with
//!   `deny` comes back with `allow`, said in a warning.
//! - Restore: the root is cloned with `CLONE_NEWUSER` (with its other namespaces, which
//!   the new user namespace then owns) and waits; crust, outside, writes `uid_map` then
//!   `gid_map` ([`write_maps`]). The tree's processes keep crust's ids (the host's root,
//!   without a uid in the namespace, but with every capability in it) while they read
//!   the images, which belong to the host's root; the mount tree is built by a helper
//!   that is root of the namespace ([`become_namespace_root`]), so that what it creates
//!   has owners there; the restorer gives every thread its dumped creds last.
//!
//! Invariant: imports no pipeline; the map arithmetic is pure.

use std::fs;
use std::io;
use std::path::Path;

use crust_images::{pb, ImageKind};

/// The uid and gid 65534, what the kernel shows for an id without a mapping.
pub(crate) const OVERFLOW_ID: u32 = 65534;

/// Why the user namespace could not be dumped or restored.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// `what` names the step.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Image(#[from] crust_images::ImageError),
}

fn userns_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> UsernsError {
    let what = what.into();
    move |source| UsernsError::Io { what, source }
}

/// The uid and gid maps of a user namespace, as `userns_entry` holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdMaps {
    pub(crate) uid: Vec<pb::UidGidExtent>,
    pub(crate) gid: Vec<pb::UidGidExtent>,
}

impl IdMaps {
    /// The maps of a `userns_entry`.
    pub(crate) fn from_entry(entry: &pb::UsernsEntry) -> IdMaps {
        IdMaps { uid: entry.uid_map.clone(), gid: entry.gid_map.clone() }
    }

    /// The `userns_entry` of these maps.
    pub(crate) fn entry(&self) -> pb::UsernsEntry {
        pb::UsernsEntry { uid_map: self.uid.clone(), gid_map: self.gid.clone() }
    }

    /// The uid inside the namespace of `outside` (crust's view); 65534 without a
    /// mapping, as the kernel shows it.
    pub(crate) fn uid_inside(&self, outside: u32) -> u32 {
        inside(&self.uid, outside)
    }

    /// The gid inside the namespace of `outside` (crust's view).
    pub(crate) fn gid_inside(&self, outside: u32) -> u32 {
        inside(&self.gid, outside)
    }

    /// Whether uid 0 and gid 0 of the namespace have a mapping (the restored root takes
    /// them before it builds the namespaces it owns).
    pub(crate) fn maps_root(&self) -> bool {
        outside(&self.uid, 0).is_some() && outside(&self.gid, 0).is_some()
    }

    /// `creds` as crust reads them (its view) turned into the namespace's view.
    pub(crate) fn creds_inside(&self, creds: &mut pb::CredsEntry) {
        for uid in [&mut creds.uid, &mut creds.euid, &mut creds.suid, &mut creds.fsuid] {
            *uid = self.uid_inside(*uid);
        }
        for gid in [&mut creds.gid, &mut creds.egid, &mut creds.sgid, &mut creds.fsgid] {
            *gid = self.gid_inside(*gid);
        }
        for gid in &mut creds.groups {
            *gid = self.gid_inside(*gid);
        }
    }

    /// Mount options with `uid=N`/`gid=N` (tmpfs, devpts, ...: the kernel shows them in
    /// the initial namespace's view) turned into the namespace's view. Pure.
    pub(crate) fn options_inside(&self, options: &str) -> String {
        let mapped: Vec<String> = options
            .split(',')
            .map(|option| match option.split_once('=') {
                Some(("uid", value)) => value.parse().map_or(option.to_string(), |id| format!("uid={}", self.uid_inside(id))),
                Some(("gid", value)) => value.parse().map_or(option.to_string(), |id| format!("gid={}", self.gid_inside(id))),
                _ => option.to_string(),
            })
            .collect();
        mapped.join(",")
    }
}

fn inside(map: &[pb::UidGidExtent], outside: u32) -> u32 {
    map.iter()
        .find(|e| outside >= e.lower_first && u64::from(outside) < u64::from(e.lower_first) + u64::from(e.count))
        .map_or(OVERFLOW_ID, |e| e.first + (outside - e.lower_first))
}

fn outside(map: &[pb::UidGidExtent], inside: u32) -> Option<u32> {
    map.iter()
        .find(|e| inside >= e.first && u64::from(inside) < u64::from(e.first) + u64::from(e.count))
        .map(|e| e.lower_first + (inside - e.first))
}

/// Parses `/proc/PID/uid_map` (or `gid_map`): one `first lower_first count` per line.
/// Pure.
pub(crate) fn parse_map(text: &str) -> Result<Vec<pb::UidGidExtent>, String> {
    let mut extents = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let numbers: Vec<u32> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().map_err(|e| format!("{line:?}: {e}"))?;
        let [first, lower_first, count] = numbers[..] else {
            return Err(format!("{line:?}: not three numbers"));
        };
        extents.push(pb::UidGidExtent { first, lower_first, count });
    }
    Ok(extents)
}

/// The text `/proc/PID/uid_map` takes for `map` (written at once, as the kernel wants).
/// Pure.
pub(crate) fn map_text(map: &[pb::UidGidExtent]) -> String {
    map.iter().map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count)).collect()
}

/// Reads the user namespace of `pid` (a stopped task of the tree): its maps, after
/// checking that its parent is crust's own namespace (crust reads the maps in its own
/// view, which must be the parent's). `setgroups` `deny` is warned about.
pub(crate) fn read(pid: i32) -> Result<IdMaps, UsernsError> {
    let ns_path = format!("/proc/{pid}/ns/user");
    let ns = fs::File::open(&ns_path).map_err(userns_io(format!("open {ns_path}")))?;
    let parent = crate::sys::userns::parent_namespace(&ns).map_err(userns_io(format!("find the parent of pid {pid}'s user namespace (NS_GET_PARENT)")))?;
    let own = fs::metadata("/proc/self/ns/user").map_err(userns_io("stat crust's user namespace"))?;
    let parent = parent.metadata().map_err(userns_io("stat the parent user namespace"))?;
    use std::os::unix::fs::MetadataExt;
    if (parent.dev(), parent.ino()) != (own.dev(), own.ino()) {
        return Err(UsernsError::Refused(format!(
            "pid {pid}'s user namespace is nested in another one (its parent is not crust's user namespace): not supported yet"
        )));
    }
    let read_map = |kind: &str| -> Result<Vec<pb::UidGidExtent>, UsernsError> {
        let path = format!("/proc/{pid}/{kind}");
        let text = fs::read_to_string(&path).map_err(userns_io(format!("read {path}")))?;
        parse_map(&text).map_err(|what| UsernsError::Refused(format!("{path}: {what}")))
    };
    let maps = IdMaps { uid: read_map("uid_map")?, gid: read_map("gid_map")? };
    if let Ok(setgroups) = fs::read_to_string(format!("/proc/{pid}/setgroups")) {
        if setgroups.trim() == "deny" {
            log::warn!("pid {pid}'s user namespace has setgroups \"deny\": CRIU's image has no field for it, the restored namespace will allow setgroups");
        }
    }
    Ok(maps)
}

/// Writes `userns-<ns_id>.img`.
pub(crate) fn write(dir: &Path, ns_id: u32, maps: &IdMaps) -> Result<(), UsernsError> {
    crust_images::ImageDir::new(dir).write_single(ImageKind::Userns, u64::from(ns_id), &maps.entry())?;
    Ok(())
}

/// The maps of the tree's own user namespace `ns_id` (`userns-<id>.img`), checked: the
/// restored root must have a uid and a gid 0 in it.
pub(crate) fn read_for_restore(dir: &Path, ns_id: u32) -> Result<IdMaps, UsernsError> {
    let entry: pb::UsernsEntry = crust_images::ImageDir::new(dir).read_single(ImageKind::Userns, u64::from(ns_id))?;
    let maps = IdMaps::from_entry(&entry);
    if maps.uid.is_empty() || maps.gid.is_empty() {
        return Err(UsernsError::Refused(format!("{}: a user namespace without a uid or a gid map", ImageKind::Userns.file_name(u64::from(ns_id)))));
    }
    if !maps.maps_root() {
        return Err(UsernsError::Refused(format!(
            "{}: uid or gid 0 of the namespace has no mapping: not supported yet (the restored root takes them)",
            ImageKind::Userns.file_name(u64::from(ns_id))
        )));
    }
    Ok(maps)
}

/// Gives the user namespace of `pid` (just cloned, waiting) its maps: `uid_map`, then
/// `gid_map` (crust, root of the parent namespace, may write any mapping; `setgroups`
/// stays `allow`).
pub(crate) fn write_maps(pid: i32, maps: &IdMaps) -> Result<(), UsernsError> {
    for (kind, map) in [("uid_map", &maps.uid), ("gid_map", &maps.gid)] {
        let path = format!("/proc/{pid}/{kind}");
        fs::write(&path, map_text(map)).map_err(userns_io(format!("write {path}")))?;
    }
    Ok(())
}

/// Makes the calling process (the restored root, just cloned into the new user
/// namespace, whose maps crust has written) root of the namespace: no supplementary
/// groups, gid and uid 0 of it (until then it has the ids of crust, which have no
/// mapping in the namespace, and could create no file in the filesystems it mounts),
/// dumpable again. Its capabilities in the namespace stay whole.
pub(crate) fn become_namespace_root() -> io::Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let os = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
    setgroups(&[]).map_err(os)?;
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(os)?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(os)?;
    // Changing ids made it non-dumpable (fs.suid_dumpable 0): its /proc/self files would
    // belong to the host's root, which the namespace's cannot write to.
    nix::sys::prctl::set_dumpable(true).map_err(os)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps() -> IdMaps {
        let map = parse_map("         0     100000      65536\n").expect("map");
        IdMaps { uid: map.clone(), gid: map }
    }

    #[test]
    fn ids_are_mapped_into_the_namespace() {
        let maps = maps();
        assert_eq!(maps.uid, vec![pb::UidGidExtent { first: 0, lower_first: 100000, count: 65536 }]);
        assert_eq!((maps.uid_inside(100000), maps.uid_inside(100005), maps.uid_inside(165535)), (0, 5, 65535));
        assert_eq!((maps.uid_inside(0), maps.gid_inside(165536)), (OVERFLOW_ID, OVERFLOW_ID));
        assert!(maps.maps_root());
        assert!(!IdMaps { uid: parse_map("1 100000 10").expect("map"), gid: maps.gid.clone() }.maps_root());
        assert_eq!(maps.options_inside("rw,size=65536k,mode=755,uid=100000,gid=100005"), "rw,size=65536k,mode=755,uid=0,gid=5");
        assert_eq!(maps.options_inside(""), "");
        let mut creds = pb::CredsEntry { uid: 100000, euid: 101000, gid: 100000, groups: vec![100005, 7], ..Default::default() };
        maps.creds_inside(&mut creds);
        assert_eq!((creds.uid, creds.euid, creds.gid, creds.suid, creds.groups), (0, 1000, 0, OVERFLOW_ID, vec![5, OVERFLOW_ID]));
    }

    #[test]
    fn maps_are_written_as_the_kernel_takes_them() {
        let maps = parse_map("0 100000 1\n1 200000 10\n").expect("map");
        assert_eq!(map_text(&maps), "0 100000 1\n1 200000 10\n");
        assert!(parse_map("0 1\n").is_err());
        assert!(parse_map("a b c\n").is_err());
    }
}
