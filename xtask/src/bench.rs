//! `cargo xtest bench`: builds `crust` and the harness `crust-bench` (crate crust-benches)
//! in release mode and hands over to it; the harness prints the table and writes
//! `docs/bench/report.md` and `docs/bench/time_vs_size.svg`.
//!
//! Options (passed through): `--quick`, `--vs-criu PATH` (e.g. `ci/criu`),
//! `--sizes 64M,256M,1G,4G`, `--reps N`, `--only NAME,...`, `--out DIR`, `--page-server`
//! (page server throughput on loopback instead of the dump/restore table), `--scaling`
//! (time against VMAs, threads, processes and fds: `docs/bench/scaling.md` and `.svg`). `--criterion`
//! runs the criterion benches of the pure hot paths instead.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Entry point of the bench verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let workspace = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if args.iter().any(|a| a == "--criterion") {
        let rest: Vec<&String> = args.iter().filter(|a| *a != "--criterion").collect();
        let status = Command::new(&cargo)
            .current_dir(&workspace)
            .args(["bench", "-p", "crust-benches", "--bench", "hot_paths", "--"])
            .args(rest)
            .status()
            .context("run cargo bench")?;
        if !status.success() {
            bail!("cargo bench -p crust-benches failed: {status}");
        }
        return Ok(());
    }
    let status = Command::new(&cargo)
        .current_dir(&workspace)
        .args(["build", "--release", "-p", "crust", "-p", "crust-benches", "--bin", "crust", "--bin", "crust-bench"])
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release of crust and crust-bench failed: {status}");
    }
    let release = target_dir(&workspace).join("release");
    let runner = release.join("crust-bench");
    let status = Command::new(&runner)
        .current_dir(&workspace)
        .arg("--crust")
        .arg(release.join("crust"))
        .arg("--scratch")
        .arg(target_dir(&workspace).join("bench"))
        .args(args)
        .status()
        .with_context(|| format!("run {}", runner.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
}
