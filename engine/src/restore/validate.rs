//! The validation of a restore's images: one pure function over the loaded images
//! ([`validate`]), run before anything is planned, forked or opened. It refuses what
//! the kernel would not hold (a comm longer than TASK_COMM_LEN, more signal actions
//! than signals, an fd above `fs.nr_open`, a pid above `kernel.pid_max`), what cannot
//! be one tree (a pid twice, a parent outside the tree, an fd twice in one table, an fd
//! naming a file that files.img lacks), values outside their enum (a task state, an fd
//! type), areas that overlap or wrap, and missing images that the inventory, the
//! pstree, the file entries or crust's own list of images imply.
//!
//! Each refusal is one line naming the image, the entry and the field:
//! `restore: core-42.img: tc.task_state 77 is not a task state (1 alive, 2 dead, 3 stopped)`.
//!
//! What it accepts is what CRIU 4.2 writes too: ids in `ids-PID.img` instead of the
//! core, zombies with only a core image, no image where CRIU writes no entry (an empty
//! fd table, pipes without data), ghost files without chunks.

use std::collections::BTreeMap;

use crust_images::{pb, ImageKind};

use crate::model::vma as vs;
use crate::model::{SECCOMP_MODE_FILTER, TASK_ALIVE, TASK_DEAD, TASK_STOPPED};
use crate::restore::images::{Images, ProcessImages};

/// One refusal: the image, and what in it is wrong (the entry and the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restore: {image}: {what}")]
pub struct ValidateError {
    pub image: String,
    pub what: String,
}

/// The host's limits a restore must fit in, read once before validating.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// /proc/sys/kernel/pid_max: every pid and tid must be below it.
    pub pid_max: u32,
    /// /proc/sys/fs/nr_open: every fd must be below it, with room for crust's own.
    pub nr_open: u32,
}

impl Limits {
    /// The kernel's own ceilings (PID_MAX_LIMIT, the largest `fs.nr_open`): what any
    /// host could hold.
    pub(crate) const KERNEL: Limits = Limits { pid_max: PID_MAX_LIMIT + 1, nr_open: NR_OPEN_MAX };

    /// This host's limits; the kernel's where /proc does not say.
    pub(crate) fn read() -> Limits {
        let read = |path: &str| std::fs::read_to_string(path).ok().and_then(|text| text.trim().parse::<u32>().ok());
        Limits {
            pid_max: read("/proc/sys/kernel/pid_max").unwrap_or(Limits::KERNEL.pid_max),
            nr_open: read("/proc/sys/fs/nr_open").unwrap_or(Limits::KERNEL.nr_open),
        }
    }
}

/// The largest pid any kernel hands out (PID_MAX_LIMIT, 4 Mi on 64-bit).
pub(crate) const PID_MAX_LIMIT: u32 = 4 << 20;
/// The largest `fs.nr_open` the kernel accepts (`sysctl_nr_open_max` on 64-bit).
pub(crate) const NR_OPEN_MAX: u32 = (i32::MAX as u32) & !63;
/// fd numbers crust keeps above the tree's (error and sync pipes, slack for the
/// broker's moves): an fd this close to `nr_open` leaves no room for them.
pub(crate) const FDS_KEPT_ABOVE: u32 = 4096 + 8;
/// TASK_COMM_LEN less its NUL.
pub(crate) const COMM_MAX: usize = 15;
/// Signal actions a task has: 64 signals but SIGKILL and SIGSTOP (CRIU writes all 62
/// or none).
pub(crate) const SIGACTIONS: usize = 62;
/// RLIM_NLIMITS.
pub(crate) const RLIMITS: usize = 16;
/// sizeof(sun_path).
pub(crate) const SUN_PATH: usize = 108;
/// PATH_MAX, with its NUL.
pub(crate) const PATH_MAX: usize = 4096;
/// Entries of `mm->saved_auxv` (AT_VECTOR_SIZE, the largest over architectures:
/// powerpc's AT_VECTOR_SIZE_ARCH 14; a ppc64le dump has 68 words on Linux 6.1).
pub(crate) const AUXV_WORDS: usize = 2 * (14 + 23 + 1);
/// NGROUPS_MAX.
pub(crate) const NGROUPS_MAX: usize = 65536;
/// The size of a siginfo_t.
pub(crate) const SIGINFO_SIZE: usize = 128;
/// Capability sets are two 32-bit words (`_KERNEL_CAPABILITY_U32S`).
pub(crate) const CAP_WORDS: usize = 2;
/// VMA status bits crust or CRIU write.
const KNOWN_VMA_STATUS: u32 = vs::REGULAR
    | vs::STACK
    | vs::VSYSCALL
    | vs::VDSO
    | 1 << 4 // VMA_FORCE_READ
    | vs::HEAP
    | vs::FILE_PRIVATE
    | vs::FILE_SHARED
    | vs::ANON_SHARED
    | vs::ANON_PRIVATE
    | vs::SYSVIPC
    | 1 << 11 // VMA_AREA_SOCKET
    | vs::VVAR
    | 1 << 13 // VMA_AREA_AIORING
    | vs::MEMFD
    | 1 << 15 // VMA_AREA_SHSTK
    | vs::GUARD
    | 1 << 27 // VMA_CLOSE
    | 1 << 28 // VMA_NO_PROT_WRITE
    | 1 << 29 // VMA_PREMMAPED
    | 1 << 30 // VMA_UNSUPP
    | 1 << 31; // VMA_DUMP_ASIS

