//! ppc64le: the NT_PRSTATUS layout (`struct pt_regs` as ptrace shows it), the ppc64
//! syscall table, the `sc` calling convention (number in r0, arguments r3..r8, errors as
//! a positive errno with CR0.SO set), restart rules, the FPR/VMX/VSX state carried in
//! [`ThreadRegs::ext`], the image's `thread_info_ppc64`, and (on a ppc64le host) ptrace
//! register access and the restorer blob.

mod chain;
#[cfg(target_arch = "powerpc64")]
mod host;
mod sigframe;

use crate::{RegsFromCoreError, RestorerOp, RestorerOutcome, Sys, ThreadRegs};
use crust_images::pb;

/// The ppc64le backend.
pub struct Ppc64le;

/// `rt_sigreturn`, which the restorer's SIGRETURN op runs.
pub(crate) const NR_RT_SIGRETURN: u64 = 172;

/// The NT_PRSTATUS regset: `struct pt_regs` of the uapi (44 words; the regset is
/// ELF_NGREG = 48 words, the last four unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub gpr: [u64; 32],
    pub nip: u64,
    pub msr: u64,
    /// r3 at syscall entry, for restarts.
    pub orig_gpr3: u64,
    pub ctr: u64,
    pub link: u64,
    pub xer: u64,
    pub ccr: u64,
    pub softe: u64,
    /// The interrupt that entered the kernel: 0xc00 for `sc`, 0x3000 for `scv`.
    pub trap: u64,
    pub dar: u64,
    pub dsisr: u64,
    pub result: u64,
}

/// Number of meaningful u64 words in [`Regs`].
pub const REGS_WORDS: usize = 44;
/// Size of the NT_PRSTATUS regset (ELF_NGREG words).
pub const REGSET_SIZE: usize = 48 * 8;

/// The layout of [`ThreadRegs::ext`] on ppc64le: the kernel's regsets one after the
/// other at fixed offsets.
pub mod ext {
    /// A word of `HAS_*` bits: which optional regsets the thread had.
    pub const FLAGS: usize = 0;
    /// NT_PRFPREG: fpr0..fpr31 and fpscr.
    pub const FPR: usize = 8;
    /// Size of the FPR regset.
    pub const FPR_SIZE: usize = 33 * 8;
    /// NT_PPC_VMX: vr0..vr31, vscr (a 16-byte slot), vrsave (first word of a slot).
    pub const VMX: usize = FPR + FPR_SIZE;
    /// Size of the VMX regset.
    pub const VMX_SIZE: usize = 34 * 16;
    /// NT_PPC_VSX: the low doublewords of vsr0..vsr31.
    pub const VSX: usize = VMX + VMX_SIZE;
    /// Size of the VSX regset.
    pub const VSX_SIZE: usize = 32 * 8;
    /// Total size.
    pub const SIZE: usize = VSX + VSX_SIZE;
    /// The VMX regset is present.
    pub const HAS_VMX: u64 = 1;
    /// The VSX regset is present.
    pub const HAS_VSX: u64 = 2;
}

/// `sc`, little endian.
const SC: [u8; 4] = [0x02, 0x00, 0x00, 0x44];
/// CR0.SO, set by the kernel when an `sc` syscall fails.
const CR0_SO: u64 = 0x1000_0000;
const TRAP_SC: u64 = 0xc00;
const TRAP_SCV: u64 = 0x3000;
const ERESTARTSYS: u64 = 512;
const ERESTARTNOINTR: u64 = 513;
const ERESTARTNOHAND: u64 = 514;
const ERESTART_RESTARTBLOCK: u64 = 516;
const EINTR: u64 = 4;
const NR_RESTART_SYSCALL: u64 = 0;

impl Regs {
    /// The registers as words in kernel order.
    pub fn to_words(&self) -> [u64; REGS_WORDS] {
        let mut w = [0u64; REGS_WORDS];
        w[..32].copy_from_slice(&self.gpr);
        w[32..].copy_from_slice(&[
            self.nip, self.msr, self.orig_gpr3, self.ctr, self.link, self.xer, self.ccr, self.softe, self.trap,
            self.dar, self.dsisr, self.result,
        ]);
        w
    }

