//! The op-program builder of a restore: for one process, the restorer's program of
//! syscalls (each with a check) and its data arena, the helper fds it reads from, and
//! the syscalls the tracer injects into each thread afterwards. Generic over the
//! architecture's [`Abi`] and a pure function of the images, the tree plan and the
//! [`HostLayout`], so every architecture's program is built and snapshotted on any
//! host (`snapshots/`): syscall numbers, the vDSO block's ops, the address-space top
//! and the byte order of every struct in the arena are the target's.
//!
//! Sections, in program order:
//! - [`memory`]: unmap everything but the restorer area, the vDSO block, System V
//!   attaches, every area with its pages (premapped ones moved into place);
//! - [`task`]: mm fields, auxv and exe, process prctls, signal actions, itimers,
//!   limits, personality, pending signals, the other threads, POSIX timers;
//! - closing the helper fds;
//! - [`thread`]: per thread, what the tracer injects (rseq, altstack, robust list,
//!   clear_tid, name, signals, pdeath signal, seccomp, credentials, dumpable).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crust_arch::{Abi, RestorerOp, Sys};
use crust_images::pb;

use crate::restore::images::{Images, ProcessImages};
use crate::restore::layout::HostLayout;
use crate::restore::memory::{sysv_attaches, Premap, SegmentSizes};
use crate::restore::plan::{round_up, PlanError};
use crate::restore::tree::TreePlan;

mod memory;
mod task;
mod thread;

#[cfg(test)]
mod tests;

/// A syscall the tracer injects into a restored thread: number by meaning, arguments,
/// and what it does (for errors).
pub(crate) type InjectedCall = (Sys, [u64; 6], String);

/// An fd on a file under /proc/PID of a process or thread of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcFileFd {
    pub(crate) fd: i32,
    /// The process or thread, as the tree numbers it.
    pub(crate) pid: i32,
    /// The path below /proc/PID (`/stat`, empty for the directory itself).
    pub(crate) rest: String,
    pub(crate) flags: i32,
    pub(crate) pos: u64,
    pub(crate) cloexec: bool,
}

/// What one live process needs, computed before the first fork.
pub(crate) struct Plan {
    pub(crate) area: u64,
    pub(crate) area_size: u64,
    pub(crate) code_size: u64,
    /// Bytes of the data arena followed by the ops.
    pub(crate) data: Blob,
    pub(crate) ops_offset: u64,
    pub(crate) ops_bytes: Blob,
    /// The ops, as built (`ops_bytes` is what runs).
    #[cfg(test)]
    pub(crate) ops: Vec<RestorerOp>,
    /// What each op does, for crust's messages (the restored processes never read them).
    pub(crate) descriptions: Descriptions,
    /// Indices of the ops whose failure is logged, not fatal (`Program::call_logged`).
    pub(crate) logged_ops: Vec<usize>,
    /// Helper fds: (number, path, open flags) opened in the child before the restorer.
    pub(crate) helpers: Vec<(i32, PathBuf, i32)>,
    /// Helper fds from the broker (unlinked mapped files, memfds): (number, file id,
    /// open mode of a description of its own, `None`: the broker's).
    pub(crate) broker_helpers: Vec<(i32, u32, Option<i32>)>,
    /// Shared anonymous objects this process maps (their fds are closed by the restorer).
    pub(crate) shmem_used: Vec<u64>,
    /// Per thread (the leader first): syscalls the tracer injects before release.
    pub(crate) thread_ops: Vec<Vec<InjectedCall>>,
    /// pidfds of live processes of the tree, opened by the leader once every process
    /// exists: (fd number, pid as the tree numbers it, pidfd_open flags, close-on-exec).
    pub(crate) pidfds: Vec<(i32, i32, u64, bool)>,
    /// Files under /proc/PID of the tree, opened by the leader once every process exists.
    pub(crate) proc_files: Vec<ProcFileFd>,
    /// Owners of this process's files (F_SETOWN_EX, F_SETSIG), set by the leader once
    /// every process exists: (fd number, owner as the tree numbers it), one fd per file.
    pub(crate) owners: Vec<(i32, pb::FownEntry)>,
    /// Private anonymous areas filled before the children are forked (`premap`).
    pub(crate) premap: Vec<Premap>,
    /// The pages images this process's pages are in (this dump's first, then parent
    /// dumps'), as `Premap` runs name them.
    pub(crate) page_files: Vec<PathBuf>,
    /// Lazy restore: the areas mapped empty, whose pages the lazy-pages daemon fills.
    pub(crate) lazy_areas: Vec<crate::lazy::LazyArea>,
    /// The big private anonymous areas mapped empty, whose pages crust puts in before
    /// the process runs (`lazy/fill.rs`).
    pub(crate) fill_areas: Vec<crate::lazy::LazyArea>,
    /// By run of `fill_areas` in order (or empty): the stored checksum the up-front pass
    /// left for the fill to take (`restore/mod.rs`).
    pub(crate) fill_checks: Vec<Option<crate::memory::checksums::RunCheck>>,
}

