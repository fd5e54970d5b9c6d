//! Glue between the cargo-fuzz targets in `fuzz_targets/` and crust-images.
//!
//! Every call into crust-images goes through this file, so a change of the images API
//! is fixed here once, not in each target. A target's contract: any input may be
//! rejected with an error; none may panic, hang or allocate without bound; and what
//! parses must survive the round trips crit users rely on (image -> JSON -> image ->
//! JSON gives the same JSON; JSON -> image -> JSON -> image gives the same bytes).
//!
//! The dump-directory input encoding ([`decode_dump_archive`]) is shared with
//! `xtask/src/fuzz.rs`, which writes the seed corpus in it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crust_images::json::{image_to_json, json_to_image, JsonOptions};
use crust_images::pagemap::read_head_and_entries;
use crust_images::{parse, parse_header, pb, ByteOrder, ImageDir, ImageKind, ImageReader, PagemapReader};
use prost::Message;

/// Families of image kinds; each has a fuzz target seeded with fixtures of its kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFamily {
    /// Task state: inventory, pstree, core, ids, fs, creds, signals, timers, rlimits.
    Core,
    /// Memory: mm, vmas, pagemap.
    Memory,
    /// Files and sockets: files, fdinfo, pipes, fifos, sockets and their queues, ghost
    /// files, event/signal/timer fds, notify, ttys, locks.
    Files,
    /// The rest: stats, namespaces, mounts, cgroups, network devices, cpuinfo.
    Misc,
    /// Any kind.
    Any,
}

impl ImageFamily {
    /// The family an image kind is fuzzed in.
    pub fn of(kind: ImageKind) -> ImageFamily {
        use ImageKind::*;
        match kind {
            Inventory | Pstree | Core | Ids | Fs | Creds | Seccomp | Sigact | Itimers | PosixTimers | Rlimit
            | Signal | Psignal => ImageFamily::Core,
            Mm | Vmas | Pagemap | Pages => ImageFamily::Memory,
            Files | Fdinfo | Pipes | PipesData | Fifo | FifoData | Unixsk | Inetsk | Packetsk | NetlinkSk
            | SkQueues | TcpStream | RegFiles | ExtFiles | RemapFpath | GhostFile | EventfdFile | EventpollFile
            | EventpollTfd | Signalfd | InotifyFile | InotifyWd | FanotifyFile | FanotifyMark | TtyFiles
            | TtyInfo | TtyData | FileLocks | Tunfile | Timerfd | MemfdInode | BpfmapFile | NsFiles => {
                ImageFamily::Files
            }
            _ => ImageFamily::Misc,
        }
    }
}

/// Page size the memory checks assume.
const PAGE_SIZE: u64 = 4096;

/// Plain JSON (crit decode): the mode whose round trip must be exact.
const PLAIN: JsonOptions = JsonOptions { pretty: false, no_payload: false };
/// Pretty JSON (crit show): hex, flags, dev, address and dict formats.
const PRETTY: JsonOptions = JsonOptions { pretty: true, no_payload: false };

/// Parses one image file of the family (inputs of other kinds are skipped): framing,
/// typed decoding of the entries the engine reads, and both JSON renderings with
/// their round trips.
pub fn fuzz_image(family: ImageFamily, bytes: &[u8]) {
    let Ok(header) = parse_header("fuzz.img", bytes) else { return };
    if family != ImageFamily::Any && ImageFamily::of(header.kind) != family {
        return;
    }
    let file = header.kind.file_name(1);
    if parse(&file, bytes).is_err() {
        return;
    }
    decode_typed(&file, header.kind, bytes);
    let _ = image_to_json(&file, bytes, &JsonOptions { pretty: true, no_payload: true });
    let Ok(plain) = image_to_json(&file, bytes, &PLAIN) else { return };
    let reencoded = json_to_image(&plain, header.byte_order)
        .unwrap_or_else(|error| panic!("{file}: JSON decoded from the image does not encode back: {error}"));
    let plain_again = image_to_json(&file, &reencoded, &PLAIN)
        .unwrap_or_else(|error| panic!("{file}: re-encoded image does not decode: {error}"));
    assert_eq!(plain, plain_again, "{file}: image -> JSON -> image -> JSON changed the JSON");
    check_pretty_round_trip(&file, &reencoded, header.byte_order);
}

