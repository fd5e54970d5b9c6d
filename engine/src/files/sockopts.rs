//! Socket options every socket kind shares (`sk_opts_entry`) and those of inet sockets
//! (`ip_opts_entry`): read at dump from crust's duplicate of the socket, set on the new
//! socket at restore before it is bound or connected.
//!
//! Left out: SO_LOCK_FILTER (CRIU's images have no field for it: a locked filter comes
//! back attached, unlocked).

use std::os::fd::{AsRawFd, OwnedFd};

use crust_images::pb;

use super::{file_io, FileError};
use crate::sys;

/// `SO_BUF_LOCK` (Linux 5.14): the SOCK_SNDBUF_LOCK | SOCK_RCVBUF_LOCK bits.
const SO_BUF_LOCK: i32 = 72;
/// `IPV6_FREEBIND` (uapi linux/in6.h).
const IPV6_FREEBIND: i32 = 78;

/// What a socket is, for the options that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Unix,
    /// An inet socket; `tcp` for the TCP keepalive options.
    Inet { tcp: bool },
}

/// The TCP keepalive settings, TCP_NODELAY and TCP_CORK of a TCP socket, where CRIU 4.2 writes them
/// (`inet_sk_entry.tcp_opts`; sk_opts' tcp_keep* fields are left empty, as CRIU does).
pub(crate) fn read_tcp(socket: &OwnedFd) -> pb::TcpOptsEntry {
    let int = |name: i32| sys::socket::socket_option(socket.as_raw_fd(), libc::IPPROTO_TCP, name).ok().map(|v| v as u32);
    pb::TcpOptsEntry {
        keepcnt: int(libc::TCP_KEEPCNT),
        keepidle: int(libc::TCP_KEEPIDLE),
        keepintvl: int(libc::TCP_KEEPINTVL),
        nodelay: int(libc::TCP_NODELAY).map(|v| v != 0),
        cork: int(libc::TCP_CORK).map(|v| v != 0),
    }
}

/// The shared options of `socket`. A getsockopt the kernel refuses leaves its field out.
pub(crate) fn read(socket: &OwnedFd) -> pb::SkOptsEntry {
    let fd = socket.as_raw_fd();
    let int = |level: i32, name: i32| sys::socket::socket_option(fd, level, name).ok();
    let flag = |name: i32| int(libc::SOL_SOCKET, name).map(|v| v != 0);
    let timeout = |name: i32| -> (u64, u64) {
        let mut tv = [0u8; 16];
        match sys::socket::socket_option_bytes(fd, libc::SOL_SOCKET, name, &mut tv) {
            Ok(16) => (u64::from_ne_bytes(tv[..8].try_into().expect("8 bytes")), u64::from_ne_bytes(tv[8..].try_into().expect("8 bytes"))),
            _ => (0, 0),
        }
    };
    let (snd_sec, snd_usec) = timeout(libc::SO_SNDTIMEO);
    let (rcv_sec, rcv_usec) = timeout(libc::SO_RCVTIMEO);
    let mut linger = [0u8; 8];
    let so_linger = match sys::socket::socket_option_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &mut linger) {
        Ok(8) if i32::from_ne_bytes(linger[..4].try_into().expect("4 bytes")) != 0 => Some(u32::from_ne_bytes(linger[4..].try_into().expect("4 bytes"))),
        _ => None,
    };
    let mut device = [0u8; libc::IFNAMSIZ];
    let so_bound_dev = match sys::socket::socket_option_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &mut device) {
        Ok(len) if len > 0 && device[0] != 0 => {
            let name = device[..len].split(|b| *b == 0).next().unwrap_or_default();
            Some(String::from_utf8_lossy(name).into_owned())
        }
        _ => None,
    };
    pb::SkOptsEntry {
        so_sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0) as u32,
        so_rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0) as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        reuseaddr: flag(libc::SO_REUSEADDR),
        so_priority: int(libc::SOL_SOCKET, libc::SO_PRIORITY).map(|v| v as u32),
        so_rcvlowat: int(libc::SOL_SOCKET, libc::SO_RCVLOWAT).map(|v| v as u32),
        so_mark: int(libc::SOL_SOCKET, libc::SO_MARK).map(|v| v as u32),
        so_passcred: flag(libc::SO_PASSCRED),
        so_passsec: flag(libc::SO_PASSSEC),
        so_dontroute: flag(libc::SO_DONTROUTE),
        so_no_check: flag(libc::SO_NO_CHECK),
        so_bound_dev,
        so_filter: read_filter(socket),
        so_reuseport: flag(libc::SO_REUSEPORT),
        so_broadcast: flag(libc::SO_BROADCAST),
        so_keepalive: flag(libc::SO_KEEPALIVE),
        so_oobinline: int(libc::SOL_SOCKET, libc::SO_OOBINLINE).map(|v| v as u32),
        so_linger,
        so_buf_lock: int(libc::SOL_SOCKET, SO_BUF_LOCK).map(|v| v as u32),
        tcp_keepcnt: None,
        tcp_keepidle: None,
        tcp_keepintvl: None,
    }
}

