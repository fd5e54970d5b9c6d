//! `cargo xtest containers`: runc and podman checkpointing a counting busybox container
//! through a criu (`zdtm-runner runtimes`, crate crust-zdtm, which must be the process
//! that runs them: it is their child subreaper).
//!
//!   cargo xtest containers [--filter S]             the flows with crust as criu
//!   cargo xtest containers --vs-criu ci/criu        the same with crust and the reference
//!                                                   side by side, wall times of both
//!   cargo xtest containers --engine ci/criu         only the given criu (crust is not built)
//!   cargo xtest containers --criu-config FILE       every container names FILE as its criu
//!                                                   configuration (runc's org.criu.config
//!                                                   annotation, which wins over runc's
//!                                                   options): a probe to look past a refusal,
//!                                                   e.g. `manage-cgroups ignore`
//!
//! crust runs as `criu`: the install step [`install_criu_link`] makes
//! `target/release/as-criu/criu`, a link to the release `crust`; runc gets it as
//! `--criu`, podman finds it first in `PATH`.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::zdtm::{target_dir, workspace_root};

/// Entry point of the containers verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut engine = None;
    let mut versus = None;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engine" => engine = Some(PathBuf::from(args.next().context("--engine needs a path")?)),
            "--vs-criu" => versus = Some(PathBuf::from(args.next().context("--vs-criu needs a path")?)),
            "--filter" => rest.extend([arg.clone(), args.next().context("--filter needs a value")?.clone()]),
            "--criu-config" => {
                let file = absolute(Path::new(args.next().context("--criu-config needs a file")?))?;
                rest.extend([arg.clone(), file.display().to_string()]);
            }
            other => bail!("containers: unknown option {other} (--filter S, --vs-criu PATH, --engine PATH, --criu-config FILE)"),
        }
    }
    crate::tools::require("containers", &crate::tools::containers())?;
    let workspace = workspace_root();
    let release = target_dir(&workspace).join("release");
    let mut crius = Vec::new();
    match &engine {
        Some(path) => {
            crate::zdtm::build_runner()?;
            crius.push(format!("{}={}", label_of(path), absolute(path)?.display()));
        }
        None => {
            crate::zdtm::build_harness()?;
            let link = install_criu_link(&release.join("crust"), &release.join("as-criu"))?;
            crius.push(format!("crust={}", link.display()));
        }
    }
    if let Some(path) = &versus {
        crius.push(format!("{}={}", label_of(path), absolute(path)?.display()));
    }
    let runner = release.join("zdtm-runner");
    let mut command = Command::new(&runner);
    command.arg("runtimes").arg("--workdir").arg(target_dir(&workspace).join("runtimes"));
    for criu in &crius {
        command.arg("--criu").arg(criu);
    }
    let status = command.args(&rest).status().with_context(|| format!("run {}", runner.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// The install step: a link named `criu` to `crust` in `dir` (crust answers as criu
/// under that name). Returns the link.
pub fn install_criu_link(crust: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let link = dir.join("criu");
    if std::fs::symlink_metadata(&link).is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("remove old {}", link.display()))?;
    }
    std::os::unix::fs::symlink(crust, &link).with_context(|| format!("link {} to {}", link.display(), crust.display()))?;
    Ok(link)
}

/// The table's name of a criu: its file name (`criu` for the reference's `ci/criu`).
fn label_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "criu".into())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let path = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    Ok(path)
}
