//! Live test of the parasite's way home: a forked child runs the host's restorer blob
//! on a program that blocks every signal, takes one branch and falls through two
//! (end of file, an error), and ends with the SIGRETURN op on a frame that
//! `Abi::sigreturn_frame` built from chosen register values (every GPR, the FPU and
//! vector registers) and a chosen signal mask. The frame's pc is a landing routine
//! that stores every register and reads the mask; a check function compares them with
//! the chosen values and exits with status 0, or names the first register that
//! differs on stderr and exits with 1. The parent asserts the status.
//!
//! Runs natively on x86_64 and, through `cargo xtest arch` (qemu-user), on aarch64,
//! ppc64le and s390x. qemu-user 7.2 departs from Linux in a few places, listed per
//! architecture in `QEMU_GAPS` and applied only when `CRUST_QEMU_USER` is set (the
//! xtask verb sets it): there the affected registers are not compared.
#![cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "powerpc64", target_arch = "s390x"))]
#![allow(unsafe_code)]

use crust_arch::{Abi, Host, HostArch, RestorerOp, Sys, ThreadRegs};
use std::sync::OnceLock;

#[cfg_attr(target_arch = "aarch64", path = "aarch64.rs")]
#[cfg_attr(target_arch = "powerpc64", path = "ppc64le.rs")]
#[cfg_attr(target_arch = "s390x", path = "s390x.rs")]
#[cfg_attr(target_arch = "x86_64", path = "x86_64.rs")]
mod arch;

/// The chosen signal mask: SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGCHLD,
/// SIGWINCH and two real-time signals (never SIGKILL or SIGSTOP, which the kernel
/// drops from any mask).
const CHOSEN_MASK: u64 = 1 | 1 << 9 | 1 << 11 | 1 << 13 | 1 << 14 | 1 << 16 | 1 << 27 | 1 << 36 | 1 << 49;
/// Bytes of stack the landing routine and the check function get.
const STACK_SIZE: usize = 256 * 1024;

/// What the child's check compares against, set before the fork.
pub struct Expected {
    pub regs: ThreadRegs<<HostArch as Abi>::Regs>,
    pub mask: u64,
    /// Running under qemu-user: skip the registers in `arch::QEMU_GAPS`.
    pub qemu: bool,
}

static EXPECTED: OnceLock<Expected> = OnceLock::new();

/// Called by the landing routine with the registers it stored; never returns.
#[no_mangle]
extern "C" fn crust_test_landed(landed: *const arch::Landed) -> ! {
    let expected = EXPECTED.get().expect("set before the fork");
    // SAFETY: the landing routine passes the record it has just filled, on the
    // child's own stack.
    let landed = unsafe { &*landed };
    let status = match arch::first_mismatch(landed, expected) {
        None => 0,
        Some(name) => {
            for part in [b"sigreturn check: wrong ".as_slice(), name.as_bytes(), b"\n"] {
                // SAFETY: writes a live buffer to stderr; the result does not matter.
                unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
            }
            1
        }
    };
    // SAFETY: ends the forked child at once, without running the parent's exit code.
    unsafe { libc::_exit(status) }
}

