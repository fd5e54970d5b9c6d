//! [`ArchiveReader`]: a tar stream in, [`Entry`] values and their data out.
//!
//! The input is hostile until proven otherwise: sizes in headers are only trusted as far
//! as bytes arrive (long names are read incrementally up to [`MAX_LONG_NAME`], sparse
//! maps grow one block at a time up to [`MAX_SPARSE_EXTENTS`]), checksums are checked,
//! names must be relative without `..`, and sparse maps must be ordered and consistent
//! with the stored size. Nothing panics; errors name the image, the offset in the
//! (decompressed) archive and the entry.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::header::{self, typeflag, NumberError, BLOCK};
use super::{Entry, EntryKind, Extent, FileLayout, MAX_LONG_NAME, MAX_SPARSE_EXTENTS};

/// What is wrong with an archive, or with reading it.
#[derive(Debug, thiserror::Error)]
pub enum TarReadError {
    /// The source failed (for a gzip stream: a corrupt or truncated gzip member).
    #[error("{file}: archive offset {offset}: read: {source}")]
    Read {
        /// image file name
        file: String,
        /// bytes of the archive read before the failure
        offset: u64,
        /// the error
        source: io::Error,
    },
    /// The archive ends inside a header, a long name, a sparse map or a file's data.
    #[error(
        "{file}: archive offset {offset}: {entry}: truncated: {what} needs {needed} more bytes"
    )]
    Truncated {
        /// image file name
        file: String,
        /// where the archive ended
        offset: u64,
        /// the entry being read
        entry: String,
        /// "header", "long name", "sparse map", "data"
        what: &'static str,
        /// bytes still missing
        needed: u64,
    },
    /// The archive ends between entries without the zero blocks that close it.
    #[error("{file}: archive offset {offset}: archive ends without its end-of-archive blocks (last entry {after})")]
    MissingEnd {
        /// image file name
        file: String,
        /// where the archive ended
        offset: u64,
        /// the last entry read
        after: String,
    },
    /// A block where a header belongs is not a tar header, or its checksum is wrong.
    #[error("{file}: archive offset {offset}: header of {entry}: {reason}")]
    BadHeader {
        /// image file name
        file: String,
        /// offset of the header
        offset: u64,
        /// the name in the header, or what came before it
        entry: String,
        /// what is wrong
        reason: String,
    },
    /// A numeric field is malformed or out of range.
    #[error("{file}: archive offset {offset}: {entry}: {field}: {reason}")]
    BadField {
        /// image file name
        file: String,
        /// offset of the header
        offset: u64,
        /// the entry
        entry: String,
        /// the field
        field: &'static str,
        /// what is wrong
        reason: String,
    },
    /// An entry type this reader does not handle.
    #[error("{file}: archive offset {offset}: {entry}: unsupported entry type {typeflag:?} ({description})")]
    UnsupportedType {
        /// image file name
        file: String,
        /// offset of the header
        offset: u64,
        /// the entry
        entry: String,
        /// the type byte, as a character
        typeflag: char,
        /// what it is
        description: &'static str,
    },
    /// A name or hard link target that could leave the extraction directory.
    #[error("{file}: archive offset {offset}: {entry}: refused {what}: {reason}")]
    UnsafePath {
        /// image file name
        file: String,
        /// offset of the header
        offset: u64,
        /// the entry
        entry: String,
        /// "name" or "hard link target"
        what: &'static str,
        /// why
        reason: &'static str,
    },
    /// A sparse entry's map is inconsistent.
    #[error("{file}: archive offset {offset}: {entry}: sparse map: {reason}")]
    BadSparseMap {
        /// image file name
        file: String,
        /// offset of the header
        offset: u64,
        /// the entry
        entry: String,
        /// what is wrong
        reason: String,
    },
    /// The caller's sink refused a file's data.
    #[error("{file}: {entry}: write {length} bytes at file offset {offset}: {source}")]
    Sink {
        /// image file name
        file: String,
        /// the entry
        entry: String,
        /// file offset of the write
        offset: u64,
        /// bytes in the write
        length: usize,
        /// the sink's error
        source: io::Error,
    },
}

/// One run of a file's data in the archive: GNU tar stores each data extent of a sparse
/// file from a block boundary and pads it to the next one (a plain file is one run).
#[derive(Clone, Copy, Debug)]
struct DataRun {
    /// file offset of the bytes still to read
    offset: u64,
    /// bytes still to read
    length: u64,
    /// zeros after them, to the block boundary
    padding: u64,
}

