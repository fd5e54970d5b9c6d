//! Every option of CRIU 4.2's command line, walked through `crust dump` and `crust
//! restore` of a sleeping process. The list comes from the reference CRIU's own texts,
//! committed as fixtures (`tests/data/criu-4.2-help.txt`, its `criu --help`, and
//! `tests/data/criu-4.2-options.txt`, its getopt table), never from running CRIU. Each
//! option must be done, or refused in one line with exit 1: never a usage error (exit
//! 2, a usage text) or a panic. Where the dump and restore go through, the restored
//! process must be the same one (same pid, its memory intact).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{compile, crust, signal, skip_reason, subreaper, tempdir, wait_exit};

/// The options of the two fixtures: long name → argument kind (0 none, 1 required,
/// 2 optional), plus every short letter the help text shows.
fn criu_options() -> (BTreeMap<String, u8>, Vec<(char, String)>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut long = BTreeMap::new();
    let mut short = Vec::new();
    for line in std::fs::read_to_string(data.join("criu-4.2-options.txt")).unwrap().lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        long.insert(words[0].to_string(), words[1].parse().unwrap());
        if words[2] != "-" {
            short.push((words[2].chars().next().unwrap(), words[0].to_string()));
        }
    }
    let help = std::fs::read_to_string(data.join("criu-4.2-help.txt")).unwrap();
    for word in help.split(|c: char| c.is_whitespace() || c == '\'' || c == '(' || c == ')' || c == ',') {
        // `-t|--tree`, `-v[v...]|--verbosity`, `-vNUM|--verbosity=NUM`.
        if let Some((letters, rest)) = word.split_once("|--") {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            let letter = letters.trim_start_matches('-').chars().next().unwrap();
            assert!(long.contains_key(&name), "--{name} of the help text is in the getopt table");
            if !short.iter().any(|(l, _)| *l == letter) {
                short.push((letter, name));
            }
        }
        let mut rest = word;
        while let Some(at) = rest.find("--") {
            let name: String = rest[at + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            // (`--no-` alone is the help's note on negation.)
            if !name.is_empty() && !name.ends_with('-') {
                assert!(long.contains_key(&name), "--{name} of the help text is in the getopt table");
            }
            rest = &rest[at + 2..];
        }
    }
    (long, short)
}

/// A value each option that takes one gets in the walk.
fn sample_value(name: &str, scratch: &Path) -> String {
    let value = match name {
        "images-dir" | "tree" => unreachable!("filled in per target"),
        "work-dir" => return scratch.join("work").display().to_string(),
        "config" => return scratch.join("empty.conf").display().to_string(),
        "action-script" => return scratch.join("hook.sh").display().to_string(),
        "log-file" => "walk.log",
        "pidfile" => "walk.pid",
        "root" => "/",
        "join-ns" => "net:/proc/self/ns/net",
        "close" | "status-fd" | "ps-socket" => "99",
        "veth-pair" => "eth0=veth0",
        "address" => "127.0.0.1",
        "port" => "12345",
        "libdir" => "/usr/lib/criu",
        "ext-mount-map" => "/mnt:/mnt",
        "cgroup-root" => "/",
        "inherit-fd" => "fd[99]:/dev/null",
        "feature" => "mnt_id",
        "skip-mnt" => "/proc",
        "enable-fs" => "all",
        "freeze-cgroup" | "cgroup-yard" => "/sys/fs/cgroup",
        "ghost-limit" => "1M",
        "irmap-scan-path" => "/",
        "lsm-profile" => "apparmor:unconfined",
        "timeout" => "10",
        "external" => "unix[12345]",
        "empty-ns" => "net",
        "cgroup-props" => "\"cpu\":\n - \"strategy\": \"merge\"",
        "cgroup-props-file" => "/dev/null",
        "cgroup-dump-controller" => "cpu",
        "tls-cacert" | "tls-cacrl" | "tls-cert" | "tls-key" => "/dev/null",
        "pre-dump-mode" => "splice",
        "file-validation" => "filesize",
        "lsm-mount-context" => "system_u:object_r:container_file_t:s0",
        "network-lock" => "nftables",
        "prev-images-dir" => "../pre",
        other => panic!("no sample value for --{other}: add one"),
    };
    value.to_string()
}

