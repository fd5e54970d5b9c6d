//! `crust-checksums.img`: crust's own image, beside CRIU's in a dump it made. CRIU and
//! crit read no file of that name (they open images by name), so a dump with it stays
//! a CRIU dump. It holds:
//! - the names of every image the dump wrote (so a missing `pipes-data.img` or
//!   `ids-PID.img` is found, though neither is required by the others);
//! - for each pagemap (`pagemap-PID.img`, `pagemap-shmem-N.img`), the CRC-32C of every
//!   run of pages stored in its pages file, in pagemap order.
//!
//! Framing as CRIU's images (`IMG_COMMON_MAGIC`, then a magic of crust's own that no
//! CRIU image has, then u32-length-prefixed protobuf entries in the writer's byte
//! order), with [`ChecksumsEntry`], a message of crust's own (not in `proto/`, which
//! holds CRIU's schema only). A long list of runs is cut into entries of at most
//! [`RUNS_PER_ENTRY`] runs.

use crate::error::ImageError;
use crate::image::{ByteOrder, MAX_ENTRY_SIZE};
use crate::magic::IMG_COMMON_MAGIC;

/// The file's name in a dump directory.
pub const CHECKSUMS_FILE: &str = "crust-checksums.img";
/// The magic after `IMG_COMMON_MAGIC`: crust's own ("CRsT"), not one of CRIU's.
pub const CHECKSUMS_MAGIC: u32 = 0x5473_5243;
/// The checksum algorithm of [`ChecksumsEntry::crc32c`] (CRC-32C, Castagnoli).
pub const ALGORITHM_CRC32C: u32 = 1;
/// Runs per entry: 256 KiB of checksums.
pub const RUNS_PER_ENTRY: usize = 64 << 10;

/// One entry of `crust-checksums.img`: a list of images, or checksums of page runs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChecksumsEntry {
    /// Names of images this dump wrote (the directory's files, not this one).
    #[prost(string, repeated, tag = "1")]
    pub images: Vec<String>,
    /// The pagemap whose runs these are (`pagemap-42.img`).
    #[prost(string, optional, tag = "2")]
    pub pagemap: Option<String>,
    /// How many runs with pages in the pages file the pagemap has (first entry of a
    /// pagemap only).
    #[prost(uint32, optional, tag = "3")]
    pub runs: Option<u32>,
    /// Index (among those runs) of the first checksum below.
    #[prost(uint32, optional, tag = "4")]
    pub first_run: Option<u32>,
    /// [`ALGORITHM_CRC32C`].
    #[prost(uint32, optional, tag = "5")]
    pub algorithm: Option<u32>,
    /// CRC-32C of each run's bytes, in pagemap order.
    #[prost(fixed32, repeated, tag = "6")]
    pub crc32c: Vec<u32>,
}

/// The content of `crust-checksums.img`, gathered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checksums {
    /// Every image the dump wrote.
    pub images: Vec<String>,
    /// Pagemap file name → CRC-32C of each stored run, in order.
    pub pagemaps: std::collections::BTreeMap<String, Vec<u32>>,
}

impl Checksums {
    /// The entries that hold it.
    pub fn to_entries(&self) -> Vec<ChecksumsEntry> {
        let mut entries = vec![ChecksumsEntry { images: self.images.clone(), ..Default::default() }];
        for (pagemap, crcs) in &self.pagemaps {
            let chunks: Vec<&[u32]> = if crcs.is_empty() { vec![&[]] } else { crcs.chunks(RUNS_PER_ENTRY).collect() };
            for (index, chunk) in chunks.into_iter().enumerate() {
                entries.push(ChecksumsEntry {
                    pagemap: Some(pagemap.clone()),
                    runs: (index == 0).then_some(crcs.len() as u32),
                    first_run: Some((index * RUNS_PER_ENTRY) as u32),
                    algorithm: Some(ALGORITHM_CRC32C),
                    crc32c: chunk.to_vec(),
                    ..Default::default()
                });
            }
        }
        entries
    }

