//! The guardian: a process of its own that takes a parasite's area out of a target
//! whose crust was killed (docs/ARCHITECTURE.md, "No parasite area left after a
//! SIGKILL").
//!
//! A crust that dies between its two windows leaves every thread home (the parasite
//! returns by itself, a chained window too) but the area mapped: the area cannot
//! unmap itself, since the code after its `munmap` would be in it. So before the first
//! window, crust starts the guardian (the crust binary again, `crust __guardian`, in a
//! process group of its own so that a Ctrl-C or a kill of crust's group does not reach
//! it) with a pipe on its stdin, and tells it each step in one line:
//! - `map PID LEN SITE TRAMPOLINE A...`: window one is about to map LEN bytes in PID,
//!   chained through the syscall instruction at SITE and the trampoline (0 0: not
//!   chained), where the areas at A... are already mapped with the same length and
//!   protection (not ours);
//! - `area PID ADDR LEN`: window one mapped the area at ADDR;
//! - `gone PID`: window two unmapped it (or window one failed);
//! - `exit`: crust is done; the guardian ends without doing anything.
//!
//! End of file without `exit` means crust died. For each process with an area (or a
//! `map` without its `area`: the mmap may have run), the guardian seizes every thread
//! (waiting until the dead crust's ptrace links are gone), steps every thread out of
//! the area and of crust's chained windows (a parasite program ends in rt_sigreturn
//! once crust's end of the control socket is closed; a thread let go inside window one
//! runs its mmap first, one inside window two its munmap), then looks for the area,
//! unmaps it with a chained window, and lets the threads go as they were. An area is recognised by its place, length, protection, and its first
//! bytes (the restorer blob, or zeros when crust died before writing it), so a mapping
//! the process made of its own after the window is never touched. A guardian that finds
//! a process gone or a thread it cannot seize gives up on that process, and says so on
//! its stderr (crust's).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crust_arch::{Abi, ChainPoints, Host, HostArch, Sys};

use super::{wait_event_stop, window, Home, ParasiteError, Route};
use crate::infect;
use crate::procfs::{self, MapsLine};
use crate::sys;

/// The hidden verb that runs the guardian in the crust binary.
pub const GUARDIAN_VERB: &str = "__guardian";

/// How long the guardian waits for the dead crust's ptrace links to go.
const SEIZE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most syscall stops a thread is stepped through to leave the area.
const MAX_STEPS: u32 = 10_000;

/// crust's side: the guardian process and the pipe it reads.
pub(crate) struct Guardian {
    child: Option<Child>,
    pipe: Watch,
}

/// A handle on the guardian's pipe, shared by every parasite of the dump. Lines shorter
/// than PIPE_BUF are written whole.
#[derive(Clone)]
pub(crate) struct Watch(Option<Arc<File>>);

impl Watch {
    /// No guardian: every line goes nowhere.
    pub(crate) fn none() -> Watch {
        Watch(None)
    }

    fn say(&self, line: &str) {
        if let Some(pipe) = &self.0 {
            if let Err(error) = (&**pipe).write_all(format!("{line}\n").as_bytes()) {
                log::warn!("guardian: tell it {line:?}: {error}");
            }
        }
    }

    /// Window one is about to map `len` bytes in `pid` (chained through `chain`, if
    /// any), where `existing` areas of the same length and protection are already
    /// mapped.
    pub(crate) fn mapping(&self, pid: i32, len: u64, chain: Option<&ChainPoints>, existing: &[u64]) {
        let existing: String = existing.iter().map(|a| format!(" {a:#x}")).collect();
        let (site, trampoline) = chain.map_or((0, 0), |c| (c.syscall_ip, c.trampoline));
        self.say(&format!("map {pid} {len:#x} {site:#x} {trampoline:#x}{existing}"));
    }

    /// Window one mapped the area.
    pub(crate) fn mapped(&self, pid: i32, address: u64, len: u64) {
        self.say(&format!("area {pid} {address:#x} {len:#x}"));
    }

    /// The area is gone (window two), or was never mapped.
    pub(crate) fn gone(&self, pid: i32) {
        self.say(&format!("gone {pid}"));
    }
}

impl Guardian {
    /// Starts `program __guardian` in a process group of its own, its stdin the read
    /// end of a pipe whose write end only crust holds (close-on-exec).
    pub(crate) fn start(program: &Path) -> io::Result<Guardian> {
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (ready_read, ready_write): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let started = Instant::now();
        let child = Command::new(program)
            .arg(GUARDIAN_VERB)
            .stdin(Stdio::from(read))
            .stdout(Stdio::from(ready_write))
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        // Its start (the loader, relocations) would otherwise run beside the freeze that
        // follows: it says `ready` once it reads its stdin.
        let ready = wait_ready(ready_read, READY_TIMEOUT);
        log::debug!("guardian: pid {} ({}), {} after {:?}", child.id(), program.display(), if ready { "ready" } else { "not ready yet" }, started.elapsed());
        Ok(Guardian { child: Some(child), pipe: Watch(Some(Arc::new(File::from(write)))) })
    }

