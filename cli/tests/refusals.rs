//! What crust refuses, end to end: an unprivileged user dumping root's process or
//! restoring (each refusal says what is missing and leaves no images directory), a
//! process another tracer holds (named with its comm), a dump into a directory others
//! can write; that images are private; and the damaged images of issue 13 that a
//! restore once accepted, each now a one-line refusal before anything is created.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{crust, signal, skip_reason, subreaper, tempdir, wait_exit};

/// nobody's uid and gid.
const NOBODY: u32 = 65534;

fn one_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text
}

/// The target is running (in its wait, or just let go and on its way back there),
/// `crust dump -t PID -D IMAGES`, which must fail: its one line.
fn refused_dump(pid: i32, images: &std::path::Path) -> String {
    let output = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(images).output().unwrap();
    assert!(!output.status.success(), "pid {pid} was dumped");
    one_line(&output)
}

/// Starts a test program in a process group of its own with `args`, and waits for
/// its first line: its pid, that line, and the guard that kills and reaps it.
fn start_target(binary: &std::path::Path, args: &[&std::ffi::OsStr]) -> (i32, String, common::KillOnDrop) {
    let mut command = Command::new(binary);
    command.args(args).process_group(0);
    let (target, said, _) = common::start_with_pipes(&mut command, 0);
    let pid = target.id() as i32;
    (pid, said, common::KillOnDrop(pid))
}

/// neither stopped nor traced. `what` says which case, in the message.
fn assert_running_untraced(pid: i32, what: &str) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l.starts_with("State:") && (l.contains("S (sleeping)") || l.contains("R (running)"))), "{what}: {status}");
    assert!(status.lines().any(|l| l == "TracerPid:\t0"), "{what}: {status}");
}

/// A `crust` run as nobody (no capabilities; std drops the supplementary groups when
/// root sets a uid), with a HOME it may read.
fn crust_as_nobody() -> Command {
    let mut command = crust();
    command.env("HOME", "/").uid(NOBODY).gid(NOBODY);
    command
}

/// A process to dump: `sleep`, in a session of its own.
fn sleeper() -> std::process::Child {
    let mut command = Command::new("sleep");
    command.arg("1000").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    command.spawn().unwrap()
}

#[test]
fn unprivileged_user_is_told_what_is_missing_and_nothing_is_left() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("unprivileged");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let own = base.join("nobody");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut target = sleeper();
    let pid = target.id() as i32;

    // Root's process.
    let images = own.join("images");
    let output = crust_as_nobody().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["-o", "dump.log", "-v4"]).output().unwrap();
    assert!(!output.status.success());
    assert_eq!(
        one_line(&output),
        format!("crust: dump: pid {pid} is not your process (it runs as uid 0, you are uid {NOBODY}): dumping another user's process needs CAP_SYS_PTRACE (run crust as root)")
    );
    assert!(!images.exists(), "a refused dump leaves no images directory (not even dump.log)");

    // nobody's own process: crust has no capability.
    let mut own_target = Command::new("sleep");
    own_target.arg("1000").uid(NOBODY).gid(NOBODY).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut own_target = own_target.spawn().unwrap();
    let output = crust_as_nobody().args(["dump", "-t", &own_target.id().to_string(), "-D"]).arg(&images).output().unwrap();
    assert!(!output.status.success());
    assert!(one_line(&output).starts_with("crust: dump: crust needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE to dump"), "{output:?}");
    assert!(!images.exists());

    // A restore needs a capability as well.
    let output = crust_as_nobody().args(["restore", "-d", "-D"]).arg(&own).output().unwrap();
    assert!(!output.status.success());
    assert!(one_line(&output).starts_with("crust: restore: crust needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE to restore"), "{output:?}");

    let _ = own_target.kill();
    let _ = own_target.wait();
    let _ = target.kill();
    let _ = target.wait();
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_traced_process_names_its_tracer() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("traced");
    // The test traces the target itself (PTRACE_TRACEME before exec: it stops at the
    // exec with SIGTRAP, traced by this process).
    let mut command = Command::new("sleep");
    command.arg("1000").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: ptrace(PTRACE_TRACEME) is async-signal-safe and takes no pointers.
    unsafe {
        command.pre_exec(|| if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
    }
    let target = command.spawn().unwrap();
    let pid = target.id() as i32;
    let mut status = 0;
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid, "the exec stop");
    let images = base.join("images");
    let refusal = refused_dump(pid, &images);
    // The tracer is this test's thread, named by its tid and its own comm.
    // SAFETY: gettid takes no arguments.
    let tracer = unsafe { libc::gettid() };
    let tracer_comm = std::fs::read_to_string(format!("/proc/{tracer}/comm")).unwrap();
    assert_eq!(
        refusal,
        format!(
            "crust: dump: pid {pid} is already traced by pid {tracer} ({}): a process has one tracer at a time; wait until that one detaches (another crust or criu dumping it, a debugger, strace)",
            tracer_comm.trim_end()
        )
    );
    assert!(!images.exists());
    signal(pid, libc::SIGKILL);
    wait_exit(pid);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn images_are_private_and_a_shared_directory_is_refused() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("private");
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut target = sleeper();
    let pid = target.id().to_string();
    let output = crust().args(["dump", "-t", &pid, "-D"]).arg(&shared).output().unwrap();
    assert!(!output.status.success());
    assert!(one_line(&output).contains("others can write to it (mode 777)"), "{output:?}");
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0, "nothing written there");

    let images = base.join("images");
    let output = crust().args(["dump", "-t", &pid, "-D"]).arg(&images).args(["-o", "dump.log"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(std::fs::metadata(&images).unwrap().permissions().mode() & 0o777, 0o700);
    for entry in std::fs::read_dir(&images).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.file_name().to_string_lossy());
    }
    let _ = target.wait();
    let _ = std::fs::remove_dir_all(&base);
}