/// Writes the files of a dump-directory input ([`decode_dump_archive`]) into a scratch
/// directory and opens it as a restore would: inventory, pstree, then each task's
/// core, ids, fs, mm and pagemap, and every other file by the kind its name says.
pub fn fuzz_dump_dir(bytes: &[u8]) {
    let files = decode_dump_archive(bytes);
    let directory = scratch_directory();
    clear_directory(directory);
    for (name, contents) in &files {
        if fs::write(directory.join(name), contents).is_err() {
            return;
        }
    }
    open_dump_directory(directory, &files);
}

/// Parses crit JSON into an image and back: when the image made from the JSON parses,
/// JSON -> image -> JSON -> image must give the same bytes, in plain and pretty JSON.
pub fn fuzz_json(bytes: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else { return };
    let Ok(image) = json_to_image(&json, ByteOrder::Little) else { return };
    let Ok(header) = parse_header("fuzz.img", &image) else { return };
    let file = header.kind.file_name(1);
    // JSON is free to describe an image that does not parse (an entry's payload length
    // that disagrees with its "extra", as crit also writes it): only images that parse
    // must round-trip.
    let Ok(plain) = image_to_json(&file, &image, &PLAIN) else { return };
    let again = json_to_image(&plain, ByteOrder::Little)
        .unwrap_or_else(|error| panic!("{file}: decoded JSON does not encode: {error}"));
    assert_eq!(image, again, "{file}: JSON -> image -> JSON -> image changed the bytes");
    check_pretty_round_trip(&file, &image, ByteOrder::Little);
}

/// Most files a dump-directory input may hold; the rest is ignored.
pub const MAX_DUMP_FILES: usize = 64;

/// Decodes a dump-directory fuzz input: repeated `name length (u8), name, contents
/// length (u32 little-endian), contents`. A length past the end takes what is left.
/// Names are sanitised to `[A-Za-z0-9._-]`, and `.`/`..`/empty names are dropped, so
/// every name is a plain file inside the directory.
pub fn decode_dump_archive(mut bytes: &[u8]) -> Vec<(String, &[u8])> {
    let mut files = Vec::new();
    while files.len() < MAX_DUMP_FILES {
        let Some((&name_length, rest)) = bytes.split_first() else { break };
        let name_length = usize::from(name_length).min(rest.len());
        let (raw_name, rest) = rest.split_at(name_length);
        let Some((length_bytes, rest)) = rest.split_first_chunk::<4>() else { break };
        let length = usize::try_from(u32::from_le_bytes(*length_bytes)).unwrap_or(usize::MAX).min(rest.len());
        let (contents, rest) = rest.split_at(length);
        bytes = rest;
        let name: String = raw_name
            .iter()
            .map(|&byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => char::from(byte),
                _ => '_',
            })
            .collect();
        if !name.is_empty() && name != "." && name != ".." {
            files.push((name, contents));
        }
    }
    files
}

/// An image made from pretty JSON of `image` must be `image` again.
fn check_pretty_round_trip(file: &str, image: &[u8], byte_order: ByteOrder) {
    let pretty = image_to_json(file, image, &PRETTY)
        .unwrap_or_else(|error| panic!("{file}: image decodes plain but not pretty: {error}"));
    let from_pretty = json_to_image(&pretty, byte_order)
        .unwrap_or_else(|error| panic!("{file}: pretty JSON does not encode back: {error}"));
    assert_eq!(image, from_pretty.as_slice(), "{file}: image -> pretty JSON -> image changed the bytes");
}

/// Decodes the entries of the kinds the engine reads as typed messages, and checks a
/// pagemap the way restore uses it.
fn decode_typed(file: &str, kind: ImageKind, bytes: &[u8]) {
    let Ok(mut reader) = ImageReader::from_bytes(file, bytes.to_vec()) else { return };
    match kind {
        ImageKind::Inventory => drain::<pb::InventoryEntry>(&mut reader),
        ImageKind::Pstree => drain::<pb::PstreeEntry>(&mut reader),
        ImageKind::Core => drain::<pb::CoreEntry>(&mut reader),
        ImageKind::Ids => drain::<pb::TaskKobjIdsEntry>(&mut reader),
        ImageKind::Fs => drain::<pb::FsEntry>(&mut reader),
        ImageKind::Mm => drain::<pb::MmEntry>(&mut reader),
        ImageKind::Files => drain::<pb::FileEntry>(&mut reader),
        ImageKind::Fdinfo => drain::<pb::FdinfoEntry>(&mut reader),
        ImageKind::Pagemap => {
            let Ok((head, entries)) = read_head_and_entries(&mut reader) else { return };
            // A pages file as long as the largest the runs could need, and a short one.
            for pages_len in [u64::MAX, PAGE_SIZE] {
                if let Ok(pagemap) = PagemapReader::from_parts(file, &head, &entries, pages_len, PAGE_SIZE) {
                    walk_pagemap(&pagemap);
                }
            }
        }
        _ => {}
    }
}

