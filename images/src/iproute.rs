//! iproute2 "save" streams: CRIU's raw `ifaddr-N.img`, `route-N.img`, `route6-N.img` and
//! `rule-N.img`.
//!
//! CRIU fills these images by running `ip addr save`, `ip route save`, `ip -6 route save`
//! and `ip rule save` in the dumped network namespace, and restores them with the matching
//! `ip ... restore`. The format is iproute2's: a 4-byte magic (`ipaddr_dump_magic`
//! 0x47361222, `route_dump_magic` 0x45311224 for both route families, `rule_dump_magic`
//! 0x71706986) in the writer's byte order, then the kernel's rtnetlink dump replies
//! (`RTM_NEWADDR`, `RTM_NEWROUTE`, `RTM_NEWRULE`) one after another, each `nlmsg_len`
//! bytes padded to 4 as `ip ... restore` reads them. Netlink is in host byte order, so an
//! image is only readable on a host of the byte order it was written on; the magic tells
//! which, and a foreign one is refused by name.
//!
//! Messages are typed with `netlink-packet-route` (re-exported as [`netlink_packet_route`]
//! and [`netlink_packet_core`], so callers build messages with the same versions).
//! Pure: bytes in, values out.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::RouteNetlinkMessage;

pub use netlink_packet_core;
pub use netlink_packet_route;

use crate::ImageKind;

/// Netlink message header length (`sizeof(struct nlmsghdr)`).
const NLMSG_HEADER_LEN: usize = 16;
/// Largest message `ip ... restore` accepts (its read buffer); a longer one is corrupt.
pub const MAX_MESSAGE_LEN: usize = 32768;

/// `RTM_NEWADDR`
const RTM_NEWADDR: u16 = 20;
/// `RTM_NEWROUTE`
const RTM_NEWROUTE: u16 = 24;
/// `RTM_NEWRULE`
const RTM_NEWRULE: u16 = 32;
/// `NLM_F_MULTI`: the flag the kernel sets on every dump reply.
const NLM_F_MULTI: u16 = 2;

/// Which save stream: the three iproute2 magics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaveStreamKind {
    /// `ip addr save` (`ifaddr-N.img`): `RTM_NEWADDR` messages.
    Addresses,
    /// `ip route save` / `ip -6 route save` (`route-N.img`, `route6-N.img`): `RTM_NEWROUTE`.
    Routes,
    /// `ip rule save` (`rule-N.img`): `RTM_NEWRULE` messages.
    Rules,
}

impl SaveStreamKind {
    /// Every kind.
    pub const ALL: [SaveStreamKind; 3] = [
        SaveStreamKind::Addresses,
        SaveStreamKind::Routes,
        SaveStreamKind::Rules,
    ];

    /// iproute2's magic for the stream (`ipaddr_dump_magic`, `route_dump_magic`,
    /// `rule_dump_magic`).
    pub const fn magic(self) -> u32 {
        match self {
            SaveStreamKind::Addresses => 0x4736_1222,
            SaveStreamKind::Routes => 0x4531_1224,
            SaveStreamKind::Rules => 0x7170_6986,
        }
    }

    /// The rtnetlink message type every message of the stream has.
    pub const fn message_type(self) -> u16 {
        match self {
            SaveStreamKind::Addresses => RTM_NEWADDR,
            SaveStreamKind::Routes => RTM_NEWROUTE,
            SaveStreamKind::Rules => RTM_NEWRULE,
        }
    }

    /// The kernel's name for [`SaveStreamKind::message_type`].
    pub const fn message_name(self) -> &'static str {
        match self {
            SaveStreamKind::Addresses => "RTM_NEWADDR",
            SaveStreamKind::Routes => "RTM_NEWROUTE",
            SaveStreamKind::Rules => "RTM_NEWRULE",
        }
    }

    /// The kind whose magic is `magic` in this host's byte order.
    pub fn from_magic(magic: u32) -> Option<SaveStreamKind> {
        SaveStreamKind::ALL
            .into_iter()
            .find(|kind| kind.magic() == magic)
    }

    /// The stream an image kind holds (`ImageKind::Route6` -> `Routes`).
    pub fn of_image(kind: ImageKind) -> Option<SaveStreamKind> {
        match kind {
            ImageKind::Ifaddr => Some(SaveStreamKind::Addresses),
            ImageKind::Route | ImageKind::Route6 => Some(SaveStreamKind::Routes),
            ImageKind::Rule => Some(SaveStreamKind::Rules),
            _ => None,
        }
    }
}

