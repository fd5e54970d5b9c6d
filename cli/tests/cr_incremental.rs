//! `crust pre-dump`, then `crust dump --prev-images-dir`: the target keeps running after
//! the pre-dump and changes half its pages; the dump writes only those (the rest are
//! PE_PARENT runs read from the pre-dump), and the restore brings every page back with
//! the content it had at the dump. Without the pre-dump the restore fails, naming it.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{compile, crust, signal, skip_reason, start_with_pipes, subreaper, tempdir, wait_exit};

fn dir_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.metadata().unwrap().len()).sum()
}

#[test]
fn dump_after_pre_dump_writes_only_changed_pages() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("incremental");
    let binary = compile(&dir, "incremental", &[]);
    let out = dir.join("out");
    // fd 3: ready (the pid); fd 4: one byte once the pages changed.
    let mut command = Command::new(&binary);
    command.arg(&out);
    let (child, text, mut pipes) = start_with_pipes(&mut command, 1);
    let pid: i32 = text.trim().parse().unwrap();
    assert_eq!(pid, child.id() as i32);
    let mut modified = pipes.remove(0);

    let pre = dir.join("pre");
    assert!(crust().args(["pre-dump", "-t", &pid.to_string(), "-D"]).arg(&pre).status().unwrap().success(), "pre-dump");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "pre-dump left the target running");
    signal(pid, libc::SIGUSR2);
    let mut byte = [0u8; 1];
    modified.read_exact(&mut byte).unwrap();

    let images = dir.join("img");
    let dumped = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["--prev-images-dir", "../pre", "--track-mem"]).output().unwrap();
    assert!(dumped.status.success(), "dump: {}", String::from_utf8_lossy(&dumped.stderr));
    wait_exit(pid);
    let (full, incremental) = (dir_bytes(&pre, "pages-"), dir_bytes(&images, "pages-"));
    assert!(full >= 32 << 20, "the pre-dump holds every page ({full} bytes)");
    assert!((16 << 20..20 << 20).contains(&incremental), "the dump holds the changed half only: {incremental} bytes against {full}");
    assert_eq!(std::fs::read_link(images.join("parent")).unwrap(), Path::new("../pre"));

    // Without its parent the dump cannot be restored: one line naming what is missing.
    std::fs::rename(&pre, dir.join("pre.away")).unwrap();
    let failed = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "restore without the pre-dump succeeded");
    assert!(stderr.contains("parent"), "the error names the parent dump: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing left of pid {pid}");
    std::fs::rename(dir.join("pre.away"), &pre).unwrap();

    let restored = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    assert!(restored.status.success(), "restore: {}", String::from_utf8_lossy(&restored.stderr));
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0, "restored target's check");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
    let _ = std::fs::remove_dir_all(&dir);
}