fn drain<M: Message + Default>(reader: &mut ImageReader) {
    while let Ok(Some(_)) = reader.next_entry::<M>() {}
}

fn walk_pagemap(pagemap: &PagemapReader) {
    let _ = pagemap.stored_pages();
    for run in pagemap.runs() {
        let end = run.end(pagemap.page_size());
        for vaddr in [run.vaddr, end.saturating_sub(1), end] {
            let _ = pagemap.run_for(vaddr);
            let _ = pagemap.offset_of(vaddr);
        }
    }
}

fn open_dump_directory(directory: &Path, files: &[(String, &[u8])]) {
    let dump = ImageDir::new(directory);
    let _ = dump.read_single::<pb::InventoryEntry>(ImageKind::Inventory, 0);
    if let Ok(tasks) = dump.read_entries::<pb::PstreeEntry>(ImageKind::Pstree, 0) {
        for task in tasks.iter().take(16) {
            let pid = u64::from(task.pid);
            for tid in task.threads.iter().take(16) {
                let _ = dump.read_single::<pb::CoreEntry>(ImageKind::Core, u64::from(*tid));
            }
            let _ = dump.read_single::<pb::TaskKobjIdsEntry>(ImageKind::Ids, pid);
            let _ = dump.read_single::<pb::FsEntry>(ImageKind::Fs, pid);
            let _ = dump.read_single::<pb::MmEntry>(ImageKind::Mm, pid);
            if let Ok(pagemap) = dump.pagemap(pid, PAGE_SIZE) {
                walk_pagemap(&pagemap);
            }
        }
    }
    for (name, contents) in files {
        if ImageKind::from_file_name(name).is_none() {
            continue;
        }
        if let Ok(mut reader) = ImageReader::open(&directory.join(name)) {
            while let Ok(Some(_)) = reader.next_raw_entry() {}
        }
        let _ = image_to_json(name, contents, &PRETTY);
    }
}

/// A per-process scratch directory under the temp dir, made once.
fn scratch_directory() -> &'static Path {
    static DIRECTORY: OnceLock<PathBuf> = OnceLock::new();
    DIRECTORY.get_or_init(|| {
        let directory = std::env::temp_dir().join(format!("crust-fuzz-dump-{}", std::process::id()));
        fs::create_dir_all(&directory).expect("create the fuzz scratch directory");
        directory
    })
}

fn clear_directory(directory: &Path) {
    if let Ok(entries) = fs::read_dir(directory) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_archive_xtask_writes() {
        let files = decode_dump_archive(b"\x05a.img\x01\0\0\0A\x05b.img\x02\0\0\0BB");
        assert_eq!(files, vec![("a.img".to_string(), &b"A"[..]), ("b.img".to_string(), &b"BB"[..])]);
    }

    #[test]
    fn archive_names_stay_inside_the_directory() {
        let files = decode_dump_archive(b"\x05../x/\x00\0\0\0\x02..\x00\0\0\0");
        assert_eq!(files, vec![(".._x_".to_string(), &b""[..])]);
    }

    #[test]
    fn truncated_archive_takes_what_is_left() {
        let files = decode_dump_archive(b"\x01a\xff\0\0\0xyz");
        assert_eq!(files, vec![("a".to_string(), &b"xyz"[..])]);
    }

    /// Every fixture image goes through the image target without tripping it.
    #[test]
    fn fixtures_pass_the_image_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/tests");
        let mut checked = 0;
        for fixture_dir in ["fixtures/dump", "fixtures/arch", "fixtures/s390x-dump", "criu-fixtures/threads", "criu-fixtures/pipe"] {
            let Ok(entries) = fs::read_dir(root.join(fixture_dir)) else { continue };
            for entry in entries.flatten() {
                if entry.path().is_file() {
                    let bytes = fs::read(entry.path()).expect("read fixture");
                    fuzz_image(ImageFamily::Any, &bytes);
                    checked += 1;
                }
            }
        }
        if checked == 0 {
            eprintln!("skipped: no image fixtures under {}", root.display());
        }
    }
}