    /// The pipe, for the parasites.
    pub(crate) fn watch(&self) -> Watch {
        self.pipe.clone()
    }

    /// Tells the guardian crust is done and waits for its end.
    pub(crate) fn finish(&mut self) {
        self.pipe.say("exit");
        self.pipe = Watch::none();
        if let Some(mut child) = self.child.take() {
            match child.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => log::warn!("guardian: ended with {status}"),
                Err(error) => log::warn!("guardian: wait: {error}"),
            }
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How long crust waits for a starting guardian to say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the guardian wrote on `pipe` within `timeout` (its one write is `ready`; end
/// of file or a timeout: no).
fn wait_ready(pipe: OwnedFd, timeout: Duration) -> bool {
    use std::os::fd::AsFd;
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    if !sys::uffd::poll_readable(&[pipe.as_fd()], millis).is_ok_and(|ready| ready[0]) {
        return false;
    }
    let mut line = [0u8; 16];
    matches!(File::from(pipe).read(&mut line), Ok(n) if n > 0)
}

/// What the guardian knows of one process.
#[derive(Debug, Default, PartialEq, Eq)]
struct Entry {
    len: u64,
    /// The chained windows' syscall instruction and trampoline.
    chain: Option<(u64, u64)>,
    existing: Vec<u64>,
    area: Option<u64>,
}

/// The guardian's state after crust's lines: the processes that may still have an
/// area, and whether crust said `exit`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ledger {
    entries: BTreeMap<i32, Entry>,
    done: bool,
}

impl Ledger {
    /// Takes one line of crust's (unknown lines are ignored).
    fn take(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let number = |word: Option<&str>| -> Option<u64> {
            let word = word?;
            match word.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => word.parse().ok(),
            }
        };
        match words.next() {
            Some("exit") => self.done = true,
            Some("map") => {
                let (Some(pid), Some(len), Some(site), Some(trampoline)) = (number(words.next()), number(words.next()), number(words.next()), number(words.next())) else { return };
                let chain = (site != 0).then_some((site, trampoline));
                let existing = words.filter_map(|w| number(Some(w))).collect();
                self.entries.insert(pid as i32, Entry { len, chain, existing, area: None });
            }
            Some("area") => {
                let (Some(pid), Some(address), Some(len)) = (number(words.next()), number(words.next()), number(words.next())) else { return };
                let entry = self.entries.entry(pid as i32).or_default();
                entry.len = len;
                entry.area = Some(address);
            }
            Some("gone") => {
                if let Some(pid) = number(words.next()) {
                    self.entries.remove(&(pid as i32));
                }
            }
            _ => {}
        }
    }
}

/// The guardian's main: reads crust's lines from `input` until end of file; repairs
/// what a dead crust left. Returns the exit code (0: nothing to do or all repaired).
pub fn guardian_main(input: impl Read) -> i32 {
    // Started: crust waits for this before it freezes anything.
    let mut stdout = io::stdout();
    let _ = stdout.write_all(b"ready\n").and_then(|()| stdout.flush());
    let mut ledger = Ledger::default();
    for line in BufReader::new(input).lines() {
        match line {
            Ok(line) => ledger.take(&line),
            Err(_) => break,
        }
    }
    if ledger.done {
        return 0;
    }
    let mut code = 0;
    for (pid, entry) in &ledger.entries {
        match repair(*pid, entry) {
            Ok(Some(address)) => eprintln!("crust guardian: pid {pid}: crust ended mid-dump; its parasite area {address:#x} ({} KiB) removed", entry.len >> 10),
            Ok(None) => {}
            Err(error) => {
                eprintln!("crust guardian: pid {pid}: crust ended mid-dump; the parasite area could not be removed: {error}");
                code = 1;
            }
        }
    }
    code
}

/// Whether `map` is an area of the parasite's shape: private, anonymous, rwx, `len`
/// bytes.
pub(super) fn area_shaped(map: &MapsLine, len: u64) -> bool {
    map.read && map.write && map.exec && !map.shared && map.inode == 0 && map.name.is_empty() && map.end - map.start == len
}

/// The area to remove from `maps`: the known address, or the one mapping of its shape
/// that was not there before window one.
fn find_area(maps: &[MapsLine], entry: &Entry) -> Option<u64> {
    let mut candidates = maps.iter().filter(|m| area_shaped(m, entry.len)).map(|m| m.start);
    match entry.area {
        Some(address) => candidates.find(|start| *start == address),
        None => {
            let new: Vec<u64> = candidates.filter(|start| !entry.existing.contains(start)).collect();
            (new.len() == 1).then(|| new[0])
        }
    }
}

/// Seizes every thread of `pid`, takes them out of the area, unmaps it and lets them
/// go. `Ok(None)`: nothing of ours was mapped.
fn repair(pid: i32, entry: &Entry) -> Result<Option<u64>, String> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        // Gone with its area.
        return Ok(None);
    }
    let mut threads = seize_all(pid)?;
    let result = repair_seized(pid, entry, &mut threads);
    for (tid, held) in &threads {
        let _ = sys::detach_thread(*tid, 0);
        for signal in held {
            let _ = sys::signal_thread(pid, *tid, *signal);
        }
    }
    result
}

