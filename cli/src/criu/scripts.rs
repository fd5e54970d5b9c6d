//! `--action-script`: CRIU's hooks on the command line, the command line's
//! [`HookSink`]. Each script runs through `sh -c` (so it may carry arguments), from the
//! work directory, with CRIU's environment: CRTOOLS_SCRIPT_ACTION (the point),
//! CRTOOLS_IMAGE_DIR (the images directory) and, once the tree's root is known,
//! CRTOOLS_INIT_PID. A script that exits non-zero fails the point.
//!
//! The engine's stage callback reaches the scripts at the points inside a dump or
//! restore (`hooks::engine_stages`): network-lock, post-dump and network-unlock of a
//! dump; pre-restore, setup-namespaces, post-setup-namespaces, post-restore,
//! network-unlock, pre-resume and post-resume of a restore. The command line itself
//! runs pre-dump, before the engine is called. network-lock and network-unlock come
//! only for a tree in a network namespace of its own, and the namespace points only for
//! a tree with namespaces of its own, as in CRIU; orphan-pts-master, query-ext-files
//! and status-ready belong to RPC and the servers.

use std::path::PathBuf;
use std::process::Command;

use super::options::CriuOptions;
use super::Program;
use crate::hooks::{Hook, HookError, HookSink};

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
