//! crit's verbs inside crust: show, decode, encode, x, info.
//!
//! Output follows crit's byte for byte where crit defines it (`show`, `decode`,
//! `encode`, `x`, `info IMG`); `info -D DIR` is our own summary of a whole dump.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use crust_images::json::{self, JsonOptions};
use crust_images::{pb, read_entries, read_single, ByteOrder, ImageKind, ImageReader};

/// Image inspection commands (crit-compatible).
#[derive(clap::Subcommand)]
pub enum CritCmd {
    /// Print an image as human-readable JSON (crit show)
    Show {
        /// image file
        image: PathBuf,
        /// do not print entry payloads, only their sizes
        #[arg(long)]
        nopl: bool,
    },
    /// Convert an image to JSON (crit decode)
    Decode {
        /// image to decode (stdin by default)
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// where to write the JSON (stdout by default)
        #[arg(short = 'o', long = "out")]
        output: Option<PathBuf>,
        /// indent, and print some numbers in field-specific formats
        #[arg(long)]
        pretty: bool,
    },
    /// Convert JSON back to an image (crit encode)
    Encode {
        /// JSON to encode (stdin by default)
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// where to write the image (stdout by default)
        #[arg(short = 'o', long = "out")]
        output: Option<PathBuf>,
    },
    /// Explore a dump directory (crit x)
    X {
        /// images directory
        dir: PathBuf,
        /// what to show
        #[arg(value_enum)]
        what: Explore,
    },
    /// Summarize an image (magic and entry count) or, with -D, a whole dump
    Info {
        /// images directory to summarize
        #[arg(short = 'D', long = "images-dir")]
        dir: Option<PathBuf>,
        /// a single image: print its magic and entry count, as crit does
        image: Option<PathBuf>,
    },
}

/// What `crit x` shows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Explore {
    /// process tree
    Ps,
    /// open files of each task
    Fds,
    /// memory areas of each task
    Mems,
    /// dumped pages against memory areas
    Rss,
}

/// Runs one crit verb; returns the process exit code.
pub fn run(cmd: CritCmd) -> anyhow::Result<i32> {
    match cmd {
        CritCmd::Show { image, nopl } => decode(
            Some(&image),
            None,
            JsonOptions {
                pretty: true,
                no_payload: nopl,
            },
        ),
        CritCmd::Decode {
            input,
            output,
            pretty,
        } => decode(
            input.as_deref(),
            output.as_deref(),
            JsonOptions {
                pretty,
                no_payload: false,
            },
        ),
        CritCmd::Encode { input, output } => encode(input.as_deref(), output.as_deref()),
        CritCmd::X { dir, what } => {
            let mut out = std::io::stdout().lock();
            let mut dump = Dump::new(&dir);
            match what {
                Explore::Ps => explore_ps(&dump, &mut out)?,
                Explore::Fds => explore_fds(&mut dump, &mut out)?,
                Explore::Mems => explore_mems(&mut dump, &mut out)?,
                Explore::Rss => explore_rss(&mut dump, &mut out)?,
            }
            Ok(0)
        }
        CritCmd::Info { dir: Some(dir), .. } => {
            info_dir(&mut Dump::new(&dir), &mut std::io::stdout().lock())?;
            Ok(0)
        }
        CritCmd::Info {
            dir: None,
            image: Some(image),
        } => info_image(&image),
        CritCmd::Info {
            dir: None,
            image: None,
        } => bail!("info: give an image or -D DIR"),
    }
}

fn read_input(input: Option<&Path>) -> anyhow::Result<(String, Vec<u8>)> {
    match input {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            );
            Ok((name, bytes))
        }
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("read stdin")?;
            Ok(("stdin".to_owned(), bytes))
        }
    }
}

fn decode(
    input: Option<&Path>,
    output: Option<&Path>,
    options: JsonOptions,
) -> anyhow::Result<i32> {
    let (name, bytes) = read_input(input)?;
    // crust's own image, which crit does not know.
    let decoded = if crust_images::checksums::is_checksums_image(&bytes) {
        crust_images::checksums::decode(&name, &bytes).map(|entries| crust_images::checksums::to_json(&entries)).map_err(json::JsonError::Image)
    } else {
        json::image_to_json(&name, &bytes, &options)
    };
    let json = match decoded {
        Ok(json) => json,
        Err(json::JsonError::Image(crust_images::ImageError::BadMagic { magic, .. })) => {
            eprintln!(
                "Unknown magic {magic:#x}.\nMaybe you are feeding me an image with raw data(i.e. pages.img)?"
            );
            return Ok(1);
        }
        Err(error) => return Err(error.into()),
    };
    let text = json::to_crit_string(&json, options.pretty);
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").context("write stdout")?;
        }
    }
    Ok(0)
}

