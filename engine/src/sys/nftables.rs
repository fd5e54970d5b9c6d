//! nf_tables over netlink: a NETLINK_NETFILTER socket that sends one batch (one kernel
//! transaction: all of it happens or none) and waits for the kernel's answer to each of
//! its messages. The socket's port id owns the tables made with NFT_TABLE_F_OWNER: the
//! kernel deletes them when the socket closes, so when crust dies. The messages are
//! bytes built by the caller (`files/netlock.rs`, pure); socket calls go through nix.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;

/// nfnetlink's batch markers and the nf_tables subsystem.
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NLMSG_ERROR: u16 = 2;

/// One nf_tables message of a batch: NFT_MSG_* type, netlink flags (NLM_F_CREATE, ...;
/// NLM_F_REQUEST and NLM_F_ACK are added), the nfgenmsg family and the attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftMessage {
    pub kind: u16,
    pub flags: u16,
    pub family: u8,
    pub attributes: Vec<u8>,
}

/// A NETLINK_NETFILTER socket, bound to a port id of its own ([`bind_unshared_port`]).
pub struct NftSocket {
    socket: OwnedFd,
    seq: u32,
}

impl NftSocket {
    /// `socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)`, bound, with a receive timeout so
    /// a missing answer fails instead of hanging.
    #[doc(alias = "NETLINK_NETFILTER")]
    pub fn open() -> io::Result<NftSocket> {
        let socket = socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)?;
        bind_unshared_port(&socket)?;
        socket::setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::from(libc::timeval { tv_sec: Duration::from_secs(10).as_secs() as libc::time_t, tv_usec: 0 }))?;
        Ok(NftSocket { socket, seq: 1 })
    }

    /// [`NftSocket::open`] in the network namespace `netns` (crust's own with `None`): a
    /// thread of crust enters it and makes the socket there, which stays in that
    /// namespace for its life (crust's threads stay where they are).
    pub fn open_in(netns: Option<BorrowedFd<'_>>) -> io::Result<NftSocket> {
        let Some(netns) = netns else { return NftSocket::open() };
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("crust-nft".into())
                .spawn_scoped(scope, || {
                    super::netns::enter_net_namespace(netns)?;
                    NftSocket::open()
                })?
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the nftables socket's thread panicked")))
        })
    }

    /// Sends `messages` as one batch and waits for the kernel's answer to each. `Err`:
    /// the first error the kernel reported (the batch was not applied).
    pub fn transact(&mut self, messages: &[NftMessage]) -> io::Result<()> {
        let first = self.seq;
        let bytes = batch(messages, first);
        self.seq = self.seq.wrapping_add(messages.len() as u32 + 2);
        socket::send(self.socket.as_raw_fd(), &bytes, MsgFlags::empty())?;
        // Every message asks for an answer; a batch the kernel refuses as a whole is
        // answered once, for its BEGIN.
        let last = first + messages.len() as u32;
        let mut answered = std::collections::BTreeSet::new();
        let mut failed: Option<io::Error> = None;
        let mut buffer = vec![0u8; 64 * 1024];
        while answered.len() < messages.len() {
            let n = nix::unistd::read(&self.socket, &mut buffer)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "nf_tables: the socket closed before every answer"));
            }
            for (kind, seq, error) in answers(&buffer[..n]) {
                if kind != NLMSG_ERROR || !(first..=last + 1).contains(&seq) {
                    continue;
                }
                if error != 0 && failed.is_none() {
                    failed = Some(io::Error::from_raw_os_error(-error));
                }
                if seq == first || seq == last + 1 {
                    if error != 0 {
                        return Err(failed.unwrap_or_else(|| io::Error::from_raw_os_error(-error)));
                    }
                    continue;
                }
                answered.insert(seq);
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Binds `socket` to a port id of its own, never the process's: left to the kernel
/// (port 0), every socket of crust is first given the thread group id, and a table owned
/// by that id is deleted when *any* socket that had it is released. A socket that a
/// child got by fork (it spawned a command) is released when that child execs, after
/// the id is free again: the release then takes the table of the next socket that got
/// the id. A random id above every pid (2^22) and below the kernel's own random ids
/// (negative as i32) is not handed out again; taken (EADDRINUSE), another is tried.
fn bind_unshared_port(socket: &OwnedFd) -> io::Result<()> {
    use std::hash::{BuildHasher, Hasher};
    const FIRST: u32 = 1 << 22;
    const END: u32 = 1 << 31;
    let mut last = io::Error::from_raw_os_error(libc::EADDRINUSE);
    for _ in 0..64 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = FIRST + (random % u64::from(END - FIRST)) as u32;
        match socket::bind(socket.as_raw_fd(), &NetlinkAddr::new(port, 0)) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EADDRINUSE) => last = io::Error::from_raw_os_error(libc::EADDRINUSE),
            Err(error) => return Err(error.into()),
        }
    }
    Err(last)
}