impl std::fmt::Display for SaveStreamKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            SaveStreamKind::Addresses => "ip addr save",
            SaveStreamKind::Routes => "ip route save",
            SaveStreamKind::Rules => "ip rule save",
        })
    }
}

/// What is wrong with a save stream.
#[derive(Debug, thiserror::Error)]
pub enum SaveStreamError {
    /// The file is shorter than the magic.
    #[error("{file}: {length} bytes: too short for the 4-byte iproute2 magic")]
    NoMagic {
        /// image file name
        file: String,
        /// its length
        length: usize,
    },
    /// The first word is not an iproute2 save magic.
    #[error("{file}: magic {magic:#010x} is not an iproute2 save stream (addresses 0x47361222, routes 0x45311224, rules 0x71706986)")]
    BadMagic {
        /// image file name
        file: String,
        /// the word in this host's byte order
        magic: u32,
    },
    /// The magic is iproute2's, byte-swapped: netlink is host-endian, so the messages
    /// cannot be read here.
    #[error("{file}: the {kind} stream was written on a host of the other byte order; netlink messages are host-endian and cannot be read here")]
    ForeignByteOrder {
        /// image file name
        file: String,
        /// the stream the swapped magic names
        kind: SaveStreamKind,
    },
    /// The image kind does not hold a save stream, or holds another one.
    #[error("{file}: expected a {expected} stream, found {found}")]
    WrongStream {
        /// image file name
        file: String,
        /// stream the file name calls for
        expected: SaveStreamKind,
        /// stream the magic says
        found: SaveStreamKind,
    },
    /// The file ends inside a message header or body.
    #[error("{file}: offset {offset}: message {index}: truncated: needs {needed} bytes, {available} left")]
    Truncated {
        /// image file name
        file: String,
        /// byte offset of the message
        offset: usize,
        /// index of the message (0-based)
        index: usize,
        /// bytes the header, or the message with its padding, needs
        needed: usize,
        /// bytes left in the file
        available: usize,
    },
    /// `nlmsg_len` is shorter than a header or longer than iproute2 accepts.
    #[error("{file}: offset {offset}: message {index}: length {length} is outside 16..={MAX_MESSAGE_LEN}")]
    BadLength {
        /// image file name
        file: String,
        /// byte offset of the message
        offset: usize,
        /// index of the message
        index: usize,
        /// `nlmsg_len`
        length: u32,
    },
    /// A message is not of the stream's type (an `RTM_NEWLINK` in a route image).
    #[error("{file}: offset {offset}: message {index}: type {found}, but {kind} streams hold only {expected} ({expected_type})")]
    WrongMessageType {
        /// image file name
        file: String,
        /// byte offset of the message
        offset: usize,
        /// index of the message
        index: usize,
        /// the stream
        kind: SaveStreamKind,
        /// `nlmsg_type` found
        found: u16,
        /// the expected type's name
        expected: &'static str,
        /// the expected `nlmsg_type`
        expected_type: u16,
    },
    /// netlink-packet-route could not decode the message.
    #[error("{file}: offset {offset}: message {index}: decode: {source}")]
    Decode {
        /// image file name
        file: String,
        /// byte offset of the message
        offset: usize,
        /// index of the message
        index: usize,
        /// the library's reason
        source: netlink_packet_core::DecodeError,
    },
    /// A message to write is not of the stream's type.
    #[error("{kind} stream: message {index}: {found} is not {expected}")]
    WrongMessageToWrite {
        /// the stream
        kind: SaveStreamKind,
        /// index of the message
        index: usize,
        /// what the message is
        found: String,
        /// the expected message
        expected: &'static str,
    },
    /// A message given as bytes is longer than its `nlmsg_len` (two messages, or junk).
    #[error("{kind} stream: message {index}: nlmsg_len {length} but {given} bytes given")]
    LengthMismatch {
        /// the stream
        kind: SaveStreamKind,
        /// index of the message
        index: usize,
        /// `nlmsg_len`
        length: usize,
        /// bytes given
        given: usize,
    },
    /// A message to write encodes longer than `ip ... restore` reads.
    #[error(
        "{kind} stream: message {index}: {length} bytes is over the {MAX_MESSAGE_LEN} byte limit"
    )]
    MessageTooLong {
        /// the stream
        kind: SaveStreamKind,
        /// index of the message
        index: usize,
        /// encoded length
        length: usize,
    },
}

