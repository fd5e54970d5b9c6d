//! A small synchronous rtnetlink client for the container flavor's network (the VMs
//! have no `ip`): create a bridge and a veth whose inner end goes into a container's
//! network namespace, give links addresses, routes, a master and the UP flag, delete
//! links, and dump the links, addresses and routes of a namespace for the comparison.
//! Messages are built and parsed with netlink-packet-route; the socket is netlink-sys.
//!
//! A socket talks to the network namespace of the thread that opened it: to work on a
//! container's namespace, open it from [`super::sys::in_namespace_of`].

use anyhow::{bail, Context};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::IpAddr;

/// The kernel's local routing table (`ip route show table local`), left out of the
/// comparison: it follows from the addresses.
pub const RT_TABLE_LOCAL: u32 = 255;

/// An rtnetlink socket of one network namespace.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
}

/// A link as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// ifindex.
    pub index: u32,
    /// Name (`eth0`).
    pub name: String,
    /// `IFLA_INFO_KIND` (`veth`, `bridge`), empty for `lo` and physical devices.
    pub kind: String,
    /// `ifi_flags`.
    pub flags: LinkFlags,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, hex with colons.
    pub address: String,
    /// ifindex of the master (bridge), if any.
    pub master: Option<u32>,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> anyhow::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("open rtnetlink socket")?;
        socket.bind_auto().context("bind rtnetlink socket")?;
        socket.connect(&SocketAddr::new(0, 0)).context("connect rtnetlink socket")?;
        Ok(Rtnl { socket, sequence: 0 })
    }

    /// Sends `message` with `flags` | `NLM_F_REQUEST | NLM_F_ACK` and waits for the ack.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16, what: &str) -> anyhow::Result<()> {
        let sequence = self.send(message, flags | NLM_F_ACK)?;
        loop {
            for reply in self.receive()? {
                if reply.header.sequence_number != sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(()),
                        Some(code) => {
                            return Err(std::io::Error::from_raw_os_error(-code.get())).with_context(|| what.to_string())
                        }
                    },
                    NetlinkPayload::Done(_) => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    /// Sends a dump request and collects the replies until `NLMSG_DONE`.
    fn dump(&mut self, message: RouteNetlinkMessage, what: &str) -> anyhow::Result<Vec<RouteNetlinkMessage>> {
        let sequence = self.send(message, NLM_F_DUMP)?;
        let mut found = Vec::new();
        loop {
            for reply in self.receive()? {
                if reply.header.sequence_number != sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => found.push(inner),
                    NetlinkPayload::Done(_) => return Ok(found),
                    NetlinkPayload::Error(error) => {
                        let code = error.code.map_or(0, |code| -code.get());
                        return Err(std::io::Error::from_raw_os_error(code)).with_context(|| what.to_string());
                    }
                    _ => {}
                }
            }
        }
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> anyhow::Result<u32> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0).context("send rtnetlink request")?;
        Ok(self.sequence)
    }

    fn receive(&mut self) -> anyhow::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        let (bytes, _) = self.socket.recv_from_full().context("receive rtnetlink reply")?;
        let mut messages = Vec::new();
        let mut offset = 0;
        while offset + 16 <= bytes.len() {
            let length = u32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            if length < 16 || offset + length > bytes.len() {
                bail!("rtnetlink reply: message of {length} bytes at offset {offset} of {}", bytes.len());
            }
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..offset + length])
                .map_err(|error| anyhow::anyhow!("parse rtnetlink reply: {error}"))?;
            messages.push(message);
            offset += (length + 3) & !3;
        }
        Ok(messages)
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> anyhow::Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), "dump links")?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(&link)),
                _ => None,
            })
            .collect())
    }

    /// ifindex of the link `name`, `None` when there is none.
    pub fn link_index(&mut self, name: &str) -> anyhow::Result<Option<u32>> {
        Ok(self.links()?.into_iter().find(|link| link.name == name).map(|link| link.index))
    }

    /// `ip link add NAME type bridge`.
    pub fn add_bridge(&mut self, name: &str) -> anyhow::Result<u32> {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.to_string()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL, &format!("create bridge {name}"))?;
        self.link_index(name)?.with_context(|| format!("bridge {name} not there after its creation"))
    }

    /// `ip link add HOST_NAME type veth peer name PEER_NAME mtu MTU netns PEER_PID`:
    /// the pair with its first end here and the peer in the network namespace of
    /// process `peer_pid`. Returns the host end's ifindex.
    pub fn add_veth(&mut self, host_name: &str, peer_name: &str, peer_pid: i32, mtu: u32) -> anyhow::Result<u32> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes.push(LinkAttribute::Mtu(mtu));
        peer.attributes.push(LinkAttribute::NetNsPid(u32::try_from(peer_pid).context("peer pid")?));
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(host_name.to_string()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create veth {host_name} with peer {peer_name} in the network namespace of pid {peer_pid}"),
        )?;
        self.link_index(host_name)?.with_context(|| format!("veth {host_name} not there after its creation"))
    }

    /// `ip link set dev INDEX [master MASTER] up`.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> anyhow::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        if let Some(master) = master {
            link.attributes.push(LinkAttribute::Controller(master));
        }
        self.request(RouteNetlinkMessage::SetLink(link), 0, &format!("set link {index} up"))
    }

    /// `ip link del dev INDEX`.
    pub fn delete_link(&mut self, index: u32) -> anyhow::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(link), 0, &format!("delete link {index}"))
    }

    /// `ip addr add ADDRESS/PREFIX dev INDEX [nodad]` (IPv6 addresses get `nodad`, so
    /// they are usable at once).
    pub fn add_address(&mut self, index: u32, address: IpAddr, prefix: u8) -> anyhow::Result<()> {
        let mut message = AddressMessage::default();
        message.header.index = index;
        message.header.prefix_len = prefix;
        message.header.scope = AddressScope::Universe;
        match address {
            IpAddr::V4(_) => {
                message.header.family = AddressFamily::Inet;
                message.attributes.push(AddressAttribute::Local(address));
                message.attributes.push(AddressAttribute::Address(address));
            }
            IpAddr::V6(_) => {
                message.header.family = AddressFamily::Inet6;
                message.attributes.push(AddressAttribute::Address(address));
                message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {address}/{prefix} to link {index}"),
        )
    }

    /// `ip route add default via GATEWAY`.
    pub fn add_default_route(&mut self, gateway: IpAddr) -> anyhow::Result<()> {
        let mut route = RouteMessage::default();
        route.header.address_family = match gateway {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add default route via {gateway}"),
        )
    }

    /// Every address, one line each: `LINK FAMILY ADDRESS/PREFIX scope S flags F`
    /// (the transient DAD flags left out), sorted.
    pub fn address_lines(&mut self) -> anyhow::Result<Vec<String>> {
        let names = self.link_names()?;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()), "dump addresses")?;
        let mut lines: Vec<String> = replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(address) => Some(address_line(&address, &names)),
                _ => None,
            })
            .collect();
        lines.sort();
        Ok(lines)
    }

    /// Every route but the local table's and cloned ones, one line each, sorted.
    pub fn route_lines(&mut self) -> anyhow::Result<Vec<String>> {
        let names = self.link_names()?;
        let mut lines = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            let replies = self.dump(RouteNetlinkMessage::GetRoute(request), "dump routes")?;
            for reply in replies {
                if let RouteNetlinkMessage::NewRoute(route) = reply {
                    if let Some(line) = route_line(&route, &names) {
                        lines.push(line);
                    }
                }
            }
        }
        lines.sort();
        Ok(lines)
    }

    fn link_names(&mut self) -> anyhow::Result<std::collections::BTreeMap<u32, String>> {
        Ok(self.links()?.into_iter().map(|link| (link.index, link.name)).collect())
    }
}

