//! The dump-time parasite: the restorer's op interpreter run inside a stopped process,
//! so that crust can die at any moment without harming it.
//!
//! Every frozen thread is, at every moment, either in its own state (its registers and
//! mask as seized) or in a parasite state from which it goes back to its own by itself:
//! each program ends in `SIGRETURN` on an rt_sigreturn frame of the thread's own
//! registers and mask ([`crust_arch::Abi::sigreturn_frame`]), reached when crust's end of
//! the control socket closes, as it does when crust dies. The exceptions are two
//! windows of one injected syscall each, in the process's first thread: the `mmap` of
//! the parasite's area and its `munmap` ([`Stats`] measures them).
//!
//! A process's parasite ([`Parasite`]):
//! 1. window one: `mmap` of the area, injected from the vDSO's syscall instruction
//!    (`infect.rs`); the thread's own registers are put back at once;
//! 2. the restorer blob, the leader's program and its frame are written into the area
//!    through `/proc/PID/mem`; one PTRACE_SETREGSET points the thread at the blob (the
//!    atomic switch: from here a detached thread runs home by itself);
//! 3. the program makes its control socket (crust takes its end with pidfd_getfd at the
//!    socketpair's syscall exit, the only syscall stops of the start), then runs under
//!    PTRACE_CONT: every batch of syscalls crust sends is one round trip;
//! 4. other threads run programs of their own ([`Parasite::run_in_threads`]), up to
//!    [`program::MAX_SLOTS`] at once, each in its own slot with its own frame;
//! 5. to take a thread home crust interrupts it where it waits and steps it through the
//!    rest of its program to its rt_sigreturn, then checks that its registers (general
//!    and extended) and mask are exactly its own ([`crust_arch::Abi::sigreturn_mismatch`]):
//!    every dump tests the frame code. A thread whose syscall restart needs its kernel
//!    restart block (a relative sleep, which rt_sigreturn would forget) goes home by
//!    ptrace instead: its mask and registers put back where it waits;
//! 6. window two: `munmap` of the area, injected like the `mmap`.
//!
//! A thread back home sits in a PTRACE_EVENT_STOP with its seized registers: released
//! from there, the kernel restarts its interrupted syscall exactly as it would have
//! without the dump. Signals: PTRACE_SETSIGMASK blocks them only while the thread is in
//! a parasite state or inside a window (where the frame, or the end of the window, puts
//! its own mask back), so a pending signal waits for the release as it does in a thread
//! that is only stopped; each program blocks them itself too, for the moment between
//! the switch and that mask.
//!
//! Every fd the parasite makes in the target is closed by its epilogue, which crust
//! rewrites (while the leader waits for a batch) before each batch that makes fds: the
//! fds a call will get are predicted (the lowest free numbers of a frozen fd table) and
//! checked after it.

pub(crate) mod guardian;
pub(crate) mod program;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crust_arch::{chain, Abi, ChainPoints, Host, HostArch, RestorerOp, SigframeError, Sys, ThreadRegs};

use crate::infect::{InfectError, RemoteThread};
use crate::procfs::MapsLine;
use crate::sys;

pub(crate) use program::{Arg, Batch, Buffer, Call};
use program::{Layout, ProgramError, Reply};

type Regs = <HostArch as Abi>::Regs;

/// How long crust waits for a parasite's answer before it gives up (the calls in a
/// batch never block; a thread that does not answer is stopped or gone).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How often crust looks at the threads while it waits for an answer.
const WATCH_MS: i32 = 20;

/// A thread's own state, as seized: what the parasite takes it back to.
#[derive(Clone, Debug)]
pub(crate) struct Home {
    pub(crate) tid: i32,
    pub(crate) regs: ThreadRegs<Regs>,
    pub(crate) sigmask: u64,
}

