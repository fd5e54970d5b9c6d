//! Links of a network namespace (`netdev-N.img`): loopback and veth pairs. Dump: one
//! RTM_GETLINK dump; a veth's peer is either in the same namespace (both ends dumped)
//! or in crust's own namespace (its host end, external: named on restore with
//! `--external veth[IF]:NAME[@BRIDGE]`); any other link kind, or a peer in a third
//! namespace, is refused by name. Restore: the veth is created from inside the new
//! namespace with its dumped ifindex, name, MTU and MAC, its peer created in crust's
//! namespace (`IFLA_NET_NS_FD` inside `VETH_INFO_PEER`), enslaved to a bridge when
//! asked, and set up like the inner end; flags come last (`set_flags`).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use crust_images::iproute::netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use crust_images::iproute::netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage};
use crust_images::iproute::netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use crust_images::iproute::netlink_packet_route::RouteNetlinkMessage;
use crust_images::pb;

use super::netlink::Netlink;
use super::NetError;

/// Interface flags a restore sets (the ones `dev_change_flags` takes from user space).
const SETTABLE_FLAGS: u32 = (libc::IFF_UP | libc::IFF_DEBUG | libc::IFF_NOARP | libc::IFF_PROMISC | libc::IFF_ALLMULTI | libc::IFF_MULTICAST | libc::IFF_DYNAMIC) as u32;

/// Where the host end of a veth goes on restore: its name and the bridge it joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostEnd {
    /// The name in crust's namespace; `None`: the kernel names it.
    pub name: Option<String>,
    /// A bridge of crust's namespace the host end is enslaved to.
    pub bridge: Option<String>,
}

impl HostEnd {
    /// Parses CRIU's `OUT[@BRIDGE]`.
    pub fn parse(text: &str) -> HostEnd {
        match text.split_once('@') {
            Some((name, bridge)) => HostEnd { name: Some(name.to_string()).filter(|n| !n.is_empty()), bridge: Some(bridge.to_string()).filter(|b| !b.is_empty()) },
            None => HostEnd { name: Some(text.to_string()).filter(|n| !n.is_empty()), bridge: None },
        }
    }
}

/// The nsid the namespace of `inside` gives the namespace `other` (-1: none).
#[doc(alias = "RTM_GETNSID")]
pub(crate) fn nsid_of(inside: &mut Netlink, other: BorrowedFd<'_>) -> Result<i32, NetError> {
    let mut request = NsidMessage::default();
    request.attributes.push(NsidAttribute::Fd(other.as_raw_fd() as u32));
    match inside.query("RTM_GETNSID", RouteNetlinkMessage::GetNsId(request))? {
        RouteNetlinkMessage::NewNsId(reply) => Ok(reply.attributes.iter().find_map(|a| if let NsidAttribute::Id(id) = a { Some(*id) } else { None }).unwrap_or(-1)),
        other => Err(NetError::refused(format!("RTM_GETNSID: unexpected reply {:?}", other.message_type()))),
    }
}

