//! Open files, a subsystem with its dump half and its restore half:
//! - dump (`dump.rs`): which fds a process holds and what each is, one `file_entry`
//!   per open file description (kcmp finds sharing across the tree), into a
//!   [`FileTable`]; `write.rs` writes files.img, fdinfo-N.img and the per-kind images;
//! - restore (`restore.rs`): the [`Broker`] opens every description of the tree once in
//!   crust before the first fork, each restored process installs its fds from it.
//!
//! One module per kind: `anon` (eventfd, signalfd, timerfd, epoll), `inet`, `tcp`
//! (`--tcp-established`), `unix`, `nlsk` (netlink), `psk` (packet), `pipe` (and FIFOs), `memfd`, `pty`, `inotify`,
//! `locks`. A new kind of file goes here, next to them. `netlock` is the TCP lock of a
//! dump: one table as CRIU names it, made, kept and removed there only.
//!
//! Invariant: imports no pipeline; the kernel calls go through `sys/`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crust_images::pb;

use crate::error::io_failure;
use crate::procfs;

mod anon;
mod dump;
mod inet;
mod inotify;
mod locks;
mod netlock;
pub(crate) mod memfd;
mod pipe;
mod pty;
mod sockopts;
mod restore;
mod tcp;
mod nlsk;
mod psk;
mod unix;
mod write;

pub(crate) use dump::{check_tree, collect_fds, finish_ptys, resolve_owners, resolve_pidfds, resolve_proc_files};
pub(crate) use netlock::{namespace_lock_ruleset, NETWORK_LOCK_IPTABLES, NETWORK_LOCK_NFTABLES, NETWORK_LOCK_SKIP};
pub(crate) use restore::{broker_ids, established_connections, in_flight_ids, kept_locks, unlock_tcp, Broker};
pub(crate) use write::{write_fdinfo, write_images};

/// Why the files of a process could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum FileDumpError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Parse { pid: i32, source: procfs::ParseError },
    #[error("dump pid {pid}: {source}")]
    Image { pid: i32, source: crust_images::ImageError },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    /// Something the options ask crust to refuse (a file lock without `--file-locks`,
    /// an unlinked file over `--ghost-limit`); `what` says which option lets it through.
    #[error("dump pid {pid}: {what}")]
    Refused { pid: i32, what: String },
}
io_failure!(FileDumpError);

/// What went wrong with one file or one image of files, without the process and fd it
/// belongs to (the caller names those): a failed step, a bad image, or something crust
/// refuses (a state it does not handle, an image that contradicts itself, a host that
/// cannot give it back).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// `what` names the file and the step.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// An image (the error names it).
    #[error(transparent)]
    Image(#[from] crust_images::ImageError),
    #[error("{what}")]
    Refused { what: String },
    /// A failure inside a bigger step: `what` names that step.
    #[error("{what}: {source}")]
    Within { what: String, source: Box<FileError> },
}

impl FileError {
    /// Something crust refuses, said in `what`.
    pub(crate) fn refused(what: impl Into<String>) -> FileError {
        FileError::Refused { what: what.into() }
    }
}

/// For `map_err`: the step `what` failed on the way.
pub(crate) fn file_within<E: Into<FileError>>(what: impl Into<String>) -> impl FnOnce(E) -> FileError {
    let what = what.into();
    move |source| FileError::Within { what, source: Box::new(source.into()) }
}

/// sock_diag's answers to `requests` in the network namespace `socket` belongs to
/// (`SIOCGSKNS`: a container's sockets are listed in the container's namespace, not in
/// crust's), or `None` when `read` already holds that namespace: each is read once.
pub(crate) fn diag_in_socket_namespace(
    socket: &std::os::fd::OwnedFd,
    read: &mut std::collections::BTreeSet<u64>,
    requests: &[Vec<u8>],
) -> Result<Option<Vec<Vec<u8>>>, FileError> {
    use std::os::fd::{AsFd, AsRawFd};
    let netns = crate::sys::socket::socket_net_namespace(socket.as_raw_fd()).map_err(file_io("SIOCGSKNS"))?;
    let inode = crate::sys::netns::namespace_inode(&netns).map_err(file_io("stat the socket's network namespace"))?;
    if !read.insert(inode) {
        return Ok(None);
    }
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.push(crate::sys::netlink::sock_diag_dump_in(netns.as_fd(), request).map_err(file_io(format!("sock_diag in net:[{inode}]")))?);
    }
    Ok(Some(answers))
}

