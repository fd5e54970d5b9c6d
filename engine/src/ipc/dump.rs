//! The dump half of System V IPC: whether the tree has an IPC namespace of its own, and
//! every object of it with the namespace's limits, read without changing anything.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crust_images::{pb, ImageKind};

use super::{in_namespace_of, ipc_io, read_one, read_optional, read_sysctl, shmem_file, IpcError, CHUNK};
use crate::sys::sysv;
use crate::userns::IdMaps;

/// A process of the tree in an IPC namespace other than the root's.
#[derive(Debug, thiserror::Error)]
#[error("an IPC namespace ({namespace}) other than the tree root's ({root})")]
pub(crate) struct ForeignNamespace {
    pub(crate) pid: i32,
    namespace: String,
    root: String,
}

/// Whether the processes `processes` (pid and the inode of its IPC namespace, `None`
/// where its link could not be read; the root first) live in an IPC namespace other than
/// crust's (`own`). Pure.
pub(crate) fn tree_has_own_namespace(processes: &[(i32, Option<u64>)], own: Option<u64>) -> Result<bool, ForeignNamespace> {
    let Some(&(_, root)) = processes.first() else { return Ok(false) };
    if let Some(&(pid, inode)) = processes[1..].iter().find(|(_, inode)| *inode != root) {
        return Err(ForeignNamespace { pid, namespace: show(inode), root: show(root) });
    }
    Ok(root != own)
}

fn show(inode: Option<u64>) -> String {
    inode.map_or_else(|| "?".into(), |inode| format!("ipc:[{inode}]"))
}

/// The `ipc_desc_entry` of an object; owners in the view of the tree's user namespace
/// (`owners`: its maps), as the kernel shows them to crust in its own.
fn desc(id: i32, perm: &sysv::Perm, owners: Option<&IdMaps>) -> pb::IpcDescEntry {
    let uid = |id: u32| owners.map_or(id, |maps| maps.uid_inside(id));
    let gid = |id: u32| owners.map_or(id, |maps| maps.gid_inside(id));
    pb::IpcDescEntry {
        key: perm.key as u32,
        uid: uid(perm.uid),
        gid: gid(perm.gid),
        cuid: uid(perm.cuid),
        cgid: gid(perm.cgid),
        mode: perm.mode,
        id: id as u32,
    }
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
        // -1: none set, which CRIU leaves out (its restore cannot write -1 back).
        msg_next_id: read_optional("kernel/msg_next_id")?.filter(|&v| v >= 0).map(u32_of),
        sem_next_id: read_optional("kernel/sem_next_id")?.filter(|&v| v >= 0).map(u32_of),
        shm_next_id: read_optional("kernel/shm_next_id")?.filter(|&v| v >= 0).map(u32_of),
    })
}

/// What a dump of the namespace wrote.
pub(crate) struct Dumped {
    pub segments: usize,
    pub semaphore_sets: usize,
    pub queues: usize,
}

/// Writes every object of `root`'s IPC namespace and its limits into `dir`, in images
/// named after the namespace's id `ns_id` (`ids.ipc_ns_id`); `owners`: the maps of the
/// tree's own user namespace.
pub(crate) fn dump_namespace(root: i32, dir: &Path, ns_id: u32, owners: Option<&IdMaps>) -> Result<Dumped, IpcError> {
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
        let mut w = crate::private::create_image(dir, ImageKind::IpcVar, ns_id as u64)?;
        w.write_entry(&var)?;
        w.finish()?;

        let segments = sysv::list_shm().map_err(ipc_io("list shared memory segments"))?;
        let mut w = crate::private::create_image(dir, ImageKind::IpcnsShm, ns_id as u64)?;
        for shm in &segments {
            // The data follows the entry, as crit reads it (it does not know in_pagemaps).
            let entry = pb::IpcShmEntry { desc: desc(shm.id, &shm.perm, owners), size: shm.size, in_pagemaps: None, hugetlb_flag: None };
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
        let mut w = crate::private::create_image(dir, ImageKind::IpcnsSem, ns_id as u64)?;
        for set in &sets {
            let values = sysv::sem_values(set.id, set.nsems).map_err(ipc_io(format!("GETALL of semaphore set {}", set.id)))?;
            w.write_entry(&pb::IpcSemEntry { desc: desc(set.id, &set.perm, owners), nsems: set.nsems })?;
            let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
            bytes.resize(bytes.len().next_multiple_of(8), 0);
            w.write_payload(&bytes)?;
        }
        w.finish()?;

        let queues = sysv::list_msg().map_err(ipc_io("list message queues"))?;
        let mut w = crate::private::create_image(dir, ImageKind::IpcnsMsg, ns_id as u64)?;
        // No message is longer than msgmax was when it was sent; allow for a lowered limit.
        let max = (var.msg_ctlmax as usize).max(var.msg_ctlmnb as usize).max(1 << 16);
        for queue in &queues {
            let mut messages = Vec::new();
            for index in 0..queue.qnum {
                messages.push(sysv::copy_message(queue.id, index, max).map_err(ipc_io(format!("MSG_COPY of message {index} of queue {}", queue.id)))?);
            }
            let entry = pb::IpcMsgEntry { desc: desc(queue.id, &queue.perm, owners), qbytes: queue.qbytes as u32, qnum: messages.len() as u32 };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_in_one_ipc_namespace_is_compared_with_crusts_and_a_split_one_refused() {
        assert!(!tree_has_own_namespace(&[(10, Some(7)), (11, Some(7))], Some(7)).unwrap());
        assert!(tree_has_own_namespace(&[(10, Some(8))], Some(7)).unwrap());
        assert!(!tree_has_own_namespace(&[], Some(7)).unwrap());
        let error = tree_has_own_namespace(&[(10, Some(8)), (11, Some(8)), (12, None)], Some(7)).unwrap_err();
        assert_eq!(error.pid, 12);
        assert_eq!(error.to_string(), "an IPC namespace (?) other than the tree root's (ipc:[8])");
    }
}