/// The walks: each is the words of one option as a script would write them.
fn walks(scratch: &Path) -> Vec<(String, Vec<String>)> {
    let (long, short) = criu_options();
    let mut out = Vec::new();
    for (name, arg) in &long {
        let words = match (name.as_str(), arg) {
            ("tree" | "images-dir", _) => continue, // every walk passes them
            (_, 0) | (_, 2) => vec![format!("--{name}")],
            (_, _) => vec![format!("--{name}"), sample_value(name, scratch)],
        };
        out.push((format!("--{name}"), words));
        if *arg == 1 {
            out.push((format!("--{name}="), vec![format!("--{name}={}", sample_value(name, scratch))]));
        }
    }
    for (letter, name) in short {
        let words = match (name.as_str(), long[&name]) {
            ("tree" | "images-dir", _) => continue,
            (_, 1) => vec![format!("-{letter}"), sample_value(&name, scratch)],
            _ => vec![format!("-{letter}")],
        };
        out.push((format!("-{letter}"), words));
    }
    // Optional values, and CRIU's verbosity forms.
    for words in [
        &["--manage-cgroups=ignore"][..],
        &["--manage-cgroups=soft"],
        &["--cpu-cap=none"],
        &["--cpu-cap=fpu"],
        &["--cpu-cap=cpu"],
        &["--ext-unix-sk=12345"],
        &["-v4"],
        &["-vvvv"],
        &["--verbosity=4"],
        &["--network-lock", "iptables"],
        &["--network-lock", "skip"],
        &["--root", "/tmp"],
    ] {
        out.push((words.join(" "), words.iter().map(|w| w.to_string()).collect()));
    }
    out
}

/// A started target, killed and reaped on drop if still there.
struct Target {
    pid: i32,
    out: PathBuf,
    reaped: bool,
}

impl Target {
    fn start(binary: &Path, out: PathBuf) -> Target {
        let mut command = std::process::Command::new(binary);
        command.arg(&out).arg("1");
        let (child, text, _) = common::start_with_pipes(&mut command, 0);
        assert_eq!(text.trim(), child.id().to_string(), "target wrote its pid");
        Target { pid: child.id() as i32, out, reaped: false }
    }

    /// Its wait status if it has ended (reaping it), `None` if it still runs.
    fn ended(&mut self) -> Option<i32> {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if rc == self.pid {
            self.reaped = true;
            Some(status)
        } else {
            None
        }
    }

    fn kill(&mut self) {
        if !self.reaped {
            signal(self.pid, libc::SIGKILL);
            wait_exit(self.pid);
            self.reaped = true;
        }
    }

    /// The restored process answers: SIGUSR1 makes it check its memory and exit 0.
    fn check_restored(&mut self, what: &str) {
        signal(self.pid, libc::SIGUSR1);
        let status = wait_exit(self.pid);
        self.reaped = true;
        assert_eq!(std::fs::read_to_string(&self.out).unwrap_or_default(), "PASS\n", "{what}: restored memory");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{what}: status {status:#x}");
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.reaped {
            signal(self.pid, libc::SIGKILL);
            let mut status = 0;
            // SAFETY: status is a valid out-pointer.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }
}

/// Runs `command` to its end, failing the test (and killing it) if that takes more than
/// a minute: a crust that waits where it should not must not hang the suite.
fn output_within(mut command: std::process::Command, what: &str) -> Output {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // SAFETY: pidfd_open takes integers; the fd it returns is ours.
    let pidfd = unsafe { OwnedFd::from_raw_fd(libc::syscall(libc::SYS_pidfd_open, child.id(), 0) as i32) };
    let mut poll = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, 60_000) };
    if ready != 1 {
        signal(child.id() as i32, libc::SIGKILL);
        let _ = child.wait_with_output();
        panic!("{what}: still running after a minute");
    }
    child.wait_with_output().unwrap()
}

/// No usage error, no panic, and a failure is one line naming crust.
fn assert_no_usage_error(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(2), "{what}: exit 2\n{stderr}");
    assert_ne!(output.status.code(), Some(101), "{what}: panic\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panic\n{stderr}");
    assert!(!stderr.contains("Usage:") && !stderr.contains("error: "), "{what}: usage text\n{stderr}");
    if !output.status.success() {
        assert_eq!(output.status.code(), Some(1), "{what}: exit code\n{stderr}");
        let lines: Vec<&str> = stderr.trim().lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line\n{stderr}");
        assert!(lines[0].starts_with("crust: "), "{what}: {stderr}");
    }
}