/// For `map_err`: step `what` on a file failed.
pub(crate) fn file_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> FileError {
    let what = what.into();
    move |source| FileError::Io { what, source }
}

/// An fd already dumped, for kcmp: (pid, fd number, file id).
pub(crate) type FdOfFile = (i32, u32, u32);

/// The files the images refer to, by id (files.img), plus ghost copies of unlinked ones.
#[derive(Default)]
pub(crate) struct FileTable {
    pub(crate) entries: Vec<pb::FileEntry>,
    pub(crate) by_path: BTreeMap<(PathBuf, i32), u32>,
    /// Every dumped fd of every process so far, by (dev, inode) of its file: only fds of
    /// one file can share an open file description, so kcmp runs within these.
    pub(crate) by_inode: BTreeMap<(u64, u64), Vec<FdOfFile>>,
    /// Unlinked files, one ghost per inode: (ghost id, source to copy from, metadata).
    pub(crate) ghosts: Vec<(u32, PathBuf, fs::Metadata)>,
    /// Every reg entry of an unlinked file and its ghost (remap-fpath.img): (reg file
    /// id, ghost id). fds and mappings of one inode all name one ghost.
    pub(crate) ghost_remaps: Vec<(u32, u32)>,
    /// The ghost of each unlinked inode, by (dev, inode).
    pub(crate) ghost_by_inode: BTreeMap<(u64, u64), u32>,
    /// Reg entries made for mappings of unlinked files, by (ghost id, open flags).
    pub(crate) ghost_mappings: BTreeMap<(u32, i32), u32>,
    /// Unread data of pipes (pipes-data.img) and FIFOs (fifo-data.img), once per pipe.
    pub(crate) pipe_data: BTreeMap<u32, pipe::PipeContents>,
    pub(crate) fifo_data: BTreeMap<u32, pipe::PipeContents>,
    /// Every AF_UNIX socket of the network namespaces the dumped unix sockets belong to,
    /// by inode (socket inodes are unique across namespaces).
    pub(crate) unix_diag: BTreeMap<u32, unix::UnixDiag>,
    /// The network namespaces (by inode) whose unix sockets are in `unix_diag`.
    pub(crate) unix_diag_read: std::collections::BTreeSet<u64>,
    /// Queued messages of unix sockets (sk-queues.img): (socket file id, message, file
    /// ids of the fds in flight with it).
    pub(crate) sk_queues: Vec<(u32, Vec<u8>, Vec<u32>)>,
    /// fds in flight just peeked, dumped once their socket's entry is in:
    /// (index into `sk_queues`, crust's copies).
    pub(crate) in_flight_pending: Vec<(usize, Vec<std::os::fd::OwnedFd>)>,
    /// crust's copies of the fds in flight, open until the dump ends (kcmp compares
    /// later fds with them).
    pub(crate) in_flight: Vec<std::os::fd::OwnedFd>,
    /// File locks (filelocks.img), with what identifies a POSIX lock so each is once.
    pub(crate) locks: Vec<pb::FileLockEntry>,
    pub(crate) posix_locks_seen: std::collections::BTreeSet<(i32, u64, u64, i64, i64)>,
    /// TCP listeners by inode: (connections waiting, backlog), read once per dump.
    pub(crate) tcp_listeners: BTreeMap<u32, (u32, u32)>,
    /// The network namespaces (by inode) whose TCP listeners are in `tcp_listeners`.
    pub(crate) tcp_listeners_read: std::collections::BTreeSet<u64>,
    /// Every packet socket of the network namespaces the dumped ones belong to (packet_diag).
    pub(crate) packet_diag: BTreeMap<u32, psk::PacketDiag>,
    /// The network namespaces (by inode) whose packet sockets are in `packet_diag`.
    pub(crate) packet_diag_read: std::collections::BTreeSet<u64>,
    /// Datagram inet sockets (UDP, UDP-Lite) that are shut down, by inode: their
    /// shutdown bits (inet_diag).
    pub(crate) inet_shutdowns: BTreeMap<u32, u8>,
    /// The network namespaces (by inode) whose datagram sockets are in `inet_shutdowns`.
    pub(crate) inet_shutdowns_read: std::collections::BTreeSet<u64>,
    /// Unix sockets dumped: (pid, fd, inode, peer inode), to check every peer is dumped.
    pub(crate) unix_dumped: Vec<(i32, u32, u32, u32)>,
    /// memfd inodes (memfd.img) and the MEMFD file entries made for mappings, by
    /// (inode id, open flags).
    pub(crate) memfds: memfd::MemfdInodes,
    pub(crate) memfd_mappings: BTreeMap<(u32, i32), u32>,
    /// pidfds: (holder pid, fd, file id, target as this host numbers it, -1: exited).
    pub(crate) pidfds: Vec<(i32, u32, u32, i32)>,
    /// Files under /proc/PID of crust's own /proc: (holder pid, fd, file id, PID as
    /// this host numbers it); renamed with the tree's number once the tree is known.
    pub(crate) proc_files: Vec<(i32, u32, u32, i32)>,
    /// Owners of files (F_SETOWN, F_SETOWN_EX, F_SETSIG): (holder pid, fd, file id,
    /// owner with its pid as this host numbers it); renamed with the tree's numbers once
    /// the tree is known.
    pub(crate) owners: Vec<(i32, u32, u32, pb::FownEntry)>,
    /// Dump established TCP connections (`--tcp-established`).
    pub(crate) tcp_established: bool,
    /// Dump file locks (`--file-locks`); without it a lock fails the dump.
    pub(crate) file_locks: bool,
    /// The largest unlinked file carried in a ghost image (`--ghost-limit`); `None`:
    /// any size.
    pub(crate) ghost_limit: Option<u64>,
    /// Leave connections unlocked (`--network-lock skip`).
    pub(crate) network_lock_skip: bool,
    /// Dump established connections closed (`--tcp-close`).
    pub(crate) tcp_close: bool,
    /// Leave out a listener's connections waiting for accept (`--skip-in-flight`).
    pub(crate) skip_in_flight: bool,
    /// Pty ends: (pid, fd, file id, pty index, is the master), and a copy of each
    /// master by index (its state is read through it once every fd is collected).
    pub(crate) pty_files: Vec<(i32, u32, u32, u32, bool)>,
    pub(crate) pty_masters: BTreeMap<u32, std::os::fd::OwnedFd>,
    /// tty-info.img entries.
    pub(crate) tty_infos: Vec<pb::TtyInfoEntry>,
    /// Established connections taken in repair mode, and the dump's lock.
    pub(crate) tcp: TcpRepairGuard,
    /// The tree's own mount namespace, when it has one: paths are that namespace's
    /// view, every file must be on one of its dumped mounts, and reg entries name it.
    /// The maps of the tree's own user namespace: owners of ghost files are written in
    /// its view.
    pub(crate) id_maps: Option<crate::userns::IdMaps>,
    pub(crate) mount_view: Option<MountView>,
}

