//! What the container flavor records about a container besides the process tree, before
//! every dump and after every restore: its mounts (normalised mountinfo), the links,
//! addresses and routes of its network namespace, the host end of its veth, its host
//! and domain name, the cgroups of each of its processes (from the host and from inside
//! its cgroup namespace), its cgroups' limits and its uid/gid maps. `normalise_mountinfo`
//! is pure; `capture` reads /proc and rtnetlink.

use super::netlink::{Link, Rtnl};
use super::sys::{self, Namespace};
use anyhow::Context;
use netlink_packet_route::link::LinkFlags;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The recorded state of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSnapshot {
    /// [`normalise_mountinfo`] of the init's mountinfo.
    pub mounts: Vec<String>,
    /// Links of the container's network namespace, one line each ([`link_line`]).
    pub links: Vec<String>,
    /// Its addresses ([`super::netlink::address_line`]).
    pub addresses: Vec<String>,
    /// Its routes but the local table's ([`super::netlink::route_line`]).
    pub routes: Vec<String>,
    /// The veth's host end, as a line, or `missing`.
    pub host_end: String,
    /// `uname` node and domain name inside.
    pub uts: (String, String),
    /// Namespace pid to /proc/PID/cgroup as the host sees it.
    pub cgroups: BTreeMap<i32, String>,
    /// The init's /proc/PID/cgroup read from inside its cgroup namespace.
    pub cgroups_inside: String,
    /// `FILE = VALUE` of every limit the harness set on the test's cgroups.
    pub limits: Vec<String>,
    /// The init's uid_map and gid_map.
    pub id_maps: String,
}

/// What [`ContainerSnapshot::capture`] needs to know about the container.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Host pid of the init.
    pub init: i32,
    /// Host pids of every process of the tree, with their namespace pids.
    pub processes: &'a [(i32, i32)],
    /// Name of the veth's host end.
    pub host_end: &'a str,
    /// Limit files of the test's cgroups.
    pub limit_files: &'a [PathBuf],
}

impl ContainerSnapshot {
    /// Records the container of `subject`.
    pub fn capture(subject: &Subject) -> anyhow::Result<ContainerSnapshot> {
        let init = subject.init;
        let mountinfo =
            std::fs::read_to_string(format!("/proc/{init}/mountinfo")).with_context(|| format!("read /proc/{init}/mountinfo"))?;
        let (links, addresses, routes) = sys::in_namespace_of(init, Namespace::Net, || {
            let mut rtnl = Rtnl::open()?;
            let links = rtnl.links()?.iter().map(link_line).collect();
            Ok((links, rtnl.address_lines()?, rtnl.route_lines()?))
        })
        .with_context(|| format!("network of pid {init}"))?;
        let host_end = {
            let mut rtnl = Rtnl::open()?;
            let links = rtnl.links()?;
            match links.iter().find(|link| link.name == subject.host_end) {
                None => "missing".to_string(),
                Some(link) => {
                    let master = link.master.and_then(|index| links.iter().find(|l| l.index == index)).map(|l| l.name.as_str());
                    format!(
                        "{} kind {} master {} {}",
                        link.name,
                        link.kind,
                        master.unwrap_or("-"),
                        if link.flags.contains(LinkFlags::Up) { "up" } else { "down" }
                    )
                }
            }
        };
        let uts = sys::in_namespace_of(init, Namespace::Uts, sys::host_and_domain_name)?;
        let mut cgroups = BTreeMap::new();
        for (host_pid, ns_pid) in subject.processes {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{host_pid}/cgroup")) {
                cgroups.insert(*ns_pid, text);
            }
        }
        let cgroups_inside = sys::in_namespace_of(init, Namespace::Cgroup, || {
            std::fs::read_to_string(format!("/proc/{init}/cgroup")).with_context(|| format!("read /proc/{init}/cgroup"))
        })?;
        let limits = subject
            .limit_files
            .iter()
            .map(|file| {
                let value = std::fs::read_to_string(file).map(|v| v.trim().to_string()).unwrap_or_else(|_| "missing".into());
                format!("{} = {value}", file.display())
            })
            .collect();
        let read_map = |name: &str| std::fs::read_to_string(format!("/proc/{init}/{name}")).unwrap_or_default();
        let id_maps = format!("uid_map {} gid_map {}", squeeze(&read_map("uid_map")), squeeze(&read_map("gid_map")));
        Ok(ContainerSnapshot { mounts: normalise_mountinfo(&mountinfo), links, addresses, routes, host_end, uts, cgroups, cgroups_inside, limits, id_maps })
    }

    /// Human-readable differences, empty when the container came back the same.
    pub fn differences(&self, after: &ContainerSnapshot) -> Vec<String> {
        let mut differences = Vec::new();
        list_differences("mount", &self.mounts, &after.mounts, &mut differences);
        list_differences("link", &self.links, &after.links, &mut differences);
        list_differences("address", &self.addresses, &after.addresses, &mut differences);
        list_differences("route", &self.routes, &after.routes, &mut differences);
        if self.host_end != after.host_end {
            differences.push(format!("veth host end: {} -> {}", self.host_end, after.host_end));
        }
        if self.uts != after.uts {
            differences.push(format!("uts (hostname, domainname): {:?} -> {:?}", self.uts, after.uts));
        }
        for (pid, before) in &self.cgroups {
            match after.cgroups.get(pid) {
                Some(now) if now == before => {}
                Some(now) => differences.push(format!("pid {pid}: cgroups {} -> {}", squeeze(before), squeeze(now))),
                None => differences.push(format!("pid {pid}: cgroups unreadable after restore")),
            }
        }
        if self.cgroups_inside != after.cgroups_inside {
            differences.push(format!(
                "cgroups seen inside the cgroup namespace: {} -> {}",
                squeeze(&self.cgroups_inside),
                squeeze(&after.cgroups_inside)
            ));
        }
        list_differences("cgroup limit", &self.limits, &after.limits, &mut differences);
        if self.id_maps != after.id_maps {
            differences.push(format!("{} -> {}", self.id_maps, after.id_maps));
        }
        differences
    }
}