impl DataRun {
    fn of(extent: &Extent) -> DataRun {
        DataRun {
            offset: extent.offset,
            length: extent.length,
            padding: header::padding(extent.length),
        }
    }

    fn archive_bytes(&self) -> u64 {
        self.length.saturating_add(self.padding)
    }
}

/// Bytes read from the source at once when copying or skipping data.
const CHUNK: usize = 64 * 1024;

/// A pull reader of a tar stream: [`ArchiveReader::next_entry`] gives each entry,
/// [`ArchiveReader::read_data`] the current file's data (skipped when not asked for).
pub struct ArchiveReader<R: Read> {
    file: String,
    source: R,
    /// bytes of the archive consumed
    offset: u64,
    /// the name of the entry last returned (for messages)
    last_entry: String,
    /// data runs of the current file still to read, in order
    data_left: VecDeque<DataRun>,
    /// other bytes of the current entry to skip (data of non-files, padding)
    skip_left: u64,
    ended: bool,
    chunk: Vec<u8>,
}

impl<R: Read> ArchiveReader<R> {
    /// Fills `buffer` as far as the archive goes (short only at its end), the offset
    /// moved past what was read; a read error names the file and the offset.
    fn read_at_offset(&mut self, buffer: &mut [u8]) -> Result<usize, TarReadError> {
        let got = read_full(&mut self.source, buffer).map_err(|source| TarReadError::Read { file: self.file.clone(), offset: self.offset, source })?;
        self.offset += got as u64;
        Ok(got)
    }

    /// A reader of the plain tar stream `source`; `file` names the image in errors.
    pub fn new(file: impl Into<String>, source: R) -> ArchiveReader<R> {
        ArchiveReader {
            file: file.into(),
            source,
            offset: 0,
            last_entry: "(none: the archive's start)".to_owned(),
            data_left: VecDeque::new(),
            skip_left: 0,
            ended: false,
            chunk: Vec::new(),
        }
    }

