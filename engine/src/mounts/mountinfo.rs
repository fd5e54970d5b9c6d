//! The pure parser of /proc/PID/mountinfo, and the MS_* flags of a mount as CRIU's
//! `mnt_entry` keeps them. No I/O: unit-tested on fixtures (`fixtures/`).
//!
//! A line (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE
//! SOURCE SUPER_OPTIONS`. ROOT, MOUNTPOINT and SOURCE have space, tab, newline and
//! backslash escaped as `\ooo` octal. The file order is the namespace's mount order;
//! ids are reused, so they say nothing about order.

use crate::procfs::ParseError;

/// One mount of a mountinfo file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub(crate) id: u32,
    pub(crate) parent: u32,
    pub(crate) major: u32,
    pub(crate) minor: u32,
    /// The directory of the filesystem that is the mount's root (decoded). A bind of a
    /// deleted directory or file ends in `//deleted`.
    pub(crate) root: String,
    /// Where it is mounted, as the reader's root sees it (decoded).
    pub(crate) mountpoint: String,
    /// The per-mount options (`rw,nosuid,relatime`).
    pub(crate) mount_options: String,
    /// `shared:N`: the peer group.
    pub(crate) shared: Option<u32>,
    /// `master:N`: the peer group it receives from.
    pub(crate) master: Option<u32>,
    /// `propagate_from:N`.
    pub(crate) propagate_from: Option<u32>,
    pub(crate) unbindable: bool,
    /// The filesystem type without its subtype (`fuse` of `fuse.sshfs`).
    pub(crate) fstype: String,
    /// The subtype (`sshfs` of `fuse.sshfs`), if any.
    pub(crate) subtype: Option<String>,
    /// The mount source (decoded), `none` when the kernel has none.
    pub(crate) source: String,
    /// The superblock's options (`rw,size=65536k,mode=755`).
    pub(crate) super_options: String,
}

impl MountInfo {
    /// The superblock's device as CRIU's `root_dev` holds it (`major << 20 | minor`,
    /// the kernel's encoding).
    pub(crate) fn device(&self) -> u32 {
        (self.major << 20) | self.minor
    }

    /// The per-mount MS_* flags (`mnt_entry.flags`): ro, nosuid, nodev, noexec and
    /// the atime mode. A mount shown without `relatime` or `noatime` is strictatime.
    pub(crate) fn flags(&self) -> u32 {
        let mut flags = 0;
        for option in self.mount_options.split(',') {
            flags |= match option {
                "ro" => MS_RDONLY,
                "nosuid" => MS_NOSUID,
                "nodev" => MS_NODEV,
                "noexec" => MS_NOEXEC,
                "noatime" => MS_NOATIME,
                "nodiratime" => MS_NODIRATIME,
                "relatime" => MS_RELATIME,
                _ => 0,
            };
        }
        if flags & (MS_NOATIME | MS_RELATIME) == 0 {
            flags |= MS_STRICTATIME;
        }
        if self.unbindable {
            flags |= MS_UNBINDABLE;
        }
        flags
    }

    /// The superblock's MS_* flags (`mnt_entry.sb_flags`) and its other options, the
    /// way CRIU splits them: `ro`, `sync`, `dirsync`, `mand` and `lazytime` are flags,
    /// `rw` is dropped, the rest stays text in the kernel's order.
    pub(crate) fn super_flags_and_options(&self) -> (u32, String) {
        let mut flags = 0;
        let mut rest = Vec::new();
        for option in self.super_options.split(',').filter(|o| !o.is_empty()) {
            match option {
                "ro" => flags |= MS_RDONLY,
                "rw" => {}
                "sync" => flags |= MS_SYNCHRONOUS,
                "dirsync" => flags |= MS_DIRSYNC,
                "mand" => flags |= MS_MANDLOCK,
                "lazytime" => flags |= MS_LAZYTIME,
                other => rest.push(other),
            }
        }
        (flags, rest.join(","))
    }

    /// Whether the mount's root was deleted (`//deleted`), and the root without it.
    pub(crate) fn deleted_root(&self) -> Option<&str> {
        self.root.strip_suffix("//deleted")
    }
}

