//! The parasite's area and programs, pure: where the restorer blob, the programs, their
//! data and their rt_sigreturn frames lie in the area, and the op programs themselves,
//! built for any [`Abi`] in its byte order (so every architecture's programs are tested
//! on one host).
//!
//! Every program here is safe to run to its end with no tracer: its checks are
//! [`RestorerOp::CHECK_NONE`] and [`RestorerOp::CHECK_BRANCH_POSITIVE`] only (any other
//! failed check traps, and a trap kills an untraced thread), and every way out of it
//! ends in [`RestorerOp::SIGRETURN`] on the thread's own frame.
//!
//! The leader's program (indices from its first op):
//!
//! | op | call | next |
//! | --- | --- | --- |
//! | 0 | `socketpair(AF_UNIX, SOCK_SEQPACKET \| SOCK_CLOEXEC)`: the control channel | 1 |
//! | 1 | `rt_sigprocmask(SIG_SETMASK, all)` | 2 |
//! | 2 | `close` of crust's end (crust took it at op 0's syscall exit) | 3 |
//! | 3 | `read(ctl)` of a batch into op [`BATCH_INDEX`] on | > 0: the batch; else 4 |
//! | 4.. | the epilogue: `close` of every fd the parasite has open, then `SIGRETURN` | home |
//! | [`EXIT_INDEX`] | `close(ctl)`, `SIGRETURN`: the way home when crust is done | home |
//!
//! A batch (`Batch`) is crust's calls, then `write(ctl)` of the batch with its results
//! branching back to op 3, then `getpid` branching to the epilogue (a failed write: crust
//! is gone). Another thread's program is the blocking of signals, its calls, `write(ctl)`
//! of its results, `read(ctl)` (it waits there: crust never writes while threads wait,
//! so the read returns only at crust's death, or never, since crust takes the thread
//! home from there with ptrace), then `SIGRETURN`.

use crust_arch::{Abi, RestorerOp, Sys};

/// `AF_UNIX`.
pub(crate) const AF_UNIX: u64 = 1;
/// `SOCK_SEQPACKET | SOCK_CLOEXEC` (the same numbers on all four architectures).
pub(crate) const SEQPACKET_CLOEXEC: u64 = 5 | 0o2_000_000;
/// `SIG_SETMASK` (2 on all four architectures).
pub(crate) const SIG_SETMASK: u64 = 2;

/// Index of the leader program's `read(ctl)`.
pub(crate) const READ_INDEX: u64 = 3;
/// Index of the first epilogue op.
pub(crate) const EPILOGUE_INDEX: u64 = 4;
/// Fds the epilogue can close (control socket, pipes, userfaultfd, and room to spare).
pub(crate) const EPILOGUE_CLOSES: usize = 24;
/// Index of the exit program (`close(ctl)`, `SIGRETURN`).
pub(crate) const EXIT_INDEX: u64 = EPILOGUE_INDEX + EPILOGUE_CLOSES as u64 + 1;
/// Index of a batch's first op in the leader's program.
pub(crate) const BATCH_INDEX: u64 = EXIT_INDEX + 2;
/// Bytes a batch (ops, results and data) may take: far below a unix socket's default
/// send buffer (208 KiB), which bounds one message.
pub(crate) const BATCH_BYTES: u64 = 96 << 10;
/// Bytes of a thread's program and data.
pub(crate) const THREAD_PROGRAM_BYTES: u64 = 8 << 10;
/// Threads whose programs run at the same time.
pub(crate) const MAX_SLOTS: u64 = 32;

/// An argument of a call: a value, or the address of one of the batch's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    V(u64),
    B(Buffer),
}

/// A buffer in a batch's data (kept in the batch's message both ways: crust fills it
/// for an input, the kernel for an output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Buffer {
    offset: usize,
    len: usize,
}

/// A call of a batch, to read its result from the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call(usize);

