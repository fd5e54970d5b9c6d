//! s390x: the NT_PRSTATUS layout (`s390_regs`: PSW, GPRs, access registers,
//! orig_gpr2) plus the interrupted syscall's code (NT_S390_SYSTEM_CALL), the s390x
//! syscall table, `svc 0` with the number in r1, restart rules, the FPR and vector state
//! carried in [`ThreadRegs::ext`], the image's `thread_info_s390`, and (on an s390x host)
//! ptrace register access and the restorer blob.
//!
//! s390x is big endian: the extended state's words are read as such on any host, and
//! `mmap` is the old single-pointer call (`sys_old_mmap`): the restorer handles it by
//! passing a pointer to the op's own six arguments, a remote mmap at dump time by
//! writing them below the thread's stack pointer ([`crate::Abi::mmap_arg_block`]).

mod chain;
#[cfg(target_arch = "s390x")]
mod host;
mod sigframe;

use crate::{RegsFromCoreError, RestorerOp, RestorerOutcome, Sys, ThreadRegs};
use crust_images::pb;

/// The s390x backend.
pub struct S390x;

/// `rt_sigreturn`, which the restorer's SIGRETURN op runs.
pub(crate) const NR_RT_SIGRETURN: u64 = 173;

/// The NT_PRSTATUS regset (`s390_regs`), followed by `system_call`, which ptrace shows
/// through NT_S390_SYSTEM_CALL: the interrupted syscall's interruption code (ilc << 16
/// | number), 0 outside a syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub psw_mask: u64,
    pub psw_addr: u64,
    pub gprs: [u64; 16],
    pub acrs: [u32; 16],
    /// r2 at syscall entry (the first argument; r2 then carries number and result).
    pub orig_gpr2: u64,
    /// Not part of NT_PRSTATUS: NT_S390_SYSTEM_CALL.
    pub system_call: u32,
}

/// Size of the NT_PRSTATUS regset.
pub const REGSET_SIZE: usize = 216;

/// The layout of [`ThreadRegs::ext`] on s390x: the kernel's regsets at fixed offsets,
/// in the host's (big-endian) byte order.
pub mod ext {
    /// A word of `HAS_*` bits: which optional regsets the thread had.
    pub const FLAGS: usize = 0;
    /// NT_PRFPREG: `s390_fp_regs` (fpc, padding, f0..f15).
    pub const FPR: usize = 8;
    /// Size of the FPR regset.
    pub const FPR_SIZE: usize = 8 + 16 * 8;
    /// NT_S390_VXRS_LOW: the right halves of v0..v15 (the left halves are f0..f15).
    pub const VXRS_LOW: usize = FPR + FPR_SIZE;
    /// Size of the VXRS_LOW regset.
    pub const VXRS_LOW_SIZE: usize = 16 * 8;
    /// NT_S390_VXRS_HIGH: v16..v31, 16 bytes each.
    pub const VXRS_HIGH: usize = VXRS_LOW + VXRS_LOW_SIZE;
    /// Size of the VXRS_HIGH regset.
    pub const VXRS_HIGH_SIZE: usize = 16 * 16;
    /// Total size.
    pub const SIZE: usize = VXRS_HIGH + VXRS_HIGH_SIZE;
    /// The vector regsets are present (the CPU has the vector facility).
    pub const HAS_VXRS: u64 = 1;
}

/// `svc 0`: the number comes from r1.
const SVC_0: [u8; 2] = [0x0a, 0x00];
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

impl crate::Abi for S390x {
    const NAME: &'static str = "s390x";
    const CORE_MTYPE: i32 = pb::core_entry::March::S390 as i32;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &SVC_0;
    const RSEQ_SIG: u32 = 0xb2ff_0fff;