fn encode(input: Option<&Path>, output: Option<&Path>) -> anyhow::Result<i32> {
    let (name, bytes) = read_input(input)?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name}: cannot read JSON; encode expects JSON input"))?;
    let image = if json.get("magic").and_then(|m| m.as_str()) == Some(crust_images::checksums::JSON_MAGIC) {
        let entries = crust_images::checksums::from_json(&json).map_err(|e| anyhow::anyhow!("encode {name}: {e}"))?;
        crust_images::checksums::encode(&entries, ByteOrder::native())
    } else {
        json::json_to_image(&json, ByteOrder::native()).with_context(|| format!("encode {name}"))?
    };
    match output {
        Some(path) => {
            std::fs::write(path, image).with_context(|| format!("write {}", path.display()))?
        }
        None => std::io::stdout()
            .lock()
            .write_all(&image)
            .context("write stdout")?,
    }
    Ok(0)
}

fn info_image(path: &Path) -> anyhow::Result<i32> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let name = path
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let image = crust_images::parse(&name, &bytes)?;
    let kind = image.header.kind;
    let count = match kind {
        ImageKind::Pagemap => image.entries.len().saturating_sub(1),
        _ => image.entries.len(),
    };
    let summary = serde_json::json!({ "magic": kind.name(), "count": count });
    println!("{}", json::to_crit_string(&summary, true));
    Ok(0)
}

/// A dump directory and the lookups the explorers share.
struct Dump {
    dir: PathBuf,
    files: Option<HashMap<u32, pb::FileEntry>>,
}

impl Dump {
    fn new(dir: &Path) -> Dump {
        Dump {
            dir: dir.to_owned(),
            files: None,
        }
    }

    fn path(&self, kind: ImageKind, id: u64) -> PathBuf {
        self.dir.join(kind.file_name(id))
    }

    fn pstree(&self) -> anyhow::Result<Vec<pb::PstreeEntry>> {
        Ok(read_entries(&self.path(ImageKind::Pstree, 0))?)
    }

    fn core(&self, pid: u32) -> anyhow::Result<pb::CoreEntry> {
        Ok(read_single(&self.path(ImageKind::Core, pid.into()))?)
    }

    fn mm(&self, pid: u32) -> anyhow::Result<pb::MmEntry> {
        Ok(read_single(&self.path(ImageKind::Mm, pid.into()))?)
    }

    /// files.img, or an empty table for old dumps without it.
    fn files(&mut self) -> &HashMap<u32, pb::FileEntry> {
        let path = self.path(ImageKind::Files, 0);
        self.files.get_or_insert_with(|| {
            read_entries::<pb::FileEntry>(&path)
                .map(|entries| entries.into_iter().map(|entry| (entry.id, entry)).collect())
                .unwrap_or_default()
        })
    }

    /// How crit names a file: its path, `pipe[N]`, `unix[ino (peer) name]`, or `TYPE.id`.
    fn describe_file(&mut self, file_type: pb::FdTypes, id: u32) -> String {
        let dir = self.dir.clone();
        let entry = self.files().get(&id).cloned();
        match file_type {
            pb::FdTypes::Reg => {
                let reg = match entry {
                    Some(entry) => entry.reg,
                    None => {
                        find_by_id::<pb::RegFileEntry>(&dir.join("reg-files.img"), id, |reg| reg.id)
                    }
                };
                reg.map_or_else(|| "unknown path".to_owned(), |reg| reg.name)
            }
            pb::FdTypes::Pipe => {
                let pipe = match entry {
                    Some(entry) => entry.pipe,
                    None => find_by_id::<pb::PipeEntry>(&dir.join("pipes.img"), id, |pipe| pipe.id),
                };
                pipe.map_or_else(
                    || "pipe[?]".to_owned(),
                    |pipe| format!("pipe[{}]", pipe.pipe_id),
                )
            }
            pb::FdTypes::Unixsk => {
                let unix = match entry {
                    Some(entry) => entry.usk.map(|usk| *usk),
                    None => {
                        find_by_id::<pb::UnixSkEntry>(&dir.join("unixsk.img"), id, |unix| unix.id)
                    }
                };
                match unix {
                    Some(unix) => {
                        let name = json::encode_quoted_printable(&unix.name);
                        let name = if name.is_empty() {
                            String::new()
                        } else {
                            format!(" {name}")
                        };
                        format!("unix[{} ({}){}]", unix.ino, unix.peer, name)
                    }
                    None => "unix[?]".to_owned(),
                }
            }
            other => format!("{}.{}", other.as_str_name(), id),
        }
    }
}

