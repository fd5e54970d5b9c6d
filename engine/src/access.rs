//! Who may checkpoint or restore what, asked before anything is created (no images
//! directory, no log, no seized thread): the refusal says what is missing.
//!
//! - dump: the process must exist; be this user's (all of its uids and gids, as
//!   ptrace's access check wants them) unless crust has CAP_SYS_PTRACE; not be traced
//!   by anyone else (the tracer is named, with its comm, from `TracerPid`); and crust
//!   needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (for /proc/PID/map_files, the
//!   borrowed fds and the seccomp suspension).
//! - restore: CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, to give each process its pid
//!   (clone3 with set_tid).
//!
//! The rules are pure functions of /proc's status text ([`check_dump`],
//! [`check_restore`]); [`dump`] and [`restore`] read it.

use std::collections::BTreeMap;

use crate::procfs;

/// CAP_SYS_PTRACE.
const CAP_SYS_PTRACE: u32 = 19;
/// CAP_SYS_ADMIN.
const CAP_SYS_ADMIN: u32 = 21;
/// CAP_CHECKPOINT_RESTORE (Linux 5.9).
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// Why crust may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("no process {pid}")]
    NoProcess { pid: i32 },
    #[error("pid {pid} is not your process (it runs as uid {uid}, you are uid {own}): dumping another user's process needs CAP_SYS_PTRACE (run crust as root)")]
    NotYours { pid: i32, uid: u32, own: u32 },
    #[error("pid {pid} is already traced by pid {tracer} ({comm}): a process has one tracer at a time; wait until that one detaches (another crust or criu dumping it, a debugger, strace)")]
    Traced { pid: i32, tracer: i32, comm: String },
    #[error("crust needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE to {what} (it has neither: run it as root, or give it CAP_CHECKPOINT_RESTORE)")]
    NoCapability { what: &'static str },
}

/// The fields of a /proc status file the rules use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub tracer: i32,
    pub cap_eff: u64,
}

impl Status {
    /// Parses /proc/PID/status text (pure).
    pub(crate) fn parse(text: &str) -> Status {
        let fields: BTreeMap<String, String> = procfs::parse_key_values(text);
        let ids = |key: &str| -> [u32; 4] {
            let mut out = [u32::MAX; 4];
            for (slot, value) in out.iter_mut().zip(fields.get(key).map(|v| v.split_whitespace()).into_iter().flatten()) {
                *slot = value.parse().unwrap_or(u32::MAX);
            }
            out
        };
        Status {
            uids: ids("Uid"),
            gids: ids("Gid"),
            tracer: fields.get("TracerPid").and_then(|v| v.parse().ok()).unwrap_or(0),
            cap_eff: fields.get("CapEff").and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0),
        }
    }

    fn has(&self, cap: u32) -> bool {
        self.cap_eff & (1 << cap) != 0
    }

    fn can_checkpoint(&self) -> bool {
        self.has(CAP_SYS_ADMIN) || self.has(CAP_CHECKPOINT_RESTORE)
    }
}

/// The dump rules: `own` is crust's status, `target` the process's, `tracer_comm` the
/// tracer's name if it has one.
pub(crate) fn check_dump(pid: i32, own: &Status, target: &Status, tracer_comm: impl FnOnce(i32) -> String) -> Result<(), AccessError> {
    let own_uid = own.uids[1];
    let own_gid = own.gids[1];
    let same_user = target.uids[..3].iter().all(|&u| u == own_uid) && target.gids[..3].iter().all(|&g| g == own_gid);
    if !same_user && !own.has(CAP_SYS_PTRACE) {
        let uid = target.uids[..3].iter().copied().find(|&u| u != own_uid).unwrap_or(target.uids[0]);
        return Err(AccessError::NotYours { pid, uid, own: own_uid });
    }
    if target.tracer != 0 {
        return Err(AccessError::Traced { pid, tracer: target.tracer, comm: tracer_comm(target.tracer) });
    }
    if !own.can_checkpoint() {
        return Err(AccessError::NoCapability { what: "dump" });
    }
    Ok(())
}

/// The restore rule.
pub(crate) fn check_restore(own: &Status) -> Result<(), AccessError> {
    if !own.can_checkpoint() {
        return Err(AccessError::NoCapability { what: "restore (each process gets its pid back through clone3's set_tid)" });
    }
    Ok(())
}

/// crust's own status.
fn own_status() -> Status {
    Status::parse(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

/// The comm of `pid` (`?` if it is gone or unreadable).
pub(crate) fn comm_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim_end().to_owned()).unwrap_or_else(|_| "?".into())
}

/// The tracer of thread `tid` of `pid`, if it has one (TracerPid), with its comm.
pub(crate) fn tracer_of(pid: i32, tid: i32) -> Option<(i32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let tracer = Status::parse(&text).tracer;
    (tracer != 0).then(|| (tracer, comm_of(tracer)))
}

/// May crust dump `pid`? Reads /proc.
pub(crate) fn dump(pid: i32) -> Result<(), AccessError> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(text) => text,
        Err(_) if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() => return Err(AccessError::NoProcess { pid }),
        Err(_) => String::new(),
    };
    check_dump(pid, &own_status(), &Status::parse(&text), comm_of)
}

/// May crust restore?
pub(crate) fn restore() -> Result<(), AccessError> {
    check_restore(&own_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: u32, tracer: i32, cap_eff: u64) -> Status {
        Status::parse(&format!(
            "Name:\tsleep\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\nTracerPid:\t{tracer}\nCapEff:\t{cap_eff:016x}\n"
        ))
    }

    const ROOT_CAPS: u64 = (1 << 41) - 1;

    #[test]
    fn root_dumps_anyone_untraced() {
        assert_eq!(check_dump(7, &status(0, 0, ROOT_CAPS), &status(1000, 0, 0), |_| unreachable!()), Ok(()));
    }

    #[test]
    fn another_users_process_is_not_yours() {
        let error = check_dump(7, &status(65534, 0, 0), &status(0, 0, ROOT_CAPS), |_| unreachable!()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "pid 7 is not your process (it runs as uid 0, you are uid 65534): dumping another user's process needs CAP_SYS_PTRACE (run crust as root)"
        );
    }

    #[test]
    fn a_traced_process_names_its_tracer() {
        let error = check_dump(7, &status(0, 0, ROOT_CAPS), &status(0, 4242, 0), |pid| format!("crust-{pid}")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "pid 7 is already traced by pid 4242 (crust-4242): a process has one tracer at a time; wait until that one detaches (another crust or criu dumping it, a debugger, strace)"
        );
    }

    #[test]
    fn own_process_without_capabilities() {
        let error = check_dump(7, &status(1000, 0, 0), &status(1000, 0, 0), |_| unreachable!()).unwrap_err();
        assert!(error.to_string().starts_with("crust needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE to dump"), "{error}");
        assert_eq!(check_dump(7, &status(1000, 0, 1 << CAP_CHECKPOINT_RESTORE), &status(1000, 0, 0), |_| unreachable!()), Ok(()));
        assert!(check_restore(&status(1000, 0, 0)).is_err());
        assert_eq!(check_restore(&status(1000, 0, 1 << CAP_SYS_ADMIN)), Ok(()));
    }
}
