//! System V IPC: the shared memory segments, semaphore sets and message queues of a
//! tree's own IPC namespace, with the namespace's limits (CRIU's ipcns-var, ipcns-shm,
//! ipcns-sem and ipcns-msg images; segment data in pagemap-shmem-ID.img).
//!
//! A tree that shares crust's IPC namespace shares its objects with the rest of the
//! host: they are not the tree's to dump, and a segment it has attached must still exist
//! at restore (`host_segment_size`). A tree in an IPC namespace of its own gets a new
//! one at restore: its root creates every object again under its old id (through the
//! `*_next_id` sysctls) before anything attaches, and crust marks the segments that were
//! already removed once every process has attached them again.
//!
//! Dump reads the objects without changing them: messages with MSG_COPY, semaphores with
//! GETALL, segment data through a read-only attach (which the kernel counts in the
//! segment's attach time and last pid). Semaphore undo lists are not dumped.

use crate::sys::sysv;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use crust_images::{pb, ImageKind, ImageReader, ImageWriter};

use std::os::unix::fs::FileExt;

use crust_images::StreamReader;

use crate::files::memfd::fill_shmem_pages;
use crate::files::FileError;

/// Why a System V IPC namespace could not be dumped or made again.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// `what` names the object and the step.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// An image (the error names it).
    #[error(transparent)]
    Image(#[from] crust_images::ImageError),
    /// A segment's pages (the error names the segment).
    #[error(transparent)]
    Pages(#[from] FileError),
    /// What crust refuses: an object it does not handle, an image that contradicts
    /// itself, a namespace that is not the tree's.
    #[error("{what}")]
    Refused { what: String },
}

impl IpcError {
    fn refused(what: impl Into<String>) -> IpcError {
        IpcError::Refused { what: what.into() }
    }
}

/// For `map_err`: step `what` failed.
fn ipc_io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IpcError {
    let what = what.into();
    move |source| IpcError::Io { what, source }
}

/// Largest piece of segment data read or written at once.
const CHUNK: u64 = 1 << 20;

pub(crate) use sysv::{SHM_DEST, SHM_LOCKED};

/// The id crust gives the tree's IPC namespace in its images (`ids.ipc_ns_id`).
pub(crate) const NS_ID: u32 = 2;

fn ns_link(pid: i32) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/ipc")).ok()
}

/// Whether the processes `pids` (the root first) live in an IPC namespace of their own;
/// `Err` names a process in a namespace other than the root's.
pub(crate) fn tree_has_own_namespace(pids: &[i32]) -> Result<bool, (i32, String)> {
    let root = ns_link(pids[0]);
    for &pid in &pids[1..] {
        let ns = ns_link(pid);
        if ns != root {
            return Err((pid, format!("an IPC namespace ({}) other than the tree root's ({})", show(&ns), show(&root))));
        }
    }
    Ok(root != fs::read_link("/proc/self/ns/ipc").ok())
}

fn show(link: &Option<std::path::PathBuf>) -> String {
    link.as_ref().map(|l| l.display().to_string()).unwrap_or_else(|| "?".into())
}

/// Runs `work` in a thread of its own that has entered `pid`'s IPC namespace (the
/// namespace is a property of the thread; crust's other threads stay where they are).
fn in_namespace_of<T: Send>(pid: i32, work: impl FnOnce() -> Result<T, IpcError> + Send) -> Result<T, IpcError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                sysv::enter_namespace_of(pid).map_err(ipc_io(format!("enter the IPC namespace of pid {pid}")))?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(IpcError::refused("the IPC thread panicked")))
    })
}

fn desc(id: i32, perm: &sysv::Perm) -> pb::IpcDescEntry {
    pb::IpcDescEntry {
        key: perm.key as u32,
        uid: perm.uid,
        gid: perm.gid,
        cuid: perm.cuid,
        cgid: perm.cgid,
        mode: perm.mode,
        id: id as u32,
    }
}

const SYSCTL: &str = "/proc/sys";