    /// Registers from words in kernel order.
    pub fn from_words(w: [u64; REGS_WORDS]) -> Self {
        let mut gpr = [0u64; 32];
        gpr.copy_from_slice(&w[..32]);
        Regs {
            gpr,
            nip: w[32],
            msr: w[33],
            orig_gpr3: w[34],
            ctr: w[35],
            link: w[36],
            xer: w[37],
            ccr: w[38],
            softe: w[39],
            trap: w[40],
            dar: w[41],
            dsisr: w[42],
            result: w[43],
        }
    }
}

impl crate::Abi for Ppc64le {
    const NAME: &'static str = "ppc64le";
    const CORE_MTYPE: i32 = pb::core_entry::March::Ppc64 as i32;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &SC;
    const RSEQ_SIG: u32 = 0x0fe5_000b;

    /// arch/powerpc/kernel/syscalls/syscall.tbl (uapi asm/unistd_64.h).
    fn syscall_number(call: Sys) -> Option<u64> {
        Some(match call {
            Sys::Read => 3,
            Sys::Close => 6,
            Sys::Mmap => 90,
            Sys::Mprotect => 125,
            Sys::Munmap => 91,
            Sys::Brk => 45,
            Sys::RtSigaction => 173,
            Sys::RtSigprocmask => 174,
            Sys::Pread64 => 179,
            Sys::Madvise => 205,
            Sys::Getitimer => 105,
            Sys::Setitimer => 104,
            Sys::Sigaltstack => 185,
            Sys::Personality => 136,
            Sys::Prctl => 171,
            Sys::Setresuid => 164,
            Sys::Setresgid => 169,
            Sys::Setgroups => 81,
            Sys::RtSigqueueinfo => 177,
            Sys::RtTgsigqueueinfo => 322,
            Sys::Prlimit64 => 325,
            Sys::Getpid => 20,
            Sys::ExitGroup => 234,
            Sys::Mremap => 163,
            Sys::Umask => 60,
            Sys::ArchPrctl => return None,
            Sys::Rseq => 387,
            Sys::Clone3 => 435,
            Sys::SetRobustList => 300,
            Sys::SetTidAddress => 232,
            Sys::Setfsuid => 138,
            Sys::Setfsgid => 139,
            Sys::Capset => 184,
            Sys::TimerCreate => 240,
            Sys::TimerSettime => 241,
            Sys::TimerGettime => 242,
            Sys::TimerGetoverrun => 243,
            Sys::TimerDelete => 244,
            Sys::Seccomp => 358,
            Sys::PidfdOpen => 434,
            Sys::Dup3 => 316,
            Sys::Fcntl => 55,
            Sys::Pipe2 => 317,
            Sys::Vmsplice => 285,
            Sys::Shmat => 397,
            Sys::Exit => 1,
            Sys::Userfaultfd => 364,
            Sys::RtSigreturn => NR_RT_SIGRETURN,
            Sys::Write => 4,
            Sys::Socketpair => 333,
            Sys::Membarrier => 365,
            Sys::Openat => 286,
            Sys::Lseek => 19,
        })
    }

    fn ip(regs: &Regs) -> u64 {
        regs.nip
    }

    fn with_ip(regs: &Regs, ip: u64) -> Regs {
        Regs { nip: ip, ..*regs }
    }

    fn sp(regs: &Regs) -> u64 {
        regs.gpr[1]
    }

    /// Number in r0, arguments in r3..r8; `trap` cleared so the kernel applies no
    /// restart rule of an interrupted syscall to the injected one (as CRIU's compel).
    fn syscall_regs(saved: &Regs, syscall_ip: u64, nr: u64, args: [u64; 6]) -> Regs {
        let mut out = *saved;
        out.nip = syscall_ip;
        out.gpr[0] = nr;
        out.gpr[3..9].copy_from_slice(&args);
        out.orig_gpr3 = args[0];
        out.trap = 0;
        out
    }

    /// `sc` reports an error as a positive errno with CR0.SO set; `scv` as -errno.
    fn syscall_result(regs: &Regs) -> i64 {
        if regs.trap & !0xf != TRAP_SCV && regs.ccr & CR0_SO != 0 {
            -(regs.gpr[3] as i64)
        } else {
            regs.gpr[3] as i64
        }
    }

