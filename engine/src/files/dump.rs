//! The dump half of files: every fd of a stopped process through /proc/PID/fd and
//! fdinfo, classified and described once per open file description; then the checks
//! that need the whole tree (unix peers, pidfd targets, pty sessions).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crust_images::pb;

use super::{anon, file_io, inet, inotify, locks, pipe, pty, unix, DumpedFd, FileDumpError, FileError, FileTable};
use super::io_err;
use crate::procfs;
use crate::sys;

/// What kind of file an fd is, from its /proc link and file type.
fn classify(link: &str, mode: u32, shell_job: bool) -> Result<pb::FdTypes, FileError> {
    let kind = mode & libc::S_IFMT;
    let is_tty = kind == libc::S_IFCHR && (link.starts_with("/dev/pts/") || link.starts_with("/dev/tty"));
    Ok(match kind {
        libc::S_IFCHR if pty::is_master(link) || pty::slave_index(link).is_some() => pb::FdTypes::Tty,
        libc::S_IFIFO if link.starts_with("pipe:[") => pb::FdTypes::Pipe,
        libc::S_IFIFO if link.starts_with('/') => pb::FdTypes::Fifo,
        libc::S_IFSOCK => pb::FdTypes::Unixsk,
        libc::S_IFREG if link.starts_with("/memfd:") => pb::FdTypes::Memfd,
        libc::S_IFREG | libc::S_IFDIR if link.starts_with('/') => pb::FdTypes::Reg,
        // An fd opened O_PATH|O_NOFOLLOW on a symlink: the symlink itself.
        libc::S_IFLNK if link.starts_with('/') => pb::FdTypes::Reg,
        libc::S_IFCHR if link.starts_with('/') && (!is_tty || shell_job) => pb::FdTypes::Reg,
        libc::S_IFCHR if link.starts_with("/dev/ptmx") || link.starts_with("/dev/pts/") => {
            return Err(FileError::refused("pty (try --shell-job for the controlling terminal)"))
        }
        // /dev/tty is whatever terminal controls the opener's session: reopened by name,
        // it would be crust's terminal (--shell-job), not a pty of the tree.
        libc::S_IFCHR if link == "/dev/tty" => return Err(FileError::refused("the controlling terminal through /dev/tty (--shell-job reopens it as the caller's terminal)")),
        libc::S_IFCHR => return Err(FileError::refused("tty (try --shell-job)")),
        _ => match link {
            "anon_inode:[eventfd]" => pb::FdTypes::Eventfd,
            "anon_inode:[eventpoll]" => pb::FdTypes::Eventpoll,
            "anon_inode:[signalfd]" => pb::FdTypes::Signalfd,
            "anon_inode:[timerfd]" => pb::FdTypes::Timerfd,
            "anon_inode:inotify" => pb::FdTypes::Inotify,
            "anon_inode:[fanotify]" => return Err(FileError::refused("fanotify")),
            "anon_inode:[pidfd]" => pb::FdTypes::Pidfd,
            "anon_inode:[io_uring]" => return Err(FileError::refused("io_uring")),
            "anon_inode:bpf-map" | "anon_inode:bpf-prog" => return Err(FileError::refused("bpf")),
            _ if link.starts_with("anon_inode:") => return Err(FileError::refused(link.trim_start_matches("anon_inode:"))),
            _ if crate::ns::parse_ns_link(link).is_some() => return Err(FileError::refused("a namespace file (nsfs)")),
            _ => return Err(FileError::refused("file of an unknown kind")),
        },
    })
}

/// A pid as the process's own pid namespace sees it (the last `NSpid:` field): the pid
/// the restored process will have.
fn namespace_pid(pid: i32) -> io::Result<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(procfs::parse_nspid(&status).unwrap_or(pid))
}

