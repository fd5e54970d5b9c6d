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

use crust_images::iproute::SaveStream;
use crust_images::json::{image_to_json, json_to_image, JsonOptions};
use crust_images::tar::{gzip_reader, ArchiveReader, ArchiveWriter, Entry, EntryKind, Extent, FileContents, FileLayout};
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

/// Reads a tar archive with every file's data (gzipped when the input starts with
/// gzip's magic, plain otherwise). An archive that reads cleanly must survive crust's
/// writer: its entries and data written back read to the same entries and data, and
/// writing those again gives the same bytes.
pub fn fuzz_tar(bytes: &[u8]) {
    let members = if bytes.starts_with(&GZIP_MAGIC) {
        read_tar(gzip_reader("fuzz.tar.gz", bytes))
    } else {
        read_tar(ArchiveReader::new("fuzz.tar", bytes))
    };
    let Some(members) = members else { return };
    let rewritten = write_tar(&members);
    let again = read_tar(ArchiveReader::new("rewritten.tar", rewritten.as_slice()))
        .unwrap_or_else(|| panic!("crust's archive of a readable archive does not read back"));
    assert_eq!(normalized(&members), normalized(&again), "entries or data changed through the writer");
    assert!(write_tar(&again) == rewritten, "writing the re-read archive gave other bytes");
}

/// Parses an iproute2 save stream; one that parses must write back to bytes that parse
/// to the same messages, and (padding aside) to its own bytes. Each message, pushed
/// again as bytes, must be accepted.
pub fn fuzz_iproute(bytes: &[u8]) {
    let Ok(stream) = SaveStream::parse("fuzz.img", bytes) else { return };
    let _ = (stream.addresses().count(), stream.routes().count(), stream.rules().count());
    let encoded = stream.to_bytes();
    assert_eq!(encoded.len(), bytes.len(), "a stream wrote back to another length");
    let again = SaveStream::parse("fuzz.img", &encoded)
        .unwrap_or_else(|error| panic!("written stream does not parse: {error}"));
    assert_eq!(again, stream, "messages changed through writing and parsing");
    let mut rebuilt = SaveStream::new(stream.kind);
    for message in stream.messages() {
        rebuilt.push_raw(message.bytes()).unwrap_or_else(|error| panic!("a parsed message is refused: {error}"));
    }
    assert_eq!(rebuilt, stream);
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Most file data a tar input may carry into the round trip (a small gzip input can
/// inflate to far more).
const MAX_TAR_DATA: usize = 64 << 20;

/// One archive member and the data pieces read for it, by file offset.
#[derive(Debug, PartialEq, Eq)]
struct TarMember {
    entry: Entry,
    pieces: Vec<(u64, Vec<u8>)>,
}

fn read_tar<R: std::io::Read>(mut reader: ArchiveReader<R>) -> Option<Vec<TarMember>> {
    let mut members = Vec::new();
    let mut total = 0usize;
    while let Some(entry) = reader.next_entry().ok()? {
        let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut last_end = 0u64;
        reader
            .read_data(|offset, bytes| {
                assert!(offset >= last_end, "data pieces out of order");
                if let EntryKind::File(layout) = &entry.kind {
                    assert!(offset + bytes.len() as u64 <= layout.size, "data past the file's size");
                }
                last_end = offset + bytes.len() as u64;
                total += bytes.len();
                if total > MAX_TAR_DATA {
                    return Err(std::io::Error::other("fuzz: data over the round-trip limit"));
                }
                pieces.push((offset, bytes.to_vec()));
                Ok(())
            })
            .ok()?;
        members.push(TarMember { entry, pieces });
    }
    Some(members)
}

fn write_tar(members: &[TarMember]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new());
    for member in members {
        writer
            .append_file(&member.entry, &mut Pieces(&member.pieces))
            .unwrap_or_else(|error| panic!("an entry the reader gave is refused by the writer: {error}"));
    }
    writer.finish().expect("a Vec sink does not fail")
}

/// Entries with adjacent data extents merged and the data as one run per extent: the
/// writer archives a file whose extents leave no hole as a plain file.
fn normalized(members: &[TarMember]) -> Vec<(Entry, Vec<u8>)> {
    members
        .iter()
        .map(|member| {
            let mut entry = member.entry.clone();
            if let EntryKind::File(layout) = &mut entry.kind {
                let mut merged: Vec<Extent> = Vec::new();
                for extent in &layout.data {
                    match merged.last_mut() {
                        Some(last) if last.end() == extent.offset => last.length += extent.length,
                        _ => merged.push(*extent),
                    }
                }
                *layout = FileLayout { size: layout.size, data: merged };
            }
            let data: Vec<u8> = member.pieces.iter().flat_map(|(_, bytes)| bytes.iter().copied()).collect();
            (entry, data)
        })
        .collect()
}

/// A file's contents served from the pieces read for it.
struct Pieces<'a>(&'a [(u64, Vec<u8>)]);

impl FileContents for Pieces<'_> {
    fn read_exact_at(&mut self, offset: u64, buffer: &mut [u8]) -> std::io::Result<()> {
        let mut filled = 0;
        while filled < buffer.len() {
            let at = offset + filled as u64;
            let index = self.0.partition_point(|(start, _)| *start <= at);
            let missing = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            let (start, bytes) = index.checked_sub(1).map(|index| &self.0[index]).ok_or_else(missing)?;
            let within = usize::try_from(at - start).map_err(|_| missing())?;
            if within >= bytes.len() {
                return Err(missing());
            }
            let count = (bytes.len() - within).min(buffer.len() - filled);
            buffer[filled..filled + count].copy_from_slice(&bytes[within..within + count]);
            filled += count;
        }
        Ok(())
    }
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

    /// The tmpfs archives and iproute2 streams among the fixtures pass their targets,
    /// gzipped and plain.
    #[test]
    fn fixtures_pass_the_tar_and_iproute_targets() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/tests/fixtures");
        let mut checked = 0;
        for (directory, target) in [("tmpfs", fuzz_tar as fn(&[u8])), ("netns", fuzz_iproute)] {
            let Ok(entries) = fs::read_dir(root.join(directory)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let bytes = fs::read(entry.path()).expect("read fixture");
                if name.ends_with(".gz") || name.ends_with(".gz.img") {
                    let mut plain = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes.as_slice()), &mut plain).expect("gunzip");
                    assert!(read_tar(ArchiveReader::new(name.as_str(), plain.as_slice())).is_some(), "{name}");
                    target(&plain);
                } else if !name.ends_with(".img") && !name.ends_with(".tar") {
                    continue;
                }
                target(&bytes);
                checked += 1;
            }
        }
        if checked == 0 {
            eprintln!("skipped: no tmpfs or netns fixtures under {}", root.display());
        }
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
