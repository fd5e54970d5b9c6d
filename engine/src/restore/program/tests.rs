//! Snapshots of the op program each architecture's restore would run, built from real
//! dumps: a planning change for any architecture shows in these files on any host.

use std::fmt::Write;

use crust_arch::aarch64::Aarch64;
use crust_arch::ppc64le::Ppc64le;
use crust_arch::s390x::S390x;
use crust_arch::x86_64::X86_64;
use crust_arch::{Abi, RestorerOp, Sys};

use super::{plan_process, Plan};
use crate::restore::fixtures;
use crate::restore::images::Images;
use crate::restore::memory::{segment_sizes, SegmentSizes};
use crate::restore::tree::plan_tree;

/// Every syscall the restorer may be asked to run, to name the numbers in snapshots.
const ALL_SYS: [Sys; 47] = [
    Sys::Read, Sys::Close, Sys::Mmap, Sys::Mprotect, Sys::Munmap, Sys::Brk, Sys::RtSigaction,
    Sys::RtSigprocmask, Sys::Pread64, Sys::Madvise, Sys::Getitimer, Sys::Setitimer, Sys::Sigaltstack,
    Sys::Personality, Sys::Prctl, Sys::Setresuid, Sys::Setresgid, Sys::Setgroups, Sys::RtSigqueueinfo,
    Sys::RtTgsigqueueinfo, Sys::Prlimit64, Sys::Getpid, Sys::ExitGroup, Sys::Mremap, Sys::Umask,
    Sys::ArchPrctl, Sys::Rseq, Sys::Clone3, Sys::SetRobustList, Sys::SetTidAddress, Sys::Setfsuid,
    Sys::Setfsgid, Sys::Capset, Sys::TimerCreate, Sys::TimerSettime, Sys::TimerGettime,
    Sys::TimerGetoverrun, Sys::TimerDelete, Sys::Seccomp, Sys::PidfdOpen, Sys::Dup3, Sys::Fcntl,
    Sys::Pipe2, Sys::Vmsplice, Sys::Shmat, Sys::Exit, Sys::Userfaultfd,
];

fn name_of<A: Abi>(nr: u64) -> String {
    if nr == RestorerOp::END {
        return "end".into();
    }
    ALL_SYS.iter().find(|&&s| A::syscall_number(s) == Some(nr)).map(|s| format!("{s:?}")).unwrap_or_else(|| format!("nr {nr}"))
}

fn check_of(op: &RestorerOp) -> String {
    match op.check {
        RestorerOp::CHECK_EQ => format!("== {:#x}", op.expect),
        RestorerOp::CHECK_OK => "ok".into(),
        RestorerOp::CHECK_NONE => "-".into(),
        RestorerOp::CHECK_CLONE => format!("clone {}", op.expect),
        other => format!("check {other}"),
    }
}

/// FNV-1a, to show that bytes (their order) are the same without listing them.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The plan as text, the fixture's directory written as `DIR`.
fn render<A: Abi>(images: &Images, plan: &Plan, index: usize) -> String {
    let dir = images.dir.path().display().to_string();
    let process = &images.processes[index];
    let mut out = String::new();
    let _ = writeln!(out, "{} pid {} threads {:?}", A::NAME, process.pid(), process.pstree.threads);
    let _ = writeln!(out, "area {:#x} size {:#x}, code {:#x}, ops at +{:#x}", plan.area, plan.area_size, plan.code_size, plan.ops_offset);
    for (fd, path, flags) in &plan.helpers {
        let _ = writeln!(out, "helper fd {fd}: {} flags {flags:#o}", path.display());
    }
    for (fd, id, _) in &plan.broker_helpers {
        let _ = writeln!(out, "helper fd {fd}: broker file {id}");
    }
    for premap in &plan.premap {
        let _ = writeln!(out, "premap {:#x}-{:#x} slot {:#x} inherited {} runs {:x?}", premap.start, premap.end, premap.slot, premap.inherited, premap.runs);
        if let Some((file, offset)) = &premap.file {
            let file = match file {
                crate::restore::memory::PremapFile::Path(path) => path.display().to_string().replace(&dir, "DIR"),
                crate::restore::memory::PremapFile::Broker(id) => format!("broker file {id}"),
            };
            let _ = writeln!(out, "  of {file} from {offset:#x}, parent's runs {:x?}", premap.parent_runs);
        }
    }
    let _ = writeln!(out, "ops ({} bytes, fnv {:#018x}):", plan.ops_bytes.len(), fnv(&plan.ops_bytes));
    for (index, (op, description)) in plan.ops.iter().zip(plan.descriptions.iter()).enumerate() {
        let args: Vec<String> = op.args.iter().map(|a| format!("{a:#x}")).collect();
        let logged = if plan.logged_ops.contains(&index) { " logged" } else { "" };
        let _ = writeln!(out, "  {index:3} {}({}) {}{logged}  # {description}", name_of::<A>(op.nr), args.join(", "), check_of(op));
    }
    for (thread, ops) in plan.thread_ops.iter().enumerate() {
        let _ = writeln!(out, "thread {thread}:");
        for (call, args, description) in ops {
            let args: Vec<String> = args.iter().map(|a| format!("{a:#x}")).collect();
            let _ = writeln!(out, "  {call:?}({})  # {description}", args.join(", "));
        }
    }
    let _ = writeln!(out, "data ({} bytes at {:#x}):", plan.data.len(), plan.area + plan.code_size);
    for (line, chunk) in plan.data.chunks(32).enumerate() {
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        let hex: Vec<String> = chunk.chunks(8).map(|w| w.iter().map(|b| format!("{b:02x}")).collect()).collect();
        let _ = writeln!(out, "  +{:04x} {}", line * 32, hex.join(" "));
    }
    out.replace(&dir, "DIR")
}

