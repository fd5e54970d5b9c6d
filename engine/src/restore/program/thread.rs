//! The per-thread calls the tracer injects once the restorer is done, with their data
//! in the program's arena: rseq, altstack, robust list, clear_tid, name, pending
//! signals, pdeath signal, seccomp filters (while still root), credentials, SIGTRAP's
//! action, dumpable, and seccomp strict mode last.

use crust_arch::{Abi, Sys};
use crust_images::pb;

use super::task::siginfo_data;
use super::{i32_bytes, u16_bytes, u32_bytes, InjectedCall, Program};
use crate::model::{SECCOMP_MODE_FILTER, SECCOMP_MODE_STRICT};
use crate::restore::images::{Images, ProcessImages};
use crate::restore::layout::{HostLayout, OwnCreds};
use crate::restore::plan::PlanError;

const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;

/// Per thread (the leader first), the calls the tracer injects; `sigtrap_action`: the
/// address of SIGTRAP's action in the arena, set by the acting thread.
pub(crate) fn thread_ops<A: Abi>(
    program: &mut Program<A>,
    images: &Images,
    process: &ProcessImages,
    sigtrap_action: Option<u64>,
    layout: &HostLayout,
) -> Result<Vec<Vec<InjectedCall>>, PlanError> {
    let pid = process.pid();
    let mm = &process.mm;
    let mut thread_ops: Vec<Vec<InjectedCall>> = Vec::new();
    let acting = process.pstree.threads[process.acting_thread()] as i32;
    for (index, (core, &tid)) in process.cores.iter().zip(process.pstree.threads.iter()).enumerate() {
        let mut ops: Vec<InjectedCall> = Vec::new();
        let tcore = core.thread_core.clone().unwrap_or_default();
        if index == 0 && process.leader_gone() {
            // It only exits again (`finish::finish_process`), under its own name.
            if let Some(comm) = &tcore.comm {
                ops.push(set_name_op(program, comm, tid));
            }
            thread_ops.push(ops);
            continue;
        }
        if let Some(rseq) = &tcore.rseq_entry {
            ops.push((Sys::Rseq, [rseq.rseq_abi_pointer, rseq.rseq_abi_size as u64, 0, rseq.signature as u64, 0, 0], format!("tid {tid}: register rseq")));
        }
        // Always set: a disabled altstack must be disabled explicitly, or the leader keeps
        // the one it inherited from crust's forking thread (now unmapped), and the first
        // SA_ONSTACK handler would fault building its frame there.
        let disabled = pb::ThreadSasEntry { ss_sp: 0, ss_size: 0, ss_flags: libc::SS_DISABLE as u32 };
        let sas = tcore.sas.filter(|s| s.ss_flags & libc::SS_DISABLE as u32 == 0).unwrap_or(disabled);
        // `stack_t`: ss_sp, the int ss_flags and its padding, ss_size.
        let mut stack_bytes = A::word_bytes(sas.ss_sp).to_vec();
        stack_bytes.extend_from_slice(&u32_bytes::<A>(sas.ss_flags & !(libc::SS_ONSTACK as u32)));
        stack_bytes.extend_from_slice(&[0; 4]);
        stack_bytes.extend_from_slice(&A::word_bytes(sas.ss_size));
        let stack = program.data(&stack_bytes);
        ops.push((Sys::Sigaltstack, [stack, 0, 0, 0, 0, 0], format!("tid {tid}: sigaltstack")));
        if tcore.futex_rla != 0 {
            ops.push((Sys::SetRobustList, [tcore.futex_rla, tcore.futex_rla_len as u64, 0, 0, 0, 0], format!("tid {tid}: set_robust_list")));
        }
        if let Some(clear_tid) = A::clear_tid_address(core) {
            ops.push((Sys::SetTidAddress, [clear_tid, 0, 0, 0, 0, 0], format!("tid {tid}: set_tid_address")));
        }
        if let Some(comm) = &tcore.comm {
            ops.push(set_name_op(program, comm, tid));
        }
        for info in tcore.signals_p.iter().flat_map(|q| q.signals.iter()) {
            let (signo, addr) = siginfo_data(program, &info.siginfo);
            ops.push((Sys::RtTgsigqueueinfo, [pid as u64, tid as u64, signo, addr, 0, 0], format!("tid {tid}: queue signal {signo}")));
        }
        // Filters go in while the thread is still root (installing one needs
        // CAP_SYS_ADMIN or no_new_privs); the tracer suspends them for what follows.
        let seccomp_mode = tcore.seccomp_mode.unwrap_or(0) as u32;
        if seccomp_mode == SECCOMP_MODE_FILTER {
            for (filter, flags) in seccomp_chain(&images.seccomp, tid, tcore.seccomp_filter)? {
                let code = program.data(filter);
                // `struct sock_fprog`: u16 length, padding, then the pointer.
                let mut fprog = [0u8; 16];
                fprog[0..2].copy_from_slice(&u16_bytes::<A>((filter.len() / 8) as u16));
                fprog[8..16].copy_from_slice(&A::word_bytes(code));
                let fprog = program.data(&fprog);
                ops.push((Sys::Seccomp, [SECCOMP_SET_MODE_FILTER, flags as u64, fprog, 0, 0, 0], format!("tid {tid}: seccomp filter")));
            }
        } else if seccomp_mode > SECCOMP_MODE_FILTER {
            return Err(PlanError::BadImage { image: format!("core-{tid}.img"), what: format!("unknown seccomp mode {seccomp_mode} (thread_core.seccomp_mode)") });
        }
        if let Some(creds) = &tcore.creds {
            ops.extend(creds_ops(program, creds, tid, &layout.own_creds, layout.cap_last_cap));
        }
        // After the creds: changing ids clears the parent-death signal.
        if let Some(signal) = tcore.pdeath_sig.filter(|&s| s != 0) {
            ops.push((Sys::Prctl, [libc::PR_SET_PDEATHSIG as u64, signal as u64, 0, 0, 0, 0], format!("tid {tid}: pdeathsig")));
        }
        if let (Some(act), true) = (sigtrap_action, tid as i32 == acting) {
            ops.push((Sys::RtSigaction, [libc::SIGTRAP as u64, act, 0, 8, 0, 0], "sigaction SIGTRAP".into()));
        }
        // Changing credentials resets dumpable: the process's own value goes last.
        if let (Some(dumpable), true) = (mm.dumpable, tid as i32 == acting) {
            ops.push((Sys::Prctl, [libc::PR_SET_DUMPABLE as u64, dumpable as u64, 0, 0, 0, 0], format!("tid {tid}: dumpable")));
        }
        // Strict mode allows almost nothing: last (the tracer's calls are not filtered).
        if seccomp_mode == SECCOMP_MODE_STRICT {
            ops.push((Sys::Seccomp, [SECCOMP_SET_MODE_STRICT, 0, 0, 0, 0, 0], format!("tid {tid}: seccomp strict mode")));
        }
        thread_ops.push(ops);
    }
    Ok(thread_ops)
}

