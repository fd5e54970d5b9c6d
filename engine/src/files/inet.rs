//! Inet sockets (IPv4 and IPv6): TCP listeners and unconnected TCP sockets, UDP sockets
//! bound and/or connected with their queued datagrams. The socket is borrowed from the
//! target (pidfd_getfd) to read its names and options; a listener's backlog and waiting
//! connections come from inet_diag. Established TCP connections are dumped with
//! TCP_REPAIR when the dump asks for it (`--tcp-established`, see `tcp.rs`).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{file_io, file_within, FileError};
use crust_images::pb;

use crate::sys;
use crate::sys::socket::InetAddress;

/// IP_NODEFRAG (linux/in.h; not in libc).
const IP_NODEFRAG: i32 = 22;
const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

/// Listeners by inode: (connections waiting for accept, backlog). Pure.
pub(crate) fn parse_listeners(bytes: &[u8]) -> BTreeMap<u32, (u32, u32)> {
    let mut out = BTreeMap::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + 16) {
        let len = u32::from_ne_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().expect("2 bytes"));
        if len < 16 || kind == 2 || kind == 3 {
            break;
        }
        if let Some(message) = bytes.get(at + 16..at + len).filter(|m| m.len() >= 72) {
            let word = |i: usize| u32::from_ne_bytes(message[i..i + 4].try_into().expect("4 bytes"));
            out.insert(word(68), (word(56), word(60)));
        }
        at += (len + 3) & !3;
    }
    out
}

/// Shutdown state (INET_DIAG_SHUTDOWN: 1 reading, 2 writing) by inode, from inet_diag
/// replies; sockets not shut down are left out. Pure.
pub(crate) fn parse_shutdowns(bytes: &[u8]) -> BTreeMap<u32, u8> {
    const INET_DIAG_SHUTDOWN: u16 = 8;
    let mut out = BTreeMap::new();
    for (kind, message) in sys::netlink::netlink_messages(bytes) {
        if kind == sys::netlink::NLMSG_DONE || kind == sys::netlink::NLMSG_ERROR {
            break;
        }
        let Some(head) = message.get(..72) else { continue };
        let ino = u32::from_ne_bytes(head[68..72].try_into().expect("4 bytes"));
        let shutdown = sys::netlink::netlink_attributes(&message[72..]).find(|(kind, _)| *kind == INET_DIAG_SHUTDOWN);
        if let Some(&bits) = shutdown.and_then(|(_, data)| data.first()).filter(|b| **b != 0) {
            out.insert(ino, bits);
        }
    }
    out
}

fn words(address: &InetAddress) -> Vec<u32> {
    address.addr.chunks(4).map(|c| u32::from_ne_bytes(c.try_into().expect("4-byte chunks"))).collect()
}

pub(crate) fn address(family: u32, words: &[u32], port: u32) -> InetAddress {
    InetAddress { family: family as i32, addr: words.iter().flat_map(|w| w.to_ne_bytes()).collect(), port: port as u16 }
}

/// An inet socket's entry; its queued datagrams are returned alongside. `Err` names
/// what is not supported.
/// An established TCP connection taken in repair mode: its socket (kept open, locked and
/// in repair mode, until the dump ends) and its stream state.
pub(crate) struct Established {
    pub(crate) socket: OwnedFd,
    pub(crate) stream: pb::TcpStreamEntry,
    pub(crate) inq: Vec<u8>,
    pub(crate) outq: Vec<u8>,
}

/// How a dump treats TCP sockets (CRIU's options).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpOptions {
    /// Established connections are dumped with TCP_REPAIR (`--tcp-established`).
    pub(crate) established: bool,
    /// Established connections are dumped closed: no repair, no lock (`--tcp-close`).
    pub(crate) close: bool,
    /// Connections are locked while dumped (not `--network-lock skip`).
    pub(crate) lock: bool,
    /// A listener's connections waiting for accept are left out (`--skip-in-flight`).
    pub(crate) skip_in_flight: bool,
}

