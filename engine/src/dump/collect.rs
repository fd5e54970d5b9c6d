//! The collect stage of a dump: what /proc tells about each stopped process (stat,
//! status, smaps, auxv, links, personality, resource limits).

use std::fs;
use std::io;

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

/// [`collect`] of each pid, in order, on up to one thread per core (at most 8): the
/// processes are stopped, and what is read of one depends on no other, nor on the tracer
/// thread. A tree of 100 processes spends most of its collect stage in these reads.
pub(crate) fn collect_all(pids: &[i32]) -> Result<Vec<Collected>, CollectError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if cores < 2 || pids.len() < 8 {
        return pids.iter().map(|&pid| collect(pid)).collect();
    }
    let per_worker = pids.len().div_ceil(cores);
    std::thread::scope(|scope| {
        let workers: Vec<_> = pids
            .chunks(per_worker)
            .map(|part| (part[0], scope.spawn(move || part.iter().map(|&pid| collect(pid)).collect::<Result<Vec<_>, _>>())))
            .collect();
        let mut all = Vec::with_capacity(pids.len());
        for (first, worker) in workers {
            let part = worker.join().map_err(|_| CollectError::Io { pid: first, what: "collect worker".into(), source: io::Error::other("panicked") })?;
            all.extend(part?);
        }
        Ok(all)
    })
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
    // injected.
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
    })
}