/// Validates the images of a tree against the kernel's rules and each other, before
/// anything is created; `limits`: the host's. The first problem found, as one line.
pub(crate) fn validate(images: &Images, limits: &Limits) -> Result<(), ValidateError> {
    inventory(images)?;
    tree(images, limits)?;
    let files = file_entries(images)?;
    for process in &images.processes {
        cores(images, process)?;
        if process.is_zombie() {
            continue;
        }
        memory(process)?;
        fds(process, &files, limits)?;
        fs(process, &files)?;
    }
    implied_images(images, &files)?;
    Ok(())
}

fn refuse(image: impl Into<String>, what: impl Into<String>) -> ValidateError {
    ValidateError { image: image.into(), what: what.into() }
}

fn inventory(images: &Images) -> Result<(), ValidateError> {
    let version = images.inventory.img_version;
    if version != crust_images::IMAGES_VERSION {
        return Err(refuse(
            ImageKind::Inventory.file_name(0),
            format!("img_version {version}: only version {} images (CRIU 3.x and 4.x) are read", crust_images::IMAGES_VERSION),
        ));
    }
    Ok(())
}

/// pids and tids unique and within `pid_max`, parents before their children.
fn tree(images: &Images, limits: &Limits) -> Result<(), ValidateError> {
    let pstree = ImageKind::Pstree.file_name(0);
    let pid_max = limits.pid_max.min(PID_MAX_LIMIT + 1);
    // pid or tid → the entry that has it
    let mut owner: BTreeMap<u32, usize> = BTreeMap::new();
    for (index, process) in images.processes.iter().enumerate() {
        let p = &process.pstree;
        let check_id = |what: &str, id: u32| -> Result<(), ValidateError> {
            if id == 0 || id >= pid_max {
                return Err(refuse(&pstree, format!("entry {index}: {what} {id} is outside 1..{pid_max} (kernel.pid_max here)")));
            }
            Ok(())
        };
        check_id("pid", p.pid)?;
        if let Some(&first) = owner.get(&p.pid) {
            let whose = if images.processes[first].pstree.pid == p.pid { "its pid" } else { "a thread id" };
            return Err(refuse(&pstree, format!("entry {index}: pid {} appears twice (entry {first} has it as {whose})", p.pid)));
        }
        owner.insert(p.pid, index);
        // 0 is what the kernel reports for a group or session led outside the dumped
        // pid namespace (a tree started under a container's init, for one).
        if p.pgid != 0 {
            check_id("pgid", p.pgid)?;
        }
        if p.sid != 0 {
            check_id("sid", p.sid)?;
        }
        if p.threads.is_empty() && !process.is_zombie() {
            return Err(refuse(&pstree, format!("entry {index}: pid {} lists no thread: a live process has at least its leader", p.pid)));
        }
        // A zombie's thread list is not read (CRIU writes an arbitrary id there).
        let threads: &[u32] = if process.is_zombie() { &[] } else { &p.threads };
        if let Some(&leader) = threads.first() {
            if leader != p.pid {
                return Err(refuse(&pstree, format!("entry {index}: threads[0] is {leader}, not the process's pid {} (the leader comes first)", p.pid)));
            }
        }
        for (thread, &tid) in threads.iter().enumerate().skip(1) {
            check_id("thread id", tid)?;
            if let Some(&first) = owner.get(&tid) {
                return Err(refuse(&pstree, format!("entry {index}: threads[{thread}] {tid} appears twice (entry {first} has it too)")));
            }
            owner.insert(tid, index);
        }
        if index > 0 {
            match owner.get(&p.ppid) {
                Some(&parent) if parent < index && images.processes[parent].pstree.pid == p.ppid => {}
                Some(_) | None => {
                    return Err(refuse(
                        &pstree,
                        format!("entry {index}: pid {} has ppid {}, which no earlier entry is (parents come before their children)", p.pid, p.ppid),
                    ))
                }
            }
            if images.processes[owner[&p.ppid]].is_zombie() {
                return Err(refuse(&pstree, format!("entry {index}: pid {} has a zombie, {}, for its parent", p.pid, p.ppid)));
            }
        }
    }
    Ok(())
}

