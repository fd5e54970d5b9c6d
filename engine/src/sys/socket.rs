//! Socket requests: unix and inet sockets made again at restore, their names, queued
//! messages peeked at dump (with the fds in flight), and socket options.
//!
//! Through nix: socket, socketpair, bind, connect, send, sendto, sendmsg and recvmsg
//! with SCM_RIGHTS, recv, getsockname, getpeername. Wrapped here: getsockopt and
//! setsockopt by level and number (nix has a type per option, and none for SO_PEEK_OFF,
//! TCP_REPAIR and its kin, TCP_QUEUE_SEQ, TCP_REPAIR_WINDOW, TCP_INFO's raw bytes),
//! listen (nix's `Backlog` refuses more than libc's SOMAXCONN, which the host's may
//! exceed), and the SIOCINQ/SIOCOUTQ ioctls.
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call, and every size passed is that memory's size. Fds received
//! come back as `OwnedFd`. Errors are errno.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrStorage,
    UnixAddr,
};

use super::check;

/// `getsockopt(fd, level, name)` of an int option.
pub fn socket_option(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writing; len holds value's size.
    check(unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) }
        as libc::c_long)?;
    Ok(value)
}

/// `setsockopt(fd, level, name, value)` of an int option.
pub fn set_socket_option(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value lives across the call; the size passed is its size.
    check(unsafe {
        libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32)
    } as libc::c_long)?;
    Ok(())
}

/// One message peeked from a socket's receive queue.
pub struct Peeked {
    pub len: usize,
    /// The message was longer than the buffer.
    pub truncated: bool,
    /// Copies (close-on-exec) of the fds in flight with it (SCM_RIGHTS): peeking
    /// installs them in the caller, the message keeps its own.
    pub fds: Vec<OwnedFd>,
    /// Other ancillary data (credentials) came with it, or the control buffer was short.
    pub other_control: bool,
}

/// `recvmsg(fd, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC)`: with SO_PEEK_OFF set, each
/// call returns the next message (datagram) or the next bytes (stream) without
/// consuming them.
#[doc(alias = "recvmsg")]
pub fn peek_message(fd: RawFd, buf: &mut [u8]) -> io::Result<Peeked> {
    // Room for SCM_MAX_FD (253) fds.
    let mut control = nix::cmsg_space!([RawFd; 253]);
    let mut iov = [IoSliceMut::new(buf)];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let message = socket::recvmsg::<()>(fd, &mut iov, Some(&mut control), flags)?;
    let mut fds = Vec::new();
    let mut other_control = false;
    match message.cmsgs() {
        Ok(cmsgs) => {
            for cmsg in cmsgs {
                match cmsg {
                    ControlMessageOwned::ScmRights(received) => {
                        // SAFETY: each fd was just installed in this process by the
                        // kernel for this message; nobody else owns it.
                        fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                    _ => other_control = true,
                }
            }
        }
        // MSG_CTRUNC: the control buffer was short.
        Err(_) => other_control = true,
    }
    Ok(Peeked { len: message.bytes, truncated: message.flags.contains(MsgFlags::MSG_TRUNC), fds, other_control })
}

/// `sendmsg(fd, buf)` with `fds` in flight (SCM_RIGHTS), not blocking.
#[doc(alias = "sendmsg")]
pub fn send_with_fds(fd: RawFd, buf: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let n = socket::sendmsg::<()>(fd, &[IoSlice::new(buf)], cmsgs, MsgFlags::MSG_DONTWAIT, None)?;
    if n != buf.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("sent {n} of {} bytes", buf.len())));
    }
    Ok(())
}

fn family_and_type(domain: i32, kind: i32) -> io::Result<(AddressFamily, SockType)> {
    let family = AddressFamily::from_i32(domain).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
    let kind = SockType::try_from(kind)?;
    Ok((family, kind))
}

/// `socket(domain, type | SOCK_CLOEXEC, 0)`.
#[doc(alias = "socket")]
pub fn create_socket(domain: i32, kind: i32) -> io::Result<OwnedFd> {
    let (family, kind) = family_and_type(domain, kind)?;
    Ok(socket::socket(family, kind, SockFlag::SOCK_CLOEXEC, None)?)
}