    /// arch/s390/kernel/syscalls/syscall.tbl (uapi asm/unistd_64.h). `Mmap` is
    /// `sys_old_mmap`, whose one argument points at the six usual ones.
    fn syscall_number(call: Sys) -> Option<u64> {
        Some(match call {
            Sys::Read => 3,
            Sys::Close => 6,
            Sys::Mmap => 90,
            Sys::Mprotect => 125,
            Sys::Munmap => 91,
            Sys::Brk => 45,
            Sys::RtSigaction => 174,
            Sys::RtSigprocmask => 175,
            Sys::Pread64 => 180,
            Sys::Madvise => 219,
            Sys::Getitimer => 105,
            Sys::Setitimer => 104,
            Sys::Sigaltstack => 186,
            Sys::Personality => 136,
            Sys::Prctl => 172,
            Sys::Setresuid => 208,
            Sys::Setresgid => 210,
            Sys::Setgroups => 206,
            Sys::RtSigqueueinfo => 178,
            Sys::RtTgsigqueueinfo => 330,
            Sys::Prlimit64 => 334,
            Sys::Getpid => 20,
            Sys::ExitGroup => 248,
            Sys::Mremap => 163,
            Sys::Umask => 60,
            Sys::ArchPrctl => return None,
            Sys::Rseq => 383,
            Sys::Clone3 => 435,
            Sys::SetRobustList => 304,
            Sys::SetTidAddress => 252,
            Sys::Setfsuid => 215,
            Sys::Setfsgid => 216,
            Sys::Capset => 185,
            Sys::TimerCreate => 254,
            Sys::TimerSettime => 255,
            Sys::TimerGettime => 256,
            Sys::TimerGetoverrun => 257,
            Sys::TimerDelete => 258,
            Sys::Seccomp => 348,
            Sys::PidfdOpen => 434,
            Sys::Dup3 => 326,
            Sys::Fcntl => 55,
            Sys::Pipe2 => 325,
            Sys::Vmsplice => 309,
            Sys::Shmat => 397,
            Sys::Exit => 1,
            Sys::Userfaultfd => 355,
            Sys::RtSigreturn => NR_RT_SIGRETURN,
            Sys::Write => 4,
            Sys::Socketpair => 360,
            Sys::Membarrier => 356,
            Sys::Openat => 288,
            Sys::Lseek => 19,
        })
    }

    fn ip(regs: &Regs) -> u64 {
        regs.psw_addr
    }

    fn with_ip(regs: &Regs, ip: u64) -> Regs {
        Regs { psw_addr: ip, ..*regs }
    }

    fn sp(regs: &Regs) -> u64 {
        regs.gprs[15]
    }

    /// Number in r1 (for `svc 0`), arguments in r2..r7; `system_call` cleared so the
    /// kernel applies no restart rule of an interrupted syscall to the injected one.
    fn syscall_regs(saved: &Regs, syscall_ip: u64, nr: u64, args: [u64; 6]) -> Regs {
        let mut out = *saved;
        out.psw_addr = syscall_ip;
        out.gprs[1] = nr;
        out.gprs[2..8].copy_from_slice(&args);
        out.orig_gpr2 = args[0];
        out.system_call = 0;
        out
    }

    fn syscall_result(regs: &Regs) -> i64 {
        regs.gprs[2] as i64
    }

    /// The kernel's `arch_do_signal_or_restart` for a thread resumed without a handler:
    /// the tracer sees the registers before it ran. The restart block is reached through
    /// the vDSO's `restart_syscall` trampoline and a kernel-held return address, which a
    /// tracer cannot set up, so ERESTART_RESTARTBLOCK runs the syscall again from its
    /// original arguments, alive or restored.
    fn resume_regs(regs: &Regs, _restart_block_usable: bool) -> Regs {
        let mut out = *regs;
        out.system_call = 0;
        if regs.system_call == 0 {
            return out;
        }
        let ilc = (regs.system_call >> 16) as u64;
        match -(regs.gprs[2] as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => {
                out.gprs[2] = regs.orig_gpr2;
                out.psw_addr = regs.psw_addr.wrapping_sub(ilc);
            }
            _ => {}
        }
        out
    }

