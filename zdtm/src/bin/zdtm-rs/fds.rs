//! Fds that are not regular files: pipes (unread data, capacity, O_NONBLOCK, ends held by
//! a parent and its child), FIFOs, unix sockets (socketpairs of every type with queued
//! messages, listeners with path and abstract names, a bound datagram socket with
//! queued datagrams), eventfd, signalfd, timerfd and epoll.
//!
//! Unsafe: raw pipe/socket/eventfd/signalfd/timerfd/epoll/fork calls on fds and
//! processes this module creates.
#![allow(unsafe_code)]

use crust_zdtm::testlib::{ensure, random_u64, Test, READY_FD_ENV};
use std::os::fd::RawFd;

fn check(rc: i64, what: &str) -> Result<i64, String> {
    if rc < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(rc)
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&random_u64().to_ne_bytes());
    }
    out.truncate(len);
    out
}

fn pipe_pair() -> Result<(RawFd, RawFd), String> {
    let mut ends = [0; 2];
    // SAFETY: `ends` is two c_ints.
    check(unsafe { libc::pipe(ends.as_mut_ptr()) } as i64, "pipe")?;
    Ok((ends[0], ends[1]))
}

fn write_all(fd: RawFd, mut data: &[u8]) -> Result<(), String> {
    while !data.is_empty() {
        // SAFETY: data is readable for its length.
        let n = check(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) } as i64, "write")?;
        data = &data[n as usize..];
    }
    Ok(())
}

