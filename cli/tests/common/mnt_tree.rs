//! `tests/data/mnt_tree.c`'s tree: a process in a mount and UTS namespace of its own,
//! its root a bind of a directory with binds of a host directory, a host file, a
//! read-only host directory, a directory of its root and a file of the bound directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::start_with_pipes;

/// The keys the tree's external mounts are dumped with, by mountpoint: `/data`, the
/// file `/etc/bound` and the read-only `/ro`.
pub const DUMP_KEYS: [&str; 6] = ["--external", "mnt[/data]:data", "--ext-mount-map", "/etc/bound:bound", "--external", "mnt[/ro]:ro"];

impl Tree {
    /// The restore's options for the tree's external mounts, by key (as for CRIU).
    pub fn restore_keys(&self) -> Vec<String> {
        vec![
            "--external".into(),
            format!("mnt[data]:{}", self.hostdir.display()),
            "--ext-mount-map".into(),
            format!("bound:{}", self.hostfile.display()),
            "--external".into(),
            format!("mnt[ro]:{}", self.rodir.display()),
        ]
    }
}

/// The tree's files (`None`: no static C library): ROOT (with the static program), the host directory, file and
/// read-only directory bound into it.
pub struct Tree {
    pub root: PathBuf,
    pub hostdir: PathBuf,
    pub hostfile: PathBuf,
    pub rodir: PathBuf,
}

pub fn make_tree(dir: &Path) -> Option<Tree> {
    let root = dir.join("root");
    for sub in ["data", "etc", "ro", "inner", "sub"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    fs::write(root.join("etc/bound"), "").unwrap();
    fs::write(root.join("alias"), "").unwrap();
    fs::write(root.join("sub/x"), "inner\n").unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mnt_tree.c");
    let status = Command::new("cc").args(["-O2", "-static", "-o"]).arg(root.join("mnt_tree")).arg(&source).status().unwrap();
    if !status.success() {
        return None;
    }
    let hostdir = dir.join("hostdir");
    fs::create_dir_all(&hostdir).unwrap();
    fs::write(hostdir.join("f"), "data\n").unwrap();
    fs::write(hostdir.join("alias-source"), "alias\n").unwrap();
    let hostfile = dir.join("hostfile");
    fs::write(&hostfile, "bound\n").unwrap();
    let rodir = dir.join("rodir");
    fs::create_dir_all(&rodir).unwrap();
    fs::write(rodir.join("file"), "ro\n").unwrap();
    Some(Tree { root, hostdir, hostfile, rodir })
}

/// Starts the tree; returns its pid once it is ready.
pub fn launch(tree: &Tree) -> i32 {
    let mut command = Command::new(tree.root.join("mnt_tree"));
    command.arg("launch").args([&tree.root, &tree.hostdir, &tree.hostfile, &tree.rodir]);
    let (child, text, _) = start_with_pipes(&mut command, 0);
    let pid: i32 = text.trim().parse().unwrap_or_else(|_| panic!("mnt_tree did not get ready: {text:?}, log: {:?}", fs::read_to_string(tree.root.join("log"))));
    assert_eq!(pid, child.id() as i32);
    pid
}