fn repair_seized(pid: i32, entry: &Entry, threads: &mut [(i32, Vec<i32>)]) -> Result<Option<u64>, String> {
    // First every thread out of the area and of crust's chained windows: one let go
    // inside window one has yet to run its mmap (after which the area is there), one
    // inside window two its munmap (which, run late, could hit a mapping made since).
    let mut busy: Vec<(u64, u64)> = entry.chain.iter().flat_map(|&(site, trampoline)| [(site, site + CHAIN_SPAN), (trampoline, trampoline + CHAIN_SPAN)]).collect();
    busy.extend(entry.area.map(|area| (area, area + entry.len)));
    for (tid, held) in threads.iter_mut() {
        held.extend(step_out(*tid, &busy)?);
    }
    let maps_text = fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| format!("read /proc/{pid}/maps: {e}"))?;
    let maps = procfs::parse_maps(&maps_text).map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    let Some(area) = find_area(&maps, entry) else { return Ok(None) };
    let mem = File::options().read(true).write(true).open(format!("/proc/{pid}/mem")).map_err(|e| format!("open /proc/{pid}/mem: {e}"))?;
    let mut head = vec![0u8; 64.min(HostArch::restorer_blob().len())];
    mem.read_exact_at(&mut head, area).map_err(|e| format!("read the area at {area:#x}: {e}"))?;
    if head != HostArch::restorer_blob()[..head.len()] && head.iter().any(|b| *b != 0) {
        return Err(format!("the mapping at {area:#x} does not hold the parasite; left alone"));
    }
    if entry.area.is_none() {
        // Found now: its threads must be out of it too (none can be: the parasite
        // starts after crust said where the area is).
        for (tid, held) in threads.iter_mut() {
            held.extend(step_out(*tid, &[(area, area + entry.len)])?);
        }
    }
    let (tid, _) = threads.first().ok_or("no thread")?;
    let home = Home {
        tid: *tid,
        regs: HostArch::read_regs(*tid).map_err(|e| format!("tid {tid}: {e}"))?,
        sigmask: sys::read_sigmask(*tid).map_err(|e| format!("tid {tid}: PTRACE_GETSIGMASK: {e}"))?,
    };
    let vdso = maps.iter().find(|m| m.name == "[vdso]").ok_or("no vdso")?;
    let syscall_ip = infect::find_syscall_in_vdso(*tid, &mem, vdso.start, vdso.end).map_err(|e| e.to_string())?;
    let chain = infect::find_chain_points(&mem, (vdso.start, vdso.end), &infect::trampoline_search_order(&maps));
    let route = Route { syscall_ip, chain };
    window(pid, &home, &route, &mem, Sys::Munmap, [area, entry.len, 0, 0, 0, 0]).map_err(|e: ParasiteError| e.to_string())?;
    Ok(Some(area))
}

/// Bytes from a chain's syscall instruction (or trampoline) within which a thread is
/// on the chain's path (the longest epilogue followed is shorter).
const CHAIN_SPAN: u64 = 128;

/// Runs a stopped thread from syscall stop to syscall stop until its instruction
/// pointer is in none of `busy` (start, end), then brings it to a PTRACE_EVENT_STOP;
/// the signals that stopped it meanwhile are held back and returned.
fn step_out(tid: i32, busy: &[(u64, u64)]) -> Result<Vec<i32>, String> {
    let inside = |tid: i32| -> Result<bool, String> {
        let regs = HostArch::read_regs(tid).map_err(|e| format!("tid {tid}: {e}"))?;
        let ip = HostArch::ip(&regs.gpr);
        Ok(busy.iter().any(|&(start, end)| (start..end).contains(&ip)))
    };
    let mut held = Vec::new();
    let mut steps = 0;
    while inside(tid)? {
        steps += 1;
        if steps > MAX_STEPS {
            return Err(format!("tid {tid} did not leave the parasite's area or crust's window in {MAX_STEPS} stops"));
        }
        // A SIGSTOP on the way is handed on (the thread's group stop starts).
        match infect::step_to_syscall_stop(tid).map_err(|(what, e)| format!("tid {tid}: {what}: {e}"))? {
            infect::Step::Stop { signal, event: 0 } => held.push(signal),
            infect::Step::Syscall | infect::Step::Stop { .. } => {}
            infect::Step::Exited => return Err(format!("tid {tid} exited")),
        }
    }
    if steps > 0 {
        sys::interrupt_thread(tid).map_err(|e| format!("tid {tid}: PTRACE_INTERRUPT: {e}"))?;
        sys::continue_thread(tid, 0).map_err(|e| format!("tid {tid}: PTRACE_CONT: {e}"))?;
        held.extend(wait_event_stop(tid).map_err(|e| e.to_string())?);
    }
    Ok(held)
}