/// One read(2) into a buffer of `max` bytes.
fn read_once(fd: RawFd, max: usize) -> Result<Vec<u8>, std::io::Error> {
    let mut buf = vec![0u8; max];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Reads until `len` bytes came (a blocking fd) or the fd has nothing more.
fn read_exactly(fd: RawFd, len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while out.len() < len {
        let chunk = read_once(fd, len - out.len()).map_err(|e| format!("read fd {fd}: {e} after {} bytes", out.len()))?;
        if chunk.is_empty() {
            break;
        }
        out.extend(chunk);
    }
    Ok(out)
}

fn queued(fd: RawFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    n
}

fn fcntl(fd: RawFd, cmd: i32) -> i32 {
    // SAFETY: a query without pointers.
    unsafe { libc::fcntl(fd, cmd) }
}

/// Pipes: one inside the process with unread data, a 256 KiB capacity and O_NONBLOCK on
/// its read end; one from the parent to a forked child and one back, both with unread
/// data at dump time, plus a "go" pipe the child sleeps on.
pub fn pipe_data(test: &mut Test) -> Result<(), String> {
    let (local_read, local_write) = pipe_pair()?;
    check(unsafe_setpipe(local_write, 256 * 1024) as i64, "F_SETPIPE_SZ")?;
    // SAFETY: fcntl on our own fd.
    check(unsafe { libc::fcntl(local_read, libc::F_SETFL, libc::O_NONBLOCK) } as i64, "O_NONBLOCK")?;
    let local_data = random_bytes(100_000);
    write_all(local_write, &local_data)?;

    let (down_read, down_write) = pipe_pair()?;
    let (up_read, up_write) = pipe_pair()?;
    let (go_read, go_write) = pipe_pair()?;
    let down_data = random_bytes(3000 + (random_u64() % 1000) as usize);
    let up_data = random_bytes(1000 + (random_u64() % 1000) as usize);
    // SAFETY: single-threaded; the child only runs the code below and _exits.
    let child = check(unsafe { libc::fork() } as i64, "fork")? as i32;
    if child == 0 {
        if let Some(fd) = std::env::var(READY_FD_ENV).ok().and_then(|v| v.parse::<RawFd>().ok()) {
            // SAFETY: closing the inherited ready pipe, which only the parent reports on.
            unsafe { libc::close(fd) };
        }
        // SAFETY: closing the parent's ends of our pipes.
        unsafe {
            libc::close(down_write);
            libc::close(up_read);
            libc::close(go_write);
        }
        let verdict = (|| -> Result<(), String> {
            write_all(up_write, &up_data)?;
            let go = read_exactly(go_read, 1)?;
            ensure(go == b"g", || format!("go pipe gave {go:?}"))?;
            let got = read_exactly(down_read, down_data.len())?;
            ensure(got == down_data, || format!("child read {} bytes, not the {} written before the dump", got.len(), down_data.len()))
        })();
        let byte = if verdict.is_ok() { b"k" } else { b"f" };
        let _ = write_all(up_write, byte);
        if let Err(e) = verdict {
            eprintln!("child: {e}");
        }
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closing the child's ends.
    unsafe {
        libc::close(down_read);
        libc::close(up_write);
        libc::close(go_read);
    }
    write_all(down_write, &down_data)?;
    while queued(up_read) < up_data.len() as i32 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let local_flags = fcntl(local_read, libc::F_GETFL);
    test.ready();
    test.wait_for_term();

    ensure(fcntl(local_write, libc::F_GETPIPE_SZ) == 256 * 1024, || {
        format!("pipe size {}, was {}", fcntl(local_write, libc::F_GETPIPE_SZ), 256 * 1024)
    })?;
    ensure(fcntl(local_read, libc::F_GETFL) == local_flags, || "read end lost its flags (O_NONBLOCK)".into())?;
    let got = read_exactly(local_read, local_data.len())?;
    ensure(got == local_data, || format!("local pipe gave {} bytes, {} were written", got.len(), local_data.len()))?;
    let empty = read_once(local_read, 1);
    ensure(empty.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EAGAIN), || {
        format!("non-blocking empty pipe read gave {empty:?}")
    })?;
    let from_child = read_exactly(up_read, up_data.len())?;
    ensure(from_child == up_data, || "bytes the child wrote before the dump changed".into())?;
    write_all(go_write, b"g")?;
    let verdict = read_exactly(up_read, 1)?;
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    ensure(verdict == b"k", || format!("child's verdict {verdict:?} (see the log)"))
}

fn unsafe_setpipe(fd: RawFd, size: i32) -> i32 {
    // SAFETY: no pointers.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size) }
}

/// A FIFO open for reading (O_NONBLOCK) and writing, with unread data.
pub fn fifo_data(test: &mut Test) -> Result<(), String> {
    let path = test.path("fifo");
    let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: c_path is NUL-terminated.
    check(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } as i64, "mkfifo")?;
    // SAFETY: c_path is NUL-terminated.
    let reader = check(unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) } as i64, "open fifo ro")? as RawFd;
    // SAFETY: c_path is NUL-terminated.
    let writer = check(unsafe { libc::open(c_path.as_ptr(), libc::O_WRONLY) } as i64, "open fifo wo")? as RawFd;
    let data = random_bytes(5000);
    write_all(writer, &data)?;
    test.ready();
    test.wait_for_term();
    let got = read_exactly(reader, data.len())?;
    ensure(got == data, || format!("fifo gave {} bytes, {} were written", got.len(), data.len()))?;
    write_all(writer, b"after")?;
    ensure(read_exactly(reader, 5)? == b"after", || "fifo ends are no longer connected".into())
}

fn socketpair(kind: i32) -> Result<(RawFd, RawFd), String> {
    let mut ends = [0; 2];
    // SAFETY: `ends` is two c_ints.
    check(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, ends.as_mut_ptr()) } as i64, "socketpair")?;
    Ok((ends[0], ends[1]))
}

fn send(fd: RawFd, data: &[u8]) -> Result<(), String> {
    // SAFETY: data is readable for its length.
    let n = check(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), 0) } as i64, "send")?;
    ensure(n as usize == data.len(), || format!("short send {n}"))
}

fn recv(fd: RawFd, max: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; max];
    // SAFETY: buf is writable for its length.
    let n = check(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) } as i64, "recv")?;
    buf.truncate(n as usize);
    Ok(buf)
}

