//! Interop with the reference crit (CRIU 4.2's `crit`, installed by
//! `ci/criu-reference.sh`, run through `ci/crit`), driving the built `crust` binary:
//!
//! - crit reads every image crust writes (fixture images and a real `crust dump` of a
//!   process tree with threads) to the JSON `crust show` prints;
//! - crust decodes what `crit encode` writes from JSON to the same JSON, and `crust
//!   encode` writes the same bytes as `crit encode`;
//! - on real CRIU dumps (`images/tests/criu-fixtures/`) `crust show` equals `crit show`,
//!   `crust x` equals `crit x`, and `crust encode` of crit's JSON gives back the dumped
//!   bytes.
//!
//! JSON is compared parsed, never as text. Without the reference crit the live
//! comparisons say `skipped: <reason>` (the ones against crit's committed JSON still run);
//! under `CI=true` a missing reference fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as Json;

mod common;

/// Images where crit, not crust, is wrong; compared with the named adjustment.
const CRIT_QUIRKS: &[(&str, &str)] = &[
    (
        "ipcns-shm",
        "crit reads `size` bytes after an in_pagemaps segment (which has none: it prints \
         \"extra\": \"\" at the end of the file and eats the next entry otherwise), and its \
         encode of an ipcns-shm image fails (TypeError in ipc_shm_handler.dump)",
    ),
    (
        "bpfmap-data",
        "crit's encode of a bpfmap-data image fails (TypeError in \
         bpfmap_data_extra_handler.dump, as for ipcns-shm)",
    ),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ sits in the repository")
        .to_path_buf()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// `ci/crit` when the reference root is installed; otherwise prints why the live
/// comparisons are skipped (and fails under `CI=true`).
fn reference_crit(test: &str) -> Option<PathBuf> {
    let root = std::env::var_os("CRUST_CRIU_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/criu-root"));
    let missing = [
        "lib64/ld-linux-x86-64.so.2",
        "usr/bin/crit",
        "usr/bin/python3",
    ]
    .into_iter()
    .find(|file| !root.join(file).exists());
    let reason = match missing {
        None if cfg!(target_arch = "x86_64") => return Some(repo_root().join("ci/crit")),
        None => "the reference root is an x86_64 one".to_string(),
        Some(file) => format!(
            "reference crit not installed ({} missing; run ci/criu-reference.sh)",
            root.join(file).display()
        ),
    };
    assert!(
        !in_ci(),
        "{test}: CI=true needs the reference crit: {reason}"
    );
    eprintln!("{test}: skipped: {reason}");
    None
}

fn crust() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crust"))
}

/// Runs a command that must succeed; returns its stdout.
fn run(command: &mut Command) -> Vec<u8> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn json_of(bytes: &[u8], what: &str) -> Json {
    serde_json::from_slice(bytes).unwrap_or_else(|error| {
        panic!(
            "{what}: not JSON ({error}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// Where two JSON values first differ, as a path, for a readable assertion.
fn first_difference(left: &Json, right: &Json, path: &str) -> Option<String> {
    match (left, right) {
        (Json::Object(left_map), Json::Object(right_map)) => {
            for key in left_map.keys().chain(right_map.keys()) {
                let here = format!("{path}.{key}");
                match (left_map.get(key), right_map.get(key)) {
                    (Some(left), Some(right)) => {
                        if let Some(found) = first_difference(left, right, &here) {
                            return Some(found);
                        }
                    }
                    (left, right) => return Some(format!("{here}: {left:?} vs {right:?}")),
                }
            }
            None
        }
        (Json::Array(left_items), Json::Array(right_items)) => {
            if left_items.len() != right_items.len() {
                return Some(format!(
                    "{path}: {} vs {} items",
                    left_items.len(),
                    right_items.len()
                ));
            }
            left_items
                .iter()
                .zip(right_items)
                .enumerate()
                .find_map(|(index, (left, right))| {
                    first_difference(left, right, &format!("{path}[{index}]"))
                })
        }
        _ if left == right => None,
        _ => Some(format!("{path}: {left} vs {right}")),
    }
}

fn assert_same_json(crust_json: &Json, crit_json: &Json, what: &str) {
    if let Some(difference) = first_difference(crust_json, crit_json, "") {
        panic!("{what}: crust and crit differ at {difference} (crust first)");
    }
}

/// The images of a dump directory that carry entries (every file but raw pages and
/// what is not an image), sorted.
fn images_in(dir: &Path) -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            let name = file_name(path);
            // crust-checksums.img is crust's own image, which crit does not know.
            !name.starts_with("pages-") && !name.ends_with(".log") && !name.ends_with(".md") && name != "crust-checksums.img"
        })
        .collect();
    images.sort();
    images
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|name| name.to_str())
        .expect("utf-8 file name")
}