/// `socket(domain, type | SOCK_CLOEXEC, protocol)`: raw sockets, UDP-Lite.
#[doc(alias = "socket")]
pub fn create_socket_with_protocol(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    let fd = check(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) } as libc::c_long)?;
    // SAFETY: the kernel just made this fd for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `socketpair(domain, type | SOCK_CLOEXEC, 0)`.
#[doc(alias = "socketpair")]
pub fn create_socketpair(domain: i32, kind: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let (family, kind) = family_and_type(domain, kind)?;
    Ok(socket::socketpair(family, kind, None, SockFlag::SOCK_CLOEXEC)?)
}

/// An AF_UNIX address from a name as sock_diag gives it: abstract when it starts with
/// a NUL byte, else a path (up to its first NUL).
fn unix_address(name: &[u8]) -> io::Result<UnixAddr> {
    Ok(match name.split_first() {
        Some((0, abstract_name)) => UnixAddr::new_abstract(abstract_name)?,
        _ => {
            let path = name.split(|&b| b == 0).next().unwrap_or(name);
            UnixAddr::new(std::ffi::OsStr::from_bytes(path))?
        }
    })
}

/// `bind(fd, AF_UNIX name)`; an abstract name starts with a NUL byte.
#[doc(alias = "bind")]
pub fn bind_unix(fd: RawFd, name: &[u8]) -> io::Result<()> {
    Ok(socket::bind(fd, &unix_address(name)?)?)
}

/// `connect(fd, AF_UNIX name)`.
#[doc(alias = "connect")]
pub fn connect_unix(fd: RawFd, name: &[u8]) -> io::Result<()> {
    Ok(socket::connect(fd, &unix_address(name)?)?)
}

/// `listen(fd, backlog)`.
pub fn listen(fd: RawFd, backlog: u32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::listen(fd, backlog as libc::c_int) } as libc::c_long)?;
    Ok(())
}

/// `shutdown(fd, how)` with the kernel's shutdown bits (1: reading, 2: writing, 3: both;
/// CRIU's `sk_shutdown` numbers are the same); 0 does nothing.
#[doc(alias = "shutdown")]
pub fn shut_down(fd: RawFd, bits: u32) -> io::Result<()> {
    let how = match bits & 3 {
        0 => return Ok(()),
        1 => socket::Shutdown::Read,
        2 => socket::Shutdown::Write,
        _ => socket::Shutdown::Both,
    };
    Ok(socket::shutdown(fd, how)?)
}

/// `send(fd, buf, MSG_DONTWAIT)`: one message (datagram) or bytes (stream), all of it.
#[doc(alias = "send")]
pub fn send_message(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    loop {
        sent += socket::send(fd, &buf[sent..], MsgFlags::MSG_DONTWAIT)?;
        if sent >= buf.len() {
            return Ok(());
        }
    }
}

/// An inet address: family, address bytes (4 or 16), port (host order), v6 scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InetAddress {
    pub family: i32,
    pub addr: Vec<u8>,
    pub port: u16,
}

fn inet_from_storage(storage: &SockaddrStorage) -> Option<InetAddress> {
    if let Some(sin) = storage.as_sockaddr_in() {
        return Some(InetAddress { family: libc::AF_INET, addr: sin.ip().octets().to_vec(), port: sin.port() });
    }
    let sin6 = storage.as_sockaddr_in6()?;
    Some(InetAddress { family: libc::AF_INET6, addr: sin6.ip().octets().to_vec(), port: sin6.port() })
}

/// The address as nix's: IPv4 or IPv6 (scope and flow info 0).
fn inet_to_storage(address: &InetAddress) -> io::Result<SockaddrStorage> {
    match (address.family, address.addr.len()) {
        (libc::AF_INET, 4) => {
            let octets: [u8; 4] = address.addr[..4].try_into().expect("4 bytes");
            Ok(SockaddrStorage::from(std::net::SocketAddrV4::new(octets.into(), address.port)))
        }
        (libc::AF_INET6, 16) => {
            let octets: [u8; 16] = address.addr[..16].try_into().expect("16 bytes");
            Ok(SockaddrStorage::from(std::net::SocketAddrV6::new(octets.into(), address.port, 0, 0)))
        }
        _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    }
}