/// How the files of a tree in a mount namespace of its own are reached and checked.
pub(crate) struct MountView {
    /// `/proc/ROOT/root`: the namespace's paths, joined below it, reach its files.
    pub(crate) root: PathBuf,
    /// The dumped mounts (by mountinfo id).
    pub(crate) mounts: std::collections::BTreeSet<u32>,
}

impl MountView {
    /// Where crust reaches `path` of the namespace.
    pub(crate) fn reach(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The mount `reached` is on (`mnt_id` of its fdinfo, through an O_PATH fd).
    pub(crate) fn mount_of(reached: &Path) -> io::Result<i32> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(reached)?;
        let text = fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd()))?;
        procfs::parse_fdinfo(&text).map(|info| info.mnt_id).map_err(io::Error::other)
    }

    /// Checks that a file of the tree (`what`) is on a dumped mount.
    pub(crate) fn check(&self, mnt_id: i32, what: &str) -> Result<(), OutsideMounts> {
        if u32::try_from(mnt_id).is_ok_and(|id| self.mounts.contains(&id)) {
            return Ok(());
        }
        Err(OutsideMounts { what: what.to_string(), mnt_id })
    }
}

/// A file of the tree on a mount the dump does not hold.
#[derive(Debug, thiserror::Error)]
#[error("{what} on mount {mnt_id}, outside the tree's mount namespace or on a --skip-mnt mount,")]
pub(crate) struct OutsideMounts {
    what: String,
    mnt_id: i32,
}