/// The comparison's view of a link message.
pub fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: String::new(),
        flags: message.header.flags,
        mtu: 0,
        address: String::new(),
        master: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(bytes) => link.address = hex_colons(bytes),
            LinkAttribute::Controller(master) => link.master = Some(*master),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = kind.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// `LINK FAMILY ADDRESS/PREFIX scope S flags F [label L]`; the flags a restore cannot
/// keep because the kernel changes them by itself (tentative, optimistic: DAD in
/// progress) are left out, and so is nodad on an IPv6 link-local address: the kernel
/// makes its own (with DAD) when the restored link comes up, and whether that one or
/// crust's copy (nodad: it had passed DAD) lands first is a race (seen 2 times in 4
/// native runs of tree_111, 2026-12-06).
pub fn address_line(message: &AddressMessage, names: &std::collections::BTreeMap<u32, String>) -> String {
    let mut address = None;
    let mut label = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()));
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Local(ip) if address.is_none() => address = Some(*ip),
            AddressAttribute::Label(text) => label = Some(text.clone()),
            AddressAttribute::Flags(all) => flags = *all,
            _ => {}
        }
    }
    flags.remove(AddressFlags::Tentative | AddressFlags::Optimistic);
    if matches!(address, Some(IpAddr::V6(ip)) if ip.segments()[0] & 0xffc0 == 0xfe80) {
        flags.remove(AddressFlags::Nodad);
    }
    let link = names.get(&message.header.index).cloned().unwrap_or_else(|| format!("if{}", message.header.index));
    let address = address.map_or_else(|| "?".to_string(), |ip| ip.to_string());
    let mut line = format!(
        "{link} {:?} {address}/{} scope {:?} flags {:#x}",
        message.header.family,
        message.header.prefix_len,
        message.header.scope,
        flags.bits()
    );
    if let Some(label) = label {
        line.push_str(&format!(" label {label}"));
    }
    line
}

