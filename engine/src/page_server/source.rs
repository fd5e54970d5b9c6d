//! The dumping side of a lazy migration (`dump --lazy-pages --address A --port P`): the
//! tree stays frozen after its images are written, and the pages the dump left in it
//! (pagemap runs marked PE_LAZY) are served to the destination's lazy-pages daemon,
//! which asks for them with `GET` as the restored tree touches them and in the
//! background.
//!
//! A `GET` names the process by its plain pid in the images (no type byte) and the
//! address at the dump; the reply is a header (`ADD_F` with PE_PRESENT, the same
//! address and id, the number of pages sent: up to the end of the run the address is
//! in) and the pages, read from the frozen process (`/proc/PID/mem`). A request for
//! pages the dump did not leave here is answered with zero pages, which ends the
//! daemon's work on them. When the dump had a parent whose pages are digests here (a
//! pre-dump sent to a page server), it leaves the comparison with them out of the freeze:
//! every page is PE_LAZY, the dump writes `crust-lazy-parent` beside the images, and a
//! crust daemon asks which pages changed (crust's own `CHANGED`), fetching only those and
//! taking the rest from the parent dump it has. CRIU's daemon fetches every page. The daemon's `FLUSH` (every page is in) is answered and the
//! connection's end lets the dump go on: it kills the tree (or lets it run with
//! `--leave-running`).

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::proto::{self, read_header, Header, HEADER_SIZE, PE_PRESENT};
use super::PageServerError;
use crate::sys;

/// The file a `dump --lazy-pages` writes beside its images when its source answers
/// [`proto::CHANGED`] (its pages to be compared with the parent dump's at the destination).
pub const PARENT_MARKER: &str = "crust-lazy-parent";

/// The most bytes one reply carries.
const MAX_REPLY: u64 = 4 << 20;

/// One frozen process and the runs of pages its dump left in it.
#[derive(Clone, Debug, Default)]
pub struct LeftAtSource {
    /// Its pid in the images (what `GET` names).
    pub id: u64,
    /// Its pid here.
    pub pid: i32,
    /// `start..end` of each run, sorted, apart.
    pub runs: Vec<(u64, u64)>,
    /// The parent dump's page digests, when the dump left the comparison with them to
    /// the destination ([`proto::CHANGED`]) instead of making it while frozen.
    pub parent: Option<super::digests::Digests>,
}

impl LeftAtSource {
    /// Adds the run `start..end` (after every run so far), joining it to the last one
    /// when they touch.
    pub fn push(&mut self, start: u64, end: u64) {
        match self.runs.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => self.runs.push((start, end)),
        }
    }

    /// Bytes left here.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.1 - r.0).sum()
    }

    /// The end of the run holding `vaddr`, if one does.
    fn run_end(&self, vaddr: u64) -> Option<u64> {
        let at = self.runs.partition_point(|r| r.1 <= vaddr);
        self.runs.get(at).filter(|r| r.0 <= vaddr).map(|r| r.1)
    }
}

/// The process and the number of pages a GET or CHANGED asks for: what of the request
/// lies in one run left at the source, at most MAX_REPLY bytes.
fn requested(processes: &[LeftAtSource], header: &Header, page: u64) -> Option<(usize, u64)> {
    let index = processes.iter().position(|p| p.id == header.dst_id)?;
    let end = processes[index].run_end(header.vaddr)?;
    let pages = header.nr_pages.min((end - header.vaddr) / page).min(MAX_REPLY / page);
    (pages > 0).then_some((index, pages))
}

/// What the source served.
#[derive(Clone, Debug, Default)]
pub struct SourceReport {
    pub requests: u64,
    pub pages: u64,
    /// Pages compared with the parent's digests for the destination.
    pub compared: u64,
    /// From the daemon's connection until it ended it.
    pub elapsed: Duration,
}

