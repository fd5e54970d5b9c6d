//! The points of a dump or restore that a front end's listener hears of, by CRIU's
//! names (`pre-dump`, `post-restore`, ...), and the one type both front ends hang on
//! them: [`HookSink`]. The command line implements it by running `--action-script`s
//! (`criu/scripts.rs`), the RPC server by NOTIFY messages that wait for the client's
//! acknowledgement (`rpc/server.rs`).
//!
//! The points inside a dump or restore come from the engine's stage callback
//! (`crust_engine::stages`): [`engine_stages`] hangs a sink on it, each engine
//! [`Stage`] mapped onto its [`HookPoint`]. The points outside the engine (pre-dump)
//! are reached by the front ends themselves.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crust_engine::stages::{Stage, StageEvent, StageFailure, StageListener, Stages};

/// A point of a dump or restore, named as CRIU names it to action scripts
/// (CRTOOLS_SCRIPT_ACTION) and RPC clients (`criu_notify.script`). All of CRIU's are
/// named; query-ext-files, status-ready and pre-stream wait for external files, the page
/// server and lazy pages, and the image streamer.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookPoint {
    /// Before the tree is touched.
    PreDump,
    /// Images written, tree still frozen.
    PostDump,
    /// Before the tree's connections are locked (a tree with a net namespace of its own).
    NetworkLock,
    /// Once the lock may go: after a dump that leaves the tree running or failed, or
    /// after a restore.
    NetworkUnlock,
    /// The restored root exists in its namespaces.
    SetupNamespaces,
    /// After the namespaces are set up.
    PostSetupNamespaces,
    /// Before anything is created.
    PreRestore,
    /// The tree is built, not running yet.
    PostRestore,
    /// Just before the tree resumes.
    PreResume,
    /// The restored tree runs.
    PostResume,
    /// A pty whose master is outside the tree: the master's fd goes to the listener.
    OrphanPtsMaster,
    /// Which external files the dump should expect.
    QueryExtFiles,
    /// A page server or lazy-pages daemon is ready.
    StatusReady,
    /// Before the image streamer is used.
    PreStream,
}

impl HookPoint {
    /// Every point, in CRIU's order of its script actions.
    #[cfg(test)]
    pub const ALL: [HookPoint; 14] = [
        HookPoint::PreDump,
        HookPoint::PostDump,
        HookPoint::PreRestore,
        HookPoint::PostRestore,
        HookPoint::NetworkLock,
        HookPoint::NetworkUnlock,
        HookPoint::SetupNamespaces,
        HookPoint::PostSetupNamespaces,
        HookPoint::PreResume,
        HookPoint::PostResume,
        HookPoint::OrphanPtsMaster,
        HookPoint::StatusReady,
        HookPoint::QueryExtFiles,
        HookPoint::PreStream,
    ];

    /// CRIU's name for the point.
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::PreDump => "pre-dump",
            HookPoint::PostDump => "post-dump",
            HookPoint::PreRestore => "pre-restore",
            HookPoint::PostRestore => "post-restore",
            HookPoint::NetworkLock => "network-lock",
            HookPoint::NetworkUnlock => "network-unlock",
            HookPoint::SetupNamespaces => "setup-namespaces",
            HookPoint::PostSetupNamespaces => "post-setup-namespaces",
            HookPoint::PreResume => "pre-resume",
            HookPoint::PostResume => "post-resume",
            HookPoint::OrphanPtsMaster => "orphan-pts-master",
            HookPoint::QueryExtFiles => "query-ext-files",
            HookPoint::StatusReady => "status-ready",
            HookPoint::PreStream => "pre-stream",
        }
    }

    /// Whether a listener's failure at this point stops the dump or restore, as in
    /// CRIU. It does not at `network-unlock`, `pre-resume` and `post-resume`: the tree
    /// goes on, and the failure is reported.
    pub fn failure_stops(self) -> bool {
        !matches!(self, HookPoint::NetworkUnlock | HookPoint::PreResume | HookPoint::PostResume)
    }
}

impl From<Stage> for HookPoint {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::NetworkLock => HookPoint::NetworkLock,
            Stage::PostDump => HookPoint::PostDump,
            Stage::NetworkUnlock => HookPoint::NetworkUnlock,
            Stage::PreRestore => HookPoint::PreRestore,
            Stage::SetupNamespaces => HookPoint::SetupNamespaces,
            Stage::PostSetupNamespaces => HookPoint::PostSetupNamespaces,
            Stage::PostRestore => HookPoint::PostRestore,
            Stage::PreResume => HookPoint::PreResume,
            Stage::PostResume => HookPoint::PostResume,
            Stage::OrphanPtsMaster => HookPoint::OrphanPtsMaster,
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One point reached, with what CRIU hands the listener there.
#[derive(Clone, Copy, Debug)]
pub struct Hook<'a> {
    pub point: HookPoint,
    /// The tree's root pid, once known (the target of a dump, the restored root).
    pub root: Option<i32>,
    /// An fd for the listener (`orphan-pts-master`: the pty master).
    pub fd: Option<BorrowedFd<'a>>,
}

