//! The System V IPC calls behind `ipc/`: entering an IPC namespace, listing its
//! objects by index (`*_STAT_ANY`), reading them without changing them (`MSG_COPY`,
//! `GETALL`, a read-only attach) and creating them again. nix has no System V IPC, so
//! shmget/shmat/shmdt/shmctl, semget/semctl and msgget/msgsnd/msgrcv/msgctl are
//! wrapped here; setns, unshare and mount go through nix.
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call, sized as the kernel's (glibc's 64-bit) struct for that
//! command. Errors are errno.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// `shmctl`/`semctl`/`msgctl` commands the libc crate lacks.
const SHM_STAT_ANY: i32 = 15;
const SEM_STAT_ANY: i32 = 20;
const MSG_STAT_ANY: i32 = 13;
const SHM_INFO: i32 = 14;
const SHM_LOCK: i32 = 11;
/// shm_perm.mode bits the kernel adds: marked for removal, locked in memory.
pub const SHM_DEST: u32 = 0o1000;
pub const SHM_LOCKED: u32 = 0o2000;

use super::check;

/// Moves the calling thread into the IPC namespace of `pid` (`setns(CLONE_NEWIPC)`).
#[doc(alias = "setns")]
pub fn enter_namespace_of(pid: i32) -> io::Result<()> {
    let ns = File::open(format!("/proc/{pid}/ns/ipc"))?;
    Ok(nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWIPC)?)
}

/// The names of the POSIX message queues of the calling thread's IPC namespace: the
/// thread takes its own fs and mount namespace, mounts that namespace's mqueue
/// filesystem on `scratch` and lists it (the mount goes with the thread's namespace).
pub fn posix_queue_names(scratch: &std::path::Path) -> io::Result<Vec<String>> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    // Affects only the calling thread.
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)?;
    // This thread's new mount namespace only.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    mount(Some("mqueue"), scratch, Some("mqueue"), MsFlags::empty(), None::<&str>)?;
    let names = std::fs::read_dir(scratch).map(|dir| dir.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect());
    // The thread's mount namespace dies with it anyway.
    let _ = umount2(scratch, MntFlags::MNT_DETACH);
    names
}

/// The owner and mode part common to every object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
}

fn perm(p: &libc::ipc_perm) -> Perm {
    Perm { key: p.__key, uid: p.uid, gid: p.gid, cuid: p.cuid, cgid: p.cgid, mode: p.mode as u32 }
}

/// Highest index in use of one kind (`*_INFO` returns it), or -1.
fn max_index(kind: Kind) -> io::Result<i32> {
    // Big enough for shm_info, seminfo and msginfo.
    let mut buf = [0u64; 32];
    let ptr = buf.as_mut_ptr();
    // SAFETY: the *_INFO commands write at most 64 bytes into buf (256 bytes).
    let rc = unsafe {
        match kind {
            Kind::Shm => libc::shmctl(0, SHM_INFO, ptr.cast()) as libc::c_long,
            Kind::Sem => libc::semctl(0, 0, libc::SEM_INFO, ptr) as libc::c_long,
            Kind::Msg => libc::msgctl(0, libc::MSG_INFO, ptr.cast()) as libc::c_long,
        }
    };
    check(rc).map(|v| v as i32)
}

#[derive(Clone, Copy)]
enum Kind {
    Shm,
    Sem,
    Msg,
}

/// One shared memory segment as `SHM_STAT_ANY` tells it.
#[derive(Clone, Copy, Debug)]
pub struct Shm {
    pub id: i32,
    pub perm: Perm,
    pub size: u64,
}