fn unix_address(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as u16;
    for (slot, byte) in address.sun_path.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    (address, (2 + name.len()) as libc::socklen_t)
}

fn bound_socket(kind: i32, name: &[u8]) -> Result<RawFd, String> {
    // SAFETY: no pointers.
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, kind, 0) } as i64, "socket")? as RawFd;
    let (address, len) = unix_address(name);
    // SAFETY: address lives across the call.
    check(unsafe { libc::bind(fd, (&address as *const libc::sockaddr_un).cast(), len) } as i64, "bind")?;
    Ok(fd)
}

fn connected_socket(kind: i32, name: &[u8]) -> Result<RawFd, String> {
    // SAFETY: no pointers.
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, kind, 0) } as i64, "socket")? as RawFd;
    let (address, len) = unix_address(name);
    // SAFETY: address lives across the call.
    check(unsafe { libc::connect(fd, (&address as *const libc::sockaddr_un).cast(), len) } as i64, "connect")?;
    Ok(fd)
}

/// Unix sockets: stream, datagram and seqpacket socketpairs with messages queued both
/// ways (boundaries kept), a stream pair whose other end is closed (data, then EOF),
/// stream listeners on a path and an abstract name, and a bound datagram socket with
/// datagrams queued from a client connected to it.
pub fn unix_sockets(test: &mut Test) -> Result<(), String> {
    let mut pairs = Vec::new();
    for kind in [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET] {
        let (a, b) = socketpair(kind)?;
        let to_b: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(100 * (i + 1) + (random_u64() % 50) as usize)).collect();
        let to_a = vec![random_bytes(777)];
        for m in &to_b {
            send(a, m)?;
        }
        for m in &to_a {
            send(b, m)?;
        }
        pairs.push((kind, a, b, to_b, to_a));
    }
    let (lonely, gone) = socketpair(libc::SOCK_STREAM)?;
    let lonely_data = random_bytes(4321);
    send(gone, &lonely_data)?;
    // SAFETY: closing our own fd.
    unsafe { libc::close(gone) };

    let path = test.path("listener.sock");
    let path_name = path.to_string_lossy().as_bytes().to_vec();
    let abstract_name = format!("\0crust-zdtm-{:016x}", random_u64()).into_bytes();
    let mut listeners = Vec::new();
    for name in [&path_name, &abstract_name] {
        let fd = bound_socket(libc::SOCK_STREAM, name)?;
        // SAFETY: no pointers.
        check(unsafe { libc::listen(fd, 5) } as i64, "listen")?;
        listeners.push((fd, name.clone()));
    }
    let dgram_path = test.path("dgram.sock").to_string_lossy().as_bytes().to_vec();
    let server = bound_socket(libc::SOCK_DGRAM, &dgram_path)?;
    let client = connected_socket(libc::SOCK_DGRAM, &dgram_path)?;
    let datagrams = [random_bytes(10), random_bytes(2000)];
    for d in &datagrams {
        send(client, d)?;
    }
    test.ready();
    test.wait_for_term();

    for (kind, a, b, to_b, to_a) in &pairs {
        let stream = *kind == libc::SOCK_STREAM;
        for (receiver, messages) in [(*b, to_b), (*a, to_a)] {
            if stream {
                let all: Vec<u8> = messages.concat();
                let got = recv(receiver, all.len() + 100)?;
                ensure(got == all, || format!("stream pair: {} bytes queued, {} came", all.len(), got.len()))?;
            } else {
                for m in messages {
                    let got = recv(receiver, 65536)?;
                    ensure(got == *m, || format!("type {kind}: a {}-byte message came back as {} bytes", m.len(), got.len()))?;
                }
            }
        }
        send(*a, b"ping")?;
        ensure(recv(*b, 100)? == b"ping", || format!("type {kind}: pair no longer connected"))?;
    }
    let got = recv(lonely, 10000)?;
    ensure(got == lonely_data, || format!("closed peer's {} bytes came back as {}", lonely_data.len(), got.len()))?;
    ensure(recv(lonely, 10)?.is_empty(), || "no EOF after a closed peer's data".into())?;

    for (fd, name) in &listeners {
        let client = connected_socket(libc::SOCK_STREAM, name)?;
        // SAFETY: no address asked for.
        let accepted = check(unsafe { libc::accept(*fd, std::ptr::null_mut(), std::ptr::null_mut()) } as i64, "accept")? as RawFd;
        send(client, b"hello")?;
        ensure(recv(accepted, 10)? == b"hello", || format!("listener {:?}: no data through", String::from_utf8_lossy(name)))?;
    }
    for d in &datagrams {
        let got = recv(server, 65536)?;
        ensure(got == *d, || format!("bound datagram socket: {}-byte datagram came as {} bytes", d.len(), got.len()))?;
    }
    send(client, b"again")?;
    ensure(recv(server, 100)? == b"again", || "datagram client no longer connected to the server".into())
}