/// One save stream: its kind and its messages.
///
/// Each message keeps its bytes as read (or as encoded when pushed), so a stream writes
/// back byte for byte; the typed form decoded from them is what callers inspect.
/// netlink-packet-route does not re-encode every attribute it does not know exactly as
/// it read it (flag bits of unknown attributes), so bytes, not the typed form, are
/// what is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveStream {
    /// which stream
    pub kind: SaveStreamKind,
    messages: Vec<SavedMessage>,
}

/// One message of a stream: its bytes (`nlmsg_len` of them, the padding to 4 is not
/// kept) and the typed message decoded from them; the type is the stream's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedMessage {
    bytes: Vec<u8>,
    message: NetlinkMessage<RouteNetlinkMessage>,
}

impl SavedMessage {
    /// The message's bytes, header included, without padding.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The decoded message, header included.
    pub fn message(&self) -> &NetlinkMessage<RouteNetlinkMessage> {
        &self.message
    }

    /// The rtnetlink message (`NewAddress`, `NewRoute` or `NewRule`).
    pub fn inner(&self) -> Option<&RouteNetlinkMessage> {
        match &self.message.payload {
            NetlinkPayload::InnerMessage(inner) => Some(inner),
            _ => None,
        }
    }
}

/// Where a message sits, for errors: the image and the byte offset, or a stream being
/// built.
struct MessagePlace<'a> {
    file: &'a str,
    offset: usize,
    index: usize,
}

impl SaveStream {
    /// An empty stream of `kind`.
    pub fn new(kind: SaveStreamKind) -> SaveStream {
        SaveStream {
            kind,
            messages: Vec::new(),
        }
    }

