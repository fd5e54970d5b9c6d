//! What a test may leave behind, which the harness looks for after every test: processes
//! (anything still under the harness, which is their subreaper, running a program from
//! the run's `bin/`, or, in the container flavors, in one of the test's namespaces), the
//! nftables tables that lock the test's TCP connections (`inet CRIU-<run id>`, named as
//! CRIU names a dump's lock after the dump's `inventory.dump_criu_run_id`, whichever tool
//! dumped; `crust_tcp_INODE` of older crust, INODE a socket the test held at a dump),
//! mounts under the test's directory (and the container rootfs), and in the container
//! flavors network links (the test's veth) and cgroups. The harness removes each one and
//! fails the test that left it.
//!
//! The parsers (`nft list tables`, inventory.img's run id, mountinfo) are pure; the
//! finders read /proc.
//!
//! Unsafe here: `umount2`. Guarantee: called with a NUL-terminated path that lives for
//! the call and `MNT_DETACH` only.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A process left running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayProcess {
    /// Host pid.
    pub pid: i32,
    /// `comm`.
    pub name: String,
    /// `/proc/PID/exe`, when readable.
    pub exe: Option<PathBuf>,
}

/// An nftables table, as `nft list tables` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NftTable {
    /// `ip`, `ip6`, `inet`, ...
    pub family: String,
    /// Table name.
    pub name: String,
}

/// Everything a test left, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Processes still running.
    pub processes: Vec<StrayProcess>,
    /// crust's lock tables for the test's connections.
    pub tables: Vec<NftTable>,
    /// Mount points under the test's directory.
    pub mounts: Vec<PathBuf>,
    /// Network links of the host (a container's veth, a bridge), by name.
    pub links: Vec<String>,
    /// cgroup directories.
    pub cgroups: Vec<PathBuf>,
}

impl Leftovers {
    /// Nothing was left.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.tables.is_empty() && self.mounts.is_empty() && self.links.is_empty() && self.cgroups.is_empty()
    }

    /// Adds what `other` found, leaving out what is already listed.
    pub fn merge(&mut self, other: Leftovers) {
        for process in other.processes {
            if !self.processes.iter().any(|known| known.pid == process.pid) {
                self.processes.push(process);
            }
        }
        for table in other.tables {
            if !self.tables.contains(&table) {
                self.tables.push(table);
            }
        }
        for mount in other.mounts {
            if !self.mounts.contains(&mount) {
                self.mounts.push(mount);
            }
        }
        for link in other.links {
            if !self.links.contains(&link) {
                self.links.push(link);
            }
        }
        for cgroup in other.cgroups {
            if !self.cgroups.contains(&cgroup) {
                self.cgroups.push(cgroup);
            }
        }
    }

    /// `left behind: pid 12 (tcp_established, /x/bin/c-tests/tcp_established); nftables
    /// table ip crust_tcp_77; mount /x/t/m` (removed since).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .processes
            .iter()
            .map(|p| match &p.exe {
                Some(exe) => format!("pid {} ({}, {})", p.pid, p.name, exe.display()),
                None => format!("pid {} ({})", p.pid, p.name),
            })
            .collect();
        parts.extend(self.tables.iter().map(|t| format!("nftables table {} {}", t.family, t.name)));
        parts.extend(self.mounts.iter().map(|m| format!("mount {}", m.display())));
        parts.extend(self.links.iter().map(|l| format!("link {l}")));
        parts.extend(self.cgroups.iter().map(|c| format!("cgroup {}", c.display())));
        format!("left behind (removed since): {}", parts.join("; "))
    }
}

/// The processes under `harness` (its descendants, itself excluded) and those running an
/// executable from `bin_dir`, except the pids in `expected` and zombies.
pub fn stray_processes(harness: i32, bin_dir: &Path, expected: &[i32]) -> Vec<StrayProcess> {
    let mut pids: BTreeSet<i32> = crate::tree::descendants(harness).into_iter().filter(|&pid| pid != harness).collect();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            if pid != harness && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(bin_dir)) {
                pids.insert(pid);
            }
        }
    }
    pids.into_iter()
        .filter(|pid| !expected.contains(pid))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(').map(|(_, comm)| comm.to_string()).unwrap_or_default();
            let state = rest.split_whitespace().next().unwrap_or("");
            // A zombie is dead already: the reaper (or its parent) collects it.
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(1);
            if state == "Z" && threads <= 1 {
                return None;
            }
            Some(StrayProcess { pid, name, exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok() })
        })
        .collect()
}