/// Every link of the namespace of `inside`, as netdev entries without their sysctls.
/// `ns_id` is the namespace's id in the images; `crust` is crust's own namespace (a
/// veth's peer there is the external host end).
pub(crate) fn dump_links(inside: &mut Netlink, ns_id: u32, crust: BorrowedFd<'_>) -> Result<Vec<pb::NetDeviceEntry>, NetError> {
    let links = inside.dump("RTM_GETLINK", RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    // After the dump: listing a veth gives its peer's namespace an nsid here.
    let crust_nsid = nsid_of(inside, crust)?;
    let mut out = Vec::new();
    for (_, message) in links {
        let RouteNetlinkMessage::NewLink(link) = message else { continue };
        out.push(entry_of(&link, ns_id, crust_nsid)?);
    }
    Ok(out)
}

/// The netdev entry of one dumped link. Pure.
pub(crate) fn entry_of(link: &LinkMessage, ns_id: u32, crust_nsid: i32) -> Result<pb::NetDeviceEntry, NetError> {
    let mut name = String::new();
    let (mut mtu, mut address, mut peer_ifindex, mut peer_nsid, mut master, mut kind) = (0, None, None, None, None, None);
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::Address(a) => address = Some(a.clone()),
            LinkAttribute::Link(index) => peer_ifindex = Some(*index),
            LinkAttribute::LinkNetNsId(id) => peer_nsid = Some(*id),
            LinkAttribute::Controller(index) => master = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                kind = infos.iter().find_map(|i| if let LinkInfo::Kind(k) = i { Some(k.clone()) } else { None });
            }
            _ => {}
        }
    }
    let index = link.header.index;
    let mut entry = pb::NetDeviceEntry { ifindex: index, mtu, flags: link.header.flags.bits(), name: name.clone(), ..Default::default() };
    if link.header.link_layer_type == LinkLayerType::Loopback {
        entry.r#type = pb::NdType::Loopback as i32;
        return Ok(entry);
    }
    match kind {
        Some(InfoKind::Veth) => {
            entry.r#type = pb::NdType::Veth as i32;
            entry.address = address;
            entry.master = master;
            entry.peer_ifindex = peer_ifindex;
            match peer_nsid {
                // Both ends are in this namespace: both are dumped.
                None => entry.peer_nsid = Some(ns_id),
                // The host end, in crust's namespace: external.
                Some(id) if id >= 0 && id == crust_nsid => {}
                Some(_) => {
                    return Err(NetError::refused(format!(
                        "veth {name}'s peer is in a network namespace that is neither crust's nor dumped (a veth is dumped with its peer in crust's namespace, or with both ends inside)"
                    )))
                }
            }
            if master.is_some() {
                return Err(NetError::refused(format!("veth {name} is enslaved to a device of the namespace (bridges and bonds are not dumped)")));
            }
            Ok(entry)
        }
        Some(other) => Err(NetError::refused(format!("link {name} (ifindex {index}) is a {other} device: crust dumps only loopback and veth links"))),
        None => Err(NetError::refused(format!(
            "link {name} (ifindex {index}, hardware type {:?}) is not a virtual device crust can make again (only loopback and veth)",
            link.header.link_layer_type
        ))),
    }
}

/// A veth host end made by a restore: its ifindex and name in crust's namespace.
#[derive(Clone, Debug)]
pub(crate) struct MadeHostEnd {
    pub(crate) inner: String,
    pub(crate) name: String,
}

