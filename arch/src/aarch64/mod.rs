//! aarch64: the NT_PRSTATUS layout (`user_pt_regs`), generic syscall numbers, how an
//! injected syscall is set up and an interrupted one restarts, the FPSIMD/TLS/PAC state
//! carried in [`ThreadRegs::ext`], the image's `thread_info_aarch64`, and (on an
//! aarch64 host) ptrace register access and the restorer blob.

mod chain;
#[cfg(target_arch = "aarch64")]
mod host;
mod sigframe;

use crate::{RegsFromCoreError, RestorerOp, RestorerOutcome, Sys, ThreadRegs};
use crust_images::pb;

/// The aarch64 backend.
pub struct Aarch64;

/// `rt_sigreturn`, which the restorer's SIGRETURN op runs.
pub(crate) const NR_RT_SIGRETURN: u64 = 139;

/// `struct user_pt_regs`, the NT_PRSTATUS regset: x0..x30, sp, pc, pstate.
///
/// The syscall number (`syscallno`) and `orig_x0` are not part of it; ptrace shows the
/// number through NT_ARM_SYSTEM_CALL. The engine never needs either: see
/// [`Aarch64::resume_regs`](crate::Abi::resume_regs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub x: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

/// Number of u64 words in [`Regs`].
pub const REGS_WORDS: usize = 34;

/// The layout of [`ThreadRegs::ext`] on aarch64: the kernel's regsets one after the
/// other, each at a fixed offset, so the host can hand each to PTRACE_SETREGSET as is.
pub mod ext {
    /// NT_PRFPREG: `struct user_fpsimd_state` (v0..v31, fpsr, fpcr, 8 reserved bytes).
    pub const FPSIMD: usize = 0;
    /// Size of the FPSIMD regset.
    pub const FPSIMD_SIZE: usize = 528;
    /// NT_ARM_TLS: tpidr_el0.
    pub const TLS: usize = FPSIMD + FPSIMD_SIZE;
    /// A word of [`HAS_PAC_ADDRESS`] / [`HAS_PAC_GENERIC`] / [`HAS_PAC_ENABLED`] bits:
    /// which of the optional regsets below the thread had.
    pub const FLAGS: usize = TLS + 8;
    /// NT_ARM_PACA_KEYS: `struct user_pac_address_keys` (apia, apib, apda, apdb; 128 bits each).
    pub const PAC_ADDRESS: usize = FLAGS + 8;
    /// Size of the address-keys regset.
    pub const PAC_ADDRESS_SIZE: usize = 64;
    /// NT_ARM_PACG_KEYS: `struct user_pac_generic_keys` (apga).
    pub const PAC_GENERIC: usize = PAC_ADDRESS + PAC_ADDRESS_SIZE;
    /// Size of the generic-key regset.
    pub const PAC_GENERIC_SIZE: usize = 16;
    /// NT_ARM_PAC_ENABLED_KEYS: one word of PR_PAC_AP*KEY bits.
    pub const PAC_ENABLED: usize = PAC_GENERIC + PAC_GENERIC_SIZE;
    /// Total size.
    pub const SIZE: usize = PAC_ENABLED + 8;
    /// The address keys are present.
    pub const HAS_PAC_ADDRESS: u64 = 1;
    /// The generic key is present.
    pub const HAS_PAC_GENERIC: u64 = 2;
    /// The enabled-keys word is present.
    pub const HAS_PAC_ENABLED: u64 = 4;
}

/// `svc #0`, little endian.
const SVC_0: [u8; 4] = [0x01, 0x00, 0x00, 0xd4];

impl Regs {
    /// The registers as words in kernel order.
    pub fn to_words(&self) -> [u64; REGS_WORDS] {
        let mut words = [0u64; REGS_WORDS];
        words[..31].copy_from_slice(&self.x);
        words[31] = self.sp;
        words[32] = self.pc;
        words[33] = self.pstate;
        words
    }

    /// Registers from words in kernel order.
    pub fn from_words(words: [u64; REGS_WORDS]) -> Self {
        let mut x = [0u64; 31];
        x.copy_from_slice(&words[..31]);
        Regs { x, sp: words[31], pc: words[32], pstate: words[33] }
    }
}

