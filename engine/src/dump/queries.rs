//! The queries stage of a dump (its parasite): what only a process itself can tell,
//! asked through syscalls injected into its stopped threads one at a time from the
//! vDSO's syscall instruction (`infect.rs`), with every signal blocked: signal actions,
//! itimers, POSIX timers, brk, dumpable, and per thread its altstack, clear_tid address,
//! robust list, credentials and pdeath signal. Pending signals come from
//! PTRACE_PEEKSIGINFO. The scratch page it maps is unmapped on every path.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;

use crust_arch::Sys;
use crust_images::pb;

use crate::dump::freeze::FrozenProcess;
use crate::error::io_failure;
use crate::infect::{self, RemoteThread};
use crate::model::{Collected, SIGEV_THREAD_ID, SIGINFO_SIZE};
use crate::procfs;
use crate::sys;

/// Why a process could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Infect { pid: i32, source: infect::InfectError },
    #[error("dump pid {pid}: remote {call:?} failed: errno {errno}")]
    RemoteSyscall { pid: i32, call: Sys, errno: i64 },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
}
io_failure!(QueryError);

/// Per-thread state only the thread itself can tell, asked through remote syscalls.
pub(crate) struct ThreadQueries {
    pub(crate) altstack: pb::ThreadSasEntry,
    pub(crate) clear_tid_addr: u64,
    pub(crate) private_pending: Vec<[u8; SIGINFO_SIZE]>,
    pub(crate) robust_list: (u64, u64),
    pub(crate) comm: String,
    pub(crate) creds: pb::CredsEntry,
    pub(crate) pdeath_sig: u32,
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
}