/// Edits one image through `crust show` / `crust encode` (crit's JSON).
fn edit(dir: &Path, image: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let shown = crust().arg("show").arg(dir.join(image)).output().unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let mut json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    change(&mut json);
    let json_path = dir.join("edit.json");
    std::fs::write(&json_path, serde_json::to_vec(&json).unwrap()).unwrap();
    let encoded = crust().arg("encode").arg("-i").arg(&json_path).arg("-o").arg(dir.join(image)).output().unwrap();
    assert!(encoded.status.success(), "{encoded:?}");
    std::fs::remove_file(json_path).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `sh -c SCRIPT` in a group of its own, once both children of its pipeline run: the
/// shell and its children's pids.
fn shell_with_two_children(script: &str) -> (std::process::Child, Vec<i32>) {
    let mut command = Command::new("sh");
    command.args(["-c", script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    let target = command.spawn().unwrap();
    let pid = target.id();
    let mut children = Vec::new();
    for _ in 0..2000 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children = text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()).collect();
        if children.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(children.len(), 2, "the shell's two children");
    (target, children)
}

/// Damaged dumps a restore once accepted (issue 13) or hung on: each is refused with one
/// line naming the image and the field (before any process is created), or the process
/// and what failed.
#[test]
fn damaged_images_are_refused_in_one_line() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let base = tempdir("damaged");
    // A shell with a file on fd 3 and a pipe to a child: pipes-data.img, two fdinfo
    // images, core, ids and pages.
    let (mut target, children) = shell_with_two_children("exec 3</etc/passwd; sleep 1000 | cat");
    let pid = target.id();
    let dump = base.join("dump");
    let output = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&dump).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let _ = target.wait();
    let child = children[0];
    // The killed children came to this subreaper: reap them, freeing their pids.
    for child in children.clone() {
        wait_exit(child);
    }
    let core = format!("core-{pid}.img");
    let fdinfo = std::fs::read_dir(&dump)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|name| name.starts_with("fdinfo-"))
        .expect("an fdinfo image");

    type Damage = Box<dyn Fn(&Path)>;
    let flip = |offset: u64| -> Damage {
        Box::new(move |dir: &Path| {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("pages-1.img")).unwrap();
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, offset).unwrap();
            file.write_all_at(&[byte[0] ^ 0x10], offset).unwrap();
        })
    };
    let remove = |name: String| -> Damage { Box::new(move |dir: &Path| std::fs::remove_file(dir.join(&name)).unwrap()) };
    let core_for_state = core.clone();
    let core_for_comm = core.clone();
    let core_for_sigactions = core.clone();
    let fdinfo_for_dup = fdinfo.clone();
    let passwd_id = {
        let shown = crust().arg("show").arg(dump.join("files.img")).output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        json["entries"].as_array().unwrap().iter().find(|f| f["reg"]["name"] == "/etc/passwd").expect("/etc/passwd in files.img")["id"].clone()
    };
    let cases: Vec<(&str, Damage, String)> = vec![
        ("a byte flip in pages-1.img", flip(100), "crust: restore: pages-1.img: offset 0: pages 0x".into()),
        ("another byte flip in pages-1.img", flip(4096 + 7), "crust: restore: pages-1.img: offset ".into()),
        (
            "an fdinfo entry duplicated onto fd 0",
            Box::new(move |dir: &Path| {
                edit(dir, &fdinfo_for_dup, |json| {
                    let entries = json["entries"].as_array_mut().unwrap();
                    let mut copy = entries.last().unwrap().clone();
                    copy["fd"] = 0.into();
                    entries.push(copy);
                })
            }),
            format!("crust: restore: {fdinfo}: entry "),
        ),
        ("a missing inventory.img", remove("inventory.img".into()), "crust: restore: inventory.img: missing from ".into()),
        (
            "a missing ids image",
            remove(format!("ids-{pid}.img")),
            format!("crust: restore: ids-{pid}.img: missing: crust-checksums.img lists it among the images this dump wrote"),
        ),
        (
            "a missing pipes-data.img",
            remove("pipes-data.img".into()),
            "crust: restore: pipes-data.img: missing: crust-checksums.img lists it among the images this dump wrote".into(),
        ),
        (
            "task_state 77",
            Box::new(move |dir: &Path| edit(dir, &core_for_state, |json| json["entries"][0]["tc"]["task_state"] = 77.into())),
            format!("crust: restore: {core}: tc.task_state 77 is not a task state (1 alive, 2 dead, 3 stopped)"),
        ),
        (
            "a 5,000-character comm",
            Box::new(move |dir: &Path| edit(dir, &core_for_comm, |json| json["entries"][0]["tc"]["comm"] = "x".repeat(5000).into())),
            format!("crust: restore: {core}: tc.comm is 5000 bytes: the kernel keeps at most 15 (TASK_COMM_LEN), and no NUL"),
        ),
        (
            "40 times the sigaction entries",
            Box::new(move |dir: &Path| {
                edit(dir, &core_for_sigactions, |json| {
                    let actions = json["entries"][0]["tc"]["sigactions"].as_array().unwrap().clone();
                    json["entries"][0]["tc"]["sigactions"] = (0..40).flat_map(|_| actions.iter().cloned()).collect::<Vec<_>>().into();
                })
            }),
            format!("crust: restore: {core}: tc.sigactions has 2480 entries: a task has 62 signal actions (64 signals but SIGKILL and SIGSTOP)"),
        ),
        (
            // Found only once a child runs, while the others wait stopped and hold the
            // error pipe open: the restore must still end, with the child's own line.
            "a child's cwd that is a file",
            Box::new(move |dir: &Path| edit(dir, &format!("fs-{child}.img"), |json| json["entries"][0]["cwd_id"] = passwd_id.clone())),
            format!("crust: restore: pid {child}: chdir /etc/passwd: Not a directory"),
        ),
    ];
    for (what, damage, expected) in cases {
        let dir = base.join("case");
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&dump, &dir);
        damage(&dir);
        // The pids are free (the target was killed by the dump): a restore that
        // accepted the images would create processes, which the check below would see.
        let output = crust().args(["restore", "-d", "--shell-job", "-D"]).arg(&dir).output().unwrap();
        let line = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let restored = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if restored {
            signal(pid as i32, libc::SIGKILL);
        }
        assert!(!output.status.success() && !restored, "{what}: accepted ({line})");
        assert_eq!(line.lines().count(), 1, "{what}: one line: {line}");
        assert!(line.starts_with(&expected), "{what}: {line}\n  expected: {expected}...");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A damaged page in a big area (24 MiB of pages: crust fills it from outside the
/// process and checksums it as it reads, `engine/src/lazy/fill.rs`) fails the restore in
/// one line naming the run, and no process of the tree is left; the same images
/// undamaged restore, and the process finds every byte.
#[test]
fn a_damaged_page_in_a_big_area_fails_the_restore_in_one_line() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let base = tempdir("damaged-big");
    let binary = common::compile(&base, "pattern", &[]);
    let result = base.join("result");
    let (pid, _, _target) = start_target(&binary, &[result.as_os_str(), "24".as_ref()]);
    let dump = base.join("dump");
    let output = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&dump).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    wait_exit(pid);
    let pages = dump.join("pages-1.img");
    let len = std::fs::metadata(&pages).unwrap().len();
    assert!(len > 24 << 20, "pages-1.img holds the area: {len} bytes");
    let damaged = base.join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for entry in std::fs::read_dir(&dump).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(damaged.join("pages-1.img")).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, len / 2).unwrap();
        file.write_all_at(&[byte[0] ^ 0x04], len / 2).unwrap();
    }
    let output = crust().args(["restore", "-d", "--shell-job", "-D"]).arg(&damaged).output().unwrap();
    let line = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let restored = Path::new(&format!("/proc/{pid}")).exists();
    if restored {
        signal(pid, libc::SIGKILL);
    }
    assert!(!output.status.success() && !restored, "accepted: {line}");
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(
        line.starts_with("crust: restore") && line.contains("put the pages of its big areas in: pages-1.img: offset ") && line.contains("fail their checksum"),
        "{line}"
    );
    let output = crust().args(["restore", "-d", "--shell-job", "-D"]).arg(&dump).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0);
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "PASS\n");
}

