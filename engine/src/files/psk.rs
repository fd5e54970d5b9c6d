//! Packet sockets (AF_PACKET; CRIU's `packet_sock_entry`, files.img `psk`): type,
//! protocol, the interface bound to, PACKET_VERSION, PACKET_RESERVE, PACKET_AUXDATA,
//! PACKET_ORIGDEV, PACKET_VNET_HDR, PACKET_LOSS, PACKET_TIMESTAMP, PACKET_COPY_THRESH,
//! memberships (PACKET_ADD_MEMBERSHIP, with their counts) and the fanout group, all from
//! the kernel's packet_diag. A socket with a receive or transmit ring (PACKET_RX_RING,
//! PACKET_TX_RING) fails the dump: the ring's frames, mapped into the process, are not
//! rebuilt. Packets queued for reading are traffic of the moment and are not kept (as
//! packets lost on the wire).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{file_io, FileError};
use crust_images::pb;

use crate::sys;

const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_COPY_THRESH: i32 = 7;
const PACKET_AUXDATA: i32 = 8;
const PACKET_ORIGDEV: i32 = 9;
const PACKET_VERSION: i32 = 10;
const PACKET_RESERVE: i32 = 12;
const PACKET_LOSS: i32 = 14;
const PACKET_VNET_HDR: i32 = 15;
const PACKET_TIMESTAMP: i32 = 17;
const PACKET_FANOUT: i32 = 18;

/// packet_diag_info.pdi_flags.
const PDI_AUXDATA: u32 = 0x2;
const PDI_ORIGDEV: u32 = 0x4;
const PDI_VNETHDR: u32 = 0x8;
const PDI_LOSS: u32 = 0x10;

/// One packet socket as packet_diag reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PacketDiag {
    pub(crate) kind: u8,
    /// The protocol, host byte order (pdiag_num).
    pub(crate) protocol: u16,
    /// packet_diag_info: ifindex, version, reserve, copy_thresh, tstamp, flags.
    pub(crate) info: Option<[u32; 6]>,
    /// (ifindex, count, type, address) of each membership.
    pub(crate) mclist: Vec<(u32, u32, u16, Vec<u8>)>,
    pub(crate) rx_ring: bool,
    pub(crate) tx_ring: bool,
    pub(crate) fanout: Option<u32>,
}

