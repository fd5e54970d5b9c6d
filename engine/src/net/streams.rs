//! Addresses, routes and rules of a network namespace (`ifaddr-N`, `route-N`,
//! `route6-N`, `rule-N`): the kernel's dump replies kept byte for byte in iproute2's
//! save streams (what `ip addr/route/rule save` write, so `ip ... restore` and CRIU read
//! them), and replayed as requests on restore, as `ip ... restore` does.
//!
//! Dump keeps every address; routes of every table but `local` (the kernel makes those
//! from the addresses) and no cached clones (CRIU keeps the `main` table only, and
//! loses routes of other tables that its own rules point to); every rule. Restore sends
//! each message back with `NLM_F_CREATE | NLM_F_EXCL` and takes `EEXIST` as done: the
//! kernel has made some of them itself (loopback's addresses, the routes of an
//! address's prefix, the three default rules). An IPv6 address that had passed
//! duplicate address detection gets `IFA_F_NODAD`, so that it is usable at once (a
//! socket bound to it is restored right after).

use crust_images::iproute::{SaveStream, SaveStreamKind};
use crust_images::iproute::netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};

use super::netlink::{self, Netlink, HEADER_LEN};
use super::NetError;

/// `RTM_GETADDR`, `RTM_GETROUTE`, `RTM_GETRULE`.
const RTM_GETADDR: u16 = 22;
const RTM_GETROUTE: u16 = 26;
const RTM_GETRULE: u16 = 34;
/// `RTM_NEWRULE`, `RTM_DELRULE`.
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
/// `RT_TABLE_LOCAL`: routes the kernel derives from the addresses.
const RT_TABLE_LOCAL: u32 = 255;
/// `RTA_TABLE`: the table of a route when it does not fit `rtm_table`.
const RTA_TABLE: u16 = 15;
/// `RTM_F_CLONED`: a cached clone, not a route anyone added.
const RTM_F_CLONED: u32 = 0x200;
/// `sizeof(struct ifaddrmsg)`, `sizeof(struct rtmsg)`, `sizeof(struct fib_rule_hdr)`.
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;
const FIB_RULE_HDR_LEN: usize = 12;
/// `IFA_FLAGS`: the 32-bit address flags.
const IFA_FLAGS: u16 = 8;
/// `IFA_F_NODAD`, `IFA_F_TENTATIVE`, `IFA_F_DADFAILED`.
const IFA_F_NODAD: u32 = 0x02;
const IFA_F_TENTATIVE: u32 = 0x40;
const IFA_F_DADFAILED: u32 = 0x08;

/// Which save stream and, for routes, which family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// `ifaddr-N`: every address of both families.
    Addresses,
    /// `route-N` (IPv4) or `route6-N` (IPv6).
    Routes { family: u8 },
    /// `rule-N`: the rules of both families.
    Rules,
}

impl Stream {
    /// The four streams of a namespace, in the order they are restored.
    pub(crate) const ALL: [Stream; 4] =
        [Stream::Addresses, Stream::Routes { family: libc::AF_INET as u8 }, Stream::Routes { family: libc::AF_INET6 as u8 }, Stream::Rules];

    fn kind(self) -> SaveStreamKind {
        match self {
            Stream::Addresses => SaveStreamKind::Addresses,
            Stream::Routes { .. } => SaveStreamKind::Routes,
            Stream::Rules => SaveStreamKind::Rules,
        }
    }

    /// How logs and errors name it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Stream::Addresses => "addresses",
            Stream::Routes { family } if family == libc::AF_INET6 as u8 => "IPv6 routes",
            Stream::Routes { .. } => "IPv4 routes",
            Stream::Rules => "rules",
        }
    }

    /// The dump request: the message type and its family header.
    fn request(self) -> Vec<u8> {
        match self {
            Stream::Addresses => netlink::message(RTM_GETADDR, 0, &[0u8; IFADDRMSG_LEN]),
            Stream::Routes { family } => {
                let mut header = [0u8; RTMSG_LEN];
                header[0] = family;
                netlink::message(RTM_GETROUTE, 0, &header)
            }
            Stream::Rules => netlink::message(RTM_GETRULE, 0, &[0u8; FIB_RULE_HDR_LEN]),
        }
    }

    /// Whether the dump keeps this reply (whole message). Pure.
    pub(crate) fn keeps(self, message: &[u8]) -> bool {
        let Some(payload) = message.get(HEADER_LEN..) else { return false };
        match self {
            Stream::Routes { .. } => {
                if payload.len() < RTMSG_LEN {
                    return false;
                }
                let flags = u32::from_ne_bytes(payload[8..12].try_into().expect("4 bytes"));
                route_table(payload) != RT_TABLE_LOCAL && flags & RTM_F_CLONED == 0
            }
            Stream::Addresses | Stream::Rules => true,
        }
    }
}