/// A sealed area (mseal) has no field in CRIU's images: the dump is refused in one line
/// naming it, and the target keeps running with its seal.
#[test]
fn a_sealed_area_is_refused_and_the_target_keeps_its_seal() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("sealed");
    let binary = common::compile(&base, "sealed", &[]);
    // Killed and reaped however the test ends.
    let (pid, said, _target) = start_target(&binary, &[]);
    let Some(addr) = said.strip_prefix("sealed ") else {
        eprintln!("skipped: mseal failed here ({said}; Linux 6.10 has it)");
        return;
    };
    let start = u64::from_str_radix(addr, 16).unwrap();
    let images = base.join("images");
    let refusal = refused_dump(pid, &images);
    assert_eq!(
        refusal,
        format!(
            "crust: dump pid {pid}: memory area {start:#x}-{:#x} (anonymous) sealed with mseal (no image field keeps a seal; CRIU 4.2 restores such an area unsealed) is not supported yet",
            start + 4096
        )
    );
    // Still running (in pause(), or just let go and on its way back there), neither
    // stopped nor traced, and still sealed.
    assert_running_untraced(pid, "");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let area = smaps.split_once(&format!("{start:x}-")).map(|(_, rest)| rest).unwrap();
    let flags = area.lines().find(|l| l.starts_with("VmFlags:")).unwrap();
    assert!(flags.split_whitespace().any(|f| f == "sl"), "{flags}");
    let _ = std::fs::remove_dir_all(&base);
}