impl Plan {
    /// Re-expresses the paths of the pages images (this dump's and its parents') for a
    /// process that opens them from elsewhere, through `reach` (in a mount namespace of
    /// the tree's own: relative to the images directory, its working directory there).
    pub(crate) fn reach_pages_files(&mut self, reach: impl Fn(&Path) -> std::io::Result<PathBuf>) -> std::io::Result<()> {
        let mut reached = Vec::new();
        for path in &self.page_files {
            reached.push(reach(path)?);
        }
        for helper in &mut self.helpers {
            if let Some(index) = self.page_files.iter().position(|p| p == &helper.1) {
                helper.1 = reached[index].clone();
            }
        }
        self.page_files = reached;
        Ok(())
    }
}

/// Bytes of a plan: built on the heap, then moved with every plan's into one shared
/// mapping by [`share`].
pub(crate) enum Blob {
    Heap(Vec<u8>),
    /// `len` bytes at `at` of a mapping shared by the plans.
    Shared { bytes: Arc<crate::sys::SharedBytes>, at: usize, len: usize },
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blob::Heap(bytes) => bytes,
            Blob::Shared { bytes, at, len } => &bytes.as_slice()[*at..*at + *len],
        }
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

/// The descriptions of a program's ops as one text (a line each), not a `String` each:
/// about a hundred per process, read only by crust when an op fails or is logged.
pub(crate) struct Descriptions {
    text: Blob,
    /// Where each line ends in `text`.
    ends: Vec<u32>,
}

impl Descriptions {
    fn new(lines: &[String]) -> Descriptions {
        let mut text = Vec::with_capacity(lines.iter().map(String::len).sum());
        let mut ends = Vec::with_capacity(lines.len());
        for line in lines {
            text.extend_from_slice(line.as_bytes());
            ends.push(text.len() as u32);
        }
        Descriptions { text: Blob::Heap(text), ends }
    }

    /// The description of op `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)? as usize;
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        std::str::from_utf8(self.text.get(start..end)?).ok()
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.ends.len()).filter_map(|index| self.get(index))
    }
}

impl PartialEq for Descriptions {
    fn eq(&self, other: &Self) -> bool {
        self.ends == other.ends && *self.text == *other.text
    }
}

impl std::fmt::Debug for Descriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries((0..self.ends.len()).filter_map(|index| self.get(index))).finish()
    }
}

/// Moves the bytes of every plan (restorer data, ops, descriptions: about 30 KB a
/// process) into one shared mapping, so that the forks of the tree copy none of their
/// page table entries: each process faults in its own plan's pages alone. The plans
/// stay as they are if the mapping takes addresses in `keep_clear` (restorer areas, the
/// premap arena) or cannot be made.
pub(crate) fn share(plans: &mut [Option<Plan>], keep_clear: &[(u64, u64)]) {
    let mut parts: Vec<&[u8]> = Vec::new();
    for plan in plans.iter().flatten() {
        parts.extend([&*plan.data, &*plan.ops_bytes, &*plan.descriptions.text]);
    }
    let shared = match crate::sys::SharedBytes::copy_of(&parts) {
        Ok(shared) => shared,
        Err(error) => {
            log::debug!("plans kept on the heap: no shared mapping for them ({error})");
            return;
        }
    };
    let (start, end) = shared.range();
    let mut clear = keep_clear.iter().copied().chain(plans.iter().flatten().map(|p| (p.area, p.area + p.area_size)));
    if let Some((s, e)) = clear.find(|&(s, e)| s < end && start < e) {
        log::debug!("plans kept on the heap: their shared mapping {start:#x}-{end:#x} took {s:#x}-{e:#x}, which the restore needs");
        return;
    }
    let shared = Arc::new(shared);
    let mut at = 0;
    let mut place = |blob: &mut Blob| {
        let len = blob.len();
        *blob = Blob::Shared { bytes: Arc::clone(&shared), at, len };
        at += len;
    };
    for plan in plans.iter_mut().flatten() {
        place(&mut plan.data);
        place(&mut plan.ops_bytes);
        place(&mut plan.descriptions.text);
    }
    crate::sys::release_free_heap();
}