    /// The kernel's `check_syscall_restart` for a thread resumed without a handler: the
    /// tracer sees the registers before it ran.
    fn resume_regs(regs: &Regs, restart_block_usable: bool) -> Regs {
        let mut out = *regs;
        out.trap = 0;
        let trap = regs.trap & !0xf;
        let errno = match trap {
            TRAP_SC if regs.ccr & CR0_SO != 0 => regs.gpr[3],
            TRAP_SCV if (regs.gpr[3] as i64) < 0 && (regs.gpr[3] as i64) >= -4095 => (regs.gpr[3] as i64).unsigned_abs(),
            _ => return out,
        };
        match errno {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                out.gpr[3] = regs.orig_gpr3;
                out.nip = regs.nip - 4;
            }
            ERESTART_RESTARTBLOCK if restart_block_usable => {
                out.gpr[0] = NR_RESTART_SYSCALL;
                out.nip = regs.nip - 4;
            }
            ERESTART_RESTARTBLOCK if regs.gpr[0] != NR_RESTART_SYSCALL => {
                // The restart block dies with the thread: run the syscall again from its
                // original arguments (r0 still holds its number).
                out.gpr[3] = regs.orig_gpr3;
                out.nip = regs.nip - 4;
            }
            ERESTART_RESTARTBLOCK if trap == TRAP_SCV => out.gpr[3] = (-(EINTR as i64)) as u64,
            ERESTART_RESTARTBLOCK => out.gpr[3] = EINTR,
            _ => {}
        }
        out
    }

    fn regs_to_bytes(regs: &Regs) -> Vec<u8> {
        let mut bytes: Vec<u8> = regs.to_words().iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.resize(REGSET_SIZE, 0);
        bytes
    }

    fn regs_from_bytes(bytes: &[u8]) -> Option<Regs> {
        if bytes.len() < REGS_WORDS * 8 {
            return None;
        }
        let mut words = [0u64; REGS_WORDS];
        for (index, word) in words.iter_mut().enumerate() {
            *word = u64::from_le_bytes(bytes[index * 8..index * 8 + 8].try_into().ok()?);
        }
        Some(Regs::from_words(words))
    }

    const MOVES_OWN_VDSO: bool = true;

    fn map_vdso_ops(target_block_start: u64, own_block: &[(u64, u64)], scratch: u64) -> Vec<RestorerOp> {
        crate::vdso::move_vdso_block_ops(Self::syscall_number(Sys::Mremap).expect("mremap exists"), target_block_start, own_block, scratch)
    }

    /// The default 128 TiB map window; higher addresses are only handed out on request.
    const TASK_SIZE: u64 = 1 << 47;
    const STACK_RED_ZONE: u64 = 288;
    const MMAP_ARGS_IN_MEMORY: bool = false;

    fn word_bytes(word: u64) -> [u8; 8] {
        word.to_le_bytes()
    }

    /// powerpc's ioctl encoding: 13 size bits, the write direction is 4 at bit 29
    /// (arch/powerpc/include/uapi/asm/ioctl.h).
    fn ioctl_write(kind: u8, nr: u8, size: u16) -> u64 {
        const IOC_WRITE: u64 = 4;
        (IOC_WRITE << 29) | (u64::from(size & 0x1fff) << 16) | (u64::from(kind) << 8) | u64::from(nr)
    }

    fn ioctl_read_write(kind: u8, nr: u8, size: u16) -> u64 {
        const IOC_READ_WRITE: u64 = 2 | 4;
        (IOC_READ_WRITE << 29) | (u64::from(size & 0x1fff) << 16) | (u64::from(kind) << 8) | u64::from(nr)
    }

    fn regs_to_core(core: &mut pb::CoreEntry, regs: &ThreadRegs<Regs>, clear_tid_addr: u64) {
        core.ti_ppc64 = Some(thread_info(regs, clear_tid_addr));
    }

    fn clear_tid_address(core: &pb::CoreEntry) -> Option<u64> {
        core.ti_ppc64.as_ref().map(|t| t.clear_tid_addr).filter(|&a| a != 0)
    }

    fn regs_from_core(core: &pb::CoreEntry, _ext_template: &[u8]) -> Result<ThreadRegs<Regs>, RegsFromCoreError> {
        let info = core.ti_ppc64.as_ref().ok_or(RegsFromCoreError::MissingThreadInfo { info: INFO })?;
        thread_regs(info)
    }

    const SIGFRAME_ALIGN: u64 = sigframe::ALIGN;

    fn sigreturn_frame(regs: &ThreadRegs<Regs>, sigmask: u64, address: u64) -> Result<crate::SigreturnFrame, crate::SigframeError> {
        sigframe::build(regs, sigmask, address)
    }

    fn sigreturn_mismatch(expected: &ThreadRegs<Regs>, found: &ThreadRegs<Regs>) -> Option<String> {
        sigframe::mismatch(expected, found)
    }

    const CODE_ALIGN: u64 = 4;
    const SEIZED_REGS_RESTART_AFTER_SIGRETURN: bool = false;
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

    /// The restorer leaves its status in r14 (0 done, 1 failed, 2 new thread), the
    /// failed op's address in r15 and its result (already -errno) in r3.
    fn restorer_outcome(regs: &Regs, program_address: u64) -> RestorerOutcome {
        match regs.gpr[14] {
            0 => RestorerOutcome::Done,
            2 => RestorerOutcome::NewThread,
            _ => RestorerOutcome::Failed {
                index: regs.gpr[15].wrapping_sub(program_address) / RestorerOp::SIZE as u64,
                result: regs.gpr[3] as i64,
            },
        }
    }
}