/// `table T DST/PREFIX via GW dev LINK proto P scope S type T metric M`, or `None` for
/// a route of the local table or a cloned one.
pub fn route_line(message: &RouteMessage, names: &std::collections::BTreeMap<u32, String>) -> Option<String> {
    let mut table = u32::from(message.header.table);
    let mut destination = None;
    let mut gateway = None;
    let mut device = None;
    let mut metric = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(id) => table = *id,
            RouteAttribute::Destination(address) => destination = Some(route_address(address)),
            RouteAttribute::Gateway(address) => gateway = Some(route_address(address)),
            RouteAttribute::Oif(index) => device = Some(names.get(index).cloned().unwrap_or_else(|| format!("if{index}"))),
            RouteAttribute::Priority(priority) => metric = *priority,
            _ => {}
        }
    }
    if table == RT_TABLE_LOCAL || message.header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let destination = destination.unwrap_or_else(|| "default".into());
    Some(format!(
        "{:?} table {table} {destination}/{} via {} dev {} proto {:?} scope {:?} type {:?} metric {metric}",
        message.header.address_family,
        message.header.destination_prefix_length,
        gateway.as_deref().unwrap_or("-"),
        device.as_deref().unwrap_or("-"),
        message.header.protocol,
        message.header.scope,
        message.header.kind,
    ))
}

fn route_address(address: &RouteAddress) -> String {
    match address {
        RouteAddress::Inet(ip) => ip.to_string(),
        RouteAddress::Inet6(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex_colons(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn addresses_drop_the_transient_dad_flags() {
        let names: BTreeMap<u32, String> = [(2, "eth0".to_string())].into();
        let mut message = AddressMessage::default();
        message.header.index = 2;
        message.header.family = AddressFamily::Inet6;
        message.header.prefix_len = 64;
        message.attributes.push(AddressAttribute::Address("fdcc::2".parse().unwrap()));
        message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad | AddressFlags::Permanent));
        let settled = address_line(&message, &names);
        message.attributes[1] = AddressAttribute::Flags(AddressFlags::Nodad | AddressFlags::Permanent | AddressFlags::Tentative);
        assert_eq!(address_line(&message, &names), settled);
        assert!(settled.starts_with("eth0 Inet6 fdcc::2/64 scope Universe flags 0x82"), "{settled}");
        // A link-local address, the kernel's (DAD passed) or crust's copy (nodad).
        message.attributes[0] = AddressAttribute::Address("fe80::1".parse().unwrap());
        message.attributes[1] = AddressAttribute::Flags(AddressFlags::Permanent);
        let kernel_s = address_line(&message, &names);
        message.attributes[1] = AddressAttribute::Flags(AddressFlags::Nodad | AddressFlags::Permanent);
        assert_eq!(address_line(&message, &names), kernel_s);
        assert!(kernel_s.starts_with("eth0 Inet6 fe80::1/64 scope Universe flags 0x80"), "{kernel_s}");
    }

    #[test]
    fn local_table_and_cloned_routes_are_left_out() {
        let names: BTreeMap<u32, String> = [(2, "eth0".to_string())].into();
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.kind = RouteType::Unicast;
        route.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet("198.18.0.1".parse().unwrap())));
        route.attributes.push(RouteAttribute::Oif(2));
        let line = route_line(&route, &names).expect("main table");
        assert!(line.starts_with("Inet table 254 default/0 via 198.18.0.1 dev eth0"), "{line}");
        route.attributes.push(RouteAttribute::Table(RT_TABLE_LOCAL));
        assert_eq!(route_line(&route, &names), None);
    }
}