/// Every shared memory segment of the calling thread's IPC namespace.
pub fn list_shm() -> io::Result<Vec<Shm>> {
    let mut out = Vec::new();
    for index in 0..=max_index(Kind::Shm)? {
        // SAFETY: ds is a zeroed shmid_ds, the struct SHM_STAT_ANY fills.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: ds outlives the call and is the struct the command writes.
        let rc = unsafe { libc::shmctl(index, SHM_STAT_ANY, &mut ds) };
        match check(rc as libc::c_long) {
            Ok(id) => out.push(Shm { id: id as i32, perm: perm(&ds.shm_perm), size: ds.shm_segsz as u64 }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The segment `id` (`IPC_STAT`), if it exists.
pub fn stat_shm(id: i32) -> io::Result<Option<Shm>> {
    // SAFETY: ds is a zeroed shmid_ds, the struct IPC_STAT fills.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds outlives the call and is the struct the command writes.
    match check(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } as libc::c_long) {
        Ok(_) => Ok(Some(Shm { id, perm: perm(&ds.shm_perm), size: ds.shm_segsz as u64 })),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EIDRM)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A segment attached into this process; detached on drop.
pub struct Attached {
    pub addr: *mut u8,
}

impl Attached {
    /// Attaches segment `id` anywhere, read-only or read-write.
    pub fn new(id: i32, writable: bool) -> io::Result<Attached> {
        let flags = if writable { 0 } else { libc::SHM_RDONLY };
        // SAFETY: the kernel picks a free address; nothing of ours is there.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Attached { addr: addr.cast() })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: addr is this attachment's start; nothing borrows it past self.
        unsafe { libc::shmdt(self.addr.cast()) };
    }
}

/// `shmget(key, size, IPC_CREAT | IPC_EXCL | mode)` (no IPC_EXCL for IPC_PRIVATE).
pub fn create_shm(key: i32, size: u64, mode: u32) -> io::Result<i32> {
    let flags = libc::IPC_CREAT | (mode & 0o777) as i32 | if key != libc::IPC_PRIVATE { libc::IPC_EXCL } else { 0 };
    // SAFETY: no pointers.
    check(unsafe { libc::shmget(key, size as usize, flags) } as libc::c_long).map(|v| v as i32)
}

/// Sets a segment's owner and mode (`IPC_SET`).
pub fn set_shm_owner(id: i32, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    // SAFETY: zeroed shmid_ds, then filled by IPC_STAT.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds outlives both calls and is the struct both commands use.
    unsafe {
        check(libc::shmctl(id, libc::IPC_STAT, &mut ds) as libc::c_long)?;
        ds.shm_perm.uid = uid;
        ds.shm_perm.gid = gid;
        ds.shm_perm.mode = (mode & 0o777) as _;
        check(libc::shmctl(id, libc::IPC_SET, &mut ds) as libc::c_long).map(|_| ())
    }
}

/// `SHM_LOCK`: the segment's pages stay in memory.
pub fn lock_shm(id: i32) -> io::Result<()> {
    // SAFETY: SHM_LOCK reads no buffer.
    check(unsafe { libc::shmctl(id, SHM_LOCK, std::ptr::null_mut()) } as libc::c_long).map(|_| ())
}

/// `IPC_RMID` of a segment (it goes once the last process detaches).
pub fn remove_shm(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } as libc::c_long).map(|_| ())
}

/// One semaphore set as `SEM_STAT_ANY` tells it.
#[derive(Clone, Copy, Debug)]
pub struct Sem {
    pub id: i32,
    pub perm: Perm,
    pub nsems: u32,
}

/// Every semaphore set of the calling thread's IPC namespace.
pub fn list_sem() -> io::Result<Vec<Sem>> {
    let mut out = Vec::new();
    for index in 0..=max_index(Kind::Sem)? {
        // SAFETY: zeroed semid_ds, the struct SEM_STAT_ANY fills.
        let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: ds outlives the call; the fourth argument is semun.buf.
        let rc = unsafe { libc::semctl(index, 0, SEM_STAT_ANY, &mut ds as *mut libc::semid_ds) };
        match check(rc as libc::c_long) {
            Ok(id) => out.push(Sem { id: id as i32, perm: perm(&ds.sem_perm), nsems: ds.sem_nsems as u32 }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The values of every semaphore of set `id` (`GETALL`).
pub fn sem_values(id: i32, nsems: u32) -> io::Result<Vec<u16>> {
    let mut values = vec![0u16; nsems as usize];
    // SAFETY: values holds nsems u16s, what GETALL writes; the fourth argument is semun.array.
    check(unsafe { libc::semctl(id, 0, libc::GETALL, values.as_mut_ptr()) } as libc::c_long)?;
    Ok(values)
}

/// `semget(key, nsems, IPC_CREAT | IPC_EXCL | mode)` (no IPC_EXCL for IPC_PRIVATE).
pub fn create_sem(key: i32, nsems: u32, mode: u32) -> io::Result<i32> {
    let flags = libc::IPC_CREAT | (mode & 0o777) as i32 | if key != libc::IPC_PRIVATE { libc::IPC_EXCL } else { 0 };
    // SAFETY: no pointers.
    check(unsafe { libc::semget(key, nsems as i32, flags) } as libc::c_long).map(|v| v as i32)
}

/// Sets every semaphore of set `id` (`SETALL`).
pub fn set_sem_values(id: i32, values: &[u16]) -> io::Result<()> {
    // SAFETY: values holds the set's nsems u16s, what SETALL reads.
    check(unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) } as libc::c_long).map(|_| ())
}

/// Sets a semaphore set's owner and mode (`IPC_SET`).
pub fn set_sem_owner(id: i32, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    // SAFETY: zeroed semid_ds, then filled by IPC_STAT.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds outlives both calls; the fourth argument is semun.buf.
    unsafe {
        check(libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) as libc::c_long)?;
        ds.sem_perm.uid = uid;
        ds.sem_perm.gid = gid;
        ds.sem_perm.mode = (mode & 0o777) as _;
        check(libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) as libc::c_long).map(|_| ())
    }
}

/// One message queue as `MSG_STAT_ANY` tells it.
#[derive(Clone, Copy, Debug)]
pub struct Msq {
    pub id: i32,
    pub perm: Perm,
    pub qnum: u64,
    pub qbytes: u64,
}

/// Every message queue of the calling thread's IPC namespace.
pub fn list_msg() -> io::Result<Vec<Msq>> {
    let mut out = Vec::new();
    for index in 0..=max_index(Kind::Msg)? {
        // SAFETY: zeroed msqid_ds, the struct MSG_STAT_ANY fills.
        let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: ds outlives the call and is the struct the command writes.
        let rc = unsafe { libc::msgctl(index, MSG_STAT_ANY, &mut ds) };
        match check(rc as libc::c_long) {
            Ok(id) => out.push(Msq { id: id as i32, perm: perm(&ds.msg_perm), qnum: ds.msg_qnum as u64, qbytes: ds.msg_qbytes as u64 }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A copy of message number `index` of queue `id`, left in the queue (`MSG_COPY`):
/// its type and text. `max` bounds the text.
pub fn copy_message(id: i32, index: u64, max: usize) -> io::Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: buf holds a long mtype and max bytes of text, the size passed.
    let rc = unsafe {
        libc::msgrcv(id, buf.as_mut_ptr().cast(), max, index as libc::c_long, libc::IPC_NOWAIT | libc::MSG_COPY | libc::MSG_NOERROR)
    };
    let len = check(rc as libc::c_long)? as usize;
    let mtype = i64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
    Ok((mtype, buf[8..8 + len].to_vec()))
}

/// `msgget(key, IPC_CREAT | IPC_EXCL | mode)` (no IPC_EXCL for IPC_PRIVATE).
pub fn create_msg(key: i32, mode: u32) -> io::Result<i32> {
    let flags = libc::IPC_CREAT | (mode & 0o777) as i32 | if key != libc::IPC_PRIVATE { libc::IPC_EXCL } else { 0 };
    // SAFETY: no pointers.
    check(unsafe { libc::msgget(key, flags) } as libc::c_long).map(|v| v as i32)
}

/// Queues one message without waiting.
pub fn send_message(id: i32, mtype: i64, text: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: buf holds a long mtype then text.len() bytes, the size passed.
    check(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) } as libc::c_long).map(|_| ())
}

/// Sets a queue's owner, mode and byte limit (`IPC_SET`).
pub fn set_msg_owner(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> io::Result<()> {
    // SAFETY: zeroed msqid_ds, then filled by IPC_STAT.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds outlives both calls and is the struct both commands use.
    unsafe {
        check(libc::msgctl(id, libc::IPC_STAT, &mut ds) as libc::c_long)?;
        ds.msg_perm.uid = uid;
        ds.msg_perm.gid = gid;
        ds.msg_perm.mode = (mode & 0o777) as _;
        ds.msg_qbytes = qbytes as _;
        check(libc::msgctl(id, libc::IPC_SET, &mut ds) as libc::c_long).map(|_| ())
    }
}
