//! The queries stage of a dump: what only a process itself can tell, asked by its
//! parasite (`parasite/`) in batches, one round trip each: signal actions, itimers,
//! POSIX timers, brk, dumpable, and per thread (in each thread, by a program of its
//! own) its altstack, clear_tid address, securebits and pdeath signal. Pending signals
//! and robust lists come from ptrace and get_robust_list, comm and credentials from
//! /proc. The stage starts each process's parasite; the memory stage uses it too, and
//! it is cured before the files stage.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use crust_arch::Sys;
use crust_images::pb;

use crate::dump::freeze::{FrozenProcess, FrozenThread};
use crate::error::io_failure;
use crate::infect;
use crate::model::{Collected, SIGEV_THREAD_ID, SIGINFO_SIZE};
use crate::parasite::guardian::Watch;
use crate::parasite::{Answer, Arg, Batch, Buffer, Call, Home, Parasite, ParasiteError};
use crate::procfs;
use crate::sys;

/// Why a process could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Infect { pid: i32, source: infect::InfectError },
    #[error("dump pid {pid}: parasite: {source}")]
    Parasite { pid: i32, source: ParasiteError },
    #[error("dump pid {pid}: remote {call:?} failed: errno {errno}")]
    RemoteSyscall { pid: i32, call: Sys, errno: i64 },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
}
io_failure!(QueryError);

/// `MEMBARRIER_CMD_GET_REGISTRATIONS` (uapi linux/membarrier.h, Linux 6.3).
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// `SCHED_DEADLINE` (uapi linux/sched.h).
const SCHED_DEADLINE: i32 = 6;

/// Per-thread state only the thread itself can tell, asked through remote syscalls.
pub(crate) struct ThreadQueries {
    pub(crate) altstack: pb::ThreadSasEntry,
    pub(crate) clear_tid_addr: u64,
    pub(crate) private_pending: Vec<[u8; SIGINFO_SIZE]>,
    pub(crate) robust_list: (u64, u64),
    pub(crate) comm: String,
    pub(crate) creds: pb::CredsEntry,
    pub(crate) pdeath_sig: u32,
    pub(crate) scheduling: sys::Scheduling,
}

/// Per-process state asked through remote syscalls (in the leader).
pub(crate) struct ProcessQueries {
    pub(crate) sigactions: Vec<pb::SaEntry>,
    pub(crate) itimers: [pb::ItimerEntry; 3],
    /// Resource limits, asked here when `Collected::rlimits` could not read them.
    pub(crate) rlimits: Vec<(u64, u64)>,
    /// POSIX timers, `notify_thread_id` still the host tid.
    pub(crate) posix_timers: Vec<pb::PosixTimerEntry>,
    pub(crate) brk: u64,
    pub(crate) dumpable: i32,
    pub(crate) shared_pending: Vec<[u8; SIGINFO_SIZE]>,
    pub(crate) threads: Vec<ThreadQueries>,
    pub(crate) child_subreaper: bool,
    pub(crate) thp_disabled: bool,
    /// The membarrier registrations of the process's mm (MEMBARRIER_CMD_GET_REGISTRATIONS,
    /// Linux 6.3), None where the kernel cannot tell.
    pub(crate) membarrier: Option<u32>,
}

/// A thread as the parasite takes it home.
fn home(thread: &FrozenThread) -> Home {
    Home { tid: thread.tid, regs: thread.regs.clone(), sigmask: thread.sigmask }
}