    /// Bytes of the archive read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry, or `None` after the end-of-archive blocks (the rest of the
    /// stream, record padding and gzip trailer, is read and checked then). Data the
    /// caller did not read is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarReadError> {
        self.skip_current()?;
        if self.ended {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let header_offset = self.offset;
            let Some(block) = self.read_header_block(long_name.is_some() || long_link.is_some())?
            else {
                return Ok(None);
            };
            let raw_name = header::text(&block[header::NAME]);
            let mut name = match &long_name {
                Some(long) => long.clone(),
                None => raw_name.to_vec(),
            };
            let magic = &block[header::MAGIC];
            let is_ustar = magic == header::USTAR_MAGIC;
            if magic != header::GNU_MAGIC && !is_ustar {
                return Err(self.bad_header(
                    header_offset,
                    &block,
                    "not a GNU tar header (no ustar magic)",
                ));
            }
            check_checksum(&block)
                .map_err(|reason| self.bad_header(header_offset, &block, &reason.to_string()))?;
            if is_ustar && long_name.is_none() {
                let prefix = header::text(&block[header::USTAR_PREFIX]);
                if !prefix.is_empty() {
                    name = [prefix, b"/", raw_name].concat();
                }
            }
            let entry_name = String::from_utf8_lossy(&name).into_owned();
            let fields = Fields {
                file: self.file.clone(),
                offset: header_offset,
                entry: entry_name.clone(),
                block,
            };
            let size = fields.unsigned("size", header::SIZE)?;
            let flag = block[header::TYPEFLAG];
            match flag {
                typeflag::LONG_NAME | typeflag::LONG_LINK => {
                    let text = self.read_long_text(header_offset, &entry_name, size)?;
                    if flag == typeflag::LONG_NAME {
                        long_name = Some(text);
                    } else {
                        long_link = Some(text);
                    }
                    continue;
                }
                typeflag::VOLUME_LABEL => {
                    self.skip_bytes(
                        &entry_name,
                        size.saturating_add(header::padding(size)),
                        "volume label",
                    )?;
                    continue;
                }
                _ => {}
            }

            let mode = fields.unsigned("mode", header::MODE)? as u32 & 0o7777;
            let uid = fields.id("uid", header::UID)?;
            let gid = fields.id("gid", header::GID)?;
            let mtime = fields.signed("mtime", header::MTIME)?;
            let link_target = || -> Vec<u8> {
                match &long_link {
                    Some(long) => long.clone(),
                    None => header::text(&block[header::LINKNAME]).to_vec(),
                }
            };
            let is_directory_name = name.last() == Some(&b'/');
            let mut data = VecDeque::new();
            let mut skip = size;
            let kind = match flag {
                typeflag::REGULAR_OLD if is_directory_name => EntryKind::Directory,
                typeflag::REGULAR | typeflag::REGULAR_OLD | typeflag::CONTIGUOUS => {
                    let layout = FileLayout::dense(size);
                    data.extend(layout.data.iter().map(DataRun::of));
                    skip = 0;
                    EntryKind::File(layout)
                }
                typeflag::SPARSE => {
                    let layout = self.read_sparse_map(&fields, size)?;
                    data.extend(layout.data.iter().map(DataRun::of));
                    skip = 0;
                    EntryKind::File(layout)
                }
                typeflag::HARD_LINK => {
                    let target = link_target();
                    check_path(&target).map_err(|reason| {
                        self.unsafe_path(header_offset, &entry_name, "hard link target", reason)
                    })?;
                    EntryKind::HardLink {
                        target: path_from(trim_trailing_slashes(&target)),
                    }
                }
                typeflag::SYMLINK => {
                    let target = link_target();
                    if target.is_empty() {
                        return Err(self.unsafe_path(
                            header_offset,
                            &entry_name,
                            "symlink target",
                            "empty",
                        ));
                    }
                    EntryKind::Symlink {
                        target: path_from(&target),
                    }
                }
                typeflag::CHAR_DEVICE | typeflag::BLOCK_DEVICE => {
                    let major = fields.id("devmajor", header::DEVMAJOR)?;
                    let minor = fields.id("devminor", header::DEVMINOR)?;
                    if flag == typeflag::CHAR_DEVICE {
                        EntryKind::CharDevice { major, minor }
                    } else {
                        EntryKind::BlockDevice { major, minor }
                    }
                }
                typeflag::DIRECTORY | typeflag::DUMP_DIR => EntryKind::Directory,
                typeflag::FIFO => EntryKind::Fifo,
                other => {
                    return Err(TarReadError::UnsupportedType {
                        file: self.file.clone(),
                        offset: header_offset,
                        entry: entry_name,
                        typeflag: char::from(other),
                        description: describe_type(other),
                    })
                }
            };
            check_path(&name)
                .map_err(|reason| self.unsafe_path(header_offset, &entry_name, "name", reason))?;
            self.data_left = data;
            self.skip_left = skip.saturating_add(header::padding(skip));
            self.last_entry = entry_name;
            return Ok(Some(Entry {
                path: path_from(trim_trailing_slashes(&name)),
                kind,
                mode,
                uid,
                gid,
                mtime,
            }));
        }
    }

    /// Reads the current file's data: `sink(file_offset, bytes)` for each piece, in
    /// file order, holes left out. Does nothing for other entries or when already read.
    pub fn read_data(
        &mut self,
        mut sink: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> Result<(), TarReadError> {
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(CHUNK, 0);
        let result = self.read_data_with(&mut chunk, &mut sink);
        self.chunk = chunk;
        result
    }

    fn read_data_with(
        &mut self,
        chunk: &mut [u8],
        sink: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> Result<(), TarReadError> {
        while let Some(run) = self.data_left.front().copied() {
            if run.length == 0 {
                let entry = self.last_entry.clone();
                self.skip_bytes(&entry, run.padding, "data")?;
                self.data_left.pop_front();
                continue;
            }
            let now = run.length.min(chunk.len() as u64) as usize;
            let got = self.read_at_offset(&mut chunk[..now])?;
            if got < now {
                let needed = self
                    .data_left
                    .iter()
                    .fold(0u64, |sum, run| sum.saturating_add(run.archive_bytes()));
                return Err(TarReadError::Truncated {
                    file: self.file.clone(),
                    offset: self.offset,
                    entry: self.last_entry.clone(),
                    what: "data",
                    needed: needed - got as u64,
                });
            }
            if let Some(front) = self.data_left.front_mut() {
                front.offset += now as u64;
                front.length -= now as u64;
            }
            sink(run.offset, &chunk[..now]).map_err(|source| TarReadError::Sink {
                file: self.file.clone(),
                entry: self.last_entry.clone(),
                offset: run.offset,
                length: now,
                source,
            })?;
        }
        Ok(())
    }

    /// Skips what is left of the current entry.
    fn skip_current(&mut self) -> Result<(), TarReadError> {
        let data = self
            .data_left
            .drain(..)
            .fold(0u64, |sum, run| sum.saturating_add(run.archive_bytes()));
        let total = data.saturating_add(self.skip_left);
        self.skip_left = 0;
        let entry = self.last_entry.clone();
        self.skip_bytes(&entry, total, "data")
    }

    fn skip_bytes(
        &mut self,
        entry: &str,
        count: u64,
        what: &'static str,
    ) -> Result<(), TarReadError> {
        let copied =
            io::copy(&mut (&mut self.source).take(count), &mut io::sink()).map_err(|source| {
                TarReadError::Read {
                    file: self.file.clone(),
                    offset: self.offset,
                    source,
                }
            })?;
        self.offset += copied;
        if copied < count {
            return Err(TarReadError::Truncated {
                file: self.file.clone(),
                offset: self.offset,
                entry: entry.to_owned(),
                what,
                needed: count - copied,
            });
        }
        Ok(())
    }

    /// The next header block; `None` at the end-of-archive zero block (after which the
    /// rest of the stream is drained). `in_long_name`: a long name or link was read and
    /// its entry must follow.
    fn read_header_block(
        &mut self,
        in_long_name: bool,
    ) -> Result<Option<[u8; BLOCK]>, TarReadError> {
        let mut block = [0u8; BLOCK];
        let got = self.read_at_offset(&mut block)?;
        if got == 0 && !in_long_name {
            return Err(TarReadError::MissingEnd {
                file: self.file.clone(),
                offset: self.offset,
                after: self.last_entry.clone(),
            });
        }
        if got < BLOCK {
            return Err(TarReadError::Truncated {
                file: self.file.clone(),
                offset: self.offset,
                entry: self.after_last(),
                what: "header",
                needed: (BLOCK - got) as u64,
            });
        }
        if block.iter().all(|&byte| byte == 0) {
            if in_long_name {
                return Err(TarReadError::BadHeader {
                    file: self.file.clone(),
                    offset: self.offset - BLOCK as u64,
                    entry: self.after_last(),
                    reason: "a long name is followed by the end of the archive".to_owned(),
                });
            }
            self.ended = true;
            // The second zero block and the record padding; reading to the end also
            // checks the gzip trailer.
            let drained = io::copy(&mut self.source, &mut io::sink()).map_err(|source| {
                TarReadError::Read {
                    file: self.file.clone(),
                    offset: self.offset,
                    source,
                }
            })?;
            self.offset += drained;
            return Ok(None);
        }
        Ok(Some(block))
    }

    /// The text of a `././@LongLink` entry: `size` bytes up to the first NUL.
    fn read_long_text(
        &mut self,
        header_offset: u64,
        entry: &str,
        size: u64,
    ) -> Result<Vec<u8>, TarReadError> {
        if size > MAX_LONG_NAME {
            return Err(TarReadError::BadField {
                file: self.file.clone(),
                offset: header_offset,
                entry: entry.to_owned(),
                field: "size",
                reason: format!(
                    "a long name of {size} bytes is over the {MAX_LONG_NAME} byte limit"
                ),
            });
        }
        let mut text = Vec::new();
        let got = (&mut self.source)
            .take(size)
            .read_to_end(&mut text)
            .map_err(|source| TarReadError::Read {
                file: self.file.clone(),
                offset: self.offset,
                source,
            })?;
        self.offset += got as u64;
        if (got as u64) < size {
            return Err(TarReadError::Truncated {
                file: self.file.clone(),
                offset: self.offset,
                entry: self.after_last(),
                what: "long name",
                needed: size - got as u64,
            });
        }
        let padding = header::padding(size);
        let after = self.after_last();
        self.skip_bytes(&after, padding, "long name")?;
        let end = text
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(text.len());
        text.truncate(end);
        Ok(text)
    }

    /// The old GNU sparse map: four slots in the header, 21 in each extension block
    /// while `isextended` is set. Slots end at the first empty one; zero-length extents
    /// (GNU tar closes every map with one at the file's size) carry no data.
    fn read_sparse_map(
        &mut self,
        fields: &Fields,
        stored: u64,
    ) -> Result<FileLayout, TarReadError> {
        let real_size = fields.unsigned("realsize", header::REAL_SIZE)?;
        let mut slots: Vec<Extent> = Vec::new();
        let mut map_ended = false;
        let mut take_slots =
            |area: &[u8], count: usize, slots: &mut Vec<Extent>| -> Result<(), TarReadError> {
                for index in 0..count {
                    if map_ended {
                        break;
                    }
                    let at = index * header::SPARSE_SLOT;
                    let offset_field = &area[at..at + 12];
                    let length_field = &area[at + 12..at + 24];
                    if offset_field[0] == 0 && length_field[0] == 0 {
                        map_ended = true;
                        break;
                    }
                    if slots.len() >= MAX_SPARSE_EXTENTS {
                        return Err(
                            fields.sparse_error(format!("more than {MAX_SPARSE_EXTENTS} extents"))
                        );
                    }
                    let offset = fields.number_in("sparse offset", offset_field)?;
                    let length = fields.number_in("sparse length", length_field)?;
                    slots.push(Extent { offset, length });
                }
                Ok(())
            };
        take_slots(
            &fields.block[header::SPARSE_SLOTS..],
            header::SPARSE_SLOTS_IN_HEADER,
            &mut slots,
        )?;
        let mut extended = fields.block[header::IS_EXTENDED] != 0;
        while extended {
            let mut extension = [0u8; BLOCK];
            let got = self.read_at_offset(&mut extension)?;
            if got < BLOCK {
                return Err(TarReadError::Truncated {
                    file: self.file.clone(),
                    offset: self.offset,
                    entry: fields.entry.clone(),
                    what: "sparse map",
                    needed: (BLOCK - got) as u64,
                });
            }
            take_slots(&extension, header::SPARSE_SLOTS_IN_EXTENSION, &mut slots)?;
            extended = extension[header::EXTENSION_IS_EXTENDED] != 0;
        }

        let mut data = Vec::with_capacity(slots.len());
        let mut previous_end = 0u64;
        let mut total = 0u64;
        for (index, slot) in slots.iter().enumerate() {
            let end = slot
                .offset
                .checked_add(slot.length)
                .filter(|&end| end <= real_size)
                .ok_or_else(|| {
                    fields.sparse_error(format!(
                        "extent {index} ({} bytes at {}) runs past the file's size {real_size}",
                        slot.length, slot.offset
                    ))
                })?;
            if slot.length == 0 {
                continue;
            }
            if slot.offset < previous_end {
                return Err(fields.sparse_error(format!(
                    "extent {index} at {} overlaps or precedes the one ending at {previous_end}",
                    slot.offset
                )));
            }
            previous_end = end;
            total += slot.length; // extents are disjoint and inside real_size: no overflow
            data.push(*slot);
        }
        let layout = FileLayout {
            size: real_size,
            data,
        };
        if let Some(index) = layout.unaligned_extent() {
            let extent = layout.data[index];
            return Err(fields.sparse_error(format!(
                "data extent {index} ({} bytes at {}) is not the last and not whole 512-byte blocks",
                extent.length, extent.offset
            )));
        }
        if total != stored {
            return Err(fields.sparse_error(format!(
                "the extents hold {total} bytes, the header's size says {stored}"
            )));
        }
        Ok(layout)
    }

    fn after_last(&self) -> String {
        format!("entry after {}", self.last_entry)
    }

    fn bad_header(&self, offset: u64, block: &[u8; BLOCK], reason: &str) -> TarReadError {
        let name = header::text(&block[header::NAME]);
        let entry = if name.is_empty()
            || name
                .iter()
                .any(|byte| !byte.is_ascii_graphic() && *byte != b' ')
        {
            self.after_last()
        } else {
            String::from_utf8_lossy(name).into_owned()
        };
        TarReadError::BadHeader {
            file: self.file.clone(),
            offset,
            entry,
            reason: reason.to_owned(),
        }
    }

    fn unsafe_path(
        &self,
        offset: u64,
        entry: &str,
        what: &'static str,
        reason: &'static str,
    ) -> TarReadError {
        TarReadError::UnsafePath {
            file: self.file.clone(),
            offset,
            entry: entry.to_owned(),
            what,
            reason,
        }
    }
}

/// Every entry of a gzipped archive held in memory, data skipped (what `tar -tzf`
/// lists). `file` names the image in errors.
pub fn list_entries(file: &str, gzip: &[u8]) -> Result<Vec<Entry>, TarReadError> {
    let mut reader = super::gzip_reader(file, gzip);
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        entries.push(entry);
    }
    Ok(entries)
}