/// Established TCP connections in repair mode and locked during a dump, and the dump's
/// one lock table (`tcp::lock_table` of the run id, CRIU's name). Dropped without
/// `keep_locked` (a failed dump), each leaves repair mode and the table goes: the
/// target goes on as before. After `keep_locked` (the target is killed) the sockets
/// close in repair mode, sending nothing, and the table stays until the restore.
#[derive(Default)]
pub(crate) struct TcpRepairGuard {
    pub(crate) connections: Vec<(u32, inet::Established)>,
    pub(crate) keep_locked: bool,
    /// The dump's id (`inventory.dump_criu_run_id`): the lock table is named after it.
    pub(crate) run_id: String,
    /// The lock tables, one per network namespace with connections (by the namespace's
    /// inode, `None` for crust's own), each made with the first connection it locks
    /// (none with `--network-lock skip`, or without an established connection).
    network_locks: Vec<(Option<u64>, netlock::NetworkLock)>,
}

impl TcpRepairGuard {
    /// Locks the connection local↔peer in the dump's table of the connection's network
    /// namespace (`netns`: its inode and fd, `None` for crust's own), made with the
    /// namespace's first connection.
    pub(crate) fn lock(
        &mut self,
        local: &crate::sys::socket::InetAddress,
        peer: &crate::sys::socket::InetAddress,
        netns: Option<(u64, std::os::fd::OwnedFd)>,
    ) -> Result<(), FileError> {
        let inode = netns.as_ref().map(|(inode, _)| *inode);
        let index = match self.network_locks.iter().position(|(key, _)| *key == inode) {
            Some(index) => index,
            None => {
                let table = tcp::lock_table(&self.run_id);
                self.network_locks.push((inode, netlock::NetworkLock::new(&table, netns.map(|(_, fd)| fd))));
                self.network_locks.len() - 1
            }
        };
        self.network_locks[index].1.add(local, peer)
    }

    pub(crate) fn release(&mut self) {
        for (_, connection) in self.connections.drain(..) {
            let _ = tcp::set_repair(&connection.socket, false);
        }
        for (_, mut lock) in self.network_locks.drain(..) {
            if let Err(e) = lock.remove() {
                log::warn!("unlock the TCP connections (table inet {}): {e}", tcp::lock_table(&self.run_id));
            }
        }
    }

    /// Puts every socket in repair mode again, so that it closes silently with the
    /// killed tree. `Err` names the first that could not (the dump fails, the tree runs
    /// on).
    fn silence(&mut self) -> Result<(), (u32, FileError)> {
        for (ino, connection) in &self.connections {
            tcp::set_repair(&connection.socket, true).map_err(|e| (*ino, e))?;
        }
        Ok(())
    }

    /// Keeps the lock table past crust's exit (the tree is killed or left stopped): the
    /// restore lifts it. `Err`: it could not be kept.
    fn keep(&mut self) -> Result<(), FileError> {
        self.keep_locked = true;
        self.network_locks.iter_mut().try_for_each(|(_, lock)| lock.keep())
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
    /// What the options say about TCP sockets.
    pub(crate) fn tcp_options(&self) -> inet::TcpOptions {
        inet::TcpOptions {
            established: self.tcp_established,
            close: self.tcp_close,
            lock: !self.network_lock_skip,
            skip_in_flight: self.skip_in_flight,
        }
    }

    /// After a good dump that leaves the target running: its connections leave repair
    /// mode and are unlocked (before the target runs again).
    pub(crate) fn release_tcp(&mut self) {
        self.tcp.release();
    }

    /// After a good dump, just before the tree is killed (or left stopped): its TCP
    /// sockets go into repair mode again, to close without a word.
    pub(crate) fn silence_tcp(&mut self, pid: i32) -> Result<(), FileDumpError> {
        self.tcp.silence().map_err(|(ino, error)| FileDumpError::Refused {
            pid,
            what: format!("TCP connection socket:[{ino}]: repair mode before the tree is killed: {error}"),
        })
    }

    /// After a good dump, once the tree is killed (or left stopped): its connections
    /// stay locked for the restore, past crust's exit, and close silently (in repair
    /// mode). `Err`: a lock could not be kept (the connection is lost to the restore).
    pub(crate) fn keep_tcp_locked(&mut self, pid: i32) -> Result<(), FileDumpError> {
        self.tcp.keep().map_err(|error| FileDumpError::Refused {
            pid,
            what: format!("keeping the TCP lock table inet {} for the restore: {error}", tcp::lock_table(&self.tcp.run_id)),
        })
    }
}

impl FileTable {
    pub(crate) fn next_id(&self) -> u32 {
        self.entries.len() as u32 + 1
    }