/// Why the parasite failed. Every thread is taken home before the error is returned.
#[derive(Debug, thiserror::Error)]
pub enum ParasiteError {
    #[error("tid {tid}: {what}: {source}")]
    Io { tid: i32, what: String, source: io::Error },
    #[error("tid {tid}: {source}")]
    Arch { tid: i32, source: crust_arch::HostError },
    #[error(transparent)]
    Infect(#[from] InfectError),
    #[error("tid {tid}: remote {call:?} failed: errno {errno}")]
    Window { tid: i32, call: Sys, errno: i64 },
    #[error("tid {tid}: rt_sigreturn frame: {source}")]
    Frame { tid: i32, source: SigframeError },
    #[error("tid {tid}: parasite program: {source}")]
    Program { tid: i32, source: ProgramError },
    #[error("tid {tid}: after the parasite's rt_sigreturn the thread's {what} is not its own (a bug in the frame; its registers were put back)")]
    Mismatch { tid: i32, what: String },
    #[error("tid {tid}: unexpected stop (signal {signal}, event {event}) in the parasite")]
    UnexpectedStop { tid: i32, signal: i32, event: i32 },
    #[error("tid {tid}: exited while in the parasite")]
    Exited { tid: i32 },
    #[error("tid {tid}: the parasite did not answer within {} s", ANSWER_TIMEOUT.as_secs())]
    Timeout { tid: i32 },
    #[error("tid {tid}: the parasite's control socket closed")]
    Closed { tid: i32 },
    #[error("tid {tid}: the parasite's {what} got fds {found:?}, not the expected {expected:?}")]
    FdPrediction { tid: i32, what: &'static str, expected: Vec<i32>, found: Vec<i32> },
    #[error("tid {tid}: a chained {call:?} did not reach its rt_sigreturn trampoline (stopped at {ip:#x}; the thread was put back)")]
    Chain { tid: i32, call: Sys, ip: u64 },
    #[error("tid {tid}: a reply of {len} bytes matches no program")]
    StrayReply { tid: i32, len: usize },
}

/// Figures of one process's parasite.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    /// How long window one lasted: from the first change to the leader's registers or
    /// mask for the `mmap` to its own registers and mask being back.
    pub(crate) map_window: Duration,
    /// The same for window two (the `munmap`).
    pub(crate) unmap_window: Duration,
    /// Batches sent to the leader.
    pub(crate) round_trips: u32,
    /// Threads that ran a program of their own (the leader not counted).
    pub(crate) threads: u32,
    /// Both windows were chained: a thread let go inside them went home by itself.
    pub(crate) chained: bool,
}

/// The parasite of one process, from window one to window two.
pub(crate) struct Parasite {
    pid: i32,
    leader: Home,
    mem: File,
    route: Route,
    /// The guardian's pipe: told of the area's mmap and munmap.
    watch: guardian::Watch,
    area: u64,
    layout: Layout,
    /// crust's end of the control socket, and the target's.
    ctl: Option<OwnedFd>,
    target_ctl: i32,
    /// Fd numbers in use in the target's table.
    used_fds: BTreeSet<i32>,
    /// Fds the parasite made and has open in the target (the epilogue closes them).
    open_fds: Vec<i32>,
    leader_frame_sp: u64,
    /// The leader runs its program (else it is home).
    leader_inside: bool,
    /// Threads whose stop crust has already waited for (while watching), by tid.
    stopped: BTreeMap<i32, (i32, i32)>,
    stats: Stats,
    cured: bool,
}

fn io_error(tid: i32, what: impl Into<String>) -> impl FnOnce(io::Error) -> ParasiteError {
    let what = what.into();
    move |source| ParasiteError::Io { tid, what, source }
}

fn arch_error(tid: i32) -> impl FnOnce(crust_arch::HostError) -> ParasiteError {
    move |source| ParasiteError::Arch { tid, source }
}

impl Parasite {
    /// Maps the parasite's area in `leader` (window one, from the syscall instruction at
    /// `syscall_ip`) and starts its program; `threads`: how many other threads will run
    /// programs of their own; `maps`: the process's mappings, read since it stopped.
    pub(crate) fn start(pid: i32, leader: Home, route: Route, watch: guardian::Watch, threads: usize, maps: &[MapsLine]) -> Result<Parasite, ParasiteError> {
        let tid = leader.tid;
        let mem = File::options().read(true).write(true).open(format!("/proc/{pid}/mem")).map_err(io_error(tid, "open /proc/PID/mem"))?;
        let used_fds = open_fds(pid).map_err(io_error(tid, "list /proc/PID/fd"))?;
        let align = HostArch::SIGFRAME_ALIGN;
        let frame_len = HostArch::sigreturn_frame(&frame_regs(&leader), leader.sigmask, align)
            .map_err(|source| ParasiteError::Frame { tid, source })?
            .bytes
            .len() as u64;
        let page = sys::page_size();
        let layout = Layout::new(HostArch::restorer_blob().len() as u64, frame_len, align, threads as u64, page);
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        watch.mapping(pid, layout.len, route.chain.as_ref(), &areas_shaped(maps, layout.len));
        let (area, map_window, chained) = match window(pid, &leader, &route, &mem, Sys::Mmap, [0, layout.len, prot, flags, u64::MAX, 0]) {
            Ok(mapped) => mapped,
            Err(error) => {
                if matches!(error, ParasiteError::Window { .. }) {
                    // The mmap failed: nothing mapped.
                    watch.gone(pid);
                }
                return Err(error);
            }
        };
        watch.mapped(pid, area as u64, layout.len);
        let mut parasite = Parasite {
            pid,
            leader,
            mem,
            route,
            watch,
            area: area as u64,
            layout,
            ctl: None,
            target_ctl: -1,
            used_fds,
            open_fds: Vec::new(),
            leader_frame_sp: 0,
            leader_inside: false,
            stopped: BTreeMap::new(),
            stats: Stats { map_window, chained, ..Stats::default() },
            cured: false,
        };
        log::debug!("pid {pid}: parasite area {:#x} ({} KiB), window one {:?}", parasite.area, layout.len >> 10, map_window);
        parasite.enter_leader()?;
        crate::interrupt::hold("parasite-leader");
        Ok(parasite)
    }

    /// The target's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    fn address(&self, offset: u64) -> u64 {
        self.area + offset
    }

