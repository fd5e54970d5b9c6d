//! What the harness records about a whole process tree: every process and thread under
//! a root, named by its pid in the innermost pid namespace (so a tree restored into a new
//! pid namespace compares with its dump), with its parent, group, session, run state,
//! per-thread status (masks, pending sets, creds, comm) and each live process's full
//! [`ProcSnapshot`].
//!
//! No unsafe: everything comes from /proc text.

use crate::procfs;
use crate::snapshot::ProcSnapshot;
use anyhow::Context;
use std::collections::BTreeMap;

/// `status` keys compared per thread (the process-wide ones are in [`ProcSnapshot`]).
pub const THREAD_STATUS_KEYS: &[&str] = &[
    "Name", "SigPnd", "SigBlk", "Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "CapInh",
    "CapPrm", "CapEff", "CapBnd", "CapAmb",
];

/// One process of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRecord {
    /// Parent's namespace pid; `None` when the parent is outside the tree.
    pub parent: Option<i32>,
    /// Process group and session, namespace-local.
    pub group: i32,
    /// Session id, namespace-local.
    pub session: i32,
    /// `run` (R/S/D/I), or the kernel's letter for stopped (`T`), traced (`t`), zombie (`Z`).
    pub state: String,
    /// Thread (namespace tid) to its compared status fields.
    pub threads: BTreeMap<i32, BTreeMap<String, String>>,
    /// Full snapshot of a live process (none for a zombie).
    pub process: Option<ProcSnapshot>,
}

/// The recorded tree, by namespace pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSnapshot {
    /// Every process under (and including) the root.
    pub processes: BTreeMap<i32, ProcessRecord>,
}

/// Last field of an `NSpid:`-style line (the innermost namespace's id).
fn innermost(fields: &BTreeMap<String, String>, key: &str) -> Option<i32> {
    fields
        .get(key)
        .and_then(|value| value.split_whitespace().last())
        .and_then(|id| id.parse().ok())
}

/// Host pids of the root and all its descendants, parents first.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let pid = found[next];
        next += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        let mut tids: Vec<String> = tasks
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        tids.sort();
        for tid in tids {
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                if !found.contains(&child) {
                    found.push(child);
                }
            }
        }
    }
    found
}

/// Host pid of the process whose innermost-namespace pid is `ns_pid`, under `root`.
pub fn find_by_ns_pid(root: i32, ns_pid: i32) -> Option<i32> {
    descendants(root).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .map(|text| procfs::parse_key_values(&text))
            .and_then(|fields| innermost(&fields, "NSpid"))
            == Some(ns_pid)
    })
}

/// The innermost-namespace pid of a host pid.
pub fn ns_pid_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    innermost(&procfs::parse_key_values(&text), "NSpid")
}

/// A `volatile_status` pseudo-key: the test's runtime maps and unmaps anonymous memory
/// on its own threads at any time (a JVM's malloc arenas, code cache and thread stacks),
/// so only file-backed and special mappings are compared; the test checks its memory
/// contents itself.
pub const VOLATILE_ANON_MAPS: &str = "maps:anon";

/// Whether a normalised maps line (`START-END PERMS OFFSET DEV INODE [PATH] [FLAGS]`)
/// followed by ` [VmFlags]`) is anonymous memory: no path, the heap or a named anon area.
fn is_anonymous_vma(line: &str) -> bool {
    // Drop the ` [VmFlags]` suffix the snapshot appends.
    let maps = line.rsplit_once(" [").map_or(line, |(maps, _)| maps);
    match maps.split_whitespace().nth(5) {
        None => true,
        Some(path) => path == "[heap]" || path.starts_with("[anon:"),
    }
}