    /// Parses a save stream; the kind comes from the magic. `file` names the image in
    /// errors. Checks every message's length against what is there before reading it.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<SaveStream, SaveStreamError> {
        let Some((magic_bytes, mut rest)) = bytes.split_first_chunk::<4>() else {
            return Err(SaveStreamError::NoMagic {
                file: file.to_owned(),
                length: bytes.len(),
            });
        };
        let magic = u32::from_ne_bytes(*magic_bytes);
        let kind = match SaveStreamKind::from_magic(magic) {
            Some(kind) => kind,
            None => {
                return Err(match SaveStreamKind::from_magic(magic.swap_bytes()) {
                    Some(kind) => SaveStreamError::ForeignByteOrder {
                        file: file.to_owned(),
                        kind,
                    },
                    None => SaveStreamError::BadMagic {
                        file: file.to_owned(),
                        magic,
                    },
                })
            }
        };
        let mut stream = SaveStream::new(kind);
        let mut offset = 4;
        while !rest.is_empty() {
            let place = MessagePlace {
                file,
                offset,
                index: stream.messages.len(),
            };
            let length = message_length(&place, rest)?;
            let padded = align4(length);
            if rest.len() < padded {
                return Err(SaveStreamError::Truncated {
                    file: file.to_owned(),
                    offset,
                    index: place.index,
                    needed: padded,
                    available: rest.len(),
                });
            }
            let saved = decode_message(kind, &place, &rest[..length])?;
            stream.messages.push(saved);
            rest = &rest[padded..];
            offset += padded;
        }
        Ok(stream)
    }

    /// Parses an image file's bytes and checks that its magic is the one the file name
    /// calls for (`route6-10.img` must hold routes).
    pub fn parse_image(
        file: &str,
        image: ImageKind,
        bytes: &[u8],
    ) -> Result<SaveStream, SaveStreamError> {
        let stream = SaveStream::parse(file, bytes)?;
        if let Some(expected) = SaveStreamKind::of_image(image) {
            if expected != stream.kind {
                return Err(SaveStreamError::WrongStream {
                    file: file.to_owned(),
                    expected,
                    found: stream.kind,
                });
            }
        }
        Ok(stream)
    }

    /// Appends a message with the header the kernel gives dump replies (`NLM_F_MULTI`,
    /// sequence and port 0); the length and type are set from the message, which must
    /// be of the stream's type.
    pub fn push(&mut self, message: RouteNetlinkMessage) -> Result<(), SaveStreamError> {
        let index = self.messages.len();
        let expected_variant = matches!(
            (&message, self.kind),
            (
                RouteNetlinkMessage::NewAddress(_),
                SaveStreamKind::Addresses
            ) | (RouteNetlinkMessage::NewRoute(_), SaveStreamKind::Routes)
                | (RouteNetlinkMessage::NewRule(_), SaveStreamKind::Rules)
        );
        if !expected_variant {
            let found = format!("{message:?}");
            return Err(SaveStreamError::WrongMessageToWrite {
                kind: self.kind,
                index,
                found: found.split('(').next().unwrap_or("message").to_owned(),
                expected: self.kind.message_name(),
            });
        }
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_MULTI;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        message.finalize();
        let length = message.buffer_len();
        if length > MAX_MESSAGE_LEN {
            return Err(SaveStreamError::MessageTooLong {
                kind: self.kind,
                index,
                length,
            });
        }
        let mut bytes = vec![0u8; length];
        message.serialize(&mut bytes);
        self.push_raw(&bytes)
    }

    /// Appends one netlink message given as bytes (a kernel dump reply, kept verbatim):
    /// `nlmsg_len` must be the length of `bytes` (or of `bytes` without its padding),
    /// and the message must decode as the stream's type.
    pub fn push_raw(&mut self, bytes: &[u8]) -> Result<(), SaveStreamError> {
        let file = format!("new {} stream", self.kind);
        let place = MessagePlace {
            file: &file,
            offset: self.to_bytes_len(),
            index: self.messages.len(),
        };
        let length = message_length(&place, bytes)?;
        if bytes.len() != length && bytes.len() != align4(length) {
            return Err(SaveStreamError::LengthMismatch {
                kind: self.kind,
                index: place.index,
                length,
                given: bytes.len(),
            });
        }
        let saved = decode_message(self.kind, &place, &bytes[..length])?;
        self.messages.push(saved);
        Ok(())
    }

    /// The messages, in file order.
    pub fn messages(&self) -> &[SavedMessage] {
        &self.messages
    }

    /// The addresses of an address stream.
    pub fn addresses(&self) -> impl Iterator<Item = &AddressMessage> {
        self.messages
            .iter()
            .filter_map(|message| match message.inner() {
                Some(RouteNetlinkMessage::NewAddress(address)) => Some(address),
                _ => None,
            })
    }

    /// The routes of a route stream.
    pub fn routes(&self) -> impl Iterator<Item = &RouteMessage> {
        self.messages
            .iter()
            .filter_map(|message| match message.inner() {
                Some(RouteNetlinkMessage::NewRoute(route)) => Some(route),
                _ => None,
            })
    }

    /// The rules of a rule stream.
    pub fn rules(&self) -> impl Iterator<Item = &RuleMessage> {
        self.messages
            .iter()
            .filter_map(|message| match message.inner() {
                Some(RouteNetlinkMessage::NewRule(rule)) => Some(rule),
                _ => None,
            })
    }

    /// The stream's bytes: the magic in this host's byte order, then each message's
    /// bytes padded with zeros to 4, as `ip ... restore` reads them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.to_bytes_len());
        bytes.extend_from_slice(&self.kind.magic().to_ne_bytes());
        for message in &self.messages {
            bytes.extend_from_slice(&message.bytes);
            bytes.resize(align4(bytes.len()), 0);
        }
        bytes
    }

    fn to_bytes_len(&self) -> usize {
        4 + self
            .messages
            .iter()
            .map(|message| align4(message.bytes.len()))
            .sum::<usize>()
    }
}

/// `nlmsg_len` of the message at the start of `bytes`, checked against the header size,
/// iproute2's limit and what is there.
fn message_length(place: &MessagePlace<'_>, bytes: &[u8]) -> Result<usize, SaveStreamError> {
    let Some(length_bytes) = bytes.first_chunk::<4>() else {
        return Err(SaveStreamError::Truncated {
            file: place.file.to_owned(),
            offset: place.offset,
            index: place.index,
            needed: NLMSG_HEADER_LEN,
            available: bytes.len(),
        });
    };
    let length = u32::from_ne_bytes(*length_bytes);
    let length_usize = length as usize;
    if !(NLMSG_HEADER_LEN..=MAX_MESSAGE_LEN).contains(&length_usize) {
        return Err(SaveStreamError::BadLength {
            file: place.file.to_owned(),
            offset: place.offset,
            index: place.index,
            length,
        });
    }
    if bytes.len() < length_usize {
        return Err(SaveStreamError::Truncated {
            file: place.file.to_owned(),
            offset: place.offset,
            index: place.index,
            needed: length_usize,
            available: bytes.len(),
        });
    }
    Ok(length_usize)
}