/// `getsockname(fd)` (`peer`: `getpeername`) of an inet socket; `None` when not connected.
#[doc(alias = "getsockname")]
#[doc(alias = "getpeername")]
pub fn inet_name(fd: RawFd, peer: bool) -> io::Result<Option<InetAddress>> {
    let name = if peer { socket::getpeername::<SockaddrStorage>(fd) } else { socket::getsockname::<SockaddrStorage>(fd) };
    match name {
        Ok(storage) => Ok(inet_from_storage(&storage)),
        Err(nix::errno::Errno::ENOTCONN) if peer => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// `getsockname(fd)` (`peer`: `getpeername`) of a netlink socket: (port id, the first
/// 32 groups as a bit mask).
#[doc(alias = "getsockname")]
#[doc(alias = "getpeername")]
pub fn netlink_name(fd: RawFd, peer: bool) -> io::Result<(u32, u32)> {
    let name = if peer { socket::getpeername::<socket::NetlinkAddr>(fd)? } else { socket::getsockname::<socket::NetlinkAddr>(fd)? };
    Ok((name.pid(), name.groups()))
}

/// `bind(fd, sockaddr_nl)` (`connect`: `connect(fd, sockaddr_nl)`) for a netlink socket.
#[doc(alias = "bind")]
#[doc(alias = "connect")]
pub fn netlink_bind_or_connect(fd: RawFd, port_id: u32, groups: u32, connect: bool) -> io::Result<()> {
    let address = socket::NetlinkAddr::new(port_id, groups);
    if connect {
        socket::connect(fd, &address)?;
    } else {
        socket::bind(fd, &address)?;
    }
    Ok(())
}

/// `bind(fd, sockaddr_ll)` of a packet socket: `protocol` (host byte order) on the
/// interface `ifindex`.
#[doc(alias = "bind")]
pub fn packet_bind(fd: RawFd, protocol: u16, ifindex: i32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol.to_be();
    address.sll_ifindex = ifindex;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: address lives across the call and len is its size.
    check(unsafe { libc::bind(fd, (&address as *const libc::sockaddr_ll).cast(), len) } as libc::c_long)?;
    Ok(())
}

/// `setsockopt(fd, SOL_PACKET, option, packet_mreq)`: a membership (PACKET_ADD_MEMBERSHIP)
/// of type `kind` on interface `ifindex` with an address of up to 8 bytes.
#[doc(alias = "PACKET_ADD_MEMBERSHIP")]
pub fn packet_add_membership(fd: RawFd, option: i32, ifindex: i32, kind: u16, address: &[u8]) -> io::Result<()> {
    // SAFETY: packet_mreq is plain data; all zeros is a valid value.
    let mut request: libc::packet_mreq = unsafe { std::mem::zeroed() };
    request.mr_ifindex = ifindex;
    request.mr_type = kind;
    let length = address.len().min(request.mr_address.len());
    request.mr_alen = length as u16;
    request.mr_address[..length].copy_from_slice(&address[..length]);
    let len = std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t;
    // SAFETY: request lives across the call and len is its size.
    check(unsafe { libc::setsockopt(fd, libc::SOL_PACKET, option, (&request as *const libc::packet_mreq).cast(), len) } as libc::c_long)?;
    Ok(())
}

/// `bind(fd, address)` (`connect`: `connect(fd, address)`) for an inet socket.
#[doc(alias = "bind")]
#[doc(alias = "connect")]
pub fn inet_bind_or_connect(fd: RawFd, address: &InetAddress, connect: bool) -> io::Result<()> {
    let storage = inet_to_storage(address)?;
    if connect {
        socket::connect(fd, &storage)?;
    } else {
        socket::bind(fd, &storage)?;
    }
    Ok(())
}

/// `sendto(fd, buf, address)`: one datagram.
#[doc(alias = "sendto")]
pub fn send_to(fd: RawFd, buf: &[u8], address: &InetAddress) -> io::Result<()> {
    socket::sendto(fd, buf, &inet_to_storage(address)?, MsgFlags::MSG_DONTWAIT)?;
    Ok(())
}

/// `getsockopt` of a structure or buffer: the bytes the kernel wrote.
pub fn socket_option_bytes(fd: RawFd, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is writable for len bytes; len holds its size.
    check(unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) } as libc::c_long)?;
    Ok(len as usize)
}

