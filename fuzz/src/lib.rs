//! Glue between the cargo-fuzz targets in `fuzz_targets/` and crust-images.
//!
//! Every call into crust-images goes through this file, so a change of the images API
//! is fixed here once, not in each target. A target's contract: any input may be
//! rejected with an error, none may panic, hang or allocate without bound, and whatever
//! parses must survive a round trip (encode, parse again, compare).
//!
//! The dump-directory input encoding ([`decode_dump_archive`]) is shared with
//! `xtask/src/fuzz.rs`, which writes the seed corpus in it.

use prost::Message;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crust_images::pb;

/// Families of image kinds; each has a fuzz target seeded with fixtures of its kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFamily {
    /// Task state: core, pstree, ids, fs, creds, inventory, seccomp.
    Core,
    /// Memory: mm and pagemap.
    Memory,
    /// Files: files, fdinfo, pipes, pipe data, unix/inet sockets, socket queues, fifos.
    Files,
    /// The rest: stats, timens, utsns, cgroups, namespaces.
    Misc,
    /// Any kind, chosen by the magic.
    Any,
}

/// Parses one image file of the family; returns the number of entries it held.
pub fn fuzz_image(family: ImageFamily, bytes: &[u8]) -> Option<usize> {
    let image = FramedImage::parse(bytes)?;
    let kinds = match family {
        ImageFamily::Any => ImageKind::ALL,
        _ => ImageKind::of_family(family),
    };
    let kind = kinds.iter().copied().find(|kind| kind.magic() == image.magic)?;
    kind.decode_and_round_trip(&image)
}

/// Writes the files of a dump-directory input ([`decode_dump_archive`]) into a scratch
/// directory and reads it back as a dump.
pub fn fuzz_dump_dir(bytes: &[u8]) {
    let files = decode_dump_archive(bytes);
    let directory = scratch_directory();
    clear_directory(directory);
    for (name, contents) in &files {
        if fs::write(directory.join(name), contents).is_err() {
            return;
        }
    }
    open_dump_directory(directory);
}

/// Parses crit-style JSON of an image.
///
/// Interim: only the JSON text is parsed until crust-images exposes its JSON layer;
/// then this turns the value into an image, encodes it and checks that decoding and
/// printing it again gives the same JSON. (serde_json's own text round trip is no
/// property to check: without its `float_roundtrip` feature, floats may change.)
pub fn fuzz_json(bytes: &[u8]) {
    let _ = serde_json::from_slice::<serde_json::Value>(bytes);
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

/// Reads a dump directory the way a restore would start: every image file in it,
/// parsed by the kind its magic names.
fn open_dump_directory(directory: &Path) {
    let Ok(entries) = fs::read_dir(directory) else { return };
    for entry in entries.flatten() {
        if let Ok(bytes) = fs::read(entry.path()) {
            let _ = fuzz_image(ImageFamily::Any, &bytes);
        }
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

/// CRIU's magic for images of the common family; the kind's magic follows it.
const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// CRIU's magic for service images (stats); the kind's magic follows it.
const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

/// An image split into its magic and its length-prefixed entries.
///
/// Interim framing reader, until crust-images exposes its own pure parser: then
/// `fuzz_image` calls that instead and this goes.
struct FramedImage<'a> {
    magic: u32,
    entries: Vec<&'a [u8]>,
}

impl<'a> FramedImage<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (first, mut rest) = split_u32(bytes)?;
        let magic = if first == IMG_COMMON_MAGIC || first == IMG_SERVICE_MAGIC {
            let (second, after) = split_u32(rest)?;
            rest = after;
            second
        } else {
            first
        };
        let mut entries = Vec::new();
        while !rest.is_empty() {
            let (length, after) = split_u32(rest)?;
            let length = usize::try_from(length).ok()?;
            if length > after.len() {
                return None;
            }
            let (entry, after) = after.split_at(length);
            entries.push(entry);
            rest = after;
        }
        Some(FramedImage { magic, entries })
    }
}

fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

/// The image kinds the interim reader knows, with CRIU's magics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImageKind {
    Inventory,
    Core,
    Pstree,
    Ids,
    Fs,
    Creds,
    Seccomp,
    Mm,
    Pagemap,
    Files,
    Fdinfo,
    Stats,
    Timens,
}

