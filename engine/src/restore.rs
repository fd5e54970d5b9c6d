//! The restore pipeline: read the images, fork a child with the dumped PID, let it
//! rebuild its fds and then run the restorer's op program, which replaces its whole
//! address space with the dumped one; finally put the registers back through ptrace and
//! let it go.
//!
//! Invariant: until the restored process is released, it is traced with
//! PTRACE_O_EXITKILL, so if anything fails (or crust dies) it is killed: no
//! half-restored process outlives a failed restore.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crust_arch::{Abi, Host, HostArch, RestorerOp, RestorerOutcome, Sys};
use crust_images::pb;
use crust_images::{ImageKind, ImageReader};

use crate::infect::RemoteThread;
use crate::procfs;
use crate::program::Program;
use crate::sys;
use crate::vma_status as vs;

/// What `crust restore` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Directory holding the images.
    pub dir: PathBuf,
    /// Return once the restored process runs on its own (`-d`).
    pub detach: bool,
    /// Write the restored root's PID here.
    pub pidfile: Option<PathBuf>,
    /// Keep the caller's session and process group.
    pub shell_job: bool,
}

/// How a restore ended.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The restored process.
    pub pid: i32,
    /// Wall time until it ran on its own.
    pub total: Duration,
    /// With `detach` off: the restored process's exit code once it ended.
    pub exit_code: Option<i32>,
}

/// Why a restore failed. No restored process is left behind.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore: {image}: {source}")]
    Image { image: String, source: crust_images::ImageError },
    #[error("restore: {image}: {what}")]
    BadImage { image: String, what: String },
    #[error("restore pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("restore pid {pid}: pid is busy (a process with that pid exists); kill it or restore in a new pid namespace")]
    PidBusy { pid: i32 },
    #[error("restore pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    #[error("restore pid {pid}: {what}")]
    Child { pid: i32, what: String },
    #[error("restore pid {pid}: restorer step {index} ({description}) failed: {errno}")]
    RestorerStep { pid: i32, index: u64, description: String, errno: String },
    #[error("restore pid {pid}: {source}")]
    Arch { pid: i32, source: crust_arch::HostError },
    #[error("restore pid {pid}: {source}")]
    Infect { pid: i32, source: crate::infect::InfectError },
}

fn io_err(pid: i32, what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Io { pid, what, source }
}

/// Everything read from the images for one process.
struct Images {
    pstree: pb::PstreeEntry,
    core: pb::CoreEntry,
    mm: pb::MmEntry,
    pages_id: u32,
    pagemap: Vec<pb::PagemapEntry>,
    files: BTreeMap<u32, pb::RegFileEntry>,
    fds: Vec<pb::FdinfoEntry>,
    fs: pb::FsEntry,
    /// reg-file id → ghost id
    ghosts: BTreeMap<u32, u32>,
}

fn image_path(dir: &Path, kind: ImageKind, id: u64) -> PathBuf {
    dir.join(kind.file_name(id))
}

fn read_all<M: prost::Message + Default>(dir: &Path, kind: ImageKind, id: u64) -> Result<Vec<M>, RestoreError> {
    let path = image_path(dir, kind, id);
    crust_images::read_entries::<M>(&path)
        .map_err(|source| RestoreError::Image { image: path.display().to_string(), source })
}

fn read_one<M: prost::Message + Default>(dir: &Path, kind: ImageKind, id: u64) -> Result<M, RestoreError> {
    let path = image_path(dir, kind, id);
    let mut all = read_all::<M>(dir, kind, id)?;
    if all.len() != 1 {
        return Err(RestoreError::BadImage {
            image: path.display().to_string(),
            what: format!("expected one entry, found {}", all.len()),
        });
    }
    Ok(all.remove(0))
}

