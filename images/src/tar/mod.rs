//! GNU tar archives, as CRIU stores a tmpfs's contents (`tmpfs-dev-N.tar.gz.img`).
//!
//! CRIU runs `tar --create --gzip --no-unquote --no-wildcards --one-file-system
//! --check-links --preserve-permissions --sparse --numeric-owner --directory MNT .` and
//! extracts with `tar --extract --gzip --no-unquote --no-wildcards --directory MNT`. The
//! machines crust runs on need not have GNU tar, so this module writes and reads that
//! format itself, from GNU tar's documented format:
//!
//! - the GNU format (`ustar  \0` magic), names relative to the mount root as tar spells
//!   them (`./`, `./dir/`, `./dir/file`), owners numeric, uname/gname empty;
//! - names and link targets over 100 bytes in `././@LongLink` pseudo-entries (`L`
//!   for the name, `K` for the target);
//! - files with holes as old-GNU sparse entries (`S`): the data extents in the header
//!   and in extension blocks, with a closing zero-length extent at the file's size; the
//!   header's size is the sum of the extents, and each extent's bytes start on a block
//!   boundary (on a tmpfs holes are whole pages, so only the last can be short);
//! - hard links (`1`) naming the first archived name of the inode;
//! - two zero blocks at the end, padded to a 10240-byte record.
//!
//! [`ArchiveWriter`] produces, for the same entries in the same order, the bytes GNU tar
//! 1.34 produces (tested against it); [`ArchiveReader`] reads GNU tar's archives back to
//! the same entries, and treats its input as hostile: every length is checked against
//! the bytes actually there before anything is allocated for it, and errors name the
//! image, the offset and the entry. Both are pure over `Read`/`Write`; gzip is flate2's
//! pure-Rust backend ([`gzip_writer`], [`gzip_reader`]).
//!
//! What the caller does, as GNU tar does it: walk the tree from its root (`.` first,
//! each directory before what it holds, in `readdir` order), name entries with
//! [`member_path`], give a file's data extents from `SEEK_DATA`/`SEEK_HOLE`, make the
//! second and later names of an inode with more than one link [`EntryKind::HardLink`]s
//! to the first, and pass owners as the tree sees them. On extraction, create each entry
//! below the mount ([`Entry::relative_path`]), write the data pieces at their offsets,
//! set the size (a trailing hole), then owners, modes and mtimes (directories last).
//!
//! ```
//! use crust_images::tar::{gzip_reader, gzip_writer, member_path, Entry, EntryKind, Extent, FileLayout};
//! use std::path::Path;
//!
//! let entry = |path: &str, kind| Entry { path: member_path(Path::new(path)), kind, mode: 0o644, uid: 0, gid: 0, mtime: 0 };
//! let mut file = vec![0u8; 8192];
//! file[4096..4100].copy_from_slice(b"data");
//! let layout = FileLayout { size: 8192, data: vec![Extent { offset: 4096, length: 4096 }] };
//!
//! let mut writer = gzip_writer(Vec::new());
//! writer.append(&entry("", EntryKind::Directory))?;
//! writer.append_file(&entry("holes", EntryKind::File(layout.clone())), &mut file.as_slice())?;
//! let archive = writer.finish_gzip()?;
//!
//! let mut reader = gzip_reader("tmpfs-dev-42.tar.gz.img", archive.as_slice());
//! assert_eq!(reader.next_entry()?.map(|root| root.path), Some(".".into()));
//! let holes = reader.next_entry()?.expect("the file");
//! assert_eq!(holes.relative_path(), Path::new("holes"));
//! assert_eq!(holes.kind, EntryKind::File(layout));
//! let mut pieces = Vec::new();
//! reader.read_data(|offset, bytes| Ok(pieces.push((offset, bytes.len()))))?;
//! assert_eq!(pieces, [(4096, 4096)]);
//! assert!(reader.next_entry()?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod header;
mod read;
mod write;

use std::path::PathBuf;

pub use read::{list_entries, ArchiveReader, TarReadError};
pub use write::{ArchiveWriter, FileContents, TarWriteError};

/// Bytes in a record: GNU tar's default blocking factor of 20 blocks. An archive is
/// padded with zeros to a whole number of records.
pub const RECORD_SIZE: u64 = 10240;
/// Longest name or link target the reader accepts from a `././@LongLink` entry.
pub const MAX_LONG_NAME: u64 = 1 << 20;
/// Most data extents the reader accepts for one sparse file (a 16 GiB file with every
/// other page a hole has 2^21).
pub const MAX_SPARSE_EXTENTS: usize = 1 << 22;

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name as archived, without a directory's trailing `/`: `.` for the root of a
    /// CRIU archive, `./dir/file` below it. The reader only yields relative names
    /// without `..` components.
    pub path: PathBuf,
    /// What the member is.
    pub kind: EntryKind,
    /// Permission bits (`mode & 07777`: set-id and sticky bits included).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// What an archive member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (`5`).
    Directory,
    /// A regular file (`0`), or one with holes (`S`).
    File(FileLayout),
    /// Another name of an inode archived earlier (`1`); `target` is that earlier name.
    HardLink {
        /// The first archived name of the inode.
        target: PathBuf,
    },
    /// A symbolic link (`2`); the target is free text.
    Symlink {
        /// What the link points to.
        target: PathBuf,
    },
    /// A character device (`3`).
    CharDevice {
        /// `major(st_rdev)`
        major: u32,
        /// `minor(st_rdev)`
        minor: u32,
    },
    /// A block device (`4`).
    BlockDevice {
        /// `major(st_rdev)`
        major: u32,
        /// `minor(st_rdev)`
        minor: u32,
    },
    /// A named pipe (`6`).
    Fifo,
    /// A unix socket: GNU tar does not archive sockets ("socket ignored"), so the writer
    /// skips it and the reader never yields it.
    Socket,
}

