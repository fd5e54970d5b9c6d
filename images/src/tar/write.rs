//! [`ArchiveWriter`]: entries in, the bytes GNU tar writes for them out.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use super::header::{self, typeflag, BLOCK};
use super::{Entry, EntryKind, Extent, FileLayout, RECORD_SIZE};

/// Where a file's bytes come from while it is archived: the engine passes the open
/// file (read with `pread`), tests a byte slice holding the whole file.
pub trait FileContents {
    /// Fills `buffer` with the file's bytes at `offset`; fewer bytes than asked is an
    /// error (`UnexpectedEof`).
    fn read_exact_at(&mut self, offset: u64, buffer: &mut [u8]) -> io::Result<()>;
}

impl FileContents for &[u8] {
    fn read_exact_at(&mut self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let source = start
            .checked_add(buffer.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buffer.copy_from_slice(source);
        Ok(())
    }
}

impl FileContents for std::fs::File {
    fn read_exact_at(&mut self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        FileExt::read_exact_at(self, buffer, offset)
    }
}

/// What went wrong while writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum TarWriteError {
    /// The sink refused bytes.
    #[error("tar: write {entry}: {source}")]
    Write {
        /// the entry being written ("end of archive" at the end)
        entry: String,
        /// the sink's error
        source: io::Error,
    },
    /// The file's contents could not be read (it shrank, or the read failed).
    #[error("tar: {entry}: read {length} bytes at offset {offset}: {source}")]
    ReadContents {
        /// the entry
        entry: String,
        /// file offset of the read
        offset: u64,
        /// bytes asked for
        length: usize,
        /// the error
        source: io::Error,
    },
    /// The entry cannot be archived as given.
    #[error("tar: {entry}: {reason}")]
    BadEntry {
        /// the entry
        entry: String,
        /// what is wrong with it
        reason: String,
    },
}

/// Bytes read from a file per call of [`FileContents::read_exact_at`].
const CHUNK: usize = 64 * 1024;

/// Writes entries as GNU tar 1.34 does with CRIU's flags (see the module docs).
pub struct ArchiveWriter<W: Write> {
    sink: W,
    written: u64,
    chunk: Vec<u8>,
}

impl<W: Write> ArchiveWriter<W> {
    /// A writer of a plain (uncompressed) archive into `sink`.
    pub fn new(sink: W) -> ArchiveWriter<W> {
        ArchiveWriter {
            sink,
            written: 0,
            chunk: Vec::new(),
        }
    }

    /// Archive bytes written so far (before compression).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Appends an entry that stores no data: a directory, link, device, fifo or empty
    /// file (a file of holes only counts). Returns false for a socket, which is not
    /// archived. A file with data goes through [`ArchiveWriter::append_file`].
    pub fn append(&mut self, entry: &Entry) -> Result<bool, TarWriteError> {
        if let EntryKind::File(layout) = &entry.kind {
            if layout.stored_len() != 0 {
                return Err(bad_entry(
                    entry,
                    format!(
                        "a file with {} bytes of data needs its contents (append_file)",
                        layout.stored_len()
                    ),
                ));
            }
        }
        self.append_with(entry, &mut &[][..])
    }

    /// Appends an entry; for a regular file, its data extents are read from `contents`.
    /// Returns false for a socket, which is not archived.
    pub fn append_file(
        &mut self,
        entry: &Entry,
        contents: &mut dyn FileContents,
    ) -> Result<bool, TarWriteError> {
        self.append_with(entry, contents)
    }

    /// Ends the archive: two zero blocks, then zeros up to a whole record; gives back
    /// the sink, flushed.
    pub fn finish(mut self) -> Result<W, TarWriteError> {
        let end = 2 * BLOCK as u64;
        let padding = (RECORD_SIZE - (self.written + end) % RECORD_SIZE) % RECORD_SIZE;
        let zeros = [0u8; BLOCK];
        let mut left = end + padding;
        while left > 0 {
            let now = left.min(BLOCK as u64) as usize;
            self.put("end of archive", &zeros[..now])?;
            left -= now as u64;
        }
        self.sink.flush().map_err(|source| TarWriteError::Write {
            entry: "end of archive".to_owned(),
            source,
        })?;
        Ok(self.sink)
    }

