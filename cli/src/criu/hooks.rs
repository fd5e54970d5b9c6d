//! `--action-script`: CRIU's hooks. Each script runs through `sh -c` (so it may carry
//! arguments), from the work directory, with CRIU's environment: CRTOOLS_SCRIPT_ACTION
//! (the step), CRTOOLS_IMAGE_DIR (the images directory) and, once the tree's root is
//! known, CRTOOLS_INIT_PID. A script that exits non-zero fails the step.
//!
//! crust runs the steps its command line sees happen: pre-dump (before the tree is
//! touched), pre-restore (before anything is created) and post-resume (the restored
//! tree runs). The others happen inside the engine's pipelines and need hook points
//! there: post-dump (images written, tree still frozen), setup-namespaces and
//! post-setup-namespaces (root created), post-restore and pre-resume (tree built, not
//! yet running). network-lock/network-unlock are CRIU's for a tree with a network
//! namespace of its own, which crust does not dump; orphan-pts-master, query-ext-files
//! and status-ready belong to RPC and the servers.

use std::path::PathBuf;
use std::process::Command;

use super::options::{CriuOptions, Verb};

/// A step a script is told about (CRTOOLS_SCRIPT_ACTION). All of CRIU's are named;
/// the ones crust does not run yet are for the engine's hook points and the RPC server.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    PreDump,
    PostDump,
    PreRestore,
    PostRestore,
    NetworkLock,
    NetworkUnlock,
    SetupNamespaces,
    PostSetupNamespaces,
    PreResume,
    PostResume,
    OrphanPtsMaster,
    QueryExtFiles,
    StatusReady,
    PreStream,
}

impl Action {
    /// CRIU's name for the step.
    pub fn name(self) -> &'static str {
        match self {
            Action::PreDump => "pre-dump",
            Action::PostDump => "post-dump",
            Action::PreRestore => "pre-restore",
            Action::PostRestore => "post-restore",
            Action::NetworkLock => "network-lock",
            Action::NetworkUnlock => "network-unlock",
            Action::SetupNamespaces => "setup-namespaces",
            Action::PostSetupNamespaces => "post-setup-namespaces",
            Action::PreResume => "pre-resume",
            Action::PostResume => "post-resume",
            Action::OrphanPtsMaster => "orphan-pts-master",
            Action::QueryExtFiles => "query-ext-files",
            Action::StatusReady => "status-ready",
            Action::PreStream => "pre-stream",
        }
    }
}

/// The steps of a verb that CRIU's command line runs scripts for but crust does not yet.
fn not_run(verb: Verb) -> &'static [Action] {
    match verb {
        Verb::Dump | Verb::PreDump => &[Action::PostDump],
        Verb::Restore => &[Action::SetupNamespaces, Action::PostSetupNamespaces, Action::PostRestore, Action::PreResume],
        _ => &[],
    }
}

/// The `--action-script`s of one command.
pub struct ActionScripts {
    scripts: Vec<PathBuf>,
    images_dir: PathBuf,
}

impl ActionScripts {
    pub fn new(options: &CriuOptions) -> Self {
        ActionScripts { scripts: options.action_scripts.clone(), images_dir: options.images_dir() }
    }

    /// Warns once that this verb's scripts will not hear of some steps.
    pub fn warn_unrun(&self, verb: Verb) {
        let skipped = not_run(verb);
        if self.scripts.is_empty() || skipped.is_empty() {
            return;
        }
        let names: Vec<&str> = skipped.iter().map(|a| a.name()).collect();
        log::warn!("action scripts are not run at {} yet (crust runs pre-dump, pre-restore and post-resume)", names.join(", "));
    }

    /// Runs every script for `action`, in the order given; the first that fails stops
    /// the step.
    pub fn run(&self, action: Action, init_pid: Option<i32>) -> Result<(), String> {
        for script in &self.scripts {
            log::info!("running action script {} at {}", script.display(), action.name());
            let mut command = Command::new("sh");
            command.arg("-c").arg(script).env("CRTOOLS_SCRIPT_ACTION", action.name()).env("CRTOOLS_IMAGE_DIR", &self.images_dir);
            match init_pid {
                Some(pid) => command.env("CRTOOLS_INIT_PID", pid.to_string()),
                None => command.env_remove("CRTOOLS_INIT_PID"),
            };
            let status = command.status().map_err(|e| format!("action script {}: run sh: {e}", script.display()))?;
            if !status.success() {
                return Err(format!("action script {} failed at {}: {status}", script.display(), action.name()));
            }
        }
        Ok(())
    }
}
