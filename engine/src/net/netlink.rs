//! A small synchronous netlink client: one socket (netlink-sys) in the network
//! namespace it was opened in, requests with an acknowledgement, and dumps. rtnetlink
//! messages are built and read with netlink-packet-route (the versions `crust_images`
//! re-exports, so the images' save streams and the live dumps are the same types);
//! other messages are bytes built by their modules (`streams.rs`). Every
//! reply is also kept as the kernel's bytes, which is what the iproute2 save streams
//! store.

use std::io;

use crust_images::iproute::netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crust_images::iproute::netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols, Socket, SocketAddr};

use super::NetError;

/// `NLMSG_ERROR` (an error or, with code 0, an acknowledgement).
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
/// Netlink message header length.
pub(crate) const HEADER_LEN: usize = 16;

/// An open netlink socket of one protocol, in the network namespace of the thread that
/// opened it.
pub(crate) struct Netlink {
    socket: Socket,
    next_sequence: u32,
}

/// One message of a reply: its type, flags and the payload after the header, and the
/// whole message's bytes.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) message_type: u16,
    pub(crate) bytes: Vec<u8>,
}

impl Reply {
    /// What follows the netlink header.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

impl Netlink {
    /// An rtnetlink socket (`NETLINK_ROUTE`) in the calling thread's network namespace.
    pub(crate) fn route() -> io::Result<Netlink> {
        Netlink::open(protocols::NETLINK_ROUTE)
    }

    fn open(protocol: isize) -> io::Result<Netlink> {
        let mut socket = Socket::new(protocol)?;
        // Bound, so that the kernel knows the socket by a port id (nftables tables owned
        // by the socket need one); connected to the kernel.
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Dumps of a busy namespace can be large; the kernel's replies must not be lost.
        let _ = socket.set_rx_buf_sz(1 << 20);
        let _ = socket.set_ext_ack(true);
        Ok(Netlink { socket, next_sequence: 1 })
    }

    fn sequence(&mut self) -> u32 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1).max(1);
        sequence
    }

    /// Sends `messages` (each a whole netlink message; their sequence numbers are set
    /// here) in one datagram and waits for the acknowledgement of every one that asks
    /// for it (`NLM_F_ACK`). The first error wins; the others are still read, so the
    /// socket stays in step. `what` names the request in errors.
    pub(crate) fn transact(&mut self, what: &str, mut messages: Vec<Vec<u8>>) -> Result<(), NetError> {
        let mut awaited = Vec::new();
        let mut datagram = Vec::new();
        for message in &mut messages {
            let sequence = self.sequence();
            message[8..12].copy_from_slice(&sequence.to_ne_bytes());
            let flags = u16::from_ne_bytes([message[6], message[7]]);
            if flags & NLM_F_ACK != 0 {
                awaited.push(sequence);
            }
            pad_to_4(&mut datagram);
            datagram.extend_from_slice(message);
        }
        self.socket.send(&datagram, 0).map_err(|source| NetError::io(format!("{what}: send"), source))?;
        let mut first_error = None;
        while !awaited.is_empty() {
            for reply in self.receive(what)? {
                if reply.message_type != NLMSG_ERROR {
                    continue;
                }
                let sequence = u32::from_ne_bytes(reply.bytes[8..12].try_into().expect("4 bytes"));
                awaited.retain(|&s| s != sequence);
                let code = error_code(&reply);
                if code != 0 && first_error.is_none() {
                    first_error = Some(io::Error::from_raw_os_error(-code));
                }
            }
        }
        match first_error {
            Some(source) => Err(NetError::Netlink { what: what.to_string(), source }),
            None => Ok(()),
        }
    }

    /// Sends one request (a whole message) with `NLM_F_REQUEST | NLM_F_ACK` added and
    /// waits for its acknowledgement.
    pub(crate) fn request_bytes(&mut self, what: &str, mut message: Vec<u8>) -> Result<(), NetError> {
        let flags = u16::from_ne_bytes([message[6], message[7]]) | NLM_F_REQUEST | NLM_F_ACK;
        message[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.transact(what, vec![message])
    }

    /// Sends an rtnetlink request with `flags` (besides REQUEST and ACK) and waits for
    /// its acknowledgement.
    pub(crate) fn request(&mut self, what: &str, message: RouteNetlinkMessage, flags: u16) -> Result<(), NetError> {
        let mut message = NetlinkMessage::from(message);
        message.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        message.finalize();
        let mut bytes = vec![0u8; message.buffer_len()];
        message.serialize(&mut bytes);
        self.transact(what, vec![bytes])
    }

    /// Dumps: sends `message` (whole, `NLM_F_REQUEST | NLM_F_DUMP` set here) and
    /// returns every reply message until `NLMSG_DONE`.
    pub(crate) fn dump_bytes(&mut self, what: &str, mut message: Vec<u8>) -> Result<Vec<Reply>, NetError> {
        let sequence = self.sequence();
        let flags = u16::from_ne_bytes([message[6], message[7]]) | NLM_F_REQUEST | NLM_F_DUMP;
        message[6..8].copy_from_slice(&flags.to_ne_bytes());
        message[8..12].copy_from_slice(&sequence.to_ne_bytes());
        self.socket.send(&message, 0).map_err(|source| NetError::io(format!("{what}: send"), source))?;
        let mut out = Vec::new();
        loop {
            for reply in self.receive(what)? {
                let reply_sequence = u32::from_ne_bytes(reply.bytes[8..12].try_into().expect("4 bytes"));
                if reply_sequence != sequence {
                    continue;
                }
                match reply.message_type {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = error_code(&reply);
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(NetError::Netlink { what: what.to_string(), source: io::Error::from_raw_os_error(-code) });
                    }
                    _ => out.push(reply),
                }
            }
        }
    }

    /// Dumps an rtnetlink request: every reply, as the kernel's bytes and typed.
    pub(crate) fn dump(&mut self, what: &str, message: RouteNetlinkMessage) -> Result<Vec<(Reply, RouteNetlinkMessage)>, NetError> {
        let mut message = NetlinkMessage::from(message);
        message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        message.finalize();
        let mut bytes = vec![0u8; message.buffer_len()];
        message.serialize(&mut bytes);
        let mut out = Vec::new();
        for reply in self.dump_bytes(what, bytes)? {
            let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply.bytes)
                .map_err(|error| NetError::refused(format!("{what}: the kernel's reply of type {} does not parse: {error}", reply.message_type)))?;
            if let NetlinkPayload::InnerMessage(inner) = parsed.payload {
                out.push((reply, inner));
            }
        }
        Ok(out)
    }

    /// Sends an rtnetlink request that the kernel answers with one message (not a
    /// dump), and returns that message.
    pub(crate) fn query(&mut self, what: &str, message: RouteNetlinkMessage) -> Result<RouteNetlinkMessage, NetError> {
        let sequence = self.sequence();
        let mut message = NetlinkMessage::from(message);
        message.header.flags = NLM_F_REQUEST;
        message.header.sequence_number = sequence;
        message.finalize();
        let mut bytes = vec![0u8; message.buffer_len()];
        message.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(|source| NetError::io(format!("{what}: send"), source))?;
        loop {
            for reply in self.receive(what)? {
                let reply_sequence = u32::from_ne_bytes(reply.bytes[8..12].try_into().expect("4 bytes"));
                if reply_sequence != sequence {
                    continue;
                }
                if reply.message_type == NLMSG_ERROR {
                    let code = error_code(&reply);
                    return Err(NetError::Netlink { what: what.to_string(), source: io::Error::from_raw_os_error(-code.max(1)) });
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply.bytes)
                    .map_err(|error| NetError::refused(format!("{what}: the kernel's reply does not parse: {error}")))?;
                if let NetlinkPayload::InnerMessage(inner) = parsed.payload {
                    return Ok(inner);
                }
            }
        }
    }

    /// Reads one datagram and splits it into messages.
    fn receive(&self, what: &str) -> Result<Vec<Reply>, NetError> {
        let (bytes, _) = self.socket.recv_from_full().map_err(|source| NetError::io(format!("{what}: receive"), source))?;
        split_messages(&bytes).map_err(|problem| NetError::refused(format!("{what}: {problem}")))
    }
}