/// Creates every link of `entries` in the namespace of `inside` (loopback exists
/// already), down; `host` is a socket in crust's namespace, `crust` that namespace,
/// `host_ends` the names and bridges asked for by the inner end's name.
pub(crate) fn restore_links(
    inside: &mut Netlink,
    host: &mut Netlink,
    crust: BorrowedFd<'_>,
    entries: &[pb::NetDeviceEntry],
    ns_id: u32,
    host_ends: &BTreeMap<String, HostEnd>,
) -> Result<Vec<MadeHostEnd>, NetError> {
    let mut made = Vec::new();
    let by_index: BTreeMap<u32, &pb::NetDeviceEntry> = entries.iter().map(|e| (e.ifindex, e)).collect();
    for entry in entries {
        match pb::NdType::try_from(entry.r#type) {
            Ok(pb::NdType::Loopback) => {
                set_link(inside, entry.ifindex, &format!("loopback {}", entry.name), vec![LinkAttribute::Mtu(entry.mtu)])?;
            }
            Ok(pb::NdType::Veth) if entry.peer_nsid == Some(ns_id) => {
                // Both ends inside: the one with the lower index makes the pair.
                let peer_index = entry.peer_ifindex.unwrap_or(0);
                if peer_index < entry.ifindex && by_index.contains_key(&peer_index) {
                    continue;
                }
                let peer = by_index.get(&peer_index).ok_or_else(|| {
                    NetError::bad_image("netdev", format!("veth {} names its peer ifindex {peer_index} in the same namespace, which has no such link", entry.name))
                })?;
                let mut peer_message = LinkMessage::default();
                peer_message.header.index = peer.ifindex;
                peer_message.attributes = link_attributes(peer);
                create_veth(inside, entry, peer_message)?;
            }
            Ok(pb::NdType::Veth) => {
                if entry.peer_nsid.is_some() {
                    return Err(NetError::bad_image(
                        "netdev",
                        format!("veth {}'s peer is in another dumped network namespace (peer_nsid {:?}); crust restores one namespace", entry.name, entry.peer_nsid),
                    ));
                }
                let wanted = host_ends.get(&entry.name).cloned().unwrap_or_default();
                let mut peer_message = LinkMessage::default();
                if let Some(name) = &wanted.name {
                    peer_message.attributes.push(LinkAttribute::IfName(name.clone()));
                }
                peer_message.attributes.push(LinkAttribute::Mtu(entry.mtu));
                peer_message.attributes.push(LinkAttribute::NetNsFd(crust.as_raw_fd()));
                create_veth(inside, entry, peer_message).map_err(|error| match (&wanted.name, error.errno()) {
                    (Some(name), Some(libc::EEXIST)) => NetError::refused(format!("veth {}: its host end {name} exists already in crust's network namespace", entry.name)),
                    _ => error,
                })?;
                let name = host_end_name(inside, host, entry)?;
                let host_index = index_of(host, &name)?;
                if wanted.name.is_none() {
                    log::warn!("veth {}: its host end is named {name} by the kernel (name it with --external veth[{}]:NAME or --veth-pair {}=NAME)", entry.name, entry.name, entry.name);
                }
                if let Some(bridge) = &wanted.bridge {
                    let bridge_index = index_of(host, bridge).map_err(|_| NetError::refused(format!("veth {}: bridge {bridge} not found in crust's network namespace", entry.name)))?;
                    set_link(host, host_index, &format!("host end {name} of veth {}", entry.name), vec![LinkAttribute::Controller(bridge_index)])?;
                }
                if entry.flags & libc::IFF_UP as u32 != 0 {
                    set_flags(host, host_index, &name, libc::IFF_UP as u32, libc::IFF_UP as u32)?;
                }
                log::info!("veth {}: host end {name}{}", entry.name, wanted.bridge.as_ref().map(|b| format!(" on bridge {b}")).unwrap_or_default());
                made.push(MadeHostEnd { inner: entry.name.clone(), name });
            }
            _ => {
                return Err(NetError::bad_image(
                    "netdev",
                    format!("link {} is of type {} (nd_type): crust restores only loopback and veth links", entry.name, entry.r#type),
                ))
            }
        }
    }
    Ok(made)
}

/// Sets every link's flags (UP last of all link settings, so routes can be added).
pub(crate) fn set_all_flags(inside: &mut Netlink, entries: &[pb::NetDeviceEntry]) -> Result<(), NetError> {
    for entry in entries {
        set_flags(inside, entry.ifindex, &entry.name, entry.flags, SETTABLE_FLAGS)?;
    }
    Ok(())
}

/// Name, MTU and MAC of a link to create.
fn link_attributes(entry: &pb::NetDeviceEntry) -> Vec<LinkAttribute> {
    let mut attributes = vec![LinkAttribute::IfName(entry.name.clone()), LinkAttribute::Mtu(entry.mtu)];
    if let Some(address) = entry.address.as_ref().filter(|a| !a.is_empty()) {
        attributes.push(LinkAttribute::Address(address.clone()));
    }
    attributes
}

/// RTM_NEWLINK (create, exclusive) of veth `entry` with its dumped ifindex, and `peer`.
#[doc(alias = "RTM_NEWLINK")]
fn create_veth(inside: &mut Netlink, entry: &pb::NetDeviceEntry, peer: LinkMessage) -> Result<(), NetError> {
    let mut link = LinkMessage::default();
    link.header.index = entry.ifindex;
    link.attributes = link_attributes(entry);
    link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]));
    inside.request(&format!("create veth {} (ifindex {})", entry.name, entry.ifindex), RouteNetlinkMessage::NewLink(link), NLM_F_CREATE | NLM_F_EXCL)
}

/// RTM_NEWLINK (change) of link `index` with `attributes`.
fn set_link(socket: &mut Netlink, index: u32, what: &str, attributes: Vec<LinkAttribute>) -> Result<(), NetError> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.attributes = attributes;
    socket.request(&format!("set {what}"), RouteNetlinkMessage::NewLink(link), 0)
}

/// Sets the flags of link `index` under `mask` (at most the user-settable ones) to
/// those of `flags`.
fn set_flags(socket: &mut Netlink, index: u32, name: &str, flags: u32, mask: u32) -> Result<(), NetError> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.header.flags = LinkFlags::from_bits_retain(flags & mask & SETTABLE_FLAGS);
    link.header.change_mask = LinkFlags::from_bits_retain(mask & SETTABLE_FLAGS);
    socket.request(&format!("set the flags of {name} to {flags:#x}"), RouteNetlinkMessage::NewLink(link), 0)
}

/// The ifindex of link `name` in the namespace of `socket`.
fn index_of(socket: &mut Netlink, name: &str) -> Result<u32, NetError> {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(name.to_string()));
    match socket.query(&format!("find link {name}"), RouteNetlinkMessage::GetLink(link))? {
        RouteNetlinkMessage::NewLink(found) => Ok(found.header.index),
        _ => Err(NetError::refused(format!("find link {name}: unexpected reply"))),
    }
}