/// Plans every live process of a fixture for architecture `A` and renders the plans.
fn plan_fixture<A: Abi>(path: &str) -> String {
    plan_images::<A>(fixtures::load(path), path)
}

fn plan_images<A: Abi>(images: Images, path: &str) -> String {
    let layout = fixtures::layout(&images, A::TASK_SIZE);
    let tree = plan_tree::<A>(&images, &layout, false).expect("tree plan");
    let sysv = if images.processes.iter().any(|p| p.mm.vmas.iter().any(|v| v.status & crate::model::vma::SYSVIPC != 0)) {
        segment_sizes(&images).expect("segment sizes")
    } else {
        SegmentSizes::Host(Default::default())
    };
    let mut out = String::new();
    for (index, process) in images.processes.iter().enumerate() {
        if process.is_zombie() {
            continue;
        }
        let plan = plan_process::<A>(&images, index, &tree, &sysv, &layout).unwrap_or_else(|e| panic!("{path}: {e}"));
        out.push_str(&render::<A>(&images, &plan, index));
    }
    out
}

#[test]
fn x86_64_threads() {
    insta::assert_snapshot!(plan_fixture::<X86_64>("criu-fixtures/threads"));
}

#[test]
fn x86_64_pending_signal() {
    insta::assert_snapshot!(plan_fixture::<X86_64>("criu-fixtures/pending-signal"));
}

/// A child sharing its parent's private areas: both move the premapped slots into place.
#[test]
fn x86_64_parent_and_child() {
    insta::assert_snapshot!(plan_images::<X86_64>(fixtures::parent_and_child(), "parent and child"));
}

#[test]
fn aarch64_threads() {
    insta::assert_snapshot!(plan_fixture::<Aarch64>("criu-fixtures/threads"));
}

#[test]
fn ppc64le_threads() {
    insta::assert_snapshot!(plan_fixture::<Ppc64le>("criu-fixtures/threads"));
}

#[test]
fn s390x_static_tiny() {
    insta::assert_snapshot!(plan_fixture::<S390x>("fixtures/s390x-dump"));
}

/// The same images give the same program, whatever arch order they are laid out for,
/// but for the byte order of every word: s390x's arena is big-endian.
#[test]
fn arena_words_follow_the_target_byte_order() {
    let images = fixtures::load("criu-fixtures/threads");
    let mut plans = Vec::new();
    for big in [false, true] {
        let layout = fixtures::layout(&images, X86_64::TASK_SIZE);
        let tree = plan_tree::<X86_64>(&images, &layout, false).expect("tree plan");
        let sysv = SegmentSizes::Host(Default::default());
        let plan = if big {
            plan_process::<BigX86>(&images, 0, &tree, &sysv, &layout)
        } else {
            plan_process::<X86_64>(&images, 0, &tree, &sysv, &layout)
        };
        plans.push(plan.expect("plan"));
    }
    let (little, big) = (&plans[0], &plans[1]);
    assert_eq!(little.descriptions, big.descriptions);
    assert_eq!(little.data.len(), big.data.len());
    // Each op is ten words: the same numbers, the other way round.
    for (l, b) in little.ops_bytes.chunks(8).zip(big.ops_bytes.chunks(8)) {
        let mut reversed = b.to_vec();
        reversed.reverse();
        assert_eq!(l, reversed.as_slice());
    }
}

