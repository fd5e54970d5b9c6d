//! x86_64: register layout, syscall numbers, syscall restart rules, and (on an x86_64
//! host) ptrace register access and the restorer blob.

mod chain;
#[cfg(target_arch = "x86_64")]
mod host;
mod image;
mod sigframe;

use crate::{RegsFromCoreError, RestorerOp, RestorerOutcome, Sys};

/// The x86_64 backend.
pub struct X86_64;

/// `rt_sigreturn`, which the restorer's SIGRETURN op runs.
pub(crate) const NR_RT_SIGRETURN: u64 = 15;

/// `struct user_regs_struct` of x86_64, the NT_PRSTATUS regset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    pub orig_ax: u64,
    pub ip: u64,
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// Number of u64 words in [`Regs`].
pub const REGS_WORDS: usize = 27;

impl Regs {
    /// The registers as words in kernel order.
    pub fn to_words(&self) -> [u64; REGS_WORDS] {
        [
            self.r15, self.r14, self.r13, self.r12, self.bp, self.bx, self.r11, self.r10,
            self.r9, self.r8, self.ax, self.cx, self.dx, self.si, self.di, self.orig_ax,
            self.ip, self.cs, self.flags, self.sp, self.ss, self.fs_base, self.gs_base,
            self.ds, self.es, self.fs, self.gs,
        ]
    }

    /// Registers from words in kernel order.
    pub fn from_words(w: [u64; REGS_WORDS]) -> Self {
        Regs {
            r15: w[0], r14: w[1], r13: w[2], r12: w[3], bp: w[4], bx: w[5], r11: w[6],
            r10: w[7], r9: w[8], r8: w[9], ax: w[10], cx: w[11], dx: w[12], si: w[13],
            di: w[14], orig_ax: w[15], ip: w[16], cs: w[17], flags: w[18], sp: w[19],
            ss: w[20], fs_base: w[21], gs_base: w[22], ds: w[23], es: w[24], fs: w[25],
            gs: w[26],
        }
    }
}

/// Kernel-internal errno values a syscall interrupted by a stop leaves in `ax`.
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
const EINTR: i64 = 4;
const NR_RESTART_SYSCALL: u64 = 219;
/// Length of the `syscall` instruction (0f 05).
const SYSCALL_INSN_LEN: u64 = 2;

impl crate::Abi for X86_64 {
    const NAME: &'static str = "x86_64";
    const CORE_MTYPE: i32 = 1;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &[0x0f, 0x05];
    const RSEQ_SIG: u32 = 0x5305_3053;

    fn syscall_number(call: Sys) -> Option<u64> {
        Some(match call {
            Sys::Read => 0,
            Sys::Close => 3,
            Sys::Mmap => 9,
            Sys::Mprotect => 10,
            Sys::Munmap => 11,
            Sys::Brk => 12,
            Sys::RtSigaction => 13,
            Sys::RtSigprocmask => 14,
            Sys::Pread64 => 17,
            Sys::Mremap => 25,
            Sys::Madvise => 28,
            Sys::Getitimer => 36,
            Sys::Setitimer => 38,
            Sys::Getpid => 39,
            Sys::Umask => 95,
            Sys::Setgroups => 116,
            Sys::Setresuid => 117,
            Sys::Setresgid => 119,
            Sys::RtSigqueueinfo => 129,
            Sys::Sigaltstack => 131,
            Sys::Personality => 135,
            Sys::Prctl => 157,
            Sys::ArchPrctl => 158,
            Sys::ExitGroup => 231,
            Sys::RtTgsigqueueinfo => 297,
            Sys::Prlimit64 => 302,
            Sys::Rseq => 334,
            Sys::Clone3 => 435,
            Sys::SetRobustList => 273,
            Sys::SetTidAddress => 218,
            Sys::Setfsuid => 122,
            Sys::Setfsgid => 123,
            Sys::Capset => 126,
            Sys::TimerCreate => 222,
            Sys::TimerSettime => 223,
            Sys::TimerGettime => 224,
            Sys::TimerGetoverrun => 225,
            Sys::TimerDelete => 226,
            Sys::Seccomp => 317,
            Sys::PidfdOpen => 434,
            Sys::Dup3 => 292,
            Sys::Fcntl => 72,
            Sys::Pipe2 => 293,
            Sys::Vmsplice => 278,
            Sys::Shmat => 30,
            Sys::Exit => 60,
            Sys::Userfaultfd => 323,
            Sys::RtSigreturn => NR_RT_SIGRETURN,
            Sys::Write => 1,
            Sys::Socketpair => 53,
            Sys::Membarrier => 324,
            Sys::Openat => 257,
            Sys::Lseek => 8,
        })
    }