/// files.img: ids unique, types in range; id → type.
fn file_entries(images: &Images) -> Result<BTreeMap<u32, pb::FdTypes>, ValidateError> {
    let image = ImageKind::Files.file_name(0);
    let mut files = BTreeMap::new();
    for (index, &(id, raw_type)) in images.file_entries.iter().enumerate() {
        let kind = fd_type(raw_type).ok_or_else(|| refuse(&image, format!("entry {index}: type {raw_type} is not a file type (fd_types)")))?;
        if files.insert(id, kind).is_some() {
            return Err(refuse(&image, format!("entry {index}: id {id} appears twice")));
        }
    }
    for (&id, &len) in &images.unix_names {
        if len > SUN_PATH {
            return Err(refuse(&image, format!("file {id}: usk.name is {len} bytes, a unix socket's address holds {SUN_PATH} (sun_path)")));
        }
    }
    for (&id, reg) in &images.files {
        if reg.name.len() >= PATH_MAX || reg.name.contains('\0') {
            return Err(refuse(&image, format!("file {id}: reg.name is {} bytes, over PATH_MAX ({PATH_MAX}) or with a NUL", reg.name.len())));
        }
    }
    Ok(files)
}

/// A file type an image may hold (not the in-memory-only ones, not UND).
fn fd_type(raw: i32) -> Option<pb::FdTypes> {
    pb::FdTypes::try_from(raw).ok().filter(|t| !matches!(t, pb::FdTypes::Und | pb::FdTypes::CtlTty | pb::FdTypes::AutofsPipe))
}

/// Each thread's core: task state, comm, signal actions, limits, credentials, seccomp.
/// The membarrier register commands (uapi linux/membarrier.h): GLOBAL_EXPEDITED,
/// PRIVATE_EXPEDITED, PRIVATE_EXPEDITED_SYNC_CORE, PRIVATE_EXPEDITED_RSEQ.
const MEMBARRIER_REGISTRATIONS: u32 = (1 << 2) | (1 << 4) | (1 << 6) | (1 << 8);

