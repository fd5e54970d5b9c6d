//! The VM's initramfs as a cpio archive in the `newc` format the kernel unpacks, written
//! here rather than by the `cpio` program: one tool less on the machine, and the same
//! bytes for the same tree (names sorted, owner root, times zero).
//!
//! Format (the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`):
//! per entry a 110-byte ASCII header, `070701` then 13 fields of 8 hex digits (ino, mode,
//! uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize
//! with its NUL, check), the name and a NUL padded to 4 bytes, the data padded to 4
//! bytes; the archive ends with an entry named `TRAILER!!!`.

use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Packs everything under `root` (not `root` itself) into the archive `out`.
pub fn pack_dir(root: &Path, out: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut writer = Writer::new(std::io::BufWriter::new(file));
    writer.add_tree(root, "").with_context(|| format!("pack {} into {}", root.display(), out.display()))?;
    writer.finish().with_context(|| format!("write {}", out.display()))?;
    Ok(())
}

/// A `newc` archive being written.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> Writer<W> {
    /// An archive written to `out`.
    pub fn new(out: W) -> Self {
        Writer { out, written: 0, next_ino: 1 }
    }

    /// Adds the directory `dir` under the archive path `prefix` ("" for the top),
    /// children in name order after their directory.
    pub fn add_tree(&mut self, dir: &Path, prefix: &str) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("list {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("list {}", dir.display()))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().into_string().map_err(|name| anyhow::anyhow!("{}: name {name:?} is not UTF-8", dir.display()))?;
            let archived = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = std::fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
            let permissions = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                self.add_entry(&archived, libc_mode::DIR | permissions, 2, &[])?;
                self.add_tree(&path, &archived)?;
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).with_context(|| format!("readlink {}", path.display()))?;
                self.add_entry(&archived, libc_mode::LINK | 0o777, 1, target.as_os_str().as_encoded_bytes())?;
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                self.add_entry(&archived, libc_mode::FILE | permissions, 1, &bytes)?;
            } else {
                bail!("{}: neither file, directory nor symlink", path.display());
            }
        }
        Ok(())
    }

    /// Adds one entry: `mode` holds the file type bits, `data` the contents (a symlink's
    /// target).
    pub fn add_entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) -> anyhow::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(ino, mode, nlink, data.len(), name)?;
        self.write(data)?;
        self.pad()?;
        Ok(())
    }

    /// Writes the trailer and flushes; returns the sink.
    pub fn finish(mut self) -> anyhow::Result<W> {
        self.header(0, 0, 1, 0, "TRAILER!!!")?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, ino: u32, mode: u32, nlink: u32, size: usize, name: &str) -> anyhow::Result<()> {
        let size = u32::try_from(size).with_context(|| format!("{name}: {size} bytes is too big for newc"))?;
        let name_size = name.len() as u32 + 1;
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, name_size, 0];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> anyhow::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.write(&[0; 3][..pad])
    }
}

/// File type bits of `st_mode`.
mod libc_mode {
    pub const DIR: u32 = 0o040000;
    pub const FILE: u32 = 0o100000;
    pub const LINK: u32 = 0o120000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_the_newc_layout() {
        let mut writer = Writer::new(Vec::new());
        writer.add_entry("init", libc_mode::FILE | 0o755, 1, b"hello").unwrap();
        let bytes = writer.finish().unwrap();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000001\
             000081ED\
             00000000\
             00000000\
             00000001\
             00000000\
             00000005\
             00000000\
             00000000\
             00000000\
             00000000\
             00000005\
             00000000"
        );
        // Name "init\0" ends at 115, padded to 116; data to 121, padded to 124.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..124], b"hello\0\0\0");
        assert_eq!(&bytes[124..130], b"070701");
        assert!(bytes[124..].windows(11).any(|w| w == b"TRAILER!!!\0"));
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn a_tree_is_packed_parents_first_in_name_order() {
        let root = std::env::temp_dir().join(format!("crust-newc-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("lib/sub")).unwrap();
        std::fs::write(root.join("lib/sub/b"), b"bb").unwrap();
        std::fs::write(root.join("a"), b"a").unwrap();
        std::os::unix::fs::symlink("lib/sub/b", root.join("link")).unwrap();
        let mut writer = Writer::new(Vec::new());
        writer.add_tree(&root, "").unwrap();
        let bytes = writer.finish().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let order: Vec<usize> = ["a\0", "lib\0", "lib/sub\0", "lib/sub/b\0", "link\0", "TRAILER!!!\0"]
            .iter()
            .map(|name| text.find(name).unwrap_or_else(|| panic!("{name:?} missing")))
            .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{order:?}");
        // The symlink's data is its target.
        assert!(text.contains("link\0\0lib/sub/b"));
    }
}
