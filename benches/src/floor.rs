//! The floor under a memory workload's dump and restore on this machine, timed in the
//! harness itself without any engine: what neither engine can avoid in a dump (one copy
//! of the pages, and the end of the killed target), and the one copy of a restore done
//! the usual way.
//!
//! - write floor: the pages (already in memory, every page touched) written into a new
//!   file of the images' filesystem in 256 KiB `write(2)`s, into fresh page cache. Both
//!   engines' frozen dumps do at least this: CRIU and crust have the target vmsplice its
//!   pages into pipes and splice them into the pages image, one copy by the kernel.
//! - read floor: the same file, cached, read with `pread(2)` into fresh anonymous memory,
//!   64 MiB at a time, the memory faulted in first with MADV_POPULATE_WRITE (as crust's
//!   restorer does for areas under 16 MiB of pages), on one thread. CRIU's restore does at
//!   least this (preadv into the area where the pages belong, from the restorer, one
//!   thread per process). crust's restore goes under it for big areas: it puts their
//!   pages in with UFFDIO_COPY, which does not zero them first, on one thread per CPU
//!   (at most 4, `engine/src/lazy/fill.rs`).
//! - exit floor: the workload itself, started with the same size, killed (SIGKILL) and
//!   waited for: the kernel frees its memory before the wait returns. A dump without
//!   `--leave-running` kills its target and waits for it (so that its pids are free for a
//!   restore when the dump returns): CRIU's and crust's dump times hold this too.
//!
//! A dump at 1.0x its floor cannot go lower without changing what the kernel does (huge
//! pages, O_DIRECT, not copying at all); a restore can, as crust's big areas show.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// The write, read and exit floors of one size, in ms.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    pub write_ms: f64,
    pub read_ms: f64,
    pub exit_ms: f64,
}

/// Size of one `write(2)` (the page copier's, `engine/src/memory/pages.rs`).
const WRITE_CHUNK: usize = 256 << 10;
/// Size of one `pread(2)`.
const READ_CHUNK: usize = 64 << 20;

/// Measures the floors of `workload` (a memory workload of `workload.count` bytes),
/// with a scratch file in `scratch`.
pub fn measure(workload: &crate::workload::Workload, scratch: &Path) -> anyhow::Result<Floor> {
    let exit_ms = {
        let running = crate::workload::Running::start(workload, scratch).context("start the workload")?;
        let started = Instant::now();
        // SIGKILL, then the wait for its end (its files removed too).
        running.kill();
        started.elapsed().as_secs_f64() * 1e3
    };
    let bytes = workload.count;
    let path = scratch.join("floor.pages");
    let _ = std::fs::remove_file(&path);
    let len = usize::try_from(bytes).context("size")?;
    let write_ms = {
        // Every page holds something of its own (no zero page, nothing to merge).
        let mut pages = vec![0u8; len];
        for (index, page) in pages.chunks_mut(4096).enumerate() {
            page[..8].copy_from_slice(&(index as u64 + 1).to_ne_bytes());
        }
        let mut file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let started = Instant::now();
        for chunk in pages.chunks(WRITE_CHUNK) {
            file.write_all(chunk).with_context(|| format!("write {}", path.display()))?;
        }
        started.elapsed().as_secs_f64() * 1e3
    };
    let read_ms = {
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        // Fresh anonymous memory (calloc's mmap), faulted in at once before the reads.
        let mut into = vec![0u8; len];
        let started = Instant::now();
        crate::sys::populate_write(&mut into).context("populate the memory to read into")?;
        let mut at = 0usize;
        while at < len {
            let step = (len - at).min(READ_CHUNK);
            file.read_exact_at(&mut into[at..at + step], at as u64).with_context(|| format!("read {}", path.display()))?;
            at += step;
        }
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        // Keep the copy from being optimised away.
        anyhow::ensure!(into[4096..4104] == 2u64.to_ne_bytes(), "read back other bytes than written");
        elapsed
    };
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    // The engines spawned next must not report this process's peak as theirs.
    crate::sys::reset_peak_rss().context("reset the peak resident set")?;
    Ok(Floor { write_ms, read_ms, exit_ms })
}