/// A restorer program under construction for architecture `A`, whose data arena is
/// loaded at a fixed address.
pub(crate) struct Program<A: Abi> {
    /// Address the data arena will have.
    data_base: u64,
    /// The arena's bytes.
    pub(crate) data: Vec<u8>,
    /// The ops, in order.
    pub(crate) ops: Vec<RestorerOp>,
    /// What each op does, for error messages.
    pub(crate) descriptions: Vec<String>,
    /// Ops that may fail without stopping the program, whose failure is logged once the
    /// restorer is done (`Plan::logged_ops`).
    pub(crate) logged: Vec<usize>,
    /// The first syscall `A` has no number for.
    missing: Option<Sys>,
    abi: PhantomData<A>,
}

impl<A: Abi> Program<A> {
    /// A new program whose data arena starts at `data_base`.
    pub(crate) fn new(data_base: u64) -> Self {
        Program { data_base, data: Vec::new(), ops: Vec::new(), descriptions: Vec::new(), logged: Vec::new(), missing: None, abi: PhantomData }
    }

    /// Puts `bytes` in the arena (16-byte aligned) and returns their future address.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> u64 {
        while !self.data.len().is_multiple_of(16) {
            self.data.push(0);
        }
        let address = self.data_base + self.data.len() as u64;
        self.data.extend_from_slice(bytes);
        address
    }

    /// Puts 64-bit words in the arena, in `A`'s byte order; returns their address.
    pub(crate) fn words(&mut self, words: &[u64]) -> u64 {
        let bytes: Vec<u8> = words.iter().flat_map(|&w| A::word_bytes(w)).collect();
        self.data(&bytes)
    }

    /// Appends a syscall op.
    pub(crate) fn call(&mut self, call: Sys, args: [u64; 6], check: u64, expect: u64, description: String) {
        let nr = match A::syscall_number(call) {
            Some(nr) => nr,
            None => {
                self.missing.get_or_insert(call);
                u64::MAX - 1
            }
        };
        self.raw(RestorerOp { nr, args, check, expect, result: 0 }, description);
    }

    /// Appends a syscall op whose failure does not stop the program but is logged by the
    /// tracer afterwards, from the result the restorer stored.
    pub(crate) fn call_logged(&mut self, call: Sys, args: [u64; 6], description: String) {
        self.logged.push(self.ops.len());
        self.call(call, args, RestorerOp::CHECK_NONE, 0, description);
    }

    /// Appends a ready-made op.
    pub(crate) fn raw(&mut self, op: RestorerOp, description: String) {
        log::debug!("restorer op {}: {description}: nr {} args {:x?}", self.ops.len(), op.nr, op.args);
        self.ops.push(op);
        self.descriptions.push(description);
    }

    /// Ends the program and returns the ops as bytes in `A`'s byte order (ten words
    /// each, the layout every restorer blob reads); `pid` names the process in errors.
    pub(crate) fn finish_ops(&mut self, pid: i32) -> Result<Vec<u8>, PlanError> {
        if let Some(call) = self.missing {
            return Err(PlanError::Unsupported { pid, what: format!("{call:?} on {}", A::NAME) });
        }
        self.raw(RestorerOp { nr: RestorerOp::END, ..Default::default() }, "end".into());
        Ok(self
            .ops
            .iter()
            .flat_map(|op| {
                let [a0, a1, a2, a3, a4, a5] = op.args;
                [op.nr, a0, a1, a2, a3, a4, a5, op.check, op.expect, op.result]
            })
            .flat_map(A::word_bytes)
            .collect())
    }
}

