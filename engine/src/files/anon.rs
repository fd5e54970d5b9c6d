//! Anon-inode fds whose whole state is in /proc/PID/fdinfo: eventfd (counter, semaphore
//! mode), signalfd (mask), timerfd (clock, remaining time, interval, unread ticks) and
//! epoll (watched fd numbers, events, data). Parsers are pure; the broker creates the
//! objects, and each restored process adds its epoll watches once its fds are in place.

use std::os::fd::{AsRawFd, OwnedFd};

use super::{file_io, FileError};
use crust_images::pb;

use crate::sys;
use crate::procfs::parse_key_values;

/// EFD_SEMAPHORE, kept in bit 0 of `eventfd_file_entry.flags`: an eventfd's file flags
/// always have O_RDWR as access mode, so bit 0 (O_WRONLY) is otherwise never set.
pub(crate) const EVENTFD_SEMAPHORE: u32 = 1;

/// Builds an eventfd entry from its fdinfo text.
pub(crate) fn parse_eventfd(id: u32, flags: u32, fdinfo: &str) -> Result<pb::EventfdFileEntry, FileError> {
    let kv = parse_key_values(fdinfo);
    let counter = kv
        .get("eventfd-count")
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| FileError::refused("fdinfo has no eventfd-count"))?;
    let semaphore = kv.get("eventfd-semaphore").is_some_and(|v| v.trim() == "1");
    Ok(pb::EventfdFileEntry {
        id,
        flags: (flags & !(libc::O_ACCMODE as u32)) | libc::O_RDWR as u32 | if semaphore { EVENTFD_SEMAPHORE } else { 0 },
        fown: Default::default(),
        counter,
    })
}

/// Builds a signalfd entry from its fdinfo text (`sigmask:` is the mask as given).
pub(crate) fn parse_signalfd(id: u32, flags: u32, fdinfo: &str) -> Result<pb::SignalfdEntry, FileError> {
    let kv = parse_key_values(fdinfo);
    let sigmask = kv.get("sigmask").and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).ok_or_else(|| FileError::refused("fdinfo has no sigmask"))?;
    Ok(pb::SignalfdEntry { id, flags, fown: Default::default(), sigmask })
}

fn pair(value: &str) -> Option<(u64, u64)> {
    let inner = value.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (a, b) = inner.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Builds a timerfd entry from its fdinfo text; `it_value` is the time left.
pub(crate) fn parse_timerfd(id: u32, flags: u32, fdinfo: &str) -> Result<pb::TimerfdEntry, FileError> {
    let kv = parse_key_values(fdinfo);
    let clockid = kv.get("clockid").and_then(|v| v.parse().ok()).ok_or_else(|| FileError::refused("fdinfo has no clockid"))?;
    let ticks = kv.get("ticks").and_then(|v| v.parse().ok()).ok_or_else(|| FileError::refused("fdinfo has no ticks"))?;
    let settime_flags = kv.get("settime flags").and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(0);
    let value = kv.get("it_value").and_then(|v| pair(v)).ok_or_else(|| FileError::refused("fdinfo has no it_value"))?;
    let interval = kv.get("it_interval").and_then(|v| pair(v)).ok_or_else(|| FileError::refused("fdinfo has no it_interval"))?;
    Ok(pb::TimerfdEntry {
        id,
        flags,
        fown: Default::default(),
        clockid,
        ticks,
        settime_flags,
        vsec: value.0,
        vnsec: value.1,
        isec: interval.0,
        insec: interval.1,
    })
}

/// Parses the `tfd:` lines of an epoll's fdinfo: (fd number, events, data).
pub(crate) fn parse_epoll_watches(id: u32, fdinfo: &str) -> Result<Vec<pb::EventpollTfdEntry>, FileError> {
    let mut out = Vec::new();
    for line in fdinfo.lines().filter(|l| l.starts_with("tfd:")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)).copied();
        let bad = || FileError::refused(format!("bad epoll fdinfo line {line:?}"));
        let tfd = field("tfd:").and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let events = field("events:").and_then(|v| u32::from_str_radix(v, 16).ok()).ok_or_else(bad)?;
        let data = field("data:").and_then(|v| u64::from_str_radix(v, 16).ok()).ok_or_else(bad)?;
        out.push(pb::EventpollTfdEntry { id, tfd, events, data, ..Default::default() });
    }
    Ok(out)
}