/// The table of a route message's payload (`RTA_TABLE` if present, else `rtm_table`).
fn route_table(payload: &[u8]) -> u32 {
    let table = netlink::attributes(&payload[RTMSG_LEN..])
        .into_iter()
        .find_map(|(kind, value)| (kind == RTA_TABLE && value.len() >= 4).then(|| u32::from_ne_bytes(value[..4].try_into().expect("4 bytes"))));
    table.unwrap_or(payload[4] as u32)
}

/// Dumps one stream of the namespace of `inside`.
pub(crate) fn dump(inside: &mut Netlink, stream: Stream) -> Result<SaveStream, NetError> {
    let replies = inside.dump_bytes(&format!("dump the {}", stream.describe()), stream.request())?;
    let mut out = SaveStream::new(stream.kind());
    for reply in replies.iter().filter(|reply| reply.message_type == stream.kind().message_type()) {
        if !stream.keeps(&reply.bytes) {
            continue;
        }
        out.push_raw(&reply.bytes).map_err(|error| NetError::refused(format!("dump the {}: {error}", stream.describe())))?;
    }
    Ok(out)
}

/// The request that puts `message` (a saved reply) back: create, exclusive; IPv6
/// addresses that had passed DAD get `IFA_F_NODAD`. Pure.
pub(crate) fn replay_request(stream: Stream, message: &[u8]) -> Vec<u8> {
    let mut bytes = message.to_vec();
    bytes[6..8].copy_from_slice(&(NLM_F_CREATE | NLM_F_EXCL).to_ne_bytes());
    if stream == Stream::Addresses && bytes.len() >= HEADER_LEN + IFADDRMSG_LEN && bytes[HEADER_LEN] == libc::AF_INET6 as u8 {
        let short_flags = bytes[HEADER_LEN + 2] as u32;
        let mut flags = short_flags;
        let mut flags_at = None;
        let mut at = HEADER_LEN + IFADDRMSG_LEN;
        while at + 4 <= bytes.len() {
            let len = u16::from_ne_bytes([bytes[at], bytes[at + 1]]) as usize;
            let kind = u16::from_ne_bytes([bytes[at + 2], bytes[at + 3]]) & 0x3fff;
            if len < 4 || at + len > bytes.len() {
                break;
            }
            if kind == IFA_FLAGS && len >= 8 {
                flags = u32::from_ne_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
                flags_at = Some(at + 4);
            }
            at += (len + 3) & !3;
        }
        if flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0 {
            let flags = flags | IFA_F_NODAD;
            bytes[HEADER_LEN + 2] = (short_flags | IFA_F_NODAD) as u8;
            match flags_at {
                Some(at) => bytes[at..at + 4].copy_from_slice(&flags.to_ne_bytes()),
                None => {
                    while bytes.len() % 4 != 0 {
                        bytes.push(0);
                    }
                    netlink::push_attribute(&mut bytes, IFA_FLAGS, &flags.to_ne_bytes());
                    let len = bytes.len() as u32;
                    bytes[0..4].copy_from_slice(&len.to_ne_bytes());
                }
            }
        }
    }
    bytes
}