/// The network namespace `socket` belongs to (`SIOCGSKNS`) when it is not crust's own:
/// its inode and fd.
fn foreign_namespace(socket: &OwnedFd) -> Result<Option<(u64, OwnedFd)>, FileError> {
    let netns = sys::socket::socket_net_namespace(socket.as_raw_fd()).map_err(file_io("SIOCGSKNS"))?;
    let inode = sys::netns::namespace_inode(&netns).map_err(file_io("stat the socket's network namespace"))?;
    let own = sys::netns::open_own_net_namespace().and_then(sys::netns::namespace_inode).map_err(file_io("stat crust's network namespace"))?;
    Ok((inode != own).then_some((inode, netns)))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn dump_socket(
    pid: i32,
    fd: u32,
    id: u32,
    ino: u32,
    flags: i32,
    (listeners, listeners_read): (&mut BTreeMap<u32, (u32, u32)>, &mut std::collections::BTreeSet<u64>),
    (shutdowns, shutdowns_read): (&mut BTreeMap<u32, u8>, &mut std::collections::BTreeSet<u64>),
    tcp: TcpOptions,
    established: &mut super::TcpRepairGuard,
) -> Result<(pb::InetSkEntry, Vec<Vec<u8>>), FileError> {
    let socket = sys::process::borrow_fd(pid, fd).map_err(file_io("pidfd_getfd"))?;
    let raw = socket.as_raw_fd();
    let get = |level, name| sys::socket::socket_option(raw, level, name).map_err(file_io(format!("getsockopt {name}")));
    let family = get(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = get(libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = get(libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    let listening = get(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0;
    let what = match (family, kind) {
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) if protocol == libc::IPPROTO_TCP => "tcp",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) if protocol == libc::IPPROTO_UDP => "udp",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) if protocol == libc::IPPROTO_UDPLITE => "udp",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_RAW) => "raw",
        (libc::AF_INET, libc::SOCK_DGRAM) if protocol == libc::IPPROTO_ICMP => {
            return Err(FileError::refused("ICMP ping socket (SOCK_DGRAM, IPPROTO_ICMP)"))
        }
        (libc::AF_INET6, libc::SOCK_DGRAM) if protocol == libc::IPPROTO_ICMPV6 => {
            return Err(FileError::refused("ICMPv6 ping socket (SOCK_DGRAM, IPPROTO_ICMPV6)"))
        }
        _ => return Err(FileError::refused(format!("inet socket of type {kind} protocol {protocol}"))),
    };
    let local = sys::socket::inet_name(raw, false).map_err(file_io("getsockname"))?.unwrap_or_default();
    let peer = sys::socket::inet_name(raw, true).map_err(file_io("getpeername"))?;
    let mut queue = Vec::new();
    let (state, backlog) = if what == "tcp" {
        if let (Some(_), true) = (&peer, tcp.close) {
            // As CRIU's --tcp-close: the connection is not kept; the socket comes back
            // closed (its addresses are recorded, no stream state, nothing locked).
            log::info!("TCP connection of socket {ino}: dumped closed (--tcp-close)");
            (TCP_CLOSE, 0)
        } else if let Some(peer) = &peer {
            if !tcp.established {
                return Err(FileError::refused("established TCP connection (dump with --tcp-established, or --tcp-close to restore it closed)"));
            }
            let mut info = [0u8; 8];
            sys::socket::socket_option_bytes(raw, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info).map_err(file_io("TCP_INFO"))?;
            if info[0] as u32 != TCP_ESTABLISHED {
                return Err(FileError::refused(format!("TCP connection in state {} (only established ones are dumped)", info[0])));
            }
            // The dump's lock table of the connection's network namespace (made there
            // with its first connection: a container's connections are locked inside
            // the container) is in the dump's guard: a failure from here removes it,
            // this connection's with it.
            if tcp.lock {
                established.lock(&local, peer, foreign_namespace(&socket)?).map_err(file_within("lock the connection"))?;
            } else {
                log::info!("TCP connection of socket {ino}: not locked (--network-lock skip)");
            }
            let socket = socket.try_clone().map_err(file_io("dup socket"))?;
            if let Err(e) = super::tcp::set_repair(&socket, true) {
                return Err(FileError::refused(format!("TCP_REPAIR: {e}")));
            }
            // From here the dump's guard takes repair mode off and the lock away again
            // if the dump fails.
            let dumped = super::tcp::dump_stream(&socket);
            let left = super::tcp::leave_repair(&socket);
            let (stream, inq, outq) = match (dumped, left) {
                (Ok(parts), Ok(())) => parts,
                (Err(e), _) | (_, Err(e)) => {
                    let _ = super::tcp::set_repair(&socket, false);
                    return Err(e);
                }
            };
            established.connections.push((ino, Established { socket, stream, inq, outq }));
            (TCP_ESTABLISHED, 0)
        } else if listening {
            let requests = [libc::AF_INET, libc::AF_INET6].map(sys::netlink::tcp_listener_diag_request);
            for bytes in super::diag_in_socket_namespace(&socket, listeners_read, &requests)?.unwrap_or_default() {
                listeners.extend(parse_listeners(&bytes));
            }
            let (waiting, backlog) = listeners.get(&ino).copied().unwrap_or((0, 128));
            if waiting > 0 && tcp.skip_in_flight {
                log::warn!("TCP listener socket {ino}: {waiting} connections waiting for accept are left out (--skip-in-flight)");
            } else if waiting > 0 {
                return Err(FileError::refused(format!(
                    "TCP listener with {waiting} connections waiting for accept (--skip-in-flight leaves them out)"
                )));
            }
            (TCP_LISTEN, backlog)
        } else {
            (TCP_CLOSE, 0)
        }
    } else if what == "raw" {
        // A raw socket sees every packet of its protocol: what is queued is traffic of
        // the moment, not the program's state, and is not kept (as a packet lost).
        let queued = sys::socket::ioctl_int(raw, libc::FIONREAD as u64).unwrap_or(0);
        if queued > 0 {
            log::info!("raw socket {ino}: its queued packets are not kept");
        }
        (TCP_CLOSE, 0)
    } else {
        // Data held back by UDP_CORK or MSG_MORE is in no image field (CRIU refuses it).
        let pending = sys::socket::ioctl_int(raw, libc::TIOCOUTQ as u64).map_err(file_io("SIOCOUTQ"))?;
        if pending > 0 {
            return Err(FileError::refused(format!("UDP socket corked with {pending} bytes pending (UDP_CORK or MSG_MORE)")));
        }
        queue = super::unix::peek_queue(&socket)?.into_iter().map(|(data, _)| data).collect();
        // Once per network namespace, for both datagram protocols.
        let mut requests = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            for protocol in [libc::IPPROTO_UDP, libc::IPPROTO_UDPLITE] {
                requests.push(sys::netlink::inet_diag_request(family, protocol, u32::MAX));
            }
        }
        for bytes in super::diag_in_socket_namespace(&socket, shutdowns_read, &requests)?.unwrap_or_default() {
            shutdowns.extend(parse_shutdowns(&bytes));
        }
        (if peer.is_some() { TCP_ESTABLISHED } else { TCP_CLOSE }, 0)
    };
    // Written only when shut (as CRIU: its restore takes a present field as a shutdown).
    let shutdown = shutdowns.get(&ino).copied().filter(|&bits| what == "udp" && bits != 0).map(i32::from);
    let mut ip_opts = super::sockopts::read_ip(&socket, family);
    if what == "raw" && family == libc::AF_INET {
        let int = |name| sys::socket::socket_option(raw, libc::IPPROTO_IP, name).ok().filter(|&v| v != 0).map(|_| true);
        ip_opts.raw = Some(pb::IpOptsRawEntry { hdrincl: int(libc::IP_HDRINCL), nodefrag: int(IP_NODEFRAG), ..Default::default() });
    }
    let v6only = if family == libc::AF_INET6 { Some(get(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)? != 0) } else { None };
    let opts = super::sockopts::read(&socket);
    let tcp_opts = (protocol == libc::IPPROTO_TCP).then(|| super::sockopts::read_tcp(&socket));
    let peer = peer.unwrap_or(InetAddress { family, addr: vec![0; local.addr.len()], port: 0 });
    Ok((
        pb::InetSkEntry {
            id,
            ino,
            family: family as u32,
            r#type: kind as u32,
            proto: protocol as u32,
            state,
            src_port: local.port as u32,
            dst_port: peer.port as u32,
            flags: flags as u32,
            backlog,
            src_addr: words(&local),
            dst_addr: words(&peer),
            fown: Default::default(),
            opts,
            ip_opts: Some(ip_opts),
            tcp_opts,
            v6only,
            shutdown,
            ..Default::default()
        },
        queue,
    ))
}