/// x86_64 with its words big-endian: only to compare byte orders.
struct BigX86;

impl Abi for BigX86 {
    const NAME: &'static str = "x86_64-big-endian";
    const CORE_MTYPE: i32 = X86_64::CORE_MTYPE;
    type Regs = <X86_64 as Abi>::Regs;
    const SYSCALL_INSN: &'static [u8] = X86_64::SYSCALL_INSN;
    const RSEQ_SIG: u32 = X86_64::RSEQ_SIG;
    const MOVES_OWN_VDSO: bool = X86_64::MOVES_OWN_VDSO;
    const TASK_SIZE: u64 = X86_64::TASK_SIZE;
    const STACK_RED_ZONE: u64 = X86_64::STACK_RED_ZONE;
    const MMAP_ARGS_IN_MEMORY: bool = X86_64::MMAP_ARGS_IN_MEMORY;
    fn syscall_number(call: Sys) -> Option<u64> {
        X86_64::syscall_number(call)
    }
    fn ip(regs: &Self::Regs) -> u64 {
        X86_64::ip(regs)
    }
    fn with_ip(regs: &Self::Regs, ip: u64) -> Self::Regs {
        X86_64::with_ip(regs, ip)
    }
    fn sp(regs: &Self::Regs) -> u64 {
        X86_64::sp(regs)
    }
    fn syscall_regs(saved: &Self::Regs, syscall_ip: u64, nr: u64, args: [u64; 6]) -> Self::Regs {
        X86_64::syscall_regs(saved, syscall_ip, nr, args)
    }
    fn syscall_result(regs: &Self::Regs) -> i64 {
        X86_64::syscall_result(regs)
    }
    fn resume_regs(regs: &Self::Regs, restart_block_usable: bool) -> Self::Regs {
        X86_64::resume_regs(regs, restart_block_usable)
    }
    fn regs_to_bytes(regs: &Self::Regs) -> Vec<u8> {
        X86_64::regs_to_bytes(regs)
    }
    fn regs_from_bytes(bytes: &[u8]) -> Option<Self::Regs> {
        X86_64::regs_from_bytes(bytes)
    }
    fn map_vdso_ops(target_block_start: u64, own_block: &[(u64, u64)], scratch: u64) -> Vec<RestorerOp> {
        X86_64::map_vdso_ops(target_block_start, own_block, scratch)
    }
    fn word_bytes(word: u64) -> [u8; 8] {
        word.to_be_bytes()
    }
    fn regs_to_core(core: &mut crust_images::pb::CoreEntry, regs: &crust_arch::ThreadRegs<Self::Regs>, clear_tid_addr: u64) {
        X86_64::regs_to_core(core, regs, clear_tid_addr)
    }
    fn clear_tid_address(core: &crust_images::pb::CoreEntry) -> Option<u64> {
        X86_64::clear_tid_address(core)
    }
    fn regs_from_core(core: &crust_images::pb::CoreEntry, ext_template: &[u8]) -> Result<crust_arch::ThreadRegs<Self::Regs>, crust_arch::RegsFromCoreError> {
        X86_64::regs_from_core(core, ext_template)
    }
    fn restorer_outcome(regs: &Self::Regs, program_address: u64) -> crust_arch::RestorerOutcome {
        X86_64::restorer_outcome(regs, program_address)
    }
    const SIGFRAME_ALIGN: u64 = X86_64::SIGFRAME_ALIGN;
    fn sigreturn_frame(regs: &crust_arch::ThreadRegs<Self::Regs>, sigmask: u64, address: u64) -> Result<crust_arch::SigreturnFrame, crust_arch::SigframeError> {
        X86_64::sigreturn_frame(regs, sigmask, address)
    }
    fn sigreturn_mismatch(expected: &crust_arch::ThreadRegs<Self::Regs>, found: &crust_arch::ThreadRegs<Self::Regs>) -> Option<String> {
        X86_64::sigreturn_mismatch(expected, found)
    }
}
