//! The points of a dump or restore that a caller hears of while the pipeline runs: the
//! stage callback of `DumpOptions::stages` and `RestoreOptions::stages`. The points are
//! CRIU's (its action scripts and RPC notifications are hung on them by the front
//! ends), reached where CRIU reaches them:
//!
//! - dump: [`Stage::NetworkLock`] right after the seize, before any socket is dumped;
//!   [`Stage::PostDump`] once every image is written and the tree is still frozen (a
//!   failure releases the tree alive and fails the dump); [`Stage::NetworkUnlock`]
//!   when the tree goes on running (a failed dump, `--leave-running`). The network
//!   points are reached only for a tree in a network namespace of its own, as CRIU's.
//! - restore: [`Stage::PreRestore`] before anything is read or created;
//!   [`Stage::SetupNamespaces`] and [`Stage::PostSetupNamespaces`] once the root
//!   exists in the namespaces it was forked with (only for a tree with namespaces of
//!   its own), [`Stage::PostRestore`] once every task is restored and still stopped (a
//!   failure kills the tree); [`Stage::NetworkUnlock`] before the TCP locks go,
//!   [`Stage::PreResume`] just before the tree runs, [`Stage::PostResume`] once it
//!   runs. [`Stage::OrphanPtsMaster`] hands the caller the master of a pty whose master
//!   was outside the tree.
//!
//! CRIU's rule for failures: a listener's failure stops the work, except at
//! network-unlock, pre-resume and post-resume, where it is logged and the work goes on
//! ([`Stage::failure_stops`]).

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// A point of a dump or restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Dump: the tree is seized; its connections are about to be locked.
    NetworkLock,
    /// Dump: every image is written; the tree is still frozen.
    PostDump,
    /// Dump or restore: the network may flow again (after a dump that leaves the tree
    /// running or failed; before a restored tree's TCP locks are removed).
    NetworkUnlock,
    /// Restore: before anything is read or created.
    PreRestore,
    /// Restore: the root exists in its new namespaces (`StageEvent::root` is its pid).
    SetupNamespaces,
    /// Restore: after the namespaces are set up.
    PostSetupNamespaces,
    /// Restore: every task is restored and still stopped.
    PostRestore,
    /// Restore: just before the tree resumes.
    PreResume,
    /// Restore: the tree runs.
    PostResume,
    /// Restore: a pty whose master was outside the tree got a new pair; the new
    /// master is `StageEvent::fd`.
    OrphanPtsMaster,
}

impl Stage {
    /// CRIU's name of the point (its action scripts' CRTOOLS_SCRIPT_ACTION).
    pub fn name(self) -> &'static str {
        match self {
            Stage::NetworkLock => "network-lock",
            Stage::PostDump => "post-dump",
            Stage::NetworkUnlock => "network-unlock",
            Stage::PreRestore => "pre-restore",
            Stage::SetupNamespaces => "setup-namespaces",
            Stage::PostSetupNamespaces => "post-setup-namespaces",
            Stage::PostRestore => "post-restore",
            Stage::PreResume => "pre-resume",
            Stage::PostResume => "post-resume",
            Stage::OrphanPtsMaster => "orphan-pts-master",
        }
    }

    /// Whether a listener's failure here stops the dump or restore (CRIU's rule): not
    /// at network-unlock, pre-resume and post-resume.
    pub fn failure_stops(self) -> bool {
        !matches!(self, Stage::NetworkUnlock | Stage::PreResume | Stage::PostResume)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A point reached, with what the listener gets there.
#[derive(Clone, Copy, Debug)]
pub struct StageEvent<'a> {
    pub stage: Stage,
    /// The tree's root as this host numbers it: the dump's target, the restored root
    /// (from setup-namespaces on).
    pub root: Option<i32>,
    /// An fd for the listener (orphan-pts-master: the new pty master).
    pub fd: Option<BorrowedFd<'a>>,
}

/// A listener's failure at a point.
#[derive(Debug)]
pub struct StageFailure {
    /// One line naming what failed.
    pub message: String,
    /// The OS error behind it, if any (kept as the error's source).
    pub os_error: Option<io::Error>,
}

impl StageFailure {
    pub fn new(message: impl Into<String>) -> Self {
        StageFailure { message: message.into(), os_error: None }
    }
}

impl fmt::Display for StageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StageFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.os_error.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// What a caller does at each point: run its scripts, notify its client.
pub trait StageListener: Send + Sync {
    /// The pipeline reached `event.stage`; `Err` fails the dump or restore where
    /// [`Stage::failure_stops`].
    fn reached(&self, event: &StageEvent<'_>) -> Result<(), StageFailure>;
}

/// The stage callback an options struct carries: a listener, or none.
#[derive(Clone, Default)]
pub struct Stages(Option<Arc<dyn StageListener>>);

impl fmt::Debug for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Stages(listener)" } else { "Stages(none)" })
    }
}

impl Stages {
    /// Calls `listener` at every point.
    pub fn new(listener: Arc<dyn StageListener>) -> Self {
        Stages(Some(listener))
    }

    /// Tells the listener; a failure where CRIU goes on is logged and `Ok`.
    pub(crate) fn reach(&self, stage: Stage, root: Option<i32>) -> Result<(), StageFailure> {
        self.reach_with_fd(stage, root, None)
    }

    pub(crate) fn reach_with_fd(&self, stage: Stage, root: Option<i32>, fd: Option<BorrowedFd<'_>>) -> Result<(), StageFailure> {
        let Some(listener) = &self.0 else { return Ok(()) };
        log::info!("stage {stage}");
        match listener.reached(&StageEvent { stage, root, fd }) {
            Err(failure) if !stage.failure_stops() => {
                log::warn!("{stage}: {failure} (going on, as CRIU does)");
                Ok(())
            }
            outcome => outcome,
        }
    }

}

/// Whether `pid` runs in a network namespace other than crust's: where CRIU reaches
/// network-lock and network-unlock.
pub(crate) fn own_net_namespace(pid: i32) -> bool {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"));
    let ours = std::fs::read_link("/proc/self/ns/net");
    matches!((theirs, ours), (Ok(theirs), Ok(ours)) if theirs != ours)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Refusing(Mutex<Vec<Stage>>);

    impl StageListener for Refusing {
        fn reached(&self, event: &StageEvent<'_>) -> Result<(), StageFailure> {
            self.0.lock().expect("not poisoned").push(event.stage);
            Err(StageFailure::new(format!("{} failed", event.stage)))
        }
    }

    #[test]
    fn failures_stop_the_work_except_where_criu_goes_on() {
        let listener = Arc::new(Refusing::default());
        let stages = Stages::new(listener.clone());
        assert!(stages.reach(Stage::PostDump, Some(1)).is_err());
        assert!(stages.reach(Stage::PostRestore, Some(1)).is_err());
        assert!(stages.reach(Stage::NetworkUnlock, Some(1)).is_ok());
        assert!(stages.reach(Stage::PreResume, Some(1)).is_ok());
        assert!(stages.reach(Stage::PostResume, Some(1)).is_ok());
        assert_eq!(listener.0.lock().unwrap().len(), 5);
        assert!(Stages::default().reach(Stage::PostDump, None).is_ok());
    }
}