fn read_sysctl(name: &str) -> Result<Vec<i128>, IpcError> {
    let path = format!("{SYSCTL}/{name}");
    let text = fs::read_to_string(&path).map_err(ipc_io(format!("read {path}")))?;
    text.split_whitespace().map(|w| w.parse::<i128>().map_err(|e| IpcError::refused(format!("{path}: {w:?}: {e}")))).collect()
}

fn read_one(name: &str) -> Result<i128, IpcError> {
    read_sysctl(name)?.first().copied().ok_or_else(|| IpcError::refused(format!("{SYSCTL}/{name} is empty")))
}

/// Like `read_one`, for a sysctl older kernels lack.
fn read_optional(name: &str) -> Result<Option<i128>, IpcError> {
    if Path::new(&format!("{SYSCTL}/{name}")).exists() {
        read_one(name).map(Some)
    } else {
        Ok(None)
    }
}

fn write_sysctl(name: &str, value: &str) -> Result<(), IpcError> {
    let path = format!("{SYSCTL}/{name}");
    fs::write(&path, value).map_err(ipc_io(format!("write {value} to {path}")))
}

/// The namespace's limits and next ids, as the calling thread's namespace has them.
fn read_var() -> Result<pb::IpcVarEntry, IpcError> {
    let u32_of = |v: i128| v as u32;
    Ok(pb::IpcVarEntry {
        sem_ctls: read_sysctl("kernel/sem")?.into_iter().map(u32_of).collect(),
        msg_ctlmax: u32_of(read_one("kernel/msgmax")?),
        msg_ctlmnb: u32_of(read_one("kernel/msgmnb")?),
        msg_ctlmni: u32_of(read_one("kernel/msgmni")?),
        auto_msgmni: read_optional("kernel/auto_msgmni")?.map(u32_of).unwrap_or(0),
        shm_ctlmax: read_one("kernel/shmmax")? as u64,
        shm_ctlall: read_one("kernel/shmall")? as u64,
        shm_ctlmni: u32_of(read_one("kernel/shmmni")?),
        shm_rmid_forced: u32_of(read_one("kernel/shm_rmid_forced")?),
        mq_queues_max: u32_of(read_one("fs/mqueue/queues_max")?),
        mq_msg_max: u32_of(read_one("fs/mqueue/msg_max")?),
        mq_msgsize_max: u32_of(read_one("fs/mqueue/msgsize_max")?),
        mq_msg_default: read_optional("fs/mqueue/msg_default")?.map(u32_of),
        mq_msgsize_default: read_optional("fs/mqueue/msgsize_default")?.map(u32_of),
        msg_next_id: read_optional("kernel/msg_next_id")?.map(u32_of),
        sem_next_id: read_optional("kernel/sem_next_id")?.map(u32_of),
        shm_next_id: read_optional("kernel/shm_next_id")?.map(u32_of),
    })
}

/// Sets the namespace's limits (the calling process's namespace) from `var`.
fn write_var(var: &pb::IpcVarEntry) -> Result<(), IpcError> {
    if !var.sem_ctls.is_empty() {
        let text: Vec<String> = var.sem_ctls.iter().map(|v| v.to_string()).collect();
        write_sysctl("kernel/sem", &text.join(" "))?;
    }
    write_sysctl("kernel/msgmax", &var.msg_ctlmax.to_string())?;
    write_sysctl("kernel/msgmnb", &var.msg_ctlmnb.to_string())?;
    write_sysctl("kernel/msgmni", &var.msg_ctlmni.to_string())?;
    write_sysctl("kernel/shmmax", &var.shm_ctlmax.to_string())?;
    write_sysctl("kernel/shmall", &var.shm_ctlall.to_string())?;
    write_sysctl("kernel/shmmni", &var.shm_ctlmni.to_string())?;
    write_sysctl("kernel/shm_rmid_forced", &var.shm_rmid_forced.to_string())?;
    write_sysctl("fs/mqueue/queues_max", &var.mq_queues_max.to_string())?;
    write_sysctl("fs/mqueue/msg_max", &var.mq_msg_max.to_string())?;
    write_sysctl("fs/mqueue/msgsize_max", &var.mq_msgsize_max.to_string())?;
    if let Some(v) = var.mq_msg_default {
        write_sysctl("fs/mqueue/msg_default", &v.to_string())?;
    }
    if let Some(v) = var.mq_msgsize_default {
        write_sysctl("fs/mqueue/msgsize_default", &v.to_string())?;
    }
    for (name, value) in [("kernel/msg_next_id", var.msg_next_id), ("kernel/sem_next_id", var.sem_next_id), ("kernel/shm_next_id", var.shm_next_id)] {
        // -1 (none set) cannot be written; a creation under a set id resets it to -1.
        if let Some(v) = value.filter(|&v| v as i32 >= 0) {
            write_sysctl(name, &(v as i32).to_string())?;
        }
    }
    Ok(())
}