/// Creates an eventfd with its counter, mode and status flags.
pub(crate) fn create_eventfd(entry: &pb::EventfdFileEntry) -> Result<OwnedFd, FileError> {
    let semaphore = if entry.flags & EVENTFD_SEMAPHORE != 0 { libc::EFD_SEMAPHORE } else { 0 };
    let fd = sys::file::create_eventfd(0, semaphore).map_err(file_io(format!("eventfd {}", entry.id)))?;
    if entry.counter > 0 {
        sys::file::write_all(&fd, &entry.counter.to_ne_bytes()).map_err(file_io(format!("eventfd {}: set counter", entry.id)))?;
    }
    let flags = entry.flags as i32 & !(EVENTFD_SEMAPHORE as i32);
    sys::file::set_status_flags(&fd, flags).map_err(file_io(format!("eventfd {}: flags", entry.id)))?;
    Ok(fd)
}

/// Creates a signalfd with its mask and status flags.
pub(crate) fn create_signalfd(entry: &pb::SignalfdEntry) -> Result<OwnedFd, FileError> {
    let fd = sys::file::create_signalfd(entry.sigmask, 0).map_err(file_io(format!("signalfd {}", entry.id)))?;
    sys::file::set_status_flags(&fd, entry.flags as i32).map_err(file_io(format!("signalfd {}: flags", entry.id)))?;
    Ok(fd)
}

/// Creates a timerfd armed with the time that was left, its interval and unread ticks.
pub(crate) fn create_timerfd(entry: &pb::TimerfdEntry) -> Result<OwnedFd, FileError> {
    let fd = sys::file::create_timerfd(entry.clockid as i32, 0, (entry.vsec, entry.vnsec), (entry.isec, entry.insec))
        .map_err(file_io(format!("timerfd {}", entry.id)))?;
    if entry.ticks > 0 {
        sys::file::set_timerfd_ticks(fd.as_raw_fd(), entry.ticks).map_err(file_io(format!("timerfd {}: set ticks", entry.id)))?;
    }
    sys::file::set_status_flags(&fd, entry.flags as i32).map_err(file_io(format!("timerfd {}: flags", entry.id)))?;
    Ok(fd)
}

/// Creates an empty epoll instance; its watches are added by the owning process.
pub(crate) fn create_epoll(entry: &pb::EventpollFileEntry) -> Result<OwnedFd, FileError> {
    let fd = sys::file::create_epoll().map_err(file_io(format!("epoll {}", entry.id)))?;
    sys::file::set_status_flags(&fd, entry.flags as i32).map_err(file_io(format!("epoll {}: flags", entry.id)))?;
    Ok(fd)
}

/// Adds an epoll's watches from the process that holds it, with its fds installed.
pub(crate) fn add_watches(epfd: i32, entry: &pb::EventpollFileEntry) -> Result<(), FileError> {
    for watch in &entry.tfd {
        sys::fd::epoll_add(epfd, watch.tfd as i32, watch.events, watch.data)
            .map_err(file_io(format!("epoll fd {epfd}: watch fd {}", watch.tfd)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_counter_and_semaphore() {
        let e = parse_eventfd(3, 0o2004002, "pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t1057\neventfd-count:               2a\neventfd-id: 7\neventfd-semaphore: 1\n").unwrap();
        assert_eq!(e.counter, 42);
        assert_eq!(e.flags & EVENTFD_SEMAPHORE, EVENTFD_SEMAPHORE);
    }

    #[test]
    fn timerfd_fields() {
        let t = parse_timerfd(
            1,
            2,
            "clockid: 1\nticks: 3\nsettime flags: 01\nit_value: (4, 500)\nit_interval: (1, 0)\n",
        )
        .unwrap();
        assert_eq!((t.clockid, t.ticks, t.settime_flags, t.vsec, t.vnsec, t.isec, t.insec), (1, 3, 1, 4, 500, 1, 0));
    }

    #[test]
    fn signalfd_mask() {
        let s = parse_signalfd(1, 2, "pos:\t0\nsigmask:\t0000000000004002\n").unwrap();
        assert_eq!(s.sigmask, 0x4002);
    }

    #[test]
    fn epoll_watches() {
        let text = "pos:\t0\nflags:\t02\ntfd:        5 events:       19 data:                5  pos:0 ino:2e sdev:d\ntfd:        7 events: 80000001 data: ffffffffffffffff  pos:0 ino:2e sdev:d\n";
        let w = parse_epoll_watches(9, text).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].tfd, w[0].events, w[0].data), (5, 0x19, 5));
        assert_eq!((w[1].tfd, w[1].events, w[1].data), (7, 0x8000_0001, u64::MAX));
    }
}
