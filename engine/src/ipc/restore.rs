//! The restore half of System V IPC: every object of the dumped namespace made again
//! under its old id in the new namespace, its limits set; the segments removed while
//! attached removed again once every process has attached them; and the sizes the
//! restore plan checks attaches against.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crust_images::{pb, ImageKind, ImageReader, StreamReader};

use super::{in_namespace_of, ipc_io, shmem_file, write_sysctl, IpcError};
use crate::files::memfd::fill_shmem_pages;
use crate::sys::sysv::{self, SHM_DEST, SHM_LOCKED};

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

fn read_raw(dir: &Path, kind: ImageKind, ns_id: u32) -> Result<Option<crust_images::RawImage>, IpcError> {
    let path = dir.join(kind.file_name(ns_id as u64));
    if !path.exists() {
        return Ok(None);
    }
    let name = path.display().to_string();
    let bytes = fs::read(&path).map_err(ipc_io(format!("read {name}")))?;
    Ok(Some(crust_images::parse(&name, &bytes)?))
}

fn decode<M: prost::Message + Default>(kind: ImageKind, ns_id: u32, index: usize, bytes: &[u8]) -> Result<M, IpcError> {
    M::decode(bytes).map_err(|e| IpcError::refused(format!("{}: entry {index}: {e}", kind.file_name(ns_id as u64))))
}

/// Creates every object of the dumped IPC namespace `ns_id` (its images are named after
/// it) in the calling process's (new, empty) namespace, under its old id, then sets the
/// namespace's limits.
pub(crate) fn restore_namespace(dir: &Path, ns_id: u32) -> Result<(), IpcError> {
    let var_path = dir.join(ImageKind::IpcVar.file_name(ns_id as u64));
    let var: pb::IpcVarEntry = {
        let mut reader = ImageReader::open(&var_path)?;
        reader.next_entry()?.ok_or_else(|| IpcError::refused(format!("{}: no entry", var_path.display())))?
    };
    let wrong_id = |kind: ImageKind, index: usize, want: u32, got: i32| {
        IpcError::refused(format!("{}: entry {index}: created with id {got}, not {want} (ipc_desc_entry.id; is the namespace new?)", kind.file_name(ns_id as u64)))
    };

    let shm_path = dir.join(ImageKind::IpcnsShm.file_name(ns_id as u64));
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

    if let Some(image) = read_raw(dir, ImageKind::IpcnsSem, ns_id)? {
        for (index, raw) in image.entries.iter().enumerate() {
            let entry: pb::IpcSemEntry = decode(ImageKind::IpcnsSem, ns_id, index, &raw.message)?;
            let d = &entry.desc;
            let name = format!("semaphore set {} (key {:#x})", d.id, d.key);
            let data = raw.payload.as_deref().unwrap_or(&[]);
            if data.len() < entry.nsems as usize * 2 {
                return Err(IpcError::refused(format!("{}: entry {index}: {} bytes of values for {} semaphores (ipc_sem_entry.nsems)", ImageKind::IpcnsSem.file_name(ns_id as u64), data.len(), entry.nsems)));
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

    if let Some(image) = read_raw(dir, ImageKind::IpcnsMsg, ns_id)? {
        for (index, raw) in image.entries.iter().enumerate() {
            let entry: pb::IpcMsgEntry = decode(ImageKind::IpcnsMsg, ns_id, index, &raw.message)?;
            let d = &entry.desc;
            let name = format!("message queue {} (key {:#x})", d.id, d.key);
            let messages = split_messages(raw.payload.as_deref().unwrap_or(&[]), entry.qnum).map_err(|what| {
                IpcError::refused(format!("{}: entry {index}: {what}", ImageKind::IpcnsMsg.file_name(ns_id as u64)))
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
fn shm_entries(dir: &Path, ns_id: u32) -> Result<Vec<pb::IpcShmEntry>, IpcError> {
    let path = dir.join(ImageKind::IpcnsShm.file_name(ns_id as u64));
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
pub(crate) fn removed_segments(dir: &Path, ns_id: u32) -> Result<Vec<i32>, IpcError> {
    Ok(shm_entries(dir, ns_id)?.iter().filter(|e| e.desc.mode & SHM_DEST != 0).map(|e| e.desc.id as i32).collect())
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
pub(crate) fn segment_sizes(dir: &Path, ns_id: u32) -> Result<BTreeMap<i32, u64>, IpcError> {
    Ok(shm_entries(dir, ns_id)?.iter().map(|e| (e.desc.id as i32, e.size)).collect())
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