impl NftSocket {
    /// Sends one message outside a batch (a GET) and waits for its answer. `Err`: the
    /// error the kernel answered.
    pub fn request(&mut self, message: &NftMessage) -> io::Result<()> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut bytes = Vec::new();
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | message.kind;
        let flags = message.flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        push_message(&mut bytes, kind, flags, seq, [message.family, 0, 0, 0], &message.attributes);
        socket::send(self.socket.as_raw_fd(), &bytes, MsgFlags::empty())?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = nix::unistd::read(&self.socket, &mut buffer)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "nf_tables: the socket closed before the answer"));
            }
            if let Some((_, _, error)) = answers(&buffer[..n]).find(|(kind, s, _)| *kind == NLMSG_ERROR && *s == seq) {
                return if error == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-error)) };
            }
        }
    }
}

/// The bytes of a batch: BEGIN, each message (sequence numbers from `first + 1`), END.
pub fn batch(messages: &[NftMessage], first: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let subsystem = NFNL_SUBSYS_NFTABLES.to_be_bytes();
    push_message(&mut out, NFNL_MSG_BATCH_BEGIN, libc::NLM_F_REQUEST as u16, first, [libc::AF_UNSPEC as u8, 0, subsystem[0], subsystem[1]], &[]);
    for (index, message) in messages.iter().enumerate() {
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | message.kind;
        let flags = message.flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        push_message(&mut out, kind, flags, first + 1 + index as u32, [message.family, 0, 0, 0], &message.attributes);
    }
    let end = first + 1 + messages.len() as u32;
    push_message(&mut out, NFNL_MSG_BATCH_END, libc::NLM_F_REQUEST as u16, end, [libc::AF_UNSPEC as u8, 0, subsystem[0], subsystem[1]], &[]);
    out
}

/// One netlink message: header (length, type, flags, sequence, port 0), nfgenmsg, body.
fn push_message(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, nfgenmsg: [u8; 4], body: &[u8]) {
    let length = 16 + 4 + body.len();
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&nfgenmsg);
    out.extend_from_slice(body);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// The answers in a reply: (type, sequence, error: 0 for an acknowledgement, -errno).
fn answers(bytes: &[u8]) -> impl Iterator<Item = (u16, u32, i32)> + '_ {
    super::netlink::netlink_messages_with_seq(bytes).map(|(kind, seq, payload)| {
        let error = payload.get(0..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
        (kind, seq, error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_framed_by_begin_and_end_with_the_subsystem() {
        let message = NftMessage { kind: 0, flags: libc::NLM_F_CREATE as u16, family: 1, attributes: vec![8, 0, 1, 0, b'a', 0, 0, 0] };
        let bytes = batch(&[message], 7);
        // BEGIN: 20 bytes, type 16, seq 7, res_id 10 (big-endian).
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(bytes[4..6].try_into().unwrap()), 16);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(&bytes[16..20], &[0, 0, 0, 10]);
        // The message: NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE, REQUEST|ACK|CREATE.
        let at = 20;
        assert_eq!(u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes(bytes[at + 4..at + 6].try_into().unwrap()), 10 << 8);
        assert_eq!(u16::from_ne_bytes(bytes[at + 6..at + 8].try_into().unwrap()), (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE) as u16);
        assert_eq!(u32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap()), 8);
        assert_eq!(&bytes[at + 16..at + 20], &[1, 0, 0, 0]);
        // END.
        assert_eq!(u16::from_ne_bytes(bytes[48 + 4..48 + 6].try_into().unwrap()), 17);
        assert_eq!(bytes.len(), 68);
    }
}