/// MS_* flags as `mnt_entry.flags` and `sb_flags` hold them (linux/mount.h).
pub(crate) const MS_RDONLY: u32 = 0x1;
pub(crate) const MS_NOSUID: u32 = 0x2;
pub(crate) const MS_NODEV: u32 = 0x4;
pub(crate) const MS_NOEXEC: u32 = 0x8;
pub(crate) const MS_SYNCHRONOUS: u32 = 0x10;
pub(crate) const MS_MANDLOCK: u32 = 0x40;
pub(crate) const MS_DIRSYNC: u32 = 0x80;
pub(crate) const MS_NOATIME: u32 = 0x400;
pub(crate) const MS_NODIRATIME: u32 = 0x800;
/// Kept in `mnt_entry.flags` for a mount shown `unbindable`.
pub(crate) const MS_UNBINDABLE: u32 = 0x2_0000;
pub(crate) const MS_RELATIME: u32 = 0x20_0000;
pub(crate) const MS_STRICTATIME: u32 = 0x100_0000;
pub(crate) const MS_LAZYTIME: u32 = 0x200_0000;

/// Parses a whole mountinfo file, keeping its order.
pub(crate) fn parse(text: &str) -> Result<Vec<MountInfo>, ParseError> {
    text.lines().enumerate().filter(|(_, l)| !l.is_empty()).map(|(n, l)| parse_line(l, n + 1)).collect()
}

fn parse_line(text: &str, line: usize) -> Result<MountInfo, ParseError> {
    let bad = |reason: String| ParseError { what: "mountinfo", line, reason };
    let (head, tail) = text.split_once(" - ").ok_or_else(|| bad("no ' - ' separator".into()))?;
    let mut fields = head.split(' ');
    let mut next = |name: &str| fields.next().filter(|f| !f.is_empty()).ok_or_else(|| bad(format!("no {name}")));
    let number = |text: &str, name: &str| text.parse::<u32>().map_err(|_| bad(format!("bad {name} {text:?}")));
    let id = number(next("mount id")?, "mount id")?;
    let parent = number(next("parent id")?, "parent id")?;
    let device = next("major:minor")?;
    let (major, minor) = device.split_once(':').ok_or_else(|| bad(format!("bad major:minor {device:?}")))?;
    let (major, minor) = (number(major, "major")?, number(minor, "minor")?);
    let root = unescape(next("root")?, line)?;
    let mountpoint = unescape(next("mount point")?, line)?;
    let mount_options = next("mount options")?.to_string();
    let (mut shared, mut master, mut propagate_from, mut unbindable) = (None, None, None, false);
    for optional in fields {
        let group = |value: &str| number(value, optional);
        match optional.split_once(':') {
            Some(("shared", value)) => shared = Some(group(value)?),
            Some(("master", value)) => master = Some(group(value)?),
            Some(("propagate_from", value)) => propagate_from = Some(group(value)?),
            None if optional == "unbindable" => unbindable = true,
            // Fields a later kernel may add are skipped, as proc(5) asks.
            _ => {}
        }
    }
    let mut tail = tail.splitn(3, ' ');
    let fstype = tail.next().filter(|f| !f.is_empty()).ok_or_else(|| bad("no filesystem type".into()))?;
    let source = unescape(tail.next().ok_or_else(|| bad("no source".into()))?, line)?;
    let super_options = tail.next().ok_or_else(|| bad("no super options".into()))?.to_string();
    let (fstype, subtype) = match fstype.split_once('.') {
        Some((fstype, subtype)) => (fstype.to_string(), Some(subtype.to_string())),
        None => (fstype.to_string(), None),
    };
    Ok(MountInfo {
        id,
        parent,
        major,
        minor,
        root,
        mountpoint,
        mount_options,
        shared,
        master,
        propagate_from,
        unbindable,
        fstype,
        subtype,
        source,
        super_options,
    })
}

/// Decodes the kernel's `\ooo` escapes (seq_file's `mangle_path`).
fn unescape(text: &str, line: usize) -> Result<String, ParseError> {
    let bad = |reason: String| ParseError { what: "mountinfo", line, reason };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'\\' {
            let digits = bytes.get(at + 1..at + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
            let Some(digits) = digits else { return Err(bad(format!("bad escape in {text:?}"))) };
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).map_err(|_| bad(format!("bad escape in {text:?}")))?);
            at += 4;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("{text:?} is not UTF-8")))
}