/// The socket inodes the processes `pids` hold open (`/proc/PID/fd/N -> socket:[INODE]`).
pub fn socket_inodes(pids: &[i32]) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.filter_map(|e| e.ok()) {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if let Some(inode) = socket_inode(&target.to_string_lossy()) {
                    inodes.insert(inode);
                }
            }
        }
    }
    inodes
}

/// INODE of an fd link `socket:[INODE]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The tables of `nft list tables` output (`table ip crust_tcp_4711`, one a line).
pub fn parse_tables(text: &str) -> Vec<NftTable> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "table").then_some(())?;
            let family = words.next()?.to_string();
            let name = words.next()?.to_string();
            Some(NftTable { family, name })
        })
        .collect()
}

/// The socket inode whose connection a crust lock table `crust_tcp_INODE` drops.
pub fn locked_socket(table: &NftTable) -> Option<u64> {
    table.name.strip_prefix("crust_tcp_")?.parse().ok()
}

/// The lock tables among `tables`: crust's older ones that lock one of `sockets`, and
/// the inet tables named in `lock_tables` (the test's dumps').
pub fn tables_of(tables: &[NftTable], sockets: &BTreeSet<u64>, lock_tables: &BTreeSet<String>) -> Vec<NftTable> {
    tables
        .iter()
        .filter(|t| locked_socket(t).is_some_and(|inode| sockets.contains(&inode)) || (t.family == "inet" && lock_tables.contains(&t.name)))
        .cloned()
        .collect()
}

/// The lock table of dump `run_id`, as CRIU names it: `CRIU-` and the run id's first 21
/// characters.
pub fn lock_table_of_run(run_id: &str) -> String {
    format!("CRIU-{}", run_id.chars().take(21).collect::<String>())
}

/// `dump_criu_run_id` (field 13) of inventory.img's bytes: its magic (CRIU's common
/// magic before it in other tools' images), the entry's size (u32), the entry.
/// `None` when the image has none or is not one.
pub fn run_id_of_inventory(bytes: &[u8]) -> Option<String> {
    const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
    const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
    let word = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let mut at = if matches!(word(0)?, IMG_COMMON_MAGIC | IMG_SERVICE_MAGIC) { 8 } else { 4 };
    let size = word(at)? as usize;
    at += 4;
    let mut entry = bytes.get(at..at.checked_add(size)?)?;
    fn varint(input: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    while !entry.is_empty() {
        let key = varint(&mut entry)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut entry)?;
                0
            }
            1 => 8,
            2 => {
                let len = varint(&mut entry)? as usize;
                if key >> 3 == 13 {
                    return String::from_utf8(entry.get(..len)?.to_vec()).ok();
                }
                len
            }
            5 => 4,
            _ => return None,
        };
        entry = entry.get(skip..)?;
    }
    None
}

/// Mount points at or under `dir` in /proc/PID/mountinfo text, deepest first (the order
/// they can be unmounted in).
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' && index + 3 < bytes.len() && bytes[index + 1..index + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let digit = |at: usize| u32::from(bytes[at] - b'0');
            let value = digit(index + 1) * 64 + digit(index + 2) * 8 + digit(index + 3);
            out.push(u8::try_from(value).unwrap_or(b'?'));
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The harness's own mount points under `dir`.
pub fn own_mounts_under(dir: &Path) -> Vec<PathBuf> {
    mounts_under(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(), dir)
}

