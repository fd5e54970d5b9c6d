//! The write stage of a dump: the images of the tree, from what the earlier stages
//! found (inventory, seccomp, timens, pstree, core, mm, fdinfo, fs, ids, and the
//! files' images through `files/`; stats-dump once the dump is over). The set and its
//! cross-references are CRIU 4.2's, so that CRIU restores what crust dumps: ids as
//! `ns.rs` numbers them (kernel-object ids only in ids-PID.img, none in the cores),
//! fdinfo-N.img named by the files id.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use crust_arch::{Abi, HostArch, ThreadRegs};
use crust_images::pb;
use crust_images::ImageKind;

use crate::dump::files::ProcessFiles;
use crate::dump::freeze::{Frozen, OutsideNamespace};
use crate::dump::queries::ProcessQueries;
use crate::error::io_failure;
use crate::files::{FileDumpError, FileTable};
use crate::model::{Collected, SIGINFO_SIZE, TASK_ALIVE, TASK_DEAD, TASK_STOPPED};
use crate::ns::TreeIds;
use crate::procfs;

/// Why the images could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Image { pid: i32, source: crust_images::ImageError },
    #[error(transparent)]
    OutsideNamespace(#[from] OutsideNamespace),
    #[error(transparent)]
    Files(#[from] FileDumpError),
}
io_failure!(WriteError);

/// A process's group or session id as its own pid namespace numbers it: through the
/// dumped tree's pid map, or, for a leader that already exited (so is not in the tree),
/// from the innermost `NSpgid`/`NSsid` of /proc/PID/status.
fn ns_group_id(frozen: &Frozen, pid: i32, host_id: i32, key: &str, what: &str) -> Result<i32, WriteError> {
    match frozen.to_virtual(host_id, what) {
        Ok(id) => Ok(id),
        Err(error) => {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(io_err(pid, "read status"))?;
            // 0 there: the leader lives outside the namespace (a parent namespace's session).
            Ok(procfs::parse_innermost_id(&status, key).ok_or(error)?)
        }
    }
}

/// Everything the earlier stages found, for [`write_images`].
pub(crate) struct Dumped<'a> {
    /// Every thread's cgroup set and cgroup.img's entry.
    pub(crate) cgroups: &'a crate::cgroups::dump::Dumped,
    pub(crate) frozen: &'a Frozen,
    pub(crate) collected: &'a [Collected],
    pub(crate) queries: &'a [ProcessQueries],
    pub(crate) files: &'a FileTable,
    pub(crate) process_files: &'a [ProcessFiles],
    /// Each live process's areas, in tree order.
    pub(crate) memory: Vec<Vec<pb::VmaEntry>>,
    /// Pages images the memory stage gave shared anonymous objects, after the processes'.
    pub(crate) shared_anon_pages_ids: u32,
    /// crust's own ids and each live process's, in tree order (`ns::number`).
    pub(crate) ids: &'a TreeIds,
    /// This dump's id (a UUID): `inventory.dump_criu_run_id`, and the name of the
    /// nftables table that locks its TCP connections.
    pub(crate) run_id: &'a str,
}


/// The auxiliary vector as CRIU keeps it: without the terminating AT_NULL pair (the
/// kernel's vector holds at most 44 words besides it on x86_64, and CRIU's restore
/// refuses a longer one; the kernel puts the terminator back itself).
pub(crate) fn auxv_without_terminator(mut auxv: Vec<u64>) -> Vec<u64> {
    while auxv.len() >= 2 && auxv[auxv.len() - 2] == 0 {
        auxv.truncate(auxv.len() - 2);
    }
    auxv
}