impl crate::Abi for Aarch64 {
    const NAME: &'static str = "aarch64";
    const CORE_MTYPE: i32 = pb::core_entry::March::Aarch64 as i32;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &SVC_0;
    /// `brk #0x45e0` as data, little endian.
    const RSEQ_SIG: u32 = 0xd428_bc00;

    /// The generic table (include/uapi/asm-generic/unistd.h); aarch64 has no
    /// `arch_prctl`.
    fn syscall_number(call: Sys) -> Option<u64> {
        Some(match call {
            Sys::Read => 63,
            Sys::Close => 57,
            Sys::Mmap => 222,
            Sys::Mprotect => 226,
            Sys::Munmap => 215,
            Sys::Brk => 214,
            Sys::RtSigaction => 134,
            Sys::RtSigprocmask => 135,
            Sys::Pread64 => 67,
            Sys::Madvise => 233,
            Sys::Getitimer => 102,
            Sys::Setitimer => 103,
            Sys::Sigaltstack => 132,
            Sys::Personality => 92,
            Sys::Prctl => 167,
            Sys::Setresuid => 147,
            Sys::Setresgid => 149,
            Sys::Setgroups => 159,
            Sys::RtSigqueueinfo => 138,
            Sys::RtTgsigqueueinfo => 240,
            Sys::Prlimit64 => 261,
            Sys::Getpid => 172,
            Sys::ExitGroup => 94,
            Sys::Mremap => 216,
            Sys::Umask => 166,
            Sys::ArchPrctl => return None,
            Sys::Rseq => 293,
            Sys::Clone3 => 435,
            Sys::SetRobustList => 99,
            Sys::SetTidAddress => 96,
            Sys::Setfsuid => 151,
            Sys::Setfsgid => 152,
            Sys::Capset => 91,
            Sys::TimerCreate => 107,
            Sys::TimerSettime => 110,
            Sys::TimerGettime => 108,
            Sys::TimerGetoverrun => 109,
            Sys::TimerDelete => 111,
            Sys::Seccomp => 277,
            Sys::PidfdOpen => 434,
            Sys::Dup3 => 24,
            Sys::Fcntl => 25,
            Sys::Pipe2 => 59,
            Sys::Vmsplice => 75,
            Sys::Shmat => 196,
            Sys::Exit => 93,
            Sys::Userfaultfd => 282,
            Sys::RtSigreturn => NR_RT_SIGRETURN,
            Sys::Write => 64,
            Sys::Socketpair => 199,
            Sys::Membarrier => 283,
            Sys::Openat => 56,
            Sys::Lseek => 62,
        })
    }

    fn ip(regs: &Regs) -> u64 {
        regs.pc
    }

    fn with_ip(regs: &Regs, ip: u64) -> Regs {
        Regs { pc: ip, ..*regs }
    }

    fn sp(regs: &Regs) -> u64 {
        regs.sp
    }

    /// Number in x8, arguments in x0..x5. Nothing needs clearing: by the time a tracer
    /// sees a thread stopped in the signal path the kernel has already forgotten its
    /// syscall (`forget_syscall`), so no restart logic applies to the injected one.
    fn syscall_regs(saved: &Regs, syscall_ip: u64, nr: u64, args: [u64; 6]) -> Regs {
        let mut out = *saved;
        out.pc = syscall_ip;
        out.x[8] = nr;
        out.x[..6].copy_from_slice(&args);
        out
    }

    fn syscall_result(regs: &Regs) -> i64 {
        regs.x[0] as i64
    }

    /// The identity: arm64's `do_signal` rewinds pc to the `svc` and puts `orig_x0`
    /// back into x0 *before* `get_signal`, "so that a debugger will see the already
    /// changed PC", and forgets the syscall. A thread seen by the tracer therefore
    /// already restarts its syscall when resumed; x8 still holds the original number,
    /// so an ERESTART_RESTARTBLOCK sleep starts over (the restart block is not
    /// reachable from a tracer on arm64, alive or restored).
    fn resume_regs(regs: &Regs, _restart_block_usable: bool) -> Regs {
        *regs
    }

