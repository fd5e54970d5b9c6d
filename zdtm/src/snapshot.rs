//! What the harness records about a test process before a dump and compares after the
//! restore: VMAs (with VmFlags), the parts of `status` a restore must keep, personality,
//! open fds with position and flags, cwd, root and exe.

use crate::procfs::{self, FdInfo};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The recorded state of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSnapshot {
    /// Normalised maps lines, one per VMA, each followed by its VmFlags.
    pub vmas: Vec<String>,
    /// Selected `status` fields (`procfs::STATUS_KEYS_KEPT`).
    pub status: BTreeMap<String, String>,
    /// fd number to (link target, fdinfo).
    pub fds: BTreeMap<i32, (String, FdInfo)>,
    /// `cwd`, `root`, `exe` link targets.
    pub links: BTreeMap<&'static str, String>,
}

/// A file under /proc/PID named by the pid the process has in its own pid namespace
/// (NSpid's last field): in the ns flavor the restored tree gets new host pids, and the
/// harness's /proc numbers them so.
fn proc_file_in_tree_numbers(target: String) -> String {
    let Some(rest) = target.strip_prefix("/proc/") else { return target };
    let end = rest.find('/').unwrap_or(rest.len());
    let Ok(host_pid) = rest[..end].parse::<i32>() else { return target };
    let own = std::fs::read_to_string(format!("/proc/{host_pid}/status"))
        .ok()
        .and_then(|status| procfs::parse_key_values(&status).get("NSpid").and_then(|v| v.split_whitespace().last().map(str::to_string)));
    match own {
        Some(own) => format!("/proc/[{own}]{}", &rest[end..]),
        None => target,
    }
}

impl ProcSnapshot {
    /// Reads `/proc/PID/{maps,smaps,status,fd,fdinfo,cwd,root,exe}`.
    pub fn capture(pid: i32) -> anyhow::Result<Self> {
        // A process whose leader thread exited shows its memory and files only under its
        // live threads: read those of the first one (/proc/TID works for any thread).
        let leader_state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()));
        let live_thread = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&tid| tid != pid)
            .min();
        let leader_gone = leader_state == Some('Z') && live_thread.is_some();
        let proc_dir = match live_thread {
            Some(tid) if leader_gone => PathBuf::from(format!("/proc/{tid}")),
            _ => PathBuf::from(format!("/proc/{pid}")),
        };
        let read = |name: &str| {
            std::fs::read_to_string(proc_dir.join(name))
                .with_context(|| format!("read /proc/{pid}/{name}"))
        };
        let maps = procfs::parse_maps(&read("maps")?)?;
        let vmflags = procfs::parse_smaps_vmflags(&read("smaps")?)?;
        let with_flags = maps.into_iter().map(|entry| {
            let flags = vmflags.get(&entry.start).cloned().unwrap_or_default();
            (entry, flags)
        });
        let vmas = procfs::merge_adjacent(with_flags.collect())
            .iter()
            .map(|(entry, flags)| {
                format!(
                    "{} [{}]",
                    procfs::normalised_maps_line(entry),
                    flags.join(" ")
                )
            })
            .collect();

        let all_status = procfs::parse_key_values(&read("status")?);
        let mut status: BTreeMap<String, String> = procfs::STATUS_KEYS_KEPT
            .iter()
            .filter_map(|key| {
                all_status
                    .get(*key)
                    .map(|value| (key.to_string(), value.clone()))
            })
            .collect();
        if leader_gone {
            status.insert("leader thread".to_string(), "exited".to_string());
        }
        // Not in `status`, but as much a part of the task: /proc/PID/personality.
        if let Ok(personality) = read("personality") {
            status.insert("personality".to_string(), personality.trim().to_string());
        }

        let mut fds = BTreeMap::new();
        let fd_dir = proc_dir.join("fd");
        for dir_entry in
            std::fs::read_dir(&fd_dir).with_context(|| format!("list {}", fd_dir.display()))?
        {
            let dir_entry = dir_entry.with_context(|| format!("list {}", fd_dir.display()))?;
            let Some(fd) = dir_entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            let target = std::fs::read_link(dir_entry.path())
                .with_context(|| format!("readlink /proc/{pid}/fd/{fd}"))?
                .to_string_lossy()
                .into_owned();
            // A restored pipe or socket is a new object: its inode number differs.
            let target = match target.split_once(":[") {
                Some((kind @ ("pipe" | "socket"), _)) => format!("{kind}:[]"),
                _ => proc_file_in_tree_numbers(target),
            };
            let fdinfo = procfs::parse_fdinfo(&read(&format!("fdinfo/{fd}"))?)?;
            fds.insert(fd, (target, fdinfo));
        }

        let mut links = BTreeMap::new();
        for name in ["cwd", "root", "exe"] {
            let target = std::fs::read_link(proc_dir.join(name))
                .with_context(|| format!("readlink /proc/{pid}/{name}"))?;
            links.insert(name, target.to_string_lossy().into_owned());
        }
        Ok(ProcSnapshot {
            vmas,
            status,
            fds,
            links,
        })
    }

    /// Human-readable differences between `self` (before dump) and `after` (restored);
    /// empty when the restore kept everything the harness checks.
    pub fn differences(&self, after: &ProcSnapshot) -> Vec<String> {
        let mut differences = Vec::new();
        diff_lists("vma", &self.vmas, &after.vmas, &mut differences);
        for (key, before_value) in &self.status {
            match after.status.get(key) {
                Some(after_value) if after_value == before_value => {}
                Some(after_value) => {
                    differences.push(format!("status {key}: {before_value} -> {after_value}"))
                }
                None => differences.push(format!("status {key}: {before_value} -> missing")),
            }
        }
        for (fd, before_fd) in &self.fds {
            match after.fds.get(fd) {
                Some(after_fd) if after_fd == before_fd => {}
                Some(after_fd) => differences.push(format!(
                    "fd {fd}: {} pos {} flags {} -> {} pos {} flags {}",
                    before_fd.0,
                    before_fd.1.pos,
                    before_fd.1.flags,
                    after_fd.0,
                    after_fd.1.pos,
                    after_fd.1.flags
                )),
                None => differences.push(format!("fd {fd}: {} -> missing", before_fd.0)),
            }
        }
        for (fd, after_fd) in &after.fds {
            if !self.fds.contains_key(fd) {
                differences.push(format!("fd {fd}: missing -> {}", after_fd.0));
            }
        }
        for (name, before_target) in &self.links {
            let after_target = after
                .links
                .get(name)
                .map(String::as_str)
                .unwrap_or("missing");
            if before_target != after_target {
                differences.push(format!("{name}: {before_target} -> {after_target}"));
            }
        }
        differences
    }
}