/// crit reads only little-endian framing (it unpacks the magic with the host's order).
fn is_big_endian(image: &Path) -> bool {
    let bytes = std::fs::read(image).expect("read image");
    bytes.len() >= 4 && u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == 0x1943_5654
}

fn quirk(image_name: &str) -> Option<&'static str> {
    CRIT_QUIRKS
        .iter()
        .find(|(prefix, _)| image_name.starts_with(prefix))
        .map(|(_, why)| *why)
}

/// crit's JSON of an ipcns-shm image with the `"extra": ""` it invents for segments kept
/// in the pagemaps removed (see [`CRIT_QUIRKS`]).
fn without_invented_shm_extra(mut crit_json: Json) -> Json {
    if let Some(entries) = crit_json["entries"].as_array_mut() {
        for entry in entries {
            let in_pagemaps = entry["in_pagemaps"] == Json::Bool(true);
            if let Some(entry) = entry.as_object_mut() {
                if in_pagemaps && entry.get("extra") == Some(&Json::String(String::new())) {
                    entry.remove("extra");
                }
            }
        }
    }
    crit_json
}

/// `crust show` and `crust decode` of `image` against crit's (crit's `show` is its
/// `decode --pretty`); returns the number of comparisons made.
fn compare_show_and_decode(crit: &Path, image: &Path) -> usize {
    let name = file_name(image);
    let mut compared = 0;
    for args in [&["show"][..], &["decode", "-i"][..]] {
        let crust_json = json_of(&run(crust().args(args).arg(image)), "crust");
        let mut crit_json = json_of(&run(Command::new(crit).args(args).arg(image)), "crit");
        if name.starts_with("ipcns-shm") {
            crit_json = without_invented_shm_extra(crit_json);
        }
        assert_same_json(
            &crust_json,
            &crit_json,
            &format!("{args:?} {}", image.display()),
        );
        compared += 1;
    }
    compared
}

