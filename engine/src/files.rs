//! Open files: which fds a process holds, how they are written to files.img, fdinfo,
//! remap-fpath and ghost-file images, and how the restore child opens them again.
//!
//! Dump side runs in crust against /proc of the stopped target; restore side runs in the
//! forked child before the restorer, where fds are still ordinary fds of "this" process.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crust_images::pb;
use crust_images::{ImageKind, ImageReader, ImageWriter};

use crate::dump::{io_err, DumpError};
use crate::procfs;
use crate::sys;

mod anon;
mod inet;
mod inotify;
pub(crate) mod kernel;
mod locks;
pub(crate) mod memfd;
mod pipe;
mod pty;
mod tcp;
mod unix;

/// The files the images refer to, by id (files.img), plus ghost copies of unlinked ones.
#[derive(Default)]
pub(crate) struct FileTable {
    pub(crate) entries: Vec<pb::FileEntry>,
    by_path: BTreeMap<(PathBuf, i32), u32>,
    /// Every dumped fd of every process so far, by (dev, inode) of its file: only fds of
    /// one file can share an open file description, so kcmp runs within these.
    by_inode: BTreeMap<(u64, u64), Vec<(i32, u32, u32)>>,
    /// (reg file id, ghost id, source to copy from)
    ghosts: Vec<(u32, u32, PathBuf, fs::Metadata)>,
    /// Ghosts of mapped unlinked files, by (dev, inode).
    ghost_by_inode: BTreeMap<(u64, u64), u32>,
    /// Unread data of pipes (pipes-data.img) and FIFOs (fifo-data.img), once per pipe.
    pipe_data: BTreeMap<u32, pipe::PipeContents>,
    fifo_data: BTreeMap<u32, pipe::PipeContents>,
    /// Every AF_UNIX socket of the network namespace, read once per dump.
    unix_diag: Option<BTreeMap<u32, unix::UnixDiag>>,
    /// Queued messages of unix sockets (sk-queues.img): (socket file id, message, file
    /// ids of the fds in flight with it).
    sk_queues: Vec<(u32, Vec<u8>, Vec<u32>)>,
    /// fds in flight just peeked, dumped once their socket's entry is in:
    /// (index into `sk_queues`, crust's copies).
    in_flight_pending: Vec<(usize, Vec<std::os::fd::OwnedFd>)>,
    /// crust's copies of the fds in flight, open until the dump ends (kcmp compares
    /// later fds with them).
    in_flight: Vec<std::os::fd::OwnedFd>,
    /// File locks (filelocks.img), with what identifies a POSIX lock so each is once.
    locks: Vec<pb::FileLockEntry>,
    posix_locks_seen: std::collections::BTreeSet<(i32, u64, u64, i64, i64)>,
    /// TCP listeners by inode: (connections waiting, backlog), read once per dump.
    tcp_listeners: Option<BTreeMap<u32, (u32, u32)>>,
    /// Unix sockets dumped: (pid, fd, inode, peer inode), to check every peer is dumped.
    unix_dumped: Vec<(i32, u32, u32, u32)>,
    /// memfd inodes (memfd.img) and the MEMFD file entries made for mappings, by
    /// (inode id, open flags).
    memfds: memfd::MemfdInodes,
    memfd_mappings: BTreeMap<(u32, i32), u32>,
    /// pidfds: (holder pid, fd, file id, target as this host numbers it, -1: exited).
    pidfds: Vec<(i32, u32, u32, i32)>,
    /// Dump established TCP connections (`--tcp-established`).
    pub(crate) tcp_established: bool,
    /// Pty ends: (pid, fd, file id, pty index, is the master), and a copy of each
    /// master by index (its state is read through it once every fd is collected).
    pty_files: Vec<(i32, u32, u32, u32, bool)>,
    pty_masters: BTreeMap<u32, std::os::fd::OwnedFd>,
    /// tty-info.img entries.
    tty_infos: Vec<pb::TtyInfoEntry>,
    /// Established connections taken in repair mode.
    tcp: TcpRepairGuard,
}

/// Established TCP connections in repair mode and locked during a dump. Dropped without
/// `keep_locked` (a failed dump), each leaves repair mode and is unlocked: the target
/// goes on as before. After `keep_locked` (the target is killed) the sockets close in
/// repair mode, sending nothing, and the locks stay until the restore.
#[derive(Default)]
struct TcpRepairGuard {
    connections: Vec<(u32, inet::Established)>,
    keep_locked: bool,
}

impl TcpRepairGuard {
    fn release(&mut self) {
        for (ino, connection) in self.connections.drain(..) {
            let _ = tcp::set_repair(&connection.socket, false);
            if let Err(e) = tcp::unlock(ino, connection.family) {
                log::warn!("unlock TCP connection of socket {ino}: {e}");
            }
        }
    }
}

impl Drop for TcpRepairGuard {
    fn drop(&mut self) {
        if !self.keep_locked {
            self.release();
        }
    }
}

impl FileTable {
    /// After a good dump that leaves the target running: its connections leave repair
    /// mode and are unlocked (before the target runs again).
    pub(crate) fn release_tcp(&mut self) {
        self.tcp.release();
    }

    /// After a good dump that kills the target: its connections stay locked for the
    /// restore and close silently (in repair mode).
    pub(crate) fn keep_tcp_locked(&mut self) {
        self.tcp.keep_locked = true;
    }
}

impl FileTable {
    fn next_id(&self) -> u32 {
        self.entries.len() as u32 + 1
    }

    fn reg_entry(id: u32, name: &Path, flags: i32, pos: u64, meta: Option<&fs::Metadata>) -> pb::FileEntry {
        pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags: flags as u32,
                pos,
                fown: pb::FownEntry::default(),
                name: name.to_string_lossy().into_owned(),
                size: meta.map(|m| m.len()),
                mode: meta.map(|m| m.mode()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A file by path, shared among the areas and fs entries that name it.
    pub(crate) fn add_path(&mut self, pid: i32, path: &Path, flags: i32) -> Result<u32, DumpError> {
        if let Some(&id) = self.by_path.get(&(path.to_path_buf(), flags)) {
            return Ok(id);
        }
        let meta = fs::metadata(path).map_err(io_err(pid, format!("stat {}", path.display())))?;
        let id = self.next_id();
        self.entries.push(Self::reg_entry(id, path, flags, 0, Some(&meta)));
        self.by_path.insert((path.to_path_buf(), flags), id);
        Ok(id)
    }

    /// A mapped file that was unlinked: its contents are copied into a ghost image from
    /// `/proc/PID/map_files/START-END`; one ghost per inode, whoever maps it.
    pub(crate) fn add_deleted_mapping(&mut self, pid: i32, start: u64, end: u64, name: &str, flags: i32) -> Result<u32, DumpError> {
        let source = PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"));
        let meta = fs::metadata(&source).map_err(io_err(pid, format!("stat {}", source.display())))?;
        let key = (meta.dev(), meta.ino());
        if let Some(&id) = self.ghost_by_inode.get(&key) {
            return Ok(id);
        }
        let original = name.strip_suffix(" (deleted)").unwrap_or(name);
        let id = self.next_id();
        let ghost_id = self.ghosts.len() as u32 + 1;
        self.entries.push(Self::reg_entry(id, Path::new(original), flags, 0, Some(&meta)));
        self.ghosts.push((id, ghost_id, source, meta));
        self.ghost_by_inode.insert(key, id);
        Ok(id)
    }
}

impl FileTable {
    /// A mapped memfd (`name` as /proc/PID/maps shows it): a MEMFD file entry opened
    /// with `flags`, one per inode and flags, whoever maps it.
    pub(crate) fn add_memfd_mapping(&mut self, pid: i32, start: u64, end: u64, name: &str, flags: i32) -> Result<u32, DumpError> {
        let source = PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"));
        let inode_id = self
            .memfds
            .add(&source, name)
            .map_err(|what| DumpError::Unsupported { pid, what: format!("memory area {start:#x}-{end:#x} ({name}): {what}") })?;
        if let Some(&id) = self.memfd_mappings.get(&(inode_id, flags)) {
            return Ok(id);
        }
        let id = self.next_id();
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Memfd as i32,
            id,
            memfd: Some(pb::MemfdFileEntry { id, flags: flags as u32, pos: 0, fown: Default::default(), inode_id }),
            ..Default::default()
        });
        self.memfd_mappings.insert((inode_id, flags), id);
        Ok(id)
    }
}