/// A process with a time namespace for its children only (unshare(CLONE_NEWTIME), no
/// execve since) is refused in one line, as CRIU 4.2 refuses it, and keeps running
/// untraced with its pending namespace.
#[test]
fn a_time_namespace_for_children_only_is_refused_and_the_target_keeps_it() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("timens-children");
    let binary = common::compile(&base, "timens_children", &[]);
    // Killed and reaped however the test ends.
    let (pid, said, _target) = start_target(&binary, &[]);
    if said != "ready" {
        eprintln!("skipped: unshare(CLONE_NEWTIME) failed here ({said}; Linux 5.6 has time namespaces)");
        return;
    }
    let link = |name: &str| std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap().to_string_lossy().into_owned();
    let inode = |name: &str| link(name).trim_start_matches("time:[").trim_end_matches(']').to_string();
    let (time, for_children) = (link("time"), link("time_for_children"));
    assert_ne!(time, for_children);
    let images = base.join("images");
    let refusal = refused_dump(pid, &images);
    assert_eq!(
        refusal,
        format!(
            "crust: dump pid {pid}: a time namespace for its children only (time_for_children {} differs from time {}: unshare(CLONE_NEWTIME) without execve) is not supported, as in CRIU 4.2",
            inode("time_for_children"),
            inode("time")
        )
    );
    assert_running_untraced(pid, "");
    assert_eq!((link("time"), link("time_for_children")), (time, for_children));
    let _ = std::fs::remove_dir_all(&base);
}