impl Hook<'static> {
    /// `point`, with the root's pid where it is known.
    pub fn at(point: HookPoint, root: Option<i32>) -> Self {
        Hook { point, root, fd: None }
    }
}

/// A listener that failed at a point, or could not be told of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookError {
    pub point: HookPoint,
    /// One line naming the point and what failed.
    pub message: String,
    /// The OS error behind it, if any (an RPC response carries it).
    pub errno: Option<i32>,
}

impl HookError {
    pub fn new(point: HookPoint, message: impl Into<String>) -> Self {
        HookError { point, message: message.into(), errno: None }
    }

    pub fn with_errno(point: HookPoint, message: impl Into<String>, errno: i32) -> Self {
        HookError { point, message: message.into(), errno: Some(errno) }
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HookError {}

/// What a front end does when a dump or restore reaches a point.
pub trait HookSink {
    /// Tells the listener that `hook.point` is reached and waits for its answer.
    fn reached(&self, hook: &Hook<'_>) -> Result<(), HookError>;

    /// Reports a failure at a point where the dump or restore goes on.
    fn went_on(&self, error: &HookError) {
        log::warn!("{error}");
    }

    /// Reaches a point with CRIU's rule for failures: `Err` where a failure stops the
    /// dump or restore ([`HookPoint::failure_stops`]); elsewhere the failure is
    /// reported through [`Self::went_on`] and the answer is `Ok`.
    fn hook(&self, hook: Hook<'_>) -> Result<(), HookError> {
        match self.reached(&hook) {
            Err(error) if !hook.point.failure_stops() => {
                self.went_on(&error);
                Ok(())
            }
            outcome => outcome,
        }
    }
}

/// The engine's stage callback for `sink`: every stage the engine reaches becomes a
/// [`Hook`] at its [`HookPoint`], with CRIU's rule for failures ([`HookSink::hook`]).
pub fn engine_stages<S: HookSink + Send + Sync + 'static>(sink: Arc<S>) -> Stages {
    Stages::new(Arc::new(SinkListener(sink)))
}

struct SinkListener<S>(Arc<S>);

impl<S: HookSink + Send + Sync> StageListener for SinkListener<S> {
    fn reached(&self, event: &StageEvent<'_>) -> Result<(), StageFailure> {
        let hook = Hook { point: HookPoint::from(event.stage), root: event.root, fd: event.fd };
        self.0.hook(hook).map_err(|error| StageFailure { message: error.message, os_error: error.errno.map(io::Error::from_raw_os_error) })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Fails every point and records what it was told.
    #[derive(Default)]
    struct Refusing {
        heard: RefCell<Vec<(HookPoint, Option<i32>)>>,
        reported: RefCell<Vec<String>>,
    }

    impl HookSink for Refusing {
        fn reached(&self, hook: &Hook<'_>) -> Result<(), HookError> {
            self.heard.borrow_mut().push((hook.point, hook.root));
            Err(HookError::new(hook.point, format!("{} failed", hook.point)))
        }

        fn went_on(&self, error: &HookError) {
            self.reported.borrow_mut().push(error.message.clone());
        }
    }

    #[test]
    fn names_are_criu_s_and_unique() {
        let names: Vec<&str> = HookPoint::ALL.iter().map(|p| p.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for name in ["pre-dump", "post-dump", "network-lock", "network-unlock", "setup-namespaces", "post-setup-namespaces"] {
            assert!(names.contains(&name), "{name}");
        }
        for name in ["pre-restore", "post-restore", "pre-resume", "post-resume", "orphan-pts-master", "status-ready"] {
            assert!(names.contains(&name), "{name}");
        }
    }

    #[test]
    fn every_engine_stage_has_the_point_of_its_name() {
        let stages = [
            Stage::NetworkLock,
            Stage::PostDump,
            Stage::NetworkUnlock,
            Stage::PreRestore,
            Stage::SetupNamespaces,
            Stage::PostSetupNamespaces,
            Stage::PostRestore,
            Stage::PreResume,
            Stage::PostResume,
            Stage::OrphanPtsMaster,
        ];
        for stage in stages {
            let point = HookPoint::from(stage);
            assert_eq!(point.name(), stage.name());
            assert_eq!(point.failure_stops(), stage.failure_stops(), "{point}");
        }
    }

    #[test]
    fn a_failure_stops_the_work_except_where_criu_goes_on() {
        let sink = Refusing::default();
        assert!(sink.hook(Hook::at(HookPoint::PreDump, Some(7))).is_err());
        assert!(sink.hook(Hook::at(HookPoint::PostRestore, Some(7))).is_err());
        assert!(sink.hook(Hook::at(HookPoint::PreResume, None)).is_ok());
        assert!(sink.hook(Hook::at(HookPoint::PostResume, Some(7))).is_ok());
        assert!(sink.hook(Hook::at(HookPoint::NetworkUnlock, None)).is_ok());
        assert_eq!(sink.heard.borrow().len(), 5, "every point reaches the listener");
        assert_eq!(*sink.reported.borrow(), ["pre-resume failed", "post-resume failed", "network-unlock failed"]);
    }
}