/// The classic BPF program attached to `socket` (SO_GET_FILTER), one instruction per
/// word as CRIU packs it: code in bits 48-63, jt 40-47, jf 32-39, k 0-31.
fn read_filter(socket: &OwnedFd) -> Vec<u64> {
    let Ok(count) = sys::socket::filter_length(socket.as_raw_fd()) else { return Vec::new() };
    if count == 0 {
        return Vec::new();
    }
    let mut bytes = vec![0u8; count * 8];
    match sys::socket::socket_option_bytes(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_GET_FILTER, &mut bytes) {
        // The length comes back in instructions, not bytes.
        Ok(n) if n == count => bytes
            .chunks_exact(8)
            .map(|c| {
                let code = u16::from_ne_bytes([c[0], c[1]]) as u64;
                let k = u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) as u64;
                (code << 48) | ((c[2] as u64) << 40) | ((c[3] as u64) << 32) | k
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Sets the shared options on a new socket (before bind: SO_BINDTODEVICE and the reuse
/// flags shape it). The buffer sizes go with SO_SNDBUFFORCE/SO_RCVBUFFORCE (the kernel
/// doubles the value set and reports the doubled one), then SO_BUF_LOCK puts back
/// whether the program had fixed them.
pub(crate) fn apply(fd: &OwnedFd, opts: &pb::SkOptsEntry, tcp_opts: Option<&pb::TcpOptsEntry>, kind: Kind, what: &str) -> Result<(), FileError> {
    let raw = fd.as_raw_fd();
    let set = |level: i32, name: i32, value: i32, option: &str| {
        sys::socket::set_socket_option(raw, level, name, value).map_err(file_io(format!("{what}: {option} {value}")))
    };
    // The FORCE options need CAP_NET_ADMIN in the initial user namespace, which a process
    // of a tree with a user namespace of its own has not: there the plain options, which
    // the kernel caps at net.core.wmem_max/rmem_max.
    let set_buffer = |force: i32, plain: i32, value: i32, option: &str| match sys::socket::set_socket_option(raw, libc::SOL_SOCKET, force, value) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => set(libc::SOL_SOCKET, plain, value, option),
        other => other.map_err(file_io(format!("{what}: {option}FORCE {value}"))),
    };
    if opts.so_sndbuf > 0 {
        set_buffer(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, (opts.so_sndbuf / 2) as i32, "SO_SNDBUF")?;
    }
    if opts.so_rcvbuf > 0 {
        set_buffer(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, (opts.so_rcvbuf / 2) as i32, "SO_RCVBUF")?;
    }
    if let Some(lock) = opts.so_buf_lock {
        // Refused by kernels before 5.14, which cannot tell it either.
        let _ = sys::socket::set_socket_option(raw, libc::SOL_SOCKET, SO_BUF_LOCK, lock as i32);
    }
    for (name, option, sec, usec) in [
        (libc::SO_SNDTIMEO, "SO_SNDTIMEO", opts.so_snd_tmo_sec, opts.so_snd_tmo_usec),
        (libc::SO_RCVTIMEO, "SO_RCVTIMEO", opts.so_rcv_tmo_sec, opts.so_rcv_tmo_usec),
    ] {
        if sec != 0 || usec != 0 {
            let mut tv = sec.to_ne_bytes().to_vec();
            tv.extend_from_slice(&usec.to_ne_bytes());
            sys::socket::set_socket_option_bytes(raw, libc::SOL_SOCKET, name, &tv).map_err(file_io(format!("{what}: {option}")))?;
        }
    }
    let flags = [
        (opts.reuseaddr, libc::SO_REUSEADDR, "SO_REUSEADDR"),
        (opts.so_reuseport, libc::SO_REUSEPORT, "SO_REUSEPORT"),
        (opts.so_passcred, libc::SO_PASSCRED, "SO_PASSCRED"),
        (opts.so_passsec, libc::SO_PASSSEC, "SO_PASSSEC"),
        (opts.so_dontroute, libc::SO_DONTROUTE, "SO_DONTROUTE"),
        (opts.so_no_check, libc::SO_NO_CHECK, "SO_NO_CHECK"),
        (opts.so_broadcast, libc::SO_BROADCAST, "SO_BROADCAST"),
        (opts.so_keepalive, libc::SO_KEEPALIVE, "SO_KEEPALIVE"),
    ];
    for (value, name, option) in flags {
        // Set only when on: a unix socket refuses some of them (SO_NO_CHECK is fine,
        // SO_BROADCAST too), and off is every new socket's state.
        if value == Some(true) {
            set(libc::SOL_SOCKET, name, 1, option)?;
        }
    }
    let ints = [
        (opts.so_priority, libc::SO_PRIORITY, "SO_PRIORITY", 0),
        (opts.so_rcvlowat, libc::SO_RCVLOWAT, "SO_RCVLOWAT", 1),
        (opts.so_mark, libc::SO_MARK, "SO_MARK", 0),
        (opts.so_oobinline, libc::SO_OOBINLINE, "SO_OOBINLINE", 0),
    ];
    for (value, name, option, default) in ints {
        if let Some(value) = value.filter(|&v| v != default) {
            set(libc::SOL_SOCKET, name, value as i32, option)?;
        }
    }
    if kind == (Kind::Inet { tcp: true }) {
        // CRIU 4.2 writes them in tcp_opts; older images in sk_opts.
        let keep = [
            (tcp_opts.and_then(|t| t.keepcnt).or(opts.tcp_keepcnt), libc::TCP_KEEPCNT, "TCP_KEEPCNT"),
            (tcp_opts.and_then(|t| t.keepidle).or(opts.tcp_keepidle), libc::TCP_KEEPIDLE, "TCP_KEEPIDLE"),
            (tcp_opts.and_then(|t| t.keepintvl).or(opts.tcp_keepintvl), libc::TCP_KEEPINTVL, "TCP_KEEPINTVL"),
        ];
        for (value, name, option) in keep {
            if let Some(value) = value.filter(|&v| v > 0) {
                set(libc::IPPROTO_TCP, name, value as i32, option)?;
            }
        }
        for (value, name, option) in [(tcp_opts.and_then(|t| t.nodelay), libc::TCP_NODELAY, "TCP_NODELAY"), (tcp_opts.and_then(|t| t.cork), libc::TCP_CORK, "TCP_CORK")] {
            if value == Some(true) {
                set(libc::IPPROTO_TCP, name, 1, option)?;
            }
        }
    }
    if let Some(seconds) = opts.so_linger {
        let mut linger = 1i32.to_ne_bytes().to_vec();
        linger.extend_from_slice(&(seconds as i32).to_ne_bytes());
        sys::socket::set_socket_option_bytes(raw, libc::SOL_SOCKET, libc::SO_LINGER, &linger).map_err(file_io(format!("{what}: SO_LINGER {seconds}")))?;
    }
    if let Some(device) = opts.so_bound_dev.as_deref().filter(|d| !d.is_empty()) {
        sys::socket::set_socket_option_bytes(raw, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, device.as_bytes())
            .map_err(file_io(format!("{what}: SO_BINDTODEVICE {device}")))?;
    }
    if !opts.so_filter.is_empty() {
        sys::socket::attach_filter(raw, &opts.so_filter).map_err(file_io(format!("{what}: SO_ATTACH_FILTER ({} instructions)", opts.so_filter.len())))?;
    }
    Ok(())
}

/// The IP-level options of an inet socket: IP_FREEBIND (IPV6_FREEBIND), and for IPv4
/// IP_TOS, IP_TTL and IP_PKTINFO.
pub(crate) fn read_ip(socket: &OwnedFd, family: i32) -> pb::IpOptsEntry {
    let int = |level: i32, name: i32| sys::socket::socket_option(socket.as_raw_fd(), level, name).ok();
    if family == libc::AF_INET6 {
        return pb::IpOptsEntry { freebind: int(libc::IPPROTO_IPV6, IPV6_FREEBIND).map(|v| v != 0), ..Default::default() };
    }
    pb::IpOptsEntry {
        freebind: int(libc::IPPROTO_IP, libc::IP_FREEBIND).map(|v| v != 0),
        pktinfo: int(libc::IPPROTO_IP, libc::IP_PKTINFO).map(|v| v != 0),
        tos: int(libc::IPPROTO_IP, libc::IP_TOS).map(|v| v as u32),
        ttl: int(libc::IPPROTO_IP, libc::IP_TTL).map(|v| v as u32),
        ..Default::default()
    }
}

/// Sets the IP-level options (before bind: IP_FREEBIND lets it bind an address the
/// machine no longer has). IP_TTL is set only when it is not the system's default.
pub(crate) fn apply_ip(fd: &OwnedFd, ip: &pb::IpOptsEntry, family: i32, what: &str) -> Result<(), FileError> {
    let raw = fd.as_raw_fd();
    let set = |level: i32, name: i32, value: i32, option: &str| {
        sys::socket::set_socket_option(raw, level, name, value).map_err(file_io(format!("{what}: {option} {value}")))
    };
    if ip.freebind == Some(true) {
        if family == libc::AF_INET6 {
            set(libc::IPPROTO_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND")?;
        } else {
            set(libc::IPPROTO_IP, libc::IP_FREEBIND, 1, "IP_FREEBIND")?;
        }
    }
    if family != libc::AF_INET {
        return Ok(());
    }
    if ip.pktinfo == Some(true) {
        set(libc::IPPROTO_IP, libc::IP_PKTINFO, 1, "IP_PKTINFO")?;
    }
    if let Some(tos) = ip.tos.filter(|&t| t != 0) {
        set(libc::IPPROTO_IP, libc::IP_TOS, tos as i32, "IP_TOS")?;
    }
    if let Some(ttl) = ip.ttl {
        let now = sys::socket::socket_option(raw, libc::IPPROTO_IP, libc::IP_TTL).unwrap_or(-1);
        if now != ttl as i32 {
            set(libc::IPPROTO_IP, libc::IP_TTL, ttl as i32, "IP_TTL")?;
        }
    }
    Ok(())
}
