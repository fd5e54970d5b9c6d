//! The dump pipeline: freeze, collect, dump memory and files, write images, then kill or
//! release the target.
//!
//! Invariant: until the last image is written the target is only ever stopped; any
//! error (or an injected fault) releases it exactly as it was, through [`Frozen`]'s Drop.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crust_arch::{Abi, Host, HostArch, Sys, ThreadRegs};
use crust_images::pb;
use crust_images::{ImageKind, ImageWriter};

use crate::infect::{self, RemoteThread};
use crate::files::{DumpedFd, FileTable};
use crate::procfs;
use crate::sys;

type Regs = <HostArch as Abi>::Regs;

/// What `crust dump` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// The process to dump.
    pub pid: i32,
    /// Directory the images are written to.
    pub dir: PathBuf,
    /// Leave the target running after a good dump (default: kill it).
    pub leave_running: bool,
    /// The target is attached to the caller's terminal session.
    pub shell_job: bool,
    /// Fault injection for tests: fail right after this step.
    pub fail_after: Option<DumpStep>,
}

/// The steps of a dump, in order (fault injection names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DumpStep {
    Seize,
    Collect,
    Parasite,
    Memory,
    Files,
    Images,
}

impl DumpStep {
    /// All steps in order.
    pub const ALL: [DumpStep; 6] =
        [Self::Seize, Self::Collect, Self::Parasite, Self::Memory, Self::Files, Self::Images];

    /// The step's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seize => "seize",
            Self::Collect => "collect",
            Self::Parasite => "parasite",
            Self::Memory => "memory",
            Self::Files => "files",
            Self::Images => "images",
        }
    }

    /// Parses a step name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Figures of a finished dump.
#[derive(Clone, Debug, Default)]
pub struct DumpReport {
    /// How long the target was stopped.
    pub frozen: Duration,
    /// Wall time of the whole dump.
    pub total: Duration,
    /// Pages written to pages-1.img.
    pub pages: u64,
    /// Memory areas recorded.
    pub vmas: usize,
}

/// Why a dump failed. The target was released unchanged.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Parse { pid: i32, source: procfs::ParseError },
    #[error("dump pid {pid}: {source}")]
    Infect { pid: i32, source: infect::InfectError },
    #[error("dump pid {pid}: {source}")]
    Arch { pid: i32, source: crust_arch::HostError },
    #[error("dump pid {pid}: {source}")]
    Image { pid: i32, source: crust_images::ImageError },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    #[error("dump pid {pid}: remote {call:?} failed: errno {errno}")]
    RemoteSyscall { pid: i32, call: Sys, errno: i64 },
    #[error("dump pid {pid}: fault injected after step {step}")]
    FaultInjected { pid: i32, step: &'static str },
}

pub(crate) fn io_err(pid: i32, what: impl Into<String>) -> impl FnOnce(io::Error) -> DumpError {
    let what = what.into();
    move |source| DumpError::Io { pid, what, source }
}

/// One stopped thread and what is needed to let it go unchanged.
struct FrozenThread {
    tid: i32,
    rseq: Option<sys::RseqConfig>,
    regs: ThreadRegs<Regs>,
    sigmask: u64,
}

/// The seized target. Dropping it releases every thread exactly as it was.
struct Frozen {
    pid: i32,
    threads: Vec<FrozenThread>,
    /// Registers were changed by remote syscalls and must be put back.
    touched: bool,
    finished: bool,
}