    fn regs_to_bytes(regs: &Regs) -> Vec<u8> {
        regs.to_words().iter().flat_map(|w| w.to_le_bytes()).collect()
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

    /// 48-bit user addresses (4 KiB and 64 KiB pages alike; 52 bits only on request).
    const TASK_SIZE: u64 = 1 << 48;
    const STACK_RED_ZONE: u64 = 0;
    const MMAP_ARGS_IN_MEMORY: bool = false;

    fn word_bytes(word: u64) -> [u8; 8] {
        word.to_le_bytes()
    }

    fn regs_to_core(core: &mut pb::CoreEntry, regs: &ThreadRegs<Regs>, clear_tid_addr: u64) {
        core.ti_aarch64 = Some(thread_info(regs, clear_tid_addr));
    }

    fn clear_tid_address(core: &pb::CoreEntry) -> Option<u64> {
        core.ti_aarch64.as_ref().map(|t| t.clear_tid_addr).filter(|&a| a != 0)
    }

    fn regs_from_core(core: &pb::CoreEntry, _ext_template: &[u8]) -> Result<ThreadRegs<Regs>, RegsFromCoreError> {
        let info = core.ti_aarch64.as_ref().ok_or(RegsFromCoreError::MissingThreadInfo { info: INFO })?;
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

    /// The restorer leaves its status in x19 (0 done, 1 failed, 2 new thread), the
    /// failed op's address in x20 and its result in x0.
    fn restorer_outcome(regs: &Regs, program_address: u64) -> RestorerOutcome {
        match regs.x[19] {
            0 => RestorerOutcome::Done,
            2 => RestorerOutcome::NewThread,
            _ => RestorerOutcome::Failed {
                index: regs.x[20].wrapping_sub(program_address) / RestorerOp::SIZE as u64,
                result: regs.x[0] as i64,
            },
        }
    }
}

/// The image message's name, for errors.
const INFO: &str = "thread_info_aarch64";

fn word_at(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..offset + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes"))).unwrap_or(0)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    bytes.get(offset..offset + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes"))).unwrap_or(0)
}

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    if let Some(slot) = bytes.get_mut(offset..offset + value.len()) {
        slot.copy_from_slice(value);
    }
}

/// The image message for a thread's registers. (aarch64 is little endian, so the
/// extended state's words are read as such on any host.)
pub fn thread_info(regs: &ThreadRegs<Regs>, clear_tid_addr: u64) -> pb::ThreadInfoAarch64 {
    let r = &regs.gpr;
    let x = &regs.ext;
    let flags = word_at(x, ext::FLAGS);
    let pac_address_keys = (flags & ext::HAS_PAC_ADDRESS != 0).then(|| {
        let k = |i: usize| word_at(x, ext::PAC_ADDRESS + i * 8);
        pb::PacAddressKeys {
            apiakey_lo: k(0),
            apiakey_hi: k(1),
            apibkey_lo: k(2),
            apibkey_hi: k(3),
            apdakey_lo: k(4),
            apdakey_hi: k(5),
            apdbkey_lo: k(6),
            apdbkey_hi: k(7),
            pac_enabled_key: if flags & ext::HAS_PAC_ENABLED != 0 { word_at(x, ext::PAC_ENABLED) } else { 0 },
        }
    });
    let pac_generic_keys = (flags & ext::HAS_PAC_GENERIC != 0).then(|| pb::PacGenericKeys {
        apgakey_lo: word_at(x, ext::PAC_GENERIC),
        apgakey_hi: word_at(x, ext::PAC_GENERIC + 8),
    });
    pb::ThreadInfoAarch64 {
        clear_tid_addr,
        tls: word_at(x, ext::TLS),
        gpregs: pb::UserAarch64RegsEntry { regs: r.x.to_vec(), sp: r.sp, pc: r.pc, pstate: r.pstate },
        fpsimd: pb::UserAarch64FpsimdContextEntry {
            vregs: (0..64).map(|i| word_at(x, ext::FPSIMD + i * 8)).collect(),
            fpsr: u32_at(x, ext::FPSIMD + 512),
            fpcr: u32_at(x, ext::FPSIMD + 516),
        },
        pac_keys: (pac_address_keys.is_some() || pac_generic_keys.is_some())
            .then_some(pb::PacKeys { pac_address_keys, pac_generic_keys }),
    }
}