/// The error code of an `NLMSG_ERROR` message (0: an acknowledgement).
fn error_code(reply: &Reply) -> i32 {
    reply.payload().get(0..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(-libc::EBADMSG)
}

fn pad_to_4(bytes: &mut Vec<u8>) {
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
}

/// Splits a datagram into its netlink messages. Pure.
pub(crate) fn split_messages(bytes: &[u8]) -> Result<Vec<Reply>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + HEADER_LEN <= bytes.len() {
        let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len < HEADER_LEN || at + len > bytes.len() {
            return Err(format!("netlink message at offset {at} has length {len}, {} bytes left", bytes.len() - at));
        }
        let message_type = u16::from_ne_bytes(bytes[at + 4..at + 6].try_into().expect("2 bytes"));
        out.push(Reply { message_type, bytes: bytes[at..at + len].to_vec() });
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// A netlink header for a message of `payload_len` bytes (sequence number left 0: set
/// when sent).
pub(crate) fn header(message_type: u16, flags: u16, payload_len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload_len);
    bytes.extend_from_slice(&((HEADER_LEN + payload_len) as u32).to_ne_bytes());
    bytes.extend_from_slice(&message_type.to_ne_bytes());
    bytes.extend_from_slice(&flags.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    bytes
}

/// Appends a netlink attribute (`struct nlattr` + value, padded to 4).
pub(crate) fn push_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    pad_to_4(out);
}

/// The attributes of a payload part: (kind without the nested/byte-order flags,
/// value). Pure; stops at the first malformed one.
pub(crate) fn attributes(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            break;
        }
        out.push((kind, &bytes[4..len]));
        let padded = ((len + 3) & !3).min(bytes.len());
        bytes = &bytes[padded..];
    }
    out
}

/// Builds a whole message from a header and payload, fixing its length.
pub(crate) fn message(message_type: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = header(message_type, flags, payload.len());
    bytes.extend_from_slice(payload);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_and_attributes_parse() {
        let mut payload = vec![1, 0, 0, 0];
        push_attribute(&mut payload, 1, b"crust_lock\0");
        push_attribute(&mut payload, 2, &2u32.to_be_bytes());
        let one = message(0xa00, 0, &payload);
        let mut datagram = one.clone();
        datagram.extend(message(NLMSG_DONE, 0, &[0, 0, 0, 0]));
        let split = split_messages(&datagram).expect("split");
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].bytes, one);
        assert_eq!(split[1].message_type, NLMSG_DONE);
        let attributes = attributes(&split[0].payload()[4..]);
        assert_eq!(attributes, vec![(1, &b"crust_lock\0"[..]), (2, &[0, 0, 0, 2][..])]);
    }

    #[test]
    fn a_short_message_is_an_error() {
        let mut bad = message(NLMSG_DONE, 0, &[0; 4]);
        bad[0] = 40;
        assert!(split_messages(&bad).unwrap_err().contains("length 40"));
    }
}