impl Frozen {
    fn seize(pid: i32) -> Result<Frozen, DumpError> {
        let mut frozen = Frozen { pid, threads: Vec::new(), touched: false, finished: false };
        for tid in list_threads(pid)? {
            sys::seize_thread(tid, libc::PTRACE_O_TRACESYSGOOD)
                .map_err(io_err(pid, format!("seize tid {tid}")))?;
            sys::interrupt_thread(tid).map_err(io_err(pid, format!("interrupt tid {tid}")))?;
            loop {
                match sys::wait_thread(tid).map_err(io_err(pid, format!("wait tid {tid}")))? {
                    sys::WaitEvent::Stopped { event, .. } if event == libc::PTRACE_EVENT_STOP => break,
                    sys::WaitEvent::Stopped { signal, .. } => {
                        // A signal arrived first: keep it for the thread, stop again.
                        sys::continue_thread(tid, signal).map_err(io_err(pid, "re-inject signal"))?;
                    }
                    _ => {
                        return Err(DumpError::Io {
                            pid,
                            what: format!("tid {tid} exited while being seized"),
                            source: io::Error::from_raw_os_error(libc::ESRCH),
                        })
                    }
                }
            }
            let regs = HostArch::read_regs(tid).map_err(|source| DumpError::Arch { pid, source })?;
            let sigmask = sys::read_sigmask(tid).map_err(io_err(pid, "PTRACE_GETSIGMASK"))?;
            let rseq = sys::read_rseq_config(tid).map_err(io_err(pid, "PTRACE_GET_RSEQ_CONFIGURATION"))?;
            frozen.threads.push(FrozenThread { tid, rseq, regs, sigmask });
        }
        Ok(frozen)
    }

    /// Puts registers and masks back and detaches.
    fn release(&mut self) {
        for thread in &self.threads {
            if self.touched {
                // The thread stopped at an injected syscall's exit: restart what it was
                // doing the way the kernel would have.
                let resume = HostArch::resume_regs(&thread.regs.gpr, true);
                let restarts = HostArch::ip(&resume) != HostArch::ip(&thread.regs.gpr);
                if infect::release_thread(thread.tid, &resume, restarts, thread.sigmask).is_ok() {
                    continue;
                }
            }
            let _ = sys::write_sigmask(thread.tid, thread.sigmask);
            let _ = sys::detach_thread(thread.tid, 0);
        }
        self.finished = true;
    }

    /// Kills the target after a good dump and waits until it is gone.
    fn kill(&mut self) {
        let _ = sys::send_signal(self.pid, libc::SIGKILL);
        for thread in &self.threads {
            while let Ok(sys::WaitEvent::Stopped { .. }) = sys::wait_thread(thread.tid) {}
        }
        self.finished = true;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.finished {
            self.release();
        }
    }
}