fn cores(images: &Images, process: &ProcessImages) -> Result<(), ValidateError> {
    let threads: Vec<u32> = if process.pstree.threads.is_empty() || process.is_zombie() { vec![process.pstree.pid] } else { process.pstree.threads.clone() };
    for (&tid, core) in threads.iter().zip(&process.cores) {
        let image = ImageKind::Core.file_name(tid.into());
        if core.tc.is_none() && tid == process.pstree.pid {
            return Err(refuse(&image, "no tc (task_core_entry): the leader's core holds the task's state"));
        }
        if let Some(tc) = &core.tc {
            if !matches!(tc.task_state, TASK_ALIVE | TASK_DEAD | TASK_STOPPED) {
                return Err(refuse(&image, format!("tc.task_state {} is not a task state (1 alive, 2 dead, 3 stopped)", tc.task_state)));
            }
            comm(&image, "tc.comm", &tc.comm)?;
            if !tc.sigactions.is_empty() && tc.sigactions.len() != SIGACTIONS {
                return Err(refuse(
                    &image,
                    format!("tc.sigactions has {} entries: a task has {SIGACTIONS} signal actions (64 signals but SIGKILL and SIGSTOP)", tc.sigactions.len()),
                ));
            }
            if let Some(rlimits) = &tc.rlimits {
                if rlimits.rlimits.len() > RLIMITS {
                    return Err(refuse(&image, format!("tc.rlimits has {} entries, the kernel has {RLIMITS} (RLIM_NLIMITS)", rlimits.rlimits.len())));
                }
            }
            let membarrier = tc.membarrier_registration_mask.unwrap_or(0);
            if membarrier & !MEMBARRIER_REGISTRATIONS != 0 {
                return Err(refuse(
                    &image,
                    format!("tc.membarrier_registration_mask {membarrier:#x} has bits of no register command (known: {MEMBARRIER_REGISTRATIONS:#x})"),
                ));
            }
            if tc.task_state == TASK_DEAD && tc.exit_code > 0xffff {
                return Err(refuse(&image, format!("tc.exit_code {:#x} is not a wait status", tc.exit_code)));
            }
            if let Some(signals) = &tc.signals_s {
                siginfos(&image, "tc.signals_s", signals)?;
            }
            if let Some(timers) = &tc.timers {
                for (index, timer) in timers.posix.iter().enumerate() {
                    if timer.it_id > i32::MAX as u32 {
                        return Err(refuse(&image, format!("tc.timers.posix[{index}].it_id {} is not a timer id", timer.it_id)));
                    }
                }
            }
        }
        if let Some(thread) = &core.thread_core {
            if let Some(name) = &thread.comm {
                comm(&image, "thread_core.comm", name)?;
            }
            if let Some(signals) = &thread.signals_p {
                siginfos(&image, "thread_core.signals_p", signals)?;
            }
            if let Some(creds) = &thread.creds {
                for (name, words) in [("cap_inh", &creds.cap_inh), ("cap_prm", &creds.cap_prm), ("cap_eff", &creds.cap_eff), ("cap_bnd", &creds.cap_bnd), ("cap_amb", &creds.cap_amb)] {
                    if words.len() > CAP_WORDS {
                        return Err(refuse(&image, format!("thread_core.creds.{name} has {} words, a capability set has {CAP_WORDS}", words.len())));
                    }
                }
                if creds.no_new_privs.is_some_and(|n| n > 1) {
                    return Err(refuse(&image, format!("thread_core.creds.no_new_privs {} is neither 0 nor 1", creds.no_new_privs.unwrap_or(0))));
                }
                if creds.groups.len() > NGROUPS_MAX {
                    return Err(refuse(&image, format!("thread_core.creds.groups has {} groups, over NGROUPS_MAX ({NGROUPS_MAX})", creds.groups.len())));
                }
            }
            let mode = thread.seccomp_mode.unwrap_or(0) as u32;
            if mode > SECCOMP_MODE_FILTER {
                return Err(refuse(&image, format!("thread_core.seccomp_mode {mode} is not a seccomp mode (0, 1 strict, 2 filter)")));
            }
            if mode == SECCOMP_MODE_FILTER {
                let filter = thread.seccomp_filter.unwrap_or(0) as usize;
                if filter >= images.seccomp.len() {
                    return Err(refuse(
                        &image,
                        format!("thread_core.seccomp_filter {filter}: {} has {} filters", ImageKind::Seccomp.file_name(0), images.seccomp.len()),
                    ));
                }
            }
            scheduling(&image, thread)?;
            if let Some(sas) = &thread.sas {
                if sas.ss_sp.checked_add(sas.ss_size).is_none() {
                    return Err(refuse(&image, format!("thread_core.sas: stack {:#x} of {:#x} bytes wraps the address space", sas.ss_sp, sas.ss_size)));
                }
            }
        }
    }
    Ok(())
}

/// A policy sched_setscheduler takes (SCHED_OTHER, FIFO, RR, BATCH or IDLE, with or
/// without SCHED_RESET_ON_FORK), a real-time priority in 1..=99 for FIFO and RR only, a
/// nice value in -20..=19.
fn scheduling(image: &str, thread: &pb::ThreadCoreEntry) -> Result<(), ValidateError> {
    let policy = thread.sched_policy.unwrap_or(0) as i32;
    let base = policy & !libc::SCHED_RESET_ON_FORK;
    if ![libc::SCHED_OTHER, libc::SCHED_FIFO, libc::SCHED_RR, libc::SCHED_BATCH, libc::SCHED_IDLE].contains(&base) {
        return Err(refuse(image, format!("thread_core.sched_policy {policy:#x} is not a policy sched_setscheduler takes (0 to 3, 5, with 0x40000000)")));
    }
    let real_time = base == libc::SCHED_FIFO || base == libc::SCHED_RR;
    let priority = thread.sched_prio.unwrap_or(0);
    if (real_time && !(1..=99).contains(&priority)) || (!real_time && priority != 0) {
        return Err(refuse(image, format!("thread_core.sched_prio {priority} under policy {policy:#x} (1 to 99 for SCHED_FIFO and SCHED_RR, else 0)")));
    }
    if let Some(nice) = thread.sched_nice.filter(|n| !(-20..=19).contains(n)) {
        return Err(refuse(image, format!("thread_core.sched_nice {nice} is outside -20..19")));
    }
    Ok(())
}

