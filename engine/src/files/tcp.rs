//! Established TCP connections, with TCP_REPAIR (`--tcp-established`). Dump: the
//! connection is locked in CRIU's nftables table for the dump (`inet CRIU-<run id>`,
//! dropping its packets both ways; made, kept and removed by `netlock.rs`;
//! `inventory.network_lock_method` says nftables), the socket is put in repair mode and
//! its sequence numbers, queues (sent-but-unacknowledged, unsent, received-but-unread),
//! options and window are read into tcp-stream-INODE.img, and repair mode is left at
//! once: while the dump goes on the socket is ordinary (frozen and locked, it cannot
//! change), so a crust that dies meanwhile leaves a working connection. Just before the
//! tree is killed (or left stopped) every socket goes into repair mode again: closed in
//! repair mode it goes silently, so the killed target sends no FIN or RST. After a
//! failed dump (or `--leave-running`) the lock is removed. Restore builds the socket in
//! repair mode (sequence numbers, bind, connect without a handshake, options, queues,
//! window), leaves repair mode and, once the tree runs, removes the lock the inventory
//! names (CRIU's table, or the iptables rules of CRIU's default lock, or the tables of
//! an older crust dump): the peer's retransmissions arrive and nothing was lost.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::{file_io, FileError};
use crust_images::pb;

use crate::sys;
use crate::sys::socket::InetAddress;

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const SIOCINQ: u64 = 0x541B;
const SIOCOUTQ: u64 = 0x5411;
const SIOCOUTQNSD: u64 = 0x894B;
/// TCP_INFO's tcpi_options bits.
const TCPI_OPT_TIMESTAMPS: u32 = 1;
const TCPI_OPT_SACK: u32 = 2;
const TCPI_OPT_WSCALE: u32 = 4;
/// TCP option kinds for TCP_REPAIR_OPTIONS.
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

/// The nftables table that locks the TCP connections of dump `run_id`, as CRIU names
/// it (`inventory.dump_criu_run_id`): `CRIU-` and the run id's first 21 characters. One
/// table per dump, whichever tool made it: either tool's restore lifts the other's lock.
pub(crate) fn lock_table(run_id: &str) -> String {
    let short: String = run_id.chars().take(21).collect();
    format!("CRIU-{short}")
}

/// The table crust locked the connection of socket `ino` with before it used CRIU's
/// table for the whole dump: `crust_tcp_INODE`, of the inet family (netlink, dumps of
/// 2026-12-06 without `network_lock_method`) or of ip/ip6 (earlier dumps).
pub(crate) fn old_crust_lock_table(ino: u32) -> String {
    format!("crust_tcp_{ino}")
}

/// Removes the lock of socket `ino` of a dump that names no lock method (crust before
/// CRIU's table): its inet table, or the ip/ip6 one. `Ok(false)`: none was there.
pub(crate) fn remove_old_crust_lock(ino: u32) -> Result<bool, FileError> {
    let table = old_crust_lock_table(ino);
    let mut removed = super::netlock::remove_table(&table, None)?;
    for family in [libc::AF_INET, libc::AF_INET6] {
        removed |= super::netlock::remove_table_of_family(family, &table)?;
    }
    Ok(removed)
}

fn set(fd: RawFd, name: i32, value: i32) -> Result<(), FileError> {
    sys::socket::set_socket_option(fd, libc::IPPROTO_TCP, name, value).map_err(file_io(format!("setsockopt TCP {name}={value}")))
}

fn get(fd: RawFd, name: i32) -> Result<i32, FileError> {
    sys::socket::socket_option(fd, libc::IPPROTO_TCP, name).map_err(file_io(format!("getsockopt TCP {name}")))
}

/// Puts the (locked) socket in repair mode or takes it out.
pub(crate) fn set_repair(socket: &OwnedFd, on: bool) -> Result<(), FileError> {
    set(socket.as_raw_fd(), TCP_REPAIR, on as i32)
}