fn list_threads(pid: i32) -> Result<Vec<i32>, DumpError> {
    let dir = format!("/proc/{pid}/task");
    let mut tids: Vec<i32> = fs::read_dir(&dir)
        .map_err(io_err(pid, format!("read {dir}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    // The leader first.
    if let Some(index) = tids.iter().position(|&t| t == pid) {
        tids.swap(0, index);
    }
    Ok(tids)
}

/// Dumps one process into `options.dir`.
pub fn dump(options: &DumpOptions) -> Result<DumpReport, DumpError> {
    let pid = options.pid;
    let started = Instant::now();
    let fault = |step: DumpStep| -> Result<(), DumpError> {
        if options.fail_after == Some(step) {
            return Err(DumpError::FaultInjected { pid, step: step.name() });
        }
        Ok(())
    };
    fs::create_dir_all(&options.dir).map_err(io_err(pid, format!("create {}", options.dir.display())))?;
    check_supported_shape(pid)?;

    let mut frozen = Frozen::seize(pid)?;
    let frozen_at = Instant::now();
    log::info!("seized pid {pid} ({} threads)", frozen.threads.len());
    fault(DumpStep::Seize)?;

    let collected = collect(pid)?;
    fault(DumpStep::Collect)?;

    let mem = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(io_err(pid, "open /proc/PID/mem"))?;
    frozen.touched = true;
    let task = query_task(&frozen, &collected, &mem)?;
    fault(DumpStep::Parasite)?;

    let mut files = FileTable::default();
    let (vmas, pages) = crate::memory::dump_memory(pid, &options.dir, &collected, &mem, &mut files, 1)?;
    fault(DumpStep::Memory)?;

    let fds = crate::files::collect_fds(pid, options.shell_job, &mut files)?;
    let cwd_id = files.add_path(pid, &collected.cwd, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let root_id = files.add_path(pid, &collected.root, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let exe_id = files.add_path(pid, &collected.exe, libc::O_RDONLY)?;
    fault(DumpStep::Files)?;

    write_images(options, &frozen, &collected, &task, &files, &fds, vmas.clone(), (cwd_id, root_id, exe_id))?;
    fault(DumpStep::Images)?;

    if options.leave_running {
        frozen.release();
    } else {
        frozen.kill();
    }
    let frozen_for = frozen_at.elapsed();
    Ok(DumpReport { frozen: frozen_for, total: started.elapsed(), pages, vmas: vmas.len() })
}

fn check_supported_shape(pid: i32) -> Result<(), DumpError> {
    let threads = list_threads(pid)?;
    if threads.len() > 1 {
        return Err(DumpError::Unsupported {
            pid,
            what: format!("a process with {} threads", threads.len()),
        });
    }
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    if !children.trim().is_empty() {
        return Err(DumpError::Unsupported {
            pid,
            what: format!("a process with children ({})", children.trim()),
        });
    }
    Ok(())
}

/// What /proc tells about the target.
pub(crate) struct Collected {
    stat: procfs::Stat,
    status: BTreeMap<String, String>,
    pub(crate) smaps: Vec<procfs::SmapsEntry>,
    auxv: Vec<u64>,
    exe: PathBuf,
    cwd: PathBuf,
    root: PathBuf,
    personality: u32,
    rlimits: Vec<(u64, u64)>,
}

fn collect(pid: i32) -> Result<Collected, DumpError> {
    let read = |name: &str| {
        fs::read_to_string(format!("/proc/{pid}/{name}")).map_err(io_err(pid, format!("read /proc/{pid}/{name}")))
    };
    let link = |name: &str| {
        fs::read_link(format!("/proc/{pid}/{name}")).map_err(io_err(pid, format!("readlink /proc/{pid}/{name}")))
    };
    let stat = procfs::parse_stat(&read("stat")?).map_err(|source| DumpError::Parse { pid, source })?;
    let status = procfs::parse_key_values(&read("status")?);
    let smaps = procfs::parse_smaps(&read("smaps")?).map_err(|source| DumpError::Parse { pid, source })?;
    let auxv_bytes = fs::read(format!("/proc/{pid}/auxv")).map_err(io_err(pid, "read auxv"))?;
    let auxv = auxv_bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
    let personality = u32::from_str_radix(read("personality")?.trim(), 16).unwrap_or(0);
    let mut rlimits = Vec::new();
    for resource in 0..16u32 {
        rlimits.push(sys::read_rlimit(pid, resource).map_err(io_err(pid, format!("prlimit {resource}")))?);
    }
    Ok(Collected {
        stat,
        status,
        smaps,
        auxv,
        exe: link("exe")?,
        cwd: link("cwd")?,
        root: link("root")?,
        personality,
        rlimits,
    })
}

/// Task state only the task itself can tell, asked through remote syscalls.
struct TaskQueries {
    sigactions: Vec<pb::SaEntry>,
    altstack: pb::ThreadSasEntry,
    itimers: [pb::ItimerEntry; 3],
    brk: u64,
    clear_tid_addr: u64,
    dumpable: i32,
    shared_pending: Vec<[u8; sys::SIGINFO_SIZE]>,
    private_pending: Vec<[u8; sys::SIGINFO_SIZE]>,
}

fn query_task(frozen: &Frozen, collected: &Collected, mem: &File) -> Result<TaskQueries, DumpError> {
    let pid = frozen.pid;
    let thread = &frozen.threads[0];
    let shared_pending =
        sys::peek_pending_signals(thread.tid, true).map_err(io_err(pid, "PTRACE_PEEKSIGINFO shared"))?;
    let private_pending =
        sys::peek_pending_signals(thread.tid, false).map_err(io_err(pid, "PTRACE_PEEKSIGINFO"))?;
    // Nothing is delivered while syscalls run in the thread.
    sys::write_sigmask(thread.tid, !0u64).map_err(io_err(pid, "PTRACE_SETSIGMASK"))?;

    let vdso = collected
        .smaps
        .iter()
        .find(|e| e.map.name == "[vdso]")
        .ok_or_else(|| DumpError::Unsupported { pid, what: "a process without a vdso".into() })?;
    let syscall_ip = infect::find_syscall_in_vdso(thread.tid, mem, vdso.map.start, vdso.map.end)
        .map_err(|source| DumpError::Infect { pid, source })?;
    let mut remote = RemoteThread::new(thread.tid, syscall_ip, thread.regs.gpr);
    let mut call = |call: Sys, args: [u64; 6]| -> Result<i64, DumpError> {
        let result = remote.syscall(call, args).map_err(|source| DumpError::Infect { pid, source })?;
        if (-4095..0).contains(&result) {
            return Err(DumpError::RemoteSyscall { pid, call, errno: -result });
        }
        Ok(result)
    };

    let page = sys::page_size();
    let scratch = call(
        Sys::Mmap,
        [0, page, (libc::PROT_READ | libc::PROT_WRITE) as u64, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, u64::MAX, 0],
    )? as u64;
    let read_scratch = |len: usize| -> Result<Vec<u8>, DumpError> {
        let mut buf = vec![0u8; len];
        mem.read_exact_at(&mut buf, scratch).map_err(io_err(pid, "read scratch page"))?;
        Ok(buf)
    };
    let word = |b: &[u8], i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));

    let result = (|| {
        let mut sigactions = Vec::new();
        for signal in 1..=64u64 {
            if signal == libc::SIGKILL as u64 || signal == libc::SIGSTOP as u64 {
                continue;
            }
            call(Sys::RtSigaction, [signal, 0, scratch, 8, 0, 0])?;
            let b = read_scratch(32)?;
            sigactions.push(pb::SaEntry {
                sigaction: word(&b, 0),
                flags: word(&b, 1),
                restorer: word(&b, 2),
                mask: word(&b, 3),
                ..Default::default()
            });
        }
        call(Sys::Sigaltstack, [0, scratch, 0, 0, 0, 0])?;
        let b = read_scratch(24)?;
        let altstack = pb::ThreadSasEntry {
            ss_sp: word(&b, 0),
            ss_flags: word(&b, 1) as u32,
            ss_size: word(&b, 2),
        };
        let mut itimers: [pb::ItimerEntry; 3] = Default::default();
        for (which, timer) in itimers.iter_mut().enumerate() {
            call(Sys::Getitimer, [which as u64, scratch, 0, 0, 0, 0])?;
            let b = read_scratch(32)?;
            *timer = pb::ItimerEntry { isec: word(&b, 0), iusec: word(&b, 1), vsec: word(&b, 2), vusec: word(&b, 3) };
        }
        let brk = call(Sys::Brk, [0; 6])? as u64;
        call(Sys::Prctl, [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0])?;
        let clear_tid_addr = word(&read_scratch(8)?, 0);
        let dumpable = call(Sys::Prctl, [libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0, 0])? as i32;
        Ok((sigactions, altstack, itimers, brk, clear_tid_addr, dumpable))
    })();
    // The scratch page goes whatever happened.
    let unmapped = call(Sys::Munmap, [scratch, page, 0, 0, 0, 0]);
    let (sigactions, altstack, itimers, brk, clear_tid_addr, dumpable) = result?;
    unmapped?;
    Ok(TaskQueries { sigactions, altstack, itimers, brk, clear_tid_addr, dumpable, shared_pending, private_pending })
}

#[allow(clippy::too_many_arguments)]
fn write_images(
    options: &DumpOptions,
    frozen: &Frozen,
    collected: &Collected,
    task: &TaskQueries,
    files: &FileTable,
    fds: &[DumpedFd],
    vmas: Vec<pb::VmaEntry>,
    (cwd_id, root_id, exe_id): (u32, u32, u32),
) -> Result<(), DumpError> {
    let pid = options.pid;
    let dir = &options.dir;
    let image = |source| DumpError::Image { pid, source };
    let thread = &frozen.threads[0];
    let ids = pb::TaskKobjIdsEntry { vm_id: 1, files_id: 1, fs_id: 1, sighand_id: 1, ..Default::default() };

    let mut w = ImageWriter::create(dir, ImageKind::Inventory, 0).map_err(image)?;
    w.write_entry(&pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(ids.clone()),
        ns_per_id: Some(true),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        ..Default::default()
    })
    .map_err(image)?;
    w.finish().map_err(image)?;

    let stat = &collected.stat;
    let (pgid, sid) = if options.shell_job { (stat.pgid, stat.sid) } else { (stat.pgid, stat.sid) };
    let mut w = ImageWriter::create(dir, ImageKind::Pstree, 0).map_err(image)?;
    w.write_entry(&pb::PstreeEntry {
        pid: pid as u32,
        ppid: 0,
        pgid: pgid as u32,
        sid: sid as u32,
        threads: frozen.threads.iter().map(|t| t.tid as u32).collect(),
    })
    .map_err(image)?;
    w.finish().map_err(image)?;

    let siginfos = |list: &[[u8; sys::SIGINFO_SIZE]]| pb::SignalQueueEntry {
        signals: list.iter().map(|s| pb::SiginfoEntry { siginfo: s.to_vec() }).collect(),
    };
    let creds = creds_from_status(&collected.status);
    let mut core = pb::CoreEntry {
        mtype: HostArch::CORE_MTYPE,
        
        tc: Some(pb::TaskCoreEntry {
            task_state: TASK_ALIVE,
            exit_code: 0,
            personality: collected.personality,
            flags: stat.flags as u32,
            blk_sigset: thread.sigmask,
            comm: stat.comm.clone(),
            timers: Some(pb::TaskTimersEntry {
                real: task.itimers[0],
                virt: task.itimers[1],
                prof: task.itimers[2],
                posix: Vec::new(),
            }),
            rlimits: Some(pb::TaskRlimitsEntry {
                rlimits: collected.rlimits.iter().map(|&(cur, max)| pb::RlimitEntry { cur, max }).collect(),
            }),
            signals_s: Some(siginfos(&task.shared_pending)),
            sigactions: task.sigactions.clone(),
            ..Default::default()
        }),
        ids: Some(ids.clone()),
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla: 0,
            futex_rla_len: 0,
            blk_sigset: Some(thread.sigmask),
            sas: Some(task.altstack),
            signals_p: Some(siginfos(&task.private_pending)),
            creds: Some(creds),
            comm: Some(stat.comm.clone()),
            rseq_entry: thread.rseq.map(|r| pb::RseqEntry {
                rseq_abi_pointer: r.pointer,
                rseq_abi_size: r.size,
                signature: r.signature,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    HostArch::regs_to_core(&mut core, &thread.regs, task.clear_tid_addr);
    let mut w = ImageWriter::create(dir, ImageKind::Core, pid as u64).map_err(image)?;
    w.write_entry(&core).map_err(image)?;
    w.finish().map_err(image)?;

    let mm = pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: task.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: exe_id,
        mm_saved_auxv: collected.auxv.clone(),
        vmas,
        dumpable: Some(task.dumpable),
        ..Default::default()
    };
    let mut w = ImageWriter::create(dir, ImageKind::Mm, pid as u64).map_err(image)?;
    w.write_entry(&mm).map_err(image)?;
    w.finish().map_err(image)?;

    crate::files::write_images(pid, dir, files, fds, ids.files_id)?;

    let umask = collected.status.get("Umask").and_then(|v| u32::from_str_radix(v, 8).ok());
    let mut w = ImageWriter::create(dir, ImageKind::Fs, pid as u64).map_err(image)?;
    w.write_entry(&pb::FsEntry { cwd_id, root_id, umask }).map_err(image)?;
    w.finish().map_err(image)?;

    let mut w = ImageWriter::create(dir, ImageKind::Ids, pid as u64).map_err(image)?;
    w.write_entry(&ids).map_err(image)?;
    w.finish().map_err(image)?;

    Ok(())
}

/// CRIU's task state for a live task.
const TASK_ALIVE: u32 = 1;

fn creds_from_status(status: &BTreeMap<String, String>) -> pb::CredsEntry {
    let ids = |key: &str| status.get(key).and_then(|v| procfs::parse_id_quad(v)).unwrap_or([0; 4]);
    let caps = |key: &str| {
        let value = status.get(key).and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
        vec![value as u32, (value >> 32) as u32]
    };
    let [uid, euid, suid, fsuid] = ids("Uid");
    let [gid, egid, sgid, fsgid] = ids("Gid");
    pb::CredsEntry {
        uid,
        gid,
        euid,
        egid,
        suid,
        sgid,
        fsuid,
        fsgid,
        cap_inh: caps("CapInh"),
        cap_prm: caps("CapPrm"),
        cap_eff: caps("CapEff"),
        cap_bnd: caps("CapBnd"),
        cap_amb: caps("CapAmb"),
        secbits: 0,
        groups: status
            .get("Groups")
            .map(|g| g.split_whitespace().filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default(),
        ..Default::default()
    }
}