/// The same registers compared one by one: the name of the first that differs.
pub fn first<const N: usize>(checks: [(&'static str, bool); N]) -> Option<&'static str> {
    checks.iter().find(|(_, equal)| !equal).map(|(name, _)| *name)
}

fn op(call: Sys, args: [u64; 6], check: u64, expect: u64) -> RestorerOp {
    let nr = HostArch::syscall_number(call).expect("the test's syscalls exist");
    RestorerOp { nr, args, check, expect, result: 0 }
}

#[test]
fn sigreturn_op_restores_every_register_and_the_mask() {
    let qemu = std::env::var_os("CRUST_QEMU_USER").is_some();
    let mut stack = vec![0u8; STACK_SIZE];
    let stack_top = (stack.as_mut_ptr() as u64 + STACK_SIZE as u64) & !63;
    let regs = arch::chosen_regs(stack_top, arch::landing_address());
    let mut frame_memory = vec![0u8; 16 * 1024 + HostArch::SIGFRAME_ALIGN as usize];
    let align = HostArch::SIGFRAME_ALIGN;
    let frame_address = (frame_memory.as_mut_ptr() as u64 + align - 1) & !(align - 1);
    let frame = HostArch::sigreturn_frame(&regs, CHOSEN_MASK, frame_address).expect("frame builds");
    let offset = (frame_address - frame_memory.as_ptr() as u64) as usize;
    frame_memory[offset..offset + frame.bytes.len()].copy_from_slice(&frame.bytes);
    let sigreturn_sp = if qemu { frame.sp - arch::QEMU_SP_OFFSET } else { frame.sp };

    let all_signals: Box<u64> = Box::new(u64::MAX);
    let scratch: Box<[u8; 8]> = Box::new([0; 8]);
    let dev_null = std::fs::File::open("/dev/null").expect("open /dev/null");
    let dev_null_fd = std::os::fd::AsRawFd::as_raw_fd(&dev_null) as u64;
    const SIG_SETMASK: u64 = 2;
    let buffer = scratch.as_ptr() as u64;
    let mut program = vec![
        // 0: block everything, as a parasite does first.
        op(Sys::RtSigprocmask, [SIG_SETMASK, &*all_signals as *const u64 as u64, 0, 8, 0, 0], RestorerOp::CHECK_OK, 0),
        // 1: a positive result branches over op 2.
        op(Sys::Getpid, [0; 6], RestorerOp::CHECK_BRANCH_POSITIVE, 3),
        // 2: reached only by a wrong branch.
        op(Sys::ExitGroup, [101, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0),
        // 3: end of file (0) falls through...
        op(Sys::Read, [dev_null_fd, buffer, 8, 0, 0, 0], RestorerOp::CHECK_BRANCH_POSITIVE, 2),
        // 4: ...and so does an error (-EBADF), which an unsigned compare would take.
        op(Sys::Read, [u64::MAX, buffer, 8, 0, 0, 0], RestorerOp::CHECK_BRANCH_POSITIVE, 2),
        // 5: home.
        RestorerOp { nr: RestorerOp::SIGRETURN, args: [sigreturn_sp, 0, 0, 0, 0, 0], ..Default::default() },
        // 6: reached only if rt_sigreturn returned.
        op(Sys::ExitGroup, [102, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0),
        RestorerOp { nr: RestorerOp::END, ..Default::default() },
    ];
    let program_address = program.as_mut_ptr() as u64;
    let entry = HostArch::restorer_blob().as_ptr() as u64 + HostArch::restorer_entry_offset() as u64;
    if EXPECTED.set(Expected { regs, mask: CHOSEN_MASK, qemu }).is_err() {
        panic!("one live sigreturn test per process");
    }
    if qemu && !arch::QEMU_GAPS.is_empty() {
        eprintln!("sigreturn: under qemu-user, not compared: {}", arch::QEMU_GAPS.join(", "));
    }

    // SAFETY: the child only runs the restorer blob, the landing routine and the
    // check function, which neither allocate nor lock, and ends with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    if child == 0 {
        HostArch::enter_restorer(entry, program_address);
    }
    let mut status = 0;
    // SAFETY: waits for our own child, writing into a live int.
    let waited = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(waited, child, "waitpid: {}", std::io::Error::last_os_error());
    drop((stack, frame_memory, all_signals, scratch, dev_null));
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let meaning = match signal {
            libc::SIGTRAP => "a CHECK_OK op failed and trapped",
            libc::SIGSEGV => "the kernel refused the frame (or the landing faulted)",
            libc::SIGILL => "an illegal instruction in the landing routine",
            _ => "unexpected signal",
        };
        panic!("child killed by signal {signal}: {meaning}");
    }
    match libc::WEXITSTATUS(status) {
        0 => {}
        1 => panic!("registers after sigreturn differ from the frame's (see the child's stderr above)"),
        101 => panic!("op 2 ran: a CHECK_BRANCH_POSITIVE op went the wrong way"),
        102 => panic!("rt_sigreturn returned"),
        other => panic!("child exited with {other}"),
    }
}