fn read_u64(fd: RawFd) -> Result<u64, std::io::Error> {
    let bytes = read_once(fd, 8)?;
    Ok(u64::from_ne_bytes(bytes.try_into().map_err(|_| std::io::Error::other("short read"))?))
}

fn fdinfo_lines(fd: RawFd, prefix: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.split("pos:").next().unwrap_or(l).split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// eventfd (a counter, a semaphore), signalfd (mask, a signal read through it),
/// timerfds (an armed one with an interval, an expired one with unread ticks) and an
/// epoll watching an eventfd and a pipe with their events and data.
pub fn event_fds(test: &mut Test) -> Result<(), String> {
    let counter = 1 + random_u64() % 1000;
    // SAFETY: no pointers.
    let counting = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) } as i64, "eventfd")? as RawFd;
    write_all(counting, &counter.to_ne_bytes())?;
    // SAFETY: no pointers.
    let semaphore = check(unsafe { libc::eventfd(3, libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK) } as i64, "eventfd")? as RawFd;
    // Kernels before 6.3 do not show EFD_SEMAPHORE in fdinfo, so no checkpointer can
    // see it there: the semaphore is left out on them.
    let semaphore = if fdinfo_lines(semaphore, "eventfd-semaphore").is_empty() {
        eprintln!("fdinfo has no eventfd-semaphore (Linux < 6.3): semaphore eventfd left out");
        // SAFETY: our own fd, not used again.
        unsafe { libc::close(semaphore) };
        None
    } else {
        Some(semaphore)
    };

    // SAFETY: sigset_t is plain data, built by sigemptyset/sigaddset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: set lives across the call.
    let signals = check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK) } as i64, "signalfd")? as RawFd;

    let timer = |clock: i32, value: libc::timespec, interval: libc::timespec| -> Result<RawFd, String> {
        // SAFETY: no pointers.
        let fd = check(unsafe { libc::timerfd_create(clock, libc::TFD_NONBLOCK) } as i64, "timerfd_create")? as RawFd;
        let spec = libc::itimerspec { it_value: value, it_interval: interval };
        // SAFETY: spec lives across the call.
        check(unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } as i64, "timerfd_settime")?;
        Ok(fd)
    };
    let armed = timer(libc::CLOCK_MONOTONIC, libc::timespec { tv_sec: 100, tv_nsec: 0 }, libc::timespec { tv_sec: 7, tv_nsec: 500 })?;
    let expired = timer(libc::CLOCK_MONOTONIC, libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 }, libc::timespec { tv_sec: 0, tv_nsec: 0 })?;
    std::thread::sleep(std::time::Duration::from_millis(20));

    let (pipe_read, pipe_write) = pipe_pair()?;
    // SAFETY: no pointers.
    let epoll = check(unsafe { libc::epoll_create1(0) } as i64, "epoll_create1")? as RawFd;
    let watch = |fd: RawFd, events: u32, data: u64| -> Result<(), String> {
        let mut event = libc::epoll_event { events, u64: data };
        // SAFETY: event lives across the call.
        check(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) } as i64, "epoll_ctl").map(|_| ())
    };
    let eventfd_data = random_u64();
    watch(counting, libc::EPOLLIN as u32, eventfd_data)?;
    watch(pipe_read, (libc::EPOLLIN | libc::EPOLLET) as u32, 7)?;
    let watches_before = fdinfo_lines(epoll, "tfd:");
    let sigmask_before = fdinfo_lines(signals, "sigmask:");
    test.ready();
    test.wait_for_term();

    ensure(read_u64(counting).map_err(|e| e.to_string())? == counter, || "eventfd counter changed".into())?;
    if let Some(semaphore) = semaphore {
        for _ in 0..3 {
            ensure(read_u64(semaphore).map_err(|e| e.to_string())? == 1, || "semaphore eventfd read is not 1".into())?;
        }
        ensure(read_u64(semaphore).is_err(), || "semaphore eventfd counted more than 3".into())?;
    }

    ensure(fdinfo_lines(signals, "sigmask:") == sigmask_before, || {
        format!("signalfd mask {:?}, was {sigmask_before:?}", fdinfo_lines(signals, "sigmask:"))
    })?;
    // SAFETY: raising a blocked signal at ourselves.
    unsafe { libc::raise(libc::SIGUSR2) };
    let info = read_once(signals, std::mem::size_of::<libc::signalfd_siginfo>()).map_err(|e| format!("read signalfd: {e}"))?;
    let signo = u32::from_ne_bytes(info[0..4].try_into().map_err(|_| "short signalfd read")?);
    ensure(signo == libc::SIGUSR2 as u32, || format!("signalfd gave signal {signo}"))?;

    // SAFETY: itimerspec is plain data, filled in by the kernel.
    let mut now: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: now is writable.
    check(unsafe { libc::timerfd_gettime(armed, &mut now) } as i64, "timerfd_gettime")?;
    ensure(now.it_interval.tv_sec == 7 && now.it_interval.tv_nsec == 500, || "timerfd interval changed".into())?;
    ensure(now.it_value.tv_sec > 0 && now.it_value.tv_sec <= 100, || format!("timerfd has {}s left", now.it_value.tv_sec))?;
    ensure(read_u64(armed).is_err(), || "armed timerfd fired early".into())?;
    let ticks = read_u64(expired).map_err(|e| format!("expired timerfd: {e}"))?;
    ensure(ticks == 1, || format!("expired timerfd gave {ticks} ticks"))?;

    let watches_after = fdinfo_lines(epoll, "tfd:");
    ensure(watches_after == watches_before, || format!("epoll watches {watches_after:?}, were {watches_before:?}"))?;
    write_all(counting, &1u64.to_ne_bytes())?;
    write_all(pipe_write, b"x")?;
    // SAFETY: epoll_event is plain data.
    let mut events: [libc::epoll_event; 4] = unsafe { std::mem::zeroed() };
    // SAFETY: events is writable for 4 entries.
    let n = check(unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 4, 1000) } as i64, "epoll_wait")?;
    let mut seen: Vec<u64> = events[..n as usize].iter().map(|e| e.u64).collect();
    seen.sort();
    let mut expected = vec![7, eventfd_data];
    expected.sort();
    ensure(seen == expected, || format!("epoll reported data {seen:x?}, expected {expected:x?}"))
}