/// What a dump of the namespace wrote.
pub(crate) struct Dumped {
    pub segments: usize,
    pub semaphore_sets: usize,
    pub queues: usize,
}

/// Writes every object of `root`'s IPC namespace and its limits into `dir`.
pub(crate) fn dump_namespace(root: i32, dir: &Path) -> Result<Dumped, IpcError> {
    in_namespace_of(root, || {
        let var = read_var()?;
        // POSIX message queues live in the namespace too, and crust cannot take them:
        // refuse rather than lose them.
        let scratch = std::env::temp_dir().join(format!("crust-mqueue-{}", std::process::id()));
        fs::create_dir_all(&scratch).map_err(ipc_io(format!("create {}", scratch.display())))?;
        let queues = sysv::posix_queue_names(&scratch);
        let _ = fs::remove_dir(&scratch);
        match queues {
            Ok(names) if !names.is_empty() => {
                return Err(IpcError::refused(format!("POSIX message queues ({}) in the tree's IPC namespace are not supported yet", names.join(", "))))
            }
            Ok(_) => {}
            Err(e) => log::warn!("could not list the POSIX message queues of the tree's IPC namespace: {e}"),
        }
        let mut w = ImageWriter::create(dir, ImageKind::IpcVar, NS_ID as u64)?;
        w.write_entry(&var)?;
        w.finish()?;

        let segments = sysv::list_shm().map_err(ipc_io("list shared memory segments"))?;
        let mut w = ImageWriter::create(dir, ImageKind::IpcnsShm, NS_ID as u64)?;
        for shm in &segments {
            // The data follows the entry, as crit reads it (it does not know in_pagemaps).
            let entry = pb::IpcShmEntry { desc: desc(shm.id, &shm.perm), size: shm.size, in_pagemaps: None, hugetlb_flag: None };
            w.write_entry(&entry)?;
            let data = shmem_file(shm.id, shm.size, false)?;
            let padded = shm.size.next_multiple_of(4);
            let mut buf = vec![0u8; CHUNK.min(padded) as usize];
            let mut at = 0u64;
            while at < padded {
                let len = CHUNK.min(padded - at) as usize;
                buf[..len].fill(0);
                // Holes read as zeros without filling the segment; past its size, zeros.
                let mut got = 0;
                while got < len && at + (got as u64) < shm.size {
                    match data.read_at(&mut buf[got..len], at + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) => return Err(IpcError::refused(format!("read System V shared memory {} at {}: {e}", shm.id, at + got as u64))),
                    }
                }
                w.write_payload(&buf[..len])?;
                at += len as u64;
            }
        }
        w.finish()?;

        let sets = sysv::list_sem().map_err(ipc_io("list semaphore sets"))?;
        let mut w = ImageWriter::create(dir, ImageKind::IpcnsSem, NS_ID as u64)?;
        for set in &sets {
            let values = sysv::sem_values(set.id, set.nsems).map_err(ipc_io(format!("GETALL of semaphore set {}", set.id)))?;
            w.write_entry(&pb::IpcSemEntry { desc: desc(set.id, &set.perm), nsems: set.nsems })?;
            let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
            bytes.resize(bytes.len().next_multiple_of(8), 0);
            w.write_payload(&bytes)?;
        }
        w.finish()?;

        let queues = sysv::list_msg().map_err(ipc_io("list message queues"))?;
        let mut w = ImageWriter::create(dir, ImageKind::IpcnsMsg, NS_ID as u64)?;
        // No message is longer than msgmax was when it was sent; allow for a lowered limit.
        let max = (var.msg_ctlmax as usize).max(var.msg_ctlmnb as usize).max(1 << 16);
        for queue in &queues {
            let mut messages = Vec::new();
            for index in 0..queue.qnum {
                messages.push(sysv::copy_message(queue.id, index, max).map_err(ipc_io(format!("MSG_COPY of message {index} of queue {}", queue.id)))?);
            }
            let entry = pb::IpcMsgEntry { desc: desc(queue.id, &queue.perm), qbytes: queue.qbytes as u32, qnum: messages.len() as u32 };
            w.write_entry(&entry)?;
            for (mtype, text) in &messages {
                w.write_entry(&pb::IpcMsg { mtype: *mtype as u64, msize: text.len() as u32 })?;
                let mut bytes = text.clone();
                bytes.resize(bytes.len().next_multiple_of(8), 0);
                w.write_payload(&bytes)?;
            }
        }
        w.finish()?;
        Ok(Dumped { segments: segments.len(), semaphore_sets: sets.len(), queues: queues.len() })
    })
}

