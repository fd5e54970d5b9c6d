//! The contract between the engine and each CPU architecture.
//!
//! Two traits, split by *where code can run*:
//! - [`Abi`]: pure facts and conversions (register layouts, syscall numbers, how an
//!   injected syscall is set up, how an interrupted syscall restarts). Every backend
//!   implements it and it compiles and is unit-tested on any host.
//! - [`Host`]: talks to live threads of the running architecture (read and write
//!   register sets with ptrace, the restorer blob). Only the host architecture implements
//!   it, and [`HostArch`] names that implementation: it is the one `cfg(target_arch)`
//!   the engine sees.
#![deny(unsafe_code)]

pub mod aarch64;
pub mod chain;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "powerpc64", target_arch = "s390x"))]
mod regset;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "powerpc64", target_arch = "s390x"))]
mod restorer;
pub mod ppc64le;
pub mod s390x;
pub mod sigframe;
pub mod vdso;
pub mod x86_64;

use std::fmt::Debug;

pub use chain::{ChainPoints, Chained, ReturnPath};
pub use sigframe::{SigframeError, SigreturnFrame};

/// The syscalls the engine injects or asks the restorer to run, by meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sys {
    Read,
    Close,
    Mmap,
    Mprotect,
    Munmap,
    Brk,
    RtSigaction,
    RtSigprocmask,
    Pread64,
    Madvise,
    Getitimer,
    Setitimer,
    Sigaltstack,
    Personality,
    Prctl,
    Setresuid,
    Setresgid,
    Setgroups,
    RtSigqueueinfo,
    RtTgsigqueueinfo,
    Prlimit64,
    Getpid,
    ExitGroup,
    Mremap,
    Umask,
    /// x86_64 only: `arch_prctl`, used for ARCH_MAP_VDSO_64.
    ArchPrctl,
    Rseq,
    Clone3,
    SetRobustList,
    SetTidAddress,
    Setfsuid,
    Setfsgid,
    Capset,
    TimerCreate,
    TimerSettime,
    TimerGettime,
    TimerGetoverrun,
    TimerDelete,
    Seccomp,
    PidfdOpen,
    Dup3,
    Fcntl,
    Pipe2,
    Vmsplice,
    Shmat,
    /// `exit`: ends the calling thread only.
    Exit,
    /// `userfaultfd(2)`: the copy-on-write snapshot of `dump --leave-running`.
    Userfaultfd,
    /// `rt_sigreturn`: the parasite's return to the thread's own context (the
    /// restorer's [`RestorerOp::SIGRETURN`] op runs it).
    RtSigreturn,
    /// `write`: the parasite's replies on its control socket.
    Write,
    /// `socketpair`: the parasite's control channel.
    Socketpair,
    /// `membarrier`: the process's registrations (MEMBARRIER_CMD_GET_REGISTRATIONS).
    Membarrier,
    /// `openat(2)`: a restored process opens a file under /proc/PID of the tree.
    Openat,
    Lseek,
}

/// Pure ABI of one architecture: compiles and is tested on every host.
pub trait Abi {
    /// Name as used on the command line and in reports (`x86_64`, `aarch64`, ...).
    const NAME: &'static str;
    /// CRIU's `seize_task_state`-independent machine type (`CoreEntry.mtype`).
    const CORE_MTYPE: i32;
    /// The general-purpose register set, as the kernel's NT_PRSTATUS regset.
    type Regs: Copy + Debug + Default + PartialEq;
    /// The bytes of the syscall instruction (searched for in the target's vDSO).
    const SYSCALL_INSN: &'static [u8];
    /// glibc's `RSEQ_SIG` here: the signature its rseq registration carries, which
    /// unregistering it (crust's own, before the restorer) must repeat.
    const RSEQ_SIG: u32;

