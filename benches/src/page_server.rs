//! `crust-bench --page-server`: page server throughput on loopback. For each size, an
//! anonymous-memory workload is dumped with `ENGINE dump --page-server` to the same
//! engine's `page-server` on 127.0.0.1, whose images directory is on tmpfs
//! (`/dev/shm`), so the figure is the transfer (reading the target, the socket, the
//! server's writes into the page cache), not a disk. Throughput = bytes of pages the
//! server wrote / wall time of the dump command (seizing, parasite and images
//! included, so it is a floor of the wire's rate). The workload is restored from the
//! two directories put together and verified, so a fast but wrong transfer fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::engine::Engine;
use crate::workload::{size_label, Running, Workload};

/// One measured transfer.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub engine: &'static str,
    pub size: u64,
    /// Bytes of pages the server wrote.
    pub bytes: u64,
    /// Wall time of the dump command.
    pub dump: Duration,
    /// Wall time of the restore from the merged directory.
    pub restore: Duration,
}

impl Transfer {
    /// Bytes per second, in GB/s (10^9).
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.dump.as_secs_f64().max(1e-9) / 1e9
    }
}

/// Dumps a workload of `size` bytes with `engine` to `engine`'s page server.
pub fn measure(engine: &Engine, size: u64, scratch: &Path) -> anyhow::Result<Transfer> {
    let workload = Workload::anon(size);
    let base = PathBuf::from(format!("/dev/shm/crust-bench-page-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (src, dst) = (base.join("src"), base.join("dst"));
    std::fs::create_dir_all(&src)?;
    std::fs::create_dir_all(&dst)?;
    let result = run(engine, &workload, scratch, &src, &dst);
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn run(engine: &Engine, workload: &Workload, scratch: &Path, src: &Path, dst: &Path) -> anyhow::Result<Transfer> {
    let mut running = Running::start(workload, scratch)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let mut server = Command::new(&engine.path)
        .args(["page-server", "--address", "127.0.0.1", "--port", &port, "--status-fd", "1", "-o"])
        .arg(dst.join("page-server.log"))
        .arg("-D")
        .arg(dst)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("run {} page-server", engine.path.display()))?;
    let mut byte = [0u8; 1];
    let _ = server.stdout.take().expect("piped").read(&mut byte);
    let pid = running.pid.to_string();
    let started = Instant::now();
    let dump = Command::new(&engine.path)
        .args(["dump", "-t", &pid, "--page-server", "--address", "127.0.0.1", "--port", &port, "-o"])
        .arg(src.join("dump.log"))
        .arg("-D")
        .arg(src)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("run dump")?;
    let dump_time = started.elapsed();
    let served = server.wait()?;
    if !dump.status.success() || !served.success() {
        let _ = server.kill();
        bail!("{} dump --page-server: {} (page server: {served})", engine.name(), String::from_utf8_lossy(&dump.stderr).trim());
    }
    running.reap_after_dump();
    let bytes = std::fs::read_dir(dst)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    for entry in std::fs::read_dir(src)?.flatten() {
        if entry.file_type()?.is_file() && !entry.file_name().to_string_lossy().ends_with(".log") {
            std::fs::copy(entry.path(), dst.join(entry.file_name()))?;
        }
    }
    let started = Instant::now();
    let restore = Command::new(&engine.path)
        .args(["restore", "-d", "-o"])
        .arg(dst.join("restore.log"))
        .arg("-D")
        .arg(dst)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("run restore")?;
    let restore_time = started.elapsed();
    if !restore.status.success() {
        bail!("{} restore after dump --page-server: {}", engine.name(), String::from_utf8_lossy(&restore.stderr).trim());
    }
    let verified = running.verify(Duration::from_secs(60));
    running.kill();
    verified?;
    Ok(Transfer { engine: engine.name(), size: workload.count, bytes, dump: dump_time, restore: restore_time })
}

/// The table of transfers.
pub fn markdown(transfers: &[Transfer]) -> String {
    let mut out = String::from("| engine | size | pages sent | dump (wall) | GB/s | restore (wall) |\n| --- | --- | --- | --- | --- | --- |\n");
    for t in transfers {
        out.push_str(&format!(
            "| {} | {} | {} MiB | {:.0} ms | {:.2} | {:.0} ms |\n",
            t.engine,
            size_label(t.size),
            t.bytes >> 20,
            t.dump.as_secs_f64() * 1e3,
            t.gb_per_s(),
            t.restore.as_secs_f64() * 1e3
        ));
    }
    out
}