    fn ip(regs: &Regs) -> u64 {
        regs.ip
    }

    fn with_ip(regs: &Regs, ip: u64) -> Regs {
        Regs { ip, ..*regs }
    }

    fn sp(regs: &Regs) -> u64 {
        regs.sp
    }

    fn syscall_regs(saved: &Regs, syscall_ip: u64, nr: u64, args: [u64; 6]) -> Regs {
        Regs {
            ip: syscall_ip,
            ax: nr,
            // No syscall in progress: the kernel must not apply restart rules.
            orig_ax: u64::MAX,
            di: args[0],
            si: args[1],
            dx: args[2],
            r10: args[3],
            r8: args[4],
            r9: args[5],
            ..*saved
        }
    }

    fn syscall_result(regs: &Regs) -> i64 {
        regs.ax as i64
    }

    /// CRIU's form: ERESTARTSYS, ERESTARTNOINTR and ERESTARTNOHAND become `ax =
    /// orig_ax` and `ip` back on the syscall instruction; ERESTART_RESTARTBLOCK the
    /// same (the syscall runs again from its own arguments, as [`Abi::resume_regs`]
    /// does across a restore; CRIU stores -EINTR there), or -EINTR when the interrupted
    /// call was already restart_syscall. `orig_ax` stays.
    fn image_regs(regs: &Regs) -> Regs {
        let mut out = <Self as crate::Abi>::resume_regs(regs, false);
        out.orig_ax = regs.orig_ax;
        out
    }

    /// `ax == orig_ax` with a syscall number there: what [`Abi::image_regs`] leaves of
    /// a restart (a finished syscall's result rarely equals its own number, and the
    /// caller checks the instruction).
    fn restart_applied(regs: &Regs) -> bool {
        (regs.orig_ax as i64) >= 0 && regs.ax == regs.orig_ax
    }

    fn resume_regs(regs: &Regs, restart_block_usable: bool) -> Regs {
        let mut out = *regs;
        out.orig_ax = u64::MAX;
        if (regs.orig_ax as i64) < 0 {
            return out;
        }
        match -(regs.ax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                out.ax = regs.orig_ax;
                out.ip = regs.ip - SYSCALL_INSN_LEN;
            }
            ERESTART_RESTARTBLOCK if restart_block_usable => {
                out.ax = NR_RESTART_SYSCALL;
                out.ip = regs.ip - SYSCALL_INSN_LEN;
            }
            ERESTART_RESTARTBLOCK if regs.orig_ax != NR_RESTART_SYSCALL => {
                // The restart block dies with the thread: run the syscall again from
                // its original arguments (a relative sleep sleeps its full time again).
                out.ax = regs.orig_ax;
                out.ip = regs.ip - SYSCALL_INSN_LEN;
            }
            ERESTART_RESTARTBLOCK => out.ax = (-EINTR) as u64,
            _ => {}
        }
        out
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

    const TASK_SIZE: u64 = 0x7fff_ffff_f000;
    const STACK_RED_ZONE: u64 = 128;
    const MMAP_ARGS_IN_MEMORY: bool = false;

    fn word_bytes(word: u64) -> [u8; 8] {
        word.to_le_bytes()
    }

    const MOVES_OWN_VDSO: bool = false;

    fn map_vdso_ops(block_start: u64, _own_block: &[(u64, u64)], _scratch: u64) -> Vec<crate::RestorerOp> {
        // ARCH_MAP_VDSO_64 takes where the block (vvar first, then text) begins.
        const ARCH_MAP_VDSO_64: u64 = 0x2003;
        vec![crate::RestorerOp {
            nr: 158,
            args: [ARCH_MAP_VDSO_64, block_start, 0, 0, 0, 0],
            check: crate::RestorerOp::CHECK_OK,
            ..Default::default()
        }]
    }

    fn regs_to_core(core: &mut crust_images::pb::CoreEntry, regs: &crate::ThreadRegs<Regs>, clear_tid_addr: u64) {
        core.thread_info = Some(image::thread_info(regs, clear_tid_addr, &xsave::host_layout()));
    }

    fn clear_tid_address(core: &crust_images::pb::CoreEntry) -> Option<u64> {
        core.thread_info.as_ref().map(|t| t.clear_tid_addr).filter(|&a| a != 0)
    }