/// Segment `id` as a shmem file: attached for a moment (read-only or read-write) to open
/// it through /proc/self/map_files, which gives the segment's shmem inode with its own
/// read, write and SEEK_DATA.
fn shmem_file(id: i32, size: u64, writable: bool) -> Result<File, IpcError> {
    let attached = sysv::Attached::new(id, writable).map_err(ipc_io(format!("attach System V shared memory {id}")))?;
    let start = attached.addr as u64;
    let end = start + size.div_ceil(crate::sys::page_size()) * crate::sys::page_size();
    let path = format!("/proc/self/map_files/{start:x}-{end:x}");
    let mut options = fs::OpenOptions::new();
    options.read(true).write(writable);
    options.open(&path).map_err(ipc_io(format!("open {path} (System V shared memory {id})")))
}

/// Whether the dump in `dir` holds an IPC namespace.
pub(crate) fn image_has_namespace(dir: &Path) -> bool {
    dir.join(ImageKind::IpcVar.file_name(NS_ID as u64)).exists()
}

fn read_raw(dir: &Path, kind: ImageKind) -> Result<Option<crust_images::RawImage>, IpcError> {
    let path = dir.join(kind.file_name(NS_ID as u64));
    if !path.exists() {
        return Ok(None);
    }
    let name = path.display().to_string();
    let bytes = fs::read(&path).map_err(ipc_io(format!("read {name}")))?;
    Ok(Some(crust_images::parse(&name, &bytes)?))
}

fn decode<M: prost::Message + Default>(kind: ImageKind, index: usize, bytes: &[u8]) -> Result<M, IpcError> {
    M::decode(bytes).map_err(|e| IpcError::refused(format!("{}: entry {index}: {e}", kind.file_name(NS_ID as u64))))
}