    fn append_with(
        &mut self,
        entry: &Entry,
        contents: &mut dyn FileContents,
    ) -> Result<bool, TarWriteError> {
        let mut name = entry.path.as_os_str().as_bytes().to_vec();
        check_text(entry, "name", &name)?;
        let (flag, link, layout): (u8, Option<&[u8]>, Option<&FileLayout>) = match &entry.kind {
            EntryKind::Socket => return Ok(false),
            EntryKind::Directory => {
                if name.last() != Some(&b'/') {
                    name.push(b'/');
                }
                (typeflag::DIRECTORY, None, None)
            }
            EntryKind::File(layout) => {
                check_layout(entry, layout)?;
                let flag = if layout.has_holes() {
                    typeflag::SPARSE
                } else {
                    typeflag::REGULAR
                };
                (flag, None, Some(layout))
            }
            EntryKind::HardLink { target } => (
                typeflag::HARD_LINK,
                Some(target.as_os_str().as_bytes()),
                None,
            ),
            EntryKind::Symlink { target } => {
                (typeflag::SYMLINK, Some(target.as_os_str().as_bytes()), None)
            }
            EntryKind::CharDevice { .. } => (typeflag::CHAR_DEVICE, None, None),
            EntryKind::BlockDevice { .. } => (typeflag::BLOCK_DEVICE, None, None),
            EntryKind::Fifo => (typeflag::FIFO, None, None),
        };
        if let Some(link) = link {
            check_text(entry, "link target", link)?;
            if link.len() > header::LINKNAME.len() {
                self.put_long_link(entry, typeflag::LONG_LINK, link)?;
            }
        }
        if name.len() > header::NAME.len() {
            self.put_long_link(entry, typeflag::LONG_NAME, &name)?;
        }

        let mut block = [0u8; BLOCK];
        copy_text(&mut block[header::NAME], &name);
        let mode = i128::from(entry.mode & 0o7777);
        number(entry, "mode", &mut block[header::MODE], mode)?;
        number(entry, "uid", &mut block[header::UID], i128::from(entry.uid))?;
        number(entry, "gid", &mut block[header::GID], i128::from(entry.gid))?;
        let stored = layout.map_or(0, FileLayout::stored_len);
        number(entry, "size", &mut block[header::SIZE], i128::from(stored))?;
        number(
            entry,
            "mtime",
            &mut block[header::MTIME],
            i128::from(entry.mtime),
        )?;
        block[header::TYPEFLAG] = flag;
        if let Some(link) = link {
            copy_text(&mut block[header::LINKNAME], link);
        }
        block[header::MAGIC].copy_from_slice(header::GNU_MAGIC);
        if let EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } =
            &entry.kind
        {
            number(
                entry,
                "devmajor",
                &mut block[header::DEVMAJOR],
                i128::from(*major),
            )?;
            number(
                entry,
                "devminor",
                &mut block[header::DEVMINOR],
                i128::from(*minor),
            )?;
        }