/// Line diff of two ordered lists: reports lines only before (`-`) or only after (`+`).
fn diff_lists(what: &str, before: &[String], after: &[String], differences: &mut Vec<String>) {
    let after_set: std::collections::BTreeSet<&String> = after.iter().collect();
    let before_set: std::collections::BTreeSet<&String> = before.iter().collect();
    for line in before.iter().filter(|line| !after_set.contains(line)) {
        differences.push(format!("{what} - {line}"));
    }
    for line in after.iter().filter(|line| !before_set.contains(line)) {
        differences.push(format!("{what} + {line}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(vmas: &[&str], sigblk: &str, pos: u64) -> ProcSnapshot {
        ProcSnapshot {
            vmas: vmas.iter().map(|line| line.to_string()).collect(),
            status: [("SigBlk".to_string(), sigblk.to_string())]
                .into_iter()
                .collect(),
            fds: [(
                3,
                (
                    "/tmp/f".to_string(),
                    FdInfo {
                        pos,
                        flags: "02".into(),
                    },
                ),
            )]
            .into_iter()
            .collect(),
            links: [("cwd", "/tmp".to_string())].into_iter().collect(),
        }
    }

    #[test]
    fn a_sleeping_process_reads_the_same_twice() {
        // Its stdio on /dev/null: an inherited log file would move under it as other
        // tests write (CI's output is a file).
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        // Wait until it sleeps in (clock_)nanosleep, so ld.so is done mapping libraries.
        let asleep = |syscall: String| matches!(syscall.split(' ').next(), Some("35" | "230"));
        while !std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(asleep) {
            std::thread::yield_now();
        }
        let first = ProcSnapshot::capture(pid);
        let second = ProcSnapshot::capture(pid);
        let _ = child.kill();
        let _ = child.wait();
        let (first, second) = (first.expect("capture"), second.expect("capture"));
        assert!(
            first.vmas.iter().any(|vma| vma.contains("[stack]")),
            "{:?}",
            first.vmas
        );
        assert!(first.status.contains_key("SigBlk"));
        assert!(first.fds.contains_key(&0));
        assert_eq!(first.differences(&second), Vec::<String>::new());
    }

    #[test]
    fn identical_snapshots_have_no_differences() {
        let before = snapshot(&["1000-2000 rw-p"], "0", 7);
        assert!(before.differences(&before.clone()).is_empty());
    }

    #[test]
    fn every_kind_of_difference_is_named() {
        let before = snapshot(&["1000-2000 rw-p", "3000-4000 r--p"], "0", 7);
        let after = snapshot(&["1000-2000 rw-p", "3000-5000 r--p"], "10000", 8);
        let differences = before.differences(&after);
        assert_eq!(
            differences,
            vec![
                "vma - 3000-4000 r--p",
                "vma + 3000-5000 r--p",
                "status SigBlk: 0 -> 10000",
                "fd 3: /tmp/f pos 7 flags 02 -> /tmp/f pos 8 flags 02",
            ]
        );
    }
}