/// Puts every message of `saved` back into the namespace of `inside`; returns how many
/// were made and how many existed already. Rules replace the namespace's own: a rule
/// saved without a priority (the `local` rule, 0) would otherwise be added again
/// below the first one (CRIU flushes them for the same reason).
pub(crate) fn restore(inside: &mut Netlink, stream: Stream, saved: &SaveStream, image: &str) -> Result<(usize, usize), NetError> {
    let (mut made, mut existed) = (0, 0);
    if stream == Stream::Rules {
        for rule in inside.dump_bytes("dump the new namespace's rules", stream.request())? {
            if rule.message_type != RTM_NEWRULE {
                continue;
            }
            let mut request = rule.bytes.clone();
            request[4..6].copy_from_slice(&RTM_DELRULE.to_ne_bytes());
            request[6..8].copy_from_slice(&0u16.to_ne_bytes());
            inside.request_bytes("delete a rule of the new namespace", request)?;
        }
    }
    for (index, message) in saved.messages().iter().enumerate() {
        let request = replay_request(stream, message.bytes());
        match inside.request_bytes(&format!("{image}: message {index} ({})", stream.describe()), request) {
            Ok(()) => made += 1,
            Err(error) if error.errno() == Some(libc::EEXIST) => existed += 1,
            Err(error) => return Err(error),
        }
    }
    Ok((made, existed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(table: u8, rta_table: Option<u32>, flags: u32) -> Vec<u8> {
        let mut payload = vec![libc::AF_INET as u8, 24, 0, 0, table, 2, 0, 1];
        payload.extend_from_slice(&flags.to_ne_bytes());
        if let Some(t) = rta_table {
            netlink::push_attribute(&mut payload, RTA_TABLE, &t.to_ne_bytes());
        }
        netlink::message(24, 2, &payload)
    }

    #[test]
    fn routes_of_the_local_table_and_clones_are_left_out() {
        let stream = Stream::Routes { family: libc::AF_INET as u8 };
        assert!(stream.keeps(&route(254, Some(254), 0)));
        assert!(stream.keeps(&route(100, Some(100), 0)));
        assert!(stream.keeps(&route(252, Some(1000), 0)), "RTA_TABLE wins over rtm_table");
        assert!(!stream.keeps(&route(255, Some(255), 0)));
        assert!(!stream.keeps(&route(255, None, 0)));
        assert!(!stream.keeps(&route(254, None, RTM_F_CLONED)));
        assert!(!stream.keeps(&route(254, None, 0)[..20]), "a short message is not kept");
    }

    fn address(family: u8, short: u8, long: Option<u32>) -> Vec<u8> {
        let mut payload = vec![family, 64, short, 0, 2, 0, 0, 0];
        netlink::push_attribute(&mut payload, 1, &[0xfd; 16]);
        if let Some(flags) = long {
            netlink::push_attribute(&mut payload, IFA_FLAGS, &flags.to_ne_bytes());
        }
        netlink::message(20, 2, &payload)
    }

    #[test]
    fn replayed_ipv6_addresses_skip_dad_unless_they_were_tentative() {
        let stream = Stream::Addresses;
        let replayed = replay_request(stream, &address(libc::AF_INET6 as u8, 0x80, Some(0x80)));
        assert_eq!(u16::from_ne_bytes([replayed[6], replayed[7]]), NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(replayed[HEADER_LEN + 2], 0x82);
        assert_eq!(&replayed[replayed.len() - 4..], &0x82u32.to_ne_bytes());
        // Without IFA_FLAGS: one is added and the length follows.
        let replayed = replay_request(stream, &address(libc::AF_INET6 as u8, 0x80, None));
        assert_eq!(u32::from_ne_bytes(replayed[0..4].try_into().unwrap()) as usize, replayed.len());
        let mut attribute = Vec::new();
        netlink::push_attribute(&mut attribute, IFA_FLAGS, &0x82u32.to_ne_bytes());
        assert_eq!(&replayed[replayed.len() - 8..], &attribute[..]);
        // Tentative: DAD runs again. IPv4: untouched but the flags of the request.
        let tentative = address(libc::AF_INET6 as u8, 0x40, Some(0x40));
        assert_eq!(replay_request(stream, &tentative)[HEADER_LEN..], tentative[HEADER_LEN..]);
        let v4 = address(libc::AF_INET as u8, 0x80, Some(0x80));
        assert_eq!(replay_request(stream, &v4)[8..], v4[8..]);
    }
}