        let mut extension_blocks = Vec::new();
        if flag == typeflag::SPARSE {
            let layout = layout.expect("a sparse entry is a file");
            // GNU tar's map: the data extents, then a zero-length one at the file's size.
            let mut map: Vec<Extent> = layout.data.clone();
            map.push(Extent {
                offset: layout.size,
                length: 0,
            });
            number(
                entry,
                "realsize",
                &mut block[header::REAL_SIZE],
                i128::from(layout.size),
            )?;
            let (in_header, rest) = map.split_at(map.len().min(header::SPARSE_SLOTS_IN_HEADER));
            put_sparse_slots(entry, &mut block[header::SPARSE_SLOTS..], in_header)?;
            block[header::IS_EXTENDED] = u8::from(!rest.is_empty());
            let mut chunks = rest.chunks(header::SPARSE_SLOTS_IN_EXTENSION).peekable();
            while let Some(slots) = chunks.next() {
                let mut extension = [0u8; BLOCK];
                put_sparse_slots(entry, &mut extension, slots)?;
                extension[header::EXTENSION_IS_EXTENDED] = u8::from(chunks.peek().is_some());
                extension_blocks.push(extension);
            }
        }
        header::seal(&mut block);
        let entry_name = entry.display_name();
        self.put(&entry_name, &block)?;
        for extension in &extension_blocks {
            self.put(&entry_name, extension)?;
        }
        if let Some(layout) = layout {
            // A sparse file's extents each start on a block boundary, as GNU tar
            // stores and extracts them; a plain file's data is one run.
            for extent in &layout.data {
                self.copy_extent(entry, *extent, contents)?;
                if flag == typeflag::SPARSE {
                    self.pad(&entry_name, extent.length)?;
                }
            }
            if flag != typeflag::SPARSE {
                self.pad(&entry_name, stored)?;
            }
        }
        Ok(true)
    }

    /// A `././@LongLink` pseudo-entry carrying `text` and a NUL for the next header.
    fn put_long_link(&mut self, entry: &Entry, flag: u8, text: &[u8]) -> Result<(), TarWriteError> {
        let mut block = [0u8; BLOCK];
        copy_text(&mut block[header::NAME], header::LONG_LINK_NAME);
        let size = text.len() as u64 + 1;
        number(entry, "mode", &mut block[header::MODE], 0o644)?;
        number(entry, "uid", &mut block[header::UID], 0)?;
        number(entry, "gid", &mut block[header::GID], 0)?;
        number(
            entry,
            "long name size",
            &mut block[header::SIZE],
            i128::from(size),
        )?;
        number(entry, "mtime", &mut block[header::MTIME], 0)?;
        block[header::TYPEFLAG] = flag;
        block[header::MAGIC].copy_from_slice(header::GNU_MAGIC);
        header::seal(&mut block);
        let entry_name = entry.display_name();
        self.put(&entry_name, &block)?;
        self.put(&entry_name, text)?;
        self.put(&entry_name, &[0])?;
        self.pad(&entry_name, size)
    }

    fn copy_extent(
        &mut self,
        entry: &Entry,
        extent: Extent,
        contents: &mut dyn FileContents,
    ) -> Result<(), TarWriteError> {
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(CHUNK, 0);
        let mut done = 0u64;
        let result = loop {
            if done == extent.length {
                break Ok(());
            }
            let now = (extent.length - done).min(CHUNK as u64) as usize;
            let offset = extent.offset + done;
            if let Err(source) = contents.read_exact_at(offset, &mut chunk[..now]) {
                break Err(TarWriteError::ReadContents {
                    entry: entry.display_name(),
                    offset,
                    length: now,
                    source,
                });
            }
            if let Err(error) = self.put(&entry.display_name(), &chunk[..now]) {
                break Err(error);
            }
            done += now as u64;
        };
        self.chunk = chunk;
        result
    }

    fn pad(&mut self, entry: &str, length: u64) -> Result<(), TarWriteError> {
        let padding = header::padding(length) as usize;
        self.put(entry, &[0u8; BLOCK][..padding])
    }

    fn put(&mut self, entry: &str, bytes: &[u8]) -> Result<(), TarWriteError> {
        self.sink
            .write_all(bytes)
            .map_err(|source| TarWriteError::Write {
                entry: entry.to_owned(),
                source,
            })?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

impl<W: Write> ArchiveWriter<flate2::write::GzEncoder<W>> {
    /// Ends the archive and the gzip stream; gives back the sink.
    pub fn finish_gzip(self) -> Result<W, TarWriteError> {
        self.finish()?
            .finish()
            .map_err(|source| TarWriteError::Write {
                entry: "gzip trailer".to_owned(),
                source,
            })
    }
}

fn bad_entry(entry: &Entry, reason: String) -> TarWriteError {
    TarWriteError::BadEntry {
        entry: entry.display_name(),
        reason,
    }
}

fn check_text(entry: &Entry, what: &str, text: &[u8]) -> Result<(), TarWriteError> {
    if text.is_empty() {
        return Err(bad_entry(entry, format!("empty {what}")));
    }
    if text.contains(&0) {
        return Err(bad_entry(entry, format!("{what} holds a NUL byte")));
    }
    Ok(())
}

/// Extents in order, not overlapping, not empty, inside the file.
fn check_layout(entry: &Entry, layout: &FileLayout) -> Result<(), TarWriteError> {
    let mut previous_end = 0u64;
    for (index, extent) in layout.data.iter().enumerate() {
        let end = extent.offset.checked_add(extent.length);
        let problem = if extent.length == 0 {
            Some("is empty")
        } else if extent.offset < previous_end {
            Some("overlaps or precedes the one before")
        } else if end.is_none_or(|end| end > layout.size) {
            Some("runs past the file's size")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(bad_entry(
                entry,
                format!(
                    "data extent {index} ({} bytes at {}) {problem} (size {})",
                    extent.length, extent.offset, layout.size
                ),
            ));
        }
        previous_end = extent.end();
    }
    if layout.has_holes() {
        if let Some(index) = layout.unaligned_extent() {
            let extent = layout.data[index];
            return Err(bad_entry(
                entry,
                format!(
                    "data extent {index} ({} bytes at {}) is not the last and not whole 512-byte blocks: GNU tar's sparse format cannot hold it",
                    extent.length, extent.offset
                ),
            ));
        }
    }
    Ok(())
}

fn put_sparse_slots(entry: &Entry, area: &mut [u8], slots: &[Extent]) -> Result<(), TarWriteError> {
    for (index, slot) in slots.iter().enumerate() {
        let at = index * header::SPARSE_SLOT;
        number(
            entry,
            "sparse offset",
            &mut area[at..at + 12],
            i128::from(slot.offset),
        )?;
        number(
            entry,
            "sparse length",
            &mut area[at + 12..at + 24],
            i128::from(slot.length),
        )?;
    }
    Ok(())
}

fn number(entry: &Entry, field: &str, area: &mut [u8], value: i128) -> Result<(), TarWriteError> {
    if header::write_number(area, value) {
        Ok(())
    } else {
        Err(bad_entry(
            entry,
            format!("{field} {value} does not fit its header field"),
        ))
    }
}

/// Copies up to the field's length; the rest stays NUL (no NUL when it fills the field).
fn copy_text(field: &mut [u8], text: &[u8]) {
    let length = text.len().min(field.len());
    field[..length].copy_from_slice(&text[..length]);
}
