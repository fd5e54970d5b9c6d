//! The binary called `criu` (a link, as an install step makes it): CRIU's verbs and
//! options, `criu:` in its messages, a `--version` that runc and LXC parse as CRIU 4.2,
//! and CRIU's answers for its deprecated verbs; `check --feature` with CRIU's names.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, signal, skip_reason, subreaper, tempdir, wait_exit};

/// A `criu` link to the crust binary under test.
fn criu(dir: &Path) -> Command {
    let link = dir.join("criu");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_crust"), &link).unwrap();
    }
    let mut command = Command::new(link);
    command.env("HOME", dir).env_remove("CRIU_CONFIG_FILE");
    command
}

#[test]
fn version_parses_as_criu_4_2() {
    let dir = tempdir("criu-version");
    for flag in ["--version", "-V"] {
        let output = criu(&dir).arg(flag).output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap();
        // runc's parser reads "Version: %d.%d" and takes any '-' for a git version.
        assert!(text.starts_with("Version: 4.2\n"), "{text}");
        assert!(!text.contains('-'), "{text}");
        let version: Vec<u32> = text.lines().next().unwrap()["Version: ".len()..].split('.').map(|n| n.parse().unwrap()).collect();
        assert!(version[0] * 10000 + version[1] * 100 >= 31100, "podman's minimum");
    }
    let output = common::crust().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("Version: 4.2\n"));
}

#[test]
fn criu_messages_and_verbs() {
    let dir = tempdir("criu-verbs");
    let run = |args: &[&str]| {
        let output = criu(&dir).args(args).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).to_string(), String::from_utf8_lossy(&output.stderr).trim().to_string())
    };
    assert_eq!(run(&["dump", "--bogus"]), (Some(1), String::new(), "criu: unknown option --bogus".into()));
    assert_eq!(run(&["dump", "-t", "1", "--lazy-pages"]).2, "criu: --lazy-pages: needs the --port to serve the pages on (and --address, default every address)");
    assert_eq!(run(&["pre-dump", "-t", "1", "--lazy-pages", "--port", "1"]).2, "criu: --lazy-pages is not supported yet (a pre-dump that leaves its pages at the source (dump --lazy-pages does))");
    assert_eq!(run(&["page-server", "--tls"]).2, "criu: --tls is not supported yet (page server connections over TLS)");
    assert_eq!(run(&["dedup"]).2, "criu: dedup is not supported yet");
    assert_eq!(run(&["swrk", "x"]).2, "criu: swrk x: not an fd number");
    // crit's verbs are crust's, not criu's.
    assert_eq!(run(&["decode", "-i", "x"]).0, Some(1));
    let (code, _, stderr) = run(&["show", "core-1.img"]);
    assert_eq!(code, Some(255), "deprecated in CRIU: {stderr}");
    assert_eq!(run(&["exec"]).0, Some(255));
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("Usage:\n  criu dump|pre-dump -t PID"), "{stdout}");
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("Usage:"), "{stderr}");
}

/// `criu dump` and `criu restore`, as a script written for CRIU runs them.
#[test]
fn criu_dumps_and_restores() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("criu-name");
    let binary = compile(&dir, "pattern", &[]);
    let out = dir.join("out");
    let mut command = Command::new(&binary);
    command.arg(&out).arg("4");
    let (child, _, _) = common::start_with_pipes(&mut command, 0);
    let pid = child.id() as i32;
    let images: PathBuf = dir.join("checkpoint");
    std::fs::create_dir_all(&images).unwrap();
    let output = criu(&dir).args(["dump", "-D"]).arg(&images).args(["-t", &pid.to_string(), "-v4", "-o", "dump.log"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    wait_exit(pid);
    let output = criu(&dir).args(["restore", "-d", "-D"]).arg(&images).args(["-v4", "-o", "restore.log"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
}

/// `check --feature NAME` for each of CRIU 4.2's names (from its --help, a fixture):
/// supported on stdout with exit 0, or not supported in one line with exit 1; the
/// features crust's own dumps need are there when `check` says it looks good.
#[test]
fn check_feature_answers_every_criu_name() {
    let dir = tempdir("criu-check");
    let help = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/criu-4.2-help.txt")).unwrap();
    let start = help.find("one of:").unwrap() + "one of:".len();
    let end = help.find("* Logging").unwrap();
    let names: Vec<&str> = help[start..end].split([',', ' ', '\n']).map(str::trim).filter(|w| !w.is_empty()).collect();
    assert_eq!(names.len(), 45);
    let output = criu(&dir).args(["check", "--feature", "list"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().collect::<Vec<_>>(), names);
    let output = criu(&dir).args(["check", "--feature", "warp_drive"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim(), "criu: unknown feature warp_drive (`criu check --feature list` lists them)");
    if let Some(reason) = skip_reason() {
        eprintln!("skipped the probes: {reason}");
        return;
    }
    let mut supported = Vec::new();
    for name in &names {
        let output = criu(&dir).args(["check", "--feature", name]).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        match output.status.code() {
            Some(0) => {
                assert_eq!(stdout, format!("{name} is supported\n"));
                supported.push(*name);
            }
            Some(1) => {
                assert!(stdout.is_empty(), "{name}: {stdout}");
                assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
                assert!(stderr.starts_with(&format!("criu: {name} is not supported: ")), "{stderr}");
            }
            other => panic!("{name}: exit {other:?}: {stderr}"),
        }
    }
    // What crust itself answers for: it dumps no network namespaces.
    assert!(!supported.contains(&"external_net_ns") && !supported.contains(&"nftables"));
    let check = criu(&dir).arg("check").output().unwrap();
    if String::from_utf8_lossy(&check.stdout) == "Looks good.\n" {
        for needed in ["clone3_set_tid", "seccomp_suspend", "ns_pid", "kcmp_epoll"] {
            assert!(supported.contains(&needed), "check looks good but {needed} is not supported");
        }
    }
    eprintln!("supported here: {}", supported.join(" "));
}