/// `path` with the kernel's escapes (space, tab, newline, backslash), for messages
/// that quote a mountinfo line.
#[cfg(test)]
fn escape(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runc_container_parses_in_file_order() {
        let mounts = parse(include_str!("fixtures/runc-container.mountinfo")).expect("parse");
        assert_eq!(mounts.len(), 28);
        // Order is the file's: the masked paths (ids 47..54) come after 87.
        let ids: Vec<u32> = mounts.iter().map(|m| m.id).collect();
        assert_eq!(&ids[..3], &[68, 69, 70]);
        assert_eq!(&ids[19..], &[87, 47, 48, 49, 50, 51, 52, 53, 54]);
        let root = &mounts[0];
        assert_eq!((root.id, root.parent, root.major, root.minor), (68, 46, 254, 0));
        assert_eq!(root.root, "/work/research/containers/b1/rootfs");
        assert_eq!(root.mountpoint, "/");
        assert_eq!(root.fstype, "ext4");
        assert_eq!(root.device(), 0x0fe0_0000);
        assert_eq!(root.flags(), MS_RELATIME);
        let (sb_flags, options) = root.super_flags_and_options();
        assert_eq!(sb_flags, 0);
        assert_eq!(options, "discard,no_prefetch_block_bitmaps,resv_strict,resuid=65534,resgid=65534");
        // The flags CRIU wrote for the same mounts (decoded/runc-dump/mountpoints-13).
        let flags = |id: u32| mounts.iter().find(|m| m.id == id).expect("mount").flags();
        assert_eq!(flags(70), 0x100_0002, "/dev: strictatime, nosuid");
        assert_eq!(flags(71), 0x20_000a);
        assert_eq!(flags(74), 0x20_000f);
        assert_eq!(flags(86), 0x20_0001, "/etc/bound: read-only bind");
        let sysfs = mounts.iter().find(|m| m.id == 74).expect("sysfs");
        assert_eq!(sysfs.super_flags_and_options(), (MS_RDONLY, String::new()));
        let dev = mounts.iter().find(|m| m.id == 70).expect("dev");
        assert_eq!(dev.super_flags_and_options().1, "size=65536k,mode=755");
        assert_eq!(dev.device(), 42);
    }

    #[test]
    fn optional_fields_and_subtypes() {
        let text = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 propagate_from:2 - ext3 /dev/root rw,errors=continue\n\
                    40 36 0:50 / /mnt2/x rw unbindable - fuse.sshfs me@host:/dir rw,user_id=0\n";
        let mounts = parse(text).expect("parse");
        assert_eq!((mounts[0].shared, mounts[0].master, mounts[0].propagate_from), (Some(7), Some(1), Some(2)));
        assert!(!mounts[0].unbindable);
        assert_eq!(mounts[0].flags(), MS_NOATIME);
        assert!(mounts[1].unbindable);
        assert_eq!((mounts[1].fstype.as_str(), mounts[1].subtype.as_deref()), ("fuse", Some("sshfs")));
        assert_eq!(mounts[1].source, "me@host:/dir");
        assert_eq!(mounts[1].flags(), MS_STRICTATIME | MS_UNBINDABLE);
    }

    #[test]
    fn escapes_are_decoded_and_deleted_roots_seen() {
        let path = "/a dir\\with\ttab\nand newline";
        let text = format!("50 40 0:5 {}//deleted {} rw,relatime - tmpfs tmp\\040fs rw\n", escape(path), escape("/mnt/x y"));
        let mount = &parse(&text).expect("parse")[0];
        assert_eq!(mount.deleted_root(), Some(path));
        assert_eq!(mount.mountpoint, "/mnt/x y");
        assert_eq!(mount.source, "tmp fs");
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, reason) in [
            ("1 2 3:4 / / rw ext4 /dev/x rw", "no ' - ' separator"),
            ("1 x 3:4 / / rw - ext4 /dev/x rw", "bad parent id \"x\""),
            ("1 2 34 / / rw - ext4 /dev/x rw", "bad major:minor \"34\""),
            ("1 2 3:4 /\\09 / rw - ext4 /dev/x rw", "bad escape in \"/\\\\09\""),
            ("1 2 3:4 / / rw - ext4", "no source"),
            ("1 2 3:4 / / - ext4 /dev/x rw", "no mount options"),
        ] {
            let error = parse(text).expect_err(text);
            assert_eq!((error.line, error.reason.as_str()), (1, reason), "{text}");
        }
    }

    #[test]
    fn hosts_mountinfo_parses() {
        let mounts = parse(include_str!("fixtures/host.mountinfo")).expect("parse");
        let root = mounts.iter().find(|m| m.mountpoint == "/").expect("a root");
        assert_eq!((root.fstype.as_str(), root.root.as_str()), ("ext4", "/"));
    }
}