/// One open fd of the target.
pub(crate) struct DumpedFd {
    fd: u32,
    id: u32,
    cloexec: bool,
    kind: pb::FdTypes,
}

/// What kind of file an fd is, from its /proc link and file type.
fn classify(link: &str, mode: u32, shell_job: bool) -> Result<pb::FdTypes, String> {
    let kind = mode & libc::S_IFMT;
    let is_tty = kind == libc::S_IFCHR && (link.starts_with("/dev/pts/") || link.starts_with("/dev/tty"));
    Ok(match kind {
        libc::S_IFCHR if pty::is_master(link) || pty::slave_index(link).is_some() => pb::FdTypes::Tty,
        libc::S_IFIFO if link.starts_with("pipe:[") => pb::FdTypes::Pipe,
        libc::S_IFIFO if link.starts_with('/') => pb::FdTypes::Fifo,
        libc::S_IFSOCK => pb::FdTypes::Unixsk,
        libc::S_IFREG if link.starts_with("/memfd:") => pb::FdTypes::Memfd,
        libc::S_IFREG | libc::S_IFDIR if link.starts_with('/') => pb::FdTypes::Reg,
        libc::S_IFCHR if link.starts_with('/') && (!is_tty || shell_job) => pb::FdTypes::Reg,
        libc::S_IFCHR if link.starts_with("/dev/ptmx") || link.starts_with("/dev/pts/") => {
            return Err("pty (try --shell-job for the controlling terminal)".into())
        }
        libc::S_IFCHR => return Err("tty (try --shell-job)".into()),
        _ => match link {
            "anon_inode:[eventfd]" => pb::FdTypes::Eventfd,
            "anon_inode:[eventpoll]" => pb::FdTypes::Eventpoll,
            "anon_inode:[signalfd]" => pb::FdTypes::Signalfd,
            "anon_inode:[timerfd]" => pb::FdTypes::Timerfd,
            "anon_inode:inotify" => pb::FdTypes::Inotify,
            "anon_inode:[fanotify]" => return Err("fanotify".into()),
            "anon_inode:[pidfd]" => pb::FdTypes::Pidfd,
            "anon_inode:[io_uring]" => return Err("io_uring".into()),
            "anon_inode:bpf-map" | "anon_inode:bpf-prog" => return Err("bpf".into()),
            _ if link.starts_with("anon_inode:") => return Err(link.trim_start_matches("anon_inode:").to_string()),
            _ => return Err("file of an unknown kind".into()),
        },
    })
}

/// A pid as the process's own pid namespace sees it (the last `NSpid:` field): the pid
/// the restored process will have.
fn namespace_pid(pid: i32) -> io::Result<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
        .unwrap_or(pid))
}

/// "inet stream socket", "netlink socket": what a socket is, for error messages.
fn socket_description(pid: i32, fd: u32) -> String {
    let Ok(socket) = kernel::borrow_fd(pid, fd) else { return "socket".into() };
    use std::os::fd::AsRawFd;
    let get = |name| kernel::socket_option(socket.as_raw_fd(), libc::SOL_SOCKET, name).unwrap_or(-1);
    let family = match get(libc::SO_DOMAIN) {
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        libc::AF_NETLINK => "netlink",
        libc::AF_PACKET => "packet",
        libc::AF_UNIX => "unix",
        _ => "other-family",
    };
    let kind = match get(libc::SO_TYPE) {
        libc::SOCK_STREAM => " stream",
        libc::SOCK_DGRAM => " datagram",
        libc::SOCK_SEQPACKET => " seqpacket",
        libc::SOCK_RAW => " raw",
        _ => "",
    };
    format!("{family}{kind} socket")
}