/// One header's numeric fields, with what errors need to name.
struct Fields {
    file: String,
    offset: u64,
    entry: String,
    block: [u8; BLOCK],
}

impl Fields {
    fn field_error(&self, field: &'static str, reason: String) -> TarReadError {
        TarReadError::BadField {
            file: self.file.clone(),
            offset: self.offset,
            entry: self.entry.clone(),
            field,
            reason,
        }
    }

    fn sparse_error(&self, reason: String) -> TarReadError {
        TarReadError::BadSparseMap {
            file: self.file.clone(),
            offset: self.offset,
            entry: self.entry.clone(),
            reason,
        }
    }

    fn raw(&self, field: &'static str, area: &[u8]) -> Result<i128, TarReadError> {
        header::parse_number(area).map_err(|error| {
            let reason = match error {
                NumberError::NotANumber => {
                    format!("not a number: {:?}", String::from_utf8_lossy(area))
                }
                NumberError::OutOfRange => "out of range".to_owned(),
            };
            self.field_error(field, reason)
        })
    }

    fn number_in(&self, field: &'static str, area: &[u8]) -> Result<u64, TarReadError> {
        let value = self.raw(field, area)?;
        u64::try_from(value)
            .ok()
            .filter(|&value| value <= i64::MAX as u64)
            .ok_or_else(|| self.field_error(field, format!("{value} is out of range")))
    }