impl ImageKind {
    const ALL: &'static [ImageKind] = &[
        ImageKind::Inventory,
        ImageKind::Core,
        ImageKind::Pstree,
        ImageKind::Ids,
        ImageKind::Fs,
        ImageKind::Creds,
        ImageKind::Seccomp,
        ImageKind::Mm,
        ImageKind::Pagemap,
        ImageKind::Files,
        ImageKind::Fdinfo,
        ImageKind::Stats,
        ImageKind::Timens,
    ];

    fn of_family(family: ImageFamily) -> &'static [ImageKind] {
        match family {
            ImageFamily::Core => &[
                ImageKind::Inventory,
                ImageKind::Core,
                ImageKind::Pstree,
                ImageKind::Ids,
                ImageKind::Fs,
                ImageKind::Creds,
                ImageKind::Seccomp,
            ],
            ImageFamily::Memory => &[ImageKind::Mm, ImageKind::Pagemap],
            ImageFamily::Files => &[ImageKind::Files, ImageKind::Fdinfo],
            ImageFamily::Misc => &[ImageKind::Stats, ImageKind::Timens],
            ImageFamily::Any => ImageKind::ALL,
        }
    }

    fn magic(self) -> u32 {
        match self {
            ImageKind::Inventory => 0x5831_3116,
            ImageKind::Core => 0x5505_3847,
            ImageKind::Pstree => 0x5027_3030,
            ImageKind::Ids => 0x5443_2030,
            ImageKind::Fs => 0x5140_3912,
            ImageKind::Creds => 0x5402_3547,
            ImageKind::Seccomp => 0x6441_3049,
            ImageKind::Mm => 0x5749_2820,
            ImageKind::Pagemap => 0x5608_4025,
            ImageKind::Files => 0x5630_3138,
            ImageKind::Fdinfo => 0x5621_3732,
            ImageKind::Stats => 0x5709_3306,
            ImageKind::Timens => 0x4311_4433,
        }
    }

    /// Decodes every entry as the kind's message and checks encode-then-decode gives it
    /// back; returns how many entries decoded.
    fn decode_and_round_trip(self, image: &FramedImage<'_>) -> Option<usize> {
        let mut decoded = 0;
        for (index, entry) in image.entries.iter().enumerate() {
            let ok = match self {
                ImageKind::Inventory => round_trip::<pb::InventoryEntry>(entry),
                ImageKind::Core => round_trip::<pb::CoreEntry>(entry),
                ImageKind::Pstree => round_trip::<pb::PstreeEntry>(entry),
                ImageKind::Ids => round_trip::<pb::TaskKobjIdsEntry>(entry),
                ImageKind::Fs => round_trip::<pb::FsEntry>(entry),
                ImageKind::Creds => round_trip::<pb::CredsEntry>(entry),
                ImageKind::Seccomp => round_trip::<pb::SeccompEntry>(entry),
                ImageKind::Mm => round_trip::<pb::MmEntry>(entry),
                ImageKind::Pagemap if index == 0 => round_trip::<pb::PagemapHead>(entry),
                ImageKind::Pagemap => round_trip::<pb::PagemapEntry>(entry),
                ImageKind::Files => round_trip::<pb::FileEntry>(entry),
                ImageKind::Fdinfo => round_trip::<pb::FdinfoEntry>(entry),
                ImageKind::Stats => round_trip::<pb::StatsEntry>(entry),
                ImageKind::Timens => round_trip::<pb::TimensEntry>(entry),
            };
            if !ok {
                return None;
            }
            decoded += 1;
        }
        Some(decoded)
    }
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> bool {
    let Ok(message) = M::decode(bytes) else { return false };
    let encoded = message.encode_to_vec();
    let again = M::decode(encoded.as_slice()).expect("an encoded message decodes");
    assert_eq!(message, again, "protobuf round trip changed the message");
    true
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

    #[test]
    fn reference_fixtures_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/tests/criu-fixtures/threads");
        let Ok(entries) = fs::read_dir(&root) else {
            eprintln!("skipped: no fixtures at {}", root.display());
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".img") && !name.starts_with("pages-") {
                let bytes = fs::read(entry.path()).expect("read fixture");
                assert!(fuzz_image(ImageFamily::Any, &bytes).is_some(), "{name} does not parse");
            }
        }
    }
}