/// `INDEX NAME kind KIND mtu MTU mac MAC flags FLAGS`: the flags a restore sets (up,
/// broadcast, multicast, noarp, ...), not the ones the kernel derives from the carrier
/// (running, lower_up, dormant).
pub fn link_line(link: &Link) -> String {
    let kept = LinkFlags::Up
        | LinkFlags::Broadcast
        | LinkFlags::Loopback
        | LinkFlags::Pointopoint
        | LinkFlags::Noarp
        | LinkFlags::Promisc
        | LinkFlags::Allmulti
        | LinkFlags::Multicast;
    format!(
        "{} {} kind {} mtu {} mac {} flags {:#x}",
        link.index,
        link.name,
        if link.kind.is_empty() { "-" } else { &link.kind },
        link.mtu,
        link.address,
        (link.flags & kept).bits()
    )
}

/// One line per mount of mountinfo `text`, sorted by mount point: `MOUNTPOINT on
/// PARENT root ROOT FSTYPE SOURCE opts OPTIONS super SUPER [shared:G] [master:G]
/// [unbindable]`. Mount ids and device numbers (new after a restore) are left out;
/// peer groups are renumbered by first appearance in mount point order, a master
/// outside the file is `master:ext`; `propagate_from` (it depends on the reader) is
/// left out.
pub fn normalise_mountinfo(text: &str) -> Vec<String> {
    struct Entry<'a> {
        id: &'a str,
        parent: &'a str,
        root: &'a str,
        mountpoint: &'a str,
        options: &'a str,
        optional: Vec<&'a str>,
        fstype: &'a str,
        source: &'a str,
        super_options: &'a str,
    }
    let mut entries: Vec<Entry> = text
        .lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let mut fields = head.split(' ');
            let id = fields.next()?;
            let parent = fields.next()?;
            let _device = fields.next()?;
            let root = fields.next()?;
            let mountpoint = fields.next()?;
            let options = fields.next()?;
            let optional = fields.collect();
            let mut tail = tail.split(' ');
            Some(Entry {
                id,
                parent,
                root,
                mountpoint,
                options,
                optional,
                fstype: tail.next()?,
                source: tail.next()?,
                super_options: tail.next().unwrap_or(""),
            })
        })
        .collect();
    let mountpoint_of: BTreeMap<&str, &str> = entries.iter().map(|entry| (entry.id, entry.mountpoint)).collect();
    entries.sort_by(|a, b| (a.mountpoint, a.root, a.fstype).cmp(&(b.mountpoint, b.root, b.fstype)));
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for entry in &entries {
        for field in &entry.optional {
            if let Some(group) = field.strip_prefix("shared:") {
                let next = groups.len() + 1;
                groups.entry(group.to_string()).or_insert(next);
            }
        }
    }
    entries
        .iter()
        .map(|entry| {
            let parent = mountpoint_of.get(entry.parent).copied().unwrap_or("-");
            let mut line = format!(
                "{} on {parent} root {} {} {} opts {} super {}",
                entry.mountpoint, entry.root, entry.fstype, entry.source, entry.options, entry.super_options
            );
            for field in &entry.optional {
                if let Some(group) = field.strip_prefix("shared:") {
                    line.push_str(&format!(" shared:{}", groups[group]));
                } else if let Some(group) = field.strip_prefix("master:") {
                    match groups.get(group) {
                        Some(number) => line.push_str(&format!(" master:{number}")),
                        None => line.push_str(" master:ext"),
                    }
                } else if *field == "unbindable" {
                    line.push_str(" unbindable");
                }
            }
            line
        })
        .collect()
}

