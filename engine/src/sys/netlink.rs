//! sock_diag: the kernel's list of sockets (AF_UNIX with names, peers and queues; TCP
//! listeners with their backlog), asked over a NETLINK_SOCK_DIAG socket. The socket
//! calls go through nix; the request and the replies are bytes built and parsed here
//! (pure, tested on fixtures in `files/unix.rs` and `files/inet.rs`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

/// Sends one sock_diag dump request (`request`: the family's request struct, after the
/// netlink header) and returns the raw netlink replies until DONE or ERROR.
#[doc(alias = "SOCK_DIAG_BY_FAMILY")]
pub fn sock_diag_dump(request: &[u8]) -> io::Result<Vec<u8>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let sock = socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)?;
    let mut message = Vec::with_capacity(16 + request.len());
    message.extend_from_slice(&(16 + request.len() as u32).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(request);
    // No address: the kernel is the default.
    socket::send(sock.as_raw_fd(), &message, MsgFlags::empty())?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = nix::unistd::read(&sock, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if diag_done(&buf[..n]) {
            break;
        }
    }
    Ok(out)
}

/// [`sock_diag_dump`] in the network namespace `netns`: sock_diag lists the sockets of
/// the namespace its netlink socket was made in, so a thread of crust enters `netns`,
/// makes the socket there and asks (crust's other threads stay where they are).
pub fn sock_diag_dump_in(netns: BorrowedFd<'_>, request: &[u8]) -> io::Result<Vec<u8>> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("crust-sock-diag".into())
            .spawn_scoped(scope, || {
                super::netns::enter_net_namespace(netns)?;
                sock_diag_dump(request)
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the sock_diag thread panicked")))
    })
}

/// The sock_diag request for every AF_UNIX socket of a network namespace, with names,
/// peers, queue lengths and shutdown state.
pub fn unix_diag_request() -> Vec<u8> {
    // UDIAG_SHOW_NAME | VFS | PEER | ICONS | RQLEN
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10;
    let mut request = Vec::with_capacity(24);
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    request.extend_from_slice(&u32::MAX.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&SHOW.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]);
    request
}

/// The packet_diag request (packet_diag_req) for every packet socket of a network
/// namespace, with info, memberships, ring settings and fanout.
pub fn packet_diag_request() -> Vec<u8> {
    // PACKET_SHOW_INFO | MCLIST | RING_CFG | FANOUT
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8;
    let mut request = vec![libc::AF_PACKET as u8, 0, 0, 0];
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&SHOW.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]);
    request
}

/// The inet_diag request (inet_diag_req_v2) for the TCP listeners of one family.
pub fn tcp_listener_diag_request(family: i32) -> Vec<u8> {
    inet_diag_request(family, libc::IPPROTO_TCP, 1 << 10)
}

/// The inet_diag request (inet_diag_req_v2) for every socket of one family and protocol
/// (UDP, UDP-Lite) in the states of the bit mask `states` (`u32::MAX`: all); each reply
/// carries the socket's shutdown state (INET_DIAG_SHUTDOWN).
pub fn inet_diag_request(family: i32, protocol: i32, states: u32) -> Vec<u8> {
    let mut request = vec![family as u8, protocol as u8, 0, 0];
    request.extend_from_slice(&states.to_ne_bytes());
    request.extend_from_slice(&[0u8; 48]);
    request
}


pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;

/// Whether a netlink reply chunk ends the dump (DONE or ERROR).
pub(crate) fn diag_done(bytes: &[u8]) -> bool {
    netlink_messages(bytes).any(|(kind, _)| kind == NLMSG_DONE || kind == NLMSG_ERROR)
}

/// The netlink messages of a reply: (type, payload).
pub(crate) fn netlink_messages(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    netlink_messages_with_seq(bytes).map(|(kind, _, payload)| (kind, payload))
}

/// The attributes (struct nlattr / rtattr) of a message body from its start: (type
/// without the nested and byte-order bits, data). Stops at a malformed one.
pub(crate) fn netlink_attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(at..at + 4)?;
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let kind = u16::from_ne_bytes([header[2], header[3]]) & 0x3fff;
        let data = bytes.get(at + 4..at + len.max(4))?;
        if len < 4 {
            return None;
        }
        at += (len + 3) & !3;
        Some((kind, data))
    })
}

/// The netlink messages of a reply: (type, sequence number, payload).
pub(crate) fn netlink_messages_with_seq(bytes: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(at..at + 16)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(header[8..12].try_into().expect("4 bytes"));
        if len < 16 || at + len > bytes.len() {
            return None;
        }
        let payload = &bytes[at + 16..at + len];
        at += (len + 3) & !3;
        Some((kind, seq, payload))
    })
}