/// Whether `A` is little-endian (its word 1 starts with the 1).
fn little_endian<A: Abi>() -> bool {
    A::word_bytes(1)[0] == 1
}

/// A u16 in `A`'s byte order.
pub(crate) fn u16_bytes<A: Abi>(value: u16) -> [u8; 2] {
    if little_endian::<A>() { value.to_le_bytes() } else { value.to_be_bytes() }
}

/// A u32 in `A`'s byte order.
pub(crate) fn u32_bytes<A: Abi>(value: u32) -> [u8; 4] {
    if little_endian::<A>() { value.to_le_bytes() } else { value.to_be_bytes() }
}

/// An i32 in `A`'s byte order.
pub(crate) fn i32_bytes<A: Abi>(value: i32) -> [u8; 4] {
    u32_bytes::<A>(value as u32)
}

/// An i32 from bytes in `A`'s byte order.
pub(crate) fn i32_from<A: Abi>(bytes: [u8; 4]) -> i32 {
    if little_endian::<A>() { i32::from_le_bytes(bytes) } else { i32::from_be_bytes(bytes) }
}

/// Plans process `index` of the tree for architecture `A`: its helper fds, the
/// restorer area (a gap free in its layout, crust's and the premap arena), the op
/// program and each thread's injected calls.
pub(crate) fn plan_process<A: Abi>(
    images: &Images,
    index: usize,
    tree: &TreePlan,
    sysv: &SegmentSizes,
    layout: &HostLayout,
) -> Result<Plan, PlanError> {
    let process = &images.processes[index];
    let premapped = &tree.premaps[index];
    let pid = process.pid();
    let page = layout.page_size;
    let mm = &process.mm;
    let check_vdso = layout.check_vdso_layout(pid, mm)?;
    let helpers = memory::helper_fds(images, process, tree.helper_base)?;
    check_fd_files(images, process)?;

    // The area: code, then data, then ops; size estimated generously first.
    let code_size = round_up(layout.restorer_code_size, page);
    let estimate = code_size
        + round_up(
            64 * 1024 + (mm.vmas.len() as u64 + process.pagemap.len() as u64 + process.cores.len() as u64) * 4 * 80 + 32 * 1024,
            page,
        );
    let attaches = sysv_attaches(pid, mm, sysv, page)?;
    let mut whole: Vec<(u64, u64)> = attaches.iter().map(|a| (a.base, a.base + a.segment_len)).collect();
    whole.extend(tree.premap_arena);
    let area = layout.find_gap::<A>(pid, mm, estimate, &whole)?;
    let own_block = layout.own_vdso_block();
    let block_size = own_block.iter().map(|&(s, e)| e - s).sum::<u64>().max(page);
    let mut used = whole.clone();
    used.push((area, area + estimate));
    let scratch = layout.find_gap::<A>(pid, mm, block_size, &used)?;
    let mut program = Program::<A>::new(area + code_size);

    // crust's own vDSO block is kept only to be moved where the image had one: a process
    // that unmapped its vDSO comes back without one (aarch64 kept it, and [vvar] with it).
    let kept_block: &[(u64, u64)] = if check_vdso.is_some() { &own_block } else { &[] };
    memory::unmap_all_but(&mut program, mm, premapped, (area, area + estimate), kept_block);
    if let Some(block_start) = check_vdso {
        for op in A::map_vdso_ops(block_start, &own_block, scratch) {
            program.raw(op, format!("map vdso block at {block_start:#x}"));
        }
    }
    memory::attach_sysv(&mut program, &attaches);
    let parent = images.processes.iter().find(|p| p.pstree.pid == process.pstree.ppid && index > 0);
    let mut emptied = Vec::new();
    let premap = memory::map_areas(&mut program, process, parent, &helpers, &tree.shmem, premapped, tree.lazy_pages, &mut emptied)?;
    let (lazy_areas, fill_areas) = if tree.lazy_pages { (emptied, Vec::new()) } else { (Vec::new(), emptied) };
    task::set_mm(&mut program, mm, helpers.exe_fd);
    let sigtrap_action = task::process_state(&mut program, process, layout)?;

    // Close the helpers, then drop privileges last.
    let shmem_used: Vec<u64> = {
        let mut used: Vec<u64> = mm.vmas.iter().filter(|v| v.status & crate::model::vma::ANON_SHARED != 0 && v.status & crate::model::vma::SYSVIPC == 0).map(|v| v.shmid).collect();
        used.sort_unstable();
        used.dedup();
        used
    };
    let helper_numbers = helpers.opened.iter().map(|h| h.0).chain(helpers.from_broker.iter().map(|h| h.0));
    for fd in helper_numbers.chain(shmem_used.iter().map(|id| tree.shmem[id].0)) {
        program.call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("close helper fd {fd}"));
    }
    for fd in [tree.error_fd, tree.sync_fd] {
        program.call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0, format!("close helper fd {fd}"));
    }
    let thread_ops = thread::thread_ops(&mut program, images, process, sigtrap_action, layout)?;

    for (fd, path, flags) in &helpers.opened {
        log::debug!("pid {pid} helper fd {fd}: {} (flags {flags:#o})", path.display());
    }
    let ops_bytes = program.finish_ops(pid)?;
    let ops_offset = code_size + round_up(program.data.len() as u64, 16);
    let area_size = round_up(ops_offset + ops_bytes.len() as u64, page);
    if area_size > estimate {
        return Err(PlanError::Unsupported { pid, what: format!("a restorer program of {area_size} bytes") });
    }
    let pidfds = process
        .fds
        .iter()
        .filter_map(|fd| {
            let entry = images.pidfds.get(&fd.id).filter(|p| p.nspid != -1)?;
            let flags = (entry.flags as i32 & (libc::O_NONBLOCK | libc::O_EXCL)) as u64;
            Some((fd.fd as i32, entry.nspid, flags, fd.flags & libc::FD_CLOEXEC as u32 != 0))
        })
        .collect();
    let proc_files = process
        .fds
        .iter()
        .filter_map(|fd| {
            let (pid, rest) = images.proc_files.get(&fd.id)?;
            let reg = images.files.get(&fd.id)?;
            let flags = reg.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
            Some(ProcFileFd { fd: fd.fd as i32, pid: *pid, rest: rest.clone(), flags, pos: reg.pos, cloexec: fd.flags & libc::FD_CLOEXEC as u32 != 0 })
        })
        .collect();
    let mut owned = std::collections::BTreeSet::new();
    let owners = process
        .fds
        .iter()
        .filter_map(|fd| Some((fd.fd as i32, *images.owners.get(&fd.id).filter(|_| owned.insert(fd.id))?)))
        .collect();
    Ok(Plan {
        pidfds,
        proc_files,
        owners,
        area,
        area_size: estimate,
        code_size,
        data: Blob::Heap(program.data),
        ops_offset,
        ops_bytes: Blob::Heap(ops_bytes),
        #[cfg(test)]
        ops: program.ops,
        descriptions: Descriptions::new(&program.descriptions),
        logged_ops: program.logged,
        helpers: helpers.opened,
        broker_helpers: helpers.from_broker,
        shmem_used,
        thread_ops,
        premap,
        page_files: process.pages.files.clone(),
        lazy_areas,
        fill_areas,
        fill_checks: Vec::new(),
    })
}

/// Every regular file a process holds must be in files.img.
fn check_fd_files(images: &Images, process: &ProcessImages) -> Result<(), PlanError> {
    for fd in process.fds.iter().filter(|fd| fd.r#type == pb::FdTypes::Reg as i32) {
        if !images.files.contains_key(&fd.id) {
            return Err(PlanError::BadImage {
                image: "fdinfo".into(),
                what: format!("pid {} fd {} names file id {} that files.img lacks", process.pid(), fd.fd, fd.id),
            });
        }
    }
    Ok(())
}

/// The shared anonymous objects of the tree: shmid → (fd number, size).
pub(crate) type Shmem = BTreeMap<u64, (i32, u64)>;