/// Takes the socket out of repair mode without the window probe the kernel sends then
/// (TCP_REPAIR_OFF_NO_WP, Linux 4.17; plain off before): its state was read, and until
/// the tree is killed it is an ordinary socket again, so a crust that dies meanwhile
/// leaves the target's connection working (the lock goes with crust).
pub(crate) fn leave_repair(socket: &OwnedFd) -> Result<(), FileError> {
    const TCP_REPAIR_OFF_NO_WP: i32 = -1;
    match set(socket.as_raw_fd(), TCP_REPAIR, TCP_REPAIR_OFF_NO_WP) {
        Err(FileError::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => set_repair(socket, false),
        other => other,
    }
}

fn read_queue(fd: RawFd, queue: i32, len: usize) -> Result<(u32, Vec<u8>), FileError> {
    set(fd, TCP_REPAIR_QUEUE, queue)?;
    let seq = get(fd, TCP_QUEUE_SEQ)? as u32;
    let mut data = vec![0u8; len];
    if len > 0 {
        let got = sys::socket::peek_bytes(fd, &mut data).map_err(file_io(format!("peek queue {queue}")))?;
        if got != len {
            return Err(FileError::refused(format!("queue {queue}: peeked {got} of {len} bytes")));
        }
    }
    Ok((seq, data))
}

/// The state of a locked socket in repair mode, and its queues: received-but-unread
/// (inq), then sent-but-unacknowledged followed by unsent (outq).
pub(crate) fn dump_stream(socket: &OwnedFd) -> Result<(pb::TcpStreamEntry, Vec<u8>, Vec<u8>), FileError> {
    let fd = socket.as_raw_fd();
    let inq_len = sys::socket::ioctl_int(fd, SIOCINQ).map_err(file_io("SIOCINQ"))? as usize;
    let outq_len = sys::socket::ioctl_int(fd, SIOCOUTQ).map_err(file_io("SIOCOUTQ"))? as usize;
    let unsent = sys::socket::ioctl_int(fd, SIOCOUTQNSD).map_err(file_io("SIOCOUTQNSD"))? as u32;
    let (inq_seq, inq) = read_queue(fd, TCP_RECV_QUEUE, inq_len)?;
    let (outq_seq, outq) = read_queue(fd, TCP_SEND_QUEUE, outq_len)?;
    let mut info = [0u8; 104];
    sys::socket::socket_option_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info).map_err(file_io("TCP_INFO"))?;
    let options = info[5] as u32;
    let (snd_wscale, rcv_wscale) = ((info[6] & 0x0f) as u32, (info[6] >> 4) as u32);
    let mss_clamp = get(fd, libc::TCP_MAXSEG)? as u32;
    let timestamp = if options & TCPI_OPT_TIMESTAMPS != 0 { Some(get(fd, TCP_TIMESTAMP)? as u32) } else { None };
    let mut window = [0u8; 20];
    sys::socket::socket_option_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &mut window).map_err(file_io("TCP_REPAIR_WINDOW"))?;
    let w = |i: usize| u32::from_ne_bytes(window[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let entry = pb::TcpStreamEntry {
        inq_len: inq_len as u32,
        inq_seq,
        outq_len: outq_len as u32,
        outq_seq,
        opt_mask: options,
        snd_wscale,
        mss_clamp,
        rcv_wscale: Some(rcv_wscale),
        timestamp,
        cork: Some(get(fd, libc::TCP_CORK)? != 0),
        nodelay: Some(get(fd, libc::TCP_NODELAY)? != 0),
        unsq_len: Some(unsent),
        snd_wl1: Some(w(0)),
        snd_wnd: Some(w(1)),
        max_window: Some(w(2)),
        rcv_wnd: Some(w(3)),
        rcv_wup: Some(w(4)),
    };
    Ok((entry, inq, outq))
}

/// An established connection rebuilt from its stream state: a socket in repair mode,
/// bound and "connected" without a handshake, with its queues, options and window;
/// then out of repair mode, live (its packets still dropped until `unlock`).
pub(crate) fn restore_stream(
    socket: &OwnedFd,
    local: &InetAddress,
    peer: &InetAddress,
    stream: &pb::TcpStreamEntry,
    inq: &[u8],
    outq: &[u8],
) -> Result<(), FileError> {
    let fd = socket.as_raw_fd();
    set(fd, TCP_REPAIR, 1)?;
    // The dumped sequence numbers are those after each queue; refilling the queues
    // below moves them there again.
    set(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)?;
    set(fd, TCP_QUEUE_SEQ, stream.inq_seq.wrapping_sub(stream.inq_len) as i32)?;
    set(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)?;
    set(fd, TCP_QUEUE_SEQ, stream.outq_seq.wrapping_sub(stream.outq_len) as i32)?;
    sys::socket::inet_bind_or_connect(fd, local, false).map_err(file_io(format!("bind port {}", local.port)))?;
    sys::socket::inet_bind_or_connect(fd, peer, true).map_err(file_io(format!("connect (repair) port {}", peer.port)))?;
    let mut options: Vec<u32> = vec![TCPOPT_MAXSEG, stream.mss_clamp];
    if stream.opt_mask & TCPI_OPT_WSCALE != 0 {
        options.extend([TCPOPT_WINDOW, stream.snd_wscale | (stream.rcv_wscale.unwrap_or(0) << 16)]);
    }
    if stream.opt_mask & TCPI_OPT_SACK != 0 {
        options.extend([TCPOPT_SACK_PERM, 0]);
    }
    if stream.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        options.extend([TCPOPT_TIMESTAMP, 0]);
    }
    let bytes: Vec<u8> = options.iter().flat_map(|v| v.to_ne_bytes()).collect();
    sys::socket::set_socket_option_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &bytes).map_err(file_io("TCP_REPAIR_OPTIONS"))?;
    if let Some(timestamp) = stream.timestamp {
        set(fd, TCP_TIMESTAMP, timestamp as i32)?;
    }
    // Queues: in repair mode a send lands in the queue selected.
    let unsent = stream.unsq_len.unwrap_or(0) as usize;
    let sent = outq.len().saturating_sub(unsent);
    set(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)?;
    send_all(fd, inq).map_err(file_io("refill receive queue"))?;
    set(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)?;
    send_all(fd, &outq[..sent]).map_err(file_io("refill send queue"))?;
    if let (Some(snd_wl1), Some(snd_wnd), Some(max_window), Some(rcv_wnd), Some(rcv_wup)) =
        (stream.snd_wl1, stream.snd_wnd, stream.max_window, stream.rcv_wnd, stream.rcv_wup)
    {
        let window: Vec<u8> = [snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup].iter().flat_map(|v| v.to_ne_bytes()).collect();
        sys::socket::set_socket_option_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &window).map_err(file_io("TCP_REPAIR_WINDOW"))?;
    }
    set(fd, TCP_REPAIR, 0)?;
    // The unsent part goes out as ordinary data.
    send_all(fd, &outq[sent..]).map_err(file_io("send unsent data"))?;
    set(fd, libc::TCP_NODELAY, stream.nodelay.unwrap_or(false) as i32)?;
    set(fd, libc::TCP_CORK, stream.cork.unwrap_or(false) as i32)?;
    Ok(())
}

fn send_all(fd: RawFd, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    sys::socket::send_message(fd, data)
}