#[test]
fn every_criu_option_goes_through_dump_and_restore() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("walk");
    let binary = compile(&scratch, "pattern", &[]);
    std::fs::create_dir_all(scratch.join("work")).unwrap();
    std::fs::write(scratch.join("empty.conf"), "# nothing\n").unwrap();
    std::fs::write(scratch.join("hook.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(scratch.join("hook.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (mut dumped, mut restored, mut refused) = (0, 0, Vec::new());
    for (index, (what, words)) in walks(&scratch).into_iter().enumerate() {
        let images = scratch.join(format!("img-{index}"));
        std::fs::create_dir_all(&images).unwrap();
        let mut target = Target::start(&binary, scratch.join(format!("out-{index}")));
        if words.iter().any(|w| w.contains("prev-images-dir")) {
            let _ = std::fs::remove_dir_all(scratch.join("pre"));
            let pre = crust().args(["pre-dump", "-t", &target.pid.to_string(), "-D"]).arg(scratch.join("pre")).output().unwrap();
            assert!(pre.status.success(), "{what}: pre-dump: {}", String::from_utf8_lossy(&pre.stderr));
            // The sample value `../pre` is relative to the images directory.
        }
        let mut dump = crust();
        dump.args(["dump", "-t", &target.pid.to_string(), "-D"]).arg(&images).args(["-o", "dump.log"]).args(&words);
        let dump = output_within(dump, &format!("dump {what}"));
        assert_no_usage_error(&format!("dump {what}"), &dump);
        if target.ended().is_none() {
            // Refused, --leave-running, --help or --version: the target runs on.
            target.kill();
        }
        if !dump.status.success() {
            refused.push(format!("dump {what}: {}", String::from_utf8_lossy(&dump.stderr).trim()));
            continue;
        }
        if !images.join("inventory.img").exists() {
            continue; // --help, --version: no dump was asked for
        }
        dumped += 1;
        // The option first: `-d` after it keeps the restore detached even for
        // --no-restore-detached (whose waiting `restore_waits_for_the_root` tests).
        let mut restore = crust();
        restore.arg("restore").args(&words).args(["-d", "-D"]).arg(&images).args(["-o", "restore.log"]);
        if words[0] == "--exec-cmd" {
            restore.args(["--", "/bin/true"]);
        }
        let output = output_within(restore, &format!("restore {what}"));
        assert_no_usage_error(&format!("restore {what}"), &output);
        if output.status.success() && std::path::Path::new(&format!("/proc/{}", target.pid)).exists() {
            restored += 1;
            if words[0] == "-s" || words[0] == "--leave-stopped" {
                signal(target.pid, libc::SIGCONT);
            }
            target.reaped = false;
            target.check_restored(&format!("restore {what}"));
        } else {
            refused.push(format!("restore {what}: {}", String::from_utf8_lossy(&output.stderr).trim()));
            // Nothing of a refused restore runs.
            assert!(!Path::new(&format!("/proc/{}", target.pid)).exists(), "restore {what} left pid {}", target.pid);
        }
    }
    eprintln!("{dumped} dumps and {restored} restores went through; refused in one line:\n{}", refused.join("\n"));
    assert!(dumped > 80 && restored > 60, "{dumped} dumps, {restored} restores");
}

/// Without `-d`, restore waits until the restored root ends and then exits 0 whatever
/// the root's status, as CRIU does; `-d` returns at once.
#[test]
fn restore_waits_for_the_root() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("wait");
    let binary = compile(&scratch, "pattern", &[]);
    let mut target = Target::start(&binary, scratch.join("out"));
    let images = scratch.join("img");
    let dump = crust().args(["dump", "-t", &target.pid.to_string(), "-D"]).arg(&images).output().unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    wait_exit(target.pid);
    use std::os::fd::AsRawFd;
    let (mut ready, ready_w) = std::io::pipe().unwrap();
    // The post-resume script tells the test the tree runs (and which pid it has), on fd
    // 9: dash takes one digit after `>&`, and the pipe's own fd may have two when other
    // tests run alongside (then the hook fails and the read below waits forever).
    let hook = scratch.join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-resume ] && echo $CRTOOLS_INIT_PID >&9\nexit 0\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut restore = crust();
    restore.args(["restore", "-D"]).arg(&images).arg("--action-script").arg(&hook);
    let fd = ready_w.as_raw_fd();
    // SAFETY: the closure only duplicates one fd onto fd 9, without FD_CLOEXEC (dup2 is
    // async-signal-safe).
    unsafe {
        use std::os::unix::process::CommandExt;
        restore.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC: clear it then.
            if (fd == 9 && libc::fcntl(fd, libc::F_SETFD, 0) < 0) || libc::dup2(fd, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = restore.spawn().unwrap();
    drop(ready_w);
    // One line (crust itself holds the pipe open while it waits).
    let mut text = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut ready), &mut text).unwrap();
    assert_eq!(text.trim(), target.pid.to_string(), "post-resume names the restored root");
    assert!(child.try_wait().unwrap().is_none(), "restore without -d returned while the root runs");
    // The root dies of a signal: crust still exits 0, as CRIU.
    signal(target.pid, libc::SIGKILL);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // crust reaped its child; the test reaps nothing more.
    target.reaped = true;
}