    pub(crate) fn reg_entry(id: u32, name: &Path, flags: i32, pos: u64, meta: Option<&fs::Metadata>) -> pb::FileEntry {
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
    pub(crate) fn add_path(&mut self, pid: i32, path: &Path, flags: i32) -> Result<u32, FileDumpError> {
        if let Some(&id) = self.by_path.get(&(path.to_path_buf(), flags)) {
            return Ok(id);
        }
        let (reached, mnt_id) = match &self.mount_view {
            Some(view) => {
                let reached = view.reach(path);
                let mnt_id = MountView::mount_of(&reached).map_err(io_err(pid, format!("find the mount of {}", path.display())))?;
                view.check(mnt_id, &format!("file {}", path.display())).map_err(|outside| FileDumpError::Unsupported { pid, what: outside.to_string() })?;
                (reached, Some(mnt_id))
            }
            None => (path.to_path_buf(), None),
        };
        let meta = fs::metadata(&reached).map_err(io_err(pid, format!("stat {}", path.display())))?;
        let id = self.next_id();
        let mut entry = Self::reg_entry(id, path, flags, 0, Some(&meta));
        if let Some(reg) = entry.reg.as_mut() {
            reg.mnt_id = mnt_id;
        }
        self.entries.push(entry);
        self.by_path.insert((path.to_path_buf(), flags), id);
        Ok(id)
    }

    /// The ghost of the unlinked file `meta` describes, made on its first use: its
    /// contents are copied from `source` (a /proc fd or map_files link of the frozen
    /// target) when the images are written.
    pub(crate) fn ghost_of(&mut self, source: PathBuf, meta: fs::Metadata) -> u32 {
        let key = (meta.dev(), meta.ino());
        if let Some(&ghost_id) = self.ghost_by_inode.get(&key) {
            return ghost_id;
        }
        let ghost_id = self.ghosts.len() as u32 + 1;
        self.ghosts.push((ghost_id, source, meta));
        self.ghost_by_inode.insert(key, ghost_id);
        ghost_id
    }

    /// A mapped file that was unlinked, opened with `flags` (the mapping's own file's
    /// mode): a reg entry per inode and flags, whoever maps it, naming the inode's one
    /// ghost, whose contents come from `/proc/PID/map_files/START-END`.
    pub(crate) fn add_deleted_mapping(&mut self, pid: i32, start: u64, end: u64, name: &str, flags: i32) -> Result<u32, FileDumpError> {
        let source = PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"));
        let meta = fs::metadata(&source).map_err(io_err(pid, format!("stat {}", source.display())))?;
        let ghost_id = self.ghost_of(source, meta.clone());
        if let Some(&id) = self.ghost_mappings.get(&(ghost_id, flags)) {
            return Ok(id);
        }
        let original = name.strip_suffix(" (deleted)").unwrap_or(name);
        self.check_ghost_dir(pid, &format!("memory area {start:#x}-{end:x}"), Path::new(original))?;
        let id = self.next_id();
        self.entries.push(Self::reg_entry(id, Path::new(original), flags, 0, Some(&meta)));
        self.ghost_remaps.push((id, ghost_id));
        self.ghost_mappings.insert((ghost_id, flags), id);
        Ok(id)
    }
}

impl FileTable {
    /// Refuses an unlinked file whose directory is gone too (`what` names the fd or
    /// area): its ghost is made beside its old name at restore (CRIU 4.2.1 makes the
    /// missing directories for the time of the restore).
    pub(crate) fn check_ghost_dir(&self, pid: i32, what: &str, original: &Path) -> Result<(), FileDumpError> {
        let Some(dir) = original.parent() else { return Ok(()) };
        let reached = self.mount_view.as_ref().map_or_else(|| dir.to_path_buf(), |view| view.reach(dir));
        if reached.is_dir() {
            return Ok(());
        }
        Err(FileDumpError::Unsupported { pid, what: format!("{what} ({}): an unlinked file whose directory {} was removed too", original.display(), dir.display()) })
    }