    /// The NT_PRSTATUS bytes (without `system_call`), big endian.
    fn regs_to_bytes(regs: &Regs) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(REGSET_SIZE);
        bytes.extend_from_slice(&regs.psw_mask.to_be_bytes());
        bytes.extend_from_slice(&regs.psw_addr.to_be_bytes());
        regs.gprs.iter().for_each(|g| bytes.extend_from_slice(&g.to_be_bytes()));
        regs.acrs.iter().for_each(|a| bytes.extend_from_slice(&a.to_be_bytes()));
        bytes.extend_from_slice(&regs.orig_gpr2.to_be_bytes());
        bytes
    }

    /// Registers from big-endian NT_PRSTATUS bytes; `system_call` is 0.
    fn regs_from_bytes(bytes: &[u8]) -> Option<Regs> {
        if bytes.len() < REGSET_SIZE {
            return None;
        }
        let word = |offset: usize| u64::from_be_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"));
        let mut regs = Regs { psw_mask: word(0), psw_addr: word(8), orig_gpr2: word(208), ..Default::default() };
        for (i, g) in regs.gprs.iter_mut().enumerate() {
            *g = word(16 + i * 8);
        }
        for (i, a) in regs.acrs.iter_mut().enumerate() {
            *a = u32::from_be_bytes(bytes[144 + i * 4..148 + i * 4].try_into().expect("4 bytes"));
        }
        Some(regs)
    }

    const MOVES_OWN_VDSO: bool = true;

    fn map_vdso_ops(target_block_start: u64, own_block: &[(u64, u64)], scratch: u64) -> Vec<RestorerOp> {
        crate::vdso::move_vdso_block_ops(Self::syscall_number(Sys::Mremap).expect("mremap exists"), target_block_start, own_block, scratch)
    }

    /// STACK_TOP of a 64-bit task (_REGION2_SIZE): the default layout stays below it;
    /// higher addresses need a page-table upgrade that only a hint asks for.
    const TASK_SIZE: u64 = 1 << 42;
    const STACK_RED_ZONE: u64 = 0;
    const MMAP_ARGS_IN_MEMORY: bool = true;

    fn word_bytes(word: u64) -> [u8; 8] {
        word.to_be_bytes()
    }

    fn regs_to_core(core: &mut pb::CoreEntry, regs: &ThreadRegs<Regs>, clear_tid_addr: u64) {
        core.ti_s390 = Some(thread_info(regs, clear_tid_addr));
    }

    fn clear_tid_address(core: &pb::CoreEntry) -> Option<u64> {
        core.ti_s390.as_ref().map(|t| t.clear_tid_addr).filter(|&a| a != 0)
    }

    fn regs_from_core(core: &pb::CoreEntry, _ext_template: &[u8]) -> Result<ThreadRegs<Regs>, RegsFromCoreError> {
        let info = core.ti_s390.as_ref().ok_or(RegsFromCoreError::MissingThreadInfo { info: INFO })?;
        thread_regs(info)
    }

    const SIGFRAME_ALIGN: u64 = sigframe::ALIGN;

    fn sigreturn_frame(regs: &ThreadRegs<Regs>, sigmask: u64, address: u64) -> Result<crate::SigreturnFrame, crate::SigframeError> {
        sigframe::build(regs, sigmask, address)
    }

    fn sigreturn_mismatch(expected: &ThreadRegs<Regs>, found: &ThreadRegs<Regs>) -> Option<String> {
        sigframe::mismatch(expected, found)
    }

    const CODE_ALIGN: u64 = 2;
    const SIGRETURN_TRAMPOLINES: &'static [&'static [u8]] = chain::TRAMPOLINES;

    fn return_path(code: &[u8]) -> Option<crate::ReturnPath> {
        chain::return_path(code)
    }

    fn chained_syscall(
        saved: &Regs,
        points: &crate::ChainPoints,
        nr: u64,
        args: [u64; 6],
        frame: &crate::SigreturnFrame,
        frame_address: u64,
    ) -> Option<crate::Chained<Regs>> {
        chain::chained_syscall(saved, points, nr, args, frame, frame_address)
    }

    /// The restorer leaves its status in r8 (0 done, 1 failed, 2 new thread), the failed
    /// op's address in r9 and its result in r2.
    fn restorer_outcome(regs: &Regs, program_address: u64) -> RestorerOutcome {
        match regs.gprs[8] {
            0 => RestorerOutcome::Done,
            2 => RestorerOutcome::NewThread,
            _ => RestorerOutcome::Failed {
                index: regs.gprs[9].wrapping_sub(program_address) / RestorerOp::SIZE as u64,
                result: regs.gprs[2] as i64,
            },
        }
    }
}