/// "inet stream socket", "netlink socket": what a socket is, for error messages.
fn socket_description(pid: i32, fd: u32) -> String {
    let Ok(socket) = sys::process::borrow_fd(pid, fd) else { return "socket".into() };
    use std::os::fd::AsRawFd;
    let get = |name| sys::socket::socket_option(socket.as_raw_fd(), libc::SOL_SOCKET, name).unwrap_or(-1);
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

/// Every fd of process `pid` but the `hidden` ones (a live parasite's), in fd order.
pub(crate) fn collect_fds(pid: i32, shell_job: bool, files: &mut FileTable, hidden: &[i32]) -> Result<Vec<DumpedFd>, FileDumpError> {
    let dir = format!("/proc/{pid}/fd");
    let mut numbers: Vec<u32> = fs::read_dir(&dir)
        .map_err(io_err(pid, format!("read {dir}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd: &u32| !hidden.contains(&(*fd as i32)))
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
fn dump_fd(pid: i32, fd: u32, shell_job: bool, files: &mut FileTable) -> Result<DumpedFd, FileDumpError> {
    // This runs once per fd (10,000 fds: 10,000 times): the errors' texts are made only
    // on error.
    let fd_path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    let link = fs::read_link(&fd_path).map_err(|e| io_err(pid, format!("readlink fd {fd}"))(e))?;
    let info_text = sys::file::read_proc_text(&format!("/proc/{pid}/fdinfo/{fd}")).map_err(|e| io_err(pid, format!("read fdinfo {fd}"))(e))?;
    let info = procfs::parse_fdinfo(&info_text).map_err(|source| FileDumpError::Parse { pid, source })?;
    let meta = fs::metadata(&fd_path).map_err(|e| io_err(pid, format!("stat fd {fd}"))(e))?;
    let link_text = link.to_string_lossy().into_owned();
    let kind = classify(&link_text, meta.mode(), shell_job).map_err(|what| FileDumpError::Unsupported {
        pid,
        what: format!("fd {fd} ({link_text}, {what})"),
    })?;
    if let Some(view) = files.mount_view.as_ref().filter(|_| matches!(kind, pb::FdTypes::Reg | pb::FdTypes::Fifo | pb::FdTypes::Tty)) {
        view.check(info.mnt_id, &format!("fd {fd} ({link_text})")).map_err(|outside| FileDumpError::Unsupported { pid, what: outside.to_string() })?;
    }
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
        match sys::kcmp::order_file_descriptions(pid, fd, other_pid, other_fd).map_err(|e| io_err(pid, format!("kcmp fd {fd}"))(e))? {
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
            .map_err(|what| FileDumpError::Unsupported { pid, what: format!("fd {fd} ({link_text}): {what}") })?;
        if let Some(lock) = lines.first().filter(|_| !files.file_locks) {
            // As CRIU: a tree holding locks is dumped only when asked to.
            return Err(FileDumpError::Refused {
                pid,
                what: format!("fd {fd} ({link_text}) holds {}; dump file locks with --file-locks", lock.describe()),
            });
        }
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
    let unsupported = |what: String| FileDumpError::Unsupported { pid, what: format!("fd {fd} ({link_text}): {what}") };
    let entry = |kind: pb::FdTypes| pb::FileEntry { r#type: kind as i32, id, ..Default::default() };
    match kind {
        pb::FdTypes::Reg if meta.is_dir() && meta.nlink() == 0 => {
            // No ghost directories yet (CRIU 4.2.1 makes one).
            return Err(unsupported("a removed directory".into()));
        }
        pb::FdTypes::Reg | pb::FdTypes::Fifo if meta.nlink() == 0 && link_text.ends_with(" (deleted)") && !meta.is_file() => {
            // Only regular files have ghosts yet: an unlinked FIFO or device node would
            // be reopened by a name it no longer has.
            let node = if kind == pb::FdTypes::Fifo { "an unlinked FIFO" } else { "an unlinked device node" };
            return Err(unsupported(node.into()));
        }
        pb::FdTypes::Reg => {
            if let Some(original) =
                link_text.strip_suffix(" (deleted)").filter(|_| meta.mode() & libc::S_IFMT == libc::S_IFREG && meta.nlink() == 0)
            {
                files.check_ghost_dir(pid, &format!("fd {fd}"), Path::new(original))?;
                // One ghost per inode: every description of it (and every mapping)
                // names the same one, so they are one file again after restore.
                let ghost_id = files.ghost_of(fd_path, meta.clone());
                files.entries.push(FileTable::reg_entry(id, Path::new(original), open_flags, info.pos, Some(&meta)));
                files.ghost_remaps.push((id, ghost_id));
            } else {
                if let Some((number, _)) = super::proc_pid_path(&link_text).filter(|_| is_crusts_proc(&meta)) {
                    // A file of a process of crust's /proc: renamed with the tree's
                    // number of that process once the tree is known (`resolve_proc_files`).
                    files.proc_files.push((pid, fd, id, number));
                }
                files.entries.push(FileTable::reg_entry(id, &link, open_flags, info.pos, Some(&meta)));
            }
        }
        pb::FdTypes::Memfd => {
            let inode_id = files.memfds.add(&fd_path, &link_text).map_err(|e| unsupported(e.to_string()))?;
            files.entries.push(pb::FileEntry {
                memfd: Some(pb::MemfdFileEntry { id, flags: open_flags as u32, pos: info.pos, fown: Default::default(), inode_id }),
                ..entry(kind)
            });
        }
        pb::FdTypes::Tty => {
            let master = pty::is_master(&link_text);
            let index = if master {
                let copy = sys::process::borrow_fd(pid, fd).map_err(|e| unsupported(format!("pidfd_getfd: {e}")))?;
                let index = pty::master_index(&copy).map_err(|e| unsupported(e.to_string()))?;
                if files.pty_masters.insert(index, copy).is_some() {
                    return Err(unsupported(format!("a second open file description of the master of pty {index}")));
                }
                index
            } else {
                pty::slave_index(&link_text).expect("classified as a pty slave")
            };
            files.pty_files.push((pid, fd, id, index, master));
            // The path is a reg entry of its own, as CRIU writes it.
            // Each end names its own side's tty-info entry.
            let (slave_info, master_info) = pty::info_ids(index);
            let tty_info_id = if master { master_info } else { slave_info };
            files.entries.push(pb::FileEntry {
                tty: Some(pb::TtyFileEntry { id, tty_info_id, flags: open_flags as u32, fown: Default::default(), regf_id: Some(id + 1) }),
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
                // The flags pidfd_open takes (CRIU passes them to it as they are): the
                // file's O_RDWR is not one of them.
                pidfd: Some(pb::PidfdEntry { id, ino: meta.ino() as u32, flags: (open_flags & (libc::O_NONBLOCK | libc::O_EXCL)) as u32, nspid: target, fown: Default::default() }),
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
                files.entries.push(pb::FileEntry { usk: Some(Box::new(usk)), ..entry(kind) });
                dump_in_flight(files)?;
            }
            Err(Some(what)) => return Err(unsupported(what.to_string())),
            Err(None) => {
                let description = socket_description(pid, fd);
                if description.starts_with("netlink") {
                    let nlsk = super::nlsk::dump_socket(pid, fd, id, meta.ino() as u32, open_flags).map_err(|what| unsupported(what.to_string()))?;
                    kind = pb::FdTypes::Netlinksk;
                    files.entries.push(pb::FileEntry { nlsk: Some(Box::new(nlsk)), ..entry(kind) });
                    return Ok(DumpedFd { fd, id, cloexec, kind });
                }
                if description.starts_with("packet") {
                    let psk = super::psk::dump_socket(pid, fd, id, meta.ino() as u32, open_flags, (&mut files.packet_diag, &mut files.packet_diag_read))
                        .map_err(|what| unsupported(format!("{description}: {what}")))?;
                    kind = pb::FdTypes::Packetsk;
                    files.entries.push(pb::FileEntry { psk: Some(Box::new(psk)), ..entry(kind) });
                    return Ok(DumpedFd { fd, id, cloexec, kind });
                }
                if !description.starts_with("inet") {
                    return Err(unsupported(description));
                }
                let tcp = files.tcp_options();
                let (isk, queue) = inet::dump_socket(pid, fd, id, meta.ino() as u32, open_flags, (&mut files.tcp_listeners, &mut files.tcp_listeners_read), (&mut files.inet_shutdowns, &mut files.inet_shutdowns_read), tcp, &mut files.tcp)
                    .map_err(|what| unsupported(format!("{description}: {what}")))?;
                files.sk_queues.extend(queue.into_iter().map(|message| (id, message, Vec::new())));
                kind = pb::FdTypes::Inetsk;
                files.entries.push(pb::FileEntry { isk: Some(Box::new(isk)), ..entry(kind) });
            }
        },
        pb::FdTypes::Eventfd => {
            let efd = anon::parse_eventfd(id, open_flags as u32, &info_text).map_err(|e| unsupported(e.to_string()))?;
            files.entries.push(pb::FileEntry { efd: Some(efd), ..entry(kind) });
        }
        pb::FdTypes::Signalfd => {
            let sgfd = anon::parse_signalfd(id, open_flags as u32, &info_text).map_err(|e| unsupported(e.to_string()))?;
            files.entries.push(pb::FileEntry { sgfd: Some(sgfd), ..entry(kind) });
        }
        pb::FdTypes::Timerfd => {
            let tfd = anon::parse_timerfd(id, open_flags as u32, &info_text).map_err(|e| unsupported(e.to_string()))?;
            files.entries.push(pb::FileEntry { tfd: Some(Box::new(tfd)), ..entry(kind) });
        }
        pb::FdTypes::Inotify => {
            let ify = inotify::dump_inotify(pid, id, open_flags as u32, &info_text).map_err(|e| unsupported(e.to_string()))?;
            files.entries.push(pb::FileEntry { ify: Some(Box::new(ify)), ..entry(kind) });
        }
        pb::FdTypes::Eventpoll => {
            let watches = anon::parse_epoll_watches(id, &info_text).map_err(|e| unsupported(e.to_string()))?;
            for watch in &watches {
                // The watch is keyed by (file, fd number): the process must hold that
                // file at that number, so adding it again from here rebuilds it.
                let same = sys::kcmp::epoll_watches_file(pid, fd, watch.tfd, watch.tfd).unwrap_or(false);
                if !same {
                    return Err(unsupported(format!("epoll watch of fd {} that this process no longer holds at that number", watch.tfd)));
                }
            }
            files.entries.push(pb::FileEntry {
                epfd: Some(Box::new(pb::EventpollFileEntry { id, flags: open_flags as u32, fown: Default::default(), tfd: watches })),
                ..entry(kind)
            });
        }
        _ => unreachable!("classify returns only the kinds handled here"),
    }
    // Who gets SIGIO/SIGURG (F_SETOWN): on a regular file only with O_ASYNC, so that
    // 10,000 files need no pidfd_getfd each.
    if kind != pb::FdTypes::Reg || open_flags & libc::O_ASYNC != 0 {
        let copy = sys::process::borrow_fd(pid, fd).map_err(|e| unsupported(format!("pidfd_getfd: {e}")))?;
        let (pid_type, owner, signum) = sys::file::owner(&copy).map_err(io_err(pid, format!("F_GETOWN_EX fd {fd}")))?;
        if owner != 0 || signum != 0 {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let uids = procfs::parse_key_values(&status).get("Uid").cloned().unwrap_or_default();
            let mut ids = uids.split_whitespace().map(|v| v.parse::<u32>().unwrap_or(0));
            let (uid, euid) = (ids.next().unwrap_or(0), ids.next().unwrap_or(0));
            files.owners.push((pid, fd, id, pb::FownEntry { uid, euid, signum: signum as u32, pid_type: pid_type as u32, pid: owner as u32 }));
        }
    }
    if files.mount_view.is_some() {
        // The path of a file, FIFO or tty is that of a mount of the tree's namespace.
        for reg in files.entries.iter_mut().rev().take(2).filter(|e| e.id == id || e.id == id + 1).filter_map(|e| e.reg.as_mut()) {
            reg.mnt_id = Some(info.mnt_id);
        }
    }
    Ok(DumpedFd { fd, id, cloexec, kind })
}


/// Dumps the fds in flight in the queue just read (SCM_RIGHTS) as files of their own, as
/// crust holds them: a file also open in the tree keeps its id (kcmp), so it stays one
/// description. A socket in flight has its own queue read in turn.
fn dump_in_flight(files: &mut FileTable) -> Result<(), FileDumpError> {
    use std::os::fd::AsRawFd;
    let me = std::process::id() as i32;
    while let Some((index, fds)) = files.in_flight_pending.pop() {
        let mut ids = Vec::new();
        for fd in fds {
            let dumped = dump_fd(me, fd.as_raw_fd() as u32, false, files).map_err(|e| match e {
                FileDumpError::Unsupported { what, .. } => FileDumpError::Unsupported { pid: me, what: format!("a file in flight in a unix socket queue: {what}") },
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
fn unix_entry(pid: i32, fd: u32, id: u32, ino: u32, flags: i32, files: &mut FileTable) -> Result<pb::UnixSkEntry, Option<FileError>> {
    let socket = sys::process::borrow_fd(pid, fd).map_err(|e| Some(file_io("pidfd_getfd")(e)))?;
    let request = [sys::netlink::unix_diag_request()];
    if let Some(answers) = super::diag_in_socket_namespace(&socket, &mut files.unix_diag_read, &request).map_err(Some)? {
        for bytes in answers {
            files.unix_diag.extend(unix::parse_diag(&bytes).map_err(Some)?);
        }
    }
    let diag = files.unix_diag.get(&ino).cloned().ok_or(None)?;
    if !matches!(diag.kind as i32, libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET) {
        return Err(Some(FileError::refused(format!("unix socket of type {}", diag.kind))));
    }
    if diag.state == unix::STATE_LISTEN && diag.rqueue > 0 {
        return Err(Some(FileError::refused(format!("listening unix socket with {} connections waiting for accept", diag.rqueue))));
    }
    let path_name = unix::resolve_path_name(pid, &diag).map_err(Some)?;
    // A stream or seqpacket socket that never connected has no queue (reading it fails
    // with EINVAL or ENOTCONN); a datagram socket takes datagrams connected or not.
    if diag.kind as i32 == libc::SOCK_DGRAM || diag.state == unix::STATE_ESTABLISHED {
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
        opts: super::sockopts::read(&socket),
        name: diag.name.clone(),
        // Written only when shut, as CRIU writes it.
        shutdown: (diag.shutdown != 0).then_some(diag.shutdown as i32),
        // In a user namespace of the tree's own, the owner as the namespace sees it (the
        // restore sets it from inside).
        file_perms: path_name.perms.map(|perms| match files.id_maps.as_ref() {
            Some(maps) => pb::FilePermsEntry { uid: maps.uid_inside(perms.uid), gid: maps.gid_inside(perms.gid), ..perms },
            None => perms,
        }),
        name_dir: path_name.name_dir,
        deleted: path_name.deleted.then_some(true),
        ..Default::default()
    })
}

/// Once every fd is collected: each pty whose master is in the tree gets its tty-info
/// (session and foreground group as the tree numbers them, `virtual_of`); a slave whose
/// master is elsewhere is the caller's terminal, reopened by path with `--shell-job`.
pub(crate) fn finish_ptys(files: &mut FileTable, shell_job: bool, virtual_of: impl Fn(i32) -> Option<i32>) -> Result<(), FileDumpError> {
    for &(pid, fd, id, index, master) in &files.pty_files {
        if master || files.pty_masters.contains_key(&index) {
            continue;
        }
        if !shell_job {
            return Err(FileDumpError::Unsupported {
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
        let mut info = pty::dump_info(index, master).map_err(|what| FileDumpError::Unsupported { pid: holder, what: format!("pty {index}: {what}") })?;
        for (value, what) in [(&mut info.sid, "session"), (&mut info.pgrp, "foreground process group")] {
            if *value != 0 {
                *value = virtual_of(*value as i32).ok_or_else(|| FileDumpError::Unsupported {
                    pid: holder,
                    what: format!("pty {index}, whose {what} {value} is outside the dumped tree"),
                })? as u32;
            }
        }
        let master_side = pty::master_info(&mut info);
        files.tty_infos.push(master_side);
        files.tty_infos.push(info);
    }
    Ok(())
}

/// Whether a file is on crust's own /proc (one procfs instance: the same device).
fn is_crusts_proc(meta: &fs::Metadata) -> bool {
    fs::metadata("/proc").is_ok_and(|proc| proc.dev() == meta.dev())
}

/// Names the process of each file under /proc/PID as the dumped tree numbers it
/// (`virtual_of`: the tree's number of a host pid or tid), so that restore reopens it
/// for the restored process; a file of a process outside the tree fails the dump.
pub(crate) fn resolve_proc_files(files: &mut FileTable, virtual_of: impl Fn(i32) -> Option<i32>) -> Result<(), FileDumpError> {
    for &(pid, fd, id, number) in &files.proc_files {
        let Some(entry) = files.entries.iter_mut().find(|e| e.id == id).and_then(|e| e.reg.as_mut()) else { continue };
        let tree_number = virtual_of(number).ok_or_else(|| FileDumpError::Unsupported {
            pid,
            what: format!("fd {fd} ({}, a /proc file of process {number}, outside the dumped tree)", entry.name),
        })?;
        let rest = super::proc_pid_path(&entry.name).map(|(_, rest)| rest.to_string()).unwrap_or_default();
        entry.name = format!("/proc/{tree_number}{rest}");
    }
    Ok(())
}

/// Writes each file's owner (F_SETOWN) into its entry, its pid (a process, thread or
/// process group) as the dumped tree numbers it; an owner outside the tree fails the
/// dump naming it.
pub(crate) fn resolve_owners(files: &mut FileTable, virtual_of: impl Fn(i32) -> Option<i32>) -> Result<(), FileDumpError> {
    for (pid, fd, id, fown) in std::mem::take(&mut files.owners) {
        let mut fown = fown;
        if fown.pid != 0 {
            fown.pid = virtual_of(fown.pid as i32).ok_or_else(|| FileDumpError::Unsupported {
                pid,
                what: format!("fd {fd} whose owner (F_SETOWN) {} is outside the dumped tree", fown.pid),
            })? as u32;
        }
        if let Some(owner) = files.entries.iter_mut().find(|e| e.id == id).and_then(super::owner_of) {
            *owner = fown;
        }
    }
    Ok(())
}

/// Names each pidfd's process as the dumped tree numbers it: `virtual_of` gives the
/// tree's number of a host pid or tid of the tree, `None` outside it. A pidfd of a
/// process that has exited keeps -1.
pub(crate) fn resolve_pidfds(files: &mut FileTable, virtual_of: impl Fn(i32) -> Option<i32>) -> Result<(), FileDumpError> {
    for &(pid, fd, id, target) in &files.pidfds {
        let nspid = if target == -1 {
            -1
        } else {
            virtual_of(target).ok_or_else(|| FileDumpError::Unsupported {
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
pub(crate) fn check_tree(files: &FileTable) -> Result<(), FileDumpError> {
    check_ghost_limit(files)?;
    let dumped: std::collections::BTreeSet<u32> = files.unix_dumped.iter().map(|u| u.2).collect();
    let diag = |ino: u32| files.unix_diag.get(&ino);
    for &(pid, fd, ino, peer) in &files.unix_dumped {
        if peer == 0 || dumped.contains(&peer) {
            continue;
        }
        // A datagram socket sending to a named one outside (/dev/log) connects again.
        let datagram = diag(ino).is_some_and(|d| d.kind as i32 == libc::SOCK_DGRAM);
        let named = datagram && diag(peer).is_some_and(|p| !p.name.is_empty());
        if !named {
            return Err(FileDumpError::Unsupported {
                pid,
                what: format!("fd {fd} (unix socket connected to socket:[{peer}] outside the dumped tree)"),
            });
        }
    }
    Ok(())
}

/// `--ghost-limit`: an unlinked file larger than the limit fails the dump (CRIU's rule;
/// its default is 1 MiB), naming the file, its size and the limit that would take it.
fn check_ghost_limit(files: &FileTable) -> Result<(), FileDumpError> {
    let Some(limit) = files.ghost_limit else { return Ok(()) };
    for (ghost_id, source, meta) in &files.ghosts {
        if meta.len() <= limit {
            continue;
        }
        // The source is /proc/PID/fd/N or /proc/PID/map_files/RANGE of the holder; the
        // name, that of the first reg entry naming the ghost.
        let pid = source.iter().nth(2).and_then(|p| p.to_str()).and_then(|p| p.parse().ok()).unwrap_or(0);
        let reg_id = files.ghost_remaps.iter().find(|(_, ghost)| ghost == ghost_id).map(|(reg, _)| *reg);
        let name = files
            .entries
            .iter()
            .find(|e| Some(e.id) == reg_id)
            .and_then(|e| e.reg.as_ref())
            .map_or_else(|| source.display().to_string(), |r| r.name.clone());
        let needed = meta.len().div_ceil(1 << 20);
        return Err(FileDumpError::Refused {
            pid,
            what: format!(
                "unlinked file {name} ({}) is {} bytes, more than the ghost limit of {limit} bytes; raise it with --ghost-limit {needed}M",
                source.display(),
                meta.len()
            ),
        });
    }
    Ok(())
}
