//! The collect stage of a dump: what /proc tells about each stopped process (stat,
//! status, smaps, auxv, links, personality, resource limits, namespaces).

use std::fs;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::error::io_failure;
use crate::model::Collected;
use crate::procfs;
use crate::sys;

/// Why /proc of a stopped process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Parse { pid: i32, source: procfs::ParseError },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
}

/// The kernel's own areas, which it may seal itself (CONFIG_MSEAL_SYSTEM_MAPPINGS) and
/// maps again on restore.
const SYSTEM_MAPPINGS: [&str; 6] = ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]"];
io_failure!(CollectError);

/// /proc of the stopped processes, read in pid order on worker threads while the caller
/// goes on (one per core but one, at most 7; one alone for fewer than 8 processes or 3
/// cores: the tracer and the process it waits on need a core, and two busy workers
/// stalled them on two cores). The processes are stopped, and what is read of one depends
/// on no other, nor on the tracer thread. [`Collecting::take`] hands out process `i`'s as
/// soon as it is read, so the parasite stage starts on the first process while the
/// workers read the others (a tree of 100 processes waited 23 ms for all of them before).
pub(crate) struct Collecting {
    pids: Vec<i32>,
    results: mpsc::Receiver<(usize, Result<Collected, CollectError>, Instant)>,
    /// Read ahead of the caller, by index.
    ready: Vec<Option<Result<Collected, CollectError>>>,
    started: Instant,
    /// When the last read so far ended, and how long `take` waited in all.
    last_read: Instant,
    waited: Duration,
}

impl Collecting {
    /// Starts the workers on `pids`.
    pub(crate) fn start(pids: Vec<i32>) -> io::Result<Collecting> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let workers = if cores < 3 || pids.len() < 8 { 1 } else { cores - 1 };
        let (sender, results) = mpsc::channel();
        let shared: Arc<(Vec<i32>, AtomicUsize)> = Arc::new((pids.clone(), AtomicUsize::new(0)));
        for _ in 0..workers.min(pids.len()) {
            let (shared, sender) = (Arc::clone(&shared), sender.clone());
            std::thread::Builder::new().name("crust-collect".into()).spawn(move || {
                let (pids, next) = &*shared;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&pid) = pids.get(index) else { return };
                    let result = collect(pid);
                    // The dump gave up (its receiver is gone): nothing more to read.
                    if sender.send((index, result, Instant::now())).is_err() {
                        return;
                    }
                }
            })?;
        }
        let ready = pids.iter().map(|_| None).collect();
        let started = Instant::now();
        Ok(Collecting { pids, results, ready, started, last_read: started, waited: Duration::ZERO })
    }

    /// What /proc told of the `index`th process, waiting until a worker read it.
    pub(crate) fn take(&mut self, index: usize) -> Result<Collected, CollectError> {
        let pid = self.pids[index];
        let waiting = Instant::now();
        while self.ready[index].is_none() {
            match self.results.recv() {
                Ok((at, result, read)) => {
                    self.ready[at] = Some(result);
                    self.last_read = self.last_read.max(read);
                }
                Err(_) => return Err(CollectError::Io { pid, what: "collect worker".into(), source: io::Error::other("ended without reading it") }),
            }
        }
        self.waited += waiting.elapsed();
        self.ready[index].take().expect("just filled")
    }

    /// How long the reads took (to the last one taken so far), and how long
    /// [`take`](Self::take) waited for them.
    pub(crate) fn timing(&self) -> (Duration, Duration) {
        (self.last_read.duration_since(self.started), self.waited)
    }
}

pub(crate) fn collect(pid: i32) -> Result<Collected, CollectError> {
    let read = |name: &str| {
        fs::read_to_string(format!("/proc/{pid}/{name}")).map_err(io_err(pid, format!("read /proc/{pid}/{name}")))
    };
    let link = |name: &str| {
        fs::read_link(format!("/proc/{pid}/{name}")).map_err(io_err(pid, format!("readlink /proc/{pid}/{name}")))
    };
    let stat = procfs::parse_stat(&read("stat")?).map_err(|source| CollectError::Parse { pid, source })?;
    let status = procfs::parse_key_values(&read("status")?);
    let smaps = procfs::parse_smaps(&read("smaps")?).map_err(|source| CollectError::Parse { pid, source })?;
    // A seal (mseal, VmFlags `sl`) has no field in CRIU's images: such an area would come
    // back unsealed (CRIU 4.2 restores it so), so the dump is refused before anything is
    // injected into this process.
    if let Some(sealed) = smaps.iter().find(|e| e.vm_flags.iter().any(|f| f == "sl") && !SYSTEM_MAPPINGS.contains(&e.map.name.as_str())) {
        let (start, end) = (sealed.map.start, sealed.map.end);
        let name = if sealed.map.name.is_empty() { "anonymous" } else { sealed.map.name.as_str() };
        return Err(CollectError::Unsupported {
            pid,
            what: format!("memory area {start:#x}-{end:#x} ({name}) sealed with mseal (no image field keeps a seal; CRIU 4.2 restores such an area unsealed)"),
        });
    }
    let auxv_bytes = fs::read(format!("/proc/{pid}/auxv")).map_err(io_err(pid, "read auxv"))?;
    let auxv = auxv_bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
    let personality = u32::from_str_radix(read("personality")?.trim(), 16).unwrap_or(0);
    let mut rlimits = Vec::new();
    for resource in 0..16u32 {
        match sys::read_rlimit(pid, resource) {
            Ok(limit) => rlimits.push(limit),
            // Another user's limits need CAP_SYS_RESOURCE: the process itself tells them
            // (`query_process`).
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                rlimits.clear();
                break;
            }
            Err(error) => return Err(io_err(pid, format!("prlimit {resource}"))(error)),
        }
    }
    let pid_text = pid.to_string();
    Ok(Collected {
        stat,
        status,
        smaps,
        auxv,
        exe: link("exe")?,
        cwd: link("cwd")?,
        root: link("root")?,
        personality,
        rlimits,
        ns: crate::ns::read_inodes(&pid_text),
        time_for_children: crate::ns::read_link_inode(&pid_text, "time_for_children"),
    })
}