    /// The number of a syscall, `None` where the architecture lacks it.
    fn syscall_number(call: Sys) -> Option<u64>;
    /// Instruction pointer.
    fn ip(regs: &Self::Regs) -> u64;
    /// The same registers with the instruction pointer at `ip` (a thread caught inside
    /// an rseq critical section resumes at the section's abort handler).
    fn with_ip(regs: &Self::Regs, ip: u64) -> Self::Regs;
    /// Stack pointer.
    fn sp(regs: &Self::Regs) -> u64;
    /// Registers that run syscall `nr` with `args` from the instruction at `syscall_ip`,
    /// starting from `saved` (so segment and flag registers stay valid).
    fn syscall_regs(saved: &Self::Regs, syscall_ip: u64, nr: u64, args: [u64; 6]) -> Self::Regs;
    /// The return value of a syscall that just finished.
    fn syscall_result(regs: &Self::Regs) -> i64;
    /// Rewrites registers caught inside an interrupted syscall so that, resumed without a
    /// signal handler running, the thread restarts the syscall exactly as the kernel would.
    /// `restart_block_usable` says whether the thread's kernel restart block survives (it
    /// does while the thread lives; it does not across a restore, where the original
    /// syscall is re-executed instead).
    fn resume_regs(regs: &Self::Regs, restart_block_usable: bool) -> Self::Regs;
    /// Registers as a dump image keeps them (CRIU's convention): a thread caught
    /// inside an interrupted syscall is stored with the restart already applied, so that
    /// a restore that only sets the registers back (CRIU's) resumes it correctly. The
    /// default keeps them as they are (architectures whose kernel applies the restart
    /// before the ptrace stop).
    fn image_regs(regs: &Self::Regs) -> Self::Regs {
        *regs
    }
    /// Whether registers read from an image may be a restart applied at dump time
    /// ([`Abi::image_regs`]): the caller still checks that the instruction at the
    /// pointer is [`Abi::SYSCALL_INSN`] before it re-enters the syscall as a restart.
    fn restart_applied(_regs: &Self::Regs) -> bool {
        false
    }
    /// Registers as raw bytes in the kernel's layout (NT_PRSTATUS).
    fn regs_to_bytes(regs: &Self::Regs) -> Vec<u8>;
    /// Registers from the kernel's layout.
    fn regs_from_bytes(bytes: &[u8]) -> Option<Self::Regs>;
    /// Whether the restorer keeps crust's own vDSO block (vvar pages and vDSO text)
    /// mapped and moves it into place, for architectures without a "map the vDSO here"
    /// call; otherwise the block is unmapped with everything else and mapped anew.
    const MOVES_OWN_VDSO: bool;
    /// Restorer ops that put the kernel's vDSO block at `target_block_start` (the
    /// engine checked that this kernel lays the block out as the image recorded).
    /// `own_block` lists crust's own vvar/vDSO areas (still mapped when
    /// [`Abi::MOVES_OWN_VDSO`]); `scratch` is a free range as large as the block, for
    /// moves whose source and destination overlap.
    fn map_vdso_ops(target_block_start: u64, own_block: &[(u64, u64)], scratch: u64) -> Vec<RestorerOp>;
    /// Highest user address + 1 (TASK_SIZE) assumed for the restorer's unmap.
    const TASK_SIZE: u64;
    /// Bytes below the stack pointer that still belong to the interrupted code (the
    /// ABI's red zone): scratch memory put on a thread's stack goes below them.
    const STACK_RED_ZONE: u64;
    /// Whether `mmap` takes a single pointer to a block of its six arguments (s390x's
    /// `sys_old_mmap`) instead of six registers; a remote mmap then first writes the
    /// block into the target (see [`Abi::mmap_arg_block`]).
    const MMAP_ARGS_IN_MEMORY: bool;
    /// The argument block of `mmap` where [`Abi::MMAP_ARGS_IN_MEMORY`]: six native
    /// words (`struct mmap_arg_struct`), in the target's byte order.
    fn mmap_arg_block(args: [u64; 6]) -> Vec<u8> {
        args.iter().flat_map(|word| Self::word_bytes(*word)).collect()
    }
    /// A 64-bit word in the architecture's byte order.
    fn word_bytes(word: u64) -> [u8; 8];
    /// `_IOW(kind, nr, size)`: an ioctl request that passes `size` bytes to the kernel.
    /// The direction bits differ per architecture (bit 30 here, bit 31 on powerpc).
    fn ioctl_write(kind: u8, nr: u8, size: u16) -> u64 {
        const IOC_WRITE: u64 = 1;
        (IOC_WRITE << 30) | (u64::from(size) << 16) | (u64::from(kind) << 8) | u64::from(nr)
    }
    /// `_IOWR(kind, nr, size)`: an ioctl request that passes `size` bytes to the kernel
    /// and back (the userfaultfd requests). Direction bits 30-31 here, 29-31 on powerpc.
    fn ioctl_read_write(kind: u8, nr: u8, size: u16) -> u64 {
        const IOC_READ_WRITE: u64 = 3;
        (IOC_READ_WRITE << 30) | (u64::from(size) << 16) | (u64::from(kind) << 8) | u64::from(nr)
    }
    /// Puts a thread's registers into the image's per-arch thread info of `core`.
    fn regs_to_core(core: &mut crust_images::pb::CoreEntry, regs: &ThreadRegs<Self::Regs>, clear_tid_addr: u64);
    /// The thread's clear_child_tid address recorded in `core`, if any.
    fn clear_tid_address(core: &crust_images::pb::CoreEntry) -> Option<u64>;
    /// Reads a thread's registers back from `core`; `ext_template` is the host's own
    /// extended-state area (its size and layout), into which the image's parts go.
    fn regs_from_core(core: &crust_images::pb::CoreEntry, ext_template: &[u8]) -> Result<ThreadRegs<Self::Regs>, RegsFromCoreError>;
    /// Reads how the restorer program stopped from its trapped thread's registers
    /// (`program_address`: where the op program starts in the thread's memory).
    fn restorer_outcome(regs: &Self::Regs, program_address: u64) -> RestorerOutcome;
    /// Alignment the address of a sigreturn frame must have.
    const SIGFRAME_ALIGN: u64;
    /// The kernel's rt_sigreturn frame (`struct rt_sigframe`) that puts a thread back to
    /// `regs` (GPRs and the extended state as [`Host::read_regs`] reads them) with
    /// signal mask `sigmask`, built to be written at `address` (a multiple of
    /// [`Abi::SIGFRAME_ALIGN`]), in the target's byte order, with the stack pointer the
    /// thread must hold when it runs rt_sigreturn. Each backend's `sigframe.rs` says
    /// what the frame restores and what rt_sigreturn cannot put back.
    fn sigreturn_frame(regs: &ThreadRegs<Self::Regs>, sigmask: u64, address: u64) -> Result<SigreturnFrame, SigframeError>;
    /// After rt_sigreturn on a frame [`Abi::sigreturn_frame`] built from `expected`,
    /// with the thread's registers `found` read at its next ptrace stop that is not a
    /// syscall stop: the first register that differs, named, among every register the
    /// thread can see, except the few the kernel keeps for itself (each backend's
    /// `sigframe.rs` lists them: they are not in the frame and a parasite never changes
    /// them); `None` when the thread is back exactly. A mismatch is a bug in the frame.
    fn sigreturn_mismatch(expected: &ThreadRegs<Self::Regs>, found: &ThreadRegs<Self::Regs>) -> Option<String>;
    /// Whether a thread's seized registers, written back by ptrace after an
    /// rt_sigreturn, make the kernel restart the syscall it was seized in. Not on
    /// ppc64le: rt_sigreturn sets the trap word's "no restart" flag, which ptrace cannot
    /// clear (`set_trap` keeps TRAP_FLAGS_MASK), so the thread would return
    /// -ERESTARTSYS to its code; there it keeps the frame's registers instead, which run
    /// its syscall instruction again.
    const SEIZED_REGS_RESTART_AFTER_SIGRETURN: bool = true;
    /// The alignment every instruction has (1 on x86_64): a byte sequence searched for
    /// in code ([`Abi::SIGRETURN_TRAMPOLINES`], [`Abi::SYSCALL_INSN`] for a chain) is an
    /// instruction only at such an address.
    const CODE_ALIGN: u64 = 1;
    /// Byte sequences that run rt_sigreturn when a thread enters them at their first
    /// byte, whatever surrounds them (searched for in the target's executable
    /// mappings, for [`chain`]ed syscalls). Empty where the backend chains no syscall.
    const SIGRETURN_TRAMPOLINES: &'static [&'static [u8]] = &[];
    /// How the code right after a syscall instruction (`code`: its bytes) returns, where
    /// this backend can follow it for a [`chain`]ed syscall; `None` otherwise.
    fn return_path(_code: &[u8]) -> Option<ReturnPath> {
        None
    }
    /// A [`chain`]ed syscall `nr` with `args` from `points.syscall_ip`, starting from
    /// `saved`: the registers, and the stack memory holding `frame` (built for
    /// `frame_address`, [`chain::frame_address`] below the thread's stack pointer,
    /// [`ReturnPath::below_frame`] bytes above anything else the path reads) that takes
    /// the thread home when it is left alone. `None` where the backend has no chains.
    fn chained_syscall(
        _saved: &Self::Regs,
        _points: &ChainPoints,
        _nr: u64,
        _args: [u64; 6],
        _frame: &SigreturnFrame,
        _frame_address: u64,
    ) -> Option<Chained<Self::Regs>> {
        None
    }
}

