//! What `crust restore --lazy-pages` sends the daemon for each process: an 8-byte head
//! (body length u32, host pid i32, little-endian) carrying the process's userfaultfd
//! (SCM_RIGHTS), then the body, text: `id N` (the process's pid in the images, which
//! names it to a page server), then `area START END` lines, each followed by its
//! `run ADDR BYTES OFFSET PATH` lines (numbers in hex, the path to the end of the
//! line) and `source ADDR BYTES` lines (pages left at the source). The restore closes
//! the connection once every process is sent.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::{LazyArea, LazyError, LazyRun};
use crate::sys;

/// The restore's connection to the daemon.
pub(crate) struct Handoff {
    stream: UnixStream,
    path: PathBuf,
}

impl Handoff {
    /// Connects to the daemon's socket.
    pub(crate) fn connect(path: &Path) -> Result<Handoff, LazyError> {
        let stream = UnixStream::connect(path).map_err(|source| LazyError::Io {
            what: format!("connect to the lazy-pages daemon at {} (start `crust lazy-pages -D DIR` first)", path.display()),
            source,
        })?;
        Ok(Handoff { stream, path: path.to_path_buf() })
    }

    /// Hands process `pid`'s userfaultfd and lazy areas over.
    pub(crate) fn send(&mut self, pid: i32, image_pid: u64, uffd: &OwnedFd, areas: &[LazyArea]) -> Result<(), LazyError> {
        let body = encode(image_pid, areas);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&pid.to_le_bytes());
        let io = |what: &str| {
            let what = format!("{what} for pid {pid} to {}", self.path.display());
            move |source| LazyError::Io { what, source }
        };
        sys::socket::send_with_fds(self.stream.as_raw_fd(), &head, &[uffd.as_raw_fd()]).map_err(io("send the userfaultfd"))?;
        self.stream.write_all(body.as_bytes()).map_err(io("send the lazy areas"))
    }
}

/// Reads the next process from the restore: `None` once it closed the connection.
pub(crate) fn receive(stream: &mut UnixStream) -> Result<Option<(i32, u64, OwnedFd, Vec<LazyArea>)>, LazyError> {
    let io = |what: &'static str| move |source| LazyError::Io { what: what.to_string(), source };
    let mut head = [0u8; 8];
    let (first, fd) = sys::socket::receive_with_fd(stream.as_raw_fd(), &mut head).map_err(io("read from the restore"))?;
    if first == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut head[first..]).map_err(io("read from the restore"))?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let pid = i32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    let fd = fd.ok_or_else(|| LazyError::Protocol { what: format!("pid {pid}: no userfaultfd came with its areas") })?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(io("read from the restore"))?;
    let text = String::from_utf8(body).map_err(|_| LazyError::Protocol { what: format!("pid {pid}: areas not in UTF-8") })?;
    let (image_pid, areas) = decode(&text).ok_or_else(|| LazyError::Protocol { what: format!("pid {pid}: malformed areas") })?;
    Ok(Some((pid, image_pid, fd, areas)))
}

/// The body's text. Pure.
pub(crate) fn encode(image_pid: u64, areas: &[LazyArea]) -> String {
    let mut out = format!("id {image_pid}\n");
    for area in areas {
        out.push_str(&format!("area {:x} {:x}\n", area.start, area.end));
        for run in &area.runs {
            match &run.file {
                Some(file) => out.push_str(&format!("run {:x} {:x} {:x} {}\n", run.addr, run.bytes, run.offset, file.display())),
                None => out.push_str(&format!("source {:x} {:x}\n", run.addr, run.bytes)),
            }
        }
    }
    out
}

/// Areas from the body's text, or `None` when it is malformed. Pure.
pub(crate) fn decode(text: &str) -> Option<(u64, Vec<LazyArea>)> {
    let hex = |word: Option<&str>| u64::from_str_radix(word?, 16).ok();
    let mut lines = text.lines();
    let image_pid = lines.next()?.strip_prefix("id ")?.parse().ok()?;
    let mut areas: Vec<LazyArea> = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("source ") {
            let mut words = rest.split(' ');
            let (addr, bytes) = (hex(words.next())?, hex(words.next())?);
            let area = areas.last_mut()?;
            (words.next().is_none() && addr >= area.start && addr.checked_add(bytes)? <= area.end).then_some(())?;
            area.runs.push(LazyRun { addr, bytes, file: None, offset: 0 });
        } else if let Some(rest) = line.strip_prefix("area ") {
            let mut words = rest.split(' ');
            let (start, end) = (hex(words.next())?, hex(words.next())?);
            (start < end).then_some(())?;
            areas.push(LazyArea { start, end, runs: Vec::new() });
        } else if let Some(rest) = line.strip_prefix("run ") {
            let mut words = rest.splitn(4, ' ');
            let (addr, bytes, offset) = (hex(words.next())?, hex(words.next())?, hex(words.next())?);
            let file = Some(PathBuf::from(words.next()?));
            let area = areas.last_mut()?;
            (addr >= area.start && addr.checked_add(bytes)? <= area.end).then_some(())?;
            area.runs.push(LazyRun { addr, bytes, file, offset });
        } else {
            return None;
        }
    }
    Some((image_pid, areas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_round_trip_and_bad_text_is_refused() {
        let areas = vec![
            LazyArea {
                start: 0x1000,
                end: 0x9000,
                runs: vec![
                    LazyRun { addr: 0x2000, bytes: 0x3000, file: Some("/d/pages 1.img".into()), offset: 0x1000 },
                    LazyRun { addr: 0x6000, bytes: 0x2000, file: None, offset: 0 },
                ],
            },
            LazyArea { start: 0x10000, end: 0x11000, runs: Vec::new() },
        ];
        assert_eq!(decode(&encode(77, &areas)), Some((77, areas)));
        assert_eq!(decode("id 1\nrun 1 1 0 /x\n"), None);
        assert_eq!(decode("area 1000 2000\n"), None);
        assert_eq!(decode("id 1\narea 9 1\n"), None);
        assert_eq!(decode("id 1\narea 1000 2000\nrun 1000 2000 0 /x\n"), None);
        assert_eq!(decode("id 1\narea 1000 2000\nsource 1000 2000\n"), None);
        assert_eq!(decode("id 1\nbogus\n"), None);
    }
}
