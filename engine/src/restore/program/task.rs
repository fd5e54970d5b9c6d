//! The process sections of the op program: mm fields, auxv and exe, the process-wide
//! prctls, signal actions, itimers, resource limits, personality, the process's pending
//! signals, the other threads (each with its dumped tid), and the POSIX timers.

use crust_arch::{Abi, RestorerOp, Sys};
use crust_images::pb;

use super::{i32_bytes, i32_from, u32_bytes, Program};
use crate::model::SIGINFO_SIZE;
use crate::restore::images::ProcessImages;
use crate::restore::layout::HostLayout;
use crate::restore::plan::PlanError;

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, ...)` (Linux 6.17): while on, `timer_create`
/// takes the timer id to use from its third argument.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const PR_TIMER_CREATE_RESTORE_IDS_OFF: u64 = 0;
const PR_TIMER_CREATE_RESTORE_IDS_ON: u64 = 1;

/// The mm fields, auxv and exe link (`PR_SET_MM_MAP`).
pub(crate) fn set_mm<A: Abi>(program: &mut Program<A>, mm: &pb::MmEntry, exe_fd: i32) {
    let auxv = program.words(&mm.mm_saved_auxv);
    let mm_map = [
        mm.mm_start_code, mm.mm_end_code, mm.mm_start_data, mm.mm_end_data, mm.mm_start_brk,
        mm.mm_brk, mm.mm_start_stack, mm.mm_arg_start, mm.mm_arg_end, mm.mm_env_start,
        mm.mm_env_end, auxv,
    ];
    // `struct prctl_mm_map` ends in two u32s (auxv_size, exe_fd), in the target's order.
    let mut mm_map_bytes: Vec<u8> = mm_map.iter().flat_map(|&word| A::word_bytes(word)).collect();
    mm_map_bytes.extend_from_slice(&u32_bytes::<A>(mm.mm_saved_auxv.len() as u32 * 8));
    mm_map_bytes.extend_from_slice(&u32_bytes::<A>(exe_fd as u32));
    let mm_map_addr = program.data(&mm_map_bytes);
    program.call(
        Sys::Prctl,
        [libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64, mm_map_addr, 104, 0, 0],
        RestorerOp::CHECK_EQ,
        0,
        "prctl(PR_SET_MM_MAP)".into(),
    );
    if mm.thp_disabled == Some(true) {
        program.call(Sys::Prctl, [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "disable THP".into());
    }
}

/// Process state: child subreaper, signal actions (SIGTRAP's is returned, to be set by
/// the tracer after the restorer's traps), itimers, limits, personality, pending
/// signals, the other threads and the POSIX timers.
pub(crate) fn process_state<A: Abi>(program: &mut Program<A>, process: &ProcessImages, layout: &HostLayout) -> Result<Option<u64>, PlanError> {
    let pid = process.pid();
    let leader_core = &process.cores[0];
    if leader_core.tc.as_ref().and_then(|t| t.child_subreaper) == Some(true) {
        program.call(Sys::Prctl, [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "child subreaper".into());
    }
    let tc = leader_core.tc.clone().unwrap_or_default();
    let signals = (1..=64u64).filter(|&s| s != libc::SIGKILL as u64 && s != libc::SIGSTOP as u64);
    // SIGTRAP's action goes in after the restorer's traps: a trap while the signal is
    // blocked resets its action to the default.
    let mut sigtrap_action = None;
    for (signal, sa) in signals.zip(tc.sigactions.iter()) {
        let act = program.words(&[sa.sigaction, sa.flags, sa.restorer, sa.mask]);
        if signal == libc::SIGTRAP as u64 {
            sigtrap_action = Some(act);
            continue;
        }
        program.call(Sys::RtSigaction, [signal, act, 0, 8, 0, 0], RestorerOp::CHECK_EQ, 0, format!("sigaction {signal}"));
    }
    if let Some(timers) = &tc.timers {
        for (which, t) in [&timers.real, &timers.virt, &timers.prof].into_iter().enumerate() {
            if t.isec | t.iusec | t.vsec | t.vusec == 0 {
                continue;
            }
            // The kernel adds a tick to CPU-time timers as they are set: take it off
            // again, or each dump and restore would push the expiry a tick later.
            let mut left = t.vsec.saturating_mul(1_000_000).saturating_add(t.vusec);
            if which != libc::ITIMER_REAL as usize {
                left = left.saturating_sub(layout.cpu_itimer_tick_us);
            }
            // A timer due at this very moment still has to fire.
            let (vsec, vusec) = if left == 0 { (0, 1) } else { (left / 1_000_000, left % 1_000_000) };
            let value = program.words(&[t.isec, t.iusec, vsec, vusec]);
            program.call(Sys::Setitimer, [which as u64, value, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("setitimer {which}"));
        }
    }
    if let Some(rlimits) = &tc.rlimits {
        for (resource, limit) in rlimits.rlimits.iter().enumerate() {
            let value = program.words(&[limit.cur, limit.max]);
            program.call(Sys::Prlimit64, [0, resource as u64, value, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("setrlimit {resource}"));
        }
    }
    program.call(Sys::Personality, [tc.personality as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0, "personality".into());
    // Pending signals of the process (every signal is blocked until the tracer sets the
    // real masks); each thread's own are queued by the thread itself, later.
    for info in tc.signals_s.iter().flat_map(|q| q.signals.iter()) {
        let (signo, addr) = siginfo_data(program, &info.siginfo);
        program.call(Sys::RtSigqueueinfo, [pid as u64, signo, addr, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("queue signal {signo}"));
    }
    // The other threads, each with its dumped tid; each traps at once for the tracer.
    for &tid in process.pstree.threads.iter().skip(1) {
        // set_tid is an array of pid_t.
        let tids = program.data(&i32_bytes::<A>(tid as i32));
        let flags = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD | libc::CLONE_SYSVSEM) as u64;
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        // stack_size, tls, set_tid, set_tid_size, cgroup.
        let args = program.words(&[flags, 0, 0, 0, 0, 0, 0, 0, tids, 1, 0]);
        program.call(Sys::Clone3, [args, 88, 0, 0, 0, 0], RestorerOp::CHECK_CLONE, tid as u64, format!("create thread {tid}"));
    }
    // POSIX timers, once the threads they may signal exist.
    if let Some(timers) = &tc.timers {
        posix_timers(program, pid, &timers.posix, layout.timer_restore_ids)?;
    }
    Ok(sigtrap_action)
}

/// Puts a siginfo in the arena; returns its signal number and address.
pub(crate) fn siginfo_data<A: Abi>(program: &mut Program<A>, siginfo: &[u8]) -> (u64, u64) {
    let signo = siginfo.get(..4).map(|b| i32_from::<A>(b.try_into().expect("4 bytes"))).unwrap_or(0);
    let mut bytes = siginfo.to_vec();
    bytes.resize(SIGINFO_SIZE, 0);
    (signo as u64, program.data(&bytes))
}

/// Ops that recreate POSIX timers with their ids, signals, values and intervals. With
/// Linux 6.17's PR_TIMER_CREATE_RESTORE_IDS (`by_id`) the id is asked for; before it, a
/// fresh process hands out ids 0, 1, 2, ... in order, so gaps are filled with
/// placeholder timers, deleted afterwards, and each wanted id is checked to exist.
fn posix_timers<A: Abi>(program: &mut Program<A>, pid: i32, timers: &[pb::PosixTimerEntry], by_id: bool) -> Result<(), PlanError> {
    if timers.is_empty() {
        return Ok(());
    }
    const SIGEV_NONE: u32 = 1;
    const SIGEV_THREAD_ID: u32 = 4;
    const MAX_PLACEHOLDERS: u32 = 4096;
    let mut sorted: Vec<&pb::PosixTimerEntry> = timers.iter().collect();
    sorted.sort_by_key(|t| t.it_id);
    if sorted.windows(2).any(|w| w[0].it_id == w[1].it_id) {
        return Err(PlanError::BadImage { image: format!("core-{pid}.img"), what: "two POSIX timers with one id (tc.timers.posix.it_id)".into() });
    }
    // struct sigevent: sigval, int signo, int notify, int tid, padding to 64 bytes.
    let sigevent = |program: &mut Program<A>, sival: u64, signo: u32, notify: u32, tid: i32| {
        let mut bytes = [0u8; 64];
        bytes[0..8].copy_from_slice(&A::word_bytes(sival));
        bytes[8..12].copy_from_slice(&u32_bytes::<A>(signo));
        bytes[12..16].copy_from_slice(&u32_bytes::<A>(notify));
        bytes[16..20].copy_from_slice(&i32_bytes::<A>(tid));
        program.data(&bytes)
    };
    let mut placeholders = Vec::new();
    if by_id {
        program.call(
            Sys::Prctl,
            [PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            "timer ids: restore mode on".into(),
        );
    } else if let Some(last) = sorted.last().filter(|t| t.it_id >= MAX_PLACEHOLDERS) {
        return Err(PlanError::Unsupported {
            pid,
            what: format!("POSIX timer id {} on a kernel without PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17)", last.it_id),
        });
    }
    let mut next = 0u32;
    for timer in &sorted {
        if timer.it_sigev_notify & !SIGEV_THREAD_ID > SIGEV_NONE {
            return Err(PlanError::BadImage {
                image: format!("core-{pid}.img"),
                what: format!("POSIX timer {} has unknown sigev_notify {} (tc.timers.posix.it_sigev_notify)", timer.it_id, timer.it_sigev_notify),
            });
        }
        if !by_id {
            while next < timer.it_id {
                let event = sigevent(program, 0, 0, SIGEV_NONE, 0);
                let id = program.words(&[0]);
                program.call(Sys::TimerCreate, [libc::CLOCK_MONOTONIC as u64, event, id, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("placeholder timer {next}"));
                placeholders.push(next);
                next += 1;
            }
            next = timer.it_id + 1;
        }
        let tid = timer.notify_thread_id.unwrap_or(0);
        let event = sigevent(program, timer.sival_ptr, timer.si_signo, timer.it_sigev_notify, tid);
        let id = program.data(&i32_bytes::<A>(timer.it_id as i32));
        program.call(
            Sys::TimerCreate,
            [timer.clock_id as u64, event, id, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            format!("timer_create id {} clock {}", timer.it_id, timer.clock_id),
        );
        if timer.vsec | timer.vnsec != 0 {
            let spec = program.words(&[timer.isec, timer.insec, timer.vsec, timer.vnsec]);
            program.call(Sys::TimerSettime, [timer.it_id as u64, 0, spec, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("timer_settime id {}", timer.it_id));
        }
    }
    if by_id {
        program.call(
            Sys::Prctl,
            [PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            "timer ids: restore mode off".into(),
        );
    }
    for id in placeholders {
        program.call(Sys::TimerDelete, [id as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("delete placeholder timer {id}"));
    }
    // Each wanted id must be there (without the prctl the kernel chose them).
    for timer in &sorted {
        let spec = program.words(&[0; 4]);
        program.call(Sys::TimerGettime, [timer.it_id as u64, spec, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("timer {} exists", timer.it_id));
    }
    Ok(())
}