    fn regs_from_core(
        core: &crust_images::pb::CoreEntry,
        ext_template: &[u8],
    ) -> Result<crate::ThreadRegs<Regs>, RegsFromCoreError> {
        let info = core.thread_info.as_ref().ok_or(RegsFromCoreError::MissingThreadInfo { info: "x86 thread_info" })?;
        image::thread_regs(info, ext_template, &xsave::host_layout())
    }

    const SIGFRAME_ALIGN: u64 = sigframe::ALIGN;

    fn sigreturn_frame(regs: &crate::ThreadRegs<Regs>, sigmask: u64, address: u64) -> Result<crate::SigreturnFrame, crate::SigframeError> {
        sigframe::build(regs, sigmask, address, &xsave::host_layout())
    }

    fn sigreturn_mismatch(expected: &crate::ThreadRegs<Regs>, found: &crate::ThreadRegs<Regs>) -> Option<String> {
        sigframe::mismatch(expected, found)
    }

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

    /// The restorer leaves its status in r12 (0 done, 1 failed, 2 new thread), the
    /// failed op's address in rbx and its result in rax.
    fn restorer_outcome(regs: &Regs, program_address: u64) -> RestorerOutcome {
        match regs.r12 {
            0 => RestorerOutcome::Done,
            2 => RestorerOutcome::NewThread,
            _ => RestorerOutcome::Failed {
                index: regs.bx.wrapping_sub(program_address) / RestorerOp::SIZE as u64,
                result: regs.ax as i64,
            },
        }
    }
}

/// XSAVE layout facts used to split the NT_X86_XSTATE area into image fields.
pub mod xsave {
    /// Size of the legacy FXSAVE region.
    pub const LEGACY_SIZE: usize = 512;
    /// Offset of the XSAVE header (xstate_bv, xcomp_bv).
    pub const HEADER_OFFSET: usize = 512;
    /// The extended components the image carries, by feature bit: AVX (upper ymm
    /// halves), MPX BNDREGS and BNDCSR, AVX-512 opmask, ZMM_Hi256 and Hi16_ZMM, PKRU.
    pub const BITS: [u32; 7] = [2, 3, 4, 5, 6, 7, 9];

    /// Every user component a thread's area can hold: [`BITS`] plus AMX TILECFG and
    /// TILEDATA (17, 18), which a signal frame must size for.
    pub const USER_BITS: [u32; 9] = [2, 3, 4, 5, 6, 7, 9, 17, 18];

    /// (feature bit, offset, size) of each component in the standard (non-compacted)
    /// XSAVE format.
    pub type Layout = Vec<(u32, usize, usize)>;

    /// Intel's offsets, used where the CPU cannot be asked (tests, other hosts).
    pub fn intel_layout() -> Layout {
        vec![
            (2, 576, 256),
            (3, 960, 64),
            (4, 1024, 64),
            (5, 1088, 64),
            (6, 1152, 512),
            (7, 1664, 1024),
            (9, 2688, 8),
            (17, 2752, 64),
            (18, 2816, 8192),
        ]
    }

