//! The container flavor's rootfs template, built once per run in `<workdir>/rootfs`:
//! Debian's static busybox with its applet links in `/bin`, `/etc/{passwd,group,hosts}`,
//! the run's test programs under [`super::CONTAINER_BIN`] (hard links to the run's
//! copies in `<workdir>/bin`), the interpreter and libraries they need at the paths the
//! loader opens, and the empty mount points the container's init mounts on. It is
//! world-readable (the user-namespace flavor's root is an unprivileged host uid) and
//! mounted read-only inside every container; nothing writes to it during the run.

use anyhow::{bail, Context};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories the init mounts on, or that a minimal system has.
const DIRECTORIES: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("etc", 0o755),
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("run", 0o755),
    ("root", 0o700),
    ("zdtm", 0o755),
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n";
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Where Debian's busybox-static (or any busybox) is on this machine.
pub fn find_busybox() -> Option<PathBuf> {
    let known = ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"].into_iter().map(PathBuf::from);
    let in_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("busybox")).collect::<Vec<_>>())
        .unwrap_or_default();
    known.chain(in_path).find(|candidate| candidate.is_file())
}

/// Builds the template at `template` (replacing what is there) from `busybox` and the
/// programs under `bin_dir` (`zdtm-rs`, `c-tests/*`). Runs `busybox --list`, so it must
/// run before the harness's reaper thread collects every child.
pub fn build(template: &Path, bin_dir: &Path, busybox: &Path) -> anyhow::Result<()> {
    if template.exists() {
        std::fs::remove_dir_all(template).with_context(|| format!("remove old {}", template.display()))?;
    }
    for (dir, mode) in DIRECTORIES {
        let path = template.join(dir);
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        set_mode(&path, *mode)?;
    }
    set_mode(template, 0o755)?;
    for (name, text) in [("passwd", PASSWD), ("group", GROUP), ("hosts", HOSTS)] {
        let path = template.join("etc").join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        set_mode(&path, 0o644)?;
    }

    let placed_busybox = template.join("bin/busybox");
    std::fs::copy(busybox, &placed_busybox).with_context(|| format!("copy {}", busybox.display()))?;
    set_mode(&placed_busybox, 0o755)?;
    let listing = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("run {} --list", busybox.display()))?;
    if !listing.status.success() {
        bail!("{} --list: {}", busybox.display(), listing.status);
    }
    for applet in String::from_utf8_lossy(&listing.stdout).split_whitespace() {
        if applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = template.join("bin").join(applet);
        std::os::unix::fs::symlink("busybox", &link).with_context(|| format!("link {}", link.display()))?;
    }

    let programs_dir = template.join(super::CONTAINER_BIN.trim_start_matches('/'));
    let mut programs = vec![busybox.to_path_buf()];
    place_tree(bin_dir, &programs_dir, &mut programs)?;
    let files = super::elf::runtime_files(&programs).map_err(|error| anyhow::anyhow!("libraries of the test programs: {error}"))?;
    for file in files {
        let placed = template.join(file.strip_prefix("/").unwrap_or(&file));
        if placed.exists() {
            continue;
        }
        let parent = placed.parent().context("library path has a directory")?;
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        std::fs::copy(&file, &placed).with_context(|| format!("copy {} into the rootfs", file.display()))?;
        set_mode(&placed, 0o755)?;
    }
    make_world_readable(template)
}

/// Hard-links (or copies, across filesystems) every file under `from` into `to`, keeping
/// the layout; adds the executables to `programs`. The `runtime` directory (language
/// runtimes' scripts) is left out.
fn place_tree(from: &Path, to: &Path, programs: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    let entries = std::fs::read_dir(from).with_context(|| format!("list {}", from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", from.display()))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().with_context(|| format!("stat {}", source.display()))?;
        if kind.is_dir() {
            if entry.file_name() != "runtime" {
                place_tree(&source, &target, programs)?;
            }
        } else if kind.is_file() {
            if std::fs::hard_link(&source, &target).is_err() {
                std::fs::copy(&source, &target).with_context(|| format!("copy {} into the rootfs", source.display()))?;
            }
            programs.push(source);
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", path.display()))
}

/// Adds read (and search, for directories and executables) permission for everyone.
fn make_world_readable(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() || mode & 0o100 != 0 { mode | 0o555 } else { mode | 0o444 };
        if wanted != mode {
            set_mode(&path, wanted)?;
        }
        if meta.is_dir() {
            make_world_readable(&path)?;
        }
    }
    Ok(())
}
