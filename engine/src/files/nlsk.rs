//! Netlink sockets (CRIU's `netlink_sk_entry`, files.img `nlsk`): protocol, port id,
//! group memberships (all of them, past the first 32 too), the destination of a
//! connected one, options and flags. The socket is borrowed from the target
//! (pidfd_getfd) to read them; restore makes a socket of the protocol, binds it to the
//! same port id and groups, joins the groups past 32 and connects it again. Messages
//! queued for reading are not in the image: a socket holding some fails the dump.

use std::os::fd::{AsRawFd, OwnedFd};

use super::{file_io, FileError};
use crust_images::pb;

use crate::sys;

/// SOL_NETLINK and its options (linux/netlink.h).
const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_LIST_MEMBERSHIPS: i32 = 9;
/// `netlink_sk_entry.state` (the kernel's sk_state, as netlink_diag gives it): a
/// connected socket (NETLINK_CONNECTED), one never connected (TCP_CLOSE, sock_init_data's
/// state; CRIU writes 0 for an unbound one, which netlink_diag does not list).
const CONNECTED: u32 = 1;
const NEVER_CONNECTED: u32 = 7;

/// A netlink socket's entry (`pid`'s fd `fd`, file id `id`, open flags `flags`).
pub(crate) fn dump_socket(pid: i32, fd: u32, id: u32, ino: u32, flags: i32) -> Result<pb::NetlinkSkEntry, FileError> {
    let socket = sys::process::borrow_fd(pid, fd).map_err(file_io("pidfd_getfd"))?;
    let raw = socket.as_raw_fd();
    let protocol = sys::socket::socket_option(raw, libc::SOL_SOCKET, libc::SO_PROTOCOL).map_err(file_io("SO_PROTOCOL"))?;
    let mut probe = [0u8; 1];
    match sys::socket::peek_bytes(raw, &mut probe) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
        Ok(_) => return Err(FileError::refused(format!("netlink socket (protocol {protocol}) with messages queued for reading"))),
        Err(e) => return Err(FileError::refused(format!("netlink socket (protocol {protocol}): peek its queue: {e}"))),
    }
    let (port_id, _) = sys::socket::netlink_name(raw, false).map_err(file_io("getsockname"))?;
    let (dst_portid, dst_mask) = sys::socket::netlink_name(raw, true).map_err(file_io("getpeername"))?;
    // The groups as a bit mask, 32 a word; NETLINK_LIST_MEMBERSHIPS says how long it is.
    let mut words = [0u8; 4 * 64];
    let len = sys::socket::socket_option_bytes(raw, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, &mut words).map_err(file_io("NETLINK_LIST_MEMBERSHIPS"))?;
    let mut groups: Vec<u32> = words[..len.min(words.len())].chunks_exact(4).map(|w| u32::from_ne_bytes(w.try_into().expect("4 bytes"))).collect();
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let dst_group = if dst_mask == 0 { 0 } else { dst_mask.trailing_zeros() + 1 };
    Ok(pb::NetlinkSkEntry {
        id,
        ino,
        protocol: protocol as u32,
        state: if dst_portid != 0 || dst_group != 0 {
            CONNECTED
        } else if port_id != 0 {
            NEVER_CONNECTED
        } else {
            0
        },
        flags: flags as u32,
        portid: port_id,
        groups,
        dst_portid,
        dst_group,
        fown: Default::default(),
        opts: super::sockopts::read(&socket),
        ..Default::default()
    })
}

/// Makes a netlink socket of the image again: bound to its port id (and first 32
/// groups), in its other groups, connected to its destination.
pub(crate) fn create_socket(entry: &pb::NetlinkSkEntry) -> Result<OwnedFd, FileError> {
    let what = format!("netlink socket {} (ino {}, protocol {})", entry.id, entry.ino, entry.protocol);
    let fd = sys::socket::create_socket_with_protocol(libc::AF_NETLINK, libc::SOCK_RAW, entry.protocol as i32)
        .map_err(file_io(format!("{what}: socket")))?;
    let raw = fd.as_raw_fd();
    super::sockopts::apply(&fd, &entry.opts, None, super::sockopts::Kind::Unix, &what)?;
    let first = entry.groups.first().copied().unwrap_or(0);
    if entry.portid != 0 || first != 0 {
        sys::socket::netlink_bind_or_connect(raw, entry.portid, first, false)
            .map_err(file_io(format!("{what}: bind port id {} groups {first:#x}", entry.portid)))?;
    }
    for (index, word) in entry.groups.iter().enumerate().skip(1) {
        for bit in (0..32).filter(|bit| word & (1 << bit) != 0) {
            let group = (index * 32 + bit + 1) as i32;
            sys::socket::set_socket_option(raw, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group).map_err(file_io(format!("{what}: join group {group}")))?;
        }
    }
    if entry.state == CONNECTED {
        let mask = if entry.dst_group == 0 || entry.dst_group > 32 { 0 } else { 1 << (entry.dst_group - 1) };
        sys::socket::netlink_bind_or_connect(raw, entry.dst_portid, mask, true)
            .map_err(file_io(format!("{what}: connect to port id {} group {}", entry.dst_portid, entry.dst_group)))?;
    }
    sys::file::set_status_flags(&fd, entry.flags as i32).map_err(file_io(format!("{what}: flags")))?;
    Ok(fd)
}