    /// The running CPU's layout from CPUID leaf 0xD (AMD, for one, has no MPX hole).
    pub fn host_layout() -> Layout {
        #[cfg(target_arch = "x86_64")]
        {
            static LAYOUT: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
            LAYOUT
                .get_or_init(|| {
                    USER_BITS.iter()
                        .filter_map(|&bit| {
                            // CPUID exists on every x86_64 CPU and has no side effects.
                            let leaf = std::arch::x86_64::__cpuid_count(0xd, bit);
                            (leaf.eax != 0).then_some((bit, leaf.ebx as usize, leaf.eax as usize))
                        })
                        .collect()
                })
                .clone()
        }
        #[cfg(not(target_arch = "x86_64"))]
        intel_layout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Abi;

    #[test]
    fn regs_bytes_round_trip() {
        let mut words = [0u64; REGS_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = (i as u64 + 1) * 0x1111;
        }
        let regs = Regs::from_words(words);
        let bytes = X86_64::regs_to_bytes(&regs);
        assert_eq!(bytes.len(), 216);
        assert_eq!(X86_64::regs_from_bytes(&bytes), Some(regs));
        assert_eq!(X86_64::regs_from_bytes(&bytes[..100]), None);
    }

    #[test]
    fn interrupted_read_restarts() {
        let regs = Regs { orig_ax: 0, ax: (-ERESTARTSYS) as u64, ip: 0x1002, ..Default::default() };
        let out = X86_64::resume_regs(&regs, false);
        assert_eq!((out.ax, out.ip, out.orig_ax), (0, 0x1000, u64::MAX));
    }

    #[test]
    fn interrupted_nanosleep_uses_restart_block_only_while_alive() {
        let regs = Regs {
            orig_ax: 35,
            ax: (-ERESTART_RESTARTBLOCK) as u64,
            ip: 0x2002,
            ..Default::default()
        };
        assert_eq!(X86_64::resume_regs(&regs, true).ax, NR_RESTART_SYSCALL);
        let restored = X86_64::resume_regs(&regs, false);
        assert_eq!((restored.ax, restored.ip), (35, 0x2000));
    }

    #[test]
    fn images_keep_registers_with_the_restart_applied_as_criu_does() {
        let read = Regs { orig_ax: 0, ax: (-ERESTARTSYS) as u64, ip: 0x1002, ..Default::default() };
        let image = X86_64::image_regs(&read);
        assert_eq!((image.ax, image.ip, image.orig_ax), (0, 0x1000, 0));
        assert!(X86_64::restart_applied(&image));
        // A restore sets them back as they are: nothing left to restart.
        assert_eq!(X86_64::resume_regs(&image, false).ip, 0x1000);
        let sleep = Regs { orig_ax: 35, ax: (-ERESTART_RESTARTBLOCK) as u64, ip: 0x2002, ..Default::default() };
        let image = X86_64::image_regs(&sleep);
        assert_eq!((image.ax, image.ip, image.orig_ax), (35, 0x2000, 35));
        let user = Regs { orig_ax: u64::MAX, ax: 7, ip: 0x3000, ..Default::default() };
        assert_eq!(X86_64::image_regs(&user), user);
        assert!(!X86_64::restart_applied(&user));
        // A finished syscall: its result, not its number.
        assert!(!X86_64::restart_applied(&Regs { orig_ax: 1, ax: 5, ..Default::default() }));
    }

    #[test]
    fn user_space_regs_untouched() {
        let regs = Regs { orig_ax: u64::MAX, ax: 7, ip: 0x3000, ..Default::default() };
        assert_eq!(X86_64::resume_regs(&regs, false), regs);
    }

    #[test]
    fn regs_bytes_are_little_endian_on_any_host() {
        let regs = Regs { r15: 0x0102_0304_0506_0708, ip: 0x0040_1000, ..Default::default() };
        let bytes = X86_64::regs_to_bytes(&regs);
        assert_eq!(bytes[..8], [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
        assert_eq!(bytes[16 * 8..16 * 8 + 8], [0x00, 0x10, 0x40, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn restorer_outcome_reads_r12_rbx_rax() {
        let done = Regs { r12: 0, ..Default::default() };
        assert_eq!(X86_64::restorer_outcome(&done, 0x1000), RestorerOutcome::Done);
        let thread = Regs { r12: 2, ..Default::default() };
        assert_eq!(X86_64::restorer_outcome(&thread, 0x1000), RestorerOutcome::NewThread);
        let failed = Regs { r12: 1, bx: 0x1000 + 3 * 80, ax: (-17i64) as u64, ..Default::default() };
        assert_eq!(X86_64::restorer_outcome(&failed, 0x1000), RestorerOutcome::Failed { index: 3, result: -17 });
    }

    #[test]
    fn core_without_thread_info_is_a_typed_error() {
        let core = crust_images::pb::CoreEntry::default();
        let error = X86_64::regs_from_core(&core, &[0; 1024]).unwrap_err();
        assert_eq!(error, RegsFromCoreError::MissingThreadInfo { info: "x86 thread_info" });
        assert_eq!(error.to_string(), "core has no x86 thread_info");
    }

    #[test]
    fn syscall_regs_place_arguments() {
        let saved = Regs { cs: 0x33, ss: 0x2b, ..Default::default() };
        let r = X86_64::syscall_regs(&saved, 0x4000, 9, [1, 2, 3, 4, 5, 6]);
        assert_eq!((r.ip, r.ax, r.di, r.si, r.dx, r.r10, r.r8, r.r9), (0x4000, 9, 1, 2, 3, 4, 5, 6));
        assert_eq!((r.cs, r.ss, r.orig_ax), (0x33, 0x2b, u64::MAX));
    }
}