/// `umount2(path, MNT_DETACH)`.
#[doc(alias = "umount2")]
pub fn detach_mount(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: c_path is NUL-terminated and outlives the call; no other memory is passed.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crust_lock_tables_are_told_by_their_socket() {
        let listing = "table inet filter\ntable ip crust_tcp_4711\ntable ip6 crust_tcp_99\ntable ip crust_tcp_x\n";
        let tables = parse_tables(listing);
        assert_eq!(tables.len(), 4);
        assert_eq!(tables[1], NftTable { family: "ip".into(), name: "crust_tcp_4711".into() });
        assert_eq!(locked_socket(&tables[1]), Some(4711));
        assert_eq!(locked_socket(&tables[0]), None);
        assert_eq!(locked_socket(&tables[3]), None);
        let ours: BTreeSet<u64> = [99, 5].into();
        assert_eq!(tables_of(&tables, &ours, &BTreeSet::new()), vec![tables[2].clone()]);
        let listing = "table inet CRIU-a6f832d8-fea2-41e3-91\ntable ip CRIU-a6f832d8-fea2-41e3-91\ntable inet CRIU-other\n";
        let tables = parse_tables(listing);
        let runs: BTreeSet<String> = [lock_table_of_run("a6f832d8-fea2-41e3-91a2-c84fb3431983")].into();
        assert_eq!(tables_of(&tables, &BTreeSet::new(), &runs), vec![tables[0].clone()]);
        assert_eq!(socket_inode("socket:[4711]"), Some(4711));
        assert_eq!(socket_inode("pipe:[4711]"), None);
    }

    #[test]
    fn the_run_id_is_read_from_inventory_img() {
        // INVENTORY magic, the entry's size, then img_version 2 (field 1), root_ids
        // (field 5, a nested message), network_lock_method 1 (field 11), the run id
        // (field 13).
        let run_id = b"a6f832d8-fea2-41e3-91a2-c84fb3431983";
        let mut entry = vec![0x08, 2, 0x2a, 2, 0x08, 1, 0x58, 1, 0x6a, run_id.len() as u8];
        entry.extend_from_slice(run_id);
        let mut image = 0x5831_3116u32.to_le_bytes().to_vec();
        image.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        image.extend_from_slice(&entry);
        assert_eq!(run_id_of_inventory(&image).as_deref(), Some("a6f832d8-fea2-41e3-91a2-c84fb3431983"));
        assert_eq!(lock_table_of_run("a6f832d8-fea2-41e3-91a2-c84fb3431983"), "CRIU-a6f832d8-fea2-41e3-91");
        assert_eq!(run_id_of_inventory(&image[..image.len() - 3]), None, "truncated");
        let without = [&image[..4], &4u32.to_le_bytes(), &[0x08, 2, 0x58, 1][..]].concat();
        assert_eq!(run_id_of_inventory(&without), None);
    }

    #[test]
    fn mounts_under_a_directory_deepest_first() {
        let mountinfo = "\
22 1 8:1 / / rw shared:1 - ext4 /dev/vda rw
40 22 0:5 / /w/zdtm/t rw - tmpfs tmpfs rw
41 40 0:6 / /w/zdtm/t/a\\040b rw - tmpfs tmpfs rw
42 22 0:7 / /w/zdtm/tt rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounts_under(mountinfo, Path::new("/w/zdtm/t")),
            vec![PathBuf::from("/w/zdtm/t/a b"), PathBuf::from("/w/zdtm/t")]
        );
        assert!(mounts_under(mountinfo, Path::new("/w/other")).is_empty());
    }

    #[test]
    fn leftovers_are_described_in_one_line() {
        let leftovers = Leftovers {
            processes: vec![StrayProcess { pid: 12, name: "peer".into(), exe: Some("/b/peer".into()) }],
            tables: vec![NftTable { family: "ip".into(), name: "crust_tcp_7".into() }],
            mounts: vec![PathBuf::from("/w/t/m")],
            links: vec!["zdtm0v3".into()],
            cgroups: vec![PathBuf::from("/sys/fs/cgroup/pids/crust-zdtm-0/x")],
        };
        assert!(!leftovers.is_empty());
        assert_eq!(
            leftovers.describe(),
            "left behind (removed since): pid 12 (peer, /b/peer); nftables table ip crust_tcp_7; mount /w/t/m; \
             link zdtm0v3; cgroup /sys/fs/cgroup/pids/crust-zdtm-0/x"
        );
        assert!(Leftovers::default().is_empty());
        let mut merged = Leftovers { links: vec!["a".into()], ..Leftovers::default() };
        merged.merge(Leftovers { links: vec!["a".into(), "b".into()], cgroups: vec![PathBuf::from("/c")], ..Leftovers::default() });
        assert_eq!(merged.links, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(merged.cgroups, vec![PathBuf::from("/c")]);
    }
}