/// An fd open on a removed directory, a removed cwd, an unlinked FIFO and an unlinked
/// device node are refused in one line naming them (crust makes ghosts of regular files
/// only), and the target keeps running untraced.
#[test]
fn removed_directories_and_unlinked_nodes_are_refused_and_the_target_keeps_running() {
    use std::io::BufRead;
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("removed-dir");
    for (script, what) in [
        ("mkdir gone && exec 3<gone && rmdir gone && echo ready && exec sleep 1000", "fd 3 ({}/gone (deleted)): a removed directory"),
        ("mkdir gone && cd gone && rmdir ../gone && echo ready && exec sleep 1000", "cwd {}/gone (a removed directory)"),
        ("mkfifo gone && exec 3<>gone && echo data >&3 && rm gone && echo ready && exec sleep 1000", "fd 3 ({}/gone (deleted)): an unlinked FIFO"),
        ("mknod gone c 1 3 && exec 3<gone && rm gone && echo ready && exec sleep 1000", "fd 3 ({}/gone (deleted)): an unlinked device node"),
    ] {
        let mut target = Command::new("sh")
            .args(["-c", script])
            .current_dir(&base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = target.id() as i32;
        let _target = common::KillOnDrop(pid);
        let mut line = String::new();
        std::io::BufReader::new(target.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        let images = base.join("images");
        let refusal = refused_dump(pid, &images);
        let what = what.replace("{}", &base.display().to_string());
        assert_eq!(refusal, format!("crust: dump pid {pid}: {what} is not supported yet"));
        assert_running_untraced(pid, &what);
        let _ = std::fs::remove_dir_all(&images);
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Sockets crust does not dump are refused in one line naming the fd and what it holds,
/// and the target keeps running untraced: a unix listener with a connection waiting for
/// accept, a UDP socket corked with a datagram pending (CRIU refuses it too), a packet
/// socket with a receive ring mapped, a unix datagram socket connected to an unnamed
/// one outside the dumped tree, and an ICMP ping socket.
#[test]
fn sockets_crust_does_not_dump_are_refused_and_the_target_keeps_running() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    // The grandchild holding dgram-outside's peer comes to this test when its parent exits.
    subreaper();
    let base = tempdir("sockets-refused");
    let binary = common::compile(&base, "sockets", &[]);
    for (mode, what) in [
        ("unix-backlog", "listening unix socket with 1 connections waiting for accept"),
        ("udp-cork", "inet datagram socket: UDP socket corked with"),
        // The ring's mapping is met before the fd.
        ("packet-ring", "(a packet socket's PACKET_RX_RING or PACKET_TX_RING mapped)"),
        ("dgram-outside", "unix socket connected to socket:["),
        ("ping", "ICMP ping socket (SOCK_DGRAM, IPPROTO_ICMP)"),
    ] {
        // Killed and reaped however the test ends.
        let (pid, said, _target) = start_target(&binary, &[mode.as_ref()]);
        // dgram-outside: the holder of the peer, a grandchild that is this test's now.
        let outside = said.trim().strip_prefix("ready ").and_then(|pid| pid.parse().ok()).map(common::KillOnDrop);
        assert!(said.trim() == "ready" || outside.is_some(), "{mode}: {said}");
        let images = base.join(format!("images-{mode}"));
        let line = refused_dump(pid, &images);
        let names_it = if mode == "packet-ring" { "memory area 0x" } else { "fd 4 (" };
        assert!(line.starts_with(&format!("crust: dump pid {pid}: {names_it}")), "{mode}: {line}");
        assert!(line.contains(what) && line.ends_with("is not supported yet"), "{mode}: {line}");
        assert_running_untraced(pid, mode);
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A restore that finds dumped pids busy is refused in one line, and the processes that
/// hold them live on. A shell with two children is dumped with --leave-running, then only
/// the shell is killed: its pid is free, its children's are not. (The pids are checked
/// before anything is forked; should one be taken between that check and its fork, the
/// tree guard kills only tasks the restore made: crust's child or traced by crust.)
#[test]
fn a_restore_that_finds_pids_busy_kills_none_of_their_owners() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let base = tempdir("busy-pids");
    let (mut target, children) = shell_with_two_children("sleep 1000 | cat");
    let pid = target.id();
    let dump = base.join("dump");
    let output = crust().args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"]).arg(&dump).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    signal(pid as i32, libc::SIGKILL);
    let _ = target.wait();
    let output = crust().args(["restore", "-d", "--shell-job", "-D"]).arg(&dump).output().unwrap();
    let line = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let alive: Vec<bool> = children.iter().map(|c| std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| !s.contains(") Z "))).collect();
    for &child in &children {
        signal(child, libc::SIGKILL);
        wait_exit(child);
    }
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        signal(pid as i32, libc::SIGKILL);
        wait_exit(pid as i32);
    }
    assert!(!output.status.success(), "a restore onto busy pids succeeded: {line}");
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(line.contains("busy"), "{line}");
    assert_eq!(alive, [true, true], "the processes holding the dumped pids {children:?} were killed by the failed restore ({line})");
    let _ = std::fs::remove_dir_all(&base);
}

/// Processes that share an fd table (CLONE_FILES) or a cwd, root and umask (CLONE_FS)
/// are refused in one line naming both, and both keep running untraced.
#[test]
fn shared_fd_tables_and_fs_info_are_refused_and_the_target_keeps_running() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("shared-tables");
    let binary = common::compile(&base, "shared_tables", &[]);
    for (kind, what) in [("files", "an fd table shared with pid {} (CLONE_FILES)"), ("fs", "a cwd, root and umask shared with pid {} (CLONE_FS)")] {
        // Killed and reaped however the test ends.
        let (pid, said, _target) = start_target(&binary, &[kind.as_ref()]);
        let child: i32 = said.trim().parse().unwrap();
        let images = base.join("images");
        let refusal = refused_dump(pid, &images);
        assert_eq!(refusal, format!("crust: dump pid {child}: {} is not supported yet", what.replace("{}", &pid.to_string())));
        for process in [pid, child] {
            assert_running_untraced(process, "");
        }
        let _ = std::fs::remove_dir_all(&images);
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Issue 18's files crust refuses, each in one line naming it, with the target left
/// running untraced: an epoll watch whose fd number no longer holds the file, an AIO
/// context, a fanotify group, a hugetlb memfd, a namespace file, an unlinked file whose
/// directory was removed too, /dev/tty of a session of the tree.
#[test]
fn issue_18_file_refusals_leave_the_target_running() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let base = tempdir("refused-state");
    let binary = common::compile(&base, "refused_state", &[]);
    for (mode, what) in [
        ("epoll", "epoll watch of fd "),
        ("aio", "AIO context (io_setup) ring at "),
        ("fanotify", "fanotify"),
        ("hugetlb", "hugetlb memfd"),
        ("nsfs", "(uts:["),
        ("ghost-dir", "gone/file): an unlinked file whose directory "),
        ("devtty", "(/dev/tty, the controlling terminal through /dev/tty"),
    ] {
        // Killed and reaped however the test ends.
        let (pid, said, _target) = start_target(&binary, &[mode.as_ref(), base.as_os_str()]);
        if let Some(reason) = said.strip_prefix("skip ") {
            eprintln!("{mode}: skipped: {reason}");
            continue;
        }
        let holder: i32 = said.strip_prefix("ready ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{mode}: {said}"));
        let images = base.join("images");
        let line = refused_dump(pid, &images);
        assert!(line.starts_with(&format!("crust: dump pid {holder}: ")) && line.contains(what) && line.ends_with("is not supported yet"), "{mode}: {line}");
        for process in [pid, holder] {
            assert_running_untraced(process, mode);
        }
        let _ = std::fs::remove_dir_all(&images);
    }
    let _ = std::fs::remove_dir_all(&base);
}