/// Options before the verb, unknown options and stray words: one line, exit 1.
#[test]
fn unknown_options_and_words_are_one_line_errors() {
    for (args, expected) in [
        (&["dump", "--bogus"][..], "crust: unknown option --bogus"),
        (&["--bogus", "restore"], "crust: unknown option --bogus"),
        (&["restore", "-Z"], "crust: unknown option -Z"),
        (&["restore", "-D"], "crust: option -D needs an argument"),
        (&["restore", "--tcp-established=yes"], "crust: option --tcp-established takes no argument"),
        (&["dump", "-t", "1", "extra"], "crust: unexpected argument extra: dump takes options only"),
        (&["restore", "--manage-cgroups=sometimes"], "crust: unknown cgroups mode `sometimes' (none, props, soft, full, strict, ignore)"),
        (&["restore", "--network-lock", "pf"], "crust: invalid value for --network-lock: pf (iptables, nftables or skip)"),
        (&["frob"], "crust: unknown command frob (crust --help lists them)"),
        (&["dedup"], "crust: dedup is not supported yet"),
        (&["dump"], "crust: dump needs the tree's root: -t PID"),
    ] {
        let output = crust().args(args).env("HOME", "/nonexistent").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim(), expected, "{args:?}");
    }
}

/// `--action-script` runs at every point the reference CRIU 4.2.1 runs it at for a tree
/// in crust's namespaces (pre-dump, post-dump; pre-restore, post-restore, pre-resume,
/// post-resume), with CRIU's environment; a failing pre-dump script fails the dump
/// before the tree is touched.
#[test]
fn action_scripts_get_criu_s_environment() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("hooks");
    let binary = compile(&scratch, "pattern", &[]);
    let record = scratch.join("record");
    let hook = scratch.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$CRTOOLS_SCRIPT_ACTION $CRTOOLS_IMAGE_DIR ${{CRTOOLS_INIT_PID:-none}}\" >> {}\n[ ! -e {}/fail ]\n",
            record.display(),
            scratch.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut target = Target::start(&binary, scratch.join("out"));
    let images = scratch.join("img");
    std::fs::create_dir_all(&images).unwrap();
    let images = images.canonicalize().unwrap();

    std::fs::write(scratch.join("fail"), "").unwrap();
    let output = crust().args(["dump", "-t", &target.pid.to_string(), "-D"]).arg(&images).arg("--action-script").arg(&hook).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed at pre-dump"), "{stderr}");
    assert!(target.ended().is_none(), "the target runs on after a failed pre-dump script");
    std::fs::remove_file(scratch.join("fail")).unwrap();

    let output = crust()
        .args(["dump", "-t", &target.pid.to_string(), "-D"])
        .arg(&images)
        .args(["-o", "dump.log"])
        .arg("--action-script")
        .arg(&hook)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    wait_exit(target.pid);
    let output = crust()
        .args(["restore", "-d", "-D"])
        .arg(&images)
        .args(["-o", "restore.log"])
        .arg(format!("--action-script={}", hook.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    target.check_restored("restore with an action script");
    let pid = target.pid;
    let dir = images.display();
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        format!(
            "pre-dump {dir} {pid}\npre-dump {dir} {pid}\npost-dump {dir} {pid}\n\
             pre-restore {dir} none\npost-restore {dir} {pid}\npre-resume {dir} {pid}\npost-resume {dir} {pid}\n"
        )
    );
}

