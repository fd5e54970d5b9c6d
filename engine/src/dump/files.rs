//! The files stage of a dump: every fd of every live process, its cwd, root and exe
//! (`files/`), then what needs the whole tree: unix socket peers, the processes pidfds
//! name, the ptys' sessions.

use crate::dump::freeze::Frozen;
use crate::files::{self, DumpedFd, FileDumpError, FileTable};
use crate::model::Collected;

/// One process's fd table and the file ids of its cwd, root and exe.
pub(crate) struct ProcessFiles {
    pub(crate) fds: Vec<DumpedFd>,
    pub(crate) cwd_id: u32,
    pub(crate) root_id: u32,
    pub(crate) exe_id: u32,
}

/// Refuses processes of the tree that share an fd table (`CLONE_FILES`) or fs info
/// (`CLONE_FS`) with another: each is restored with its own (CRIU restores the sharing).
fn check_unshared(frozen: &Frozen) -> Result<(), FileDumpError> {
    use crate::sys::kcmp::{order_shared, Shared};
    let live: Vec<i32> = frozen.processes.iter().filter(|p| !p.is_zombie()).map(|p| p.proc_pid()).collect();
    for (what, name) in [(Shared::FdTable, "an fd table shared with pid {} (CLONE_FILES)"), (Shared::FsInfo, "a cwd, root and umask shared with pid {} (CLONE_FS)")] {
        // Sorted by the kernel's order of the objects (n log n kcmp calls, not n²):
        // sharers end up side by side, in tree order (the sort is stable).
        let mut failed = None;
        let mut sorted = live.clone();
        sorted.sort_by(|&a, &b| {
            order_shared(a, b, what).unwrap_or_else(|source| {
                failed.get_or_insert(FileDumpError::Io { pid: a, what: format!("kcmp with pid {b}"), source });
                std::cmp::Ordering::Equal
            })
        });
        if let Some(error) = failed {
            return Err(error);
        }
        for pair in sorted.windows(2) {
            let (earlier, pid) = (pair[0], pair[1]);
            let shared = order_shared(pid, earlier, what).map_err(|source| FileDumpError::Io { pid, what: format!("kcmp with pid {earlier}"), source })?;
            if shared == std::cmp::Ordering::Equal {
                return Err(FileDumpError::Unsupported { pid, what: name.replace("{}", &earlier.to_string()) });
            }
        }
    }
    Ok(())
}

/// Collects the files of every live process of `frozen` (in tree order) into `table`.
/// `parasites`: the ones still alive, whose fds are not their processes'.
pub(crate) fn dump_tree_files(
    frozen: &Frozen,
    collected: &[Collected],
    shell_job: bool,
    table: &mut FileTable,
    parasites: &[crate::parasite::Parasite],
) -> Result<Vec<ProcessFiles>, FileDumpError> {
    check_unshared(frozen)?;
    let mut process_files = Vec::new();
    for (process, collected) in frozen.processes.iter().filter(|p| !p.is_zombie()).zip(collected) {
        let pid = process.proc_pid();
        let hidden = parasites.iter().find(|p| p.pid() == pid).map_or(&[][..], |p| p.own_fds());
        let fds = files::collect_fds(pid, shell_job, table, hidden)?;
        for (what, path) in [("cwd", &collected.cwd), ("root", &collected.root)] {
            // No ghost directories yet (CRIU 4.2.1 makes one and restores into it).
            if let Some(original) = path.to_str().and_then(|p| p.strip_suffix(" (deleted)")).filter(|_| !path.exists()) {
                return Err(FileDumpError::Unsupported { pid, what: format!("{what} {original} (a removed directory)") });
            }
        }
        let cwd_id = table.add_path(pid, &collected.cwd, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let root_id = table.add_path(pid, &collected.root, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let exe_id = table.add_path(pid, &collected.exe, libc::O_RDONLY)?;
        process_files.push(ProcessFiles { fds, cwd_id, root_id, exe_id });
    }
    files::check_tree(table)?;
    let virtual_of = |host: i32| {
        let in_tree = frozen.processes.iter().any(|p| p.pid == host || p.threads.iter().any(|t| t.tid == host));
        in_tree.then(|| frozen.to_virtual(host, "pid").ok()).flatten()
    };
    files::resolve_pidfds(table, virtual_of)?;
    files::resolve_proc_files(table, virtual_of)?;
    files::resolve_owners(table, virtual_of)?;
    files::finish_ptys(table, shell_job, virtual_of)?;
    Ok(process_files)
}