fn list_differences(what: &str, before: &[String], after: &[String], differences: &mut Vec<String>) {
    for line in before.iter().filter(|line| !after.contains(line)) {
        differences.push(format!("{what} gone: {line}"));
    }
    for line in after.iter().filter(|line| !before.contains(line)) {
        differences.push(format!("{what} new: {line}"));
    }
}

/// Whitespace runs (newlines included) as one space.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container's mountinfo before a dump and after a restore (observed with the
    /// reference CRIU on 2026-12-06): other ids, device numbers and order.
    const BEFORE: &str = "\
67 45 254:0 /w/rootfs / ro,relatime - ext4 /dev/vda rw
68 67 0:41 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
69 68 0:42 / /dev/pts rw,nosuid,noexec,relatime shared:7 - devpts devpts rw,gid=5,mode=620,ptmxmode=666
72 67 0:44 / /proc rw,nosuid,nodev,noexec,relatime master:3 - proc proc rw
76 67 254:0 /w/out /zdtm rw,relatime shared:7 - ext4 /dev/vda rw
";
    const AFTER: &str = "\
113 95 254:0 /w/out /zdtm rw,relatime shared:12 - ext4 /dev/vda rw
95 91 254:0 /w/rootfs / ro,relatime - ext4 /dev/vda rw
105 95 0:49 / /proc rw,nosuid,nodev,noexec,relatime master:9 propagate_from:9 - proc proc rw
97 95 0:46 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
99 97 0:47 / /dev/pts rw,nosuid,noexec,relatime shared:12 - devpts devpts rw,gid=5,mode=620,ptmxmode=666
";

    #[test]
    fn mountinfo_compares_without_ids_devices_and_order() {
        let before = normalise_mountinfo(BEFORE);
        assert_eq!(before, normalise_mountinfo(AFTER));
        assert_eq!(
            before,
            vec![
                "/ on - root /w/rootfs ext4 /dev/vda opts ro,relatime super rw",
                "/dev on / root / tmpfs tmpfs opts rw,nosuid super rw,size=65536k,mode=755",
                "/dev/pts on /dev root / devpts devpts opts rw,nosuid,noexec,relatime super rw,gid=5,mode=620,ptmxmode=666 shared:1",
                "/proc on / root / proc proc opts rw,nosuid,nodev,noexec,relatime super rw master:ext",
                "/zdtm on / root /w/out ext4 /dev/vda opts rw,relatime super rw shared:1",
            ]
        );
        let lost_nosuid = BEFORE.replace("/dev rw,nosuid -", "/dev rw -");
        assert_ne!(normalise_mountinfo(&lost_nosuid), before);
    }

    #[test]
    fn differences_name_what_changed() {
        let snapshot = ContainerSnapshot {
            mounts: normalise_mountinfo(BEFORE),
            links: vec!["1 lo kind - mtu 65536 mac 00:00:00:00:00:00 flags 0x9".into()],
            addresses: vec![],
            routes: vec!["Inet table 254 default/0 via 198.18.0.1 dev eth0".into()],
            host_end: "zdtm0v1 kind veth master zdtmbr0 up".into(),
            uts: ("zdtm-x".into(), "(none)".into()),
            cgroups: [(1, "0::/a\n".to_string())].into(),
            cgroups_inside: "0::/\n".into(),
            limits: vec!["/sys/fs/cgroup/pids/a/pids.max = 4096".into()],
            id_maps: "uid_map 0 0 4294967295 gid_map 0 0 4294967295".into(),
        };
        assert!(snapshot.differences(&snapshot.clone()).is_empty());
        let mut after = snapshot.clone();
        after.routes.clear();
        after.uts.0 = "other".into();
        after.cgroups.insert(1, "0::/b\n".into());
        after.limits[0] = "/sys/fs/cgroup/pids/a/pids.max = max".into();
        assert_eq!(
            snapshot.differences(&after),
            vec![
                "route gone: Inet table 254 default/0 via 198.18.0.1 dev eth0".to_string(),
                "uts (hostname, domainname): (\"zdtm-x\", \"(none)\") -> (\"other\", \"(none)\")".to_string(),
                "pid 1: cgroups 0::/a -> 0::/b".to_string(),
                "cgroup limit gone: /sys/fs/cgroup/pids/a/pids.max = 4096".to_string(),
                "cgroup limit new: /sys/fs/cgroup/pids/a/pids.max = max".to_string(),
            ]
        );
    }
}