impl Target {
    /// Starts `binary OUT ARGS...` (tests/data/holder.c).
    fn start_with(binary: &Path, out: PathBuf, args: &[&str]) -> Target {
        let mut command = std::process::Command::new(binary);
        command.arg(&out).args(args);
        let (child, text, _) = common::start_with_pipes(&mut command, 0);
        assert_eq!(text.trim(), child.id().to_string(), "target wrote its pid");
        Target { pid: child.id() as i32, out, reaped: false }
    }

    /// The state letter of /proc/PID/stat (R, S, T, ...).
    fn state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?')
    }
}

fn dump_of(target: &Target, images: &Path, extra: &[&str]) -> Output {
    let mut dump = crust();
    dump.args(["dump", "-t", &target.pid.to_string(), "-D"]).arg(images).args(["-o", "dump.log"]).args(extra);
    output_within(dump, "dump")
}

fn restore_of(images: &Path, extra: &[&str]) -> Output {
    let mut restore = crust();
    restore.args(["restore", "-d", "-D"]).arg(images).args(["-o", "restore.log"]).args(extra);
    output_within(restore, "restore")
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

/// The points inside the engine keep CRIU's rules for failures: a failed post-dump
/// script fails the dump and the tree runs on, not stopped, not killed; a failed
/// post-restore script fails the restore and kills the restored tree.
#[test]
fn failed_post_dump_releases_and_failed_post_restore_kills() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("hook-failures");
    let binary = compile(&scratch, "pattern", &[]);
    let hook = scratch.join("hook.sh");
    let fail_at = scratch.join("fail-at");
    std::fs::write(&hook, format!("#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" != \"$(cat {} 2>/dev/null)\" ]\n", fail_at.display())).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hook_arg = format!("--action-script={}", hook.display());
    let mut target = Target::start(&binary, scratch.join("out"));
    let images = scratch.join("img");

    std::fs::write(&fail_at, "post-dump").unwrap();
    let output = dump_of(&target, &images, &[&hook_arg]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("post-dump"), "{}", stderr_of(&output));
    assert!(target.ended().is_none(), "the tree runs on after a failed post-dump");
    assert!(matches!(target.state(), 'S' | 'R'), "not stopped or traced: {}", target.state());

    std::fs::write(&fail_at, "post-restore").unwrap();
    let output = dump_of(&target, &images, &[&hook_arg]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    wait_exit(target.pid);
    let output = restore_of(&images, &[&hook_arg]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("post-restore"), "{}", stderr_of(&output));
    assert!(!Path::new(&format!("/proc/{}", target.pid)).exists(), "the restored tree was killed");

    std::fs::remove_file(&fail_at).unwrap();
    let output = restore_of(&images, &[&hook_arg]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    target.reaped = false;
    target.check_restored("restore after the failed one");
}

/// `--file-locks`: without it a tree holding a lock fails the dump in one line naming
/// the pid, fd and lock, and runs on untouched; with it the lock is dumped and held
/// again after the restore.
#[test]
fn file_locks_are_dumped_only_when_asked() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("file-locks");
    let binary = compile(&scratch, "holder", &[]);
    let locked = scratch.join("locked");
    let mut target = Target::start_with(&binary, scratch.join("out"), &["lock", &locked.display().to_string()]);
    let images = scratch.join("img");
    let output = dump_of(&target, &images, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let pid = target.pid;
    assert!(
        stderr.contains(&format!("dump pid {pid}: fd 5 ({})", locked.display())) && stderr.contains("flock write lock") && stderr.contains("--file-locks"),
        "{stderr}"
    );
    assert!(target.ended().is_none() && matches!(target.state(), 'S' | 'R'), "the target runs on: {}", target.state());
    let output = dump_of(&target, &images, &["--file-locks"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    wait_exit(target.pid);
    let output = restore_of(&images, &["-l"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    target.reaped = false;
    target.check_restored("restore with --file-locks");
}

/// `--ghost-limit`: an unlinked file over the limit (CRIU's default 1 MiB) fails the
/// dump naming it and the limit it needs; a raised limit carries it.
#[test]
fn ghost_limit_is_enforced() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("ghost-limit");
    let binary = compile(&scratch, "holder", &[]);
    let file = scratch.join("unlinked");
    let size = (2 << 20) + 5;
    let mut target = Target::start_with(&binary, scratch.join("out"), &["ghost", &file.display().to_string(), &size.to_string()]);
    let images = scratch.join("img");
    let output = dump_of(&target, &images, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("unlinked file {}", file.display())) && stderr.contains(&format!("is {size} bytes")), "{stderr}");
    assert!(stderr.contains("--ghost-limit 3M"), "{stderr}");
    assert!(target.ended().is_none(), "the target runs on");
    let output = dump_of(&target, &images, &["--ghost-limit", "2M"]);
    assert_eq!(output.status.code(), Some(1), "2M is still too small: {}", stderr_of(&output));
    let output = dump_of(&target, &images, &["--ghost-limit", "3M"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    wait_exit(target.pid);
    let output = restore_of(&images, &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    target.reaped = false;
    target.check_restored("restore of the ghost file");
}

/// `--leave-stopped`: after a dump the tree is alive and stopped; after a restore the
/// restored tree is stopped until SIGCONT, then carries on.
#[test]
fn leave_stopped_after_dump_and_restore() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("leave-stopped");
    let binary = compile(&scratch, "pattern", &[]);
    let mut target = Target::start(&binary, scratch.join("out"));
    let images = scratch.join("img");
    let output = dump_of(&target, &images, &["--leave-stopped"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(target.ended().is_none(), "alive after dump -s");
    assert_eq!(target.state(), 'T', "stopped after dump -s");
    target.kill();
    let output = restore_of(&images, &["-s"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(target.state(), 'T', "stopped after restore -s");
    signal(target.pid, libc::SIGCONT);
    target.reaped = false;
    target.check_restored("restore -s, then SIGCONT");
}

/// `--timeout`: a thread that cannot stop (a vfork parent waits uninterruptibly for its
/// child) fails the dump after the time given, and the tree is let go unchanged.
#[test]
fn timeout_bounds_the_seize() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("timeout");
    let binary = compile(&scratch, "holder", &[]);
    let mut target = Target::start_with(&binary, scratch.join("out"), &["vfork"]);
    let images = scratch.join("img");
    let started = std::time::Instant::now();
    let output = dump_of(&target, &images, &["--timeout", "1"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not stop within 1 s") && stderr.contains("--timeout 1"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "bounded: {:?}", started.elapsed());
    assert!(target.ended().is_none(), "the tree is let go");
    assert_eq!(target.state(), 'D', "still waiting for its vfork child");
    // The vfork child is the target's: kill both (the subreaper reaps the child).
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", target.pid)).unwrap_or_default();
    for child in children.split_whitespace() {
        signal(child.parse().unwrap(), libc::SIGKILL);
    }
    target.kill();
    for child in children.split_whitespace() {
        wait_exit(child.parse().unwrap());
    }
}

/// `--restore-sibling`: the restored root is the child of crust's parent (here the
/// test), which reaps it; without `-d` the restore is refused as CRIU refuses it.
#[test]
fn restore_sibling_makes_the_root_the_caller_s_child() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("sibling");
    let binary = compile(&scratch, "pattern", &[]);
    let mut target = Target::start(&binary, scratch.join("out"));
    let images = scratch.join("img");
    let output = dump_of(&target, &images, &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    wait_exit(target.pid);
    let mut restore = crust();
    restore.args(["restore", "--restore-sibling", "-D"]).arg(&images);
    let output = output_within(restore, "restore without -d");
    assert_eq!(stderr_of(&output), "crust: --restore-sibling only makes sense with --restore-detached (-d)");
    // Through a shell: the root must be the shell's child, not crust's (orphaned when
    // crust exits, it would go to the test, a subreaper).
    let crust_path = env!("CARGO_BIN_EXE_crust");
    let script = format!("\"$0\" restore -d --restore-sibling -D {} || exit 1; cut -d' ' -f4 /proc/{}/stat; echo $$", images.display(), target.pid);
    let output = std::process::Command::new("sh").arg("-c").arg(&script).arg(crust_path).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], lines[1], "the restored root is the child of crust's parent");
    target.reaped = false;
    target.check_restored("restore --restore-sibling");
}

/// `--inherit-fd fd[N]:pipe:[INO]`, runc's way of handing a restored container new
/// stdio: the dumped pipe's end is crust's fd N in the restored process, so what it
/// writes reaches the new pipe.
#[test]
fn inherit_fd_stands_for_a_dumped_pipe() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let scratch = tempdir("inherit-fd");
    let binary = compile(&scratch, "holder", &[]);
    let mut command = std::process::Command::new(&binary);
    command.arg(scratch.join("out")).arg("pipe");
    let (child, text, mut readers) = common::start_with_pipes(&mut command, 2);
    let mut target = Target { pid: child.id() as i32, out: scratch.join("out"), reaped: false };
    assert_eq!(text.trim(), target.pid.to_string());
    let link = std::fs::read_link(format!("/proc/{}/fd/5", target.pid)).unwrap().display().to_string();
    assert!(link.starts_with("pipe:["), "{link}");
    let images = scratch.join("img");
    let output = dump_of(&target, &images, &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    wait_exit(target.pid);

    let (mut fresh_r, fresh_w) = std::io::pipe().unwrap();
    let mut restore = crust();
    restore.args(["restore", "-d", "-D"]).arg(&images).args(["-o", "restore.log", "--inherit-fd", &format!("fd[7]:{link}")]);
    let fd = fresh_w.as_raw_fd();
    // SAFETY: the closure only calls dup2 and fcntl, which are async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        restore.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec.
            let rc = if fd == 7 { libc::fcntl(7, libc::F_SETFD, 0) } else { libc::dup2(fd, 7) };
            if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
        });
    }
    let output = output_within(restore, "restore --inherit-fd");
    assert!(output.status.success(), "{}", stderr_of(&output));
    drop(fresh_w);
    target.reaped = false;
    signal(target.pid, libc::SIGUSR1);
    let status = wait_exit(target.pid);
    target.reaped = true;
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
    let mut text = String::new();
    fresh_r.read_to_string(&mut text).unwrap();
    assert_eq!(text, format!("hello from {}\n", target.pid), "the restored fd 5 is the inherited pipe");
    let mut old = String::new();
    readers[1].read_to_string(&mut old).unwrap();
    assert_eq!(old, "", "nothing went to the dumped pipe");
}