fn comm(image: &str, field: &str, comm: &str) -> Result<(), ValidateError> {
    if comm.len() > COMM_MAX || comm.contains('\0') {
        return Err(refuse(image, format!("{field} is {} bytes: the kernel keeps at most {COMM_MAX} (TASK_COMM_LEN), and no NUL", comm.len())));
    }
    Ok(())
}

fn siginfos(image: &str, field: &str, queue: &pb::SignalQueueEntry) -> Result<(), ValidateError> {
    for (index, signal) in queue.signals.iter().enumerate() {
        if signal.siginfo.len() != SIGINFO_SIZE {
            return Err(refuse(image, format!("{field}.signals[{index}].siginfo is {} bytes, a siginfo_t is {SIGINFO_SIZE}", signal.siginfo.len())));
        }
        let signo = i32::from_ne_bytes(signal.siginfo[..4].try_into().expect("4 bytes"));
        let signo_other_order = i32::from_be_bytes(signal.siginfo[..4].try_into().expect("4 bytes"));
        if !(1..=64).contains(&signo) && !(1..=64).contains(&signo_other_order) {
            return Err(refuse(image, format!("{field}.signals[{index}]: si_signo {signo} is not a signal (1-64)")));
        }
    }
    Ok(())
}

/// mm-PID.img: areas aligned, ordered, not wrapping, of known kinds; auxv size.
fn memory(process: &ProcessImages) -> Result<(), ValidateError> {
    let image = ImageKind::Mm.file_name(process.pstree.pid.into());
    let mm = &process.mm;
    if mm.mm_saved_auxv.len() > AUXV_WORDS || mm.mm_saved_auxv.len() % 2 != 0 {
        return Err(refuse(&image, format!("mm_saved_auxv has {} words: pairs, at most {AUXV_WORDS} (AT_VECTOR_SIZE)", mm.mm_saved_auxv.len())));
    }
    let mut previous_end = 0u64;
    // Guard runs (VMA_AREA_GUARD) come after every area, in order, each inside areas.
    let mut guards_end = None;
    for (index, vma) in mm.vmas.iter().enumerate() {
        let area = format!("vmas[{index}] {:#x}-{:#x}", vma.start, vma.end);
        // 4 KiB is the smallest page of every architecture crust restores.
        if vma.start >= vma.end || vma.start % 4096 != 0 || vma.end % 4096 != 0 {
            return Err(refuse(&image, format!("{area}: start must be below end, both page aligned")));
        }
        if vma.status & vs::GUARD != 0 {
            let after = guards_end.unwrap_or(0);
            if vma.start < after {
                return Err(refuse(&image, format!("{area}: guard run overlaps or precedes the guard run before it (ending at {after:#x})")));
            }
            if !covered(&mm.vmas, vma.start, vma.end) {
                return Err(refuse(&image, format!("{area}: guard run outside every area")));
            }
            guards_end = Some(vma.end);
            continue;
        }
        if guards_end.is_some() {
            return Err(refuse(&image, format!("{area}: an area after the guard runs (VMA_AREA_GUARD entries come last)")));
        }
        if vma.start < previous_end {
            return Err(refuse(&image, format!("{area} overlaps or precedes the area before it (ending at {previous_end:#x})")));
        }
        previous_end = vma.end;
        if vma.pgoff.checked_add(vma.end - vma.start).is_none() {
            return Err(refuse(&image, format!("{area}: pgoff {:#x} plus its size wraps", vma.pgoff)));
        }
        if vma.status & !KNOWN_VMA_STATUS != 0 {
            return Err(refuse(&image, format!("{area}: status {:#x} has bits no area kind has ({:#x})", vma.status, vma.status & !KNOWN_VMA_STATUS)));
        }
        if vma.prot & !((libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32) != 0 {
            return Err(refuse(&image, format!("{area}: prot {:#x} is not PROT_READ|PROT_WRITE|PROT_EXEC", vma.prot)));
        }
    }
    Ok(())
}

/// Whether the areas of `vmas` (guard runs left out; in address order, checked before)
/// cover `start..end` without a gap.
fn covered(vmas: &[pb::VmaEntry], start: u64, end: u64) -> bool {
    let mut at = start;
    for vma in vmas.iter().filter(|v| v.status & vs::GUARD == 0) {
        if vma.start <= at && at < vma.end {
            at = vma.end;
        }
        if at >= end {
            return true;
        }
    }
    false
}

/// fdinfo: every fd once, below `nr_open` with room for crust's own above it, of a
/// type in range, naming a file of files.img of the same type.
fn fds(process: &ProcessImages, files: &BTreeMap<u32, pb::FdTypes>, limits: &Limits) -> Result<(), ValidateError> {
    let image = ImageKind::Fdinfo.file_name(process.ids.files_id.into());
    let nr_open = limits.nr_open.min(NR_OPEN_MAX);
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    for (index, fd) in process.fds.iter().enumerate() {
        if let Some(first) = seen.insert(fd.fd, index) {
            return Err(refuse(&image, format!("entry {index}: fd {} is also entry {first}'s (an fd number appears once per table)", fd.fd)));
        }
        if fd.fd >= nr_open.saturating_sub(FDS_KEPT_ABOVE) {
            return Err(refuse(
                &image,
                format!("entry {index}: fd {} leaves no room below fs.nr_open ({nr_open} here) for the {FDS_KEPT_ABOVE} crust keeps above the tree's", fd.fd),
            ));
        }
        let kind = fd_type(fd.r#type).ok_or_else(|| refuse(&image, format!("entry {index}: fd {}: type {} is not a file type (fd_types)", fd.fd, fd.r#type)))?;
        match files.get(&fd.id) {
            None => {
                return Err(refuse(&image, format!("entry {index}: fd {} names file {}, which {} lacks", fd.fd, fd.id, ImageKind::Files.file_name(0))));
            }
            Some(&file_kind) if file_kind != kind => {
                return Err(refuse(
                    &image,
                    format!("entry {index}: fd {} is a {} but file {} is a {}", fd.fd, kind.as_str_name(), fd.id, file_kind.as_str_name()),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// fs-PID.img: cwd and root are files of files.img.
fn fs(process: &ProcessImages, files: &BTreeMap<u32, pb::FdTypes>) -> Result<(), ValidateError> {
    let image = ImageKind::Fs.file_name(process.pstree.pid.into());
    if let Some(umask) = process.fs.umask.filter(|&u| u > 0o777) {
        return Err(refuse(&image, format!("umask {umask:#o} has bits beyond 0777")));
    }
    for (field, id) in [("cwd_id", process.fs.cwd_id), ("root_id", process.fs.root_id)] {
        if !files.contains_key(&id) {
            return Err(refuse(&image, format!("{field} {id} is not a file of {}", ImageKind::Files.file_name(0))));
        }
    }
    Ok(())
}

/// Images the others imply: a ghost file for each unlinked file, tty-info for ttys,
/// the IPC namespace's for its id; and for a dump crust made, every image its own
/// list (`crust-checksums.img`) names.
fn implied_images(images: &Images, files: &BTreeMap<u32, pb::FdTypes>) -> Result<(), ValidateError> {
    let has = |name: &str| images.names.contains(name);
    for (&file_id, &ghost_id) in &images.ghosts {
        let ghost = ImageKind::GhostFile.file_name(ghost_id.into());
        if !has(&ghost) {
            return Err(refuse(ImageKind::RemapFpath.file_name(0), format!("file {file_id} was unlinked, but its contents ({ghost}) are missing")));
        }
    }
    if files.values().any(|&kind| kind == pb::FdTypes::Tty) && !has(&ImageKind::TtyInfo.file_name(0)) {
        return Err(refuse(ImageKind::TtyInfo.file_name(0), format!("missing, but {} holds a tty", ImageKind::Files.file_name(0))));
    }
    // An image crust-checksums.img lists and the directory lacks is refused when the
    // images are loaded (`images::load_with`), before any is read.
    if files.values().any(|&kind| kind == pb::FdTypes::Memfd) && !has(&ImageKind::MemfdInode.file_name(0)) {
        return Err(refuse(ImageKind::MemfdInode.file_name(0), format!("missing, but {} holds a memfd", ImageKind::Files.file_name(0))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::fixtures;

    /// Every fixture dump (CRIU's and crust's) passes as it is.
    #[test]
    fn fixture_dumps_are_valid() {
        for path in ["criu-fixtures/regular-file", "criu-fixtures/pipe", "criu-fixtures/socketpair", "criu-fixtures/pending-signal", "criu-fixtures/threads"] {
            let images = fixtures::load(path);
            validate(&images, &Limits::KERNEL).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    fn refusal(path: &str, change: impl FnOnce(&mut Images)) -> String {
        let mut images = fixtures::load(path);
        change(&mut images);
        match validate(&images, &Limits { pid_max: 4 << 20, nr_open: 1 << 20 }) {
            Ok(()) => panic!("accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn task_state_out_of_range() {
        let message = refusal("criu-fixtures/pipe", |images| images.processes[0].cores[0].tc.as_mut().unwrap().task_state = 77);
        assert_eq!(message, "restore: core-11769.img: tc.task_state 77 is not a task state (1 alive, 2 dead, 3 stopped)");
    }

    #[test]
    fn comm_longer_than_the_kernel_keeps() {
        let message = refusal("criu-fixtures/pipe", |images| images.processes[0].cores[0].tc.as_mut().unwrap().comm = "x".repeat(5000));
        assert_eq!(message, "restore: core-11769.img: tc.comm is 5000 bytes: the kernel keeps at most 15 (TASK_COMM_LEN), and no NUL");
    }

    #[test]
    fn forty_times_the_signal_actions() {
        let message = refusal("criu-fixtures/pending-signal", |images| {
            let tc = images.processes[0].cores[0].tc.as_mut().unwrap();
            tc.sigactions = tc.sigactions.repeat(40);
        });
        assert_eq!(
            message,
            "restore: core-12009.img: tc.sigactions has 2480 entries: a task has 62 signal actions (64 signals but SIGKILL and SIGSTOP)"
        );
    }

    #[test]
    fn fd_entry_duplicated_onto_fd_0() {
        let message = refusal("criu-fixtures/pipe", |images| {
            let fds = &mut images.processes[0].fds;
            let mut copy = fds.last().unwrap().clone();
            copy.fd = 0;
            fds.push(copy);
        });
        assert!(message.starts_with("restore: fdinfo-2.img: entry "), "{message}");
        assert!(message.ends_with(": fd 0 is also entry 0's (an fd number appears once per table)"), "{message}");
    }

    #[test]
    fn fd_past_nr_open_is_refused_not_wrapped() {
        let message = refusal("criu-fixtures/pipe", |images| images.processes[0].fds[0].fd = 2_147_483_640);
        assert!(message.contains("fd 2147483640 leaves no room below fs.nr_open (1048576 here)"), "{message}");
    }

    #[test]
    fn duplicate_pid_in_pstree_is_named() {
        let message = refusal("criu-fixtures/threads", |images| {
            let mut twin = images.processes[0].clone();
            twin.pstree.ppid = twin.pstree.pid;
            twin.pstree.threads.truncate(1);
            twin.cores.truncate(1);
            images.processes.push(twin);
        });
        assert_eq!(message, "restore: pstree.img: entry 1: pid 12122 appears twice (entry 0 has it as its pid)");
    }

    #[test]
    fn thread_id_of_another_process() {
        let message = refusal("criu-fixtures/threads", |images| {
            let mut child = images.processes[0].clone();
            child.pstree = pb::PstreeEntry { pid: 12124, ppid: 12122, pgid: child.pstree.pgid, sid: child.pstree.sid, threads: vec![12124] };
            child.cores.truncate(1);
            images.processes.push(child);
        });
        assert_eq!(message, "restore: pstree.img: entry 1: pid 12124 appears twice (entry 0 has it as a thread id)");
    }

    #[test]
    fn parent_outside_the_tree() {
        let message = refusal("criu-fixtures/threads", |images| {
            let mut child = images.processes[0].clone();
            child.pstree = pb::PstreeEntry { pid: 12200, ppid: 999, pgid: child.pstree.pgid, sid: child.pstree.sid, threads: vec![12200] };
            child.cores.truncate(1);
            images.processes.push(child);
        });
        assert!(message.contains("pid 12200 has ppid 999, which no earlier entry is"), "{message}");
    }

    #[test]
    fn pid_above_pid_max() {
        let message = refusal("criu-fixtures/pipe", |images| images.processes[0].pstree.pid = 5 << 20);
        assert!(message.starts_with("restore: pstree.img: entry 0: pid 5242880 is outside 1..4194304"), "{message}");
    }

    #[test]
    fn session_and_group_outside_the_pid_namespace_are_accepted() {
        let mut images = fixtures::load("criu-fixtures/pipe");
        images.processes[0].pstree.sid = 0;
        images.processes[0].pstree.pgid = 0;
        assert!(validate(&images, &Limits::KERNEL).is_ok());
    }

    #[test]
    fn fd_naming_a_missing_file() {
        let message = refusal("criu-fixtures/pipe", |images| images.file_entries.clear());
        assert!(message.starts_with("restore: fdinfo-2.img: entry 0: fd "), "{message}");
        assert!(message.ends_with("which files.img lacks"), "{message}");
    }

    #[test]
    fn fd_type_out_of_range() {
        let message = refusal("criu-fixtures/pipe", |images| images.processes[0].fds[0].r#type = 300);
        assert!(message.contains("type 300 is not a file type (fd_types)"), "{message}");
    }

    #[test]
    fn overlapping_areas() {
        let message = refusal("criu-fixtures/pipe", |images| {
            let vmas = &mut images.processes[0].mm.vmas;
            vmas[1].start = vmas[0].start;
        });
        assert!(message.starts_with("restore: mm-11769.img: vmas[1] "), "{message}");
    }

    #[test]
    fn guard_runs_inside_areas_after_them() {
        let guard = |start: u64, end: u64| pb::VmaEntry { start, end, pgoff: 0, shmid: 0, prot: 0, flags: 0, status: vs::GUARD, fd: -1, madv: None, fdflags: None };
        let mut images = fixtures::load("criu-fixtures/pipe");
        let vmas = &mut images.processes[0].mm.vmas;
        let big = vmas.iter().find(|v| v.end - v.start > 2 * 4096).expect("an area of 3 pages or more");
        let (start, end) = (big.start, big.end);
        vmas.push(guard(start, start + 4096));
        vmas.push(guard(end - 4096, end));
        if let Err(error) = validate(&images, &Limits { pid_max: 4 << 20, nr_open: 1 << 20 }) {
            panic!("guard runs inside an area refused: {error}");
        }
        let message = refusal("criu-fixtures/pipe", |images| {
            let vmas = &mut images.processes[0].mm.vmas;
            let gap = vmas.windows(2).find(|w| w[0].end < w[1].start).expect("a gap between areas")[0].end;
            vmas.push(guard(gap, gap + 4096));
        });
        assert!(message.contains("guard run outside every area"), "{message}");
        let message = refusal("criu-fixtures/pipe", |images| {
            let vmas = &mut images.processes[0].mm.vmas;
            let first = vmas[0];
            vmas.insert(1, guard(first.start, first.start + 4096));
        });
        assert!(message.contains("an area after the guard runs"), "{message}");
    }

    #[test]
    fn area_wrapping_the_address_space() {
        let message = refusal("criu-fixtures/pipe", |images| {
            let last = images.processes[0].mm.vmas.last_mut().unwrap();
            last.pgoff = u64::MAX - 100;
        });
        assert!(message.contains("plus its size wraps"), "{message}");
    }

    /// restore-fuzz, 2026-12-06: a live process whose pstree entry lists no thread
    /// panicked in planning (index out of bounds in program/thread.rs).
    #[test]
    fn live_process_without_threads() {
        let message = refusal("criu-fixtures/pipe", |images| images.processes[0].pstree.threads.clear());
        assert_eq!(message, "restore: pstree.img: entry 0: pid 11769 lists no thread: a live process has at least its leader");
    }

    #[test]
    fn scheduling_out_of_range() {
        let thread = |images: &mut Images| images.processes[0].cores[0].thread_core.as_mut().unwrap().clone();
        for (policy, priority, nice, expected) in [
            (6, 0, 0, "thread_core.sched_policy 0x6 is not a policy"),
            (1, 0, 0, "thread_core.sched_prio 0 under policy 0x1"),
            (0x4000_0002, 100, 0, "thread_core.sched_prio 100 under policy 0x40000002"),
            (3, 5, 0, "thread_core.sched_prio 5 under policy 0x3"),
            (0, 0, 20, "thread_core.sched_nice 20 is outside -20..19"),
        ] {
            let message = refusal("criu-fixtures/pipe", |images| {
                let mut core = thread(images);
                (core.sched_policy, core.sched_prio, core.sched_nice) = (Some(policy), Some(priority), Some(nice));
                images.processes[0].cores[0].thread_core = Some(core);
            });
            assert!(message.starts_with(&format!("restore: core-11769.img: {expected}")), "{message}");
        }
    }

    #[test]
    fn umask_beyond_0777() {
        let message = refusal("criu-fixtures/pipe", |images| images.processes[0].fs.umask = Some(0o22 * 4096));
        assert!(message.starts_with("restore: fs-11769.img: umask"), "{message}");
    }

    #[test]
    fn other_image_version() {
        let message = refusal("criu-fixtures/pipe", |images| images.inventory.img_version = 1);
        assert!(message.starts_with("restore: inventory.img: img_version 1"), "{message}");
    }

    #[test]
    fn seccomp_filter_index_past_the_filters() {
        let message = refusal("criu-fixtures/pipe", |images| {
            let thread = images.processes[0].cores[0].thread_core.as_mut().unwrap();
            thread.seccomp_mode = Some(2);
            thread.seccomp_filter = Some(7);
        });
        assert!(message.contains("thread_core.seccomp_filter 7"), "{message}");
    }
}