/// The flags of seccomp.img's filters that installing one again takes: TSYNC, LOG and
/// SPEC_ALLOW. CRIU 4.2 writes a filter chain that every thread of a process shares
/// once, on the leader, with TSYNC, and nothing in the other threads' cores: installed
/// with TSYNC, the kernel gives it to every thread (crust's own dumps write each
/// thread's chain and no flags).
const SECCOMP_REINSTALL_FLAGS: u32 = 0x1 | 0x2 | 0x4;

/// A thread's seccomp filters, oldest first, each with the flags it is installed with:
/// from its newest (`newest`, an index into seccomp.img) back through each filter's
/// `prev`.
fn seccomp_chain(filters: &[pb::SeccompFilter], tid: u32, newest: Option<u32>) -> Result<Vec<(&[u8], u32)>, PlanError> {
    let bad = |what: String| PlanError::BadImage { image: "seccomp.img".into(), what };
    let mut chain = Vec::new();
    let mut next = Some(newest.ok_or_else(|| bad(format!("thread {tid} in filter mode names no filter (thread_core.seccomp_filter)")))?);
    while let Some(index) = next {
        let filter = filters.get(index as usize).ok_or_else(|| bad(format!("thread {tid}: no filter {index} (seccomp_filters)")))?;
        let instructions = filter.filter.len() / 8;
        if filter.filter.len() % 8 != 0 || instructions == 0 || instructions > 4096 {
            return Err(bad(format!("filter {index} is {} bytes, not 1 to 4096 8-byte instructions (seccomp_filters.filter)", filter.filter.len())));
        }
        if chain.len() >= filters.len() {
            return Err(bad(format!("filter {index} is part of a loop (seccomp_filters.prev)")));
        }
        chain.push((filter.filter.as_slice(), filter.flags.unwrap_or(0) & SECCOMP_REINSTALL_FLAGS));
        next = filter.prev;
    }
    chain.reverse();
    Ok(chain)
}

