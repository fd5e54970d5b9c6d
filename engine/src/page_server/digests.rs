//! Page digests: what an incremental dump over a page server compares each page with.
//!
//! A local incremental dump compares the frozen tree's pages with the parent dump's
//! pages (`memory/incremental.rs`); over the wire the parent's pages are on the other
//! machine, and this kernel has no soft-dirty bits to say which pages changed. So a dump
//! that sends its pages to a page server keeps, in its own images directory, the XXH3
//! 128-bit digest of every page it sent or referred to (`crust-page-digests-ID`, ID the
//! process's pid in the images), and the next dump (`--prev-images-dir`) sends a page
//! as PE_PARENT when its digest equals the parent's at the same address and the page
//! server says its parent dump has the process. Two different pages with equal 128-bit
//! digests (odds of about 2^-128 per page) would restore the older page.
//!
//! Format (crust's own file, not an image CRIU or crit reads): the magic
//! `CRUSTPD1`, the page size (u64), the count (u64), then per page its address (u64)
//! and digest (u128), little-endian, sorted by address.

use std::io;
use std::path::Path;

const MAGIC: &[u8; 8] = b"CRUSTPD1";
const ENTRY: usize = 24;

/// The file name of process `id`'s digests.
pub fn file_name(id: u64) -> String {
    format!("crust-page-digests-{id}")
}

/// The digest of one page.
pub fn digest(page: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(page)
}

/// One process's page digests, by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub page_size: u64,
    /// (address, digest), sorted by address.
    pub entries: Vec<(u64, u128)>,
}

impl Digests {
    /// Reads `dir`'s digests of process `id`; `None` when there are none (or they are
    /// not whole: then every page is sent).
    pub fn read(dir: &Path, id: u64) -> io::Result<Option<Digests>> {
        let bytes = match std::fs::read(dir.join(file_name(id))) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(Digests::parse(&bytes))
    }

    /// Parses the file's bytes; `None` when they are not a whole, sorted digests file.
    pub fn parse(bytes: &[u8]) -> Option<Digests> {
        let word = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        if bytes.get(..8)? != MAGIC {
            return None;
        }
        let page_size = word(8)?;
        let count = usize::try_from(word(16)?).ok()?;
        let body = bytes.get(24..)?;
        if body.len() != count.checked_mul(ENTRY)? {
            return None;
        }
        let entries: Vec<(u64, u128)> = body
            .chunks_exact(ENTRY)
            .map(|e| (u64::from_le_bytes(e[..8].try_into().expect("8 bytes")), u128::from_le_bytes(e[8..].try_into().expect("16 bytes"))))
            .collect();
        entries.windows(2).all(|w| w[0].0 < w[1].0).then_some(Digests { page_size, entries })
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.entries.len() * ENTRY);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (address, digest) in &self.entries {
            out.extend_from_slice(&address.to_le_bytes());
            out.extend_from_slice(&digest.to_le_bytes());
        }
        out
    }

    /// Writes them as `dir`'s digests of process `id` (0600).
    pub fn write(&self, dir: &Path, id: u64) -> io::Result<()> {
        crate::private::write_file(&dir.join(file_name(id)), &self.encode())
    }

    /// The digest of the page at `address`.
    pub fn get(&self, address: u64) -> Option<u128> {
        self.entries.binary_search_by_key(&address, |e| e.0).ok().map(|i| self.entries[i].1)
    }
}

/// Removes every digests file from `dir` (a dump starting over in it).
pub fn remove_all(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(|n| n.starts_with("crust-page-digests-")) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_refuse_damage() {
        let digests = Digests { page_size: 4096, entries: vec![(0x1000, 7), (0x3000, u128::MAX), (0x4000, digest(&[0; 4096]))] };
        let bytes = digests.encode();
        assert_eq!(Digests::parse(&bytes), Some(digests.clone()));
        assert_eq!(digests.get(0x3000), Some(u128::MAX));
        assert_eq!(digests.get(0x2000), None);
        assert_eq!(Digests::parse(&bytes[..bytes.len() - 1]), None);
        let mut unsorted = digests.clone();
        unsorted.entries.swap(0, 1);
        assert_eq!(Digests::parse(&unsorted.encode()), None);
        assert_eq!(Digests::parse(b"CRUSTPD0"), None);
        assert_ne!(digest(&[0; 4096]), digest(&[1; 4096]));
    }
}