/// Syscalls to run in one round trip, with their buffers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Batch {
    calls: Vec<(Sys, [Arg; 6])>,
    data: Vec<u8>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch::default()
    }

    /// A zeroed buffer of `len` bytes (8-byte aligned) for the kernel to fill.
    pub(crate) fn buffer(&mut self, len: usize) -> Buffer {
        let offset = self.data.len().next_multiple_of(8);
        self.data.resize(offset + len, 0);
        Buffer { offset, len }
    }

    /// A buffer holding `bytes` (8-byte aligned).
    pub(crate) fn input(&mut self, bytes: &[u8]) -> Buffer {
        let buffer = self.buffer(bytes.len());
        self.data[buffer.offset..buffer.offset + bytes.len()].copy_from_slice(bytes);
        buffer
    }

    /// Adds `call(args...)`; missing arguments are 0.
    pub(crate) fn call(&mut self, call: Sys, args: &[Arg]) -> Call {
        let mut all = [Arg::V(0); 6];
        all[..args.len()].copy_from_slice(args);
        self.calls.push((call, all));
        Call(self.calls.len() - 1)
    }

    /// Number of calls.
    #[allow(clippy::len_without_is_empty)] // a batch is never asked whether it is empty
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }
}

/// Why a program could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProgramError {
    #[error("{call:?} has no number on {arch}")]
    NoSyscall { call: Sys, arch: &'static str },
    #[error("a batch of {bytes} bytes does not fit the parasite's {room} bytes")]
    TooBig { bytes: u64, room: u64 },
}

/// A batch laid out at an address: the bytes to put there (ops, then data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Assembled {
    pub(crate) bytes: Vec<u8>,
    /// Ops in the assembled program (calls and tail).
    pub(crate) ops: usize,
    /// Where the data starts in `bytes`.
    pub(crate) data_offset: usize,
}

/// The bytes of one op in `A`'s byte order.
fn op<A: Abi>(call: Sys, args: [u64; 6], check: u64, expect: u64) -> Result<RestorerOp, ProgramError> {
    let nr = A::syscall_number(call).ok_or(ProgramError::NoSyscall { call, arch: A::NAME })?;
    Ok(RestorerOp { nr, args, check, expect, result: 0 })
}

fn sigreturn(sp: u64) -> RestorerOp {
    RestorerOp { nr: RestorerOp::SIGRETURN, args: [sp, 0, 0, 0, 0, 0], ..Default::default() }
}

/// `batch`'s calls laid out at `base` (the address its first op will have), followed by
/// the ops `tail` makes from the whole assembly's length (its ops and data), then the
/// data. `room`: the bytes available there.
fn assemble<A: Abi>(
    batch: &Batch,
    base: u64,
    room: u64,
    tail_ops: usize,
    tail: impl Fn(u64) -> Result<Vec<RestorerOp>, ProgramError>,
) -> Result<Assembled, ProgramError> {
    let ops = batch.calls.len() + tail_ops;
    let data_offset = (ops * RestorerOp::SIZE).next_multiple_of(8);
    let len = (data_offset + batch.data.len()) as u64;
    if len > room {
        return Err(ProgramError::TooBig { bytes: len, room });
    }
    let data_base = base + data_offset as u64;
    let mut program = Vec::with_capacity(ops);
    for (call, args) in &batch.calls {
        let args = args.map(|arg| match arg {
            Arg::V(value) => value,
            Arg::B(buffer) => data_base + buffer.offset as u64,
        });
        program.push(op::<A>(*call, args, RestorerOp::CHECK_NONE, 0)?);
    }
    let tail = tail(len)?;
    debug_assert_eq!(tail.len(), tail_ops);
    program.extend(tail);
    let mut bytes: Vec<u8> = program.iter().flat_map(|o| o.to_bytes::<A>()).collect();
    bytes.resize(data_offset, 0);
    bytes.extend_from_slice(&batch.data);
    Ok(Assembled { bytes, ops, data_offset })
}

/// A batch for the leader: its calls at op [`BATCH_INDEX`] of the program at `program`,
/// then `write(ctl)` of it all back to crust (branching to the read) and `getpid`
/// branching to the epilogue.
pub(crate) fn leader_batch<A: Abi>(batch: &Batch, program: u64, ctl: i32) -> Result<Assembled, ProgramError> {
    let base = program + BATCH_INDEX * RestorerOp::SIZE as u64;
    assemble::<A>(batch, base, BATCH_BYTES, 2, |len| {
        Ok(vec![
            op::<A>(Sys::Write, [ctl as u64, base, len, 0, 0, 0], RestorerOp::CHECK_BRANCH_POSITIVE, READ_INDEX)?,
            op::<A>(Sys::Getpid, [0; 6], RestorerOp::CHECK_BRANCH_POSITIVE, EPILOGUE_INDEX)?,
        ])
    })
}