/// Parses packet_diag replies into sockets by inode. Pure.
pub(crate) fn parse_diag(bytes: &[u8]) -> BTreeMap<u32, PacketDiag> {
    let mut out = BTreeMap::new();
    let word = |data: &[u8], i: usize| data.get(i..i + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
    for (kind, payload) in sys::netlink::netlink_messages(bytes) {
        if kind == sys::netlink::NLMSG_DONE || kind == sys::netlink::NLMSG_ERROR {
            break;
        }
        let Some(head) = payload.get(..16) else { continue };
        let ino = u32::from_ne_bytes(head[4..8].try_into().expect("4 bytes"));
        let mut socket = PacketDiag { kind: head[1], protocol: u16::from_ne_bytes([head[2], head[3]]), ..Default::default() };
        for (attr_kind, data) in sys::netlink::netlink_attributes(&payload[16..]) {
            match attr_kind {
                0 if data.len() >= 24 => {
                    let mut info = [0u32; 6];
                    for (i, slot) in info.iter_mut().enumerate() {
                        *slot = word(data, i * 4).unwrap_or(0);
                    }
                    socket.info = Some(info);
                }
                1 => {
                    // packet_diag_mclist: index, count, type (u16), alen (u16), addr[32].
                    for entry in data.chunks_exact(44) {
                        let alen = (u16::from_ne_bytes([entry[10], entry[11]]) as usize).min(32);
                        socket.mclist.push((
                            word(entry, 0).unwrap_or(0),
                            word(entry, 4).unwrap_or(0),
                            u16::from_ne_bytes([entry[8], entry[9]]),
                            entry[12..12 + alen].to_vec(),
                        ));
                    }
                }
                2 => socket.rx_ring = true,
                3 => socket.tx_ring = true,
                4 => socket.fanout = word(data, 0),
                _ => {}
            }
        }
        out.insert(ino, socket);
    }
    out
}

/// A packet socket's entry, from packet_diag (read once per network namespace into
/// `diag`, `read` naming the namespaces done).
pub(crate) fn dump_socket(
    pid: i32,
    fd: u32,
    id: u32,
    ino: u32,
    flags: i32,
    (diag, read): (&mut BTreeMap<u32, PacketDiag>, &mut std::collections::BTreeSet<u64>),
) -> Result<pb::PacketSockEntry, FileError> {
    let socket = sys::process::borrow_fd(pid, fd).map_err(file_io("pidfd_getfd"))?;
    for bytes in super::diag_in_socket_namespace(&socket, read, &[sys::netlink::packet_diag_request()])?.unwrap_or_default() {
        diag.extend(parse_diag(&bytes));
    }
    let found = diag.get(&ino).ok_or_else(|| FileError::refused("packet socket that packet_diag does not list"))?;
    if found.rx_ring || found.tx_ring {
        let ring = if found.rx_ring { "PACKET_RX_RING" } else { "PACKET_TX_RING" };
        return Err(FileError::refused(format!("packet socket with a {ring} (its mapped frames are not rebuilt)")));
    }
    let info = found.info.ok_or_else(|| FileError::refused("packet socket without packet_diag_info"))?;
    let queued = sys::socket::ioctl_int(socket.as_raw_fd(), libc::FIONREAD as u64).unwrap_or(0);
    if queued > 0 {
        log::info!("packet socket {ino}: its queued packets are not kept");
    }
    Ok(pb::PacketSockEntry {
        id,
        r#type: found.kind as u32,
        // In network byte order, as socket(2) takes it (and CRIU writes it).
        protocol: found.protocol.to_be() as u32,
        flags: flags as u32,
        ifindex: info[0],
        fown: Default::default(),
        opts: super::sockopts::read(&socket),
        version: info[1],
        reserve: info[2],
        aux_data: info[5] & PDI_AUXDATA != 0,
        orig_dev: info[5] & PDI_ORIGDEV != 0,
        vnet_hdr: info[5] & PDI_VNETHDR != 0,
        loss: info[5] & PDI_LOSS != 0,
        timestamp: info[4],
        copy_thresh: info[3],
        mclist: found.mclist.iter().flat_map(|(index, count, kind, addr)| {
            (0..*count).map(move |_| pb::PacketMclist { index: *index, r#type: *kind as u32, addr: addr.clone() })
        }).collect(),
        fanout: found.fanout,
        ..Default::default()
    })
}

/// Makes a packet socket of the image again: options, interface, memberships, fanout.
pub(crate) fn create_socket(entry: &pb::PacketSockEntry) -> Result<OwnedFd, FileError> {
    let what = format!("packet socket {}", entry.id);
    if entry.rx_ring.is_some() || entry.tx_ring.is_some() {
        return Err(FileError::refused(format!("{what}: rings (packet_sock_entry.rx_ring, tx_ring) are not supported yet")));
    }
    // The protocol is in network byte order, as socket(2) takes it.
    let protocol = entry.protocol as u16;
    let fd = sys::socket::create_socket_with_protocol(libc::AF_PACKET, entry.r#type as i32, protocol as i32)
        .map_err(file_io(format!("{what}: socket (type {}, protocol {:#x})", entry.r#type, u16::from_be(protocol))))?;
    let raw = fd.as_raw_fd();
    let set = |name: i32, value: u32, option: &str| {
        sys::socket::set_socket_option(raw, libc::SOL_PACKET, name, value as i32).map_err(file_io(format!("{what}: {option} {value}")))
    };
    super::sockopts::apply(&fd, &entry.opts, None, super::sockopts::Kind::Unix, &what)?;
    if entry.version != 0 {
        set(PACKET_VERSION, entry.version, "PACKET_VERSION")?;
    }
    if entry.reserve != 0 {
        set(PACKET_RESERVE, entry.reserve, "PACKET_RESERVE")?;
    }
    for (on, name, option) in [
        (entry.aux_data, PACKET_AUXDATA, "PACKET_AUXDATA"),
        (entry.orig_dev, PACKET_ORIGDEV, "PACKET_ORIGDEV"),
        (entry.vnet_hdr, PACKET_VNET_HDR, "PACKET_VNET_HDR"),
        (entry.loss, PACKET_LOSS, "PACKET_LOSS"),
    ] {
        if on {
            set(name, 1, option)?;
        }
    }
    if entry.timestamp != 0 {
        set(PACKET_TIMESTAMP, entry.timestamp, "PACKET_TIMESTAMP")?;
    }
    if entry.copy_thresh != 0 {
        set(PACKET_COPY_THRESH, entry.copy_thresh, "PACKET_COPY_THRESH")?;
    }
    if entry.ifindex != 0 {
        sys::socket::packet_bind(raw, u16::from_be(protocol), entry.ifindex as i32)
            .map_err(file_io(format!("{what}: bind to interface {}", entry.ifindex)))?;
    }
    for membership in &entry.mclist {
        sys::socket::packet_add_membership(raw, PACKET_ADD_MEMBERSHIP, membership.index as i32, membership.r#type as u16, &membership.addr)
            .map_err(file_io(format!("{what}: PACKET_ADD_MEMBERSHIP on interface {}", membership.index)))?;
    }
    if let Some(fanout) = entry.fanout.filter(|&f| f != u32::MAX) {
        set(PACKET_FANOUT, fanout, "PACKET_FANOUT")?;
    }
    sys::file::set_status_flags(&fd, entry.flags as i32).map_err(file_io(format!("{what}: flags")))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_memberships_and_rings() {
        let mut payload = vec![libc::AF_PACKET as u8, libc::SOCK_DGRAM as u8];
        payload.extend_from_slice(&0x88b5u16.to_ne_bytes());
        payload.extend_from_slice(&4242u32.to_ne_bytes());
        payload.extend_from_slice(&[0; 8]);
        let mut attr = |kind: u16, data: &[u8]| {
            payload.extend_from_slice(&(4 + data.len() as u16).to_ne_bytes());
            payload.extend_from_slice(&kind.to_ne_bytes());
            payload.extend_from_slice(data);
        };
        let info: Vec<u8> = [1u32, 2, 16, 0, 0, PDI_AUXDATA | PDI_LOSS].iter().flat_map(|w| w.to_ne_bytes()).collect();
        attr(0, &info);
        let mut mc = Vec::new();
        mc.extend_from_slice(&1u32.to_ne_bytes());
        mc.extend_from_slice(&2u32.to_ne_bytes());
        mc.extend_from_slice(&1u16.to_ne_bytes());
        mc.extend_from_slice(&6u16.to_ne_bytes());
        mc.extend_from_slice(&[1, 0, 0x5e, 0, 0, 1]);
        mc.extend_from_slice(&[0; 26]);
        attr(1, &mc);
        attr(2, &[0; 28]);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        bytes.extend_from_slice(&20u16.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&payload);
        let sockets = parse_diag(&bytes);
        let s = &sockets[&4242];
        assert_eq!((s.kind, s.protocol, s.info.unwrap()[2], s.rx_ring, s.tx_ring), (libc::SOCK_DGRAM as u8, 0x88b5, 16, true, false));
        assert_eq!(s.mclist, vec![(1, 2, 1, vec![1, 0, 0x5e, 0, 0, 1])]);
    }
}