/// `crust x DIR ps|fds|mems|rss` prints what `crit x` prints, byte for byte.
fn compare_explore(crit: &Path, dir: &Path) {
    for what in ["ps", "fds", "mems", "rss"] {
        let ours = run(crust().arg("x").arg(dir).arg(what));
        let theirs = run(Command::new(crit).arg("x").arg(dir).arg(what));
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "x {} {what}",
            dir.display()
        );
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crust-crit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn fixture_dirs() -> Vec<PathBuf> {
    let fixtures = repo_root().join("images/tests/fixtures");
    vec![fixtures.join("dump"), fixtures.join("arch")]
}

fn criu_fixture_dirs() -> Vec<PathBuf> {
    let root = repo_root().join("images/tests/criu-fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("images/tests/criu-fixtures")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no CRIU dumps under {}", root.display());
    dirs
}

/// (a) crit reads our fixture images (written by crust's writer) as crust does.
#[test]
fn crit_reads_fixture_images_as_crust_does() {
    let Some(crit) = reference_crit("crit_reads_fixture_images_as_crust_does") else {
        return;
    };
    let (mut images, mut comparisons, mut big_endian) = (0, 0, Vec::new());
    for dir in fixture_dirs() {
        for image in images_in(&dir) {
            if is_big_endian(&image) {
                big_endian.push(file_name(&image).to_string());
                continue;
            }
            comparisons += compare_show_and_decode(&crit, &image);
            images += 1;
        }
    }
    assert!(images > 20, "only {images} fixture images");
    eprintln!(
        "fixture images: {images} compared ({comparisons} show/decode outputs); \
         not given to crit, which reads only little-endian framing: {big_endian:?}"
    );
}

/// (b) crust decodes what `crit encode` writes, and `crust encode` writes the same bytes.
/// JSON sources: crit's committed JSON of the CRIU dumps (pretty) and crust's own JSON
/// of every fixture image, plain and pretty.
#[test]
fn crust_decodes_what_crit_encodes() {
    let Some(crit) = reference_crit("crust_decodes_what_crit_encodes") else {
        return;
    };
    let scratch = tempdir("encode");
    let mut sources: Vec<(PathBuf, String, bool)> = Vec::new(); // (json, image name, pretty)
    for dir in criu_fixture_dirs() {
        for json in images_in(&dir.join("crit-json")) {
            let stem = file_name(&json).trim_end_matches(".json").to_string();
            let image_name = if dir.join(format!("{stem}.img")).exists() {
                format!("{stem}.img")
            } else {
                stem
            };
            sources.push((json, image_name, true));
        }
    }
    let mut skipped = Vec::new();
    for dir in fixture_dirs() {
        for image in images_in(&dir) {
            let name = file_name(&image).to_string();
            if let Some(why) = quirk(&name) {
                skipped.push(format!("{name}: {why}"));
                continue;
            }
            for pretty in [false, true] {
                let json = scratch.join(format!(
                    "{}-{name}.json",
                    if pretty { "pretty" } else { "plain" }
                ));
                let mut decode = crust();
                decode
                    .arg("decode")
                    .arg("-i")
                    .arg(&image)
                    .arg("-o")
                    .arg(&json);
                if pretty {
                    decode.arg("--pretty");
                }
                run(&mut decode);
                sources.push((json, name.clone(), pretty));
            }
        }
    }
    for (index, (json, image_name, pretty)) in sources.iter().enumerate() {
        let dir = scratch.join(format!("{index}"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let crit_image = dir.join(image_name);
        run(Command::new(&crit)
            .arg("encode")
            .arg("-i")
            .arg(json)
            .arg("-o")
            .arg(&crit_image));
        let mut decode = crust();
        decode.arg("decode").arg("-i").arg(&crit_image);
        if *pretty {
            decode.arg("--pretty");
        }
        let decoded = json_of(&run(&mut decode), "crust decode");
        let expected = json_of(&std::fs::read(json).expect("read json"), "json source");
        assert_same_json(
            &decoded,
            &expected,
            &format!("crit encode of {}", json.display()),
        );
        let crust_image = dir.join(format!("crust-{image_name}"));
        run(crust()
            .arg("encode")
            .arg("-i")
            .arg(json)
            .arg("-o")
            .arg(&crust_image));
        assert!(
            std::fs::read(&crust_image).expect("crust image")
                == std::fs::read(&crit_image).expect("crit image"),
            "crust encode and crit encode of {} give different bytes",
            json.display()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "crit encode -> crust decode: {} JSON documents; skipped: {skipped:?}",
        sources.len()
    );
}

/// (c) On real CRIU dumps: crust decodes every image to crit's committed JSON and encodes
/// that JSON back to the dumped bytes (no reference needed); with the reference, `crust
/// show`/`decode` equal the live crit's and `crust x` prints what `crit x` prints.
#[test]
fn crust_reads_criu_dumps_as_crit_does() {
    let scratch = tempdir("criu-dumps");
    let mut committed = 0;
    for dir in criu_fixture_dirs() {
        let images = images_in(&dir);
        assert!(
            images.len() >= 10,
            "{}: only {} images",
            dir.display(),
            images.len()
        );
        for image in &images {
            let name = file_name(image);
            let stem = name.strip_suffix(".img").unwrap_or(name);
            let crit_json_path = dir.join("crit-json").join(format!("{stem}.json"));
            let crit_json = json_of(
                &std::fs::read(&crit_json_path)
                    .unwrap_or_else(|error| panic!("{}: {error}", crit_json_path.display())),
                "committed crit JSON",
            );
            let ours = json_of(
                &run(crust().args(["decode", "--pretty", "-i"]).arg(image)),
                "crust",
            );
            assert_same_json(
                &ours,
                &crit_json,
                &format!("decode --pretty {}", image.display()),
            );
            let encoded = scratch.join(name);
            run(crust()
                .arg("encode")
                .arg("-i")
                .arg(&crit_json_path)
                .arg("-o")
                .arg(&encoded));
            assert!(
                std::fs::read(&encoded).expect("encoded") == std::fs::read(image).expect("image"),
                "crust encode of {} does not give back {} byte for byte",
                crit_json_path.display(),
                image.display()
            );
            committed += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "CRIU dumps: {committed} images equal crit's committed JSON and re-encode identically"
    );
    let Some(crit) = reference_crit("crust_reads_criu_dumps_as_crit_does (live crit)") else {
        return;
    };
    let (mut live, mut info_skipped) = (0, Vec::new());
    for dir in criu_fixture_dirs() {
        for image in images_in(&dir) {
            live += compare_show_and_decode(&crit, &image);
        }
        compare_explore(&crit, &dir);
        for image in images_in(&dir) {
            // crit's info counts the raw payload after an entry as more length-prefixed
            // entries (its count depends on the payload bytes); compare where there is none
            let shown = json_of(&run(crust().arg("show").arg(&image)), "crust show");
            let has_payload = shown["entries"]
                .as_array()
                .is_some_and(|entries| entries.iter().any(|entry| entry.get("extra").is_some()));
            if has_payload {
                info_skipped.push(file_name(&image).to_string());
                continue;
            }
            let ours = json_of(&run(crust().arg("info").arg(&image)), "crust info");
            let theirs = json_of(
                &run(Command::new(&crit).arg("info").arg(&image)),
                "crit info",
            );
            assert_eq!(ours, theirs, "info {}", image.display());
        }
    }
    eprintln!(
        "CRIU dumps: {live} show/decode outputs equal the live crit's; x and info agree \
         (info not compared on images with payloads: {info_skipped:?})"
    );
}

/// A small process tree with threads, files and signal state for `crust dump`: the
/// leader holds a regular file at an offset, an unlinked (ghost) file, a second thread,
/// a SIGUSR2 handler, a blocked pending SIGUSR1 and an interval timer; its child sleeps.
/// It writes its pid on fd 3 and closes it once all is set up, then sleeps until killed.
const TREE_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static void on_usr2(int sig) { (void)sig; }
static void *sleeper(void *arg) { (void)arg; for (;;) pause(); return NULL; }

int main(int argc, char **argv) {
    (void)argc;
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null);
    for (int fd = 4; fd < 1024; fd++) close(fd);
    char path[4096];
    snprintf(path, sizeof path, "%s/kept", argv[1]);
    int kept = open(path, O_RDWR | O_CREAT, 0644);
    if (write(kept, "crust and crit", 14) != 14) return 1;
    lseek(kept, 6, SEEK_SET);
    snprintf(path, sizeof path, "%s/ghost", argv[1]);
    int ghost = open(path, O_RDWR | O_CREAT, 0600);
    if (write(ghost, "gone but kept", 13) != 13) return 1;
    unlink(path);
    struct sigaction sa = { .sa_handler = on_usr2 };
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);
    struct itimerval timer = { .it_interval = { 1000, 0 }, .it_value = { 1000, 0 } };
    setitimer(ITIMER_REAL, &timer, NULL);
    /* An OFD lock (filelocks.img), a pty pair (two tty-info entries), a pidfd. */
    struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 4 };
    if (fcntl(kept, F_OFD_SETLK, &lock)) return 1;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) return 1;
    if (open(ptsname(master), O_RDWR | O_NOCTTY) < 0) return 1;
    pid_t child = fork();
    if (child == 0) {
        close(3);
        for (;;) pause();
    }
    if (syscall(SYS_pidfd_open, child, 0) < 0) return 1;
    pthread_t thread;
    pthread_create(&thread, NULL, sleeper, NULL);
    dprintf(3, "%d\n", getpid());
    close(3);
    for (;;) pause();
}
"#;

/// "core" for "core-4711.img", "ghost-file" for "ghost-file-1a.img", "files" for "files.img".
fn image_kind(name: &str) -> &str {
    let stem = name.strip_suffix(".img").unwrap_or(name);
    match stem.rsplit_once('-') {
        Some((kind, id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) => kind,
        _ => stem,
    }
}

/// Why this machine cannot make a real crust dump, if it cannot.
fn dump_skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|line| line.starts_with("Uid:\t0\t")) {
        return Some("crust dump needs root (ptrace)".into());
    }
    let compiler = Command::new("cc")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !compiler.is_ok_and(|status| status.success()) {
        return Some("needs a C compiler (cc)".into());
    }
    None
}

