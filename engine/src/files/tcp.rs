//! Established TCP connections, with TCP_REPAIR (`--tcp-established`). Dump: the
//! connection is locked in CRIU's nftables table for the dump (`inet CRIU-<run id>`,
//! dropping its packets both ways; `inventory.network_lock_method` says nftables), the socket is put in repair mode and its sequence numbers,
//! queues (sent-but-unacknowledged, unsent, received-but-unread), options and window
//! are read into tcp-stream-INODE.img. A socket closed in repair mode goes silently, so
//! the killed target sends no FIN or RST; after a failed dump (or `--leave-running`)
//! repair mode is left and the lock removed. Restore builds the socket in repair mode
//! (sequence numbers, bind, connect without a handshake, options, queues, window),
//! leaves repair mode and, once the tree runs, removes the lock (CRIU's table, or the
//! iptables rules of CRIU's default lock, or the table of an older crust dump): the
//! peer's retransmissions arrive and nothing was lost.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};

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

/// CRIU's mark for packets that pass a lock (`meta mark` in the table, `--mark` in the
/// iptables rules): the restoring tool's own traffic.
const LOCK_MARK: u32 = 0xC114;

/// The nftables table that locks the TCP connections of dump `run_id`, as CRIU names
/// it (`inventory.dump_criu_run_id`): `CRIU-` and the run id's first 21 characters. One
/// table per dump, whichever tool made it: either tool's restore lifts the other's lock.
pub(crate) fn lock_table(run_id: &str) -> String {
    let short: String = run_id.chars().take(21).collect();
    format!("CRIU-{short}")
}

fn nft(script: &str) -> Result<(), FileError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(file_io("run nft (install nftables)"))?;
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(file_io("write to nft"))?;
    let output = child.wait_with_output().map_err(file_io("wait for nft"))?;
    if !output.status.success() {
        return Err(FileError::refused(format!("nft: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(())
}

fn ip_text(address: &InetAddress) -> String {
    if address.family == libc::AF_INET {
        address.addr.iter().take(4).map(|b| b.to_string()).collect::<Vec<_>>().join(".")
    } else {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&address.addr[..16]);
        std::net::Ipv6Addr::from(bytes).to_string()
    }
}

/// The address as the lock matches packets: an IPv4-mapped address of an IPv6 socket
/// carries IPv4 packets.
fn on_the_wire(address: &InetAddress) -> InetAddress {
    let mapped = address.family == libc::AF_INET6 && address.addr.len() == 16 && address.addr[..10].iter().all(|&b| b == 0) && address.addr[10..12] == [0xff, 0xff];
    if mapped {
        InetAddress { family: libc::AF_INET, addr: address.addr[12..].to_vec(), port: address.port }
    } else {
        address.clone()
    }
}

/// The set of CRIU's lock table that holds a connection of this family.
fn conns_set(family: i32) -> &'static str {
    if family == libc::AF_INET { "conns4" } else { "conns6" }
}

/// The connection local↔peer as the elements of CRIU's set: one per direction.
fn conns_elements(local: &InetAddress, peer: &InetAddress) -> String {
    let (local, peer) = (on_the_wire(local), on_the_wire(peer));
    let (l, p) = (ip_text(&local), ip_text(&peer));
    format!("{l} . {} . {p} . {}, {p} . {} . {l} . {}", local.port, peer.port, peer.port, local.port)
}

/// Drops every packet of the connection local↔peer, both ways, until the table of dump
/// `run_id` goes. The table is CRIU's (sets `conns4`/`conns6` of address-port tuples,
/// chains on the input and output hooks that let marked packets through and drop the
/// set's); it is made (or made again, the same) in the same transaction that adds the
/// connection, so it is never there half-built.
pub(crate) fn lock(run_id: &str, local: &InetAddress, peer: &InetAddress) -> Result<(), FileError> {
    let table = lock_table(run_id);
    let mut script = format!(
        "add table inet {table}\n\
         add set inet {table} conns4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n\
         add set inet {table} conns6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n"
    );
    for (chain, hook) in [("output", "output"), ("input", "input")] {
        script.push_str(&format!(
            "add chain inet {table} {chain} {{ type filter hook {hook} priority filter; policy accept; }}\n\
             flush chain inet {table} {chain}\n\
             add rule inet {table} {chain} meta mark {LOCK_MARK:#010x} accept\n\
             add rule inet {table} {chain} ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
             add rule inet {table} {chain} ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n"
        ));
    }
    script.push_str(&format!("add element inet {table} {} {{ {} }}\n", conns_set(on_the_wire(local).family), conns_elements(local, peer)));
    nft(&script)
}

/// Lets the connection local↔peer through again, leaving the dump's other connections
/// locked (a dump that failed on this one).
pub(crate) fn unlock_connection(run_id: &str, local: &InetAddress, peer: &InetAddress) -> Result<(), FileError> {
    nft(&format!("delete element inet {} {} {{ {} }}\n", lock_table(run_id), conns_set(on_the_wire(local).family), conns_elements(local, peer)))
}

/// Removes the lock table of dump `run_id`: every connection it locked flows again.
/// `Ok(false)`: there was none (the dump left its tree running, or it was lifted by
/// hand).
pub(crate) fn remove_lock(run_id: &str) -> Result<bool, FileError> {
    match nft(&format!("delete table inet {}\n", lock_table(run_id))) {
        Err(error) if error.to_string().contains("No such file or directory") => Ok(false),
        Err(error) => Err(error),
        Ok(()) => Ok(true),
    }
}

/// Removes the table crust locked a connection with before it used CRIU's (one table
/// per connection, `ip crust_tcp_INODE` or `ip6 ...`), for dumps of crust before
/// 2026-12-06. `Ok(false)`: there was none.
pub(crate) fn remove_old_crust_lock(ino: u32, family: i32) -> Result<bool, FileError> {
    let family = if family == libc::AF_INET { "ip" } else { "ip6" };
    match nft(&format!("delete table {family} crust_tcp_{ino}\n")) {
        Err(error) if error.to_string().contains("No such file or directory") => Ok(false),
        Err(error) => Err(error),
        Ok(()) => Ok(true),
    }
}

/// Removes the iptables rules CRIU's default lock (`--network-lock iptables`) put on
/// the connection local↔peer: one DROP rule in INPUT (peer to local) and one in OUTPUT
/// (local to peer), each letting marked packets through. `Ok(false)`: none was there.
pub(crate) fn remove_iptables_lock(local: &InetAddress, peer: &InetAddress) -> Result<bool, FileError> {
    let (local, peer) = (&on_the_wire(local), &on_the_wire(peer));
    let tool = if local.family == libc::AF_INET { "iptables" } else { "ip6tables" };
    let mut removed = false;
    for (chain, from, to) in [("INPUT", peer, local), ("OUTPUT", local, peer)] {
        let output = Command::new(tool)
            .args(["-w", "-t", "filter", "-D", chain, "--protocol", "tcp", "-m", "mark", "!", "--mark", &format!("{LOCK_MARK:#X}")])
            .args(["--source", &ip_text(from), "--sport", &from.port.to_string(), "--destination", &ip_text(to), "--dport", &to.port.to_string()])
            .args(["-j", "DROP"])
            .stdin(Stdio::null())
            .output()
            .map_err(file_io(format!("run {tool} (install iptables)")))?;
        if output.status.success() {
            removed = true;
        } else {
            log::debug!("{tool} -D {chain}: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
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