    fn unsigned(
        &self,
        field: &'static str,
        range: std::ops::Range<usize>,
    ) -> Result<u64, TarReadError> {
        self.number_in(field, &self.block[range])
    }

    fn id(&self, field: &'static str, range: std::ops::Range<usize>) -> Result<u32, TarReadError> {
        let value = self.raw(field, &self.block[range])?;
        u32::try_from(value)
            .map_err(|_| self.field_error(field, format!("{value} does not fit 32 bits")))
    }

    fn signed(
        &self,
        field: &'static str,
        range: std::ops::Range<usize>,
    ) -> Result<i64, TarReadError> {
        let value = self.raw(field, &self.block[range])?;
        i64::try_from(value)
            .map_err(|_| self.field_error(field, format!("{value} does not fit 64 bits")))
    }
}

/// Why a header's checksum is refused.
#[derive(Debug, thiserror::Error)]
enum ChecksumError {
    #[error("checksum field {0:?} is not a number")]
    NotANumber(String),
    #[error("checksum {stored:o} does not match the header's {unsigned:o}")]
    Mismatch { stored: i128, unsigned: i128 },
}

/// The stored checksum must equal the unsigned (GNU, POSIX) or signed (old tars) sum.
fn check_checksum(block: &[u8; BLOCK]) -> Result<(), ChecksumError> {
    let stored = header::parse_number(&block[header::CHECKSUM])
        .map_err(|_| ChecksumError::NotANumber(String::from_utf8_lossy(&block[header::CHECKSUM]).into_owned()))?;
    let unsigned = i128::from(header::checksum(block));
    let signed = i128::from(header::signed_checksum(block));
    if stored == unsigned || stored == signed {
        Ok(())
    } else {
        Err(ChecksumError::Mismatch { stored, unsigned })
    }
}

/// Relative, non-empty, no `..` component.
fn check_path(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name[0] == b'/' {
        return Err("absolute");
    }
    if name
        .split(|&byte| byte == b'/')
        .any(|component| component == b"..")
    {
        return Err("has a .. component");
    }
    Ok(())
}

fn trim_trailing_slashes(name: &[u8]) -> &[u8] {
    let mut end = name.len();
    while end > 1 && name[end - 1] == b'/' {
        end -= 1;
    }
    &name[..end]
}

fn path_from(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// Reads until `buffer` is full or the source ends; returns the bytes read.
fn read_full(source: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

fn describe_type(flag: u8) -> &'static str {
    match flag {
        b'x' => "pax extended header",
        b'g' => "pax global header",
        b'M' => "GNU multi-volume continuation",
        b'N' => "GNU old long names",
        _ => "unknown",
    }
}