/// The image message's name, for errors.
const INFO: &str = "thread_info_ppc64";

fn word_at(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..offset + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes"))).unwrap_or(0)
}

fn words_at(bytes: &[u8], offset: usize, count: usize) -> Vec<u64> {
    (0..count).map(|i| word_at(bytes, offset + i * 8)).collect()
}

fn put_words(bytes: &mut [u8], offset: usize, words: &[u64]) {
    for (i, word) in words.iter().enumerate() {
        if let Some(slot) = bytes.get_mut(offset + i * 8..offset + i * 8 + 8) {
            slot.copy_from_slice(&word.to_le_bytes());
        }
    }
}

/// The image message for a thread's registers. Vector registers go in as CRIU writes
/// them: the regset's memory as little-endian words (so VSCR is the pair after vr31).
pub fn thread_info(regs: &ThreadRegs<Regs>, clear_tid_addr: u64) -> pb::ThreadInfoPpc64 {
    let r = &regs.gpr;
    let x = &regs.ext;
    let flags = word_at(x, ext::FLAGS);
    pb::ThreadInfoPpc64 {
        clear_tid_addr,
        gpregs: pb::UserPpc64RegsEntry {
            gpr: r.gpr.to_vec(),
            nip: r.nip,
            msr: r.msr,
            orig_gpr3: r.orig_gpr3,
            ctr: r.ctr,
            link: r.link,
            xer: r.xer,
            ccr: r.ccr,
            trap: r.trap,
            texasr: None,
            tfhar: None,
            tfiar: None,
        },
        fpstate: Some(pb::UserPpc64FpstateEntry { fpregs: words_at(x, ext::FPR, 33) }),
        vrstate: (flags & ext::HAS_VMX != 0).then(|| pb::UserPpc64VrstateEntry {
            vrregs: words_at(x, ext::VMX, 66),
            vrsave: word_at(x, ext::VMX + 33 * 16) as u32,
        }),
        vsxstate: (flags & ext::HAS_VSX != 0).then(|| pb::UserPpc64VsxstateEntry { vsxregs: words_at(x, ext::VSX, 32) }),
        tmstate: None,
    }
}