/// Checks the type and decodes one message of exactly `nlmsg_len` bytes.
fn decode_message(
    kind: SaveStreamKind,
    place: &MessagePlace<'_>,
    bytes: &[u8],
) -> Result<SavedMessage, SaveStreamError> {
    let message_type = u16::from_ne_bytes([bytes[4], bytes[5]]);
    if message_type != kind.message_type() {
        return Err(SaveStreamError::WrongMessageType {
            file: place.file.to_owned(),
            offset: place.offset,
            index: place.index,
            kind,
            found: message_type,
            expected: kind.message_name(),
            expected_type: kind.message_type(),
        });
    }
    let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|source| {
        SaveStreamError::Decode {
            file: place.file.to_owned(),
            offset: place.offset,
            index: place.index,
            source,
        }
    })?;
    Ok(SavedMessage {
        bytes: bytes.to_vec(),
        message,
    })
}

fn align4(length: usize) -> usize {
    (length + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::AddressAttribute;
    use netlink_packet_route::AddressFamily;

    #[test]
    fn magics_are_iproute2s() {
        assert_eq!(
            SaveStreamKind::from_magic(0x4736_1222),
            Some(SaveStreamKind::Addresses)
        );
        assert_eq!(
            SaveStreamKind::from_magic(0x4531_1224),
            Some(SaveStreamKind::Routes)
        );
        assert_eq!(
            SaveStreamKind::from_magic(0x7170_6986),
            Some(SaveStreamKind::Rules)
        );
        assert_eq!(SaveStreamKind::from_magic(0), None);
    }

    #[test]
    fn built_stream_round_trips() {
        let mut stream = SaveStream::new(SaveStreamKind::Addresses);
        let mut address = AddressMessage::default();
        address.header.family = AddressFamily::Inet;
        address.header.prefix_len = 8;
        address.header.index = 1;
        address
            .attributes
            .push(AddressAttribute::Label("lo".to_owned()));
        stream
            .push(RouteNetlinkMessage::NewAddress(address.clone()))
            .expect("push");
        let bytes = stream.to_bytes();
        assert_eq!(bytes.len() % 4, 0);
        let parsed = SaveStream::parse("ifaddr-1.img", &bytes).expect("parse");
        assert_eq!(parsed, stream);
        assert_eq!(parsed.to_bytes(), bytes);
        assert_eq!(parsed.addresses().collect::<Vec<_>>(), [&address]);

        let mut raw = SaveStream::new(SaveStreamKind::Addresses);
        raw.push_raw(stream.messages()[0].bytes())
            .expect("push raw");
        assert_eq!(raw, stream);
        let one = stream.messages()[0].bytes();
        let error = raw.push_raw(&[one, one].concat()).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "ip addr save stream: message 1: nlmsg_len {} but {} bytes given",
                one.len(),
                2 * one.len()
            )
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let error = |bytes: &[u8]| SaveStream::parse("x.img", bytes).unwrap_err().to_string();
        assert_eq!(
            error(b"\x22\x12"),
            "x.img: 2 bytes: too short for the 4-byte iproute2 magic"
        );
        assert!(error(&0x1234_5678u32.to_ne_bytes()).contains("not an iproute2 save stream"));
        assert!(error(&0x4736_1222u32.swap_bytes().to_ne_bytes()).contains("other byte order"));
        let mut bytes = 0x4736_1222u32.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&100u32.to_ne_bytes());
        assert_eq!(
            error(&bytes),
            "x.img: offset 4: message 0: truncated: needs 100 bytes, 4 left"
        );
        bytes.truncate(4);
        bytes.extend_from_slice(&8u32.to_ne_bytes());
        assert!(error(&bytes).contains("length 8 is outside"));
        bytes.truncate(4);
        bytes.extend_from_slice(&16u32.to_ne_bytes());
        bytes.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        assert!(
            error(&bytes).contains("type 24, but ip addr save streams hold only RTM_NEWADDR (20)")
        );
    }

    #[test]
    fn writing_a_foreign_message_is_refused() {
        let mut stream = SaveStream::new(SaveStreamKind::Rules);
        let error = stream
            .push(RouteNetlinkMessage::NewRoute(RouteMessage::default()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "ip rule save stream: message 0: NewRoute is not RTM_NEWRULE"
        );
    }
}
