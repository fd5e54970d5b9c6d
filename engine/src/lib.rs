//! The checkpoint/restore engine. Two pipelines that say what happens in which order
//! ([`dump`], [`restore`]), the subsystems below them that own each kind of state
//! (`memory/`, `files/`, `ipc/`), the task model they share (`model`), the raw kernel
//! calls (`sys/`) and the remote syscalls into a stopped thread (`infect`). See
//! `docs/ARCHITECTURE.md` for the map.
//!
//! The engine talks to the CPU only through `crust_arch::HostArch` (and, for planning,
//! any `crust_arch::Abi`), and to disk only through `crust_images`.
#![deny(unsafe_code)]

pub mod check;
pub mod dump;
pub mod interrupt;
pub mod page_server;
pub mod private;
pub mod procfs;
pub mod restore;
pub mod stages;

mod access;
mod cgroups;
mod error;
mod files;
mod infect;
mod ipc;
pub mod lazy;
mod memory;
mod model;
mod mounts;
mod net;
mod ns;
mod parasite;
mod rseq;
mod sys;
mod timens;
mod userns;
mod uts;

pub use access::AccessError;
pub use parasite::guardian::{guardian_main, GUARDIAN_VERB};
pub use cgroups::{CgroupError, CgroupMode};

/// Fast page transfer and the pure run building over pagemap entries (`memory/pages.rs`).
pub use memory::pages as fast_pages;

#[cfg(test)]
mod tests {
    //! The shape of the crate, checked: no module imports a module that imports it back.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `dir`, as its module path (`restore::program::memory`).
    fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            let name = path.file_stem().expect("a name").to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                modules(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                if name != "mod" && name != "lib" {
                    module.push(name);
                }
                out.insert(module, path);
            }
        }
    }

    /// The module a path refers to: its longest prefix that is a module.
    fn resolve(path: &[String], known: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
        (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| known.contains_key(p))
    }

    /// `crate::a::b` and `super::a` paths in a file's code (comments left out).
    fn references(text: &str, module: &[String]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for line in text.lines().map(|l| l.split("//").next().unwrap_or("")) {
            let mut rest = line;
            while let Some(at) = rest.find(['c', 's']) {
                let tail = &rest[at..];
                let boundary = rest[..at].chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                let (base, after) = if boundary && tail.starts_with("crate::") {
                    (Vec::new(), &tail[7..])
                } else if boundary && tail.starts_with("super::") {
                    // A mod.rs is its folder's module, so `super` is one up either way.
                    (module[..module.len().saturating_sub(1)].to_vec(), &tail[7..])
                } else {
                    rest = &rest[at + 1..];
                    continue;
                };
                let segments: Vec<String> = after
                    .split("::")
                    .map(|s| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
                    .take_while(|s| !s.is_empty())
                    .collect();
                if let Some(first) = after.split("::").nth(segments.len()).filter(|s| s.starts_with('{')) {
                    // `crate::a::{b, c}`: each name in the braces.
                    let inner = first.trim_start_matches('{').split('}').next().unwrap_or("");
                    for name in inner.split(',').map(|n| n.trim().split(' ').next().unwrap_or("").to_string()).filter(|n| !n.is_empty() && n != "self") {
                        let mut path = base.clone();
                        path.extend(segments.iter().cloned());
                        path.push(name);
                        out.push(path);
                    }
                }
                let mut path = base;
                path.extend(segments);
                out.push(path);
                rest = &rest[at + 7..];
            }
        }
        out
    }

    fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(node: &str, edges: &BTreeMap<String, BTreeSet<String>>, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
            if let Some(at) = stack.iter().position(|n| n == node) {
                let mut cycle = stack[at..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            if done.contains(node) {
                return None;
            }
            stack.push(node.to_string());
            for next in edges.get(node).into_iter().flatten() {
                if let Some(cycle) = visit(next, edges, stack, done) {
                    return Some(cycle);
                }
            }
            stack.pop();
            done.insert(node.to_string());
            None
        }
        let mut done = BTreeSet::new();
        edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
    }

    /// Between the crate's top-level modules, and between the modules of each folder
    /// (not counting a folder's mod.rs, which declares and re-exports its files, and
    /// which they may use), imports go one way.
    #[test]
    fn no_import_cycles() {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut known = BTreeMap::new();
        modules(&src, &[], &mut known);
        let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut siblings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, path) in &known {
            if module.is_empty() {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("read");
            let own = module.join("::");
            for reference in references(&text, module) {
                let Some(target) = resolve(&reference, &known) else { continue };
                if target.is_empty() {
                    continue;
                }
                if target[0] != module[0] {
                    top.entry(module[0].clone()).or_default().insert(target[0].clone());
                } else if target.len() == module.len() && target[..target.len() - 1] == module[..module.len() - 1] && target != *module {
                    siblings.entry(own.clone()).or_default().insert(target.join("::"));
                }
            }
        }
        assert!(top.values().flatten().count() > 10, "references found: {top:?}");
        assert_eq!(find_cycle(&top), None, "top-level modules import each other: {top:#?}");
        assert_eq!(find_cycle(&siblings), None, "files of one folder import each other: {siblings:#?}");
    }
}