/// A thread's registers from the image.
pub fn thread_regs(info: &pb::ThreadInfoPpc64) -> Result<ThreadRegs<Regs>, RegsFromCoreError> {
    let count = |what, found, expected| match found == expected {
        true => Ok(()),
        false => Err(RegsFromCoreError::WrongCount { info: INFO, what, found, expected }),
    };
    let g = &info.gpregs;
    count("general registers", g.gpr.len(), 32)?;
    if info.tmstate.is_some() {
        return Err(RegsFromCoreError::Unsupported { info: INFO, what: "a transaction in flight (tmstate)" });
    }
    let mut gpr = Regs {
        nip: g.nip,
        msr: g.msr,
        orig_gpr3: g.orig_gpr3,
        ctr: g.ctr,
        link: g.link,
        xer: g.xer,
        ccr: g.ccr,
        trap: g.trap,
        ..Default::default()
    };
    gpr.gpr.copy_from_slice(&g.gpr);
    let mut x = vec![0u8; ext::SIZE];
    let mut flags = 0u64;
    if let Some(fp) = &info.fpstate {
        count("fp words", fp.fpregs.len(), 33)?;
        put_words(&mut x, ext::FPR, &fp.fpregs);
    }
    if let Some(vr) = &info.vrstate {
        count("vmx words", vr.vrregs.len(), 66)?;
        flags |= ext::HAS_VMX;
        put_words(&mut x, ext::VMX, &vr.vrregs);
        x[ext::VMX + 33 * 16..ext::VMX + 33 * 16 + 4].copy_from_slice(&vr.vrsave.to_le_bytes());
    }
    if let Some(vsx) = &info.vsxstate {
        count("vsx words", vsx.vsxregs.len(), 32)?;
        flags |= ext::HAS_VSX;
        put_words(&mut x, ext::VSX, &vsx.vsxregs);
    }
    put_words(&mut x, ext::FLAGS, &[flags]);
    Ok(ThreadRegs { gpr, ext: x })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_write_has_powerpc_direction_bits() {
        use crate::Abi;
        // TFD_IOC_SET_TICKS = _IOW('T', 0, u64)
        assert_eq!(Ppc64le::ioctl_write(b'T', 0, 8), 0x8008_5400);
        assert_eq!(crate::x86_64::X86_64::ioctl_write(b'T', 0, 8), 0x4008_5400);
        // UFFDIO_REGISTER = _IOWR(0xAA, 0x00, struct uffdio_register): 0xc020aa00 on x86.
        assert_eq!(crate::x86_64::X86_64::ioctl_read_write(0xAA, 0, 32), 0xc020_aa00);
        assert_eq!(Ppc64le::ioctl_read_write(0xAA, 0, 32), 0xc020_aa00);
        // UFFDIO_API = _IOWR(0xAA, 0x3F, struct uffdio_api).
        assert_eq!(crate::x86_64::X86_64::ioctl_read_write(0xAA, 0x3f, 24), 0xc018_aa3f);
    }
    use crate::Abi;

    fn sample() -> ThreadRegs<Regs> {
        let mut words = [0u64; REGS_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = 0x2000 + i as u64;
        }
        let mut regs = Regs::from_words(words);
        // What the image does not carry is zero after a round trip.
        (regs.softe, regs.dar, regs.dsisr, regs.result) = (0, 0, 0, 0);
        let mut x = vec![0u8; ext::SIZE];
        for (i, b) in x.iter_mut().enumerate() {
            *b = (i * 11 % 253) as u8;
        }
        put_words(&mut x, ext::FLAGS, &[ext::HAS_VMX | ext::HAS_VSX]);
        // vrsave is one word in its slot; the slot's rest is zero in the kernel's regset.
        x[ext::VMX + 33 * 16 + 4..ext::VMX + 34 * 16].fill(0);
        ThreadRegs { gpr: regs, ext: x }
    }

    #[test]
    fn regs_bytes_round_trip() {
        let regs = sample().gpr;
        let bytes = Ppc64le::regs_to_bytes(&regs);
        assert_eq!(bytes.len(), 384);
        assert_eq!(Ppc64le::regs_from_bytes(&bytes), Some(regs));
        assert_eq!(Ppc64le::regs_from_bytes(&bytes[..351]), None);
    }

    #[test]
    fn registers_round_trip_through_the_image() {
        let regs = sample();
        let mut core = pb::CoreEntry::default();
        Ppc64le::regs_to_core(&mut core, &regs, 0x77f0);
        let info = core.ti_ppc64.as_ref().unwrap();
        assert_eq!((info.gpregs.nip, info.gpregs.trap), (0x2000 + 32, 0x2000 + 40));
        assert_eq!(info.vrstate.as_ref().unwrap().vrregs.len(), 66);
        assert_eq!(Ppc64le::clear_tid_address(&core), Some(0x77f0));
        assert_eq!(Ppc64le::regs_from_core(&core, &[]).unwrap(), regs);
    }

    #[test]
    fn regs_bytes_are_little_endian_on_any_host() {
        let regs = Regs { nip: 0x0102_0304_0506_0708, ..Default::default() };
        let bytes = Ppc64le::regs_to_bytes(&regs);
        assert_eq!(bytes[32 * 8..33 * 8], [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
        assert!(bytes[REGS_WORDS * 8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn restorer_outcome_reads_r14_r15_r3() {
        let mut regs = Regs::default();
        assert_eq!(Ppc64le::restorer_outcome(&regs, 0x1000), RestorerOutcome::Done);
        regs.gpr[14] = 2;
        assert_eq!(Ppc64le::restorer_outcome(&regs, 0x1000), RestorerOutcome::NewThread);
        (regs.gpr[14], regs.gpr[15], regs.gpr[3]) = (1, 0x1000 + 80, (-9i64) as u64);
        assert_eq!(Ppc64le::restorer_outcome(&regs, 0x1000), RestorerOutcome::Failed { index: 1, result: -9 });
    }

    #[test]
    fn bad_image_is_a_typed_error() {
        let mut info = thread_info(&sample(), 0);
        info.vrstate.as_mut().unwrap().vrregs.pop();
        assert_eq!(thread_regs(&info).unwrap_err().to_string(), "thread_info_ppc64 has 65 vmx words, not 66");
        info.tmstate = Some(Default::default());
        assert_eq!(
            thread_regs(&info).unwrap_err(),
            RegsFromCoreError::Unsupported { info: INFO, what: "a transaction in flight (tmstate)" }
        );
    }

    #[test]
    fn syscall_regs_place_arguments_and_clear_trap() {
        let saved = Regs { trap: 0xc00, msr: 0x8000_0000_0000_d033, ..sample().gpr };
        let r = Ppc64le::syscall_regs(&saved, 0x4000, 90, [1, 2, 3, 4, 5, 6]);
        assert_eq!((r.nip, r.gpr[0], r.orig_gpr3, r.trap, r.msr), (0x4000, 90, 1, 0, saved.msr));
        assert_eq!(r.gpr[3..9], [1, 2, 3, 4, 5, 6]);
        assert_eq!(r.gpr[1], saved.gpr[1]);
    }

    #[test]
    fn errors_use_cr0_so_for_sc_and_negative_values_for_scv() {
        let failed = Regs { gpr: [22; 32], ccr: CR0_SO | 0x2, trap: TRAP_SC, ..Default::default() };
        assert_eq!(Ppc64le::syscall_result(&failed), -22);
        let ok = Regs { gpr: [22; 32], ccr: 0x2, trap: TRAP_SC, ..Default::default() };
        assert_eq!(Ppc64le::syscall_result(&ok), 22);
        let scv = Regs { gpr: [(-22i64) as u64; 32], ccr: CR0_SO, trap: TRAP_SCV, ..Default::default() };
        assert_eq!(Ppc64le::syscall_result(&scv), -22);
    }

    #[test]
    fn interrupted_read_restarts() {
        let mut regs = Regs { trap: TRAP_SC | 1, ccr: CR0_SO, orig_gpr3: 5, nip: 0x1004, ..Default::default() };
        (regs.gpr[0], regs.gpr[3]) = (3, ERESTARTSYS);
        let out = Ppc64le::resume_regs(&regs, false);
        assert_eq!((out.gpr[0], out.gpr[3], out.nip, out.trap), (3, 5, 0x1000, 0));
    }

    #[test]
    fn interrupted_scv_restarts() {
        let mut regs = Regs { trap: TRAP_SCV, orig_gpr3: 5, nip: 0x1004, ..Default::default() };
        regs.gpr[3] = (-(ERESTARTNOHAND as i64)) as u64;
        assert_eq!(Ppc64le::resume_regs(&regs, false).nip, 0x1000);
    }

    #[test]
    fn interrupted_nanosleep_uses_restart_block_only_while_alive() {
        let mut regs = Regs { trap: TRAP_SC, ccr: CR0_SO, orig_gpr3: 0x7fff_0000, nip: 0x2004, ..Default::default() };
        (regs.gpr[0], regs.gpr[3]) = (162, ERESTART_RESTARTBLOCK);
        let alive = Ppc64le::resume_regs(&regs, true);
        assert_eq!((alive.gpr[0], alive.nip), (NR_RESTART_SYSCALL, 0x2000));
        let restored = Ppc64le::resume_regs(&regs, false);
        assert_eq!((restored.gpr[0], restored.gpr[3], restored.nip), (162, 0x7fff_0000, 0x2000));
    }

    #[test]
    fn user_space_regs_untouched() {
        let regs = Regs { trap: 0x900, ccr: CR0_SO, gpr: [ERESTARTSYS; 32], nip: 0x3000, ..Default::default() };
        assert_eq!(Ppc64le::resume_regs(&regs, false), Regs { trap: 0, ..regs });
    }

    #[test]
    fn syscall_numbers_follow_the_ppc64_table() {
        assert_eq!(Ppc64le::syscall_number(Sys::Mmap), Some(90));
        assert_eq!(Ppc64le::syscall_number(Sys::Rseq), Some(387));
        assert_eq!(Ppc64le::syscall_number(Sys::ArchPrctl), None);
        assert_eq!(Ppc64le::SYSCALL_INSN, 0x4400_0002u32.to_le_bytes());
    }
}