    /// A mapped memfd (`name` as /proc/PID/maps shows it): a MEMFD file entry opened
    /// with `flags`, one per inode and flags, whoever maps it.
    pub(crate) fn add_memfd_mapping(&mut self, pid: i32, start: u64, end: u64, name: &str, flags: i32) -> Result<u32, FileDumpError> {
        let source = PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"));
        let inode_id = self
            .memfds
            .add(&source, name)
            .map_err(|what| FileDumpError::Unsupported { pid, what: format!("memory area {start:#x}-{end:#x} ({name}): {what}") })?;
        Ok(self.memfd_mapping_entry(inode_id, flags))
    }

    /// A shared anonymous area (MAP_SHARED|MAP_ANONYMOUS, or /dev/zero mapped shared),
    /// recorded as CRIU 4.2 records it: a mapping of a memfd inode named
    /// [`memfd::SHARED_ANON_NAME`], one per object (its inode), with the object's size,
    /// seals and data; a MEMFD file entry opened with `flags`.
    pub(crate) fn add_shared_anon_mapping(&mut self, pid: i32, start: u64, end: u64, flags: i32) -> Result<u32, FileDumpError> {
        let source = PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"));
        let inode_id = self
            .memfds
            .add_named(&source, memfd::SHARED_ANON_NAME)
            .map_err(|what| FileDumpError::Unsupported { pid, what: format!("shared anonymous memory area {start:#x}-{end:#x}: {what}") })?;
        Ok(self.memfd_mapping_entry(inode_id, flags))
    }

    /// The MEMFD file entry for mappings of memfd inode `inode_id` opened with `flags`:
    /// one per inode and flags, whoever maps it.
    fn memfd_mapping_entry(&mut self, inode_id: u32, flags: i32) -> u32 {
        if let Some(&id) = self.memfd_mappings.get(&(inode_id, flags)) {
            return id;
        }
        let id = self.next_id();
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Memfd as i32,
            id,
            memfd: Some(pb::MemfdFileEntry { id, flags: flags as u32, pos: 0, fown: Default::default(), inode_id }),
            ..Default::default()
        });
        self.memfd_mappings.insert((inode_id, flags), id);
        id
    }
}

/// One open fd of the target.
pub(crate) struct DumpedFd {
    pub(crate) fd: u32,
    pub(crate) id: u32,
    pub(crate) cloexec: bool,
    pub(crate) kind: pb::FdTypes,
}


/// `/proc/N/REST` → (N, `/REST`, maybe empty): a file of process or thread N, as a /proc
/// mount numbers it. Pure.
pub(crate) fn proc_pid_path(name: &str) -> Option<(i32, &str)> {
    let rest = name.strip_prefix("/proc/")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let digits = &rest[..end];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, &rest[end..]))
}

#[cfg(test)]
mod proc_path_tests {
    use super::proc_pid_path;

    #[test]
    fn proc_pid_paths_split_into_pid_and_rest() {
        assert_eq!(proc_pid_path("/proc/4711/stat"), Some((4711, "/stat")));
        assert_eq!(proc_pid_path("/proc/12/task/13/maps"), Some((12, "/task/13/maps")));
        assert_eq!(proc_pid_path("/proc/12"), Some((12, "")));
        assert_eq!(proc_pid_path("/proc/self/stat"), None);
        assert_eq!(proc_pid_path("/proc/meminfo"), None);
        assert_eq!(proc_pid_path("/proc/1x/stat"), None);
        assert_eq!(proc_pid_path("/procx/1/stat"), None);
    }
}

/// The owner (fown) of a file entry of any kind that has one.
pub(crate) fn owner_of(entry: &mut pb::FileEntry) -> Option<&mut pb::FownEntry> {
    if let Some(e) = entry.reg.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.pipe.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.usk.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.isk.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.efd.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.sgfd.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.tfd.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.epfd.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.ify.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.tty.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.memfd.as_mut() { return Some(&mut e.fown) }
    if let Some(e) = entry.pidfd.as_mut() { return Some(&mut e.fown) }
    None
}