fn read_images(dir: &Path) -> Result<Images, RestoreError> {
    let pstrees: Vec<pb::PstreeEntry> = read_all(dir, ImageKind::Pstree, 0)?;
    let pstree_name = image_path(dir, ImageKind::Pstree, 0).display().to_string();
    let pstree = match pstrees.as_slice() {
        [one] => one.clone(),
        [] => return Err(RestoreError::BadImage { image: pstree_name, what: "no process".into() }),
        many => {
            return Err(RestoreError::Unsupported { pid: many[0].pid as i32, what: format!("a tree of {} processes", many.len()) })
        }
    };
    let pid = pstree.pid as u64;
    if pstree.threads.len() > 1 {
        return Err(RestoreError::Unsupported { pid: pid as i32, what: format!("{} threads", pstree.threads.len()) });
    }
    let core: pb::CoreEntry = read_one(dir, ImageKind::Core, pid)?;
    let mm: pb::MmEntry = read_one(dir, ImageKind::Mm, pid)?;

    let pagemap_path = image_path(dir, ImageKind::Pagemap, pid);
    let pagemap_name = pagemap_path.display().to_string();
    let image_err = |source| RestoreError::Image { image: pagemap_name.clone(), source };
    let mut reader = ImageReader::open(&pagemap_path).map_err(image_err)?;
    let head: pb::PagemapHead = reader
        .next_entry()
        .map_err(image_err)?
        .ok_or_else(|| RestoreError::BadImage { image: pagemap_name.clone(), what: "no pagemap head".into() })?;
    let mut pagemap = Vec::new();
    while let Some(entry) = reader.next_entry::<pb::PagemapEntry>().map_err(image_err)? {
        pagemap.push(entry);
    }

    let files = read_all::<pb::FileEntry>(dir, ImageKind::Files, 0)?
        .into_iter()
        .filter_map(|f| f.reg.map(|reg| (f.id, reg)))
        .collect();
    let ids = core.ids.clone().unwrap_or_default();
    let fds = read_all(dir, ImageKind::Fdinfo, ids.files_id as u64)?;
    let fs = read_one(dir, ImageKind::Fs, pid)?;
    let ghosts = if image_path(dir, ImageKind::RemapFpath, 0).exists() {
        read_all::<pb::RemapFilePathEntry>(dir, ImageKind::RemapFpath, 0)?
            .into_iter()
            .map(|r| (r.orig_id, r.remap_id))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(Images { pstree, core, mm, pages_id: head.pages_id, pagemap, files, fds, fs, ghosts })
}

/// Restores the process dumped in `options.dir`.
pub fn restore(options: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let images = read_images(&options.dir)?;
    let pid = images.pstree.pid as i32;
    if Path::new(&format!("/proc/{pid}")).exists() {
        return Err(RestoreError::PidBusy { pid });
    }
    let plan = plan(options, &images)?;

    let (sync_read, sync_write) = pipe(pid)?;
    let (error_read, error_write) = pipe(pid)?;
    let child = match sys::fork_with_pid(pid) {
        Ok(0) => {
            drop(sync_write);
            drop(error_read);
            child_main(&plan, &images, options, sync_read, error_write)
        }
        Ok(child) => child,
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => return Err(RestoreError::PidBusy { pid }),
        Err(error) => return Err(RestoreError::Io { pid, what: "clone3 with set_tid".into(), source: error }),
    };
    drop(sync_read);
    drop(error_write);
    let mut guard = ChildGuard { pid: child, released: false };
    sys::seize_thread(child, libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL)
        .map_err(io_err(pid, "seize restored child"))?;
    let mut sync_write = fs::File::from(sync_write);
    sync_write.write_all(b"g").map_err(io_err(pid, "release child"))?;
    drop(sync_write);

    wait_for_restorer(pid, &plan, error_read)?;
    finish_thread(pid, &plan, &images)?;
    guard.released = true;
    if let Some(pidfile) = &options.pidfile {
        fs::write(pidfile, format!("{pid}")).map_err(io_err(pid, format!("write {}", pidfile.display())))?;
    }
    let total = started.elapsed();
    let exit_code = if options.detach {
        None
    } else {
        match sys::wait_thread(pid).map_err(io_err(pid, "wait for restored process"))? {
            sys::WaitEvent::Exited(code) => Some(code),
            sys::WaitEvent::Signaled(signal) => Some(128 + signal),
            sys::WaitEvent::Stopped { .. } => None,
        }
    };
    Ok(RestoreReport { pid, total, exit_code })
}

/// Kills the child unless it was released.
struct ChildGuard {
    pid: i32,
    released: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.released {
            let _ = sys::send_signal(self.pid, libc::SIGKILL);
            while let Ok(sys::WaitEvent::Stopped { .. }) = sys::wait_thread(self.pid) {}
        }
    }
}

fn pipe(pid: i32) -> Result<(OwnedFd, OwnedFd), RestoreError> {
    let (read, write) = std::io::pipe().map_err(io_err(pid, "pipe"))?;
    Ok((OwnedFd::from(read), OwnedFd::from(write)))
}