pub(crate) fn query_process(process: &FrozenProcess, collected: &Collected) -> Result<ProcessQueries, QueryError> {
    let pid = process.proc_pid();
    let leader = &process.threads[0];
    let shared_pending =
        sys::peek_pending_signals(leader.tid, true).map_err(io_err(pid, "PTRACE_PEEKSIGINFO shared"))?;
    // Written only where mmap's arguments go through memory (`RemoteThread::mmap`).
    let mem = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(io_err(pid, "open /proc/PID/mem"))?;
    let vdso = collected
        .smaps
        .iter()
        .find(|e| e.map.name == "[vdso]")
        .ok_or_else(|| QueryError::Unsupported { pid, what: "a process without a vdso".into() })?;
    let syscall_ip = infect::find_syscall_in_vdso(leader.tid, &mem, vdso.map.start, vdso.map.end)
        .map_err(|source| QueryError::Infect { pid, source })?;
    // Nothing is delivered while syscalls run in the threads.
    for thread in &process.threads {
        sys::write_sigmask(thread.tid, !0u64).map_err(io_err(pid, "PTRACE_SETSIGMASK"))?;
    }
    let call = |remote: &mut RemoteThread, call: Sys, args: [u64; 6]| -> Result<i64, QueryError> {
        let result = remote.syscall(call, args).map_err(|source| QueryError::Infect { pid, source })?;
        if (-4095..0).contains(&result) {
            return Err(QueryError::RemoteSyscall { pid, call, errno: -result });
        }
        Ok(result)
    };
    let mut remote = RemoteThread::new(leader.tid, syscall_ip, leader.regs.gpr);
    let page = sys::page_size();
    let scratch = remote
        .mmap(
            &mem,
            [0, page, (libc::PROT_READ | libc::PROT_WRITE) as u64, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, u64::MAX, 0],
        )
        .map_err(|source| QueryError::Infect { pid, source })?;
    if (-4095..0).contains(&scratch) {
        return Err(QueryError::RemoteSyscall { pid, call: Sys::Mmap, errno: -scratch });
    }
    let scratch = scratch as u64;
    let read_scratch = |len: usize| -> Result<Vec<u8>, QueryError> {
        let mut buf = vec![0u8; len];
        mem.read_exact_at(&mut buf, scratch).map_err(io_err(pid, "read scratch page"))?;
        Ok(buf)
    };
    let word = |b: &[u8], i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    // An `int` the kernel wrote at byte `offset` (the first half of a word only on
    // little-endian hosts).
    let int = |b: &[u8], offset: usize| u32::from_ne_bytes(b[offset..offset + 4].try_into().expect("4 bytes"));

    let result = (|| {
        let mut sigactions = Vec::new();
        for signal in 1..=64u64 {
            if signal == libc::SIGKILL as u64 || signal == libc::SIGSTOP as u64 {
                continue;
            }
            call(&mut remote, Sys::RtSigaction, [signal, 0, scratch, 8, 0, 0])?;
            let b = read_scratch(32)?;
            sigactions.push(pb::SaEntry {
                sigaction: word(&b, 0),
                flags: word(&b, 1),
                restorer: word(&b, 2),
                mask: word(&b, 3),
                ..Default::default()
            });
        }
        let mut itimers: [pb::ItimerEntry; 3] = Default::default();
        for (which, timer) in itimers.iter_mut().enumerate() {
            call(&mut remote, Sys::Getitimer, [which as u64, scratch, 0, 0, 0, 0])?;
            let b = read_scratch(32)?;
            *timer = pb::ItimerEntry { isec: word(&b, 0), iusec: word(&b, 1), vsec: word(&b, 2), vusec: word(&b, 3) };
        }
        let timers_text =
            fs::read_to_string(format!("/proc/{pid}/timers")).map_err(io_err(pid, "read /proc/PID/timers"))?;
        let listed = procfs::parse_timers(&timers_text)
            .map_err(|e| QueryError::Unsupported { pid, what: format!("/proc/{pid}/timers that does not parse ({e})") })?;
        let mut posix_timers = Vec::new();
        for timer in listed {
            call(&mut remote, Sys::TimerGettime, [timer.id as u64, scratch, 0, 0, 0, 0])?;
            let b = read_scratch(32)?;
            let overrun = call(&mut remote, Sys::TimerGetoverrun, [timer.id as u64, 0, 0, 0, 0, 0])?;
            posix_timers.push(pb::PosixTimerEntry {
                it_id: timer.id,
                clock_id: timer.clock,
                si_signo: timer.signo,
                it_sigev_notify: timer.notify,
                sival_ptr: timer.sival,
                overrun: overrun as u32,
                isec: word(&b, 0),
                insec: word(&b, 1),
                vsec: word(&b, 2),
                vnsec: word(&b, 3),
                notify_thread_id: (timer.notify & SIGEV_THREAD_ID != 0).then_some(timer.notify_pid),
            });
        }
        // The kernel lists them newest first.
        posix_timers.sort_by_key(|t| t.it_id);
        let mut rlimits = collected.rlimits.clone();
        if rlimits.is_empty() {
            for resource in 0..16u64 {
                call(&mut remote, Sys::Prlimit64, [0, resource, 0, scratch, 0, 0])?;
                let b = read_scratch(16)?;
                rlimits.push((word(&b, 0), word(&b, 1)));
            }
        }
        let brk = call(&mut remote, Sys::Brk, [0; 6])? as u64;
        let dumpable = call(&mut remote, Sys::Prctl, [libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0, 0])? as i32;
        let mut threads = Vec::new();
        for thread in &process.threads {
            let mut remote = RemoteThread::new(thread.tid, syscall_ip, thread.regs.gpr);
            call(&mut remote, Sys::Sigaltstack, [0, scratch, 0, 0, 0, 0])?;
            let b = read_scratch(24)?;
            let altstack = pb::ThreadSasEntry { ss_sp: word(&b, 0), ss_flags: int(&b, 8), ss_size: word(&b, 2) };
            call(&mut remote, Sys::Prctl, [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0])?;
            let clear_tid_addr = word(&read_scratch(8)?, 0);
            let private_pending =
                sys::peek_pending_signals(thread.tid, false).map_err(io_err(pid, "PTRACE_PEEKSIGINFO"))?;
            let robust_list = sys::read_robust_list(thread.tid).map_err(io_err(pid, "get_robust_list"))?;
            let comm = fs::read_to_string(format!("/proc/{pid}/task/{}/comm", thread.tid))
                .map_err(io_err(pid, "read thread comm"))?
                .trim_end_matches('\n')
                .to_string();
            let status = fs::read_to_string(format!("/proc/{pid}/task/{}/status", thread.tid))
                .map_err(io_err(pid, "read thread status"))?;
            let mut creds = creds_from_status(&procfs::parse_key_values(&status));
            creds.secbits = call(&mut remote, Sys::Prctl, [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0])? as u32;
            call(&mut remote, Sys::Prctl, [libc::PR_GET_PDEATHSIG as u64, scratch, 0, 0, 0, 0])?;
            let pdeath_sig = int(&read_scratch(4)?, 0);
            threads.push(ThreadQueries { altstack, clear_tid_addr, private_pending, robust_list, comm, creds, pdeath_sig });
        }
        call(&mut remote, Sys::Prctl, [libc::PR_GET_CHILD_SUBREAPER as u64, scratch, 0, 0, 0, 0])?;
        let child_subreaper = int(&read_scratch(4)?, 0) != 0;
        let thp_disabled = call(&mut remote, Sys::Prctl, [libc::PR_GET_THP_DISABLE as u64, 0, 0, 0, 0, 0])? != 0;
        Ok((sigactions, itimers, rlimits, posix_timers, brk, dumpable, threads, child_subreaper, thp_disabled))
    })();
    // The scratch page goes whatever happened.
    let unmapped = call(&mut remote, Sys::Munmap, [scratch, page, 0, 0, 0, 0]);
    let (sigactions, itimers, rlimits, posix_timers, brk, dumpable, threads, child_subreaper, thp_disabled) = result?;
    unmapped?;
    Ok(ProcessQueries { sigactions, itimers, rlimits, posix_timers, brk, dumpable, shared_pending, threads, child_subreaper, thp_disabled })
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