/// A regular file's size and where its data is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileLayout {
    /// The file's size (`st_size`).
    pub size: u64,
    /// The data extents, in increasing order, not overlapping, inside `size`; what lies
    /// between them reads as zeros (holes). A file without holes has one extent
    /// covering it, an empty file none.
    pub data: Vec<Extent>,
}

/// A run of bytes at an offset in a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Extent {
    /// Where the run starts in the file.
    pub offset: u64,
    /// How many bytes it has.
    pub length: u64,
}

impl Extent {
    /// The offset just past the run (saturating).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

impl FileLayout {
    /// A file of `size` bytes without holes.
    pub fn dense(size: u64) -> FileLayout {
        FileLayout {
            size,
            data: if size == 0 {
                Vec::new()
            } else {
                vec![Extent {
                    offset: 0,
                    length: size,
                }]
            },
        }
    }

    /// Whether the file has a hole: then it is archived as a sparse (`S`) entry, as
    /// GNU tar's `--sparse` does for a file with fewer blocks than its size.
    pub fn has_holes(&self) -> bool {
        let mut covered_to = 0u64;
        for extent in &self.data {
            if extent.offset > covered_to {
                return true;
            }
            covered_to = covered_to.max(extent.end());
        }
        covered_to < self.size
    }

    /// The first data extent, if any, that GNU tar's sparse format cannot hold: one that
    /// is not the last and whose length is not a whole number of 512-byte blocks. GNU
    /// tar extracts each extent from its own blocks but skips a member by its summed
    /// size, so only the last extent may end mid-block (on a tmpfs holes are whole pages:
    /// only the extent ending at the file's end can). The writer and the reader refuse
    /// such a layout for a file with holes.
    pub fn unaligned_extent(&self) -> Option<usize> {
        let last = self.data.len().checked_sub(1)?;
        self.data[..last]
            .iter()
            .position(|extent| extent.length % 512 != 0)
    }

    /// Bytes the archive stores for the file: the sum of the extents.
    pub fn stored_len(&self) -> u64 {
        self.data
            .iter()
            .fold(0u64, |sum, extent| sum.saturating_add(extent.length))
    }
}

impl Entry {
    /// The name for messages (lossy UTF-8).
    pub fn display_name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The path below the archive's root, without the leading `./` (empty for the
    /// root itself): what to create relative to the mount being extracted into.
    pub fn relative_path(&self) -> &std::path::Path {
        relative_to_root(&self.path)
    }
}

/// The member name GNU tar gives a path below the root it archives as `.`: `.` for the
/// root (empty `relative`), `./a/b` for `a/b`. Use it for entry paths and hard link
/// targets so the archive reads as CRIU's do.
pub fn member_path(relative: &std::path::Path) -> PathBuf {
    if relative.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        std::path::Path::new(".").join(relative)
    }
}

/// [`member_path`]'s inverse: `./a/b` -> `a/b`, `.` -> empty; other names are returned as
/// they are (without leading `./` components).
pub fn relative_to_root(member: &std::path::Path) -> &std::path::Path {
    let mut rest = member;
    while let Ok(stripped) = rest.strip_prefix(".") {
        if stripped == rest {
            break;
        }
        rest = stripped;
    }
    rest
}

/// A writer of a gzipped archive (what `tar --gzip` makes): level 6, as gzip's
/// default. Finish it with [`ArchiveWriter::finish_gzip`].
pub fn gzip_writer<W: std::io::Write>(sink: W) -> ArchiveWriter<flate2::write::GzEncoder<W>> {
    let encoder = flate2::GzBuilder::new()
        .operating_system(3) // Unix, as gzip writes it
        .write(sink, flate2::Compression::new(6));
    ArchiveWriter::new(encoder)
}

/// A reader of a gzipped archive; `file` names the image in errors. Concatenated gzip
/// members are read as one stream, as gzip does.
pub fn gzip_reader<R: std::io::Read>(
    file: impl Into<String>,
    gzip: R,
) -> ArchiveReader<flate2::read::MultiGzDecoder<R>> {
    ArchiveReader::new(file, flate2::read::MultiGzDecoder::new(gzip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_gaps_between_extents() {
        assert!(!FileLayout::dense(0).has_holes());
        assert!(!FileLayout::dense(4096).has_holes());
        let split = FileLayout {
            size: 8192,
            data: vec![
                Extent {
                    offset: 0,
                    length: 4096,
                },
                Extent {
                    offset: 4096,
                    length: 4096,
                },
            ],
        };
        assert!(!split.has_holes());
        let tail_hole = FileLayout {
            size: 65536,
            data: vec![Extent {
                offset: 0,
                length: 4096,
            }],
        };
        assert!(tail_hole.has_holes());
        let all_hole = FileLayout {
            size: 1,
            data: Vec::new(),
        };
        assert!(all_hole.has_holes());
        assert_eq!(tail_hole.stored_len(), 4096);
    }

    #[test]
    fn member_paths_are_gnu_tars() {
        use std::path::Path;
        assert_eq!(member_path(Path::new("")), Path::new("."));
        assert_eq!(member_path(Path::new("a/b")).as_os_str(), "./a/b");
        assert_eq!(relative_to_root(Path::new(".")), Path::new(""));
        assert_eq!(relative_to_root(Path::new("./a/b")), Path::new("a/b"));
        assert_eq!(relative_to_root(Path::new("a")), Path::new("a"));
        let entry = Entry {
            path: member_path(Path::new("dir/file")),
            kind: EntryKind::Fifo,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        assert_eq!(entry.relative_path(), Path::new("dir/file"));
    }
}