/// The program of a thread other than the leader, at `base`: block every signal (the
/// mask word at `all_signals`), run `batch`, `write(ctl)` it back, wait in `read(ctl)`,
/// and go home through the frame whose stack pointer is `frame_sp`. The reply names its
/// slot: it carries the write op, whose buffer argument is `base`.
pub(crate) fn thread_program<A: Abi>(
    batch: &Batch,
    base: u64,
    all_signals: u64,
    ctl: i32,
    frame_sp: u64,
) -> Result<Assembled, ProgramError> {
    let mut full = Batch { calls: Vec::with_capacity(batch.calls.len() + 1), data: batch.data.clone() };
    full.calls.push((Sys::RtSigprocmask, [Arg::V(SIG_SETMASK), Arg::V(all_signals), Arg::V(0), Arg::V(8), Arg::V(0), Arg::V(0)]));
    full.calls.extend(batch.calls.iter().cloned());
    let wait = all_signals + 8;
    assemble::<A>(&full, base, THREAD_PROGRAM_BYTES, 3, |len| {
        Ok(vec![
            op::<A>(Sys::Write, [ctl as u64, base, len, 0, 0, 0], RestorerOp::CHECK_NONE, 0)?,
            op::<A>(Sys::Read, [ctl as u64, wait, 8, 0, 0, 0], RestorerOp::CHECK_NONE, 0)?,
            sigreturn(frame_sp),
        ])
    })
}

/// The index of a thread program's `SIGRETURN` op (after the mask, the calls, the write
/// and the read).
pub(crate) fn thread_sigreturn_index(calls: usize) -> u64 {
    1 + calls as u64 + 2
}