/// One operation of the restorer's syscall program: run syscall `nr` with `args`, then
/// store its result, check it, and go on; a check that fails stops the program.
///
/// The same interpreter runs the restore program (which ends in [`RestorerOp::END`] and
/// traps for the tracer) and a dump-time parasite program, which must be safe to run to
/// its end with no tracer at all: it loops with [`RestorerOp::CHECK_BRANCH_POSITIVE`]
/// and ends in [`RestorerOp::SIGRETURN`], and uses only the checks that never trap
/// ([`RestorerOp::CHECK_NONE`] and the branch), since a trap kills an untraced thread.
///
/// The layout is shared with the restorer blobs of every architecture: ten u64 words,
/// in the target's byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestorerOp {
    /// Syscall number; [`RestorerOp::END`] ends the program.
    pub nr: u64,
    /// The six arguments.
    pub args: [u64; 6],
    /// How the result is checked: one of the `CHECK_*` constants.
    pub check: u64,
    /// The value compared against with [`RestorerOp::CHECK_EQ`].
    pub expect: u64,
    /// Written by the restorer: the syscall's return value.
    pub result: u64,
}

impl RestorerOp {
    /// Number that ends the program: the interpreter traps for the tracer.
    pub const END: u64 = u64::MAX;
    /// Number of the op that leaves the program for good: the interpreter sets the
    /// stack pointer to `args[0]` and runs rt_sigreturn, which takes the thread back to
    /// the context in the frame there ([`Abi::sigreturn_frame`] builds it and gives the
    /// stack pointer). It does not return; should the kernel refuse the frame, it kills
    /// the thread with SIGSEGV (and if rt_sigreturn ever returned, the op would count as
    /// failed).
    pub const SIGRETURN: u64 = u64::MAX - 1;
    /// The result must equal `expect`.
    pub const CHECK_EQ: u64 = 0;
    /// The result must not be an error (-4095..-1).
    pub const CHECK_OK: u64 = 1;
    /// The result is not checked.
    pub const CHECK_NONE: u64 = 2;
    /// A clone: in the new thread (result 0) trap at once as [`RestorerOutcome::NewThread`];
    /// in the caller the result must equal `expect` (the new thread's tid).
    pub const CHECK_CLONE: u64 = 3;
    /// A branch: if the result, as a signed number, is greater than zero, the program
    /// goes on at op index `expect` (counted from the program's start); otherwise at the
    /// next op. A parasite's `read` of its control socket uses it to loop over commands
    /// and to fall through to its [`RestorerOp::SIGRETURN`] epilogue on end of file or
    /// error; a `write` reply uses it to jump back to that read.
    pub const CHECK_BRANCH_POSITIVE: u64 = 4;
    /// Size of one op in bytes.
    pub const SIZE: usize = 80;