/// Writes the images of the tree rooted at `root` into `dir`: inventory, seccomp,
/// timens, pstree, core, mm, fdinfo, fs, ids and the files' images.
pub(crate) fn write_images(root: i32, dir: &Path, dumped: Dumped) -> Result<(), WriteError> {
    let Dumped { cgroups, frozen, collected, queries, files, process_files, memory, shared_anon_pages_ids, ids: tree_ids, run_id } = dumped;
    let image = |pid: i32| move |source| WriteError::Image { pid, source };
    let v = |host: i32, what: &str| frozen.to_virtual(host, what);

    let mut w = crate::private::create_image(dir, ImageKind::Inventory, 0).map_err(image(root))?;
    w.write_entry(&pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(tree_ids.root),
        ns_per_id: Some(true),
        // crust's own cgroups; a process elsewhere names a set of cgroup.img.
        root_cg_set: Some(crate::cgroups::OWN_SET),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        // How the TCP connections were locked: with nftables in CRIU's table
        // (`files::netlock`), so CRIU's restore lifts crust's lock and crust's CRIU's;
        // not at all with `--network-lock skip`, recorded as CRIU records it.
        network_lock_method: Some(if files.network_lock_skip { crate::files::NETWORK_LOCK_SKIP } else { crate::files::NETWORK_LOCK_NFTABLES }),
        plugins_entry: Some(Default::default()),
        dump_criu_run_id: Some(run_id.to_string()),
        ..Default::default()
    })
    .map_err(image(root))?;
    w.finish().map_err(image(root))?;

    // seccomp.img (always, as CRIU writes it): every distinct filter once, chained to
    // the one before it; a thread names its newest.
    let mut seccomp = pb::SeccompEntry::default();
    let mut seccomp_index: BTreeMap<(Option<u32>, &[u8]), u32> = BTreeMap::new();
    let mut newest_filter: BTreeMap<i32, u32> = BTreeMap::new();
    for thread in frozen.processes.iter().flat_map(|p| p.threads.iter()) {
        let mut prev = None;
        for filter in &thread.seccomp_filters {
            let index = *seccomp_index.entry((prev, filter.as_slice())).or_insert_with(|| {
                seccomp.seccomp_filters.push(pb::SeccompFilter { filter: filter.clone(), prev, flags: None });
                seccomp.seccomp_filters.len() as u32 - 1
            });
            prev = Some(index);
        }
        if let Some(index) = prev {
            newest_filter.insert(thread.tid, index);
        }
    }
    let mut w = crate::private::create_image(dir, ImageKind::Seccomp, 0).map_err(image(root))?;
    w.write_entry(&seccomp).map_err(image(root))?;
    w.finish().map_err(image(root))?;

    // timens-0.img: the clocks at dump, which a restore into a new time namespace
    // offsets to (CRIU writes it for every dump, under id 0 when the tree shares the
    // dumper's time namespace). A tree in a time namespace of its own gets
    // timens-ID.img with the clocks as its tasks read them: crust's plus the
    // namespace's offsets (/proc/PID/timens_offsets; crust, multithreaded, cannot
    // enter a time namespace to read them).
    let tree_time_ns = tree_ids.processes.first().and_then(|ids| ids.time_ns_id).filter(|&id| Some(id) != tree_ids.root.time_ns_id);
    let offsets = match tree_time_ns {
        Some(_) => {
            let pid = frozen.processes.iter().find(|p| !p.is_zombie()).map_or(root, |p| p.proc_pid());
            let text = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets"))
                .map_err(|source| WriteError::Io { pid, what: "read /proc/PID/timens_offsets".into(), source })?;
            crate::procfs::parse_timens_offsets(&text).map_err(|what| WriteError::Io { pid, what, source: std::io::Error::from_raw_os_error(libc::EINVAL) })?
        }
        None => Default::default(),
    };
    let clock = |id: nix::time::ClockId, offset: (i64, i64)| {
        nix::time::clock_gettime(id)
            .map(|t| crate::procfs::add_offset((t.tv_sec() as i64, t.tv_nsec() as i64), offset))
            .map(|(sec, nsec)| pb::Timespec { tv_sec: sec as u64, tv_nsec: nsec as u64 })
            .map_err(|errno| WriteError::Io { pid: root, what: format!("clock_gettime({id})"), source: errno.into() })
    };
    let mut w = crate::private::create_image(dir, ImageKind::Timens, u64::from(tree_time_ns.unwrap_or(0))).map_err(image(root))?;
    w.write_entry(&pb::TimensEntry {
        monotonic: clock(nix::time::ClockId::CLOCK_MONOTONIC, offsets.monotonic)?,
        boottime: clock(nix::time::ClockId::CLOCK_BOOTTIME, offsets.boottime)?,
    })
    .map_err(image(root))?;
    w.finish().map_err(image(root))?;

    let mut w = crate::private::create_image(dir, ImageKind::Pstree, 0).map_err(image(root))?;
    for process in &frozen.processes {
        let mut threads: Vec<u32> = if process.is_zombie() || process.leader_gone {
            vec![v(process.pid, "pid")? as u32]
        } else {
            Vec::new()
        };
        for thread in &process.threads {
            threads.push(v(thread.tid, "tid")? as u32);
        }
        let ppid = if process.pid == root { 0 } else { v(process.ppid, "parent")? as u32 };
        w.write_entry(&pb::PstreeEntry {
            pid: v(process.pid, "pid")? as u32,
            ppid,
            pgid: ns_group_id(frozen, process.pid, process.stat.pgid, "NSpgid", "process group")? as u32,
            sid: if process.stat.sid == 0 { 0 } else { ns_group_id(frozen, process.pid, process.stat.sid, "NSsid", "session")? as u32 },
            threads,
        })
        .map_err(image(root))?;
    }
    w.finish().map_err(image(root))?;

    let siginfos = |list: &[[u8; SIGINFO_SIZE]]| pb::SignalQueueEntry {
        signals: list.iter().map(|s| pb::SiginfoEntry { siginfo: s.to_vec() }).collect(),
    };
    // Zombies: a core with the exit status only.
    for process in frozen.processes.iter().filter(|p| p.is_zombie()) {
        let core = pb::CoreEntry {
            mtype: HostArch::CORE_MTYPE,
            tc: Some(pb::TaskCoreEntry {
                task_state: TASK_DEAD,
                exit_code: process.stat.exit_code as u32,
                comm: process.stat.comm.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut w = crate::private::create_image(dir, ImageKind::Core, v(process.pid, "pid")? as u64).map_err(image(process.pid))?;
        w.write_entry(&core).map_err(image(process.pid))?;
        w.finish().map_err(image(process.pid))?;
    }

    // cgroup.img, when a task is outside crust's own cgroups (CRIU's rule).
    if let Some(entry) = &cgroups.image {
        let mut w = crate::private::create_image(dir, ImageKind::Cgroup, 0).map_err(image(root))?;
        w.write_entry(entry).map_err(image(root))?;
        w.finish().map_err(image(root))?;
    }

    let live = frozen.processes.iter().filter(|p| !p.is_zombie());
    for (index, (((process, collected), queries), vmas)) in live.zip(collected).zip(queries).zip(memory).enumerate() {
        let pid = process.pid;
        let ids = tree_ids.processes[index];
        let stat = &collected.stat;
        let mut posix_timers = queries.posix_timers.clone();
        for timer in &mut posix_timers {
            if let Some(host_tid) = timer.notify_thread_id {
                timer.notify_thread_id = Some(v(host_tid, "timer's thread")?);
            }
        }
        let tc = pb::TaskCoreEntry {
            task_state: if process.stopped { TASK_STOPPED } else { TASK_ALIVE },
            exit_code: 0,
            personality: collected.personality,
            flags: stat.flags as u32,
            blk_sigset: process.threads[0].sigmask,
            comm: stat.comm.clone(),
            timers: Some(pb::TaskTimersEntry {
                real: queries.itimers[0],
                virt: queries.itimers[1],
                prof: queries.itimers[2],
                posix: posix_timers,
            }),
            rlimits: Some(pb::TaskRlimitsEntry {
                rlimits: queries.rlimits.iter().map(|&(cur, max)| pb::RlimitEntry { cur, max }).collect(),
            }),
            signals_s: Some(siginfos(&queries.shared_pending)),
            sigactions: queries.sigactions.clone(),
            stop_signo: process.stopped.then_some(process.stop_signal() as u32),
            child_subreaper: Some(queries.child_subreaper),
            membarrier_registration_mask: queries.membarrier.filter(|&mask| mask != 0),
            oom_score_adj: fs::read_to_string(format!("/proc/{}/oom_score_adj", process.proc_pid())).ok().and_then(|v| v.trim().parse().ok()),
            // The audit login uid (4294967295: never set); the session id that goes
            // with it is the kernel's to number and has no field.
            loginuid: fs::read_to_string(format!("/proc/{}/loginuid", process.proc_pid())).ok().and_then(|v| v.trim().parse().ok()),
            ..Default::default()
        };
        if process.leader_gone {
            // The exited leader: the process's own state, its name, and no registers
            // (restore has it exit again once its threads exist).
            let comm = fs::read_to_string(format!("/proc/{pid}/task/{pid}/comm")).map(|c| c.trim_end_matches('\n').to_string()).ok();
            let core = pb::CoreEntry {
                mtype: HostArch::CORE_MTYPE,
                tc: Some(tc.clone()),
                thread_core: Some(pb::ThreadCoreEntry { comm, ..Default::default() }),
                ..Default::default()
            };
            let mut w = crate::private::create_image(dir, ImageKind::Core, v(pid, "pid")? as u64).map_err(image(pid))?;
            w.write_entry(&core).map_err(image(pid))?;
            w.finish().map_err(image(pid))?;
        }
        for (thread_index, (thread, tq)) in process.threads.iter().zip(&queries.threads).enumerate() {
            let mut core = pb::CoreEntry {
                mtype: HostArch::CORE_MTYPE,
                thread_core: Some(pb::ThreadCoreEntry {
                    futex_rla: tq.robust_list.0,
                    futex_rla_len: tq.robust_list.1 as u32,
                    blk_sigset: Some(thread.sigmask),
                    sas: Some(tq.altstack),
                    signals_p: Some(siginfos(&tq.private_pending)),
                    creds: Some(tq.creds.clone()),
                    pdeath_sig: Some(tq.pdeath_sig),
                    comm: Some(tq.comm.clone()),
                    // As CRIU writes them: the policy and the nice value always (CRIU's
                    // restore reads the nice value only next to a policy), the priority
                    // of a real-time policy.
                    sched_policy: Some(tq.scheduling.policy as u32),
                    sched_prio: matches!(tq.scheduling.policy & !libc::SCHED_RESET_ON_FORK, libc::SCHED_FIFO | libc::SCHED_RR)
                        .then_some(tq.scheduling.rt_priority as u32),
                    sched_nice: Some(tq.scheduling.nice),
                    seccomp_mode: (thread.seccomp_mode != 0).then_some(thread.seccomp_mode as i32),
                    seccomp_filter: newest_filter.get(&thread.tid).copied(),
                    cg_set: Some(cgroups.set_of(thread.tid)),
                    rseq_entry: thread.rseq.map(|r| pb::RseqEntry {
                        rseq_abi_pointer: r.pointer,
                        rseq_abi_size: r.size,
                        signature: r.signature,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            if thread_index == 0 && !process.leader_gone {
                core.tc = Some(tc.clone());
            }
            // Inside an interrupted syscall: stored ready to resume, as CRIU stores it.
            let regs = ThreadRegs { gpr: HostArch::image_regs(&thread.regs.gpr), ext: thread.regs.ext.clone() };
            HostArch::regs_to_core(&mut core, &regs, tq.clear_tid_addr);
            let mut w = crate::private::create_image(dir, ImageKind::Core, v(thread.tid, "tid")? as u64).map_err(image(pid))?;
            w.write_entry(&core).map_err(image(pid))?;
            w.finish().map_err(image(pid))?;
        }

        let ProcessFiles { fds, cwd_id, root_id, exe_id } = &process_files[index];
        let mm = pb::MmEntry {
            mm_start_code: stat.start_code,
            mm_end_code: stat.end_code,
            mm_start_data: stat.start_data,
            mm_end_data: stat.end_data,
            mm_start_stack: stat.start_stack,
            mm_start_brk: stat.start_brk,
            mm_brk: queries.brk,
            mm_arg_start: stat.arg_start,
            mm_arg_end: stat.arg_end,
            mm_env_start: stat.env_start,
            mm_env_end: stat.env_end,
            exe_file_id: *exe_id,
            mm_saved_auxv: auxv_without_terminator(collected.auxv.clone()),
            vmas,
            dumpable: Some(queries.dumpable),
            thp_disabled: Some(queries.thp_disabled),
            ..Default::default()
        };
        let vpid = v(pid, "pid")? as u64;
        let mut w = crate::private::create_image(dir, ImageKind::Mm, vpid).map_err(image(pid))?;
        w.write_entry(&mm).map_err(image(pid))?;
        w.finish().map_err(image(pid))?;

        crate::files::write_fdinfo(pid, dir, fds, ids.files_id)?;

        let umask = collected.status.get("Umask").and_then(|v| u32::from_str_radix(v, 8).ok());
        let mut w = crate::private::create_image(dir, ImageKind::Fs, vpid).map_err(image(pid))?;
        w.write_entry(&pb::FsEntry { cwd_id: *cwd_id, root_id: *root_id, umask }).map_err(image(pid))?;
        w.finish().map_err(image(pid))?;

        let mut w = crate::private::create_image(dir, ImageKind::Ids, vpid).map_err(image(pid))?;
        w.write_entry(&ids).map_err(image(pid))?;
        w.finish().map_err(image(pid))?;
    }
    // memfd data takes the pages ids after the processes' and the shared anonymous objects'.
    crate::files::write_images(root, dir, files, collected.len() as u32 + shared_anon_pages_ids + 1)?;
    Ok(())
}

/// What stats-dump records of a finished dump.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DumpStats {
    pub(crate) freezing: std::time::Duration,
    pub(crate) frozen: std::time::Duration,
    /// The memory stage (crust writes pages as it reads them: no separate write time).
    pub(crate) memdump: std::time::Duration,
    /// Pages of every area of every process.
    pub(crate) pages_scanned: u64,
    pub(crate) pages_written: u64,
}

/// Writes stats-dump, CRIU's record of a dump's timings (µs) and page counts.
pub(crate) fn write_stats(root: i32, dir: &Path, stats: &DumpStats) -> Result<(), WriteError> {
    let micros = |d: std::time::Duration| d.as_micros().min(u32::MAX as u128) as u32;
    let entry = pb::StatsEntry {
        dump: Some(pb::DumpStatsEntry {
            freezing_time: micros(stats.freezing),
            frozen_time: micros(stats.frozen),
            memdump_time: micros(stats.memdump),
            memwrite_time: 0,
            pages_scanned: stats.pages_scanned,
            // Pages a parent dump holds are not counted apart yet.
            pages_skipped_parent: 0,
            pages_written: stats.pages_written,
            irmap_resolve: Some(0),
            pages_lazy: 0,
            ..Default::default()
        }),
        restore: None,
    };
    let mut w = crate::private::create_image(dir, ImageKind::StatsDump, 0).map_err(|source| WriteError::Image { pid: root, source })?;
    w.write_entry(&entry).map_err(|source| WriteError::Image { pid: root, source })?;
    w.finish().map_err(|source| WriteError::Image { pid: root, source })?;
    Ok(())
}