/// The image message's name, for errors.
const INFO: &str = "thread_info_s390";

fn word_at(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..offset + 8).map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes"))).unwrap_or(0)
}

fn words_at(bytes: &[u8], offset: usize, count: usize) -> Vec<u64> {
    (0..count).map(|i| word_at(bytes, offset + i * 8)).collect()
}

fn put_words(bytes: &mut [u8], offset: usize, words: &[u64]) {
    for (i, word) in words.iter().enumerate() {
        if let Some(slot) = bytes.get_mut(offset + i * 8..offset + i * 8 + 8) {
            slot.copy_from_slice(&word.to_be_bytes());
        }
    }
}

/// The image message for a thread's registers.
pub fn thread_info(regs: &ThreadRegs<Regs>, clear_tid_addr: u64) -> pb::ThreadInfoS390 {
    let r = &regs.gpr;
    let x = &regs.ext;
    let has_vxrs = word_at(x, ext::FLAGS) & ext::HAS_VXRS != 0;
    pb::ThreadInfoS390 {
        clear_tid_addr,
        gpregs: pb::UserS390RegsEntry {
            psw_mask: r.psw_mask,
            psw_addr: r.psw_addr,
            gprs: r.gprs.to_vec(),
            acrs: r.acrs.to_vec(),
            orig_gpr2: r.orig_gpr2,
            system_call: r.system_call,
        },
        fpregs: pb::UserS390FpregsEntry { fpc: (word_at(x, ext::FPR) >> 32) as u32, fprs: words_at(x, ext::FPR + 8, 16) },
        vxrs_low: has_vxrs.then(|| pb::UserS390VxrsLowEntry { regs: words_at(x, ext::VXRS_LOW, 16) }),
        vxrs_high: has_vxrs.then(|| pb::UserS390VxrsHighEntry { regs: words_at(x, ext::VXRS_HIGH, 32) }),
        gs_cb: None,
        gs_bc: None,
        ri_cb: None,
    }
}