fn find_by_id<M: prost::Message + Default>(
    path: &Path,
    id: u32,
    id_of: impl Fn(&M) -> u32,
) -> Option<M> {
    read_entries::<M>(path)
        .ok()?
        .into_iter()
        .find(|entry| id_of(entry) == id)
}

fn explore_ps(dump: &Dump, out: &mut impl Write) -> anyhow::Result<()> {
    let tree = dump.pstree()?;
    let mut comms = HashMap::new();
    for process in &tree {
        let core = dump.core(process.pid)?;
        comms.insert(process.pid, core.tc.map(|tc| tc.comm).unwrap_or_default());
    }
    writeln!(out, "{:>7}{:>7}{:>7}   COMM", "PID", "PGID", "SID")?;
    let Some(root) = tree.iter().find(|process| process.ppid == 0) else {
        return Ok(());
    };
    fn show(
        process: &pb::PstreeEntry,
        tree: &[pb::PstreeEntry],
        comms: &HashMap<u32, String>,
        depth: usize,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        writeln!(
            out,
            "{:>7}{:>7}{:>7}   {}{}",
            process.pid,
            process.pgid,
            process.sid,
            " ".repeat(4 * depth),
            comms.get(&process.pid).map_or("", String::as_str)
        )?;
        for child in tree
            .iter()
            .filter(|child| child.ppid == process.pid && child.pid != process.pid)
        {
            show(child, tree, comms, depth + 1, out)?;
        }
        Ok(())
    }
    show(root, &tree, &comms, 0, out)?;
    Ok(())
}