/// Creates an inet socket: options, bind, listen or connect, queued datagrams (sent to
/// it again from a socket of crust's: their source address is not kept).
pub(crate) fn create_socket(
    entry: &pb::InetSkEntry,
    queue: &[Vec<u8>],
    stream: Option<&(pb::TcpStreamEntry, Vec<u8>, Vec<u8>)>,
) -> Result<OwnedFd, FileError> {
    let what = format!("inet socket {} (ino {})", entry.id, entry.ino);
    let family = entry.family as i32;
    let fd = sys::socket::create_socket_with_protocol(family, entry.r#type as i32, entry.proto as i32)
        .map_err(file_io(format!("{what}: socket (type {}, protocol {})", entry.r#type, entry.proto)))?;
    let raw = fd.as_raw_fd();
    let set = |level, name, value: bool| sys::socket::set_socket_option(raw, level, name, value as i32);
    if let Some(options) = entry.ip_opts.as_ref().and_then(|ip| ip.raw.as_ref()) {
        for (name, value, option) in [(libc::IP_HDRINCL, options.hdrincl, "IP_HDRINCL"), (IP_NODEFRAG, options.nodefrag, "IP_NODEFRAG")] {
            if let Some(value) = value {
                set(libc::IPPROTO_IP, name, value).map_err(file_io(format!("{what}: {option}")))?;
            }
        }
    }
    if let Some(v6only) = entry.v6only {
        set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v6only).map_err(file_io(format!("{what}: IPV6_V6ONLY")))?;
    }
    let tcp = entry.proto == libc::IPPROTO_TCP as u32;
    super::sockopts::apply(&fd, &entry.opts, entry.tcp_opts.as_ref(), super::sockopts::Kind::Inet { tcp }, &what)?;
    if let Some(ip) = &entry.ip_opts {
        super::sockopts::apply_ip(&fd, ip, family, &what)?;
    }
    let local = address(entry.family, &entry.src_addr, entry.src_port);
    // A connection dumped closed (`--tcp-close`) comes back as a fresh socket: its old
    // local port is not bound again.
    let dumped_closed = entry.proto == libc::IPPROTO_TCP as u32 && entry.state == TCP_CLOSE && entry.dst_port != 0;
    let bound = entry.src_port != 0 && !dumped_closed;
    let repaired = entry.proto == libc::IPPROTO_TCP as u32 && entry.state == TCP_ESTABLISHED;
    if bound && !repaired {
        sys::socket::inet_bind_or_connect(raw, &local, false)
            .map_err(file_io(format!("{what}: bind {:?} port {}", local.addr, local.port)))?;
    }
    if entry.state == TCP_LISTEN {
        sys::socket::listen(raw, entry.backlog).map_err(file_io(format!("{what}: listen")))?;
    }
    if entry.proto == libc::IPPROTO_TCP as u32 && entry.state == TCP_ESTABLISHED {
        let stream = stream.ok_or_else(|| FileError::refused(format!("{what}: established TCP connection without its tcp-stream image")))?;
        let peer = address(entry.family, &entry.dst_addr, entry.dst_port);
        super::tcp::restore_stream(&fd, &local, &peer, &stream.0, &stream.1, &stream.2).map_err(file_within(what.clone()))?;
    }
    // Queued datagrams first: once connected, the socket takes datagrams from its peer
    // only.
    if !queue.is_empty() && bound {
        let mut target = local.clone();
        if target.addr.iter().all(|b| *b == 0) {
            // Bound to any address: send over loopback.
            target.addr = if family == libc::AF_INET { vec![127, 0, 0, 1] } else { [0u8; 15].iter().copied().chain([1]).collect() };
        }
        // Of the socket's own protocol: a UDP datagram does not reach a UDP-Lite socket.
        let sender = sys::socket::create_socket_with_protocol(family, libc::SOCK_DGRAM, entry.proto as i32)
            .map_err(file_io(format!("{what}: socket")))?;
        for datagram in queue {
            sys::socket::send_to(sender.as_raw_fd(), datagram, &target).map_err(file_io(format!("{what}: requeue datagram")))?;
        }
    }
    if entry.proto != libc::IPPROTO_TCP as u32 && entry.state == TCP_ESTABLISHED && entry.dst_port != 0 {
        let peer = address(entry.family, &entry.dst_addr, entry.dst_port);
        sys::socket::inet_bind_or_connect(raw, &peer, true).map_err(file_io(format!("{what}: connect port {}", peer.port)))?;
    }
    let bits = entry.shutdown.unwrap_or(0) as u32;
    match sys::socket::shut_down(raw, bits) {
        // An unconnected datagram socket is shut down all the same, and says ENOTCONN.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) && entry.state == TCP_CLOSE => {}
        other => other.map_err(file_io(format!("{what}: shutdown {bits}")))?,
    }
    sys::file::set_status_flags(&fd, entry.flags as i32).map_err(file_io(format!("{what}: flags")))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_backlog_and_waiting() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(16u32 + 72).to_ne_bytes());
        bytes.extend_from_slice(&20u16.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        let mut message = vec![0u8; 72];
        message[56..60].copy_from_slice(&2u32.to_ne_bytes());
        message[60..64].copy_from_slice(&64u32.to_ne_bytes());
        message[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        bytes.extend(message);
        assert_eq!(parse_listeners(&bytes)[&4242], (2, 64));
    }

    #[test]
    fn shutdown_bits_by_inode() {
        let mut message = vec![0u8; 72];
        message[68..72].copy_from_slice(&777u32.to_ne_bytes());
        // INET_DIAG_SHUTDOWN (8): one byte, padded.
        message.extend_from_slice(&5u16.to_ne_bytes());
        message.extend_from_slice(&8u16.to_ne_bytes());
        message.extend_from_slice(&[2, 0, 0, 0]);
        let mut open = vec![0u8; 72];
        open[68..72].copy_from_slice(&778u32.to_ne_bytes());
        open.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        let mut bytes = Vec::new();
        for payload in [message, open] {
            bytes.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
            bytes.extend_from_slice(&20u16.to_ne_bytes());
            bytes.extend_from_slice(&[0; 10]);
            bytes.extend_from_slice(&payload);
        }
        let shut = parse_shutdowns(&bytes);
        assert_eq!(shut.get(&777), Some(&2));
        assert_eq!(shut.get(&778), None);
    }
}