pub(crate) fn collect_fds(pid: i32, shell_job: bool, files: &mut FileTable) -> Result<Vec<DumpedFd>, DumpError> {
    let dir = format!("/proc/{pid}/fd");
    let mut numbers: Vec<u32> = fs::read_dir(&dir)
        .map_err(io_err(pid, format!("read {dir}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let mut out = Vec::new();
    for fd in numbers {
        out.push(dump_fd(pid, fd, shell_job, files)?);
    }
    Ok(out)
}

/// One fd of process `pid` (crust's own pid for an fd it holds: one taken out of a
/// socket queue): its file entry (once per open file description) and fdinfo.
fn dump_fd(pid: i32, fd: u32, shell_job: bool, files: &mut FileTable) -> Result<DumpedFd, DumpError> {
    let fd_path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    let link = fs::read_link(&fd_path).map_err(io_err(pid, format!("readlink fd {fd}")))?;
    let info_text = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .map_err(io_err(pid, format!("read fdinfo {fd}")))?;
    let info = procfs::parse_fdinfo(&info_text).map_err(|source| DumpError::Parse { pid, source })?;
    let meta = fs::metadata(&fd_path).map_err(io_err(pid, format!("stat fd {fd}")))?;
    let link_text = link.to_string_lossy().into_owned();
    let kind = classify(&link_text, meta.mode(), shell_job).map_err(|what| DumpError::Unsupported {
        pid,
        what: format!("fd {fd} ({link_text}, {what})"),
    })?;
    let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
    let open_flags = (info.flags & !(libc::O_CLOEXEC as u32)) as i32;
    // An fd sharing its open file description with an earlier one (dup, fork)
    // names the same file id.
    // Only fds of the same file can share a description: within those, kcmp's total
    // order on descriptions keeps the list sorted, so a binary search finds a shared
    // one in O(log n) calls (10,000 fds of /dev/null stay fast).
    let same_file = files.by_inode.get(&(meta.dev(), meta.ino())).map(Vec::as_slice).unwrap_or(&[]);
    let (mut low, mut high) = (0, same_file.len());
    let mut shared = None;
    while low < high {
        let middle = (low + high) / 2;
        let (other_pid, other_fd, other_id) = same_file[middle];
        match sys::order_file_descriptions(pid, fd, other_pid, other_fd).map_err(io_err(pid, format!("kcmp fd {fd}")))? {
            std::cmp::Ordering::Equal => {
                shared = Some(other_id);
                break;
            }
            std::cmp::Ordering::Less => high = middle,
            std::cmp::Ordering::Greater => low = middle + 1,
        }
    }
    let insert_at = low;
    if info_text.contains("\nlock:") {
        let lines = locks::parse_lock_lines(&info_text)
            .map_err(|what| DumpError::Unsupported { pid, what: format!("fd {fd} ({link_text}): {what}") })?;
        let owner = namespace_pid(pid).map_err(io_err(pid, "read NSpid"))?;
        for lock in lines {
            // POSIX locks belong to the process (listed on each of its fds of the
            // file); flock and OFD locks to the description (listed on each fd of it).
            let first = if lock.flag == locks::FL_POSIX {
                files.posix_locks_seen.insert((pid, meta.dev(), meta.ino(), lock.start, lock.len))
            } else {
                shared.is_none()
            };
            if first {
                files.locks.push(pb::FileLockEntry {
                    flag: lock.flag,
                    r#type: if lock.write { libc::F_WRLCK } else { libc::F_RDLCK } as u32,
                    pid: owner,
                    fd: fd as i32,
                    start: lock.start,
                    len: lock.len,
                });
            }
        }
    }
    let id = shared.unwrap_or_else(|| files.next_id());
    if shared.is_none() {
        files.by_inode.entry((meta.dev(), meta.ino())).or_default().insert(insert_at, (pid, fd, id));
    }
    if shared.is_some() {
        // The first fd's entry says what it is (a socket may be unix or inet).
        let kind = files.entries.iter().find(|e| e.id == id).and_then(|e| pb::FdTypes::try_from(e.r#type).ok()).unwrap_or(kind);
        return Ok(DumpedFd { fd, id, cloexec, kind });
    }
    let mut kind = kind;
    let unsupported = |what: String| DumpError::Unsupported { pid, what: format!("fd {fd} ({link_text}): {what}") };
    let entry = |kind: pb::FdTypes| pb::FileEntry { r#type: kind as i32, id, ..Default::default() };
    match kind {
        pb::FdTypes::Reg => {
            if let Some(original) =
                link_text.strip_suffix(" (deleted)").filter(|_| meta.mode() & libc::S_IFMT == libc::S_IFREG && meta.nlink() == 0)
            {
                let ghost_id = files.ghosts.len() as u32 + 1;
                files.entries.push(FileTable::reg_entry(id, Path::new(original), open_flags, info.pos, Some(&meta)));
                files.ghosts.push((id, ghost_id, fd_path, meta));
            } else {
                files.entries.push(FileTable::reg_entry(id, &link, open_flags, info.pos, Some(&meta)));
            }
        }
        pb::FdTypes::Memfd => {
            let inode_id = files.memfds.add(&fd_path, &link_text).map_err(unsupported)?;
            files.entries.push(pb::FileEntry {
                memfd: Some(pb::MemfdFileEntry { id, flags: open_flags as u32, pos: info.pos, fown: Default::default(), inode_id }),
                ..entry(kind)
            });
        }
        pb::FdTypes::Tty => {
            let master = pty::is_master(&link_text);
            let index = if master {
                let copy = kernel::borrow_fd(pid, fd).map_err(|e| unsupported(format!("pidfd_getfd: {e}")))?;
                let index = pty::master_index(&copy).map_err(unsupported)?;
                if files.pty_masters.insert(index, copy).is_some() {
                    return Err(unsupported(format!("a second open file description of the master of pty {index}")));
                }
                index
            } else {
                pty::slave_index(&link_text).expect("classified as a pty slave")
            };
            files.pty_files.push((pid, fd, id, index, master));
            // The path is a reg entry of its own, as CRIU writes it.
            files.entries.push(pb::FileEntry {
                tty: Some(pb::TtyFileEntry { id, tty_info_id: index, flags: open_flags as u32, fown: Default::default(), regf_id: Some(id + 1) }),
                ..entry(kind)
            });
            files.entries.push(FileTable::reg_entry(id + 1, &link, open_flags, 0, Some(&meta)));
        }
        pb::FdTypes::Pidfd => {
            let target: i32 = procfs::parse_key_values(&info_text)
                .get("Pid")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| unsupported("pidfd without a Pid: line in fdinfo".into()))?;
            if target == 0 {
                return Err(unsupported("pidfd of a process outside this pid namespace".into()));
            }
            files.pidfds.push((pid, fd, id, target));
            files.entries.push(pb::FileEntry {
                pidfd: Some(pb::PidfdEntry { id, ino: meta.ino() as u32, flags: open_flags as u32, nspid: target, fown: Default::default() }),
                ..entry(kind)
            });
        }
        pb::FdTypes::Pipe | pb::FdTypes::Fifo => {
            let pipe_id = meta.ino() as u32;
            let data = if kind == pb::FdTypes::Pipe { &mut files.pipe_data } else { &mut files.fifo_data };
            if let std::collections::btree_map::Entry::Vacant(slot) = data.entry(pipe_id) {
                slot.insert(pipe::read_contents(pid, fd).map_err(io_err(pid, format!("read unread data of fd {fd} ({link_text})")))?);
            }
            if kind == pb::FdTypes::Pipe {
                files.entries.push(pb::FileEntry {
                    pipe: Some(pb::PipeEntry { id, pipe_id, flags: open_flags as u32, fown: Default::default() }),
                    ..entry(kind)
                });
            } else {
                // The FIFO's path is a reg entry of its own, as CRIU writes it.
                files.entries.push(pb::FileEntry {
                    fifo: Some(pb::FifoEntry { id, pipe_id, regf_id: Some(id + 1) }),
                    ..entry(kind)
                });
                files.entries.push(FileTable::reg_entry(id + 1, &link, open_flags, 0, Some(&meta)));
            }
        }
        pb::FdTypes::Unixsk => match unix_entry(pid, fd, id, meta.ino() as u32, open_flags, files) {
            Ok(usk) => {
                files.entries.push(pb::FileEntry { usk: Some(usk), ..entry(kind) });
                dump_in_flight(files)?;
            }
            Err(Some(what)) => return Err(unsupported(what)),
            Err(None) => {
                let description = socket_description(pid, fd);
                if !description.starts_with("inet") {
                    return Err(unsupported(description));
                }
                let (isk, queue) = inet::dump_socket(pid, fd, id, meta.ino() as u32, open_flags, &mut files.tcp_listeners, files.tcp_established, &mut files.tcp.connections)
                    .map_err(|what| unsupported(format!("{description}: {what}")))?;
                files.sk_queues.extend(queue.into_iter().map(|message| (id, message, Vec::new())));
                kind = pb::FdTypes::Inetsk;
                files.entries.push(pb::FileEntry { isk: Some(isk), ..entry(kind) });
            }
        },
        pb::FdTypes::Eventfd => {
            let efd = anon::parse_eventfd(id, open_flags as u32, &info_text).map_err(unsupported)?;
            files.entries.push(pb::FileEntry { efd: Some(efd), ..entry(kind) });
        }
        pb::FdTypes::Signalfd => {
            let sgfd = anon::parse_signalfd(id, open_flags as u32, &info_text).map_err(unsupported)?;
            files.entries.push(pb::FileEntry { sgfd: Some(sgfd), ..entry(kind) });
        }
        pb::FdTypes::Timerfd => {
            let tfd = anon::parse_timerfd(id, open_flags as u32, &info_text).map_err(unsupported)?;
            files.entries.push(pb::FileEntry { tfd: Some(tfd), ..entry(kind) });
        }
        pb::FdTypes::Inotify => {
            let ify = inotify::dump_inotify(pid, id, open_flags as u32, &info_text).map_err(unsupported)?;
            files.entries.push(pb::FileEntry { ify: Some(ify), ..entry(kind) });
        }
        pb::FdTypes::Eventpoll => {
            let watches = anon::parse_epoll_watches(id, &info_text).map_err(unsupported)?;
            for watch in &watches {
                // The watch is keyed by (file, fd number): the process must hold that
                // file at that number, so adding it again from here rebuilds it.
                let same = kernel::epoll_watches_file(pid, fd, watch.tfd, watch.tfd).unwrap_or(false);
                if !same {
                    return Err(unsupported(format!("epoll watch of fd {} that this process no longer holds at that number", watch.tfd)));
                }
            }
            files.entries.push(pb::FileEntry {
                epfd: Some(pb::EventpollFileEntry { id, flags: open_flags as u32, fown: Default::default(), tfd: watches }),
                ..entry(kind)
            });
        }
        _ => unreachable!("classify returns only the kinds handled here"),
    }
    Ok(DumpedFd { fd, id, cloexec, kind })
}


/// Dumps the fds in flight in the queue just read (SCM_RIGHTS) as files of their own, as
/// crust holds them: a file also open in the tree keeps its id (kcmp), so it stays one
/// description. A socket in flight has its own queue read in turn.
fn dump_in_flight(files: &mut FileTable) -> Result<(), DumpError> {
    use std::os::fd::AsRawFd;
    let me = std::process::id() as i32;
    while let Some((index, fds)) = files.in_flight_pending.pop() {
        let mut ids = Vec::new();
        for fd in fds {
            let dumped = dump_fd(me, fd.as_raw_fd() as u32, false, files).map_err(|e| match e {
                DumpError::Unsupported { what, .. } => DumpError::Unsupported { pid: me, what: format!("a file in flight in a unix socket queue: {what}") },
                other => other,
            })?;
            ids.push(dumped.id);
            files.in_flight.push(fd);
        }
        files.sk_queues[index].2 = ids;
    }
    Ok(())
}

/// A unix socket's entry, from sock_diag and the socket itself (borrowed with
/// pidfd_getfd); its queued messages go to `files.sk_queues`. `Err(None)`: not a unix
/// socket (the caller names what it is).
fn unix_entry(pid: i32, fd: u32, id: u32, ino: u32, flags: i32, files: &mut FileTable) -> Result<pb::UnixSkEntry, Option<String>> {
    if files.unix_diag.is_none() {
        let bytes = kernel::unix_diag_dump().map_err(|e| Some(format!("sock_diag: {e}")))?;
        files.unix_diag = Some(unix::parse_diag(&bytes).map_err(Some)?);
    }
    let diag = files.unix_diag.as_ref().and_then(|d| d.get(&ino)).cloned().ok_or(None)?;
    if !matches!(diag.kind as i32, libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET) {
        return Err(Some(format!("unix socket of type {}", diag.kind)));
    }
    if diag.state == unix::STATE_LISTEN && diag.rqueue > 0 {
        return Err(Some(format!("listening unix socket with {} connections waiting for accept", diag.rqueue)));
    }
    if diag.name.first().is_some_and(|b| *b != 0) && !diag.name.starts_with(b"/") {
        return Err(Some("unix socket bound to a relative path".into()));
    }
    let socket = kernel::borrow_fd(pid, fd).map_err(|e| Some(format!("pidfd_getfd: {e}")))?;
    if diag.state != unix::STATE_LISTEN {
        for (message, fds) in unix::peek_queue(&socket).map_err(Some)? {
            if !fds.is_empty() {
                files.in_flight_pending.push((files.sk_queues.len(), fds));
            }
            files.sk_queues.push((id, message, Vec::new()));
        }
    }
    files.unix_dumped.push((pid, fd, ino, diag.peer));
    Ok(pb::UnixSkEntry {
        id,
        ino,
        r#type: diag.kind as u32,
        state: diag.state as u32,
        flags: flags as u32,
        uflags: 0,
        backlog: if diag.state == unix::STATE_LISTEN { diag.wqueue } else { 0 },
        peer: diag.peer,
        fown: Default::default(),
        opts: unix::read_options(&socket),
        name: diag.name.clone(),
        shutdown: Some(diag.shutdown as i32),
        ..Default::default()
    })
}

/// Once every fd is collected: each pty whose master is in the tree gets its tty-info
/// (session and foreground group as the tree numbers them, `virtual_of`); a slave whose
/// master is elsewhere is the caller's terminal, reopened by path with `--shell-job`.
pub(crate) fn finish_ptys(files: &mut FileTable, shell_job: bool, virtual_of: impl Fn(i32) -> Option<i32>) -> Result<(), DumpError> {
    for &(pid, fd, id, index, master) in &files.pty_files {
        if master || files.pty_masters.contains_key(&index) {
            continue;
        }
        if !shell_job {
            return Err(DumpError::Unsupported {
                pid,
                what: format!("fd {fd} (/dev/pts/{index}, a pty whose master is not in the dumped tree; try --shell-job)"),
            });
        }
        if let Some(entry) = files.entries.iter_mut().find(|e| e.id == id) {
            let flags = entry.tty.as_ref().map(|t| t.flags).unwrap_or(libc::O_RDWR as u32);
            let path = PathBuf::from(format!("/dev/pts/{index}"));
            *entry = FileTable::reg_entry(id, &path, flags as i32, 0, fs::metadata(&path).ok().as_ref());
        }
    }
    for (&index, master) in &files.pty_masters {
        let holder = files.pty_files.iter().find(|f| f.3 == index && f.4).map(|f| f.0).unwrap_or(0);
        let mut info = pty::dump_info(index, master).map_err(|what| DumpError::Unsupported { pid: holder, what: format!("pty {index}: {what}") })?;
        for (value, what) in [(&mut info.sid, "session"), (&mut info.pgrp, "foreground process group")] {
            if *value != 0 {
                *value = virtual_of(*value as i32).ok_or_else(|| DumpError::Unsupported {
                    pid: holder,
                    what: format!("pty {index}, whose {what} {value} is outside the dumped tree"),
                })? as u32;
            }
        }
        files.tty_infos.push(info);
    }
    Ok(())
}

/// Names each pidfd's process as the dumped tree numbers it: `virtual_of` gives the
/// tree's number of a host pid or tid of the tree, `None` outside it. A pidfd of a
/// process that has exited keeps -1.
pub(crate) fn resolve_pidfds(files: &mut FileTable, virtual_of: impl Fn(i32) -> Option<i32>) -> Result<(), DumpError> {
    for &(pid, fd, id, target) in &files.pidfds {
        let nspid = if target == -1 {
            -1
        } else {
            virtual_of(target).ok_or_else(|| DumpError::Unsupported {
                pid,
                what: format!("fd {fd} (pidfd of process {target}, outside the dumped tree)"),
            })?
        };
        if let Some(entry) = files.entries.iter_mut().find(|e| e.id == id).and_then(|e| e.pidfd.as_mut()) {
            entry.nspid = nspid;
        }
    }
    Ok(())
}

/// Checks, once every process's fds are collected, that each connected unix socket's
/// peer was dumped too or has a name to connect to again.
pub(crate) fn check_tree(files: &FileTable) -> Result<(), DumpError> {
    let dumped: std::collections::BTreeSet<u32> = files.unix_dumped.iter().map(|u| u.2).collect();
    let diag = |ino: u32| files.unix_diag.as_ref().and_then(|d| d.get(&ino));
    for &(pid, fd, ino, peer) in &files.unix_dumped {
        if peer == 0 || dumped.contains(&peer) {
            continue;
        }
        // A datagram socket sending to a named one outside (/dev/log) connects again.
        let datagram = diag(ino).is_some_and(|d| d.kind as i32 == libc::SOCK_DGRAM);
        let named = datagram && diag(peer).is_some_and(|p| !p.name.is_empty());
        if !named {
            return Err(DumpError::Unsupported {
                pid,
                what: format!("fd {fd} (unix socket connected to socket:[{peer}] outside the dumped tree)"),
            });
        }
    }
    Ok(())
}

/// Writes files.img, fdinfo-N.img and, for unlinked files, ghost-file and remap-fpath.
/// Writes one process's fd table, fdinfo-N.img (N is its files id).
pub(crate) fn write_fdinfo(pid: i32, dir: &Path, fds: &[DumpedFd], files_id: u32) -> Result<(), DumpError> {
    let image = |source| DumpError::Image { pid, source };
    let mut w = ImageWriter::create(dir, ImageKind::Fdinfo, files_id as u64).map_err(image)?;
    for fd in fds {
        w.write_entry(&pb::FdinfoEntry {
            id: fd.id,
            flags: if fd.cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: fd.kind as i32,
            fd: fd.fd,
            ..Default::default()
        })
        .map_err(image)?;
    }
    w.finish().map_err(image)?;
    Ok(())
}

/// Writes the tree's files.img and, for unlinked files, ghost-file and remap-fpath.
pub(crate) fn write_images(pid: i32, dir: &Path, files: &FileTable, first_shmem_pages_id: u32) -> Result<(), DumpError> {
    let image = |source| DumpError::Image { pid, source };
    let mut w = ImageWriter::create(dir, ImageKind::Files, 0).map_err(image)?;
    for entry in &files.entries {
        w.write_entry(entry).map_err(image)?;
    }
    w.finish().map_err(image)?;

    for (kind, data) in [(ImageKind::PipesData, &files.pipe_data), (ImageKind::FifoData, &files.fifo_data)] {
        if data.is_empty() {
            continue;
        }
        let mut w = ImageWriter::create(dir, kind, 0).map_err(image)?;
        for (pipe_id, contents) in data {
            w.write_entry(&pb::PipeDataEntry { pipe_id: *pipe_id, bytes: contents.data.len() as u32, size: Some(contents.size) })
                .map_err(image)?;
            w.write_payload(&contents.data).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }
    if !files.tty_infos.is_empty() {
        let mut w = ImageWriter::create(dir, ImageKind::TtyInfo, 0).map_err(image)?;
        for info in &files.tty_infos {
            w.write_entry(info).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }
    for (ino, connection) in &files.tcp.connections {
        let mut w = ImageWriter::create(dir, ImageKind::TcpStream, *ino as u64).map_err(image)?;
        w.write_entry(&connection.stream).map_err(image)?;
        w.write_payload(&connection.inq).map_err(image)?;
        w.write_payload(&connection.outq).map_err(image)?;
        w.finish().map_err(image)?;
    }
    // memfd data takes pages ids after every process's.
    files.memfds.write(dir, first_shmem_pages_id).map_err(|what| DumpError::Unsupported { pid, what: format!("memfd data: {what}") })?;
    if !files.locks.is_empty() {
        let mut w = ImageWriter::create(dir, ImageKind::FileLocks, 0).map_err(image)?;
        for lock in &files.locks {
            w.write_entry(lock).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }
    if !files.sk_queues.is_empty() {
        let mut w = ImageWriter::create(dir, ImageKind::SkQueues, 0).map_err(image)?;
        for (id_for, message, in_flight) in &files.sk_queues {
            let scm = if in_flight.is_empty() { Vec::new() } else { vec![pb::ScmEntry { r#type: libc::SCM_RIGHTS as u32, rights: in_flight.clone() }] };
            w.write_entry(&pb::SkPacketEntry { id_for: *id_for, length: message.len() as u32, scm }).map_err(image)?;
            w.write_payload(message).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }

    if !files.ghosts.is_empty() {
        let mut remap = ImageWriter::create(dir, ImageKind::RemapFpath, 0).map_err(image)?;
        for (reg_id, ghost_id, source, meta) in &files.ghosts {
            let mut w = ImageWriter::create(dir, ImageKind::GhostFile, *ghost_id as u64).map_err(image)?;
            w.write_entry(&pb::GhostFileEntry {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode(),
                dev: Some(meta.dev() as u32),
                ino: Some(meta.ino()),
                size: Some(meta.len()),
                chunks: Some(true),
                ..Default::default()
            })
            .map_err(image)?;
            // Data runs only (SEEK_DATA/SEEK_HOLE), a MiB at a time: holes stay holes and
            // a big file never sits in memory whole.
            let contents = File::open(source).map_err(io_err(pid, format!("open {}", source.display())))?;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&contents);
            let mut chunk = vec![0u8; 1 << 20];
            let mut at = 0u64;
            while at < meta.len() {
                let Some(data) = kernel::seek_data_or_hole(raw, at, true).map_err(io_err(pid, "SEEK_DATA in unlinked file"))? else { break };
                let hole = kernel::seek_data_or_hole(raw, data, false).map_err(io_err(pid, "SEEK_HOLE in unlinked file"))?.unwrap_or(meta.len()).min(meta.len());
                if hole <= data {
                    break;
                }
                w.write_entry(&pb::GhostChunkEntry { len: hole - data, off: data }).map_err(image)?;
                let mut offset = data;
                while offset < hole {
                    let want = chunk.len().min((hole - offset) as usize);
                    std::os::unix::fs::FileExt::read_exact_at(&contents, &mut chunk[..want], offset)
                        .map_err(io_err(pid, format!("read unlinked file at {offset}")))?;
                    w.write_payload(&chunk[..want]).map_err(image)?;
                    offset += want as u64;
                }
                at = hole;
            }
            w.finish().map_err(image)?;
            remap
                .write_entry(&pb::RemapFilePathEntry {
                    orig_id: *reg_id,
                    remap_id: *ghost_id,
                    remap_type: Some(pb::RemapType::Ghost as i32),
                })
                .map_err(image)?;
        }
        remap.finish().map_err(image)?;
    }
    Ok(())
}

/// Every open file description of a restored tree, opened once by crust before the
/// first fork, at fd numbers above every fd of the tree: each restored process inherits
/// them all through fork, installs the ones it holds at their numbers, and closes the
/// rest. Descriptions shared between fds, or between processes, so stay shared.
pub(crate) struct Broker {
    /// file id → broker fd
    pub(crate) fds: BTreeMap<u32, i32>,
    /// Epoll instances by file id: their watches are added after install.
    epolls: BTreeMap<u32, pb::EventpollFileEntry>,
    /// File locks, each taken again by its owner (by pid) after install.
    locks: Vec<pb::FileLockEntry>,
    /// pidfds of live processes: opened in their holder once the whole tree exists
    /// (`restore::finish_process`), skipped here.
    late: BTreeSet<u32>,
    /// pidfds of exited processes: (broker number, flags), made by the restored root in
    /// the tree's pid namespace (`make_dead_pidfds`), whose processes may signal them.
    dead_pidfds: Vec<(i32, i32)>,
    /// Ptys that are a session's controlling terminal: (session, foreground group, index).
    controlling: Vec<(u32, u32, u32)>,
}

/// The extra images of pipes, FIFOs and sockets, read into memory for the broker.
fn read_pipe_data(dir: &Path, kind: ImageKind) -> Result<BTreeMap<u32, pipe::PipeContents>, String> {
    let path = dir.join(kind.file_name(0));
    let mut out = BTreeMap::new();
    if !path.exists() {
        return Ok(out);
    }
    let name = path.display().to_string();
    let mut reader = ImageReader::open(&path).map_err(|e| format!("{name}: {e}"))?;
    while let Some(entry) = reader.next_entry::<pb::PipeDataEntry>().map_err(|e| format!("{name}: {e}"))? {
        let data = reader.read_payload(entry.bytes as u64).map_err(|e| format!("{name}: {e}"))?;
        out.insert(entry.pipe_id, pipe::PipeContents { size: entry.size.unwrap_or(0), data });
    }
    Ok(out)
}

/// The queued messages of sockets (sk-queues.img): the queues without fds in flight,
/// and, apart, those of sockets where some message carries fds (SCM_RIGHTS: file ids),
/// which are sent once every file exists.
type SocketQueues = (BTreeMap<u32, Vec<Vec<u8>>>, BTreeMap<u32, Vec<(Vec<u8>, Vec<u32>)>>);

fn read_sk_queues(dir: &Path) -> Result<SocketQueues, String> {
    let path = dir.join(ImageKind::SkQueues.file_name(0));
    let mut all: BTreeMap<u32, Vec<(Vec<u8>, Vec<u32>)>> = BTreeMap::new();
    if !path.exists() {
        return Ok(Default::default());
    }
    let name = path.display().to_string();
    let mut reader = ImageReader::open(&path).map_err(|e| format!("{name}: {e}"))?;
    while let Some(entry) = reader.next_entry::<pb::SkPacketEntry>().map_err(|e| format!("{name}: {e}"))? {
        let mut rights = Vec::new();
        for scm in &entry.scm {
            if scm.r#type != libc::SCM_RIGHTS as u32 {
                return Err(format!("{name}: queued message for socket {} carries control message type {} (sk_packet_entry.scm.type)", entry.id_for, scm.r#type));
            }
            rights.extend(&scm.rights);
        }
        let data = reader.read_payload(entry.length as u64).map_err(|e| format!("{name}: {e}"))?;
        all.entry(entry.id_for).or_default().push((data, rights));
    }
    let (deferred, plain): (BTreeMap<_, _>, BTreeMap<_, _>) = all.into_iter().partition(|(_, messages)| messages.iter().any(|m| !m.1.is_empty()));
    Ok((plain.into_iter().map(|(id, messages)| (id, messages.into_iter().map(|m| m.0).collect())).collect(), deferred))
}

/// File ids of the files in flight in socket queues: the broker opens them though no
/// process holds them.
pub(crate) fn in_flight_ids(dir: &Path) -> Result<BTreeSet<u32>, String> {
    let (_, deferred) = read_sk_queues(dir)?;
    Ok(deferred.values().flatten().flat_map(|m| m.1.iter().copied()).collect())
}

/// tcp-stream-INO.img: the stream state, then the receive and send queues.
fn read_tcp_stream(dir: &Path, ino: u32) -> Result<(pb::TcpStreamEntry, Vec<u8>, Vec<u8>), String> {
    let path = dir.join(ImageKind::TcpStream.file_name(ino as u64));
    let name = path.display().to_string();
    let mut reader = ImageReader::open(&path).map_err(|e| format!("{name}: {e}"))?;
    let stream: pb::TcpStreamEntry = reader.next_entry().map_err(|e| format!("{name}: {e}"))?.ok_or(format!("{name}: no tcp_stream_entry"))?;
    let inq = reader.read_payload(stream.inq_len as u64).map_err(|e| format!("{name}: receive queue (inq_len): {e}"))?;
    let outq = reader.read_payload(stream.outq_len as u64).map_err(|e| format!("{name}: send queue (outq_len): {e}"))?;
    if stream.unsq_len.unwrap_or(0) > stream.outq_len {
        return Err(format!("{name}: unsq_len {} beyond outq_len {}", stream.unsq_len.unwrap_or(0), stream.outq_len));
    }
    Ok((stream, inq, outq))
}

/// Removes the locks of the restored established TCP connections: their traffic flows.
pub(crate) fn unlock_tcp(dir: &Path) -> Result<(), String> {
    let path = dir.join(ImageKind::Files.file_name(0));
    let entries = crust_images::read_entries::<pb::FileEntry>(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    for isk in entries.iter().filter_map(|e| e.isk.as_ref()) {
        if isk.proto == libc::IPPROTO_TCP as u32 && isk.state == 1 {
            tcp::unlock(isk.ino, isk.family as i32).map_err(|e| format!("unlock TCP connection of socket {}: {e}", isk.ino))?;
        }
    }
    Ok(())
}

/// Creates every pipe, FIFO, socket and anon-inode file of files.img: file id → fd.
/// What `create_special_files` made: file id → fd, and the epolls whose watches come later.
type SpecialFiles = (
    BTreeMap<u32, std::os::fd::OwnedFd>,
    BTreeMap<u32, pb::EventpollFileEntry>,
    BTreeSet<u32>,
    BTreeMap<u32, i32>,
    Vec<(u32, Vec<(Vec<u8>, Vec<u32>)>)>,
    Vec<(u32, u32, u32)>,
);

fn create_special_files(dir: &Path, regs: &BTreeMap<u32, pb::RegFileEntry>) -> Result<SpecialFiles, String> {
    let path = dir.join(ImageKind::Files.file_name(0));
    let entries = crust_images::read_entries::<pb::FileEntry>(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut pipes, mut fifos, mut sockets, mut inet_sockets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut memfds = Vec::new();
    let mut ttys = Vec::new();
    let mut late = BTreeSet::new();
    let mut dead_pidfds = BTreeMap::new();
    let mut made = BTreeMap::new();
    let mut epolls = BTreeMap::new();
    for entry in entries {
        let kind = pb::FdTypes::try_from(entry.r#type).unwrap_or(pb::FdTypes::Und);
        let missing = || format!("{}: file {} of type {kind:?} has no {kind:?} entry", path.display(), entry.id);
        match kind {
            pb::FdTypes::Reg => {}
            pb::FdTypes::Pipe => pipes.push(entry.pipe.ok_or_else(missing)?),
            pb::FdTypes::Fifo => fifos.push(entry.fifo.ok_or_else(missing)?),
            pb::FdTypes::Unixsk => sockets.push(entry.usk.ok_or_else(missing)?),
            pb::FdTypes::Inetsk => inet_sockets.push(entry.isk.ok_or_else(missing)?),
            pb::FdTypes::Eventfd => {
                made.insert(entry.id, anon::create_eventfd(entry.efd.as_ref().ok_or_else(missing)?)?);
            }
            pb::FdTypes::Signalfd => {
                made.insert(entry.id, anon::create_signalfd(entry.sgfd.as_ref().ok_or_else(missing)?)?);
            }
            pb::FdTypes::Timerfd => {
                made.insert(entry.id, anon::create_timerfd(entry.tfd.as_ref().ok_or_else(missing)?)?);
            }
            pb::FdTypes::Inotify => {
                made.insert(entry.id, inotify::create_inotify(entry.ify.as_ref().ok_or_else(missing)?)?);
            }
            pb::FdTypes::Memfd => memfds.push(entry.memfd.ok_or_else(missing)?),
            pb::FdTypes::Tty => ttys.push(entry.tty.ok_or_else(missing)?),
            pb::FdTypes::Pidfd => {
                let pidfd = entry.pidfd.ok_or_else(missing)?;
                if pidfd.nspid == -1 {
                    dead_pidfds.insert(entry.id, pidfd.flags as i32 & (libc::O_NONBLOCK | libc::O_EXCL));
                } else {
                    late.insert(entry.id);
                }
            }
            pb::FdTypes::Eventpoll => {
                let epoll = entry.epfd.ok_or_else(missing)?;
                made.insert(entry.id, anon::create_epoll(&epoll)?);
                epolls.insert(entry.id, epoll);
            }
            other => return Err(format!("{}: file {} of type {other:?} is not supported yet", path.display(), entry.id)),
        }
    }
    let mut controlling = Vec::new();
    if !ttys.is_empty() {
        let path = dir.join(ImageKind::TtyInfo.file_name(0));
        let infos = crust_images::read_entries::<pb::TtyInfoEntry>(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut masters = BTreeMap::new();
        for info in &infos {
            if info.r#type != pb::TtyType::Pty as i32 {
                return Err(format!("{}: tty {} of type {} is not supported (tty_info_entry.type)", path.display(), info.id, info.r#type));
            }
            masters.insert(info.id, pty::create(info)?);
            if info.sid != 0 {
                controlling.push((info.sid, info.pgrp, info.pty.as_ref().map(|p| p.index).unwrap_or(info.id)));
            }
        }
        for tty in &ttys {
            let name = tty.regf_id.and_then(|r| regs.get(&r)).map(|r| r.name.clone()).ok_or(format!("tty file {} has no path (tty_file_entry.regf_id)", tty.id))?;
            let fd = if pty::is_master(&name) {
                masters.remove(&tty.tty_info_id).ok_or(format!("tty file {}: pty {} has no state in tty-info.img, or a second master", tty.id, tty.tty_info_id))?
            } else {
                let flags = tty.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
                kernel::open_path(&name, flags | libc::O_NOCTTY).map_err(|e| format!("open {name}: {e}"))?
            };
            made.insert(tty.id, fd);
        }
    }
    if !memfds.is_empty() {
        let inodes = memfd::create_inodes(dir)?;
        for entry in &memfds {
            made.insert(entry.id, memfd::open_description(&inodes, entry)?);
        }
    }
    if !pipes.is_empty() {
        made.extend(pipe::create_pipes(&pipes, &read_pipe_data(dir, ImageKind::PipesData)?)?);
    }
    if !fifos.is_empty() {
        made.extend(pipe::open_fifos(&fifos, regs, &read_pipe_data(dir, ImageKind::FifoData)?)?);
    }
    let (queues, deferred_queues) = if sockets.is_empty() && inet_sockets.is_empty() { Default::default() } else { read_sk_queues(dir)? };
    if !sockets.is_empty() {
        made.extend(unix::create_sockets(&sockets, &queues)?);
    }
    // Queues with fds in flight are sent by the socket's peer once every file exists.
    let mut deferred = Vec::new();
    for (id, messages) in deferred_queues {
        let socket = sockets.iter().find(|s| s.id == id).ok_or(format!("fds in flight to socket {id}, which is not a unix socket of files.img"))?;
        let peer = sockets
            .iter()
            .find(|s| s.ino == socket.peer && socket.peer != 0)
            .ok_or(format!("unix socket {id} has fds in flight but its peer (ino {}) is not in the dump", socket.peer))?;
        deferred.push((peer.id, messages));
    }
    for socket in &inet_sockets {
        let stream = if socket.proto == libc::IPPROTO_TCP as u32 && socket.state == 1 { Some(read_tcp_stream(dir, socket.ino)?) } else { None };
        made.insert(socket.id, inet::create_socket(socket, queues.get(&socket.id).map(Vec::as_slice).unwrap_or(&[]), stream.as_ref())?);
    }
    Ok((made, epolls, late, dead_pidfds, deferred, controlling))
}

impl Broker {
    /// Opens the description of every file id that some process holds, at `base`,
    /// `base + 1`, ... Runs in crust: errors name the file and leave nothing behind.
    /// Pipes, sockets and anon-inode files are created first (both ends of a pipe or a
    /// socketpair at once), then every description is put at its number.
    pub(crate) fn open(
        files: &BTreeMap<u32, pb::RegFileEntry>,
        ghosts: &BTreeMap<u32, u32>,
        dir: &Path,
        ids: impl IntoIterator<Item = u32>,
        base: i32,
    ) -> Result<Broker, String> {
        let ids: Vec<u32> = ids.into_iter().collect();
        let (made, epolls, late, dead_pidfd_flags, deferred, controlling) = create_special_files(dir, files)?;
        // Created fds sit at the lowest free numbers, perhaps where the broker's go:
        // move them above every broker number first.
        let above = base + ids.len() as i32 + 8;
        let mut made_high = BTreeMap::new();
        for (id, fd) in made {
            made_high.insert(id, kernel::move_above(fd, above).map_err(|e| format!("move file {id} above {above}: {e}"))?);
        }
        let locks_path = dir.join(ImageKind::FileLocks.file_name(0));
        let locks = if locks_path.exists() {
            crust_images::read_entries::<pb::FileLockEntry>(&locks_path).map_err(|e| format!("{}: {e}", locks_path.display()))?
        } else {
            Vec::new()
        };
        let mut broker = Broker { fds: BTreeMap::new(), epolls, locks, late, dead_pidfds: Vec::new(), controlling };
        for id in ids {
            if broker.fds.contains_key(&id) || broker.late.contains(&id) {
                continue;
            }
            if let Some(&flags) = dead_pidfd_flags.get(&id) {
                let number = base + broker.fds.len() as i32;
                broker.fds.insert(id, number);
                broker.dead_pidfds.push((number, flags));
                continue;
            }
            if let Some(fd) = made_high.get(&id) {
                use std::os::fd::AsRawFd;
                let number = base + broker.fds.len() as i32;
                if let Err(e) = sys::place_fd(fd.as_raw_fd(), number, true) {
                    broker.close();
                    return Err(format!("place file {id} at fd {number}: {e}"));
                }
                broker.fds.insert(id, number);
                continue;
            }
            let number = base + broker.fds.len() as i32;
            let opened = match open_regular(files, ghosts, dir, id) {
                Ok(fd) => fd,
                Err(error) => {
                    broker.close();
                    return Err(error);
                }
            };
            let placed = sys::place_fd(opened, number, true).map_err(|e| format!("place file {id} at fd {number}: {e}"));
            if opened != number {
                sys::close_fd(opened);
            }
            if let Err(error) = placed {
                broker.close();
                return Err(error);
            }
            broker.fds.insert(id, number);
        }
        // Messages with fds in flight, sent from the peer with the broker's copies.
        for (sender, messages) in deferred {
            let result = (|| -> Result<(), String> {
                let from = *broker.fds.get(&sender).ok_or(format!("socket {sender} (sender of fds in flight) was not opened"))?;
                for (data, ids) in &messages {
                    let fds = ids
                        .iter()
                        .map(|id| broker.fds.get(id).copied().ok_or(format!("file {id} in flight was not opened")))
                        .collect::<Result<Vec<i32>, String>>()?;
                    kernel::send_with_fds(from, data, &fds).map_err(|e| format!("requeue {} bytes with {} fds from socket {sender}: {e}", data.len(), fds.len()))?;
                }
                Ok(())
            })();
            if let Err(error) = result {
                broker.close();
                return Err(error);
            }
        }
        Ok(broker)
    }

    /// Rebuilds what depends on this process's own fd numbers, once its fds are installed:
    /// the watches of every epoll it is the first in the tree to hold (`earlier`: the file
    /// ids of the processes restored before it, whose fork children inherit the watches).
    pub(crate) fn after_install(&self, fds: &[pb::FdinfoEntry], earlier: &std::collections::BTreeSet<u32>) -> Result<(), String> {
        for fd in fds {
            if let Some(epoll) = self.epolls.get(&fd.id).filter(|_| !earlier.contains(&fd.id)) {
                anon::add_watches(fd.fd as i32, epoll)?;
            }
        }
        Ok(())
    }

    /// Takes the file locks this process owns again. Runs after `close`: closing any fd
    /// of a file drops the process's POSIX locks on it.
    pub(crate) fn take_locks(&self) -> Result<(), String> {
        let me = std::process::id() as i32;
        for lock in self.locks.iter().filter(|l| l.pid == me) {
            locks::take_lock(lock)?;
        }
        Ok(())
    }

    /// In restored process `pid` (in its session and group already): takes back the
    /// controlling terminal it leads, or the foreground of the one its group had.
    pub(crate) fn terminals(&self, pid: u32, sid: u32, pgid: u32) -> Result<(), String> {
        for &(tty_sid, pgrp, index) in &self.controlling {
            if tty_sid == pid {
                pty::take_controlling(index, (pgrp == pid).then_some(pgrp as i32))?;
            } else if pgrp == pid && pgid == pid && sid == tty_sid {
                pty::set_foreground(index, pgrp as i32)?;
            }
        }
        Ok(())
    }

    /// Makes the pidfds of exited processes at their broker numbers; runs in the
    /// restored root, in the tree's pid namespace.
    pub(crate) fn make_dead_pidfds(&self) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        for &(number, flags) in &self.dead_pidfds {
            let fd = kernel::dead_pidfd(flags).map_err(|e| format!("pidfd of an exited process: {e}"))?;
            sys::place_fd(fd.as_raw_fd(), number, true).map_err(|e| format!("place pidfd at fd {number}: {e}"))?;
            if fd.as_raw_fd() == number {
                // Already where it belongs: keep it open.
                let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
            }
        }
        Ok(())
    }

    /// The broker's fd numbers.
    pub(crate) fn numbers(&self) -> Vec<i32> {
        self.fds.values().copied().collect()
    }

    /// Closes every broker fd in this process.
    pub(crate) fn close(&self) {
        for &fd in self.fds.values() {
            sys::close_fd(fd);
        }
    }

    /// Installs one process's fds at their numbers, with their close-on-exec flags. A
    /// regular file only this process holds is not in the broker (see [`broker_ids`]):
    /// it is opened here, once, and its other fds are copies of the first.
    pub(crate) fn install(&self, fds: &[pb::FdinfoEntry], files: &BTreeMap<u32, pb::RegFileEntry>, dir: &Path) -> Result<(), String> {
        let mut private: BTreeMap<u32, i32> = BTreeMap::new();
        for fd in fds.iter().filter(|fd| !self.late.contains(&fd.id)) {
            let number = fd.fd as i32;
            let cloexec = fd.flags & libc::FD_CLOEXEC as u32 != 0;
            let source = match (self.fds.get(&fd.id), private.get(&fd.id)) {
                (Some(&source), _) | (None, Some(&source)) => source,
                (None, None) if files.contains_key(&fd.id) => {
                    let opened = open_regular(files, &BTreeMap::new(), dir, fd.id).map_err(|e| format!("fd {number}: {e}"))?;
                    let placed = sys::place_fd(opened, number, cloexec).map_err(|e| format!("fd {number}: {e}"));
                    if opened != number {
                        sys::close_fd(opened);
                    }
                    placed?;
                    private.insert(fd.id, number);
                    continue;
                }
                (None, None) => return Err(format!("fd {number}: file id {} was not opened", fd.id)),
            };
            sys::place_fd(source, number, cloexec).map_err(|e| format!("fd {number}: {e}"))?;
        }
        Ok(())
    }
}

/// The file ids the broker opens before the first fork: every description but a regular
/// file that one process alone holds (opened by that process itself, so a process with
/// thousands of files does not need a second fd for each under RLIMIT_NOFILE), plus
/// unlinked files that are mapped. `ghosts`: reg-file id → ghost id.
pub(crate) fn broker_ids<'a>(
    processes: impl IntoIterator<Item = (&'a [pb::FdinfoEntry], &'a [pb::VmaEntry])>,
    files: &BTreeMap<u32, pb::RegFileEntry>,
    ghosts: &BTreeMap<u32, u32>,
    mapped_status: u32,
) -> BTreeSet<u32> {
    let mut holders: BTreeMap<u32, usize> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (fds, vmas) in processes {
        let own: BTreeSet<u32> = fds.iter().map(|f| f.id).collect();
        for id in own {
            *holders.entry(id).or_default() += 1;
        }
        // Unlinked files and memfds that are mapped: the restorer maps them from a copy
        // of the broker's fd (they cannot be opened by name).
        ids.extend(
            vmas.iter()
                .filter(|v| v.status & mapped_status != 0 && (ghosts.contains_key(&(v.shmid as u32)) || !files.contains_key(&(v.shmid as u32))))
                .map(|v| v.shmid as u32),
        );
    }
    for (id, count) in holders {
        if count > 1 || !files.contains_key(&id) || ghosts.contains_key(&id) {
            ids.insert(id);
        }
    }
    ids
}

/// Opens regular file `id` (or brings back its ghost) with its dumped flags and offset,
/// at the lowest free fd.
fn open_regular(files: &BTreeMap<u32, pb::RegFileEntry>, ghosts: &BTreeMap<u32, u32>, dir: &Path, id: u32) -> Result<i32, String> {
    let reg = files.get(&id).ok_or(format!("file id {id} is not in files.img"))?;
    let flags = reg.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
    let opened = match ghosts.get(&id) {
        Some(ghost_id) => open_ghost(dir, *ghost_id, reg, flags)?,
        None => sys::open_raw(Path::new(&reg.name), flags, 0).map_err(|e| format!("open {}: {e}", reg.name))?,
    };
    if reg.pos != 0 {
        if let Err(e) = sys::seek_to(opened, reg.pos) {
            sys::close_fd(opened);
            return Err(format!("seek {} to {}: {e}", reg.name, reg.pos));
        }
    }
    Ok(opened)
}

/// Recreates an unlinked file from its ghost image: written beside its old name,
/// opened with the dumped flags, then unlinked again.
fn open_ghost(dir: &Path, ghost_id: u32, reg: &pb::RegFileEntry, flags: i32) -> Result<i32, String> {
    use std::os::unix::fs::FileExt;
    let image = dir.join(ImageKind::GhostFile.file_name(ghost_id as u64));
    let name = image.display().to_string();
    let mut reader = crust_images::StreamReader::open(&image).map_err(|e| format!("{name}: {e}"))?;
    let entry: pb::GhostFileEntry = reader
        .next_entry()
        .map_err(|e| format!("{name}: {e}"))?
        .ok_or(format!("{name}: no ghost_file_entry"))?;
    let size = entry.size.unwrap_or(0);
    let mut path = PathBuf::from(&reg.name);
    if path.exists() {
        path = PathBuf::from(format!("{}.crust-ghost-{ghost_id}", reg.name));
    }
    let filled = (|| -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(entry.mode & 0o7777)
            .open(&path)
            .map_err(|e| format!("create ghost {}: {e}", path.display()))?;
        let file = &file;
        let write_at = |mut at: u64| {
            move |piece: &[u8]| -> io::Result<()> {
                file.write_all_at(piece, at)?;
                at += piece.len() as u64;
                Ok(())
            }
        };
        if entry.chunks == Some(true) {
            file.set_len(size).map_err(|e| format!("size ghost {}: {e}", path.display()))?;
            while let Some(chunk) = reader.next_entry::<pb::GhostChunkEntry>().map_err(|e| format!("{name}: {e}"))? {
                if chunk.off.checked_add(chunk.len).is_none_or(|end| end > size) {
                    return Err(format!("{name}: chunk {}+{} beyond the file's {size} bytes (ghost_chunk_entry)", chunk.off, chunk.len));
                }
                reader.copy_payload(chunk.len, write_at(chunk.off)).map_err(|e| format!("{name}: {e}"))?;
            }
        } else {
            reader.copy_payload(size, write_at(0)).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    })();
    if let Err(error) = filled {
        let _ = fs::remove_file(&path);
        return Err(error);
    }
    let fd = sys::open_raw(&path, flags, 0).map_err(|e| format!("open ghost {}: {e}", path.display()));
    let _ = fs::remove_file(&path);
    fd
}