/// The number of instructions of the classic BPF program attached to a socket
/// (`getsockopt(SO_GET_FILTER)` with a length of 0), 0 for none.
pub fn filter_length(fd: RawFd) -> io::Result<usize> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel writes only `len`.
    check(unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_GET_FILTER, std::ptr::null_mut(), &mut len) } as libc::c_long)?;
    Ok(len as usize)
}

/// `setsockopt(SO_ATTACH_FILTER)` of a classic BPF program given as one `struct
/// sock_filter` per word, as CRIU packs it: code in bits 48-63, jt 40-47, jf 32-39, k
/// 0-31.
pub fn attach_filter(fd: RawFd, words: &[u64]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = words
        .iter()
        .map(|&w| libc::sock_filter { code: (w >> 48) as u16, jt: (w >> 40) as u8, jf: (w >> 32) as u8, k: w as u32 })
        .collect();
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let program = libc::sock_fprog { len, filter: insns.as_mut_ptr() };
    // SAFETY: program and the instructions it points to live across the call; the size
    // passed is the program's.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&program as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    } as libc::c_long)?;
    Ok(())
}

/// `setsockopt` of a structure or buffer.
pub fn set_socket_option_bytes(fd: RawFd, level: i32, name: i32, buf: &[u8]) -> io::Result<()> {
    // SAFETY: buf is readable for its length, the size passed.
    check(unsafe { libc::setsockopt(fd, level, name, buf.as_ptr().cast(), buf.len() as libc::socklen_t) } as libc::c_long)?;
    Ok(())
}

/// `ioctl(fd, request, &int)` of a request that reports an int (SIOCINQ, SIOCOUTQ).
pub fn ioctl_int(fd: RawFd, request: u64) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    // SAFETY: the kernel writes one int into `value`.
    check(unsafe { libc::ioctl(fd, request as _, &mut value as *mut libc::c_int) } as libc::c_long)?;
    Ok(value)
}

/// The network namespace a socket belongs to, as an fd (`ioctl(fd, SIOCGSKNS)`): the
/// namespace it was created in, whichever namespace its holder is in now.
#[doc(alias = "SIOCGSKNS")]
pub fn socket_net_namespace(fd: RawFd) -> io::Result<OwnedFd> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd or -1.
    let ns = unsafe { libc::ioctl(fd, SIOCGSKNS as _) };
    check(ns as libc::c_long)?;
    // SAFETY: the kernel just installed `ns` in this process for this call; nobody else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ns) })
}

/// `recv(fd, buf, MSG_PEEK | MSG_DONTWAIT)`: bytes copied without consuming them.
#[doc(alias = "recv")]
pub fn peek_bytes(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(socket::recv(fd, buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT)?)
}

/// `recv(fd, buf, MSG_DONTWAIT | MSG_TRUNC)`: one message; its whole length, which is
/// more than `buf` holds when it was cut.
#[doc(alias = "recv")]
pub fn receive_message(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(socket::recv(fd, buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC)?)
}

/// `recvmsg(fd, buf, MSG_CMSG_CLOEXEC)`, blocking: bytes read and the first fd that came
/// with them (SCM_RIGHTS; any others are closed).
#[doc(alias = "recvmsg")]
pub fn receive_with_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut control = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let message = loop {
        match socket::recvmsg::<()>(fd, &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut first = None;
    if let Ok(cmsgs) = message.cmsgs() {
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                for raw in received {
                    // SAFETY: each fd was just installed in this process by the kernel
                    // for this message; nobody else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if first.is_none() {
                        first = Some(owned);
                    }
                }
            }
        }
    }
    Ok((message.bytes, first))
}