    /// The op as bytes in native order, for copying into the host's own restorer area.
    pub fn to_ne_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        for (index, word) in self.words().iter().enumerate() {
            out[index * 8..index * 8 + 8].copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// The op as bytes in architecture `A`'s byte order, for a program built on one
    /// host for any architecture.
    pub fn to_bytes<A: Abi>(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        for (index, word) in self.words().iter().enumerate() {
            out[index * 8..index * 8 + 8].copy_from_slice(&A::word_bytes(*word));
        }
        out
    }

    /// The ten words in layout order.
    fn words(&self) -> [u64; 10] {
        [
            self.nr,
            self.args[0],
            self.args[1],
            self.args[2],
            self.args[3],
            self.args[4],
            self.args[5],
            self.check,
            self.expect,
            self.result,
        ]
    }
}

/// How the restorer program stopped, as read from the stopped thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestorerOutcome {
    /// Every op ran and passed its check.
    Done,
    /// Op number `index` failed its check with `result`.
    Failed { index: u64, result: i64 },
    /// A thread created by a [`RestorerOp::CHECK_CLONE`] op, trapped at its first step.
    NewThread,
}

/// Why a thread's registers could not be read back from its image
/// ([`Abi::regs_from_core`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegsFromCoreError {
    /// The core carries no thread info for this architecture.
    #[error("core has no {info}")]
    MissingThreadInfo { info: &'static str },
    /// A register array of the thread info has the wrong length.
    #[error("{info} has {found} {what}, not {expected}")]
    WrongCount { info: &'static str, what: &'static str, found: usize, expected: usize },
    /// Only part of a register set that comes in parts is present.
    #[error("{info} has an incomplete {what}")]
    Incomplete { info: &'static str, what: &'static str },
    /// State the image carries that crust cannot put back.
    #[error("{info} has {what}, which is not supported")]
    Unsupported { info: &'static str, what: &'static str },
    /// The host's XSAVE area is smaller than the legacy FXSAVE region.
    #[error("host XSAVE area is only {len} bytes")]
    XsaveAreaTooSmall { len: usize },
    /// The image has an XSAVE component the host's area has no room for.
    #[error("image has XSAVE feature {bit} (xstate_bv {xstate_bv:#x}) that this CPU's {len}-byte XSAVE area lacks")]
    XsaveFeatureMissing { bit: u32, xstate_bv: u64, len: usize },
}