/// Seizes and stops every thread of `pid` (until no new one appears), retrying while
/// the dead crust still holds them. Returns each tid with the signals held back while
/// it stopped. On failure every thread seized so far is let go.
fn seize_all(pid: i32) -> Result<Vec<(i32, Vec<i32>)>, String> {
    let deadline = Instant::now() + SEIZE_TIMEOUT;
    let mut seized: Vec<(i32, Vec<i32>)> = Vec::new();
    let release = |seized: &[(i32, Vec<i32>)]| {
        for (tid, _) in seized {
            let _ = sys::detach_thread(*tid, 0);
        }
    };
    loop {
        let tids: Vec<i32> = match fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
            Err(e) => {
                release(&seized);
                return Err(format!("list /proc/{pid}/task: {e}"));
            }
        };
        let new: Vec<i32> = tids.into_iter().filter(|tid| !seized.iter().any(|(t, _)| t == tid)).collect();
        if new.is_empty() {
            return Ok(seized);
        }
        for tid in new {
            loop {
                match sys::seize_thread(tid, libc::PTRACE_O_TRACESYSGOOD) {
                    Ok(()) => break,
                    Err(error) if error.raw_os_error() == Some(libc::EPERM) && Instant::now() < deadline => {
                        // Still traced by the dying crust: its links go at its exit.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(error) if error.raw_os_error() == Some(libc::ESRCH) => break,
                    Err(error) => {
                        release(&seized);
                        return Err(format!("seize tid {tid}: {error}"));
                    }
                }
            }
            if sys::interrupt_thread(tid).is_err() {
                continue;
            }
            match wait_event_stop(tid) {
                Ok(held) => seized.push((tid, held)),
                Err(ParasiteError::Exited { .. }) => {}
                Err(error) => {
                    release(&seized);
                    return Err(error.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(start: u64, end: u64, perms: &str, name: &str) -> MapsLine {
        let line = format!("{start:x}-{end:x} {perms} 00000000 00:00 0 {name}");
        procfs::parse_maps(&line).expect("a maps line").remove(0)
    }

    #[test]
    fn the_ledger_follows_crusts_lines() {
        let mut ledger = Ledger::default();
        for line in ["map 10 0x23000 0x947 0x3c050 0x7f0000", "map 11 0x23000 0 0", "area 11 0x7f1000 0x23000", "gone 10", "bogus line", "area x y", "map 12 0x1000"] {
            ledger.take(line);
        }
        assert_eq!(ledger.entries.len(), 1, "{ledger:?}");
        assert_eq!(ledger.entries[&11], Entry { len: 0x23000, chain: None, existing: vec![], area: Some(0x7f1000) });
        ledger.take("map 13 0x23000 0x947 0x3c050 0x7f0000");
        assert_eq!(ledger.entries[&13], Entry { len: 0x23000, chain: Some((0x947, 0x3c050)), existing: vec![0x7f0000], area: None });
        assert!(!ledger.done);
        ledger.take("exit");
        assert!(ledger.done);
    }

    #[test]
    fn the_area_is_found_by_place_or_as_the_one_new_mapping_of_its_shape() {
        let maps = vec![
            map(0x1000, 0x3000, "rwxp", ""),
            map(0x5000, 0x7000, "rwxp", ""),
            map(0x9000, 0xb000, "rw-p", ""),
            map(0xc000, 0xe000, "rwxp", "/usr/lib/x"),
        ];
        let known = Entry { len: 0x2000, chain: None, existing: vec![], area: Some(0x5000) };
        assert_eq!(find_area(&maps, &known), Some(0x5000));
        // Unmapped already (window two ran): the place no longer holds it.
        assert_eq!(find_area(&maps, &Entry { area: Some(0x9000), ..known }), None);
        let guessed = Entry { len: 0x2000, chain: None, existing: vec![0x1000], area: None };
        assert_eq!(find_area(&maps, &guessed), Some(0x5000));
        // Two new ones: not ours to choose.
        assert_eq!(find_area(&maps, &Entry { existing: vec![], ..guessed }), None);
    }
}