/// The fixed part of the leader's program, ops 0 up to [`BATCH_INDEX`]: `fds` is where
/// socketpair writes the two fds, `ctl`/`peer` the fds it is expected to return (the two
/// lowest free), `open` the fds the epilogue closes, `frame_sp` the frame's stack
/// pointer.
pub(crate) fn leader_head<A: Abi>(
    program: u64,
    fds: u64,
    all_signals: u64,
    ctl: i32,
    peer: i32,
    open: &[i32],
    frame_sp: u64,
) -> Result<Vec<u8>, ProgramError> {
    let batch = program + BATCH_INDEX * RestorerOp::SIZE as u64;
    let mut ops = vec![
        op::<A>(Sys::Socketpair, [AF_UNIX, SEQPACKET_CLOEXEC, 0, fds, 0, 0], RestorerOp::CHECK_NONE, 0)?,
        op::<A>(Sys::RtSigprocmask, [SIG_SETMASK, all_signals, 0, 8, 0, 0], RestorerOp::CHECK_NONE, 0)?,
        op::<A>(Sys::Close, [peer as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0)?,
        op::<A>(Sys::Read, [ctl as u64, batch, BATCH_BYTES, 0, 0, 0], RestorerOp::CHECK_BRANCH_POSITIVE, BATCH_INDEX)?,
    ];
    ops.extend(epilogue::<A>(open, frame_sp)?);
    ops.push(op::<A>(Sys::Close, [ctl as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0)?);
    ops.push(sigreturn(frame_sp));
    debug_assert_eq!(ops.len() as u64, BATCH_INDEX);
    Ok(ops.iter().flat_map(|o| o.to_bytes::<A>()).collect())
}

/// The epilogue (ops [`EPILOGUE_INDEX`] on): `close` of each of `open` (unused slots
/// close fd -1, which fails harmlessly), then `SIGRETURN`.
pub(crate) fn epilogue<A: Abi>(open: &[i32], frame_sp: u64) -> Result<Vec<RestorerOp>, ProgramError> {
    assert!(open.len() <= EPILOGUE_CLOSES, "the parasite keeps at most {EPILOGUE_CLOSES} fds open");
    let mut ops = Vec::with_capacity(EPILOGUE_CLOSES + 1);
    for slot in 0..EPILOGUE_CLOSES {
        let fd = open.get(slot).map_or(u64::MAX, |&fd| fd as u64);
        ops.push(op::<A>(Sys::Close, [fd, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0)?);
    }
    ops.push(sigreturn(frame_sp));
    Ok(ops)
}

/// The epilogue's bytes (to write at op [`EPILOGUE_INDEX`]).
pub(crate) fn epilogue_bytes<A: Abi>(open: &[i32], frame_sp: u64) -> Result<Vec<u8>, ProgramError> {
    Ok(epilogue::<A>(open, frame_sp)?.iter().flat_map(|o| o.to_bytes::<A>()).collect())
}

/// Where everything lies in the parasite's area (offsets from its start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The restorer blob, at the start (page aligned).
    pub(crate) blob_len: u64,
    /// A word with every signal's bit set, then 8 bytes a waiting thread reads into.
    pub(crate) all_signals: u64,
    /// Where socketpair writes the control channel's two fds.
    pub(crate) fds: u64,
    /// The leader's program (its batch at op [`BATCH_INDEX`]).
    pub(crate) leader_program: u64,
    /// The leader's frame.
    pub(crate) leader_frame: u64,
    /// The first thread slot: a program ([`THREAD_PROGRAM_BYTES`]), then its frame.
    pub(crate) slots: u64,
    pub(crate) slot_len: u64,
    pub(crate) slot_count: u64,
    /// Bytes of the whole area (a multiple of the page size).
    pub(crate) len: u64,
}

impl Layout {
    /// The layout for a blob of `blob_len` bytes, frames of up to `frame_len` bytes
    /// aligned to `frame_align`, and `threads` other threads (at most [`MAX_SLOTS`] run
    /// at once).
    pub(crate) fn new(blob_len: u64, frame_len: u64, frame_align: u64, threads: u64, page: u64) -> Layout {
        let frame_align = frame_align.max(16);
        let all_signals = blob_len.next_multiple_of(page);
        let fds = all_signals + 16;
        let leader_program = (fds + 8).next_multiple_of(64);
        let batch_end = leader_program + BATCH_INDEX * RestorerOp::SIZE as u64 + BATCH_BYTES;
        let leader_frame = batch_end.next_multiple_of(frame_align);
        let slots = (leader_frame + frame_len).next_multiple_of(page);
        let slot_len = (THREAD_PROGRAM_BYTES.next_multiple_of(frame_align) + frame_len).next_multiple_of(frame_align.max(64));
        let slot_count = threads.min(MAX_SLOTS);
        let len = (slots + slot_count * slot_len).next_multiple_of(page);
        Layout { blob_len, all_signals, fds, leader_program, leader_frame, slots, slot_len, slot_count, len }
    }

    /// Offset of slot `index`'s program.
    pub(crate) fn slot(&self, index: u64) -> u64 {
        self.slots + index * self.slot_len
    }

    /// Offset of slot `index`'s frame.
    pub(crate) fn slot_frame(&self, index: u64, frame_align: u64) -> u64 {
        self.slot(index) + THREAD_PROGRAM_BYTES.next_multiple_of(frame_align.max(16))
    }
}

/// A reply: a batch's bytes as the parasite wrote them back, results filled in.
pub(crate) struct Reply {
    bytes: Vec<u8>,
    data_offset: usize,
}

impl Reply {
    /// `bytes` as received for an assembly whose data starts at `data_offset`; `None`
    /// when shorter than that.
    pub(crate) fn new(bytes: Vec<u8>, data_offset: usize) -> Option<Reply> {
        (bytes.len() >= data_offset).then_some(Reply { bytes, data_offset })
    }

    /// The raw result of `call` (a negative errno on failure). `first` is the index of
    /// the batch's first call among the ops of the assembly (1 in a thread program).
    pub(crate) fn result_at(&self, index: usize) -> i64 {
        let at = index * RestorerOp::SIZE + 72;
        self.bytes.get(at..at + 8).map_or(i64::MIN, |b| i64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }

    /// The bytes of `buffer` as the kernel left them.
    pub(crate) fn bytes(&self, buffer: Buffer) -> &[u8] {
        let start = self.data_offset + buffer.offset;
        self.bytes.get(start..start + buffer.len).unwrap_or(&[])
    }
}

impl Call {
    /// The op index of the call in an assembly whose calls start at op `first`.
    pub(crate) fn index(self, first: usize) -> usize {
        first + self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crust_arch::{aarch64::Aarch64, ppc64le::Ppc64le, s390x::S390x, x86_64::X86_64};

    fn word<A: Abi>(bytes: &[u8], op: usize, word: usize) -> u64 {
        let at = op * RestorerOp::SIZE + word * 8;
        let raw: [u8; 8] = bytes[at..at + 8].try_into().unwrap();
        if A::word_bytes(1)[0] == 1 {
            u64::from_le_bytes(raw)
        } else {
            u64::from_be_bytes(raw)
        }
    }

    fn leader_batch_shape<A: Abi>() {
        let mut batch = Batch::new();
        let out = batch.buffer(32);
        let input = batch.input(&[1, 2, 3]);
        let call = batch.call(Sys::RtSigaction, &[Arg::V(10), Arg::V(0), Arg::B(out), Arg::V(8)]);
        batch.call(Sys::Getitimer, &[Arg::V(0), Arg::B(input)]);
        let program = 0x7000_0000;
        let assembled = leader_batch::<A>(&batch, program, 5).unwrap();
        let base = program + BATCH_INDEX * 80;
        assert_eq!(assembled.ops, 4);
        assert_eq!(assembled.data_offset, 320);
        let b = &assembled.bytes;
        assert_eq!(word::<A>(b, 0, 0), A::syscall_number(Sys::RtSigaction).unwrap());
        assert_eq!(word::<A>(b, 0, 3), base + 320, "the output buffer's address");
        assert_eq!(word::<A>(b, 0, 7), RestorerOp::CHECK_NONE);
        assert_eq!(word::<A>(b, 1, 2), base + 320 + 32, "the input buffer, 8-aligned after it");
        assert_eq!(b[320 + 32..320 + 35], [1, 2, 3]);
        // The write sends it all back and branches to the read; getpid to the epilogue.
        assert_eq!(word::<A>(b, 2, 0), A::syscall_number(Sys::Write).unwrap());
        assert_eq!((word::<A>(b, 2, 1), word::<A>(b, 2, 2), word::<A>(b, 2, 3)), (5, base, b.len() as u64));
        assert_eq!((word::<A>(b, 2, 7), word::<A>(b, 2, 8)), (RestorerOp::CHECK_BRANCH_POSITIVE, READ_INDEX));
        assert_eq!((word::<A>(b, 3, 7), word::<A>(b, 3, 8)), (RestorerOp::CHECK_BRANCH_POSITIVE, EPILOGUE_INDEX));
        assert_eq!(call.index(0), 0);
    }

    #[test]
    fn leader_batches_for_every_arch() {
        leader_batch_shape::<X86_64>();
        leader_batch_shape::<Aarch64>();
        leader_batch_shape::<Ppc64le>();
        leader_batch_shape::<S390x>();
    }

    fn only_safe_checks<A: Abi>(bytes: &[u8]) {
        for index in 0..bytes.len() / 80 {
            let nr = word::<A>(bytes, index, 0);
            if nr == RestorerOp::SIGRETURN {
                continue;
            }
            let check = word::<A>(bytes, index, 7);
            assert!(
                check == RestorerOp::CHECK_NONE || check == RestorerOp::CHECK_BRANCH_POSITIVE,
                "op {index} has check {check}, which can trap"
            );
        }
    }

    fn head_shape<A: Abi>() {
        let head = leader_head::<A>(0x1000, 0x900, 0x800, 3, 4, &[3], 0x9000).unwrap();
        assert_eq!(head.len() as u64, BATCH_INDEX * 80);
        only_safe_checks::<A>(&head);
        assert_eq!(word::<A>(&head, 0, 0), A::syscall_number(Sys::Socketpair).unwrap());
        assert_eq!(word::<A>(&head, 0, 4), 0x900);
        assert_eq!((word::<A>(&head, 2, 1), word::<A>(&head, 3, 1)), (4, 3), "close the peer, read ctl");
        assert_eq!(word::<A>(&head, 3, 8), BATCH_INDEX);
        let epilogue = EPILOGUE_INDEX as usize;
        assert_eq!(word::<A>(&head, epilogue, 1), 3, "the epilogue closes ctl first");
        assert_eq!(word::<A>(&head, epilogue + 1, 1), u64::MAX, "unused slots close -1");
        assert_eq!(word::<A>(&head, epilogue + EPILOGUE_CLOSES, 0), RestorerOp::SIGRETURN);
        assert_eq!(word::<A>(&head, epilogue + EPILOGUE_CLOSES, 1), 0x9000);
        let exit = EXIT_INDEX as usize;
        assert_eq!((word::<A>(&head, exit, 0), word::<A>(&head, exit, 1)), (A::syscall_number(Sys::Close).unwrap(), 3));
        assert_eq!(word::<A>(&head, exit + 1, 0), RestorerOp::SIGRETURN);
    }

    #[test]
    fn leader_head_for_every_arch() {
        head_shape::<X86_64>();
        head_shape::<Aarch64>();
        head_shape::<Ppc64le>();
        head_shape::<S390x>();
    }

    fn thread_shape<A: Abi>() {
        let mut batch = Batch::new();
        let out = batch.buffer(24);
        batch.call(Sys::Sigaltstack, &[Arg::V(0), Arg::B(out)]);
        let program = thread_program::<A>(&batch, 0x5000, 0x800, 9, 0x6040).unwrap();
        only_safe_checks::<A>(&program.bytes);
        let b = &program.bytes;
        assert_eq!(program.ops, 5);
        assert_eq!((word::<A>(b, 0, 0), word::<A>(b, 0, 2)), (A::syscall_number(Sys::RtSigprocmask).unwrap(), 0x800));
        assert_eq!(word::<A>(b, 1, 2), 0x5000 + program.data_offset as u64);
        assert_eq!((word::<A>(b, 2, 1), word::<A>(b, 2, 2), word::<A>(b, 2, 3)), (9, 0x5000, b.len() as u64));
        assert_eq!((word::<A>(b, 3, 0), word::<A>(b, 3, 2)), (A::syscall_number(Sys::Read).unwrap(), 0x808));
        assert_eq!(thread_sigreturn_index(1), 4);
        assert_eq!((word::<A>(b, 4, 0), word::<A>(b, 4, 1)), (RestorerOp::SIGRETURN, 0x6040));
    }

    #[test]
    fn thread_programs_for_every_arch() {
        thread_shape::<X86_64>();
        thread_shape::<Aarch64>();
        thread_shape::<Ppc64le>();
        thread_shape::<S390x>();
    }

    #[test]
    fn layout_keeps_everything_apart_and_aligned() {
        let layout = Layout::new(700, 3136, 64, 100, 4096);
        assert_eq!(layout.all_signals, 4096);
        assert_eq!(layout.slot_count, MAX_SLOTS);
        assert!(layout.leader_program >= layout.fds + 8);
        assert!(layout.leader_frame >= layout.leader_program + BATCH_INDEX * 80 + BATCH_BYTES);
        assert_eq!(layout.leader_frame % 64, 0);
        assert!(layout.slots >= layout.leader_frame + 3136);
        assert_eq!(layout.slot_frame(1, 64) % 64, 0);
        assert!(layout.slot_frame(0, 64) + 3136 <= layout.slot(1));
        assert!(layout.slot(MAX_SLOTS - 1) + layout.slot_len <= layout.len);
        assert_eq!(layout.len % 4096, 0);
        assert_eq!(Layout::new(700, 3136, 64, 0, 4096).slot_count, 0);
    }

    #[test]
    fn batches_too_big_are_refused() {
        let mut batch = Batch::new();
        batch.buffer(BATCH_BYTES as usize);
        assert!(matches!(leader_batch::<X86_64>(&batch, 0, 3), Err(ProgramError::TooBig { .. })));
    }

    #[test]
    fn replies_give_results_and_buffers() {
        let mut batch = Batch::new();
        let out = batch.buffer(4);
        let call = batch.call(Sys::Brk, &[]);
        let assembled = leader_batch::<X86_64>(&batch, 0, 3).unwrap();
        let mut bytes = assembled.bytes.clone();
        bytes[72..80].copy_from_slice(&(-22i64).to_ne_bytes());
        bytes[assembled.data_offset..assembled.data_offset + 4].copy_from_slice(&[9, 8, 7, 6]);
        let reply = Reply::new(bytes, assembled.data_offset).unwrap();
        assert_eq!(reply.result_at(call.index(0)), -22);
        assert_eq!(reply.bytes(out), [9, 8, 7, 6]);
    }
}