/// A thread's registers from the image.
pub fn thread_regs(info: &pb::ThreadInfoS390) -> Result<ThreadRegs<Regs>, RegsFromCoreError> {
    let count = |what, found, expected| match found == expected {
        true => Ok(()),
        false => Err(RegsFromCoreError::WrongCount { info: INFO, what, found, expected }),
    };
    let g = &info.gpregs;
    count("gprs", g.gprs.len(), 16)?;
    count("acrs", g.acrs.len(), 16)?;
    count("fprs", info.fpregs.fprs.len(), 16)?;
    if info.gs_cb.is_some() || info.ri_cb.as_ref().is_some_and(|ri| ri.ri_on != 0) {
        return Err(RegsFromCoreError::Unsupported { info: INFO, what: "guarded-storage or runtime-instrumentation state" });
    }
    let mut gpr = Regs {
        psw_mask: g.psw_mask,
        psw_addr: g.psw_addr,
        orig_gpr2: g.orig_gpr2,
        system_call: g.system_call,
        ..Default::default()
    };
    gpr.gprs.copy_from_slice(&g.gprs);
    gpr.acrs.copy_from_slice(&g.acrs);
    let mut x = vec![0u8; ext::SIZE];
    put_words(&mut x, ext::FPR, &[(info.fpregs.fpc as u64) << 32]);
    put_words(&mut x, ext::FPR + 8, &info.fpregs.fprs);
    let mut flags = 0;
    match (&info.vxrs_low, &info.vxrs_high) {
        (Some(low), Some(high)) if low.regs.len() == 16 && high.regs.len() == 32 => {
            flags |= ext::HAS_VXRS;
            put_words(&mut x, ext::VXRS_LOW, &low.regs);
            put_words(&mut x, ext::VXRS_HIGH, &high.regs);
        }
        (None, None) => {}
        _ => return Err(RegsFromCoreError::Incomplete { info: INFO, what: "vector register set" }),
    }
    put_words(&mut x, ext::FLAGS, &[flags]);
    Ok(ThreadRegs { gpr, ext: x })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Abi;

    #[test]
    fn mmap_arguments_are_a_big_endian_block() {
        const { assert!(S390x::MMAP_ARGS_IN_MEMORY) };
        let block = S390x::mmap_arg_block([0x1000, 0x2000, 3, 0x22, u64::MAX, 0]);
        assert_eq!(block.len(), 48);
        assert_eq!(&block[..8], &[0, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(&block[24..32], &[0, 0, 0, 0, 0, 0, 0, 0x22]);
        assert_eq!(&block[32..40], &[0xff; 8]);
    }

    fn sample() -> ThreadRegs<Regs> {
        let mut regs = Regs {
            psw_mask: 0x0705_0000_8000_0000,
            psw_addr: 0x2aa_0000_1000,
            orig_gpr2: 0x42,
            system_call: (2 << 16) | 162,
            ..Default::default()
        };
        for i in 0..16 {
            regs.gprs[i] = 0x3000 + i as u64;
            regs.acrs[i] = 0x100 + i as u32;
        }
        let mut x = vec![0u8; ext::SIZE];
        for (i, b) in x.iter_mut().enumerate() {
            *b = (i * 7 % 249) as u8;
        }
        put_words(&mut x, ext::FLAGS, &[ext::HAS_VXRS]);
        // The fpc word's padding half is zero in the kernel's regset.
        x[ext::FPR + 4..ext::FPR + 8].fill(0);
        ThreadRegs { gpr: regs, ext: x }
    }

    #[test]
    fn regs_bytes_round_trip() {
        let regs = Regs { system_call: 0, ..sample().gpr };
        let bytes = S390x::regs_to_bytes(&regs);
        assert_eq!(bytes.len(), REGSET_SIZE);
        assert_eq!(S390x::regs_from_bytes(&bytes), Some(regs));
        assert_eq!(S390x::regs_from_bytes(&bytes[..215]), None);
    }

    #[test]
    fn registers_round_trip_through_the_image() {
        let regs = sample();
        let mut core = pb::CoreEntry::default();
        S390x::regs_to_core(&mut core, &regs, 0x3ff_f000);
        let info = core.ti_s390.as_ref().unwrap();
        assert_eq!((info.gpregs.system_call, info.gpregs.acrs[1]), ((2 << 16) | 162, 0x101));
        assert_eq!(info.vxrs_high.as_ref().unwrap().regs.len(), 32);
        assert_eq!(S390x::clear_tid_address(&core), Some(0x3ff_f000));
        assert_eq!(S390x::regs_from_core(&core, &[]).unwrap(), regs);
    }

    #[test]
    fn extended_state_is_big_endian() {
        let mut regs = sample();
        put_words(&mut regs.ext, ext::FPR, &[0x0000_0003_0000_0000]);
        regs.ext[ext::FPR + 8..ext::FPR + 16].copy_from_slice(&[0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18]);
        let info = thread_info(&regs, 0);
        assert_eq!(info.fpregs.fpc, 3);
        assert_eq!(f64::from_bits(info.fpregs.fprs[0]), std::f64::consts::PI);
    }

    #[test]
    fn regs_bytes_are_big_endian_on_any_host() {
        let regs = Regs { system_call: 0, ..sample().gpr };
        let bytes = S390x::regs_to_bytes(&regs);
        assert_eq!(bytes[..8], [0x07, 0x05, 0, 0, 0x80, 0, 0, 0]);
        assert_eq!(bytes[8..16], [0, 0, 0x02, 0xaa, 0, 0, 0x10, 0]);
        // gprs[15] = 0x300f, then acrs[0] = 0x100 as a big-endian u32.
        assert_eq!(bytes[16 + 15 * 8..16 + 16 * 8], [0, 0, 0, 0, 0, 0, 0x30, 0x0f]);
        assert_eq!(bytes[144..148], [0, 0, 0x01, 0x00]);
        assert_eq!(bytes[208..216], [0, 0, 0, 0, 0, 0, 0, 0x42]);
        assert_eq!(S390x::regs_from_bytes(&bytes), Some(regs));
    }

    #[test]
    fn restorer_outcome_reads_r8_r9_r2() {
        let mut regs = Regs::default();
        assert_eq!(S390x::restorer_outcome(&regs, 0x1000), RestorerOutcome::Done);
        regs.gprs[8] = 2;
        assert_eq!(S390x::restorer_outcome(&regs, 0x1000), RestorerOutcome::NewThread);
        (regs.gprs[8], regs.gprs[9], regs.gprs[2]) = (1, 0x1000 + 7 * 80, (-12i64) as u64);
        assert_eq!(S390x::restorer_outcome(&regs, 0x1000), RestorerOutcome::Failed { index: 7, result: -12 });
    }

    #[test]
    fn bad_image_is_a_typed_error() {
        let mut info = thread_info(&sample(), 0);
        info.vxrs_high = None;
        assert_eq!(thread_regs(&info).unwrap_err().to_string(), "thread_info_s390 has an incomplete vector register set");
        info.gpregs.acrs.pop();
        assert_eq!(thread_regs(&info).unwrap_err().to_string(), "thread_info_s390 has 15 acrs, not 16");
    }

    #[test]
    fn syscall_regs_use_r1_and_clear_the_syscall() {
        let saved = sample().gpr;
        let r = S390x::syscall_regs(&saved, 0x4000, 91, [1, 2, 3, 4, 5, 6]);
        assert_eq!((r.psw_addr, r.gprs[1], r.orig_gpr2, r.system_call, r.psw_mask), (0x4000, 91, 1, 0, saved.psw_mask));
        assert_eq!(r.gprs[2..8], [1, 2, 3, 4, 5, 6]);
        assert_eq!(S390x::syscall_result(&Regs { gprs: [(-9i64) as u64; 16], ..Default::default() }), -9);
    }

    #[test]
    fn interrupted_syscall_rewinds_by_the_instruction_length() {
        let mut regs = sample().gpr;
        regs.gprs[2] = (-ERESTARTSYS) as u64;
        let out = S390x::resume_regs(&regs, false);
        assert_eq!((out.gprs[2], out.psw_addr, out.system_call), (0x42, 0x2aa_0000_0ffe, 0));
        regs.gprs[2] = (-ERESTART_RESTARTBLOCK) as u64;
        assert_eq!(S390x::resume_regs(&regs, true).psw_addr, 0x2aa_0000_0ffe);
        regs.gprs[2] = (-4i64) as u64;
        assert_eq!(S390x::resume_regs(&regs, false), Regs { system_call: 0, ..regs });
    }

    #[test]
    fn user_space_regs_untouched() {
        let regs = Regs { system_call: 0, gprs: [(-ERESTARTSYS) as u64; 16], ..sample().gpr };
        assert_eq!(S390x::resume_regs(&regs, false), regs);
    }

    #[test]
    fn syscall_numbers_follow_the_s390x_table() {
        assert_eq!(S390x::syscall_number(Sys::RtSigaction), Some(174));
        assert_eq!(S390x::syscall_number(Sys::Setresuid), Some(208));
        assert_eq!(S390x::syscall_number(Sys::Rseq), Some(383));
        assert_eq!(S390x::SYSCALL_INSN, [0x0a, 0x00]);
    }
}