/// Starts the parasite of a live process (window one: the area's mmap in its first
/// thread, from the vDSO's syscall instruction).
fn start_parasite(process: &FrozenProcess, collected: &Collected, watch: &Watch) -> Result<Parasite, QueryError> {
    let pid = process.proc_pid();
    let leader = &process.threads[0];
    let mem = fs::File::open(format!("/proc/{pid}/mem")).map_err(io_err(pid, "open /proc/PID/mem"))?;
    let maps: Vec<_> = collected.smaps.iter().map(|e| e.map.clone()).collect();
    let order = infect::trampoline_search_order(&maps);
    let vdso = collected.smaps.iter().find(|e| e.map.name == "[vdso]").map(|e| (e.map.start, e.map.end));
    let (syscall_ip, chain) = match vdso {
        Some((start, end)) => {
            let ip = infect::find_syscall_in_vdso(leader.tid, &mem, start, end).map_err(|source| QueryError::Infect { pid, source })?;
            (ip, infect::find_chain_points(&mem, (start, end), &order))
        }
        None => {
            // A process that unmapped its vDSO: a syscall instruction of its other
            // executable mappings (the libc first), small ones only.
            let ip = order
                .iter()
                .filter(|&&(start, end)| end - start <= 64 << 20)
                .find_map(|&(start, end)| infect::find_syscall_in_vdso(leader.tid, &mem, start, end).ok())
                .ok_or_else(|| QueryError::Unsupported { pid, what: "a process without a vdso or any syscall instruction in its executable mappings".into() })?;
            log::info!("pid {pid}: no vdso: the parasite enters through the syscall instruction at {ip:#x}");
            (ip, infect::find_chain_points(&mem, (0, 0), &order))
        }
    };
    let route = crate::parasite::Route { syscall_ip, chain };
    Parasite::start(pid, home(leader), route, watch.clone(), process.threads.len() - 1, &maps).map_err(|source| QueryError::Parasite { pid, source })
}

/// The calls of one thread's own queries.
struct ThreadCalls {
    altstack: (Call, Buffer),
    tid_address: (Call, Buffer),
    securebits: Call,
    pdeath: (Call, Buffer),
}

fn thread_calls(batch: &mut Batch) -> ThreadCalls {
    let altstack = batch.buffer(24);
    let tid_address = batch.buffer(8);
    let pdeath = batch.buffer(4);
    ThreadCalls {
        altstack: (batch.call(Sys::Sigaltstack, &[Arg::V(0), Arg::B(altstack)]), altstack),
        tid_address: (batch.call(Sys::Prctl, &[Arg::V(libc::PR_GET_TID_ADDRESS as u64), Arg::B(tid_address)]), tid_address),
        securebits: batch.call(Sys::Prctl, &[Arg::V(libc::PR_GET_SECUREBITS as u64)]),
        pdeath: (batch.call(Sys::Prctl, &[Arg::V(libc::PR_GET_PDEATHSIG as u64), Arg::B(pdeath)]), pdeath),
    }
}

fn word(b: &[u8], i: usize) -> u64 {
    b.get(i * 8..i * 8 + 8).map_or(0, |w| u64::from_ne_bytes(w.try_into().expect("8 bytes")))
}

/// An `int` the kernel wrote at byte `offset` (the first half of a word only on
/// little-endian hosts).
fn int(b: &[u8], offset: usize) -> u32 {
    b.get(offset..offset + 4).map_or(0, |w| u32::from_ne_bytes(w.try_into().expect("4 bytes")))
}

/// A call's result, its errno as an error.
fn checked(pid: i32, answer: &Answer, call: Call, sys: Sys) -> Result<i64, QueryError> {
    let result = answer.result(call);
    if (-4095..0).contains(&result) {
        return Err(QueryError::RemoteSyscall { pid, call: sys, errno: -result });
    }
    Ok(result)
}

fn thread_queries(
    pid: i32,
    thread: &FrozenThread,
    private_pending: Vec<[u8; SIGINFO_SIZE]>,
    answer: &Answer,
    calls: &ThreadCalls,
) -> Result<ThreadQueries, QueryError> {
    checked(pid, answer, calls.altstack.0, Sys::Sigaltstack)?;
    let b = answer.bytes(calls.altstack.1);
    let altstack = pb::ThreadSasEntry { ss_sp: word(b, 0), ss_flags: int(b, 8), ss_size: word(b, 2) };
    checked(pid, answer, calls.tid_address.0, Sys::Prctl)?;
    let clear_tid_addr = word(answer.bytes(calls.tid_address.1), 0);
    let robust_list = sys::read_robust_list(thread.tid).map_err(io_err(pid, "get_robust_list"))?;
    let comm = fs::read_to_string(format!("/proc/{pid}/task/{}/comm", thread.tid))
        .map_err(io_err(pid, "read thread comm"))?
        .trim_end_matches('\n')
        .to_string();
    let mut creds = creds_from_status(&procfs::parse_key_values(&thread.status));
    creds.secbits = checked(pid, answer, calls.securebits, Sys::Prctl)? as u32;
    checked(pid, answer, calls.pdeath.0, Sys::Prctl)?;
    let pdeath_sig = int(answer.bytes(calls.pdeath.1), 0);
    let scheduling = sys::scheduling_of(thread.tid).map_err(io_err(pid, format!("scheduling of thread {}", thread.tid)))?;
    if scheduling.policy & !libc::SCHED_RESET_ON_FORK == SCHED_DEADLINE {
        // sched_setscheduler cannot give it back (it takes sched_setattr's runtime,
        // deadline and period, which CRIU's images have no field for).
        return Err(QueryError::Unsupported { pid, what: format!("thread {} under SCHED_DEADLINE", thread.tid) });
    }
    Ok(ThreadQueries { altstack, clear_tid_addr, private_pending, robust_list, comm, creds, pdeath_sig, scheduling })
}