fn explore_fds(dump: &mut Dump, out: &mut impl Write) -> anyhow::Result<()> {
    for process in dump.pstree()? {
        let pid = process.pid;
        let ids: pb::TaskKobjIdsEntry = read_single(&dump.path(ImageKind::Ids, pid.into()))?;
        let fds: Vec<pb::FdinfoEntry> =
            read_entries(&dump.path(ImageKind::Fdinfo, ids.files_id.into()))?;
        writeln!(out, "{pid}")?;
        for fd in fds {
            let described = dump.describe_file(fd.r#type(), fd.id);
            writeln!(out, "\t{:>7}: {}", fd.fd, described)?;
        }
        let fs: pb::FsEntry = read_single(&dump.path(ImageKind::Fs, pid.into()))?;
        let cwd = dump.describe_file(pb::FdTypes::Reg, fs.cwd_id);
        writeln!(out, "\t{:>7}: {}", "cwd", cwd)?;
        let root = dump.describe_file(pb::FdTypes::Reg, fs.root_id);
        writeln!(out, "\t{:>7}: {}", "root", root)?;
    }
    Ok(())
}

// vma_entry.status bits (CRIU's VMA_* flags)
const VMA_AREA_REGULAR: u32 = 1 << 0;
const VMA_AREA_STACK: u32 = 1 << 1;
const VMA_AREA_VSYSCALL: u32 = 1 << 2;
const VMA_AREA_VDSO: u32 = 1 << 3;
const VMA_AREA_HEAP: u32 = 1 << 5;
const VMA_FILE_PRIVATE: u32 = 1 << 6;
const VMA_FILE_SHARED: u32 = 1 << 7;
const VMA_ANON_SHARED: u32 = 1 << 8;
const VMA_AREA_SYSVIPC: u32 = 1 << 10;
const VMA_AREA_SOCKET: u32 = 1 << 11;
const MAP_GROWSDOWN: u32 = 0x0100;

fn explore_mems(dump: &mut Dump, out: &mut impl Write) -> anyhow::Result<()> {
    let mut shared_ids: HashMap<u64, usize> = HashMap::new();
    let mut short_id = |shmid: u64| {
        let next = shared_ids.len() + 1;
        *shared_ids.entry(shmid).or_insert(next)
    };
    for process in dump.pstree()? {
        let pid = process.pid;
        let mm = dump.mm(pid)?;
        writeln!(out, "{pid}")?;
        let exe = dump.describe_file(pb::FdTypes::Reg, mm.exe_file_id);
        writeln!(out, "\t{:<36}    {}", "exe", exe)?;
        for vma in &mm.vmas {
            let status = vma.status;
            let mut name = if status & VMA_AREA_SYSVIPC != 0 {
                format!(" ips[{:x}]", short_id(vma.shmid))
            } else if status & VMA_ANON_SHARED != 0 {
                format!(" shmem[{:x}]", short_id(vma.shmid))
            } else if status & VMA_AREA_SOCKET != 0 {
                format!(" packet[{:x}]", short_id(vma.shmid))
            } else if status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
                let file_id = u32::try_from(vma.shmid).unwrap_or(u32::MAX);
                let mut name = format!(" {}", dump.describe_file(pb::FdTypes::Reg, file_id));
                if vma.pgoff != 0 {
                    name.push_str(&format!(" + {:#x}", vma.pgoff));
                }
                if status & VMA_FILE_SHARED != 0 {
                    name.push_str(" (s)");
                }
                name
            } else if status & VMA_AREA_STACK != 0 {
                " [stack]".to_owned()
            } else if status & VMA_AREA_VSYSCALL != 0 {
                " [vsyscall]".to_owned()
            } else if status & VMA_AREA_VDSO != 0 {
                " [vdso]".to_owned()
            } else if vma.flags & MAP_GROWSDOWN != 0 {
                " [stack?]".to_owned()
            } else {
                String::new()
            };
            if status & VMA_AREA_REGULAR == 0 {
                name.push_str(" *");
            }
            let prot = format!(
                "{}{}{}",
                if vma.prot & 1 != 0 { 'r' } else { '-' },
                if vma.prot & 2 != 0 { 'w' } else { '-' },
                if vma.prot & 4 != 0 { 'x' } else { '-' }
            );
            let range = format!("{:08x}-{:08x}", vma.start, vma.end);
            writeln!(out, "\t{range:<36}{prot}{name}")?;
        }
    }
    Ok(())
}

fn explore_rss(dump: &mut Dump, out: &mut impl Write) -> anyhow::Result<()> {
    for process in dump.pstree()? {
        let pid = process.pid;
        let vmas = dump.mm(pid)?.vmas;
        let mut reader = ImageReader::open(&dump.path(ImageKind::Pagemap, pid.into()))?;
        let (_head, runs) = crust_images::pagemap::read_head_and_entries(&mut reader)?;
        writeln!(out, "{pid}")?;
        let mut vma_index = 0usize;
        let mut previous_vma: Option<usize> = None;
        for run in runs {
            let run_text = format!("\t{:x} / {:<8}", run.vaddr, run.page_count());
            while vma_index < vmas.len() && vmas[vma_index].end <= run.vaddr {
                vma_index += 1;
            }
            let run_end = run.vaddr + (run.page_count() << 12);
            let mut vma_text = String::new();
            while vma_index < vmas.len() && vmas[vma_index].start < run_end {
                let vma = &vmas[vma_index];
                if previous_vma == Some(vma_index) {
                    vma_text.push_str(" ~");
                } else {
                    vma_text.push_str(&format!(
                        " {:08x} / {:<8}",
                        vma.start,
                        (vma.end - vma.start) >> 12
                    ));
                    if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
                        let file_id = u32::try_from(vma.shmid).unwrap_or(u32::MAX);
                        vma_text.push(' ');
                        vma_text.push_str(&dump.describe_file(pb::FdTypes::Reg, file_id));
                    }
                    previous_vma = Some(vma_index);
                }
                vma_text.push_str(&format!("\n\t{:23}", ""));
                vma_index += 1;
            }
            // crit steps back one vma after each run, so a vma spanning two runs shows as `~`
            vma_index = vma_index.saturating_sub(1);
            writeln!(out, "{run_text:<24}{vma_text}")?;
        }
    }
    Ok(())
}