/// Errors of host register access.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{op} tid {tid}: {source}")]
    Ptrace { op: &'static str, tid: i32, source: std::io::Error },
    #[error("architecture {0} is not supported as a host yet")]
    Unsupported(&'static str),
}

/// The complete user-visible CPU state of one thread, as the host reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadRegs<R> {
    /// General-purpose registers.
    pub gpr: R,
    /// The extended state (x86: the XSAVE area as NT_X86_XSTATE gives it).
    pub ext: Vec<u8>,
}

/// Live-thread operations of the running architecture.
pub trait Host: Abi {
    /// Reads a stopped tracee's registers (PTRACE_GETREGSET).
    fn read_regs(tid: i32) -> Result<ThreadRegs<Self::Regs>, HostError>;
    /// Writes a stopped tracee's general-purpose registers.
    fn write_gpr(tid: i32, regs: &Self::Regs) -> Result<(), HostError>;
    /// Writes a stopped tracee's extended state.
    fn write_ext(tid: i32, ext: &[u8]) -> Result<(), HostError>;
    /// The restorer blob: position-independent code that runs a program of
    /// [`RestorerOp`]s and traps.
    fn restorer_blob() -> &'static [u8];
    /// Offset in the blob of its entry point, called with the op program's address as
    /// the first argument register; needs no stack.
    fn restorer_entry_offset() -> usize;
    /// Offset in the blob of a lone syscall instruction the tracer can use to inject
    /// a syscall into the restored thread.
    fn restorer_syscall_offset() -> usize;
    /// The calling thread's thread pointer (x86_64: the fs base).
    fn thread_pointer() -> u64;
    /// Jumps to the restorer at `entry` with `program` as its argument; never returns.
    fn enter_restorer(entry: u64, program: u64) -> !;
}