/// Inet sockets: TCP listeners on 127.0.0.1 and ::1 (same port after restore, accepting),
/// a UDP socket bound on 127.0.0.1 with datagrams queued from a UDP client connected to
/// it (the client stays connected).
pub fn inet_sockets(test: &mut Test) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    let mut listeners = vec![TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind tcp v4: {e}"))?];
    match TcpListener::bind("[::1]:0") {
        Ok(listener) => listeners.push(listener),
        Err(e) => eprintln!("no IPv6 loopback ({e}): v6 listener left out"),
    }
    let addresses: Vec<_> = listeners.iter().map(|l| l.local_addr()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let server = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind udp: {e}"))?;
    server.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server_address = server.local_addr().map_err(|e| e.to_string())?;
    let client = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind udp client: {e}"))?;
    client.connect(server_address).map_err(|e| format!("connect udp: {e}"))?;
    let datagrams = [random_bytes(33), random_bytes(1200)];
    for d in &datagrams {
        client.send(d).map_err(|e| format!("send: {e}"))?;
    }
    while queued(std::os::fd::AsRawFd::as_raw_fd(&server)) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    test.ready();
    test.wait_for_term();

    for (listener, address) in listeners.iter().zip(&addresses) {
        ensure(listener.local_addr().ok().as_ref() == Some(address), || format!("listener moved from {address}"))?;
        let mut connection = TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
        let (mut accepted, _) = listener.accept().map_err(|e| format!("accept on {address}: {e}"))?;
        connection.write_all(b"tcp").map_err(|e| e.to_string())?;
        let mut word = [0u8; 3];
        accepted.read_exact(&mut word).map_err(|e| e.to_string())?;
        ensure(&word == b"tcp", || "no data through the accepted connection".into())?;
    }
    ensure(server.local_addr().ok() == Some(server_address), || "udp socket moved".into())?;
    let mut buf = vec![0u8; 65536];
    for d in &datagrams {
        let n = server.recv(&mut buf).map_err(|e| format!("recv queued datagram: {e}"))?;
        ensure(buf[..n] == d[..], || format!("{}-byte datagram came back as {n} bytes", d.len()))?;
    }
    client.send(b"again").map_err(|e| format!("send after restore: {e}"))?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let n = server.recv(&mut buf).map_err(|e| format!("recv after restore: {e}"))?;
    ensure(&buf[..n] == b"again", || "udp client no longer reaches the server".into())
}

fn lock_range(fd: RawFd, command: i32, kind: i32, start: i64, len: i64) -> i32 {
    // SAFETY: flock is plain data; all-zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = len;
    // SAFETY: lock lives across the call.
    unsafe { libc::fcntl(fd, command, &lock) }
}

/// The lock lines of an fd without pid and inode (both change across restore).
fn lock_lines(fd: RawFd) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("lock:"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {} {}", words[2], words[3], words[4], words.get(7).unwrap_or(&""), words.get(8).unwrap_or(&""))
        })
        .collect()
}