/// Memory of one task, in bytes, by the kind of area.
#[derive(Default)]
struct MemoryByKind {
    by_kind: BTreeMap<&'static str, u64>,
    vma_count: usize,
    dumped_pages: u64,
}

fn vma_kind(vma: &pb::VmaEntry) -> &'static str {
    let status = vma.status;
    if status & VMA_AREA_STACK != 0 {
        "stack"
    } else if status & VMA_AREA_HEAP != 0 {
        "heap"
    } else if status & (VMA_AREA_VDSO | VMA_AREA_VSYSCALL) != 0 || status & (1 << 12) != 0 {
        "vdso/vvar"
    } else if status & VMA_AREA_SYSVIPC != 0 {
        "sysv shm"
    } else if status & VMA_ANON_SHARED != 0 {
        "anon shared"
    } else if status & VMA_FILE_SHARED != 0 {
        "file shared"
    } else if status & VMA_FILE_PRIVATE != 0 {
        "file private"
    } else {
        "anon private"
    }
}

fn info_dir(dump: &mut Dump, out: &mut impl Write) -> anyhow::Result<()> {
    let tree = dump.pstree()?;
    writeln!(
        out,
        "tree: {} processes, {} threads",
        tree.len(),
        tree.iter().map(|p| p.threads.len()).sum::<usize>()
    )?;
    writeln!(
        out,
        "{:>7} {:>7} {:>7} {:>7}  COMM",
        "PID", "PPID", "PGID", "THREADS"
    )?;
    for process in &tree {
        let comm = dump
            .core(process.pid)
            .ok()
            .and_then(|core| core.tc)
            .map(|tc| tc.comm)
            .unwrap_or_default();
        writeln!(
            out,
            "{:>7} {:>7} {:>7} {:>7}  {}",
            process.pid,
            process.ppid,
            process.pgid,
            process.threads.len(),
            comm
        )?;
    }

    writeln!(out, "memory:")?;
    for process in &tree {
        let Ok(mm) = dump.mm(process.pid) else {
            writeln!(out, "  {}: no mm image", process.pid)?;
            continue;
        };
        let mut memory = MemoryByKind {
            vma_count: mm.vmas.len(),
            ..MemoryByKind::default()
        };
        for vma in &mm.vmas {
            *memory.by_kind.entry(vma_kind(vma)).or_default() += vma.end.saturating_sub(vma.start);
        }
        if let Ok(mut reader) =
            ImageReader::open(&dump.path(ImageKind::Pagemap, process.pid.into()))
        {
            if let Ok((_, runs)) = crust_images::pagemap::read_head_and_entries(&mut reader) {
                memory.dumped_pages = runs
                    .iter()
                    .filter(|run| {
                        run.flags.unwrap_or(crust_images::PE_PRESENT) & crust_images::PE_PRESENT
                            != 0
                    })
                    .map(|run| run.page_count())
                    .sum();
            }
        }
        let kinds: Vec<String> = memory
            .by_kind
            .iter()
            .map(|(kind, bytes)| format!("{kind} {}", human_size(*bytes)))
            .collect();
        writeln!(
            out,
            "  {}: {} vmas ({}), {} pages dumped",
            process.pid,
            memory.vma_count,
            kinds.join(", "),
            memory.dumped_pages
        )?;
    }

    let files = dump.files().clone();
    let mut by_type: BTreeMap<&'static str, usize> = BTreeMap::new();
    for file in files.values() {
        *by_type.entry(file.r#type().as_str_name()).or_default() += 1;
    }
    let types: Vec<String> = by_type
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    writeln!(out, "files: {} ({})", files.len(), types.join(", "))?;

    // System V IPC of the tree's own IPC namespace (ids.ipc_ns_id names its images): the
    // root's id when it differs from the dumping tool's own (inventory.root_ids), or,
    // in crust's dumps before 2026-12-06 (root_ids were the root task's), when present.
    let root_ids = read_entries::<pb::InventoryEntry>(&dump.path(ImageKind::Inventory, 0)).ok().and_then(|i| i.into_iter().next()).and_then(|i| i.root_ids);
    let task_ids = tree.first().and_then(|root| {
        read_single::<pb::TaskKobjIdsEntry>(&dump.path(ImageKind::Ids, root.pid.into())).ok().or_else(|| dump.core(root.pid).ok().and_then(|core| core.ids))
    });
    let ipc_ns = task_ids.and_then(|ids| {
        let legacy = root_ids.is_some_and(|r| r.files_id == ids.files_id);
        ids.ipc_ns_id.filter(|&id| legacy || root_ids.and_then(|r| r.ipc_ns_id) != Some(id))
    });
    if let Some(ns) = ipc_ns {
        let count = |kind: ImageKind| -> String {
            let path = dump.path(kind, ns.into());
            match std::fs::read(&path).map_err(anyhow::Error::from).and_then(|bytes| Ok(crust_images::parse(&path.display().to_string(), &bytes)?)) {
                Ok(image) => image.entries.len().to_string(),
                Err(_) => "?".into(),
            }
        };
        writeln!(
            out,
            "ipc namespace {ns}: {} shared memory segments, {} semaphore sets, {} message queues",
            count(ImageKind::IpcnsShm),
            count(ImageKind::IpcnsSem),
            count(ImageKind::IpcnsMsg)
        )?;
    }

    writeln!(out, "images:")?;
    let mut images: Vec<(String, u64)> = std::fs::read_dir(&dump.dir)
        .with_context(|| format!("read {}", dump.dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let metadata = entry.metadata().ok()?;
            // stats-dump and irmap-cache have no .img suffix
            let is_image = name.ends_with(".img") || ImageKind::from_file_name(&name).is_some();
            (metadata.is_file() && is_image).then_some((name, metadata.len()))
        })
        .collect();
    images.sort();
    let total: u64 = images.iter().map(|(_, size)| size).sum();
    for (name, size) in &images {
        writeln!(out, "  {name:<32} {size:>12}")?;
    }
    writeln!(out, "  {:<32} {:>12}", "total", total)?;
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_dump() -> Dump {
        Dump::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/tests/fixtures/dump"))
    }

    fn render(explore: impl FnOnce(&mut Dump, &mut Vec<u8>) -> anyhow::Result<()>) -> String {
        let mut out = Vec::new();
        explore(&mut fixture_dump(), &mut out).expect("fixture dump explores");
        String::from_utf8(out).expect("utf-8 output")
    }

    #[test]
    fn x_ps_prints_the_tree() {
        let text = render(|dump, out| explore_ps(dump, out));
        assert_eq!(
            text,
            "    PID   PGID    SID   COMM\n   1000   1000   1000   parent\n   1001   1000   1000       child\n"
        );
    }

    #[test]
    fn x_fds_names_files_like_crit() {
        let text = render(explore_fds);
        let first_task: Vec<&str> = text.lines().take(8).collect();
        assert_eq!(
            first_task,
            [
                "1000",
                "\t      0: /usr/bin/sleeper",
                "\t      1: pipe[77]",
                "\t      2: unix[31337 (31338) =00abstract=3Dsock]",
                "\t      3: INETSK.6",
                "\t      4: EVENTFD.7",
                "\t    cwd: /home/user",
                "\t   root: /",
            ]
        );
    }

    #[test]
    fn x_mems_marks_areas() {
        let text = render(explore_mems);
        assert!(
            text.contains("\t00400000-00401000                   r-x /usr/bin/sleeper\n"),
            "{text}"
        );
        assert!(text.contains("rw- [stack]\n"), "{text}");
        assert!(text.contains("r-x [vdso]\n"), "{text}");
    }

    #[test]
    fn x_rss_matches_runs_to_areas() {
        let text = render(explore_rss);
        assert!(
            text.starts_with("1000\n\t602000 / 2              00602000 / 2       \n"),
            "{text}"
        );
        assert!(text.contains("\t7ffd00002000 / 1        ~\n"), "{text}");
    }

    #[test]
    fn info_dir_summarizes() {
        let text = render(info_dir);
        assert!(text.starts_with("tree: 2 processes, 3 threads\n"), "{text}");
        assert!(
            text.contains("files: 8 (EVENTFD 1, INETSK 2, PIPE 1, REG 3, UNIXSK 1)"),
            "{text}"
        );
        assert!(text.contains("3 pages dumped"), "{text}");
    }
}