/// The syscalls that give a thread its dumped credentials, in an order that keeps the
/// privilege each step needs until it is done: groups, xids (with SECURE_NO_SETUID_FIXUP
/// so capabilities survive leaving root), securebits, bounding set, capabilities,
/// ambient capabilities, no_new_privs. Nothing when they equal crust's own (`own`).
fn creds_ops<A: Abi>(program: &mut Program<A>, creds: &pb::CredsEntry, tid: u32, own: &OwnCreds, last_cap: u64) -> Vec<InjectedCall> {
    let image_caps = |words: &[u32]| words.iter().enumerate().fold(0u64, |acc, (i, w)| acc | ((*w as u64) << (32 * i)));
    let same = own.uid == [creds.uid, creds.euid, creds.suid, creds.fsuid]
        && own.gid == [creds.gid, creds.egid, creds.sgid, creds.fsgid]
        && own.groups == creds.groups
        && own.cap_inh == image_caps(&creds.cap_inh)
        && own.cap_prm == image_caps(&creds.cap_prm)
        && own.cap_eff == image_caps(&creds.cap_eff)
        && own.cap_bnd == image_caps(&creds.cap_bnd)
        && own.cap_amb == image_caps(&creds.cap_amb)
        && creds.secbits == 0;
    let mut ops = Vec::new();
    if !same {
        const SECURE_NO_SETUID_FIXUP: u64 = 1 << 2;
        let groups: Vec<u8> = creds.groups.iter().flat_map(|&g| u32_bytes::<A>(g)).collect();
        let groups_addr = program.data(&groups);
        ops.push((Sys::Setgroups, [creds.groups.len() as u64, groups_addr, 0, 0, 0, 0], format!("tid {tid}: setgroups")));
        ops.push((Sys::Prctl, [libc::PR_SET_SECUREBITS as u64, SECURE_NO_SETUID_FIXUP, 0, 0, 0, 0], format!("tid {tid}: keep caps across setuid")));
        ops.push((Sys::Setresgid, [creds.gid as u64, creds.egid as u64, creds.sgid as u64, 0, 0, 0], format!("tid {tid}: setresgid")));
        ops.push((Sys::Setfsgid, [creds.fsgid as u64, 0, 0, 0, 0, 0], format!("tid {tid}: setfsgid")));
        ops.push((Sys::Setresuid, [creds.uid as u64, creds.euid as u64, creds.suid as u64, 0, 0, 0], format!("tid {tid}: setresuid")));
        ops.push((Sys::Setfsuid, [creds.fsuid as u64, 0, 0, 0, 0, 0], format!("tid {tid}: setfsuid")));
        ops.push((Sys::Prctl, [libc::PR_SET_SECUREBITS as u64, creds.secbits as u64, 0, 0, 0, 0], format!("tid {tid}: securebits")));
        let bounding = image_caps(&creds.cap_bnd);
        for cap in 0..=last_cap {
            if bounding & (1 << cap) == 0 {
                ops.push((Sys::Prctl, [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0], format!("tid {tid}: drop cap {cap} from the bounding set")));
            }
        }
        // capset: header {version 3, pid 0}, then two {effective, permitted, inheritable}.
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let mut header_bytes = u32_bytes::<A>(LINUX_CAPABILITY_VERSION_3).to_vec();
        header_bytes.extend_from_slice(&i32_bytes::<A>(0));
        let header = program.data(&header_bytes);
        let word = |v: &[u32], i: usize| v.get(i).copied().unwrap_or(0);
        let data: Vec<u8> = [
            word(&creds.cap_eff, 0), word(&creds.cap_prm, 0), word(&creds.cap_inh, 0),
            word(&creds.cap_eff, 1), word(&creds.cap_prm, 1), word(&creds.cap_inh, 1),
        ]
        .iter()
        .flat_map(|&w| u32_bytes::<A>(w))
        .collect();
        let data_addr = program.data(&data);
        ops.push((Sys::Capset, [header, data_addr, 0, 0, 0, 0], format!("tid {tid}: capset")));
        let ambient = image_caps(&creds.cap_amb);
        for cap in 0..=last_cap {
            if ambient & (1 << cap) != 0 {
                ops.push((Sys::Prctl, [libc::PR_CAP_AMBIENT as u64, libc::PR_CAP_AMBIENT_RAISE as u64, cap, 0, 0, 0], format!("tid {tid}: ambient cap {cap}")));
            }
        }
    }
    if creds.no_new_privs == Some(1) {
        ops.push((Sys::Prctl, [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0], format!("tid {tid}: no_new_privs")));
    }
    ops
}

/// The injected `prctl(PR_SET_NAME)` giving thread `tid` the name `comm` (at most 15
/// bytes, as the kernel keeps it).
fn set_name_op<A: Abi>(program: &mut Program<A>, comm: &str, tid: u32) -> InjectedCall {
    let mut bytes = comm.as_bytes().to_vec();
    bytes.truncate(15);
    bytes.push(0);
    let name = program.data(&bytes);
    (Sys::Prctl, [libc::PR_SET_NAME as u64, name, 0, 0, 0, 0], format!("tid {tid}: set name"))
}