/// File locks: flock (exclusive), POSIX (a write range and a read range to EOF) and an
/// OFD lock; after restore they are listed again and still conflict with new ones.
pub fn file_locks(test: &mut Test) -> Result<(), String> {
    let dir = test.outdir.clone();
    let open = |name: &str| -> Result<std::fs::File, String> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(name))
            .map_err(|e| format!("open {name}: {e}"))
    };
    use std::os::fd::AsRawFd;
    let flocked = open("flock.dat")?;
    // SAFETY: no pointers.
    check(unsafe { libc::flock(flocked.as_raw_fd(), libc::LOCK_EX) } as i64, "flock")?;
    let posix = open("posix.dat")?;
    check(lock_range(posix.as_raw_fd(), libc::F_SETLK, libc::F_WRLCK, 10, 10) as i64, "F_SETLK write")?;
    check(lock_range(posix.as_raw_fd(), libc::F_SETLK, libc::F_RDLCK, 100, 0) as i64, "F_SETLK read")?;
    let ofd = open("ofd.dat")?;
    check(lock_range(ofd.as_raw_fd(), libc::F_OFD_SETLK, libc::F_WRLCK, 0, 4096) as i64, "F_OFD_SETLK")?;
    let fds = [flocked.as_raw_fd(), posix.as_raw_fd(), ofd.as_raw_fd()];
    let before: Vec<Vec<String>> = fds.iter().map(|fd| lock_lines(*fd)).collect();
    test.ready();
    test.wait_for_term();

    let after: Vec<Vec<String>> = fds.iter().map(|fd| lock_lines(*fd)).collect();
    ensure(after == before, || format!("locks {after:?}, were {before:?}"))?;
    let other = open("flock.dat")?;
    // SAFETY: no pointers.
    let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    ensure(rc != 0, || "flock no longer held: a second description took it".into())?;
    let other = open("ofd.dat")?;
    let rc = lock_range(other.as_raw_fd(), libc::F_OFD_SETLK, libc::F_WRLCK, 100, 1);
    ensure(rc != 0, || "OFD lock no longer held".into())?;
    // A POSIX lock conflicts only with other processes.
    let path = test.path("posix.dat");
    // SAFETY: single-threaded; the child only tries a lock and _exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let code = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => {
                let write_conflict = lock_range(file.as_raw_fd(), libc::F_SETLK, libc::F_WRLCK, 15, 1) != 0;
                let read_conflict = lock_range(file.as_raw_fd(), libc::F_SETLK, libc::F_WRLCK, 5000, 1) != 0;
                let free = lock_range(file.as_raw_fd(), libc::F_SETLK, libc::F_WRLCK, 50, 1) == 0;
                if write_conflict && read_conflict && free { 0 } else { 1 }
            }
            Err(_) => 2,
        };
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    ensure(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, || {
        format!("POSIX locks do not conflict as before (child status {status:#x})")
    })
}

