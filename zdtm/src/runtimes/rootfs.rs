//! The counting containers' rootfs: Debian's static busybox and its applet links in
//! `/bin`, `/etc/passwd` and `/etc/group`, the usual empty mount points. Writable (the
//! counter writes its log into it); one per flow, and one tarred for `podman import`.

use anyhow::{bail, Context};
use std::path::Path;

const DIRECTORIES: &[&str] = &["bin", "dev", "proc", "sys", "tmp", "etc", "data", "mnt", "root", "run"];

/// Builds a rootfs at `dir` (replacing what is there) from `busybox`.
pub fn build(dir: &Path, busybox: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove old {}", dir.display()))?;
    }
    for name in DIRECTORIES {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").context("write etc/passwd")?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").context("write etc/group")?;
    std::fs::copy(busybox, dir.join("bin/busybox")).with_context(|| format!("copy {}", busybox.display()))?;
    for applet in applets(busybox)? {
        let link = dir.join("bin").join(&applet);
        std::os::unix::fs::symlink("busybox", &link).with_context(|| format!("link {}", link.display()))?;
    }
    Ok(())
}

/// `busybox --list`, read once per run.
fn applets(busybox: &Path) -> anyhow::Result<Vec<String>> {
    static LIST: std::sync::OnceLock<Result<Vec<String>, String>> = std::sync::OnceLock::new();
    let list = LIST.get_or_init(|| {
        // Before the reaper starts (see `super::run`), std may wait for this child.
        let output = std::process::Command::new(busybox).arg("--list").output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!("exit {}", output.status));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter(|applet| *applet != "busybox" && !applet.contains('/'))
            .map(str::to_string)
            .collect())
    });
    match list {
        Ok(list) => Ok(list.clone()),
        Err(why) => bail!("{} --list: {why}", busybox.display()),
    }
}

/// Lists the applets now, while std may still wait for a child of its own (before the
/// reaper thread starts).
pub fn prepare(busybox: &Path) -> anyhow::Result<()> {
    applets(busybox).map(|_| ())
}