/// The name of the host end of veth `entry`, just created: its index from the inner
/// end's IFLA_LINK, its name from crust's namespace.
fn host_end_name(inside: &mut Netlink, host: &mut Netlink, entry: &pb::NetDeviceEntry) -> Result<String, NetError> {
    let mut link = LinkMessage::default();
    link.header.index = entry.ifindex;
    let RouteNetlinkMessage::NewLink(inner) = inside.query(&format!("read veth {}", entry.name), RouteNetlinkMessage::GetLink(link))? else {
        return Err(NetError::refused(format!("read veth {}: unexpected reply", entry.name)));
    };
    let peer = inner.attributes.iter().find_map(|a| if let LinkAttribute::Link(i) = a { Some(*i) } else { None });
    let peer = peer.ok_or_else(|| NetError::refused(format!("veth {}: the kernel does not say where its peer is", entry.name)))?;
    let mut link = LinkMessage::default();
    link.header.index = peer;
    let RouteNetlinkMessage::NewLink(outer) = host.query(&format!("read the host end of veth {}", entry.name), RouteNetlinkMessage::GetLink(link))? else {
        return Err(NetError::refused(format!("read the host end of veth {}: unexpected reply", entry.name)));
    };
    outer
        .attributes
        .iter()
        .find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })
        .ok_or_else(|| NetError::refused(format!("veth {}: its host end has no name", entry.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, layer: LinkLayerType, extra: Vec<LinkAttribute>) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.link_layer_type = layer;
        link.header.flags = LinkFlags::from_bits_retain(0x11043);
        link.attributes = vec![LinkAttribute::IfName(name.into()), LinkAttribute::Mtu(1400)];
        link.attributes.extend(extra);
        link
    }

    fn veth() -> LinkAttribute {
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)])
    }

    #[test]
    fn loopback_and_a_veth_to_crusts_namespace_are_dumped() {
        let lo = entry_of(&link(1, "lo", LinkLayerType::Loopback, vec![LinkAttribute::Address(vec![0; 6])]), 10, 0).expect("lo");
        assert_eq!((lo.r#type, lo.ifindex, lo.address.clone()), (pb::NdType::Loopback as i32, 1, None));
        let mac = vec![2, 0, 0, 0, 0xc0, 1];
        let eth0 = entry_of(
            &link(2, "eth0", LinkLayerType::Ether, vec![veth(), LinkAttribute::Address(mac.clone()), LinkAttribute::Link(11), LinkAttribute::LinkNetNsId(0)]),
            10,
            0,
        )
        .expect("eth0");
        assert_eq!(eth0.r#type, pb::NdType::Veth as i32);
        assert_eq!((eth0.mtu, eth0.flags, eth0.address, eth0.peer_ifindex, eth0.peer_nsid), (1400, 0x11043, Some(mac), Some(11), None));
    }

    #[test]
    fn a_pair_inside_names_its_own_namespace() {
        let a = entry_of(&link(3, "a", LinkLayerType::Ether, vec![veth(), LinkAttribute::Link(4)]), 10, 0).expect("a");
        assert_eq!((a.peer_ifindex, a.peer_nsid), (Some(4), Some(10)));
    }

    #[test]
    fn other_peers_and_kinds_are_refused_by_name() {
        let error = entry_of(&link(2, "eth0", LinkLayerType::Ether, vec![veth(), LinkAttribute::Link(11), LinkAttribute::LinkNetNsId(1)]), 10, 0).unwrap_err();
        assert_eq!(error.to_string(), "veth eth0's peer is in a network namespace that is neither crust's nor dumped (a veth is dumped with its peer in crust's namespace, or with both ends inside)");
        let bridge = LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]);
        let error = entry_of(&link(5, "br0", LinkLayerType::Ether, vec![bridge]), 10, 0).unwrap_err();
        assert_eq!(error.to_string(), "link br0 (ifindex 5) is a bridge device: crust dumps only loopback and veth links");
        let error = entry_of(&link(6, "eth1", LinkLayerType::Ether, vec![]), 10, 0).unwrap_err();
        assert!(error.to_string().starts_with("link eth1 (ifindex 6, hardware type Ether) is not a virtual device"), "{error}");
    }

    #[test]
    fn host_ends_parse_as_criu_writes_them() {
        assert_eq!(HostEnd::parse("veth0@br0"), HostEnd { name: Some("veth0".into()), bridge: Some("br0".into()) });
        assert_eq!(HostEnd::parse("veth0"), HostEnd { name: Some("veth0".into()), bridge: None });
        assert_eq!(HostEnd::parse("@br0"), HostEnd { name: None, bridge: Some("br0".into()) });
    }
}