/// Serves the first connection `listener` accepts (the destination's lazy-pages
/// daemon) until it ends it. `stopped`: asked while no daemon has connected yet; when
/// it says so the wait ends with EINTR (the dump then lets the tree go on, as nothing
/// restored it yet). Once the daemon is connected the tree may run at the destination:
/// the source serves on until the daemon ends.
pub fn serve_left_pages(listener: &TcpListener, processes: &[LeftAtSource], stopped: &dyn Fn() -> bool) -> Result<SourceReport, PageServerError> {
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let accept_error = |source| PageServerError::Io { address: local.clone(), what: "accept the lazy-pages daemon".into(), source };
    listener.set_nonblocking(true).map_err(accept_error)?;
    let (mut stream, peer) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if stopped() {
                    return Err(accept_error(std::io::Error::from_raw_os_error(libc::EINTR)));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(accept_error(error)),
        }
    };
    stream.set_nonblocking(false).map_err(|source| PageServerError::Io { address: local.clone(), what: "set the connection blocking".into(), source })?;
    let peer = peer.to_string();
    log::info!("lazy pages: the destination's daemon connected from {peer}");
    let _ = stream.set_nodelay(true);
    let io = |what: String| {
        let address = peer.clone();
        move |source| PageServerError::Io { address, what, source }
    };
    let mut mems = Vec::new();
    for process in processes {
        let path = format!("/proc/{}/mem", process.pid);
        mems.push(File::open(&path).map_err(io(format!("open {path}")))?);
    }
    let page = sys::page_size();
    let mut report = SourceReport::default();
    let mut buffer = vec![0u8; MAX_REPLY as usize];
    let started = Instant::now();
    loop {
        let mut bytes = [0u8; HEADER_SIZE];
        match read_header(&mut stream, &mut bytes) {
            Ok(true) => {}
            Ok(false) => break,
            Err(source) => return Err(io("read a request".into())(source)),
        }
        let header = Header::decode(&bytes);
        match header.command {
            proto::GET => {
                report.requests += 1;
                let found = requested(processes, &header, page);
                let Some((index, pages)) = found else {
                    log::warn!("lazy pages: GET of {} pages at {:#x} of pid {}: not left at the source; answered with none", header.nr_pages, header.vaddr, header.dst_id);
                    let none = Header { command: proto::ADD_F, flags: 0, nr_pages: 0, vaddr: 0, dst_id: 0 };
                    stream.write_all(&none.encode()).map_err(io("answer GET".into()))?;
                    continue;
                };
                let bytes = &mut buffer[..(pages * page) as usize];
                mems[index].read_exact_at(bytes, header.vaddr).map_err(io(format!("read {pages} pages at {:#x} of pid {}", header.vaddr, processes[index].pid)))?;
                let reply = Header { command: proto::ADD_F, flags: PE_PRESENT as u16, nr_pages: pages, vaddr: header.vaddr, dst_id: header.dst_id };
                stream.write_all(&reply.encode()).map_err(io("answer GET".into()))?;
                stream.write_all(bytes).map_err(io(format!("send {pages} pages at {:#x}", header.vaddr)))?;
                report.pages += pages;
            }
            proto::CHANGED => {
                report.requests += 1;
                let found = requested(processes, &header, page);
                let Some((index, pages)) = found else {
                    return Err(PageServerError::Protocol { address: peer, what: format!("CHANGED of pages at {:#x} of pid {}, not left at the source", header.vaddr, header.dst_id) });
                };
                let bytes = &mut buffer[..(pages * page) as usize];
                mems[index].read_exact_at(bytes, header.vaddr).map_err(io(format!("read {pages} pages at {:#x} of pid {}", header.vaddr, processes[index].pid)))?;
                let mut bits = vec![0u8; pages.div_ceil(8) as usize];
                let parent = processes[index].parent.as_ref();
                for (at, bytes) in bytes.chunks(page as usize).enumerate() {
                    let same = parent.and_then(|p| p.get(header.vaddr + at as u64 * page)) == Some(super::digests::digest(bytes));
                    if !same {
                        bits[at / 8] |= 1 << (at % 8);
                    }
                }
                let reply = Header { command: proto::CHANGED, flags: 0, nr_pages: pages, vaddr: header.vaddr, dst_id: header.dst_id };
                stream.write_all(&reply.encode()).map_err(io("answer CHANGED".into()))?;
                stream.write_all(&bits).map_err(io("answer CHANGED".into()))?;
                report.compared += pages;
            }
            proto::FLUSH | proto::FLUSH_N_CLOSE => {
                stream.write_all(&0u32.to_ne_bytes()).map_err(io("reply to FLUSH".into()))?;
                if header.command == proto::FLUSH_N_CLOSE {
                    break;
                }
            }
            command => {
                return Err(PageServerError::Protocol { address: peer, what: format!("command {command:#x} sent to a dump's lazy pages (only GET and FLUSH are)") });
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_and_answer_where_they_end() {
        let mut left = LeftAtSource { id: 1, pid: 1, runs: Vec::new(), parent: None };
        left.push(0x1000, 0x3000);
        left.push(0x3000, 0x5000);
        left.push(0x8000, 0x9000);
        assert_eq!(left.runs, vec![(0x1000, 0x5000), (0x8000, 0x9000)]);
        assert_eq!(left.run_end(0x4000), Some(0x5000));
        assert_eq!(left.run_end(0x5000), None);
        assert_eq!(left.run_end(0x8fff), Some(0x9000));
        assert_eq!(left.bytes(), 0x5000);
    }
}