/// What the child needs, computed before the fork.
struct Plan {
    area: u64,
    area_size: u64,
    code_size: u64,
    /// Bytes of the data arena followed by the ops.
    data: Vec<u8>,
    ops_offset: u64,
    ops_bytes: Vec<u8>,
    descriptions: Vec<String>,
    /// Helper fds: (number, path, open flags) opened in the child before the restorer.
    helpers: Vec<(i32, PathBuf, i32)>,
    /// Helper fd numbers for the error and sync pipes.
    error_fd: i32,
    sync_fd: i32,
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

fn plan(options: &RestoreOptions, images: &Images) -> Result<Plan, RestoreError> {
    let pid = images.pstree.pid as i32;
    let page = sys::page_size();
    let mm = &images.mm;
    let check_vdso = check_vdso_layout(pid, mm)?;

    // Helper fds live above every fd the target has.
    let max_target_fd = images.fds.iter().map(|f| f.fd as i32).max().unwrap_or(2).max(2);
    let base = max_target_fd + 1;
    let error_fd = base;
    let sync_fd = base + 1;
    let mut helpers: Vec<(i32, PathBuf, i32)> = Vec::new();
    let pages_path = options.dir.join(ImageKind::Pages.file_name(images.pages_id as u64));
    let pages_fd = base + 2;
    helpers.push((pages_fd, pages_path, libc::O_RDONLY));
    let mut file_fds: BTreeMap<u32, i32> = BTreeMap::new();
    for vma in &mm.vmas {
        if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) != 0 && !file_fds.contains_key(&(vma.shmid as u32)) {
            let reg = images.files.get(&(vma.shmid as u32)).ok_or_else(|| RestoreError::BadImage {
                image: "mm".into(),
                what: format!("vma {:#x} names file id {} that files.img lacks", vma.start, vma.shmid),
            })?;
            let path = PathBuf::from(&reg.name);
            if !path.exists() {
                return Err(RestoreError::Io {
                    pid,
                    what: format!("file {} mapped at {:#x}", reg.name, vma.start),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
            let fd = base + 3 + file_fds.len() as i32;
            file_fds.insert(vma.shmid as u32, fd);
            helpers.push((fd, path, (vma.fdflags.unwrap_or(0) as i32) & libc::O_ACCMODE));
        }
    }
    let exe_fd = base + 3 + file_fds.len() as i32;
    let exe = images.files.get(&mm.exe_file_id).ok_or_else(|| RestoreError::BadImage {
        image: "mm".into(),
        what: format!("exe_file_id {} not in files.img", mm.exe_file_id),
    })?;
    helpers.push((exe_fd, PathBuf::from(&exe.name), libc::O_RDONLY));
    for fd in &images.fds {
        let reg = images.files.get(&fd.id).ok_or_else(|| RestoreError::BadImage {
            image: "fdinfo".into(),
            what: format!("fd {} names file id {} that files.img lacks", fd.fd, fd.id),
        })?;
        if !images.ghosts.contains_key(&fd.id) && !Path::new(&reg.name).exists() {
            return Err(RestoreError::Io {
                pid,
                what: format!("file {} for fd {}", reg.name, fd.fd),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
    }

    // The area: code, then data, then ops; size estimated generously first.
    let code = HostArch::restorer_blob();
    let code_size = round_up(code.len() as u64, page);
    let estimate = code_size + round_up(64 * 1024 + (mm.vmas.len() as u64 + images.pagemap.len() as u64) * 4 * 80 + 32 * 1024, page);
    let area = find_gap(pid, mm, estimate, &[])?;
    let own_block = own_vdso_block(pid)?;
    let block_size = own_block.iter().map(|&(s, e)| e - s).sum::<u64>().max(page);
    let scratch = find_gap(pid, mm, block_size, &[(area, area + estimate)])?;
    let mut program = Program::new(area + code_size);

    // 1. Drop everything but the area (and, where the architecture moves it, crust's
    //    own vDSO block): crust's own mappings go.
    let mut keep: Vec<(u64, u64)> = vec![(area, area + estimate)];
    if HostArch::MOVES_OWN_VDSO {
        keep.extend(own_block.iter().copied());
    }
    keep.sort_unstable();
    let mut from = 0u64;
    for &(start, end) in keep.iter().chain(std::iter::once(&(HostArch::TASK_SIZE, HostArch::TASK_SIZE))) {
        if start > from {
            program.call(
                Sys::Munmap,
                [from, start - from, 0, 0, 0, 0],
                RestorerOp::CHECK_EQ,
                0,
                format!("unmap {from:#x}-{start:#x}"),
            );
        }
        from = from.max(end);
    }
    // 2. vDSO and vvar where they were.
    if let Some(block_start) = check_vdso {
        for op in HostArch::map_vdso_ops(block_start, &own_block, scratch) {
            program.raw(op, format!("map vdso block at {block_start:#x}"));
        }
    }
    // 3. Every memory area, with its pages.
    let mut page_offset = 0u64;
    let mut pagemap = images.pagemap.iter().peekable();
    for vma in &mm.vmas {
        if vma.status & (vs::VDSO | vs::VVAR | vs::VSYSCALL) != 0 {
            continue;
        }
        let len = vma.end - vma.start;
        let mut runs = Vec::new();
        while let Some(entry) = pagemap.peek() {
            if entry.vaddr >= vma.end {
                break;
            }
            let bytes = entry.nr_pages as u64 * page;
            if entry.vaddr < vma.start || entry.vaddr + bytes > vma.end {
                return Err(RestoreError::BadImage {
                    image: "pagemap".into(),
                    what: format!("entry {:#x}+{} pages crosses vma {:#x}-{:#x}", entry.vaddr, entry.nr_pages, vma.start, vma.end),
                });
            }
            runs.push((entry.vaddr, bytes, page_offset));
            page_offset += bytes;
            pagemap.next();
        }
        let prot = vma.prot as i32;
        let map_prot = if runs.is_empty() { prot } else { prot | libc::PROT_WRITE };
        let keep = libc::MAP_SHARED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN;
        let flags = (vma.flags as i32 & keep) | libc::MAP_FIXED;
        let fd = if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) != 0 {
            file_fds[&(vma.shmid as u32)] as i64 as u64
        } else {
            u64::MAX
        };
        let offset = if fd == u64::MAX { 0 } else { vma.pgoff };
        program.call(
            Sys::Mmap,
            [vma.start, len, map_prot as u64, flags as u64, fd, offset],
            RestorerOp::CHECK_EQ,
            vma.start,
            format!("map vma {:#x}-{:#x}", vma.start, vma.end),
        );
        for (addr, bytes, file_offset) in runs {
            program.call(
                Sys::Pread64,
                [pages_fd as u64, addr, bytes, file_offset, 0, 0],
                RestorerOp::CHECK_EQ,
                bytes,
                format!("read pages {:#x}-{:#x} from pages-{}.img", addr, addr + bytes, images.pages_id),
            );
        }
        if map_prot != prot {
            program.call(
                Sys::Mprotect,
                [vma.start, len, prot as u64, 0, 0, 0],
                RestorerOp::CHECK_EQ,
                0,
                format!("protect vma {:#x}-{:#x}", vma.start, vma.end),
            );
        }
        let madv = vma.madv.unwrap_or(0);
        for advice in 0..64u64 {
            if madv & (1 << advice) != 0 {
                let lenient = advice == libc::MADV_HUGEPAGE as u64 || advice == libc::MADV_NOHUGEPAGE as u64;
                program.call(
                    Sys::Madvise,
                    [vma.start, len, advice, 0, 0, 0],
                    if lenient { RestorerOp::CHECK_NONE } else { RestorerOp::CHECK_EQ },
                    0,
                    format!("madvise({advice}) vma {:#x}-{:#x}", vma.start, vma.end),
                );
            }
        }
    }
    if pagemap.peek().is_some() {
        return Err(RestoreError::BadImage { image: "pagemap".into(), what: "entries outside every vma".into() });
    }
    // 4. The mm fields, auxv and exe link.
    let auxv = program.words(&mm.mm_saved_auxv);
    let mut mm_map = vec![
        mm.mm_start_code, mm.mm_end_code, mm.mm_start_data, mm.mm_end_data, mm.mm_start_brk,
        mm.mm_brk, mm.mm_start_stack, mm.mm_arg_start, mm.mm_arg_end, mm.mm_env_start,
        mm.mm_env_end, auxv,
    ];
    mm_map.push((mm.mm_saved_auxv.len() as u64 * 8) | ((exe_fd as u64) << 32));
    let mm_map_addr = program.words(&mm_map);
    program.call(
        Sys::Prctl,
        [libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64, mm_map_addr, 104, 0, 0],
        RestorerOp::CHECK_EQ,
        0,
        "prctl(PR_SET_MM_MAP)".into(),
    );
    if let Some(dumpable) = mm.dumpable {
        program.call(Sys::Prctl, [libc::PR_SET_DUMPABLE as u64, dumpable as u64, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0, "set dumpable".into());
    }
    // The thread's rseq area, registered again at its dumped address.
    if let Some(rseq) = images.core.thread_core.as_ref().and_then(|t| t.rseq_entry.as_ref()) {
        program.call(
            Sys::Rseq,
            [rseq.rseq_abi_pointer, rseq.rseq_abi_size as u64, 0, rseq.signature as u64, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            format!("register rseq at {:#x}", rseq.rseq_abi_pointer),
        );
    }
    // 5. Signal handlers, altstack, timers, limits, personality.
    let tc = images.core.tc.clone().unwrap_or_default();
    let signals = (1..=64u64).filter(|&s| s != libc::SIGKILL as u64 && s != libc::SIGSTOP as u64);
    for (signal, sa) in signals.zip(tc.sigactions.iter()) {
        let act = program.words(&[sa.sigaction, sa.flags, sa.restorer, sa.mask]);
        program.call(Sys::RtSigaction, [signal, act, 0, 8, 0, 0], RestorerOp::CHECK_EQ, 0, format!("sigaction {signal}"));
    }
    let thread_core = images.core.thread_core.clone().unwrap_or_default();
    if let Some(sas) = thread_core.sas.filter(|s| s.ss_flags & libc::SS_DISABLE as u32 == 0) {
        let stack = program.words(&[sas.ss_sp, (sas.ss_flags & !(libc::SS_ONSTACK as u32)) as u64, sas.ss_size]);
        program.call(Sys::Sigaltstack, [stack, 0, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "sigaltstack".into());
    }
    if let Some(timers) = &tc.timers {
        for (which, t) in [&timers.real, &timers.virt, &timers.prof].into_iter().enumerate() {
            if t.isec | t.iusec | t.vsec | t.vusec == 0 {
                continue;
            }
            // A timer due at this very moment still has to fire.
            let (vsec, vusec) = if t.vsec | t.vusec == 0 { (0, 1) } else { (t.vsec, t.vusec) };
            let value = program.words(&[t.isec, t.iusec, vsec, vusec]);
            program.call(Sys::Setitimer, [which as u64, value, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("setitimer {which}"));
        }
    }
    if let Some(rlimits) = &tc.rlimits {
        for (resource, limit) in rlimits.rlimits.iter().enumerate() {
            let value = program.words(&[limit.cur, limit.max]);
            program.call(Sys::Prlimit64, [0, resource as u64, value, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("setrlimit {resource}"));
        }
    }
    program.call(Sys::Personality, [tc.personality as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0, "personality".into());
    // 6. Pending signals (every signal is blocked until the tracer sets the real mask).
    let queue = |program: &mut Program, list: &Option<pb::SignalQueueEntry>, private: bool| {
        for info in list.iter().flat_map(|q| q.signals.iter()) {
            let signo = info.siginfo.get(..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
            let mut bytes = info.siginfo.clone();
            bytes.resize(sys::SIGINFO_SIZE, 0);
            let addr = program.data(&bytes);
            if private {
                program.call(Sys::RtTgsigqueueinfo, [pid as u64, pid as u64, signo as u64, addr, 0, 0], RestorerOp::CHECK_EQ, 0, format!("queue signal {signo} (thread)"));
            } else {
                program.call(Sys::RtSigqueueinfo, [pid as u64, signo as u64, addr, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("queue signal {signo}"));
            }
        }
    };
    queue(&mut program, &tc.signals_s, false);
    queue(&mut program, &thread_core.signals_p, true);
    // 7. Close the helpers, then drop privileges last.
    for (fd, _, _) in &helpers {
        program.call(Sys::Close, [*fd as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("close helper fd {fd}"));
    }
    for fd in [error_fd, sync_fd] {
        program.call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0, format!("close helper fd {fd}"));
    }
    if let Some(creds) = &thread_core.creds {
        let (uid, gid) = (creds.uid, creds.gid);
        // SAFETY-free: getuid/getgid through std is not offered; compare against /proc.
        let own = procfs::parse_key_values(&fs::read_to_string("/proc/self/status").unwrap_or_default());
        let own_uid = own.get("Uid").and_then(|v| procfs::parse_id_quad(v)).unwrap_or([0; 4]);
        let own_gid = own.get("Gid").and_then(|v| procfs::parse_id_quad(v)).unwrap_or([0; 4]);
        if own_uid != [creds.uid, creds.euid, creds.suid, creds.fsuid] || own_gid != [creds.gid, creds.egid, creds.sgid, creds.fsgid] {
            let groups: Vec<u8> = creds.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
            let groups_addr = program.data(&groups);
            program.call(Sys::Setgroups, [creds.groups.len() as u64, groups_addr, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "setgroups".into());
            program.call(Sys::Setresgid, [gid as u64, creds.egid as u64, creds.sgid as u64, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "setresgid".into());
            program.call(Sys::Setresuid, [uid as u64, creds.euid as u64, creds.suid as u64, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "setresuid".into());
        }
    }

    for (fd, path, flags) in &helpers {
        log::debug!("helper fd {fd}: {} (flags {flags:#o})", path.display());
    }
    let ops_bytes = program.finish_ops();
    let ops_offset = code_size + round_up(program.data.len() as u64, 16);
    let area_size = round_up(ops_offset + ops_bytes.len() as u64, page);
    if area_size > estimate {
        return Err(RestoreError::Unsupported { pid, what: format!("a restorer program of {area_size} bytes") });
    }
    Ok(Plan {
        area,
        area_size: estimate,
        code_size,
        data: program.data,
        ops_offset,
        ops_bytes,
        descriptions: program.descriptions,
        helpers,
        error_fd,
        sync_fd,
    })
}

/// Checks that this kernel's vDSO and vvar pages have the sizes and relative places the
/// image recorded, and returns where the block of vvar and vDSO pages starts.
fn check_vdso_layout(pid: i32, mm: &pb::MmEntry) -> Result<Option<u64>, RestoreError> {
    let image_special: Vec<(u64, u64, bool)> = mm
        .vmas
        .iter()
        .filter(|v| v.status & (vs::VDSO | vs::VVAR) != 0)
        .map(|v| (v.start, v.end, v.status & vs::VDSO != 0))
        .collect();
    let Some(&(vdso_start, _, _)) = image_special.iter().find(|v| v.2) else { return Ok(None) };
    let own = procfs::parse_maps(&fs::read_to_string("/proc/self/maps").map_err(io_err(pid, "read /proc/self/maps"))?)
        .map_err(|e| RestoreError::Child { pid, what: e.to_string() })?;
    let own_special: Vec<(u64, u64, bool)> = own
        .iter()
        .filter(|m| m.name == "[vdso]" || m.name.starts_with("[vvar"))
        .map(|m| (m.start, m.end, m.name == "[vdso]"))
        .collect();
    let own_vdso = own_special.iter().find(|v| v.2).map(|v| v.0).unwrap_or(0);
    let relative = |list: &[(u64, u64, bool)], base: u64| -> Vec<(i64, u64, bool)> {
        list.iter().map(|&(s, e, is_vdso)| (s as i64 - base as i64, e - s, is_vdso)).collect()
    };
    if relative(&image_special, vdso_start) != relative(&own_special, own_vdso) {
        return Err(RestoreError::Unsupported {
            pid,
            what: format!(
                "a vdso/vvar layout {:?} that differs from this kernel's {:?}",
                relative(&image_special, vdso_start),
                relative(&own_special, own_vdso)
            ),
        });
    }
    Ok(image_special.iter().map(|v| v.0).min())
}

/// crust's own vvar and vDSO areas, in address order.
fn own_vdso_block(pid: i32) -> Result<Vec<(u64, u64)>, RestoreError> {
    let own = procfs::parse_maps(&fs::read_to_string("/proc/self/maps").map_err(io_err(pid, "read /proc/self/maps"))?)
        .map_err(|e| RestoreError::Child { pid, what: e.to_string() })?;
    Ok(own.iter().filter(|m| m.name == "[vdso]" || m.name.starts_with("[vvar")).map(|m| (m.start, m.end)).collect())
}

/// Finds an address range free both in the target's layout and in ours (and outside
/// `also_used`), for the restorer.
fn find_gap(pid: i32, mm: &pb::MmEntry, size: u64, also_used: &[(u64, u64)]) -> Result<u64, RestoreError> {
    let own = procfs::parse_maps(&fs::read_to_string("/proc/self/maps").map_err(io_err(pid, "read /proc/self/maps"))?)
        .map_err(|e| RestoreError::Child { pid, what: e.to_string() })?;
    let mut used: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    used.extend(own.iter().map(|m| (m.start, m.end)));
    used.extend(also_used.iter().copied());
    used.retain(|&(s, _)| s < HostArch::TASK_SIZE);
    used.sort_unstable();
    let page = sys::page_size();
    let guard = 16 * page;
    let mut candidate_end = HostArch::TASK_SIZE - (1 << 30);
    for &(start, end) in used.iter().rev() {
        if end + guard + size + guard <= candidate_end && end < candidate_end {
            return Ok((candidate_end - guard - size) / page * page);
        }
        candidate_end = candidate_end.min(start);
    }
    if candidate_end > size + 2 * guard + (1 << 20) {
        return Ok(candidate_end - guard - size);
    }
    Err(RestoreError::Unsupported { pid, what: "an address space with no room for the restorer".into() })
}

/// The restored process's first life: crust code, forked with the right PID. Rebuilds
/// session, fds, fs state, then maps the restorer and jumps to it. Never returns.
fn child_main(plan: &Plan, images: &Images, options: &RestoreOptions, sync: OwnedFd, error: OwnedFd) -> ! {
    let message = match child_setup(plan, images, options, sync, error) {
        Ok(()) => "restorer returned".to_string(),
        Err(message) => message,
    };
    let mut out = fd_file(plan.error_fd);
    let _ = out.write_all(message.as_bytes());
    sys::exit_now(1)
}

/// A `File` over a raw fd the restore child owns for the rest of its life.
fn fd_file(fd: i32) -> fs::File {
    #[allow(unsafe_code)]
    // SAFETY: `fd` is open in this child and nothing else closes it before exit.
    unsafe {
        fs::File::from_raw_fd(fd)
    }
}

fn child_setup(plan: &Plan, images: &Images, options: &RestoreOptions, sync: OwnedFd, error: OwnedFd) -> Result<(), String> {
    let pid = images.pstree.pid as i32;
    // Move the pipes to their helper numbers (through copies above both, so neither
    // lands on the other), then close every other fd we inherited.
    let above = plan.error_fd.max(plan.sync_fd) + 1;
    let error_copy = sys::dup_at_least(error.as_raw_fd(), above).map_err(|e| format!("copy error pipe: {e}"))?;
    let sync_copy = sys::dup_at_least(sync.as_raw_fd(), above).map_err(|e| format!("copy sync pipe: {e}"))?;
    drop(error);
    drop(sync);
    sys::place_fd(error_copy, plan.error_fd, true).map_err(|e| format!("place error pipe: {e}"))?;
    sys::place_fd(sync_copy, plan.sync_fd, true).map_err(|e| format!("place sync pipe: {e}"))?;
    let inherited: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("list own fds: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in inherited {
        if fd != plan.error_fd && fd != plan.sync_fd {
            sys::close_fd(fd);
        }
    }
    // Wait until the tracer has seized us.
    let mut byte = [0u8; 1];
    let mut sync_file = fd_file(plan.sync_fd);
    sync_file.read_exact(&mut byte).map_err(|e| format!("wait for tracer: {e}"))?;
    std::mem::forget(sync_file);

    let leader = images.pstree.sid == images.pstree.pid;
    if !options.shell_job {
        if leader {
            sys::new_session().map_err(|e| format!("setsid: {e}"))?;
        } else if images.pstree.pgid == images.pstree.pid {
            sys::set_process_group(0).map_err(|e| format!("setpgid: {e}"))?;
        }
    }
    for (number, path, flags) in &plan.helpers {
        let fd = sys::open_raw(path, *flags | libc::O_CLOEXEC, 0).map_err(|e| format!("open {}: {e}", path.display()))?;
        if fd != *number {
            sys::place_fd(fd, *number, true).map_err(|e| format!("place {}: {e}", path.display()))?;
            sys::close_fd(fd);
        }
    }
    crate::files::restore_fds(&images.files, &images.fds, &images.ghosts, &options.dir).map_err(|e| format!("pid {pid}: {e}"))?;
    let cwd = images.files.get(&images.fs.cwd_id).map(|r| PathBuf::from(&r.name));
    let root = images.files.get(&images.fs.root_id).map(|r| PathBuf::from(&r.name));
    if let Some(root) = root.filter(|r| r != Path::new("/")) {
        sys::change_root(&root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
    }
    if let Some(cwd) = cwd {
        std::env::set_current_dir(&cwd).map_err(|e| format!("chdir {}: {e}", cwd.display()))?;
    }
    if let Some(umask) = images.fs.umask {
        sys::set_umask(umask);
    }
    if let Some(tc) = &images.core.tc {
        sys::set_comm(&tc.comm).map_err(|e| format!("set comm: {e}"))?;
    }
    sys::block_all_signals().map_err(|e| format!("block signals: {e}"))?;
    sys::unregister_own_rseq(HostArch::thread_pointer()).map_err(|e| format!("unregister own rseq: {e}"))?;

    // Map the restorer area and jump.
    let area = plan.area;
    sys::map_anonymous_at(area, plan.area_size as usize, libc::PROT_READ | libc::PROT_WRITE)
        .map_err(|e| format!("map restorer area at {area:#x}: {e}"))?;
    #[allow(unsafe_code)]
    // SAFETY: area..area+area_size was just mapped writable for this purpose; code,
    // data and ops fit in it (checked when planning).
    unsafe {
        sys::copy_to_address(area, HostArch::restorer_blob());
        sys::copy_to_address(area + plan.code_size, &plan.data);
        sys::copy_to_address(area + plan.ops_offset, &plan.ops_bytes);
    }
    sys::protect(area, plan.code_size as usize, libc::PROT_READ | libc::PROT_EXEC)
        .map_err(|e| format!("protect restorer code: {e}"))?;
    HostArch::enter_restorer(area + HostArch::restorer_entry_offset() as u64, area + plan.ops_offset)
}

fn wait_for_restorer(pid: i32, plan: &Plan, error_read: OwnedFd) -> Result<(), RestoreError> {
    loop {
        match sys::wait_thread(pid).map_err(io_err(pid, "wait for restorer"))? {
            sys::WaitEvent::Stopped { signal, .. } if signal == libc::SIGTRAP => {
                let regs = HostArch::read_regs(pid).map_err(|source| RestoreError::Arch { pid, source })?;
                return match HostArch::restorer_outcome(&regs.gpr, plan.area + plan.ops_offset) {
                    RestorerOutcome::Done => Ok(()),
                    RestorerOutcome::Failed { index, result } => Err(RestoreError::RestorerStep {
                        pid,
                        index,
                        description: plan.descriptions.get(index as usize).cloned().unwrap_or_default(),
                        errno: io::Error::from_raw_os_error(-result as i32).to_string(),
                    }),
                };
            }
            sys::WaitEvent::Stopped { signal, event } if event != 0 => {
                let _ = signal;
                sys::continue_thread(pid, 0).map_err(io_err(pid, "continue"))?;
            }
            sys::WaitEvent::Stopped { signal, .. } => {
                let regs = HostArch::read_regs(pid).ok();
                return Err(RestoreError::Child {
                    pid,
                    what: format!(
                        "restorer got signal {signal} at ip {:#x}",
                        regs.map(|r| HostArch::ip(&r.gpr)).unwrap_or(0)
                    ),
                });
            }
            sys::WaitEvent::Exited(_) | sys::WaitEvent::Signaled(_) => {
                let mut message = String::new();
                let _ = fs::File::from(error_read).read_to_string(&mut message);
                return Err(RestoreError::Child { pid, what: if message.is_empty() { "child died".into() } else { message } });
            }
        }
    }
}

/// Unmaps the restorer through one injected syscall, then sets the dumped registers and
/// signal mask and lets the process go.
fn finish_thread(pid: i32, plan: &Plan, images: &Images) -> Result<(), RestoreError> {
    let now = HostArch::read_regs(pid).map_err(|source| RestoreError::Arch { pid, source })?;
    let syscall_ip = plan.area + HostArch::restorer_syscall_offset() as u64;
    let mut remote = RemoteThread::new(pid, syscall_ip, now.gpr);
    log::debug!("restorer done at ip {:#x}; unmapping {:#x}+{:#x} via syscall at {syscall_ip:#x}", HostArch::ip(&now.gpr), plan.area, plan.area_size);
    let result = remote.syscall(Sys::Munmap, [plan.area, plan.area_size, 0, 0, 0, 0]).map_err(|source| {
        if let Ok(regs) = HostArch::read_regs(pid) {
            log::error!("restored thread stopped at ip {:#x} sp {:#x}", HostArch::ip(&regs.gpr), HostArch::sp(&regs.gpr));
        }
        if let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) {
            log::debug!("maps of the restored process:\n{maps}");
        }
        RestoreError::Infect { pid, source }
    })?;
    if result != 0 {
        return Err(RestoreError::Child { pid, what: format!("unmap restorer: {}", io::Error::from_raw_os_error(-result as i32)) });
    }
    let dumped = HostArch::regs_from_core(&images.core, &now.ext)
        .map_err(|what| RestoreError::BadImage { image: format!("core-{pid}.img"), what })?;
    let gpr = HostArch::resume_regs(&dumped.gpr, false);
    let restarts = HostArch::ip(&gpr) != HostArch::ip(&dumped.gpr);
    HostArch::write_ext(pid, &dumped.ext).map_err(|source| RestoreError::Arch { pid, source })?;
    let mask = images
        .core
        .thread_core
        .as_ref()
        .and_then(|t| t.blk_sigset)
        .or(images.core.tc.as_ref().map(|t| t.blk_sigset))
        .unwrap_or(0);
    crate::infect::release_thread(pid, &gpr, restarts, mask).map_err(|source| RestoreError::Infect { pid, source })?;
    Ok(())
}