    fn write(&self, offset: u64, bytes: &[u8]) -> Result<(), ParasiteError> {
        self.mem
            .write_all_at(bytes, self.address(offset))
            .map_err(io_error(self.leader.tid, format!("write the parasite area at {:#x}", self.address(offset))))
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, ParasiteError> {
        let mut bytes = vec![0u8; len];
        self.mem
            .read_exact_at(&mut bytes, self.address(offset))
            .map_err(io_error(self.leader.tid, "read the parasite area"))?;
        Ok(bytes)
    }

    /// The registers that start the blob on the program at `program` (an address), on
    /// the thread's own stack (the blob uses none; sigaltstack then still tells
    /// whether the thread runs on its alternate stack).
    fn entry_regs(&self, home: &Home, program: u64) -> Regs {
        let entry = self.area + HostArch::restorer_entry_offset() as u64;
        HostArch::syscall_regs(&home.regs.gpr, entry, 0, [program, 0, 0, 0, 0, 0])
    }

    /// Writes the blob, the leader's program and frame, switches the leader into it and
    /// runs it to its control socket.
    fn enter_leader(&mut self) -> Result<(), ParasiteError> {
        let result = self.enter_leader_stopped();
        if result.is_err() && self.leader_inside {
            // Every step before the last PTRACE_CONT leaves the leader in a stop.
            self.stopped.insert(self.leader.tid, (0, 0));
        }
        result
    }

    fn enter_leader_stopped(&mut self) -> Result<(), ParasiteError> {
        let tid = self.leader.tid;
        let layout = self.layout;
        let program = self.address(layout.leader_program);
        let frame = HostArch::sigreturn_frame(&frame_regs(&self.leader), self.leader.sigmask, self.address(layout.leader_frame))
            .map_err(|source| ParasiteError::Frame { tid, source })?;
        self.leader_frame_sp = frame.sp;
        let predicted = self.reserve_numbers(2);
        let (ctl, peer) = (predicted[0], predicted[1]);
        self.target_ctl = ctl;
        self.open_fds = vec![ctl];
        let head = program::leader_head::<HostArch>(
            program,
            self.address(layout.fds),
            self.address(layout.all_signals),
            ctl,
            peer,
            &self.open_fds,
            frame.sp,
        )
        .map_err(|source| ParasiteError::Program { tid, source })?;
        self.write(0, HostArch::restorer_blob())?;
        let mut words = (!0u64).to_ne_bytes().to_vec();
        words.extend_from_slice(&[0u8; 16]);
        self.write(layout.all_signals, &words)?;
        self.write(layout.leader_program, &head)?;
        self.write(layout.leader_frame, &frame.bytes)?;

        // The switch.
        HostArch::write_gpr(tid, &self.entry_regs(&self.leader, program)).map_err(arch_error(tid))?;
        self.leader_inside = true;
        sys::write_sigmask(tid, !0).map_err(io_error(tid, "PTRACE_SETSIGMASK"))?;
        step_syscall(tid)?;
        step_syscall(tid)?;
        let result = i64::from_ne_bytes(self.read(layout.leader_program + 72, 8)?.try_into().expect("8 bytes"));
        let fds = self.read(layout.fds, 8)?;
        let found = [
            i32::from_ne_bytes(fds[0..4].try_into().expect("4 bytes")),
            i32::from_ne_bytes(fds[4..8].try_into().expect("4 bytes")),
        ];
        if result != 0 {
            // The program goes on to its epilogue by itself.
            return Err(ParasiteError::Window { tid, call: Sys::Socketpair, errno: -result });
        }
        if found != [ctl, peer] {
            // Not what a frozen fd table gives: say so, after closing what it made.
            self.open_fds.extend(found);
            let _ = self.rewrite_epilogue();
            return Err(ParasiteError::FdPrediction { tid, what: "socketpair", expected: vec![ctl, peer], found: found.to_vec() });
        }
        let end = sys::borrow_fd(self.pid, peer as u32).map_err(io_error(tid, "pidfd_getfd of the control socket"))?;
        self.ctl = Some(end);
        // The program closes the peer before it reads.
        self.used_fds.remove(&peer);
        sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT"))
        // (A failed PTRACE_CONT leaves it stopped, as the caller assumes.)
    }

    /// The `count` lowest fd numbers free in the target, marked used.
    fn reserve_numbers(&mut self, count: usize) -> Vec<i32> {
        let mut out = Vec::with_capacity(count);
        let mut fd = 0;
        while out.len() < count {
            if !self.used_fds.contains(&fd) {
                out.push(fd);
                self.used_fds.insert(fd);
            }
            fd += 1;
        }
        out
    }

    fn rewrite_epilogue(&mut self) -> Result<(), ParasiteError> {
        let tid = self.leader.tid;
        let bytes = program::epilogue_bytes::<HostArch>(&self.open_fds, self.leader_frame_sp)
            .map_err(|source| ParasiteError::Program { tid, source })?;
        self.write(self.layout.leader_program + program::EPILOGUE_INDEX * RestorerOp::SIZE as u64, &bytes)
    }

    /// Fd numbers the next `count` fds made in the target will get, added to what the
    /// epilogue closes before the batch that makes them is sent.
    pub(crate) fn expect_fds(&mut self, count: usize) -> Result<Vec<i32>, ParasiteError> {
        let fds = self.reserve_numbers(count);
        self.open_fds.extend(&fds);
        self.rewrite_epilogue()?;
        Ok(fds)
    }

    /// Checks that calls got the fds [`Parasite::expect_fds`] said (`found`: -1 where a
    /// call failed and made none, whose number is free again). On a difference the
    /// fds they got are closed by the epilogue too, and the dump fails.
    pub(crate) fn check_fds(&mut self, what: &'static str, expected: &[i32], found: &[i32]) -> Result<(), ParasiteError> {
        let mut differs = false;
        for (&want, &got) in expected.iter().zip(found) {
            if got < 0 {
                self.open_fds.retain(|&fd| fd != want);
                self.used_fds.remove(&want);
            } else if got != want {
                differs = true;
                if !self.open_fds.contains(&got) {
                    self.open_fds.push(got);
                }
            }
        }
        let rewritten = self.rewrite_epilogue();
        if differs {
            return Err(ParasiteError::FdPrediction { tid: self.leader.tid, what, expected: expected.to_vec(), found: found.to_vec() });
        }
        rewritten
    }

    /// A copy of the target's fd `fd` (pidfd_getfd).
    pub(crate) fn borrow_fd(&self, fd: i32) -> Result<OwnedFd, ParasiteError> {
        sys::borrow_fd(self.pid, fd as u32).map_err(io_error(self.leader.tid, format!("pidfd_getfd of fd {fd}")))
    }

    /// Closes `fds`, made by the parasite, in the target (one round trip).
    pub(crate) fn close_fds(&mut self, fds: &[i32]) -> Result<(), ParasiteError> {
        if fds.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        let calls: Vec<Call> = fds.iter().map(|&fd| batch.call(Sys::Close, &[Arg::V(fd as u64)])).collect();
        let reply = self.run(&batch)?;
        for (&fd, call) in fds.iter().zip(calls) {
            let result = reply.result(call);
            if result < 0 {
                return Err(ParasiteError::Window { tid: self.leader.tid, call: Sys::Close, errno: -result });
            }
            self.open_fds.retain(|&open| open != fd);
            self.used_fds.remove(&fd);
        }
        self.rewrite_epilogue()
    }

    /// Runs `batch` in the leader: one round trip.
    pub(crate) fn run(&mut self, batch: &Batch) -> Result<Answer, ParasiteError> {
        let tid = self.leader.tid;
        let program = self.address(self.layout.leader_program);
        let assembled =
            program::leader_batch::<HostArch>(batch, program, self.target_ctl).map_err(|source| ParasiteError::Program { tid, source })?;
        let ctl = self.ctl.as_ref().ok_or(ParasiteError::Closed { tid })?;
        sys::socket::send_message(ctl.as_raw_fd(), &assembled.bytes).map_err(io_error(tid, "send a batch to the parasite"))?;
        let bytes = self.receive(&[tid], assembled.bytes.len())?;
        self.stats.round_trips += 1;
        let len = bytes.len();
        if len != assembled.bytes.len() {
            return Err(ParasiteError::StrayReply { tid, len });
        }
        let reply = Reply::new(bytes, assembled.data_offset).ok_or(ParasiteError::StrayReply { tid, len })?;
        Ok(Answer { reply, first: 0 })
    }

    /// One message from the parasite, while watching `threads` (running their programs)
    /// for a stop or an exit.
    fn receive(&mut self, threads: &[i32], max_len: usize) -> Result<Vec<u8>, ParasiteError> {
        let tid = self.leader.tid;
        let ctl = self.ctl.as_ref().ok_or(ParasiteError::Closed { tid })?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let ready = sys::uffd::poll_readable(&[ctl.as_fd()], WATCH_MS).map_err(io_error(tid, "poll the control socket"))?;
            if ready[0] {
                let mut buf = vec![0u8; max_len + 1];
                let len = sys::socket::receive_message(ctl.as_raw_fd(), &mut buf)
                    .map_err(io_error(tid, "receive from the parasite"))?;
                if len == 0 {
                    return Err(ParasiteError::Closed { tid });
                }
                if len > max_len {
                    return Err(ParasiteError::StrayReply { tid, len });
                }
                buf.truncate(len);
                return Ok(buf);
            }
            for &thread in threads {
                match sys::try_wait_thread(thread).map_err(io_error(thread, "waitpid"))? {
                    None => {}
                    // A SIGSTOP (which no mask blocks) is the thread's: handed on, its
                    // group stop starts, and from that stop's trap the program runs on
                    // (the stop holds again at the release).
                    Some(sys::WaitEvent::Stopped { signal: libc::SIGSTOP, event: 0 }) => {
                        sys::continue_thread(thread, libc::SIGSTOP).map_err(io_error(thread, "PTRACE_CONT"))?
                    }
                    Some(sys::WaitEvent::Stopped { event: libc::PTRACE_EVENT_STOP, .. }) => {
                        sys::continue_thread(thread, 0).map_err(io_error(thread, "PTRACE_CONT"))?
                    }
                    Some(sys::WaitEvent::Stopped { signal, event }) => {
                        self.stopped.insert(thread, (signal, event));
                        return Err(ParasiteError::UnexpectedStop { tid: thread, signal, event });
                    }
                    Some(_) => return Err(ParasiteError::Exited { tid: thread }),
                }
            }
            if Instant::now() > deadline {
                return Err(ParasiteError::Timeout { tid: threads.first().copied().unwrap_or(tid) });
            }
        }
    }