/// A thread's registers from the image.
pub fn thread_regs(info: &pb::ThreadInfoAarch64) -> Result<ThreadRegs<Regs>, RegsFromCoreError> {
    let g = &info.gpregs;
    let count = |what, found, expected| {
        (found != expected).then_some(RegsFromCoreError::WrongCount { info: INFO, what, found, expected })
    };
    if let Some(error) = count("general registers", g.regs.len(), 31).or(count("fpsimd words", info.fpsimd.vregs.len(), 64)) {
        return Err(error);
    }
    let mut gpr = Regs { sp: g.sp, pc: g.pc, pstate: g.pstate, ..Default::default() };
    gpr.x.copy_from_slice(&g.regs);
    let mut x = vec![0u8; ext::SIZE];
    for (i, word) in info.fpsimd.vregs.iter().enumerate() {
        put(&mut x, ext::FPSIMD + i * 8, &word.to_le_bytes());
    }
    put(&mut x, ext::FPSIMD + 512, &info.fpsimd.fpsr.to_le_bytes());
    put(&mut x, ext::FPSIMD + 516, &info.fpsimd.fpcr.to_le_bytes());
    put(&mut x, ext::TLS, &info.tls.to_le_bytes());
    let mut flags = 0u64;
    if let Some(keys) = info.pac_keys.as_ref() {
        if let Some(a) = keys.pac_address_keys.as_ref() {
            flags |= ext::HAS_PAC_ADDRESS | ext::HAS_PAC_ENABLED;
            let words = [
                a.apiakey_lo, a.apiakey_hi, a.apibkey_lo, a.apibkey_hi, a.apdakey_lo, a.apdakey_hi, a.apdbkey_lo,
                a.apdbkey_hi,
            ];
            for (i, word) in words.iter().enumerate() {
                put(&mut x, ext::PAC_ADDRESS + i * 8, &word.to_le_bytes());
            }
            put(&mut x, ext::PAC_ENABLED, &a.pac_enabled_key.to_le_bytes());
        }
        if let Some(g) = keys.pac_generic_keys.as_ref() {
            flags |= ext::HAS_PAC_GENERIC;
            put(&mut x, ext::PAC_GENERIC, &g.apgakey_lo.to_le_bytes());
            put(&mut x, ext::PAC_GENERIC + 8, &g.apgakey_hi.to_le_bytes());
        }
    }
    put(&mut x, ext::FLAGS, &flags.to_le_bytes());
    Ok(ThreadRegs { gpr, ext: x })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Abi;

    fn sample() -> ThreadRegs<Regs> {
        let mut words = [0u64; REGS_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = 0x1000 + i as u64;
        }
        let mut x = vec![0u8; ext::SIZE];
        for (i, b) in x.iter_mut().enumerate().take(ext::FPSIMD_SIZE - 8) {
            *b = (i * 13 % 251) as u8;
        }
        put(&mut x, ext::TLS, &0xffff_8000_1234u64.to_le_bytes());
        put(&mut x, ext::FLAGS, &(ext::HAS_PAC_ADDRESS | ext::HAS_PAC_GENERIC | ext::HAS_PAC_ENABLED).to_le_bytes());
        for i in 0..(ext::SIZE - ext::PAC_ADDRESS) {
            x[ext::PAC_ADDRESS + i] = (i * 3 + 1) as u8;
        }
        ThreadRegs { gpr: Regs::from_words(words), ext: x }
    }

    #[test]
    fn regs_bytes_round_trip() {
        let regs = sample().gpr;
        let bytes = Aarch64::regs_to_bytes(&regs);
        assert_eq!(bytes.len(), 272);
        assert_eq!(Aarch64::regs_from_bytes(&bytes), Some(regs));
        assert_eq!(Aarch64::regs_from_bytes(&bytes[..271]), None);
    }

    #[test]
    fn registers_round_trip_through_the_image() {
        let regs = sample();
        let mut core = pb::CoreEntry::default();
        Aarch64::regs_to_core(&mut core, &regs, 0xabc0);
        let info = core.ti_aarch64.as_ref().unwrap();
        assert_eq!(info.gpregs.regs[30], 0x1000 + 30);
        assert_eq!((info.gpregs.sp, info.gpregs.pc, info.gpregs.pstate), (0x101f, 0x1020, 0x1021));
        assert_eq!(info.tls, 0xffff_8000_1234);
        assert!(info.pac_keys.as_ref().unwrap().pac_generic_keys.is_some());
        assert_eq!(Aarch64::clear_tid_address(&core), Some(0xabc0));
        let back = Aarch64::regs_from_core(&core, &[]).unwrap();
        assert_eq!(back, regs);
    }

    #[test]
    fn no_pac_keys_means_none_in_the_image() {
        let mut regs = sample();
        put(&mut regs.ext, ext::FLAGS, &0u64.to_le_bytes());
        let info = thread_info(&regs, 0);
        assert!(info.pac_keys.is_none());
        let back = thread_regs(&info).unwrap();
        assert_eq!(word_at(&back.ext, ext::FLAGS), 0);
        assert_eq!(back.ext[..ext::FLAGS], regs.ext[..ext::FLAGS]);
    }

    #[test]
    fn bad_image_is_an_error() {
        let mut info = thread_info(&sample(), 0);
        info.gpregs.regs.pop();
        assert_eq!(thread_regs(&info).unwrap_err().to_string(), "thread_info_aarch64 has 30 general registers, not 31");
        assert_eq!(
            Aarch64::regs_from_core(&pb::CoreEntry::default(), &[]).unwrap_err(),
            RegsFromCoreError::MissingThreadInfo { info: INFO }
        );
    }

    #[test]
    fn syscall_regs_place_arguments() {
        let saved = Regs { pstate: 0x6000_0000, ..sample().gpr };
        let r = Aarch64::syscall_regs(&saved, 0x4000, 222, [1, 2, 3, 4, 5, 6]);
        assert_eq!((r.pc, r.x[8]), (0x4000, 222));
        assert_eq!(r.x[..6], [1, 2, 3, 4, 5, 6]);
        assert_eq!((r.x[7], r.x[9], r.sp, r.pstate), (saved.x[7], saved.x[9], saved.sp, 0x6000_0000));
        assert_eq!(Aarch64::syscall_result(&Regs { x: [(-22i64) as u64; 31], ..Default::default() }), -22);
    }

    #[test]
    fn interrupted_syscall_is_already_rewound_by_the_kernel() {
        let regs = Regs { pc: 0x1000, ..sample().gpr };
        assert_eq!(Aarch64::resume_regs(&regs, true), regs);
        assert_eq!(Aarch64::resume_regs(&regs, false), regs);
    }

    #[test]
    fn syscall_numbers_follow_the_generic_table() {
        assert_eq!(Aarch64::syscall_number(Sys::Mmap), Some(222));
        assert_eq!(Aarch64::syscall_number(Sys::Rseq), Some(293));
        assert_eq!(Aarch64::syscall_number(Sys::ArchPrctl), None);
        assert_eq!(Aarch64::SYSCALL_INSN, 0xd400_0001u32.to_le_bytes());
    }

    #[test]
    fn vdso_block_moves_with_mremap() {
        let own = [(0x7000_0000, 0x7000_2000), (0x7000_2000, 0x7000_3000)];
        let ops = Aarch64::map_vdso_ops(0x5000_0000, &own, 0x9000_0000);
        assert_eq!(ops, crate::vdso::move_vdso_block_ops(216, 0x5000_0000, &own, 0x9000_0000));
    }

    #[test]
    fn regs_bytes_are_little_endian_on_any_host() {
        let regs = Regs { pc: 0x0102_0304_0506_0708, ..Default::default() };
        let bytes = Aarch64::regs_to_bytes(&regs);
        assert_eq!(bytes[32 * 8..33 * 8], [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
    }

    #[test]
    fn restorer_outcome_reads_x19_x20_x0() {
        let mut regs = Regs::default();
        assert_eq!(Aarch64::restorer_outcome(&regs, 0x1000), RestorerOutcome::Done);
        regs.x[19] = 2;
        assert_eq!(Aarch64::restorer_outcome(&regs, 0x1000), RestorerOutcome::NewThread);
        (regs.x[19], regs.x[20], regs.x[0]) = (1, 0x1000 + 5 * 80, (-2i64) as u64);
        assert_eq!(Aarch64::restorer_outcome(&regs, 0x1000), RestorerOutcome::Failed { index: 5, result: -2 });
    }
}