impl TreeSnapshot {
    /// Records the tree under host pid `root`, leaving out `volatile` status keys.
    pub fn capture(root: i32, volatile: &[&str]) -> anyhow::Result<TreeSnapshot> {
        let host_pids = descendants(root);
        let mut host_to_ns = BTreeMap::new();
        let mut statuses = Vec::new();
        for pid in &host_pids {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .with_context(|| format!("read /proc/{pid}/status"))?;
            let fields = procfs::parse_key_values(&text);
            let ns_pid = innermost(&fields, "NSpid").context("no NSpid")?;
            host_to_ns.insert(*pid, ns_pid);
            statuses.push((*pid, ns_pid, fields));
        }
        let mut processes = BTreeMap::new();
        for (pid, ns_pid, fields) in statuses {
            let host_parent: i32 = fields
                .get("PPid")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let letter = fields
                .get("State")
                .and_then(|state| state.chars().next())
                .unwrap_or('?');
            let state = match letter {
                'R' | 'S' | 'D' | 'I' => "run".to_string(),
                other => other.to_string(),
            };
            let mut threads = BTreeMap::new();
            if letter != 'Z' {
                let task_dir = format!("/proc/{pid}/task");
                for entry in std::fs::read_dir(&task_dir).with_context(|| format!("list {task_dir}"))? {
                    let entry = entry.with_context(|| format!("list {task_dir}"))?;
                    let tid = entry.file_name().to_string_lossy().into_owned();
                    let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
                        continue; // exited meanwhile
                    };
                    let thread_fields = procfs::parse_key_values(&text);
                    let ns_tid = innermost(&thread_fields, "NSpid")
                        .with_context(|| format!("no NSpid for tid {tid}"))?;
                    let kept = THREAD_STATUS_KEYS
                        .iter()
                        .filter(|key| !volatile.contains(key))
                        .filter_map(|key| thread_fields.get(*key).map(|v| (key.to_string(), v.clone())))
                        .collect();
                    threads.insert(ns_tid, kept);
                }
            }
            let process = if letter == 'Z' {
                None
            } else {
                let mut snapshot = ProcSnapshot::capture(pid)?;
                // Host ids: compared namespace-local above instead.
                for key in ["Tgid", "Pid", "PPid"].iter().chain(volatile) {
                    snapshot.status.remove(*key);
                }
                if volatile.contains(&VOLATILE_ANON_MAPS) {
                    snapshot.vmas.retain(|line| !is_anonymous_vma(line));
                }
                Some(snapshot)
            };
            processes.insert(
                ns_pid,
                ProcessRecord {
                    parent: if pid == root { None } else { host_to_ns.get(&host_parent).copied() },
                    group: innermost(&fields, "NSpgid").unwrap_or(-1),
                    session: innermost(&fields, "NSsid").unwrap_or(-1),
                    state,
                    threads,
                    process,
                },
            );
        }
        Ok(TreeSnapshot { processes })
    }

    /// Human-readable differences, empty when the tree came back the same.
    pub fn differences(&self, after: &TreeSnapshot) -> Vec<String> {
        let mut differences = Vec::new();
        for (pid, before) in &self.processes {
            let Some(now) = after.processes.get(pid) else {
                differences.push(format!("pid {pid}: missing after restore"));
                continue;
            };
            let mut field = |what: &str, was: String, is: String| {
                if was != is {
                    differences.push(format!("pid {pid}: {what} {was} -> {is}"));
                }
            };
            field("parent", format!("{:?}", before.parent), format!("{:?}", now.parent));
            field("pgid", before.group.to_string(), now.group.to_string());
            field("sid", before.session.to_string(), now.session.to_string());
            field("state", before.state.clone(), now.state.clone());
            let tids_before: Vec<&i32> = before.threads.keys().collect();
            let tids_after: Vec<&i32> = now.threads.keys().collect();
            if tids_before != tids_after {
                differences.push(format!("pid {pid}: threads {tids_before:?} -> {tids_after:?}"));
            }
            for (tid, status) in &before.threads {
                let Some(status_after) = now.threads.get(tid) else { continue };
                for (key, value) in status {
                    let value_after = status_after.get(key).map(String::as_str).unwrap_or("missing");
                    if value != value_after {
                        differences.push(format!("pid {pid} tid {tid}: {key} {value} -> {value_after}"));
                    }
                }
            }
            if let (Some(process_before), Some(process_after)) = (&before.process, &now.process) {
                for difference in process_before.differences(process_after) {
                    differences.push(format!("pid {pid}: {difference}"));
                }
            }
        }
        for pid in after.processes.keys() {
            if !self.processes.contains_key(pid) {
                differences.push(format!("pid {pid}: new after restore"));
            }
        }
        differences
    }
}
