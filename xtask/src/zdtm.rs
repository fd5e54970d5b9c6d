//! `cargo xtest zdtm` and `cargo xtest demo`: build `crust` and the zdtm programs in
//! release mode, then hand over to the harness binary `zdtm-runner` (crate crust-zdtm),
//! which must be the process that runs the tests: it is their child subreaper.
//!
//! Options of both verbs besides the harness's own: `--engine PATH` checkpoints with
//! another binary that speaks CRIU's command line (e.g. `ci/criu`) instead of building
//! `crust`. Everything else goes to the harness as is: `--flavor host|ns|mntns|container|container-uns|all` (or a comma-separated list of them),
//! `--group core|runtime|all`, `--filter`, `--iters`, `--snap`, `--pre-dump`, `--lazy`, `--keep`,
//! `--json`, and the cross runs `--dump-with PATH` (the other binary dumps, crust
//! restores) and `--restore-with PATH` (the reverse), their paths made absolute here.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Entry point of the zdtm verb.
pub fn run_zdtm(args: &[String]) -> anyhow::Result<()> {
    if let Some(result) = crate::qemu::zdtm_with_arch(args) {
        return result;
    }
    hand_over("run", args)
}

/// Entry point of the demo verb.
pub fn run_demo(args: &[String]) -> anyhow::Result<()> {
    hand_over("demo", args)
}

/// Builds the release `crust` and the harness, for [`run_harness`].
pub(crate) fn build_harness() -> anyhow::Result<()> {
    build(&workspace_root(), true)
}

/// Builds the release harness only (another binary is the criu).
pub(crate) fn build_runner() -> anyhow::Result<()> {
    build(&workspace_root(), false)
}

/// The harness (`zdtm-runner run`) with `args`, its work in `workdir` (the restore
/// fuzzer's seeds); [`build_harness`] first.
pub(crate) fn run_harness(args: &[String], workdir: &Path) -> anyhow::Result<()> {
    let workspace = workspace_root();
    let release = target_dir(&workspace).join("release");
    let runner = release.join("zdtm-runner");
    let status = Command::new(&runner)
        .arg("run")
        .arg("--engine")
        .arg(release.join("crust"))
        .arg("--workdir")
        .arg(workdir)
        .args(args)
        .status()
        .with_context(|| format!("run {}", runner.display()))?;
    if !status.success() {
        bail!("zdtm-runner {}: {status}", args.join(" "));
    }
    Ok(())
}

fn hand_over(verb: &str, args: &[String]) -> anyhow::Result<()> {
    let (engine, rest) = split_engine_option(args)?;
    let mut needs = crate::tools::native_zdtm();
    if wants_container_flavor(&rest) {
        needs.extend(crate::tools::container_zdtm(engine.is_some()));
    }
    crate::tools::require(if verb == "run" { "zdtm" } else { verb }, &needs)?;
    let workspace = workspace_root();
    let build_crust = engine.is_none();
    build(&workspace, build_crust)?;
    let release = target_dir(&workspace).join("release");
    let engine = match engine {
        Some(path) => {
            std::fs::canonicalize(&path).with_context(|| format!("engine {}", path.display()))?
        }
        None => release.join("crust"),
    };
    let runner = release.join("zdtm-runner");
    let status = Command::new(&runner)
        .arg(verb)
        .arg("--engine")
        .arg(&engine)
        .arg("--workdir")
        .arg(target_dir(&workspace).join("zdtm"))
        .args(&rest)
        .status()
        .with_context(|| format!("run {}", runner.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// `$CARGO build --release -p crust-zdtm [-p crust]`.
fn build(workspace: &Path, build_crust: bool) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "-p", "crust-zdtm"]);
    if build_crust {
        command.args(["-p", "crust"]);
    }
    let status = command.status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release of crust and crust-zdtm failed: {status}");
    }
    Ok(())
}

/// Whether `--flavor` names a container flavor among its comma-separated words (or
/// `all`, which may come to include them).
pub fn wants_container_flavor(args: &[String]) -> bool {
    args.windows(2).any(|pair| {
        pair[0] == "--flavor" && pair[1].split(',').any(|word| matches!(word, "container" | "container-uns" | "all"))
    })
}

fn split_engine_option(args: &[String]) -> anyhow::Result<(Option<PathBuf>, Vec<String>)> {
    let mut engine = None;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--engine" {
            engine = Some(PathBuf::from(args.next().context("--engine needs a path")?));
        } else if arg == "--dump-with" || arg == "--restore-with" {
            let path = PathBuf::from(args.next().with_context(|| format!("{arg} needs a path"))?);
            let path = std::fs::canonicalize(&path).with_context(|| format!("{arg} {}", path.display()))?;
            rest.extend([arg.clone(), path.display().to_string()]);
        } else {
            rest.push(arg.clone());
        }
    }
    Ok((engine, rest))
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

pub(crate) fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn container_needs_only_when_a_container_flavor_is_asked() {
        assert!(!wants_container_flavor(&[]));
        assert!(!wants_container_flavor(&args(&["--flavor", "ns", "--filter", "container"])));
        assert!(wants_container_flavor(&args(&["--flavor", "container"])));
        assert!(wants_container_flavor(&args(&["--filter", "x", "--flavor", "container-uns"])));
        assert!(wants_container_flavor(&args(&["--flavor", "all"])));
        assert!(wants_container_flavor(&args(&["--flavor", "host,container"])));
        assert!(!wants_container_flavor(&args(&["--flavor", "host,ns"])));
    }
}
