//! The restore half of files: the [`Broker`] creates every pipe, socket, pty and
//! anon-inode file of files.img and opens every other description once, in crust,
//! before the first fork; each restored process installs its own fds from it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{file_io, file_within, FileError};
use crust_images::pb;
use crust_images::{ImageKind, ImageReader};

use super::netlock::{NETWORK_LOCK_IPTABLES, NETWORK_LOCK_NFTABLES, NETWORK_LOCK_SKIP};
use super::{anon, inet, inotify, locks, memfd, nlsk, pipe, psk, pty, tcp, unix};
use crate::sys;
use crate::sys::socket::InetAddress;

/// Every open file description of a restored tree, opened once by crust before the
/// first fork, at fd numbers above every fd of the tree: each restored process inherits
/// them all through fork, installs the ones it holds at their numbers, and closes the
/// rest. Descriptions shared between fds, or between processes, so stay shared.
/// (`Default`: none yet, the parent's when the restored root opens them itself.)
#[derive(Default)]
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
    /// pidfds of exited processes: (broker number, flags, dumped inode), made by the
    /// restored root in the tree's pid namespace (`make_dead_pidfds`), whose processes may
    /// signal them; those of one inode name one exited process.
    dead_pidfds: Vec<(i32, i32, u32)>,
    /// Ptys that are a session's controlling terminal: (session, foreground group, index).
    controlling: Vec<(u32, u32, u32)>,
}

/// The extra images of pipes, FIFOs and sockets, read into memory for the broker.
fn read_pipe_data(dir: &Path, kind: ImageKind) -> Result<BTreeMap<u32, pipe::PipeContents>, FileError> {
    let path = dir.join(kind.file_name(0));
    let mut out = BTreeMap::new();
    if !path.exists() {
        return Ok(out);
    }
    let mut reader = ImageReader::open(&path)?;
    while let Some(entry) = reader.next_entry::<pb::PipeDataEntry>()? {
        let data = reader.read_payload(entry.bytes as u64)?;
        out.insert(entry.pipe_id, pipe::PipeContents { size: entry.size.unwrap_or(0), data });
    }
    Ok(out)
}

/// The queued messages of sockets (sk-queues.img): the queues without fds in flight,
/// and, apart, those of sockets where some message carries fds (SCM_RIGHTS: file ids),
/// which are sent once every file exists.
/// A queued message: its bytes and the file ids of the fds in flight with it.
type QueuedMessage = (Vec<u8>, Vec<u32>);

type SocketQueues = (BTreeMap<u32, Vec<Vec<u8>>>, BTreeMap<u32, Vec<(Vec<u8>, Vec<u32>)>>);