    /// Runs each `(thread, batch)` in its thread (not the leader), up to
    /// [`program::MAX_SLOTS`] at once; the answers in the same order.
    pub(crate) fn run_in_threads(&mut self, jobs: &[(Home, Batch)]) -> Result<Vec<Answer>, ParasiteError> {
        let mut answers = Vec::with_capacity(jobs.len());
        let wave = self.layout.slot_count.max(1) as usize;
        for chunk in jobs.chunks(wave) {
            answers.extend(self.run_wave(chunk)?);
        }
        self.stats.threads += jobs.len() as u32;
        Ok(answers)
    }

    fn run_wave(&mut self, jobs: &[(Home, Batch)]) -> Result<Vec<Answer>, ParasiteError> {
        struct Slot {
            program: u64,
            sigreturn: u64,
            assembled: program::Assembled,
        }
        let align = HostArch::SIGFRAME_ALIGN;
        let mut slots = Vec::with_capacity(jobs.len());
        for (index, (home, batch)) in jobs.iter().enumerate() {
            let tid = home.tid;
            let program_offset = self.layout.slot(index as u64);
            let frame_offset = self.layout.slot_frame(index as u64, align);
            let frame = HostArch::sigreturn_frame(&frame_regs(home), home.sigmask, self.address(frame_offset))
                .map_err(|source| ParasiteError::Frame { tid, source })?;
            if frame_offset + frame.bytes.len() as u64 > program_offset + self.layout.slot_len {
                return Err(ParasiteError::Frame { tid, source: SigframeError::ExtTooShort { len: frame.bytes.len(), need: 0 } });
            }
            let program = self.address(program_offset);
            let assembled = program::thread_program::<HostArch>(batch, program, self.address(self.layout.all_signals), self.target_ctl, frame.sp)
                .map_err(|source| ParasiteError::Program { tid, source })?;
            self.write(program_offset, &assembled.bytes)?;
            self.write(frame_offset, &frame.bytes)?;
            let sigreturn = program + program::thread_sigreturn_index(batch.len()) * RestorerOp::SIZE as u64;
            slots.push(Slot { program, sigreturn, assembled });
        }
        let mut started: Vec<usize> = Vec::new();
        let mut answers: Vec<Option<Answer>> = (0..jobs.len()).map(|_| None).collect();
        let mut run = || -> Result<(), ParasiteError> {
            for (index, ((home, _), slot)) in jobs.iter().zip(&slots).enumerate() {
                let tid = home.tid;
                HostArch::write_gpr(tid, &self.entry_regs(home, slot.program)).map_err(arch_error(tid))?;
                started.push(index);
                let resumed = sys::write_sigmask(tid, !0)
                    .map_err(io_error(tid, "PTRACE_SETSIGMASK"))
                    .and_then(|()| sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT")));
                if let Err(error) = resumed {
                    // Still in its stop, never run.
                    self.stopped.insert(tid, (0, 0));
                    return Err(error);
                }
            }
            crate::interrupt::hold("parasite-threads");
            let running: Vec<i32> = jobs.iter().map(|(home, _)| home.tid).collect();
            let longest = slots.iter().map(|s| s.assembled.bytes.len()).max().unwrap_or(0);
            for _ in 0..jobs.len() {
                let bytes = self.receive(&running, longest)?;
                let len = bytes.len();
                let owner = slots.iter().position(|slot| {
                    let write_op = (slot.assembled.ops - 3) * RestorerOp::SIZE;
                    len == slot.assembled.bytes.len() && bytes[write_op + 16..write_op + 24] == slot.program.to_ne_bytes()
                });
                let index = owner.ok_or(ParasiteError::StrayReply { tid: self.leader.tid, len })?;
                let reply = Reply::new(bytes, slots[index].assembled.data_offset)
                    .ok_or(ParasiteError::StrayReply { tid: self.leader.tid, len })?;
                answers[index] = Some(Answer { reply, first: 1 });
            }
            Ok(())
        };
        let mut first_error = run().err();
        for index in started {
            let (home, _) = &jobs[index];
            if let Err(error) = self.take_home(home, slots[index].sigreturn, 0) {
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(answers.into_iter().map(|a| a.expect("every slot answered")).collect()),
        }
    }

    /// Takes `home`'s thread, in its program, back to its own state: interrupted where
    /// it is (unless crust already saw it stop), pointed at `exit` (ops that close
    /// `closes` fds, then `SIGRETURN`) and stepped through them; the registers and mask
    /// it comes back with are checked.
    fn take_home(&mut self, home: &Home, exit: u64, closes: usize) -> Result<(), ParasiteError> {
        let tid = home.tid;
        let mut resend = Vec::new();
        if let Some((signal, event)) = self.stopped.remove(&tid) {
            // Stopped with a signal on its way (a signal-delivery-stop): it is held back.
            if event == 0 && (1..0x80).contains(&signal) && signal != libc::SIGTRAP {
                resend.push(signal);
            }
        } else {
            sys::interrupt_thread(tid).map_err(io_error(tid, "PTRACE_INTERRUPT"))?;
            resend.extend(wait_event_stop(tid)?);
        }
        let result = self.step_home(home, exit, closes);
        for signal in resend {
            // A signal that arrived while the thread ran the parasite: pending again.
            let _ = sys::signal_thread(self.pid, tid, signal);
        }
        result
    }

    fn step_home(&mut self, home: &Home, exit: u64, closes: usize) -> Result<(), ParasiteError> {
        let tid = home.tid;
        let by_ptrace = keeps_restart_block(&home.regs.gpr);
        if !by_ptrace || closes > 0 {
            HostArch::write_gpr(tid, &self.entry_regs(home, exit)).map_err(arch_error(tid))?;
        }
        for _ in 0..closes {
            step_syscall(tid)?;
            step_syscall(tid)?;
        }
        if by_ptrace {
            // rt_sigreturn would forget the restart block: home by ptrace, from a stop
            // in get_signal (the kernel restarts the syscall when it leaves it).
            if closes > 0 {
                sys::interrupt_thread(tid).map_err(io_error(tid, "PTRACE_INTERRUPT"))?;
            }
            sys::write_sigmask(tid, home.sigmask).map_err(io_error(tid, "PTRACE_SETSIGMASK"))?;
            HostArch::write_gpr(tid, &home.regs.gpr).map_err(arch_error(tid))?;
            if closes > 0 {
                sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT"))?;
                wait_event_stop(tid)?;
            }
            let found = HostArch::read_regs(tid).map_err(arch_error(tid))?;
            if found != home.regs {
                // Words only the kernel sets (ppc64le's MSR bits, softe, result) may
                // differ after the thread ran; every register the thread sees, and how
                // its syscall restarts, may not.
                let restarted = |regs: &ThreadRegs<Regs>| ThreadRegs { gpr: HostArch::resume_regs(&regs.gpr, true), ext: regs.ext.clone() };
                let what = HostArch::sigreturn_mismatch(&home.regs, &found).or_else(|| {
                    HostArch::sigreturn_mismatch(&restarted(&home.regs), &restarted(&found)).map(|what| format!("{what} once its syscall restarts"))
                });
                if let Some(what) = what {
                    return Err(self.put_back(home, format!("{what} (put back by ptrace)")));
                }
            }
            log::trace!("tid {tid}: home by ptrace (its syscall restarts through the restart block)");
            return Ok(());
        }
        // rt_sigreturn's entry; a trap pending for when it leaves the syscall.
        step_syscall(tid)?;
        sys::interrupt_thread(tid).map_err(io_error(tid, "PTRACE_INTERRUPT"))?;
        sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT"))?;
        wait_event_stop(tid)?;
        let found = HostArch::read_regs(tid).map_err(arch_error(tid))?;
        let expected = frame_regs(home);
        if let Some(what) = HostArch::sigreturn_mismatch(&expected, &found) {
            return Err(self.put_back(home, what));
        }
        let mask = sys::read_sigmask(tid).map_err(io_error(tid, "PTRACE_GETSIGMASK"))?;
        if mask != home.sigmask {
            return Err(self.put_back(home, format!("signal mask ({mask:#x}, not {:#x})", home.sigmask)));
        }
        log::trace!("tid {tid}: home by rt_sigreturn, registers and mask checked");
        if expected.gpr != home.regs.gpr && HostArch::SEIZED_REGS_RESTART_AFTER_SIGRETURN {
            // In a syscall when seized: the seized registers again, so that the kernel
            // restarts it (or not, for a handler) as it would have. (ppc64le keeps the
            // frame's, which run the syscall instruction again.)
            HostArch::write_gpr(tid, &home.regs.gpr).map_err(arch_error(tid))?;
        }
        Ok(())
    }

    /// Puts `home`'s registers and mask back by ptrace (the thread is in a
    /// PTRACE_EVENT_STOP) and returns the mismatch error.
    fn put_back(&self, home: &Home, what: String) -> ParasiteError {
        let tid = home.tid;
        let _ = HostArch::write_gpr(tid, &home.regs.gpr);
        let _ = HostArch::write_ext(tid, &home.regs.ext);
        let _ = sys::write_sigmask(tid, home.sigmask);
        ParasiteError::Mismatch { tid, what }
    }

    /// The fds the parasite holds in its target (its control socket, page pipes), which
    /// are not the target's own.
    pub(crate) fn own_fds(&self) -> &[i32] {
        &self.open_fds
    }

    /// Drops the parasite of a process that was killed with it inside (a dump that ends
    /// its tree): nothing is left to cure, and the guardian is told the area is gone.
    /// Its window one.
    pub(crate) fn forget_killed(mut self) -> Stats {
        self.cured = true;
        self.ctl = None;
        self.watch.gone(self.pid);
        log::debug!("pid {}: parasite not cured (killed with its process): window one {:?}, {} round trips", self.pid, self.stats.map_window, self.stats.round_trips);
        self.stats
    }

    /// Takes the leader home and unmaps the area (window two).
    pub(crate) fn cure(mut self) -> Result<Stats, ParasiteError> {
        self.cure_now()?;
        Ok(self.stats)
    }

    fn cure_now(&mut self) -> Result<(), ParasiteError> {
        if self.cured {
            return Ok(());
        }
        self.cured = true;
        let mut first_error = None;
        if self.leader_inside {
            let others: Vec<i32> = self.open_fds.iter().copied().filter(|&fd| fd != self.target_ctl).collect();
            if !others.is_empty() && self.ctl.is_some() {
                if let Err(error) = self.close_fds(&others) {
                    first_error.get_or_insert(error);
                }
            }
            let exit = self.address(self.layout.leader_program) + program::EXIT_INDEX * RestorerOp::SIZE as u64;
            let leader = self.leader.clone();
            if let Err(error) = self.take_home(&leader, exit, 1) {
                first_error.get_or_insert(error);
            }
            self.leader_inside = false;
        }
        self.ctl = None;
        match window(self.pid, &self.leader, &self.route, &self.mem, Sys::Munmap, [self.area, self.layout.len, 0, 0, 0, 0]) {
            Ok((_, duration, chained)) => {
                self.watch.gone(self.pid);
                self.stats.unmap_window = duration;
                self.stats.chained &= chained;
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
        log::debug!(
            "pid {}: parasite cured: window one {:?}, window two {:?}, {} round trips, {} threads",
            self.pid,
            self.stats.map_window,
            self.stats.unmap_window,
            self.stats.round_trips,
            self.stats.threads
        );
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Parasite {
    fn drop(&mut self) {
        if let Err(error) = self.cure_now() {
            log::warn!("pid {}: parasite: {error}", self.pid);
        }
    }
}

/// A reply with the index its calls start at.
pub(crate) struct Answer {
    reply: Reply,
    first: usize,
}

impl Answer {
    /// The raw result of `call` (negative errno on failure).
    pub(crate) fn result(&self, call: Call) -> i64 {
        self.reply.result_at(call.index(self.first))
    }

    /// The bytes the kernel left in `buffer`.
    pub(crate) fn bytes(&self, buffer: Buffer) -> &[u8] {
        self.reply.bytes(buffer)
    }
}

/// The start of every mapping of `maps` shaped like a parasite area of `len` bytes
/// (told to the guardian, so that it never takes one of them for the area). The
/// process is stopped: the mappings read after its stop are its mappings now (processes
/// sharing one mm without being threads, which crust does not dump, would not be).
fn areas_shaped(maps: &[MapsLine], len: u64) -> Vec<u64> {
    maps.iter().filter(|m| guardian::area_shaped(m, len)).map(|m| m.start).collect()
}

/// The registers a thread's frame carries: its own, with an interrupted syscall set to
/// start again (rt_sigreturn forgets that it was in one), and its extended state.
fn frame_regs(home: &Home) -> ThreadRegs<Regs> {
    ThreadRegs { gpr: HostArch::resume_regs(&home.regs.gpr, false), ext: home.regs.ext.clone() }
}

/// Whether the thread's syscall restart goes through the kernel's restart block
/// (ERESTART_RESTARTBLOCK: relative sleeps), which rt_sigreturn resets.
fn keeps_restart_block(regs: &Regs) -> bool {
    HostArch::resume_regs(regs, true) != HostArch::resume_regs(regs, false)
}

/// The fd numbers open in `pid`.
fn open_fds(pid: i32) -> io::Result<BTreeSet<i32>> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// PTRACE_SYSCALL to the next syscall stop (a SIGSTOP on the way is the thread's:
/// [`crate::infect::step_to_syscall_stop`]).
fn step_syscall(tid: i32) -> Result<(), ParasiteError> {
    match crate::infect::step_to_syscall_stop(tid).map_err(|(what, source)| ParasiteError::Io { tid, what: what.into(), source })? {
        crate::infect::Step::Syscall => Ok(()),
        crate::infect::Step::Stop { signal, event } => Err(ParasiteError::UnexpectedStop { tid, signal, event }),
        crate::infect::Step::Exited => Err(ParasiteError::Exited { tid }),
    }
}

/// Waits for a PTRACE_EVENT_STOP (after PTRACE_INTERRUPT; a group stop's comes as the
/// same trap). A SIGSTOP that arrives first is handed on to the thread, whose group
/// stop then starts (as in [`crate::infect::step_to_syscall_stop`]); other signals that arrive
/// first are held back (the thread is continued without them) and returned, to be
/// sent again.
fn wait_event_stop(tid: i32) -> Result<Vec<i32>, ParasiteError> {
    let mut held = Vec::new();
    loop {
        match sys::wait_thread(tid).map_err(io_error(tid, "waitpid"))? {
            sys::WaitEvent::Stopped { event, .. } if event == libc::PTRACE_EVENT_STOP => return Ok(held),
            sys::WaitEvent::Stopped { signal: libc::SIGSTOP, event: 0 } => {
                sys::continue_thread(tid, libc::SIGSTOP).map_err(io_error(tid, "PTRACE_CONT"))?;
            }
            sys::WaitEvent::Stopped { signal, event: 0 } if signal != (libc::SIGTRAP | 0x80) => {
                held.push(signal);
                sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT"))?;
            }
            sys::WaitEvent::Stopped { .. } => {
                // A syscall stop on the way: go on to the trap.
                sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT"))?;
            }
            _ => return Err(ParasiteError::Exited { tid }),
        }
    }
}

/// Where a process's injected syscalls run from: a syscall instruction of its vDSO,
/// and the points of a chained syscall when the target has them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub(crate) syscall_ip: u64,
    pub(crate) chain: Option<ChainPoints>,
}

/// One syscall injected into `home`'s thread (in its own state, in a
/// PTRACE_EVENT_STOP), and its own registers and mask back: a window. Chained
/// ([`crust_arch::chain`]) where `route` has the points and the thread's stack takes the
/// frame: then a thread let go at any moment (crust killed) goes home by itself, and the
/// window is zero. Returns the result, how long the thread was away from its own state
/// (in a chained window: never unprotected) and whether it was chained.
fn window(pid: i32, home: &Home, route: &Route, mem: &File, call: Sys, args: [u64; 6]) -> Result<(i64, Duration, bool), ParasiteError> {
    let tid = home.tid;
    // A thread that has not run for a while can wait milliseconds for a CPU when the
    // machine is busy: it runs once first (in the kernel only: it stops again in
    // get_signal before any instruction of its own), so that the window's wake-ups
    // find it warm.
    sys::interrupt_thread(tid).map_err(io_error(tid, "PTRACE_INTERRUPT"))?;
    sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT"))?;
    wait_event_stop(tid)?;
    if let Some(points) = &route.chain {
        if let Some((result, duration)) = chained_window(pid, home, points, mem, call, args)? {
            return Ok((result, duration, true));
        }
    }
    let (result, duration) = plain_window(pid, home, route.syscall_ip, mem, call, args)?;
    Ok((result, duration, false))
}

/// A chained window; `None` (nothing changed) where the frame does not fit on the
/// thread's stack or the backend does not chain this call.
fn chained_window(pid: i32, home: &Home, points: &ChainPoints, mem: &File, call: Sys, args: [u64; 6]) -> Result<Option<(i64, Duration)>, ParasiteError> {
    let tid = home.tid;
    let frame_error = |source| ParasiteError::Frame { tid, source };
    let nr = HostArch::syscall_number(call).ok_or(InfectError::NoSyscall { tid, call })?;
    let expected = frame_regs(home);
    let frame_len = HostArch::sigreturn_frame(&expected, home.sigmask, 0).map_err(frame_error)?.bytes.len() as u64;
    let below = points.path.below_frame();
    let Some(frame_address) = chain::frame_address(HostArch::sp(&home.regs.gpr), HostArch::STACK_RED_ZONE, frame_len, HostArch::SIGFRAME_ALIGN)
        .filter(|address| *address > below)
    else {
        return Ok(None);
    };
    let frame = HostArch::sigreturn_frame(&expected, home.sigmask, frame_address).map_err(frame_error)?;
    let Some(chained) = HostArch::chained_syscall(&home.regs.gpr, points, nr, args, &frame, frame_address) else {
        return Ok(None);
    };
    // The stack below the red zone belongs to no code of the thread's (a signal frame
    // goes there); what it held is put back anyway once the thread is home.
    let mut covered = vec![0u8; chained.bytes.len()];
    if mem.read_exact_at(&mut covered, chained.address).is_err() {
        log::debug!("tid {tid}: no stack for a chained {call:?} below {:#x}: not chained", HostArch::sp(&home.regs.gpr));
        return Ok(None);
    }
    if mem.write_all_at(&chained.bytes, chained.address).is_err() {
        let _ = mem.write_all_at(&covered, chained.address);
        log::debug!("tid {tid}: stack at {:#x} not writable: {call:?} not chained", chained.address);
        return Ok(None);
    }
    let opened = Instant::now();
    let by_ptrace = keeps_restart_block(&home.regs.gpr);
    // From this write on, a thread let go runs the call and the path home.
    let run = || -> Result<i64, ParasiteError> {
        HostArch::write_gpr(tid, &chained.regs).map_err(arch_error(tid))?;
        sys::write_sigmask(tid, !0).map_err(io_error(tid, "PTRACE_SETSIGMASK"))?;
        step_syscall(tid)?;
        step_syscall(tid)?;
        let after = HostArch::read_regs(tid).map_err(arch_error(tid))?;
        let result = HostArch::syscall_result(&after.gpr);
        if by_ptrace {
            // rt_sigreturn would reset the restart block its sleep needs: home by
            // ptrace (the mask first: until the registers too are back, a thread let
            // go still takes the path, whose frame has that mask).
            sys::write_sigmask(tid, home.sigmask).map_err(io_error(tid, "PTRACE_SETSIGMASK"))?;
            sys::interrupt_thread(tid).map_err(io_error(tid, "PTRACE_INTERRUPT"))?;
            HostArch::write_gpr(tid, &home.regs.gpr).map_err(arch_error(tid))?;
            return Ok(result);
        }
        // Along the path to the trampoline's rt_sigreturn.
        step_syscall(tid)?;
        let at = HostArch::ip(&HostArch::read_regs(tid).map_err(arch_error(tid))?.gpr);
        if !(points.trampoline..points.trampoline + 16).contains(&at) {
            return Err(ParasiteError::Chain { tid, call, ip: at });
        }
        sys::interrupt_thread(tid).map_err(io_error(tid, "PTRACE_INTERRUPT"))?;
        Ok(result)
    };
    let ran = run();
    let came = match &ran {
        Ok(_) => sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT")).and_then(|()| wait_event_stop(tid)),
        Err(_) => {
            // Wherever it stopped: its own registers and mask by ptrace, then to a
            // PTRACE_EVENT_STOP (a signal the path raised is dropped).
            let _ = HostArch::write_gpr(tid, &home.regs.gpr);
            let _ = HostArch::write_ext(tid, &home.regs.ext);
            let _ = sys::write_sigmask(tid, home.sigmask);
            let _ = sys::interrupt_thread(tid);
            sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT")).and_then(|()| wait_event_stop(tid))
        }
    };
    let duration = opened.elapsed();
    let result = ran?;
    let held = came?;
    if !by_ptrace {
        let found = HostArch::read_regs(tid).map_err(arch_error(tid))?;
        let mismatch = HostArch::sigreturn_mismatch(&expected, &found).or_else(|| {
            let mask = sys::read_sigmask(tid).ok()?;
            (mask != home.sigmask).then(|| format!("signal mask ({mask:#x}, not {:#x})", home.sigmask))
        });
        if let Some(what) = mismatch {
            let _ = HostArch::write_gpr(tid, &home.regs.gpr);
            let _ = HostArch::write_ext(tid, &home.regs.ext);
            let _ = sys::write_sigmask(tid, home.sigmask);
            return Err(ParasiteError::Mismatch { tid, what: format!("{what} (after a chained {call:?})") });
        }
        if expected.gpr != home.regs.gpr && HostArch::SEIZED_REGS_RESTART_AFTER_SIGRETURN {
            // In a syscall when seized: the seized registers, so that the kernel
            // restarts it as it would have (ppc64le keeps the frame's).
            HostArch::write_gpr(tid, &home.regs.gpr).map_err(arch_error(tid))?;
        }
    }
    let _ = mem.write_all_at(&covered, chained.address);
    for signal in held {
        let _ = sys::signal_thread(pid, tid, signal);
    }
    if (-4095..0).contains(&result) {
        return Err(ParasiteError::Window { tid, call, errno: -result });
    }
    Ok(Some((result, duration)))
}

/// A window from the vDSO's syscall instruction with crust's registers, not chained: a
/// thread let go inside it runs on from the instruction after the syscall with them.
fn plain_window(pid: i32, home: &Home, syscall_ip: u64, mem: &File, call: Sys, args: [u64; 6]) -> Result<(i64, Duration), ParasiteError> {
    let tid = home.tid;
    let opened = Instant::now();
    sys::write_sigmask(tid, !0).map_err(io_error(tid, "PTRACE_SETSIGMASK"))?;
    let mut remote = RemoteThread::new(tid, syscall_ip, home.regs.gpr);
    let result = if call == Sys::Mmap { remote.mmap(mem, args) } else { remote.syscall(call, args) };
    // Back home: a trap pending first, so that from the moment its registers are back a
    // detached thread leaves the syscall stop through get_signal, where the kernel
    // restarts its own interrupted syscall.
    let back = sys::interrupt_thread(tid)
        .map_err(io_error(tid, "PTRACE_INTERRUPT"))
        .and_then(|()| HostArch::write_gpr(tid, &home.regs.gpr).map_err(arch_error(tid)))
        .and_then(|()| sys::write_sigmask(tid, home.sigmask).map_err(io_error(tid, "PTRACE_SETSIGMASK")));
    let duration = opened.elapsed();
    let resumed = back.and_then(|()| sys::continue_thread(tid, 0).map_err(io_error(tid, "PTRACE_CONT")));
    let stopped = resumed.and_then(|()| wait_event_stop(tid));
    let result = result?;
    let held = stopped?;
    for signal in held {
        let _ = sys::signal_thread(pid, tid, signal);
    }
    if (-4095..0).contains(&result) {
        return Err(ParasiteError::Window { tid, call, errno: -result });
    }
    Ok((result, duration))
}