/// Creates every object of the dumped IPC namespace in the calling process's (new,
/// empty) namespace, under its old id, then sets the namespace's limits.
pub(crate) fn restore_namespace(dir: &Path) -> Result<(), IpcError> {
    let var_path = dir.join(ImageKind::IpcVar.file_name(NS_ID as u64));
    let var: pb::IpcVarEntry = {
        let mut reader = ImageReader::open(&var_path)?;
        reader.next_entry()?.ok_or_else(|| IpcError::refused(format!("{}: no entry", var_path.display())))?
    };
    let wrong_id = |kind: ImageKind, index: usize, want: u32, got: i32| {
        IpcError::refused(format!("{}: entry {index}: created with id {got}, not {want} (ipc_desc_entry.id; is the namespace new?)", kind.file_name(NS_ID as u64)))
    };

    let shm_path = dir.join(ImageKind::IpcnsShm.file_name(NS_ID as u64));
    if shm_path.exists() {
        let mut reader = StreamReader::open(&shm_path)?;
        let mut index = 0;
        while let Some(entry) = reader.next_entry::<pb::IpcShmEntry>()? {
            let d = &entry.desc;
            let name = format!("System V shared memory {} (key {:#x})", d.id, d.key);
            write_sysctl("kernel/shm_next_id", &(d.id as i32).to_string())?;
            let id = sysv::create_shm(d.key as i32, entry.size, d.mode).map_err(ipc_io(format!("create {name} of {} bytes", entry.size)))?;
            if id != d.id as i32 {
                return Err(wrong_id(ImageKind::IpcnsShm, index, d.id, id));
            }
            let file = shmem_file(id, entry.size, true)?;
            if entry.in_pagemaps == Some(true) {
                fill_shmem_pages(&file, entry.size, dir, d.id as u64, &name)?;
            } else {
                // Zero pieces stay holes.
                let mut at = 0u64;
                reader
                    .copy_payload(entry.size.next_multiple_of(4), |piece| {
                        let keep = piece.len().min(entry.size.saturating_sub(at) as usize);
                        if piece[..keep].iter().any(|&b| b != 0) {
                            file.write_all_at(&piece[..keep], at)?;
                        }
                        at += piece.len() as u64;
                        Ok(())
                    })
                    .map_err(|e| IpcError::refused(format!("{name}: {e}")))?;
            }
            sysv::set_shm_owner(id, d.uid, d.gid, d.mode).map_err(ipc_io(format!("owner and mode of {name}")))?;
            if d.mode & SHM_LOCKED != 0 {
                sysv::lock_shm(id).map_err(ipc_io(format!("SHM_LOCK {name}")))?;
            }
            index += 1;
        }
    }

    if let Some(image) = read_raw(dir, ImageKind::IpcnsSem)? {
        for (index, raw) in image.entries.iter().enumerate() {
            let entry: pb::IpcSemEntry = decode(ImageKind::IpcnsSem, index, &raw.message)?;
            let d = &entry.desc;
            let name = format!("semaphore set {} (key {:#x})", d.id, d.key);
            let data = raw.payload.as_deref().unwrap_or(&[]);
            if data.len() < entry.nsems as usize * 2 {
                return Err(IpcError::refused(format!("{}: entry {index}: {} bytes of values for {} semaphores (ipc_sem_entry.nsems)", ImageKind::IpcnsSem.file_name(NS_ID as u64), data.len(), entry.nsems)));
            }
            let values: Vec<u16> = data[..entry.nsems as usize * 2].chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
            write_sysctl("kernel/sem_next_id", &(d.id as i32).to_string())?;
            let id = sysv::create_sem(d.key as i32, entry.nsems, d.mode).map_err(ipc_io(format!("create {name}")))?;
            if id != d.id as i32 {
                return Err(wrong_id(ImageKind::IpcnsSem, index, d.id, id));
            }
            sysv::set_sem_values(id, &values).map_err(ipc_io(format!("SETALL of {name}")))?;
            sysv::set_sem_owner(id, d.uid, d.gid, d.mode).map_err(ipc_io(format!("owner and mode of {name}")))?;
        }
    }

    if let Some(image) = read_raw(dir, ImageKind::IpcnsMsg)? {
        for (index, raw) in image.entries.iter().enumerate() {
            let entry: pb::IpcMsgEntry = decode(ImageKind::IpcnsMsg, index, &raw.message)?;
            let d = &entry.desc;
            let name = format!("message queue {} (key {:#x})", d.id, d.key);
            let messages = split_messages(raw.payload.as_deref().unwrap_or(&[]), entry.qnum).map_err(|what| {
                IpcError::refused(format!("{}: entry {index}: {what}", ImageKind::IpcnsMsg.file_name(NS_ID as u64)))
            })?;
            // A new queue's byte limit is msgmnb's; the limit itself may go above msgmnb
            // only with CAP_SYS_RESOURCE, so msgmnb is raised while the queue is made.
            write_sysctl("kernel/msgmnb", &entry.qbytes.to_string())?;
            let longest = messages.iter().map(|m| m.1.len()).max().unwrap_or(0).max(var.msg_ctlmax as usize);
            write_sysctl("kernel/msgmax", &longest.to_string())?;
            write_sysctl("kernel/msg_next_id", &(d.id as i32).to_string())?;
            let id = sysv::create_msg(d.key as i32, d.mode).map_err(ipc_io(format!("create {name}")))?;
            if id != d.id as i32 {
                return Err(wrong_id(ImageKind::IpcnsMsg, index, d.id, id));
            }
            for (number, (mtype, text)) in messages.iter().enumerate() {
                sysv::send_message(id, *mtype, text).map_err(ipc_io(format!("queue message {number} ({} bytes) into {name}", text.len())))?;
            }
            sysv::set_msg_owner(id, d.uid, d.gid, d.mode, entry.qbytes as u64).map_err(ipc_io(format!("owner and mode of {name}")))?;
        }
    }
    write_var(&var)
}