/// Kills the test tree's process group unless the dump already did.
struct TreeGuard(i32);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: kill takes no pointers; the group is the tree's own session leader's.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
}

/// Starts the tree with a ready pipe on fd 3 and waits until it closes it.
fn start_tree(binary: &Path, files: &Path) -> (i32, std::process::Child) {
    let (mut read, write) = std::io::pipe().expect("pipe");
    let write = OwnedFd::from(write);
    let raw = write.as_raw_fd();
    let mut command = Command::new(binary);
    command
        .arg(files)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: the closure only calls dup2, which is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("start the tree");
    drop(write);
    drop(command);
    let mut text = String::new();
    read.read_to_string(&mut text).expect("read the ready pipe");
    assert_eq!(
        text.trim(),
        child.id().to_string(),
        "the tree wrote its pid"
    );
    (child.id() as i32, child)
}

/// (a) crit reads a real `crust dump` of a process tree with threads as crust does; crit's
/// JSON encodes back (through crust) to the bytes crust dumped. The tree also holds what
/// CRIU's image set has besides (an OFD lock, a pty pair, a pidfd), so every image kind
/// crust writes for CRIU 4.2 (seccomp, timens, stats-dump, tty-info with both sides,
/// filelocks) is compared.
#[test]
fn crit_reads_a_crust_dump_as_crust_does() {
    if let Some(reason) = dump_skip_reason() {
        assert!(
            !in_ci(),
            "CI=true must run the crust dump interop test: {reason}"
        );
        eprintln!("crit_reads_a_crust_dump_as_crust_does: skipped: {reason}");
        return;
    }
    let Some(crit) = reference_crit("crit_reads_a_crust_dump_as_crust_does") else {
        return;
    };
    let dir = tempdir("dump");
    let source = dir.join("tree.c");
    std::fs::write(&source, TREE_PROGRAM).expect("write tree.c");
    let binary = dir.join("tree");
    run(Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&binary)
        .arg(&source));
    let files = dir.join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let (pid, mut child) = start_tree(&binary, &files);
    let guard = TreeGuard(pid);
    let images = dir.join("img");
    // The OFD lock is dumped only when asked, as CRIU's.
    let output = crust()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .args(["-o", "dump.log", "-v4", "--file-locks"])
        .output()
        .expect("run crust dump");
    assert!(
        output.status.success(),
        "crust dump: {}{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(images.join("dump.log")).unwrap_or_default()
    );
    let _ = child.wait();
    drop(guard);

    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut comparisons = 0;
    let scratch = dir.join("re-encoded");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    for image in images_in(&images) {
        comparisons += compare_show_and_decode(&crit, &image);
        let name = file_name(&image);
        *kinds.entry(image_kind(name).to_string()).or_default() += 1;
        // crit's JSON back to bytes through crust: the bytes crust dumped
        let crit_json = scratch.join(format!("{name}.json"));
        run(Command::new(&crit)
            .arg("decode")
            .arg("-i")
            .arg(&image)
            .arg("-o")
            .arg(&crit_json));
        let encoded = scratch.join(name);
        run(crust()
            .arg("encode")
            .arg("-i")
            .arg(&crit_json)
            .arg("-o")
            .arg(&encoded));
        assert!(
            std::fs::read(&encoded).expect("encoded") == std::fs::read(&image).expect("image"),
            "crust encode of crit's JSON of {name} differs from what crust dumped"
        );
    }
    compare_explore(&crit, &images);
    for required in [
        "core",
        "fdinfo",
        "filelocks",
        "files",
        "fs",
        "ghost-file",
        "ids",
        "inventory",
        "mm",
        "pagemap",
        "pstree",
        "remap-fpath",
        "seccomp",
        "stats-dump",
        "timens",
        "tty-info",
    ] {
        assert!(
            kinds.contains_key(required),
            "crust dump wrote no {required} image: {kinds:?}"
        );
    }
    eprintln!(
        "crust dump: {} images ({kinds:?}), {comparisons} show/decode outputs equal crit's",
        kinds.values().sum::<usize>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// (a) crit reads the images of a tree in a mount and UTS namespace of its own
/// (`mountpoints-N.img`, `utsns-N.img`, reg files with `mnt_id`) as crust does, and its
/// JSON encodes back to crust's bytes.
#[test]
fn crit_reads_a_mount_namespace_dump_as_crust_does() {
    let test = "crit_reads_a_mount_namespace_dump_as_crust_does";
    if let Some(reason) = dump_skip_reason() {
        assert!(!in_ci(), "CI=true must run {test}: {reason}");
        eprintln!("{test}: skipped: {reason}");
        return;
    }
    let Some(crit) = reference_crit(test) else {
        return;
    };
    let dir = tempdir("mntns");
    let Some(tree) = common::mnt_tree::make_tree(&dir) else {
        eprintln!("{test}: skipped: needs a static C library (cc -static)");
        return;
    };
    let pid = common::mnt_tree::launch(&tree);
    let mut guard = common::KillOnDrop(pid);
    let images = dir.join("img");
    let output = crust()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .args(common::mnt_tree::DUMP_KEYS)
        .output()
        .expect("run crust dump");
    assert!(output.status.success(), "crust dump: {}", String::from_utf8_lossy(&output.stderr));
    common::wait_exit(pid);
    guard.disarm();
    let scratch = dir.join("re-encoded");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let mut kinds = Vec::new();
    for image in images_in(&images) {
        compare_show_and_decode(&crit, &image);
        let name = file_name(&image);
        kinds.push(image_kind(name).to_string());
        let crit_json = scratch.join(format!("{name}.json"));
        run(Command::new(&crit).arg("decode").arg("-i").arg(&image).arg("-o").arg(&crit_json));
        let encoded = scratch.join(name);
        run(crust().arg("encode").arg("-i").arg(&crit_json).arg("-o").arg(&encoded));
        assert!(
            std::fs::read(&encoded).expect("encoded") == std::fs::read(&image).expect("image"),
            "crust encode of crit's JSON of {name} differs from what crust dumped"
        );
    }
    for required in ["mountpoints", "utsns"] {
        assert!(kinds.iter().any(|k| k == required), "no {required} image: {kinds:?}");
    }
    // The files are named as the namespace sees them, on its mounts.
    let files = json_of(&run(Command::new(&crit).arg("show").arg(images.join("files.img"))), "crit");
    let data = files["entries"].as_array().expect("entries").iter().find(|e| e["reg"]["name"] == "/data/f").expect("/data/f in files.img");
    let mounts = json_of(&run(Command::new(&crit).arg("show").arg(images.join("mountpoints-10.img"))), "crit");
    let data_mount = mounts["entries"].as_array().expect("entries").iter().find(|e| e["mountpoint"] == "/data").expect("/data mount");
    assert_eq!(data["reg"]["mnt_id"], data_mount["mnt_id"], "{data} on {data_mount}");
    assert_eq!(data_mount["ext_key"], "data");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `crust show` reads the real s390x dump (`images/tests/fixtures/s390x-dump`, big
/// endian) on any host, as the images crate does (its text, as crit prints it); crit cannot (little-endian framing
/// only), so this needs no reference.
#[test]
fn crust_shows_an_s390x_dump() {
    let dir = repo_root().join("images/tests/fixtures/s390x-dump");
    let images = images_in(&dir);
    assert!(images.len() >= 8, "only {} images in {}", images.len(), dir.display());
    let mut saw_core = false;
    for image in &images {
        let bytes = std::fs::read(image).expect("read image");
        let reader = crust_images::ImageReader::from_bytes(file_name(image), bytes.clone()).expect("header");
        assert_eq!(reader.byte_order(), crust_images::ByteOrder::Big, "{}", image.display());
        let shown = json_of(&run(crust().arg("show").arg(image)), "crust show");
        let options = crust_images::json::JsonOptions { pretty: true, no_payload: false };
        let decoded = crust_images::json::image_to_json(file_name(image), &bytes, &options).expect("decodes");
        let decoded = json_of(crust_images::json::to_crit_string(&decoded, false).as_bytes(), "library JSON");
        assert_same_json(&shown, &decoded, file_name(image));
        if file_name(image).starts_with("core-") {
            saw_core = true;
            assert_eq!(shown["entries"][0]["mtype"], "S390", "{}", file_name(image));
        }
    }
    assert!(saw_core, "no core image in {}", dir.display());
}

/// Raw images (iproute2 streams, tmpfs archives) have no CRIU header: crit refuses them
/// with "Unknown magic" on stderr and exit status 1, and so does `crust show`.
#[test]
fn crust_refuses_raw_images_as_crit_does() {
    let fixtures = repo_root().join("images/tests/fixtures");
    let images = [
        fixtures.join("netns/ifaddr-10.img"),
        fixtures.join("netns/route-10.img"),
        fixtures.join("netns/route6-10.img"),
        fixtures.join("netns/rule-10.img"),
        fixtures.join("tmpfs/tmpfs-dev-42.tar.gz.img"),
    ];
    let crit = reference_crit("crust_refuses_raw_images_as_crit_does");
    for image in &images {
        let bytes = std::fs::read(image).expect("read image");
        let magic = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let expected = format!(
            "Unknown magic {magic:#x}.\nMaybe you are feeding me an image with raw data(i.e. pages.img)?\n"
        );
        let output = crust().arg("show").arg(image).stdin(Stdio::null()).output().expect("run crust show");
        assert_eq!(output.status.code(), Some(1), "{}", image.display());
        assert!(output.stdout.is_empty(), "{}", image.display());
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected, "{}", image.display());
        if let Some(crit) = &crit {
            let crit_output = Command::new(crit).arg("show").arg(image).stdin(Stdio::null()).output().expect("run crit");
            assert_eq!(crit_output.status.code(), Some(1), "crit show {}", image.display());
            assert_eq!(String::from_utf8_lossy(&crit_output.stderr), expected, "crit show {}", image.display());
        }
    }
}