/// Asks a process everything only it can tell: what ptrace tells first (while every
/// thread is stopped), then its parasite: one batch in its first thread, one program in
/// each other thread. The parasite is returned for the memory stage.
pub(crate) fn query_process(process: &FrozenProcess, collected: &Collected, watch: &Watch) -> Result<(ProcessQueries, Parasite), QueryError> {
    let pid = process.proc_pid();
    let leader = &process.threads[0];
    let parasite_error = |source| QueryError::Parasite { pid, source };
    let shared_pending =
        sys::peek_pending_signals(leader.tid, true).map_err(io_err(pid, "PTRACE_PEEKSIGINFO shared"))?;
    let mut private_pending = Vec::new();
    for thread in &process.threads {
        private_pending.push(sys::peek_pending_signals(thread.tid, false).map_err(io_err(pid, "PTRACE_PEEKSIGINFO"))?);
    }
    let mut parasite = start_parasite(process, collected, watch)?;

    let mut batch = Batch::new();
    let mut sigaction_calls = Vec::new();
    for signal in 1..=64u64 {
        if signal == libc::SIGKILL as u64 || signal == libc::SIGSTOP as u64 {
            continue;
        }
        let out = batch.buffer(32);
        sigaction_calls.push((batch.call(Sys::RtSigaction, &[Arg::V(signal), Arg::V(0), Arg::B(out), Arg::V(8)]), out));
    }
    let itimer_calls: Vec<(Call, Buffer)> = (0..3u64)
        .map(|which| {
            let out = batch.buffer(32);
            (batch.call(Sys::Getitimer, &[Arg::V(which), Arg::B(out)]), out)
        })
        .collect();
    let timers_text = fs::read_to_string(format!("/proc/{pid}/timers")).map_err(io_err(pid, "read /proc/PID/timers"))?;
    let listed = procfs::parse_timers(&timers_text)
        .map_err(|e| QueryError::Unsupported { pid, what: format!("/proc/{pid}/timers that does not parse ({e})") })?;
    let timer_calls: Vec<(Call, Buffer, Call)> = listed
        .iter()
        .map(|timer| {
            let out = batch.buffer(32);
            let value = batch.call(Sys::TimerGettime, &[Arg::V(timer.id as u64), Arg::B(out)]);
            let overrun = batch.call(Sys::TimerGetoverrun, &[Arg::V(timer.id as u64)]);
            (value, out, overrun)
        })
        .collect();
    let rlimit_calls: Vec<(Call, Buffer)> = if collected.rlimits.is_empty() {
        (0..16u64)
            .map(|resource| {
                let out = batch.buffer(16);
                (batch.call(Sys::Prlimit64, &[Arg::V(0), Arg::V(resource), Arg::V(0), Arg::B(out)]), out)
            })
            .collect()
    } else {
        Vec::new()
    };
    let brk_call = batch.call(Sys::Brk, &[Arg::V(0)]);
    let dumpable_call = batch.call(Sys::Prctl, &[Arg::V(libc::PR_GET_DUMPABLE as u64)]);
    let leader_calls = thread_calls(&mut batch);
    let subreaper = batch.buffer(4);
    let subreaper_call = batch.call(Sys::Prctl, &[Arg::V(libc::PR_GET_CHILD_SUBREAPER as u64), Arg::B(subreaper)]);
    let thp_call = batch.call(Sys::Prctl, &[Arg::V(libc::PR_GET_THP_DISABLE as u64)]);
    let membarrier_call = batch.call(Sys::Membarrier, &[Arg::V(MEMBARRIER_CMD_GET_REGISTRATIONS), Arg::V(0), Arg::V(0)]);
    let answer = parasite.run(&batch).map_err(parasite_error)?;

    // The other threads, each in a program of its own.
    let mut jobs = Vec::new();
    let mut job_calls = Vec::new();
    for thread in &process.threads[1..] {
        let mut batch = Batch::new();
        job_calls.push(thread_calls(&mut batch));
        jobs.push((home(thread), batch));
    }
    let thread_answers = parasite.run_in_threads(&jobs).map_err(parasite_error)?;

    let mut sigactions = Vec::new();
    for &(call, out) in &sigaction_calls {
        checked(pid, &answer, call, Sys::RtSigaction)?;
        let b = answer.bytes(out);
        sigactions.push(pb::SaEntry { sigaction: word(b, 0), flags: word(b, 1), restorer: word(b, 2), mask: word(b, 3), ..Default::default() });
    }
    let mut itimers: [pb::ItimerEntry; 3] = Default::default();
    for (timer, &(call, out)) in itimers.iter_mut().zip(&itimer_calls) {
        checked(pid, &answer, call, Sys::Getitimer)?;
        let b = answer.bytes(out);
        *timer = pb::ItimerEntry { isec: word(b, 0), iusec: word(b, 1), vsec: word(b, 2), vusec: word(b, 3) };
    }
    let mut posix_timers = Vec::new();
    for (timer, &(value, out, overrun)) in listed.iter().zip(&timer_calls) {
        checked(pid, &answer, value, Sys::TimerGettime)?;
        let overrun = checked(pid, &answer, overrun, Sys::TimerGetoverrun)?;
        let b = answer.bytes(out);
        posix_timers.push(pb::PosixTimerEntry {
            it_id: timer.id,
            clock_id: timer.clock,
            si_signo: timer.signo,
            it_sigev_notify: timer.notify,
            sival_ptr: timer.sival,
            overrun: overrun as u32,
            isec: word(b, 0),
            insec: word(b, 1),
            vsec: word(b, 2),
            vnsec: word(b, 3),
            notify_thread_id: (timer.notify & SIGEV_THREAD_ID != 0).then_some(timer.notify_pid),
        });
    }
    // The kernel lists them newest first.
    posix_timers.sort_by_key(|t| t.it_id);
    let mut rlimits = collected.rlimits.clone();
    for &(call, out) in &rlimit_calls {
        checked(pid, &answer, call, Sys::Prlimit64)?;
        let b = answer.bytes(out);
        rlimits.push((word(b, 0), word(b, 1)));
    }
    let brk = checked(pid, &answer, brk_call, Sys::Brk)? as u64;
    let dumpable = checked(pid, &answer, dumpable_call, Sys::Prctl)? as i32;
    let mut private_pending = private_pending.into_iter();
    let mut threads = vec![thread_queries(pid, leader, private_pending.next().unwrap_or_default(), &answer, &leader_calls)?];
    for ((thread, calls), answer) in process.threads[1..].iter().zip(&job_calls).zip(&thread_answers) {
        threads.push(thread_queries(pid, thread, private_pending.next().unwrap_or_default(), answer, calls)?);
    }
    checked(pid, &answer, subreaper_call, Sys::Prctl)?;
    let child_subreaper = int(answer.bytes(subreaper), 0) != 0;
    let thp_disabled = checked(pid, &answer, thp_call, Sys::Prctl)? != 0;
    // EINVAL before Linux 6.3, ENOSYS without CONFIG_MEMBARRIER: nothing to tell.
    let membarrier = u32::try_from(answer.result(membarrier_call)).ok();
    let queries = ProcessQueries {
        sigactions,
        itimers,
        rlimits,
        posix_timers,
        brk,
        dumpable,
        shared_pending,
        threads,
        child_subreaper,
        thp_disabled,
        membarrier,
    };
    Ok((queries, parasite))
}

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
        no_new_privs: status.get("NoNewPrivs").and_then(|v| v.parse().ok()),
        groups: status.get("Groups").map(|g| procfs::parse_groups(g)).unwrap_or_default(),
        ..Default::default()
    }
}