/// The host architecture's backend: the only `cfg(target_arch)` the engine sees.
#[cfg(target_arch = "x86_64")]
pub type HostArch = x86_64::X86_64;
/// The host architecture's backend: the only `cfg(target_arch)` the engine sees.
#[cfg(target_arch = "aarch64")]
pub type HostArch = aarch64::Aarch64;
/// The host architecture's backend: the only `cfg(target_arch)` the engine sees.
#[cfg(target_arch = "powerpc64")]
pub type HostArch = ppc64le::Ppc64le;
/// The host architecture's backend: the only `cfg(target_arch)` the engine sees.
#[cfg(target_arch = "s390x")]
pub type HostArch = s390x::S390x;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_are_written_in_the_targets_byte_order() {
        let op = RestorerOp { nr: 0x0102_0304_0506_0708, check: RestorerOp::CHECK_BRANCH_POSITIVE, expect: 3, ..Default::default() };
        let little = op.to_bytes::<x86_64::X86_64>();
        let big = op.to_bytes::<s390x::S390x>();
        assert_eq!(little[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(big[..8], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((little[56], big[63], little[64], big[71]), (4, 4, 3, 3));
        assert_eq!(op.to_bytes::<aarch64::Aarch64>(), op.to_bytes::<ppc64le::Ppc64le>());
    }

    #[test]
    fn special_op_numbers_and_checks_are_distinct() {
        assert_eq!((RestorerOp::END, RestorerOp::SIGRETURN), (u64::MAX, u64::MAX - 1));
        let checks = [
            RestorerOp::CHECK_EQ,
            RestorerOp::CHECK_OK,
            RestorerOp::CHECK_NONE,
            RestorerOp::CHECK_CLONE,
            RestorerOp::CHECK_BRANCH_POSITIVE,
        ];
        assert_eq!(checks, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn parasite_syscalls_exist_everywhere() {
        let numbers = |sys| {
            [
                x86_64::X86_64::syscall_number(sys),
                aarch64::Aarch64::syscall_number(sys),
                ppc64le::Ppc64le::syscall_number(sys),
                s390x::S390x::syscall_number(sys),
            ]
        };
        assert_eq!(numbers(Sys::RtSigreturn), [Some(15), Some(139), Some(172), Some(173)]);
        assert_eq!(numbers(Sys::Write), [Some(1), Some(64), Some(4), Some(4)]);
        assert_eq!(numbers(Sys::Socketpair), [Some(53), Some(199), Some(333), Some(360)]);
        assert_eq!(numbers(Sys::Openat), [Some(257), Some(56), Some(286), Some(288)]);
        assert_eq!(numbers(Sys::Lseek), [Some(8), Some(62), Some(19), Some(19)]);
        assert_eq!(numbers(Sys::Membarrier), [Some(324), Some(283), Some(365), Some(356)]);
    }
}