    /// Gathers entries; `file` names the image in errors.
    pub fn from_entries(file: &str, entries: Vec<ChecksumsEntry>) -> Result<Checksums, ImageError> {
        let mut checksums = Checksums::default();
        let mut expected: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let bad = |what: String| ImageError::Invalid { file: file.to_owned(), index, what };
            // Every name is one an image has (the refusals that name them stay one line).
            if let Some(name) = entry.images.iter().chain(&entry.pagemap).find(|name| crate::ImageKind::from_file_name(name).is_none()) {
                return Err(bad(format!("lists {name:?}, which is no image's name")));
            }
            checksums.images.extend(entry.images);
            let Some(pagemap) = entry.pagemap else { continue };
            if entry.algorithm != Some(ALGORITHM_CRC32C) {
                return Err(bad(format!("{pagemap}: algorithm {:?} is not CRC-32C ({ALGORITHM_CRC32C})", entry.algorithm)));
            }
            let crcs = checksums.pagemaps.entry(pagemap.clone()).or_default();
            if entry.first_run != Some(crcs.len() as u32) {
                return Err(bad(format!("{pagemap}: first_run {:?} where run {} comes next", entry.first_run, crcs.len())));
            }
            if let Some(runs) = entry.runs {
                if expected.insert(pagemap.clone(), runs).is_some() {
                    return Err(bad(format!("{pagemap}: listed twice")));
                }
            }
            crcs.extend(entry.crc32c);
        }
        for (pagemap, crcs) in &checksums.pagemaps {
            match expected.get(pagemap) {
                Some(&runs) if runs as usize == crcs.len() => {}
                runs => {
                    return Err(ImageError::Invalid {
                        file: file.to_owned(),
                        index: 0,
                        what: format!("{pagemap}: {} checksums for {runs:?} runs", crcs.len()),
                    })
                }
            }
        }
        Ok(checksums)
    }
}

/// The bytes of `crust-checksums.img` holding `entries`.
pub fn encode(entries: &[ChecksumsEntry], byte_order: ByteOrder) -> Vec<u8> {
    use prost::Message;
    let mut out = Vec::new();
    out.extend_from_slice(&byte_order.write_u32(IMG_COMMON_MAGIC));
    out.extend_from_slice(&byte_order.write_u32(CHECKSUMS_MAGIC));
    for entry in entries {
        let bytes = entry.encode_to_vec();
        out.extend_from_slice(&byte_order.write_u32(bytes.len() as u32));
        out.extend_from_slice(&bytes);
    }
    out
}

/// Whether `bytes` start as `crust-checksums.img` does.
pub fn is_checksums_image(bytes: &[u8]) -> bool {
    decode_header(bytes).is_some()
}

fn decode_header(bytes: &[u8]) -> Option<ByteOrder> {
    let first: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let second: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    [ByteOrder::Little, ByteOrder::Big]
        .into_iter()
        .find(|order| order.read_u32(first) == IMG_COMMON_MAGIC && order.read_u32(second) == CHECKSUMS_MAGIC)
}

/// Decodes `crust-checksums.img`. Pure; `file` names it in errors.
pub fn decode(file: &str, bytes: &[u8]) -> Result<Vec<ChecksumsEntry>, ImageError> {
    use prost::Message;
    let byte_order = decode_header(bytes).ok_or_else(|| ImageError::BadMagic {
        file: file.to_owned(),
        offset: 0,
        magic: bytes.get(..4).map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes"))).unwrap_or(0),
    })?;
    let mut entries = Vec::new();
    let mut position = 8usize;
    while position < bytes.len() {
        let index = entries.len();
        let available = (bytes.len() - position) as u64;
        let Some(size_bytes) = bytes.get(position..position + 4) else {
            return Err(ImageError::Truncated { file: file.to_owned(), offset: position as u64, index, what: "size", needed: 4, available });
        };
        let size = u64::from(byte_order.read_u32(size_bytes.try_into().expect("4 bytes")));
        if size > MAX_ENTRY_SIZE {
            return Err(ImageError::EntryTooLarge { file: file.to_owned(), offset: position as u64, index, size, limit: MAX_ENTRY_SIZE });
        }
        if size > available - 4 {
            return Err(ImageError::Truncated { file: file.to_owned(), offset: position as u64, index, what: "entry", needed: size, available: available - 4 });
        }
        let start = position + 4;
        let end = start + size as usize;
        let entry = ChecksumsEntry::decode(&bytes[start..end]).map_err(|source| ImageError::Decode {
            file: file.to_owned(),
            offset: position as u64,
            index,
            message: "crust_checksums_entry".into(),
            source,
        })?;
        entries.push(entry);
        position = end;
    }
    Ok(entries)
}

/// The name of the image's magic in crit-style JSON.
pub const JSON_MAGIC: &str = "CRUST_CHECKSUMS";

/// crit-style JSON of the entries (`crust show crust-checksums.img`): checksums as hex.
pub fn to_json(entries: &[ChecksumsEntry]) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let entries: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut object = Map::new();
            if !entry.images.is_empty() {
                object.insert("images".into(), json!(entry.images));
            }
            if let Some(pagemap) = &entry.pagemap {
                object.insert("pagemap".into(), json!(pagemap));
            }
            for (name, value) in [("runs", entry.runs), ("first_run", entry.first_run), ("algorithm", entry.algorithm)] {
                if let Some(value) = value {
                    object.insert(name.into(), json!(value));
                }
            }
            if entry.pagemap.is_some() {
                object.insert("crc32c".into(), json!(entry.crc32c.iter().map(|c| format!("{c:#010x}")).collect::<Vec<_>>()));
            }
            Value::Object(object)
        })
        .collect();
    json!({ "magic": JSON_MAGIC, "entries": entries })
}

