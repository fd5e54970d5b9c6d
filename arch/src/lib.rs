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
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "powerpc64", target_arch = "s390x"))]
mod regset;
pub mod ppc64le;
pub mod s390x;
pub mod x86_64;

use std::fmt::Debug;

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
    fn regs_from_core(core: &crust_images::pb::CoreEntry, ext_template: &[u8]) -> Result<ThreadRegs<Self::Regs>, String>;
}

/// One operation of the restorer's syscall program: run syscall `nr` with `args`, then
/// check its result, store it, and go on; a check that fails stops the program.
///
/// The layout is shared with the restorer blobs of every architecture: ten u64 words.
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
    /// Number that ends the program.
    pub const END: u64 = u64::MAX;
    /// The result must equal `expect`.
    pub const CHECK_EQ: u64 = 0;
    /// The result must not be an error (-4095..-1).
    pub const CHECK_OK: u64 = 1;
    /// The result is not checked.
    pub const CHECK_NONE: u64 = 2;
    /// A clone: in the new thread (result 0) trap at once as [`RestorerOutcome::NewThread`];
    /// in the caller the result must equal `expect` (the new thread's tid).
    pub const CHECK_CLONE: u64 = 3;
    /// Size of one op in bytes.
    pub const SIZE: usize = 80;

    /// The op as bytes in native order, for copying into the restorer's area.
    pub fn to_ne_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let words = [
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
        ];
        for (index, word) in words.iter().enumerate() {
            out[index * 8..index * 8 + 8].copy_from_slice(&word.to_ne_bytes());
        }
        out
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
    /// Reads how the restorer program stopped from its trapped thread's registers.
    fn restorer_outcome(regs: &Self::Regs, program_address: u64) -> RestorerOutcome;
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
