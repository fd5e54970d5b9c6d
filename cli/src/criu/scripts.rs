//! `--action-script`: CRIU's hooks on the command line, the command line's
//! [`HookSink`]. Each script runs through `sh -c` (so it may carry arguments), from the
//! work directory, with CRIU's environment: CRTOOLS_SCRIPT_ACTION (the point),
//! CRTOOLS_IMAGE_DIR (the images directory) and, once the tree's root is known,
//! CRTOOLS_INIT_PID. A script that exits non-zero fails the point.
//!
//! crust runs the points its command line sees happen: pre-dump (before the tree is
//! touched), pre-restore (before anything is created) and post-resume (the restored
//! tree runs). The others happen inside the engine's pipelines and need the engine's
//! stage callback: post-dump (images written, tree still frozen), setup-namespaces and
//! post-setup-namespaces (root created), post-restore and pre-resume (tree built, not
//! yet running). network-lock/network-unlock are CRIU's for a tree with a network
//! namespace of its own, which crust does not dump; orphan-pts-master, query-ext-files
//! and status-ready belong to RPC and the servers.

use std::path::PathBuf;
use std::process::Command;

use super::options::{CriuOptions, Verb};
use super::Program;
use crate::hooks::{Hook, HookError, HookPoint, HookSink};

/// The points of a verb that CRIU's command line runs scripts at but crust does not yet.
fn not_run(verb: Verb) -> &'static [HookPoint] {
    match verb {
        Verb::Dump | Verb::PreDump => &[HookPoint::PostDump],
        Verb::Restore => {
            &[HookPoint::SetupNamespaces, HookPoint::PostSetupNamespaces, HookPoint::PostRestore, HookPoint::PreResume]
        }
        _ => &[],
    }
}

/// The `--action-script`s of one command.
pub struct ActionScripts {
    program: Program,
    scripts: Vec<PathBuf>,
    images_dir: PathBuf,
}

impl ActionScripts {
    pub fn new(program: Program, options: &CriuOptions) -> Self {
        ActionScripts { program, scripts: options.action_scripts.clone(), images_dir: options.images_dir() }
    }

    /// Warns once that this verb's scripts will not hear of some points.
    pub fn warn_unrun(&self, verb: Verb) {
        let skipped = not_run(verb);
        if self.scripts.is_empty() || skipped.is_empty() {
            return;
        }
        let names: Vec<&str> = skipped.iter().map(|point| point.name()).collect();
        log::warn!("action scripts are not run at {} yet (crust runs pre-dump, pre-restore and post-resume)", names.join(", "));
    }
}

impl HookSink for ActionScripts {
    /// Runs every script for the point, in the order given; the first that fails
    /// stops it.
    fn reached(&self, hook: &Hook<'_>) -> Result<(), HookError> {
        let point = hook.point;
        for script in &self.scripts {
            log::info!("running action script {} at {point}", script.display());
            let mut command = Command::new("sh");
            command.arg("-c").arg(script).env("CRTOOLS_SCRIPT_ACTION", point.name()).env("CRTOOLS_IMAGE_DIR", &self.images_dir);
            match hook.root {
                Some(pid) => command.env("CRTOOLS_INIT_PID", pid.to_string()),
                None => command.env_remove("CRTOOLS_INIT_PID"),
            };
            let status = command.status().map_err(|error| {
                let message = format!("action script {}: run sh: {error}", script.display());
                match error.raw_os_error() {
                    Some(errno) => HookError::with_errno(point, message, errno),
                    None => HookError::new(point, message),
                }
            })?;
            if !status.success() {
                return Err(HookError::new(point, format!("action script {} failed at {point}: {status}", script.display())));
            }
        }
        Ok(())
    }

    /// The tree goes on: the failure is logged and said on stderr.
    fn went_on(&self, error: &HookError) {
        log::error!("{error}");
        eprintln!("{}: {error}", self.program.name());
    }
}