/// The entries back from [`to_json`]'s JSON.
pub fn from_json(json: &serde_json::Value) -> Result<Vec<ChecksumsEntry>, String> {
    let entries = json.get("entries").and_then(|e| e.as_array()).ok_or("no \"entries\" array")?;
    let number = |value: &serde_json::Value, name: &str| -> Result<Option<u32>, String> {
        match value.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or(format!("{name}: not a 32-bit number")),
        }
    };
    entries
        .iter()
        .map(|value| {
            let images = match value.get("images") {
                None => Vec::new(),
                Some(list) => list
                    .as_array()
                    .ok_or("images: not a list")?
                    .iter()
                    .map(|name| name.as_str().map(str::to_owned).ok_or("images: not a string".to_string()))
                    .collect::<Result<_, _>>()?,
            };
            let crc32c = match value.get("crc32c") {
                None => Vec::new(),
                Some(list) => list
                    .as_array()
                    .ok_or("crc32c: not a list")?
                    .iter()
                    .map(|c| {
                        c.as_str()
                            .and_then(|text| u32::from_str_radix(text.trim_start_matches("0x"), 16).ok())
                            .ok_or(format!("crc32c: {c} is not a hex number"))
                    })
                    .collect::<Result<_, _>>()?,
            };
            Ok(ChecksumsEntry {
                images,
                pagemap: value.get("pagemap").and_then(|p| p.as_str()).map(str::to_owned),
                runs: number(value, "runs")?,
                first_run: number(value, "first_run")?,
                algorithm: number(value, "algorithm")?,
                crc32c,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_both_byte_orders() {
        let mut checksums = Checksums { images: vec!["core-1.img".into(), "pages-1.img".into()], ..Default::default() };
        checksums.pagemaps.insert("pagemap-1.img".into(), (0..(RUNS_PER_ENTRY as u32 + 5)).collect());
        checksums.pagemaps.insert("pagemap-2.img".into(), Vec::new());
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let bytes = encode(&checksums.to_entries(), order);
            assert!(is_checksums_image(&bytes));
            let back = Checksums::from_entries(CHECKSUMS_FILE, decode(CHECKSUMS_FILE, &bytes).unwrap()).unwrap();
            assert_eq!(back, checksums);
        }
    }

    #[test]
    fn json_round_trip() {
        let checksums = Checksums { images: vec!["core-1.img".into()], pagemaps: [("pagemap-1.img".to_string(), vec![1, 0xdeadbeef])].into() };
        let entries = checksums.to_entries();
        let json = to_json(&entries);
        assert_eq!(json["entries"][1]["crc32c"][1], "0xdeadbeef");
        assert_eq!(from_json(&json).unwrap(), entries);
    }

    #[test]
    fn a_name_that_is_no_image_is_refused_on_one_line() {
        for (images, pagemap) in [(vec!["ids-3.img\n\t".to_string()], None), (vec![], Some("pagemap-1.img/../x".to_string())), (vec!["".to_string()], None)] {
            let entry = ChecksumsEntry { images, pagemap, ..Default::default() };
            let error = Checksums::from_entries(CHECKSUMS_FILE, vec![entry]).expect_err("refused").to_string();
            assert!(error.contains("which is no image's name") && !error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn the_magic_is_no_criu_image_kind() {
        assert_eq!(crate::ImageKind::from_magic(CHECKSUMS_MAGIC), None);
        assert_eq!(crate::ImageKind::from_file_name(CHECKSUMS_FILE), None);
    }

    #[test]
    fn damage_is_an_error_naming_the_file() {
        let checksums = Checksums { images: vec!["core-1.img".into()], pagemaps: [("pagemap-1.img".to_string(), vec![1, 2, 3])].into() };
        let bytes = encode(&checksums.to_entries(), ByteOrder::Little);
        for cut in [3, 9, bytes.len() - 1] {
            let error = decode(CHECKSUMS_FILE, &bytes[..cut]).map(|_| ()).unwrap_err().to_string();
            assert!(error.starts_with(CHECKSUMS_FILE), "{error}");
        }
        let mut entries = checksums.to_entries();
        entries[1].runs = Some(4);
        let error = Checksums::from_entries(CHECKSUMS_FILE, entries).unwrap_err().to_string();
        assert_eq!(error, "crust-checksums.img: entry 0: pagemap-1.img: 3 checksums for Some(4) runs");
    }
}