/// inotify: a directory watched for IN_CREATE and a file for IN_MODIFY; after restore
/// the watches keep their watch descriptors and masks and report new events.
pub fn inotify_watches(test: &mut Test) -> Result<(), String> {
    let dir = test.path(&format!("watched-{:08x}", random_u64() as u32));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir: {e}"))?;
    let file = test.path("watched.txt");
    std::fs::write(&file, b"x").map_err(|e| format!("write: {e}"))?;
    // SAFETY: no pointers.
    let fd = check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK) } as i64, "inotify_init1")? as RawFd;
    let add = |path: &std::path::Path, mask: u32| -> Result<i32, String> {
        let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: c_path is NUL-terminated.
        Ok(check(unsafe { libc::inotify_add_watch(fd, c_path.as_ptr(), mask) } as i64, "inotify_add_watch")? as i32)
    };
    let dir_wd = add(&dir, libc::IN_CREATE)?;
    let file_wd = add(&file, libc::IN_MODIFY)?;
    let watch_lines = |fd: RawFd| -> Vec<String> {
        std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("inotify"))
            .map(|l| l.split_whitespace().filter(|w| w.starts_with("wd:") || w.starts_with("mask:")).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let before = watch_lines(fd);
    test.ready();
    test.wait_for_term();

    ensure(watch_lines(fd) == before, || format!("watches {:?}, were {before:?}", watch_lines(fd)))?;
    std::fs::write(dir.join("new-file"), b"y").map_err(|e| format!("create in watched dir: {e}"))?;
    std::fs::OpenOptions::new().append(true).open(&file).and_then(|mut f| std::io::Write::write_all(&mut f, b"z")).map_err(|e| format!("modify: {e}"))?;
    let events = read_once(fd, 4096).map_err(|e| format!("read inotify: {e}"))?;
    let mut wds = Vec::new();
    let mut at = 0;
    while at + 16 <= events.len() {
        let wd = i32::from_ne_bytes(events[at..at + 4].try_into().map_err(|_| "short event")?);
        let len = u32::from_ne_bytes(events[at + 12..at + 16].try_into().map_err(|_| "short event")?) as usize;
        wds.push(wd);
        at += 16 + len;
    }
    ensure(wds.contains(&dir_wd) && wds.contains(&file_wd), || {
        format!("events for wds {wds:?}, expected {dir_wd} and {file_wd}")
    })
}