fn read_sk_queues(dir: &Path) -> Result<SocketQueues, FileError> {
    let path = dir.join(ImageKind::SkQueues.file_name(0));
    let mut all: BTreeMap<u32, Vec<QueuedMessage>> = BTreeMap::new();
    if !path.exists() {
        return Ok(Default::default());
    }
    let name = path.display().to_string();
    let mut reader = ImageReader::open(&path)?;
    while let Some(entry) = reader.next_entry::<pb::SkPacketEntry>()? {
        let mut rights = Vec::new();
        for scm in &entry.scm {
            if scm.r#type != libc::SCM_RIGHTS as u32 {
                return Err(FileError::refused(format!("{name}: queued message for socket {} carries control message type {} (sk_packet_entry.scm.type)", entry.id_for, scm.r#type)));
            }
            rights.extend(&scm.rights);
        }
        let data = reader.read_payload(entry.length as u64)?;
        all.entry(entry.id_for).or_default().push((data, rights));
    }
    let (deferred, plain): (BTreeMap<_, _>, BTreeMap<_, _>) = all.into_iter().partition(|(_, messages)| messages.iter().any(|m| !m.1.is_empty()));
    Ok((plain.into_iter().map(|(id, messages)| (id, messages.into_iter().map(|m| m.0).collect())).collect(), deferred))
}

/// File ids of the files in flight in socket queues: the broker opens them though no
/// process holds them.
pub(crate) fn in_flight_ids(dir: &Path) -> Result<BTreeSet<u32>, FileError> {
    let (_, deferred) = read_sk_queues(dir)?;
    Ok(deferred.values().flatten().flat_map(|m| m.1.iter().copied()).collect())
}

/// tcp-stream-INO.img: the stream state, then the receive and send queues.
fn read_tcp_stream(dir: &Path, ino: u32) -> Result<(pb::TcpStreamEntry, Vec<u8>, Vec<u8>), FileError> {
    let path = dir.join(ImageKind::TcpStream.file_name(ino as u64));
    let name = path.display().to_string();
    let mut reader = ImageReader::open(&path)?;
    let stream: pb::TcpStreamEntry = reader.next_entry()?.ok_or_else(|| FileError::refused(format!("{name}: no tcp_stream_entry")))?;
    let inq = reader.read_payload(stream.inq_len as u64).map_err(file_within("receive queue (inq_len)"))?;
    let outq = reader.read_payload(stream.outq_len as u64).map_err(file_within("send queue (outq_len)"))?;
    if stream.unsq_len.unwrap_or(0) > stream.outq_len {
        return Err(FileError::refused(format!("{name}: unsq_len {} beyond outq_len {}", stream.unsq_len.unwrap_or(0), stream.outq_len)));
    }
    Ok((stream, inq, outq))
}

/// Removes the lock of the restored established TCP connections: their traffic flows.
/// The inventory says how the dump locked them (`dump_lock`). A lock already gone is
/// only logged (lifted by hand, or a dump that left its tree running). `netns`: the
/// restored tree's own network namespace, where a lock table of its connections is
/// (the dumped ruleset brings it back there); `None` when it shares crust's.
pub(crate) fn unlock_tcp(dir: &Path, netns: Option<std::os::fd::BorrowedFd<'_>>, established: &[Connection]) -> Result<(), FileError> {
    // A restored namespace locked whole (its dump, CRIU's, locked it whole).
    if let Some(netns) = netns {
        let table = super::netlock::NAMESPACE_LOCK_TABLE;
        if super::netlock::remove_table(table, Some(netns)).map_err(file_within(format!("remove the network namespace's lock table inet {table}")))? {
            log::info!("network namespace unlocked (table inet {table} removed)");
        }
    }
    match dump_lock_of(dir, established)? {
        DumpLock::Nothing => {}
        DumpLock::Table(table) => {
            if !super::netlock::remove_table(&table, netns).map_err(file_within(format!("remove the TCP lock table inet {table}")))? {
                log::debug!("no TCP lock table inet {table} to remove");
            }
        }
        DumpLock::Iptables(connections) => {
            for (ino, local, peer) in connections {
                let removed = super::netlock::remove_iptables_rules(&local, &peer).map_err(file_within(format!("unlock TCP connection of socket {ino}")))?;
                if !removed {
                    log::debug!("TCP connection of socket {ino}: no iptables lock to remove");
                }
            }
        }
        DumpLock::OldCrust(connections) => {
            for (ino, local, peer) in connections {
                if tcp::remove_old_crust_lock(ino).map_err(file_within(format!("unlock TCP connection of socket {ino}")))? {
                    continue;
                }
                // A dump of another tool that records no method: CRIU's default.
                match super::netlock::remove_iptables_rules(&local, &peer) {
                    Ok(true) => {}
                    Ok(false) => log::debug!("TCP connection of socket {ino}: no lock to remove"),
                    Err(error) => log::debug!("TCP connection of socket {ino}: no lock found ({error})"),
                }
            }
        }
    }
    Ok(())
}

/// The locks of the dump's TCP connections that are there now, each named (`the TCP
/// lock table inet NAME`, `the TCP lock rule iptables -A INPUT ...`) with the command
/// that removes it by hand (what a failed restore leaves, on purpose: the connections
/// stay blocked for another restore).
pub(crate) fn kept_locks(dir: &Path) -> Vec<(String, String)> {
    let tables = match dump_lock(dir) {
        Ok(DumpLock::Table(table)) => vec![table],
        Ok(DumpLock::OldCrust(connections)) => connections.iter().map(|(ino, _, _)| tcp::old_crust_lock_table(*ino)).collect(),
        Ok(DumpLock::Iptables(connections)) => {
            // CRIU's default lock: two iptables rules per connection.
            return connections
                .iter()
                .flat_map(|(_, local, peer)| super::netlock::kept_iptables_rules(local, peer))
                .map(|(rule, command)| (format!("the TCP lock rule `{rule}`"), command))
                .collect();
        }
        _ => Vec::new(),
    };
    tables
        .into_iter()
        .filter(|table| super::netlock::table_exists(table, None))
        .map(|table| {
            let command = super::netlock::delete_command(&table);
            (format!("the TCP lock table inet {table}"), command)
        })
        .collect()
}

/// How the dump in a directory locked its established TCP connections (socket inode,
/// local and peer address of each).
enum DumpLock {
    /// Nothing to lift: no established connection, or `--network-lock skip`.
    Nothing,
    /// CRIU's nftables table for the whole dump, named after its run id
    /// (`network_lock_method` nftables: crust's dumps, CRIU's with `--network-lock
    /// nftables`).
    Table(String),
    /// CRIU's default lock: a pair of iptables rules per connection.
    Iptables(Vec<(u32, InetAddress, InetAddress)>),
    /// No method recorded: crust before it used CRIU's table, one table per connection.
    OldCrust(Vec<(u32, InetAddress, InetAddress)>),
}

/// An established TCP connection of the dump: socket inode, local and peer address.
pub(crate) type Connection = (u32, InetAddress, InetAddress);

/// The established TCP connections among files.img's `entries`.
pub(crate) fn established_connections(entries: &[pb::FileEntry]) -> Vec<Connection> {
    entries
        .iter()
        .filter_map(|e| e.isk.as_ref())
        .filter(|isk| isk.proto == libc::IPPROTO_TCP as u32 && isk.state == 1)
        .map(|isk| (isk.ino, inet::address(isk.family, &isk.src_addr, isk.src_port), inet::address(isk.family, &isk.dst_addr, isk.dst_port)))
        .collect()
}

/// What inventory.img and files.img of `dir` say about the TCP lock.
fn dump_lock(dir: &Path) -> Result<DumpLock, FileError> {
    let entries = crust_images::read_entries::<pb::FileEntry>(&dir.join(ImageKind::Files.file_name(0)))?;
    dump_lock_of(dir, &established_connections(&entries))
}

/// [`dump_lock`] with files.img's established connections read already.
fn dump_lock_of(dir: &Path, established: &[Connection]) -> Result<DumpLock, FileError> {
    if established.is_empty() {
        return Ok(DumpLock::Nothing);
    }
    let inventory = crust_images::read_entries::<pb::InventoryEntry>(&dir.join(ImageKind::Inventory.file_name(0)))?;
    let inventory = inventory.first();
    let run_id = inventory.and_then(|i| i.dump_criu_run_id.as_deref());
    Ok(match (inventory.and_then(|i| i.network_lock_method), run_id) {
        (None, _) => DumpLock::OldCrust(established.to_vec()),
        (Some(NETWORK_LOCK_IPTABLES), _) => DumpLock::Iptables(established.to_vec()),
        (Some(NETWORK_LOCK_NFTABLES), Some(run_id)) => DumpLock::Table(tcp::lock_table(run_id)),
        (Some(NETWORK_LOCK_NFTABLES), None) => {
            return Err(FileError::refused("inventory.img: network_lock_method nftables without dump_criu_run_id, which names the lock table"))
        }
        (Some(NETWORK_LOCK_SKIP), _) => DumpLock::Nothing,
        (Some(other), _) => return Err(FileError::refused(format!("inventory.img: network_lock_method {other} is not known (0 iptables, 1 nftables, 2 skip)"))),
    })
}

/// Creates every pipe, FIFO, socket and anon-inode file of files.img: file id → fd.
/// What `create_special_files` made: file id → fd, and the epolls whose watches come later.
type SpecialFiles = (
    BTreeMap<u32, std::os::fd::OwnedFd>,
    BTreeMap<u32, pb::EventpollFileEntry>,
    BTreeSet<u32>,
    BTreeMap<u32, (i32, u32)>,
    Vec<(Sender, Vec<(Vec<u8>, Vec<u32>)>)>,
    Vec<(u32, u32, u32)>,
    Vec<(u32, u32)>,
);

/// Who sends a queue with fds in flight again: the receiving socket's peer (a file id of
/// the broker), or a stand-in for a peer that was gone at dump time, closed once sent.
enum Sender {
    File(u32),
    StandIn(u32, OwnedFd),
}

/// Whether `key` (CRIU's `--inherit-fd` key) names the file of `entry`: `pipe:[INO]` a
/// pipe, `socket:[INO]` a unix or inet socket, a path a regular file (with or without
/// its leading `/`, as CRIU keeps file names without it). Pure.
pub(crate) fn inherit_key_matches(entry: &pb::FileEntry, key: &str) -> bool {
    if let Some(pipe) = &entry.pipe {
        return key == format!("pipe:[{}]", pipe.pipe_id);
    }
    let socket_ino = entry.usk.as_ref().map(|u| u.ino).or(entry.isk.as_ref().map(|i| i.ino)).or(entry.nlsk.as_ref().map(|n| n.ino));
    if let Some(ino) = socket_ino {
        return key == format!("socket:[{ino}]");
    }
    if let Some(reg) = &entry.reg {
        let name = reg.name.trim_start_matches('/');
        return !name.is_empty() && key.trim_start_matches('/') == name;
    }
    false
}

/// The file ids `--inherit-fd` gives an fd of crust's: file id → a copy of that fd at
/// `above` or higher (where no broker number goes), and the copies, which the caller
/// closes. A key that names no file of the dump is only logged (CRIU ignores it too);
/// an fd that is not open fails the restore.
fn inherited_files(dir: &Path, inherited: &[(i32, String)], above: i32) -> Result<(BTreeMap<u32, i32>, FdCopies), FileError> {
    let mut out = BTreeMap::new();
    let mut copies = FdCopies(Vec::new());
    if inherited.is_empty() {
        return Ok((out, copies));
    }
    let entries = crust_images::read_entries::<pb::FileEntry>(&dir.join(ImageKind::Files.file_name(0)))?;
    for (fd, key) in inherited {
        if !sys::fd_is_open(*fd) {
            return Err(FileError::refused(format!("--inherit-fd fd[{fd}]:{key}: fd {fd} is not open in crust")));
        }
        let matched: Vec<u32> = entries.iter().filter(|entry| inherit_key_matches(entry, key)).map(|entry| entry.id).collect();
        if matched.is_empty() {
            log::warn!("--inherit-fd fd[{fd}]:{key}: no file of the dump has that key");
            continue;
        }
        let copy = sys::dup_at_least(*fd, above).map_err(file_io(format!("--inherit-fd fd[{fd}]:{key}: dup")))?;
        copies.0.push(copy);
        for id in matched {
            out.insert(id, copy);
        }
    }
    Ok((out, copies))
}

/// crust's copies of inherited fds, closed when the broker is built (or failed).
struct FdCopies(Vec<i32>);

impl Drop for FdCopies {
    fn drop(&mut self) {
        for &fd in &self.0 {
            sys::close_fd(fd);
        }
    }
}

/// `wanted`: the file ids the broker opens; a memfd description no one wants (a
/// mapping turned back into shared anonymous memory, `memory/shmem.rs`) is not made.
fn create_special_files(dir: &Path, entries: &[pb::FileEntry], regs: &BTreeMap<u32, pb::RegFileEntry>, wanted: &[u32]) -> Result<SpecialFiles, FileError> {
    let path = dir.join(ImageKind::Files.file_name(0));
    let (mut pipes, mut fifos, mut sockets, mut inet_sockets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut memfds = Vec::new();
    let mut ttys = Vec::new();
    let mut late = BTreeSet::new();
    let mut dead_pidfds = BTreeMap::new();
    let mut made = BTreeMap::new();
    let mut epolls = BTreeMap::new();
    for entry in entries.iter().cloned() {
        let kind = pb::FdTypes::try_from(entry.r#type).unwrap_or(pb::FdTypes::Und);
        let missing = || FileError::refused(format!("{}: file {} of type {kind:?} has no {kind:?} entry", path.display(), entry.id));
        match kind {
            pb::FdTypes::Reg => {}
            pb::FdTypes::Pipe => pipes.push(entry.pipe.ok_or_else(missing)?),
            pb::FdTypes::Fifo => fifos.push(entry.fifo.ok_or_else(missing)?),
            pb::FdTypes::Unixsk => sockets.push(*entry.usk.ok_or_else(missing)?),
            pb::FdTypes::Inetsk => inet_sockets.push(*entry.isk.ok_or_else(missing)?),
            pb::FdTypes::Packetsk => {
                made.insert(entry.id, psk::create_socket(entry.psk.as_ref().ok_or_else(missing)?)?);
            }
            pb::FdTypes::Netlinksk => {
                made.insert(entry.id, nlsk::create_socket(entry.nlsk.as_ref().ok_or_else(missing)?)?);
            }
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
            pb::FdTypes::Memfd => {
                let memfd = entry.memfd.ok_or_else(missing)?;
                if wanted.contains(&entry.id) {
                    memfds.push(memfd);
                }
            }
            pb::FdTypes::Tty => ttys.push(entry.tty.ok_or_else(missing)?),
            pb::FdTypes::Pidfd => {
                let pidfd = entry.pidfd.ok_or_else(missing)?;
                if pidfd.nspid == -1 {
                    dead_pidfds.insert(entry.id, (pidfd.flags as i32 & (libc::O_NONBLOCK | libc::O_EXCL), pidfd.ino));
                } else {
                    late.insert(entry.id);
                }
            }
            pb::FdTypes::Eventpoll => {
                let epoll = *entry.epfd.ok_or_else(missing)?;
                made.insert(entry.id, anon::create_epoll(&epoll)?);
                epolls.insert(entry.id, epoll);
            }
            other => return Err(FileError::refused(format!("{}: file {} of type {other:?} is not supported yet", path.display(), entry.id))),
        }
    }
    let mut controlling = Vec::new();
    if !ttys.is_empty() {
        let path = dir.join(ImageKind::TtyInfo.file_name(0));
        let infos = crust_images::read_entries::<pb::TtyInfoEntry>(&path)?;
        if let Some(info) = infos.iter().find(|i| i.r#type != pb::TtyType::Pty as i32) {
            return Err(FileError::refused(format!("{}: tty {} of type {} is not supported (tty_info_entry.type)", path.display(), info.id, info.r#type)));
        }
        let (ptys, index_of) = pty::merge_infos(&infos).map_err(file_within(path.display().to_string()))?;
        let mut masters = BTreeMap::new();
        for (&index, info) in &ptys {
            masters.insert(index, pty::create(info)?);
            if info.sid != 0 {
                controlling.push((info.sid, info.pgrp, index));
            }
        }
        for tty in &ttys {
            let name = tty.regf_id.and_then(|r| regs.get(&r)).map(|r| r.name.clone()).ok_or_else(|| FileError::refused(format!("tty file {} has no path (tty_file_entry.regf_id)", tty.id)))?;
            let fd = if pty::is_master(&name) {
                let index = index_of.get(&tty.tty_info_id).copied();
                index.and_then(|i| masters.remove(&i)).ok_or_else(|| FileError::refused(format!("tty file {}: tty-info {} has no state in tty-info.img, or a second master", tty.id, tty.tty_info_id)))?
            } else {
                let flags = tty.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
                sys::file::open_path(&name, flags | libc::O_NOCTTY).map_err(file_io(format!("open {name}")))?
            };
            made.insert(tty.id, fd);
        }
    }
    if !memfds.is_empty() {
        let inodes = memfd::create_inodes(dir, &memfds.iter().map(|m| m.inode_id).collect())?;
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
    let mut stand_ins = BTreeMap::new();
    let mut shutdowns = Vec::new();
    if !sockets.is_empty() {
        let built = unix::create_sockets(&sockets, &queues, &deferred_queues.keys().copied().collect())?;
        made.extend(built.fds);
        stand_ins = built.stand_ins;
        shutdowns = built.shutdowns;
    }
    // Queues with fds in flight are sent by the socket's peer once every file exists.
    let mut deferred = Vec::new();
    for (id, messages) in deferred_queues {
        let socket = sockets.iter().find(|s| s.id == id).ok_or_else(|| FileError::refused(format!("fds in flight to socket {id}, which is not a unix socket of files.img")))?;
        if let Some(stand_in) = stand_ins.remove(&id) {
            deferred.push((Sender::StandIn(id, stand_in), messages));
            continue;
        }
        let peer = sockets
            .iter()
            .find(|s| s.ino == socket.peer && socket.peer != 0)
            .ok_or_else(|| FileError::refused(format!("unix socket {id} has fds in flight but its peer (ino {}) is not in the dump", socket.peer)))?;
        deferred.push((Sender::File(peer.id), messages));
    }
    for socket in &inet_sockets {
        let stream = if socket.proto == libc::IPPROTO_TCP as u32 && socket.state == 1 { Some(read_tcp_stream(dir, socket.ino)?) } else { None };
        made.insert(socket.id, inet::create_socket(socket, queues.get(&socket.id).map(Vec::as_slice).unwrap_or(&[]), stream.as_ref())?);
    }
    Ok((made, epolls, late, dead_pidfds, deferred, controlling, shutdowns))
}

impl Broker {
    /// Opens the description of every file id that some process holds, at `base`,
    /// `base + 1`, ... Runs in crust: errors name the file and leave nothing behind.
    /// Pipes, sockets and anon-inode files are created first (both ends of a pipe or a
    /// socketpair at once), then every description is put at its number.
    /// `inherited`: crust's fds that stand for files of the dump (`--inherit-fd
    /// fd[N]:KEY`), used instead of opening or creating them.
    pub(crate) fn open(
        special: &[pb::FileEntry],
        files: &BTreeMap<u32, pb::RegFileEntry>,
        ghosts: &BTreeMap<u32, u32>,
        dir: &Path,
        ids: impl IntoIterator<Item = u32>,
        base: i32,
        inherited: &[(i32, String)],
    ) -> Result<Broker, FileError> {
        let ids: Vec<u32> = ids.into_iter().collect();
        // Created fds sit at the lowest free numbers, perhaps where the broker's go:
        // move them above every broker number first (inherited ones too, copied).
        let above = base.saturating_add(i32::try_from(ids.len()).unwrap_or(i32::MAX)).saturating_add(8);
        let (inherited, _inherited_copies) = inherited_files(dir, inherited, above)?;
        let (made, epolls, late, dead_pidfd_flags, deferred, controlling, shutdowns) = create_special_files(dir, special, files, &ids)?;
        let mut made_high = BTreeMap::new();
        for (id, fd) in made {
            made_high.insert(id, sys::file::move_above(fd, above).map_err(file_io(format!("move file {id} above {above}")))?);
        }
        // Stand-ins for gone peers too: a broker number placed over one would close it.
        let mut deferred_high = Vec::with_capacity(deferred.len());
        for (sender, messages) in deferred {
            let sender = match sender {
                Sender::StandIn(id, fd) => {
                    Sender::StandIn(id, sys::file::move_above(fd, above).map_err(file_io(format!("move the stand-in peer of socket {id} above {above}")))?)
                }
                file => file,
            };
            deferred_high.push((sender, messages));
        }
        let deferred = deferred_high;
        let locks_path = dir.join(ImageKind::FileLocks.file_name(0));
        let locks = if locks_path.exists() {
            crust_images::read_entries::<pb::FileLockEntry>(&locks_path)?
        } else {
            Vec::new()
        };
        let mut broker = Broker { fds: BTreeMap::new(), epolls, locks, late, dead_pidfds: Vec::new(), controlling };
        // Each ghost is made once; every description of it is opened from that file,
        // kept above every broker number meanwhile.
        let mut ghost_files = GhostFiles { made: BTreeMap::new(), above };
        for id in ids {
            if broker.fds.contains_key(&id) || broker.late.contains(&id) {
                continue;
            }
            if let Some(&fd) = inherited.get(&id) {
                let number = base + broker.fds.len() as i32;
                if let Err(e) = sys::place_fd(fd, number, true) {
                    broker.close();
                    return Err(FileError::Io { what: format!("place inherited fd {fd} (file {id}) at fd {number}"), source: e });
                }
                log::info!("file {id}: crust's fd {fd} stands for it (--inherit-fd)");
                broker.fds.insert(id, number);
                continue;
            }
            if let Some(&(flags, ino)) = dead_pidfd_flags.get(&id) {
                let number = base + broker.fds.len() as i32;
                broker.fds.insert(id, number);
                broker.dead_pidfds.push((number, flags, ino));
                continue;
            }
            if let Some(fd) = made_high.get(&id) {
                use std::os::fd::AsRawFd;
                let number = base + broker.fds.len() as i32;
                if let Err(e) = sys::place_fd(fd.as_raw_fd(), number, true) {
                    broker.close();
                    return Err(FileError::Io { what: format!("place file {id} at fd {number}"), source: e });
                }
                broker.fds.insert(id, number);
                continue;
            }
            let number = base + broker.fds.len() as i32;
            let opened = match open_regular(files, ghosts, &mut ghost_files, dir, id) {
                Ok(fd) => fd,
                Err(error) => {
                    broker.close();
                    return Err(error);
                }
            };
            let placed = sys::place_fd(opened, number, true).map_err(file_io(format!("place file {id} at fd {number}")));
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
            let result = (|| -> Result<(), FileError> {
                use std::os::fd::AsRawFd;
                let (from, sender) = match &sender {
                    Sender::File(id) => (*broker.fds.get(id).ok_or_else(|| FileError::refused(format!("socket {id} (sender of fds in flight) was not opened")))?, format!("socket {id}")),
                    Sender::StandIn(id, fd) => (fd.as_raw_fd(), format!("the stand-in for the gone peer of socket {id}")),
                };
                for (data, ids) in &messages {
                    let fds = ids
                        .iter()
                        .map(|id| broker.fds.get(id).copied().ok_or_else(|| FileError::refused(format!("file {id} in flight was not opened"))))
                        .collect::<Result<Vec<i32>, FileError>>()?;
                    sys::socket::send_with_fds(from, data, &fds).map_err(file_io(format!("requeue {} bytes with {} fds from {sender}", data.len(), fds.len())))?;
                }
                Ok(())
            })();
            if let Err(error) = result {
                broker.close();
                return Err(error);
            }
        }
        // Every queue is filled: the sockets are shut down as dumped.
        for (id, bits) in shutdowns {
            let Some(&fd) = broker.fds.get(&id) else { continue };
            if let Err(error) = unix::shut_down(fd, id, bits) {
                broker.close();
                return Err(error);
            }
        }
        Ok(broker)
    }

    /// Rebuilds what depends on this process's own fd numbers, once its fds are installed:
    /// the watches of every epoll it is the first in the tree to hold (`earlier(id)`: a
    /// process restored before it holds file `id`, and installed its watches).
    pub(crate) fn after_install(&self, fds: &[pb::FdinfoEntry], earlier: impl Fn(u32) -> bool) -> Result<(), FileError> {
        for fd in fds {
            if let Some(epoll) = self.epolls.get(&fd.id).filter(|_| !earlier(fd.id)) {
                anon::add_watches(fd.fd as i32, epoll)?;
            }
        }
        Ok(())
    }

    /// Takes the file locks this process owns again. Runs after `close`: closing any fd
    /// of a file drops the process's POSIX locks on it.
    pub(crate) fn take_locks(&self) -> Result<(), FileError> {
        let me = std::process::id() as i32;
        for lock in self.locks.iter().filter(|l| l.pid == me) {
            locks::take_lock(lock)?;
        }
        Ok(())
    }

    /// In restored process `pid` (in its session and group already): takes back the
    /// controlling terminal it leads, or the foreground of the one its group had.
    pub(crate) fn terminals(&self, pid: u32, sid: u32, pgid: u32) -> Result<(), FileError> {
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
    pub(crate) fn make_dead_pidfds(&self) -> Result<(), FileError> {
        use std::os::fd::AsRawFd;
        // Pidfds of one dead pid share its inode: one exited process stands for each inode.
        let mut by_ino: BTreeMap<u32, Vec<(i32, i32)>> = BTreeMap::new();
        for &(number, flags, ino) in &self.dead_pidfds {
            by_ino.entry(ino).or_default().push((number, flags));
        }
        for (ino, wanted) in by_ino {
            let flags: Vec<i32> = wanted.iter().map(|&(_, f)| f).collect();
            let fds = sys::process::dead_pidfds(&flags).map_err(file_io(format!("pidfds of an exited process (inode {ino})")))?;
            for (fd, &(number, _)) in fds.into_iter().zip(&wanted) {
                sys::place_fd(fd.as_raw_fd(), number, true).map_err(file_io(format!("place pidfd at fd {number}")))?;
                if fd.as_raw_fd() == number {
                    // Already where it belongs: keep it open.
                    let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
                }
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
    /// Files under /proc/PID of the tree (`deferred`, by file id) are left to
    /// `restore::finish_process`, once the process they name exists.
    pub(crate) fn install<T>(&self, fds: &[pb::FdinfoEntry], files: &BTreeMap<u32, pb::RegFileEntry>, dir: &Path, deferred: &BTreeMap<u32, T>) -> Result<(), FileError> {
        let mut private: BTreeMap<u32, i32> = BTreeMap::new();
        // Its fillers are closed when it is dropped, on every path out of here.
        let mut holes = HoleFiller::new(fds);
        for fd in fds.iter().filter(|fd| !self.late.contains(&fd.id) && !deferred.contains_key(&fd.id)) {
            let number = fd.fd as i32;
            let cloexec = fd.flags & libc::FD_CLOEXEC as u32 != 0;
            let source = match (self.fds.get(&fd.id), private.get(&fd.id)) {
                (Some(&source), _) | (None, Some(&source)) => source,
                (None, None) if files.contains_key(&fd.id) => {
                    holes.fill_below(number);
                    // The errors' texts are made only on error: this loop runs once per fd.
                    let opened = open_regular(files, &BTreeMap::new(), &mut GhostFiles::default(), dir, fd.id).map_err(|e| file_within(format!("fd {number}"))(e))?;
                    let placed = sys::place_opened_fd(opened, number, cloexec).map_err(|e| file_io(format!("fd {number}"))(e));
                    if opened != number {
                        sys::close_fd(opened);
                    }
                    placed?;
                    holes.placed(number);
                    private.insert(fd.id, number);
                    continue;
                }
                (None, None) => return Err(FileError::refused(format!("fd {number}: file id {} was not opened", fd.id))),
            };
            sys::place_fd(source, number, cloexec).map_err(|e| file_io(format!("fd {number}"))(e))?;
            holes.placed(number);
        }
        Ok(())
    }
}

/// Fills the free numbers below the next fd to open while a process's fds are placed in
/// ascending order, so that open(2), which takes the lowest free number, opens each
/// file at its own (10,000 files from fd 100 up were each opened at fd 3, then moved,
/// flagged and fd 3 closed: open, dup2, fcntl and close a file). A filler is a copy of
/// the last fd placed, made with one F_DUPFD at the lowest free number at or above the
/// hole, and closed when the filler is dropped, once every fd is placed (before any lock
/// is taken: a close drops the process's record locks on the file). Off where the holes
/// outnumber the fds (a few fds at high numbers).
struct HoleFiller {
    /// Where the next fill starts: the numbers below are not filled again.
    taken_below: i32,
    /// The last fd placed: what fillers copy.
    last: Option<i32>,
    /// In ascending order.
    fillers: Vec<i32>,
    on: bool,
}

impl HoleFiller {
    fn new(fds: &[pb::FdinfoEntry]) -> HoleFiller {
        let top = fds.iter().map(|fd| fd.fd as u64 + 1).max().unwrap_or(0);
        HoleFiller { taken_below: 0, last: None, fillers: Vec::new(), on: top.saturating_sub(fds.len() as u64) <= fds.len() as u64 }
    }

    /// Fills the free numbers from `taken_below` to `number`.
    fn fill_below(&mut self, number: i32) {
        let Some(source) = self.last.filter(|_| self.on) else { return };
        let mut at = self.taken_below;
        while at < number {
            match sys::dup_at_least(source, at) {
                Ok(filler) if filler < number => {
                    self.fillers.push(filler);
                    at = filler + 1;
                }
                Ok(beyond) => {
                    sys::close_fd(beyond);
                    break;
                }
                Err(_) => break,
            }
        }
        self.taken_below = self.taken_below.max(number);
    }

    /// `number` holds its fd now (where a filler held it, dup3 closed the filler: it is
    /// no filler any more).
    fn placed(&mut self, number: i32) {
        if let Ok(index) = self.fillers.binary_search(&number) {
            self.fillers.remove(index);
        }
        self.last = Some(number);
        if number == self.taken_below {
            self.taken_below = number + 1;
        }
    }
}

impl Drop for HoleFiller {
    fn drop(&mut self) {
        for &filler in &self.fillers {
            sys::close_fd(filler);
        }
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

/// The ghosts made so far in this restore, by ghost id: the unlinked file, open at a
/// number of at least `above` (where no fd being placed goes).
#[derive(Default)]
struct GhostFiles {
    made: BTreeMap<u32, OwnedFd>,
    above: i32,
}

/// Opens regular file `id` with its dumped flags and offset, at the lowest free fd,
/// without FD_CLOEXEC (but one reopened from its ghost: `sys::file::reopen`). An
/// unlinked one is opened from its ghost (`ghosts`: reg-file id → ghost id), which is
/// made on first use and kept in `made`: every description of one inode opens the one
/// file again, as they were one file at dump time.
fn open_regular(files: &BTreeMap<u32, pb::RegFileEntry>, ghosts: &BTreeMap<u32, u32>, made: &mut GhostFiles, dir: &Path, id: u32) -> Result<i32, FileError> {
    let reg = files.get(&id).ok_or_else(|| FileError::refused(format!("file id {id} is not in files.img")))?;
    let mut flags = reg.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
    if reg.mode.is_some_and(|mode| mode & libc::S_IFMT == libc::S_IFLNK) {
        // The fd referred to the symlink itself, which only O_PATH|O_NOFOLLOW opens.
        flags |= libc::O_PATH | libc::O_NOFOLLOW;
    }
    let opened = match ghosts.get(&id) {
        Some(&ghost_id) => {
            if !made.made.contains_key(&ghost_id) {
                let created = create_ghost(dir, ghost_id, reg)?;
                let moved = sys::file::move_above(created, made.above).map_err(file_io(format!("move ghost {ghost_id} above fd {}", made.above)))?;
                made.made.insert(ghost_id, moved);
            }
            let ghost = &made.made[&ghost_id];
            let reopened = sys::file::reopen(ghost, flags).map_err(file_io(format!("open ghost {ghost_id} of {} as file {id}", reg.name)))?;
            std::os::fd::IntoRawFd::into_raw_fd(reopened)
        }
        None => sys::open_raw(Path::new(&reg.name), flags, 0).map_err(|e| file_io(format!("open {}", reg.name))(e))?,
    };
    if reg.pos != 0 {
        if let Err(e) = sys::seek_to(opened, reg.pos) {
            sys::close_fd(opened);
            return Err(FileError::Io { what: format!("seek {} to {}", reg.name, reg.pos), source: e });
        }
    }
    Ok(opened)
}

/// Recreates an unlinked file from its ghost image: written beside its old name (that of
/// `reg`, the first entry that names it), then unlinked again; the file stays open
/// read-write, each description is opened from it through /proc/self/fd.
fn create_ghost(dir: &Path, ghost_id: u32, reg: &pb::RegFileEntry) -> Result<OwnedFd, FileError> {
    use std::os::unix::fs::FileExt;
    let image = dir.join(ImageKind::GhostFile.file_name(ghost_id as u64));
    let name = image.display().to_string();
    let mut reader = crust_images::StreamReader::open(&image)?;
    let entry: pb::GhostFileEntry = reader
        .next_entry()
        ?
        .ok_or_else(|| FileError::refused(format!("{name}: no ghost_file_entry")))?;
    let size = entry.size.unwrap_or(0);
    let mut path = PathBuf::from(&reg.name);
    if path.exists() {
        path = PathBuf::from(format!("{}.crust-ghost-{ghost_id}", reg.name));
    }
    let filled = (|| -> Result<fs::File, FileError> {
        use std::os::unix::fs::OpenOptionsExt;
        let created = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(entry.mode & 0o7777)
            .open(&path)
            .map_err(file_io(format!("create ghost {}", path.display())))?;
        let file = &created;
        let write_at = |mut at: u64| {
            move |piece: &[u8]| -> io::Result<()> {
                file.write_all_at(piece, at)?;
                at += piece.len() as u64;
                Ok(())
            }
        };
        if entry.chunks == Some(true) {
            file.set_len(size).map_err(file_io(format!("size ghost {}", path.display())))?;
            while let Some(chunk) = reader.next_entry::<pb::GhostChunkEntry>()? {
                if chunk.off.checked_add(chunk.len).is_none_or(|end| end > size) {
                    return Err(FileError::refused(format!("{name}: chunk {}+{} beyond the file's {size} bytes (ghost_chunk_entry)", chunk.off, chunk.len)));
                }
                reader.copy_payload(chunk.len, write_at(chunk.off))?;
            }
        } else {
            // The bytes follow the entry: `size` of them, or (CRIU, files up to 8 KiB,
            // whose entry has no size) everything to the end of the image.
            let len = match entry.size {
                Some(size) => size,
                None => reader.remaining()?,
            };
            reader.copy_payload(len, write_at(0))?;
        }
        Ok(created)
    })();
    let _ = fs::remove_file(&path);
    Ok(OwnedFd::from(filled?))
}



#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_below_the_next_fd_are_filled_and_the_fillers_closed() {
        let entry = |fd: u32| pb::FdinfoEntry { fd, ..Default::default() };
        // Holes 3..100 below 100 fds: filled; 3 fds at 0, 1 and 1000: not.
        assert!(HoleFiller::new(&[0, 1, 2].into_iter().chain(100..200).map(entry).collect::<Vec<_>>()).on);
        assert!(!HoleFiller::new(&[entry(0), entry(1), entry(1000)]).on);
        // Numbers far above what the other tests' threads open.
        let null = sys::open_raw(Path::new("/dev/null"), libc::O_RDONLY | libc::O_CLOEXEC, 0).expect("open /dev/null");
        let base = 960;
        let source = sys::dup_at_least(null, base).expect("dup");
        sys::close_fd(null);
        assert!((base..base + 10).all(|n| n == source || !sys::fd_is_open(n)), "numbers above {base} are free");
        let mut holes = HoleFiller { taken_below: source + 1, last: Some(source), fillers: Vec::new(), on: true };
        holes.fill_below(source + 6);
        assert_eq!(holes.fillers, (source + 1..source + 6).collect::<Vec<_>>());
        assert!(!sys::fd_is_open(source + 6), "the number asked for stays free");
        // A filler's number given its own fd (dup3 over it) is no filler any more.
        sys::place_fd(source, source + 3, false).expect("dup3");
        holes.placed(source + 3);
        drop(holes);
        assert!(sys::fd_is_open(source + 3), "the placed fd stays");
        assert!([1, 2, 4, 5].iter().all(|&k| !sys::fd_is_open(source + k)), "the fillers are closed");
        sys::close_fd(source + 3);
        sys::close_fd(source);
    }

    #[test]
    fn inherit_keys_are_criu_s() {
        let pipe = pb::FileEntry { r#type: pb::FdTypes::Pipe as i32, id: 1, pipe: Some(pb::PipeEntry { id: 1, pipe_id: 4242, ..Default::default() }), ..Default::default() };
        assert!(inherit_key_matches(&pipe, "pipe:[4242]"));
        assert!(!inherit_key_matches(&pipe, "pipe:[424]"));
        assert!(!inherit_key_matches(&pipe, "socket:[4242]"));
        let socket = pb::FileEntry { r#type: pb::FdTypes::Unixsk as i32, id: 2, usk: Some(Box::new(pb::UnixSkEntry { id: 2, ino: 77, ..Default::default() })), ..Default::default() };
        assert!(inherit_key_matches(&socket, "socket:[77]"));
        let reg = super::super::FileTable::reg_entry(3, Path::new("/var/log/x.log"), 0, 0, None);
        assert!(inherit_key_matches(&reg, "/var/log/x.log"));
        assert!(inherit_key_matches(&reg, "var/log/x.log"));
        assert!(!inherit_key_matches(&reg, "/var/log/y.log"));
    }
}