/// The messages of one queue's payload: a size word, an `ipc_msg` and its text padded to
/// 8, `qnum` times.
fn split_messages(mut data: &[u8], qnum: u32) -> Result<Vec<(i64, Vec<u8>)>, IpcError> {
    let mut out = Vec::new();
    for number in 0..qnum {
        if data.len() < 4 {
            return Err(IpcError::refused(format!("message {number} of {qnum} missing (ipc_msg_entry.qnum)")));
        }
        let len = u32::from_ne_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        let message = data.get(4..4 + len).ok_or_else(|| IpcError::refused(format!("message {number} cut short")))?;
        let head = <pb::IpcMsg as prost::Message>::decode(message).map_err(|e| IpcError::refused(format!("message {number}: {e}")))?;
        let padded = (head.msize as usize).next_multiple_of(8);
        let text = data.get(4 + len..4 + len + head.msize as usize).ok_or_else(|| IpcError::refused(format!("text of message {number} cut short (ipc_msg.msize {})", head.msize)))?;
        out.push((head.mtype as i64, text.to_vec()));
        data = data.get(4 + len + padded..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The segment entries of the dumped namespace, their data skipped.
fn shm_entries(dir: &Path) -> Result<Vec<pb::IpcShmEntry>, IpcError> {
    let path = dir.join(ImageKind::IpcnsShm.file_name(NS_ID as u64));
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = StreamReader::open(&path)?;
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry::<pb::IpcShmEntry>()? {
        if entry.in_pagemaps != Some(true) {
            reader.skip_payload(entry.size.next_multiple_of(4))?;
        }
        out.push(entry);
    }
    Ok(out)
}

/// Ids of the segments the dump found already removed (still attached), to remove again
/// once every process has attached them.
pub(crate) fn removed_segments(dir: &Path) -> Result<Vec<i32>, IpcError> {
    Ok(shm_entries(dir)?.iter().filter(|e| e.desc.mode & SHM_DEST != 0).map(|e| e.desc.id as i32).collect())
}

/// Removes segments `ids` in `pid`'s IPC namespace.
pub(crate) fn remove_segments(pid: i32, ids: &[i32]) -> Result<(), IpcError> {
    if ids.is_empty() {
        return Ok(());
    }
    in_namespace_of(pid, || {
        for &id in ids {
            sysv::remove_shm(id).map_err(ipc_io(format!("remove System V shared memory {id}")))?;
        }
        Ok(())
    })
}

/// The size of every segment of the dumped namespace, by id.
pub(crate) fn segment_sizes(dir: &Path) -> Result<BTreeMap<i32, u64>, IpcError> {
    Ok(shm_entries(dir)?.iter().map(|e| (e.desc.id as i32, e.size)).collect())
}

/// The size of segment `id` of crust's own IPC namespace, which a tree sharing that
/// namespace had attached: the segment must still exist, since the dump could not take
/// it along.
pub(crate) fn host_segment_size(id: i32) -> Result<u64, IpcError> {
    match sysv::stat_shm(id) {
        Ok(Some(shm)) => Ok(shm.size),
        Ok(None) => Err(IpcError::refused(format!(
            "System V shared memory {id} no longer exists: the tree shared this host's IPC namespace, whose segments a dump does not take along (give the tree an IPC namespace of its own to dump them)"
        ))),
        Err(e) => Err(IpcError::refused(format!("IPC_STAT of System V shared memory {id}: {e}"))),
    }
}
