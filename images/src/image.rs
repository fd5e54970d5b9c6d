//! The framing of an image file: a magic header, then entries, each a 32-bit size and a
//! protobuf message, some followed by a raw payload. Integers are in the byte order of
//! the machine that wrote the file; readers find it from the magic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::ImageError;
use crate::magic::{Framing, ImageKind, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
use crate::pb;

/// No entry may claim more than this many bytes (64 MiB).
pub const MAX_ENTRY_SIZE: u64 = 64 << 20;

/// Byte order of the integers in an image's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// x86_64, aarch64, ppc64le
    Little,
    /// s390x
    Big,
}

impl ByteOrder {
    /// The order of the machine we run on.
    pub fn native() -> ByteOrder {
        if cfg!(target_endian = "big") {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        }
    }

    /// Reads a `u32` in this order.
    pub fn read_u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(bytes),
            ByteOrder::Big => u32::from_be_bytes(bytes),
        }
    }

    /// Writes a `u32` in this order.
    pub fn write_u32(self, value: u32) -> [u8; 4] {
        match self {
            ByteOrder::Little => value.to_le_bytes(),
            ByteOrder::Big => value.to_be_bytes(),
        }
    }
}

/// What the header of an image says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// the image kind
    pub kind: ImageKind,
    /// byte order of the writer
    pub byte_order: ByteOrder,
    /// header length in bytes (4 or 8)
    pub len: usize,
}

/// Parses the magic header at the start of `bytes`. `file` names the image in errors.
pub fn parse_header(file: &str, bytes: &[u8]) -> Result<Header, ImageError> {
    let word_at = |offset: usize| -> Result<[u8; 4], ImageError> {
        bytes
            .get(offset..offset + 4)
            .and_then(|slice| slice.try_into().ok())
            .ok_or_else(|| ImageError::Truncated {
                file: file.to_owned(),
                offset: offset as u64,
                index: 0,
                what: "header",
                needed: 4,
                available: bytes.len().saturating_sub(offset) as u64,
            })
    };
    let first = word_at(0)?;
    for byte_order in [ByteOrder::Little, ByteOrder::Big] {
        let leading = byte_order.read_u32(first);
        if leading == IMG_COMMON_MAGIC || leading == IMG_SERVICE_MAGIC {
            let second = byte_order.read_u32(word_at(4)?);
            let expected_framing = if leading == IMG_COMMON_MAGIC {
                Framing::Common
            } else {
                Framing::Service
            };
            return match ImageKind::from_magic(second) {
                Some(kind) if kind.framing() == expected_framing => Ok(Header {
                    kind,
                    byte_order,
                    len: 8,
                }),
                _ => Err(ImageError::BadMagic {
                    file: file.to_owned(),
                    offset: 4,
                    magic: u32::from_le_bytes(word_at(4)?),
                }),
            };
        }
        if ImageKind::from_magic(leading).is_some_and(|kind| kind.framing() == Framing::Bare) {
            let kind = ImageKind::from_magic(leading).expect("checked just above");
            return Ok(Header {
                kind,
                byte_order,
                len: 4,
            });
        }
    }
    Err(ImageError::BadMagic {
        file: file.to_owned(),
        offset: 0,
        magic: u32::from_le_bytes(first),
    })
}

/// A pull reader over one image file held in memory.
#[derive(Debug)]
pub struct ImageReader {
    file: String,
    data: Vec<u8>,
    header: Header,
    position: usize,
    entry_index: usize,
}

impl ImageReader {
    /// Opens `path` and parses its header. A file name CRIU uses for a kind that shares
    /// its magic with another (`signal-p-N.img`) picks that kind.
    pub fn open(path: &Path) -> Result<ImageReader, ImageError> {
        let data = std::fs::read(path).map_err(|source| ImageError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let file_name = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let mut reader = ImageReader::from_bytes(file_name.clone(), data)?;
        if let Some((named_kind, _)) = ImageKind::from_file_name(&file_name) {
            if named_kind.magic() == reader.header.kind.magic() {
                reader.header.kind = named_kind;
            }
        }
        Ok(reader)
    }

    /// Wraps bytes already in memory; `file` names the image in errors.
    pub fn from_bytes(file: impl Into<String>, data: Vec<u8>) -> Result<ImageReader, ImageError> {
        let file = file.into();
        let header = parse_header(&file, &data)?;
        Ok(ImageReader {
            file,
            data,
            position: header.len,
            header,
            entry_index: 0,
        })
    }

    /// The kind of image.
    pub fn kind(&self) -> ImageKind {
        self.header.kind
    }

    /// The writer's byte order.
    pub fn byte_order(&self) -> ByteOrder {
        self.header.byte_order
    }

    /// The file name used in errors.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// Current byte offset in the file.
    pub fn offset(&self) -> u64 {
        self.position as u64
    }

    /// Index of the next entry to be read.
    pub fn entry_index(&self) -> usize {
        self.entry_index
    }

    /// Whether every byte was consumed.
    pub fn is_at_end(&self) -> bool {
        self.position >= self.data.len()
    }

    /// Reads the next entry's protobuf bytes, or `None` at a clean end of file.
    pub fn next_raw_entry(&mut self) -> Result<Option<&[u8]>, ImageError> {
        match self.next_entry_range()? {
            Some(range) => Ok(Some(&self.data[range])),
            None => Ok(None),
        }
    }

    /// Reads and decodes the next entry as `M`, or `None` at a clean end of file.
    pub fn next_entry<M: Message + Default>(&mut self) -> Result<Option<M>, ImageError> {
        let entry_offset = self.position as u64;
        let index = self.entry_index;
        let Some(range) = self.next_entry_range()? else {
            return Ok(None);
        };
        M::decode(&self.data[range])
            .map(Some)
            .map_err(|source| ImageError::Decode {
                file: self.file.clone(),
                offset: entry_offset,
                index,
                message: short_type_name::<M>().to_owned(),
                source,
            })
    }

    /// Reads `len` raw bytes that follow the last entry (pipe data, ghost file contents...).
    pub fn read_payload(&mut self, len: u64) -> Result<Vec<u8>, ImageError> {
        Ok(self.take(len, "payload")?.to_vec())
    }

    /// Skips `len` raw bytes that follow the last entry.
    pub fn skip_payload(&mut self, len: u64) -> Result<(), ImageError> {
        self.take(len, "payload").map(|_| ())
    }

    /// Returns everything left in the file (a ghost file's unchunked contents).
    pub fn read_rest(&mut self) -> Vec<u8> {
        let rest = self.data.get(self.position..).unwrap_or_default().to_vec();
        self.position = self.data.len();
        rest
    }

    fn take(&mut self, len: u64, what: &'static str) -> Result<&[u8], ImageError> {
        let available = (self.data.len() - self.position) as u64;
        if len > available {
            return Err(ImageError::Truncated {
                file: self.file.clone(),
                offset: self.position as u64,
                index: self.entry_index.saturating_sub(1),
                what,
                needed: len,
                available,
            });
        }
        let start = self.position;
        self.position += len as usize;
        Ok(&self.data[start..self.position])
    }

    /// How many whole entries follow, counted by their size words alone: a capacity hint
    /// (an image with payloads between entries gives a wrong count, never a wrong read).
    fn entries_left(&self) -> usize {
        let mut at = self.position;
        let mut count = 0;
        while let Some(size_bytes) = self.data.get(at..at + 4) {
            let size = self.header.byte_order.read_u32(size_bytes.try_into().expect("slice of 4")) as usize;
            match at.checked_add(4 + size) {
                Some(next) if next <= self.data.len() => at = next,
                _ => break,
            }
            count += 1;
        }
        count
    }

    fn next_entry_range(&mut self) -> Result<Option<std::ops::Range<usize>>, ImageError> {
        if self.is_at_end() {
            return Ok(None);
        }
        let size_offset = self.position as u64;
        let index = self.entry_index;
        let available = (self.data.len() - self.position) as u64;
        let Some(size_bytes) = self.data.get(self.position..self.position + 4) else {
            return Err(ImageError::Truncated {
                file: self.file.clone(),
                offset: size_offset,
                index,
                what: "size",
                needed: 4,
                available,
            });
        };
        let size = u64::from(
            self.header
                .byte_order
                .read_u32(size_bytes.try_into().expect("slice of 4")),
        );
        if size > MAX_ENTRY_SIZE {
            return Err(ImageError::EntryTooLarge {
                file: self.file.clone(),
                offset: size_offset,
                index,
                size,
                limit: MAX_ENTRY_SIZE,
            });
        }
        if size > available - 4 {
            return Err(ImageError::Truncated {
                file: self.file.clone(),
                offset: size_offset,
                index,
                what: "entry",
                needed: size,
                available: available - 4,
            });
        }
        let start = self.position + 4;
        self.position = start + size as usize;
        self.entry_index += 1;
        Ok(Some(start..self.position))
    }
}

/// Reads every entry of the image at `path` as `M`.
pub fn read_entries<M: Message + Default>(path: &Path) -> Result<Vec<M>, ImageError> {
    let mut reader = ImageReader::open(path)?;
    // Reserved once: files.img of 10,000 fds grew its vector of 500-byte entries 14 times.
    let mut entries = Vec::with_capacity(reader.entries_left().min(1 << 16));
    while let Some(entry) = reader.next_entry()? {
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads the first entry of the image at `path` as `M` (core, mm, inventory...).
pub fn read_single<M: Message + Default>(path: &Path) -> Result<M, ImageError> {
    let mut reader = ImageReader::open(path)?;
    reader.next_entry()?.ok_or_else(|| ImageError::Empty {
        file: reader.file_name().to_owned(),
    })
}

/// One entry of an image, split out by [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// offset of the entry's size word
    pub offset: u64,
    /// the protobuf message bytes
    pub message: Vec<u8>,
    /// raw bytes that follow the message, for kinds that carry them
    pub payload: Option<Vec<u8>>,
}

/// A whole image split into entries without decoding them as a particular type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawImage {
    /// what the header says
    pub header: Header,
    /// entries in file order
    pub entries: Vec<RawEntry>,
}

/// Splits image bytes into entries and payloads. Pure: does no I/O and never panics, so
/// it is the fuzzing entry point. Payload lengths come from the entry that precedes them
/// (pipe data `bytes`, socket queue `length`, tcp stream `inq_len + outq_len`, BPF map
/// data `keys_bytes + values_bytes`, ghost file chunks), as crit reads them.
pub fn parse(file: &str, bytes: &[u8]) -> Result<RawImage, ImageError> {
    let mut reader = ImageReader::from_bytes(file, bytes.to_vec())?;
    if let Some((named_kind, _)) = ImageKind::from_file_name(file) {
        if named_kind.magic() == reader.header.kind.magic() {
            reader.header.kind = named_kind;
        }
    }
    let mut entries = Vec::new();
    let mut ghost_chunks = false;
    loop {
        let offset = reader.offset();
        let index = reader.entry_index();
        let Some(message) = reader.next_raw_entry()?.map(<[u8]>::to_vec) else {
            break;
        };
        let decode_error = |name: &str, source| ImageError::Decode {
            file: file.to_owned(),
            offset,
            index,
            message: name.to_owned(),
            source,
        };
        let payload = match reader.kind() {
            ImageKind::PipesData | ImageKind::FifoData => {
                let entry = pb::PipeDataEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("PipeDataEntry", source))?;
                Some(reader.read_payload(u64::from(entry.bytes))?)
            }
            ImageKind::SkQueues => {
                let entry = pb::SkPacketEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("SkPacketEntry", source))?;
                Some(reader.read_payload(u64::from(entry.length))?)
            }
            ImageKind::BpfmapData => {
                let entry = pb::BpfmapDataEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("BpfmapDataEntry", source))?;
                Some(
                    reader.read_payload(
                        u64::from(entry.keys_bytes) + u64::from(entry.values_bytes),
                    )?,
                )
            }
            ImageKind::TcpStream => {
                let entry = pb::TcpStreamEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("TcpStreamEntry", source))?;
                Some(reader.read_payload(u64::from(entry.inq_len) + u64::from(entry.outq_len))?)
            }
            ImageKind::GhostFile if index == 0 => {
                let entry = pb::GhostFileEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("GhostFileEntry", source))?;
                ghost_chunks = entry.chunks.unwrap_or(false);
                if ghost_chunks {
                    None
                } else {
                    Some(reader.read_rest())
                }
            }
            ImageKind::GhostFile if ghost_chunks => {
                let entry = pb::GhostChunkEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("GhostChunkEntry", source))?;
                Some(reader.read_payload(entry.len)?)
            }
            ImageKind::IpcnsShm => {
                let entry = pb::IpcShmEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("IpcShmEntry", source))?;
                if entry.in_pagemaps == Some(true) {
                    None
                } else {
                    Some(reader.read_payload(round_up(entry.size, 4))?)
                }
            }
            ImageKind::IpcnsSem => {
                let entry = pb::IpcSemEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("IpcSemEntry", source))?;
                Some(reader.read_payload(round_up(u64::from(entry.nsems) * 2, 8))?)
            }
            ImageKind::IpcnsMsg => {
                let entry = pb::IpcMsgEntry::decode(message.as_slice())
                    .map_err(|source| decode_error("IpcMsgEntry", source))?;
                Some(read_ipc_messages(&mut reader, entry.qnum)?)
            }
            _ => None,
        };
        entries.push(RawEntry {
            offset,
            message,
            payload,
        });
    }
    Ok(RawImage {
        header: reader.header,
        entries,
    })
}

/// `x` rounded up to a multiple of `to` (a power of two), saturating.
pub(crate) fn round_up(x: u64, to: u64) -> u64 {
    x.checked_add(to - 1)
        .map_or(u64::MAX, |sum| sum & !(to - 1))
}

/// The framed messages of one System V message queue: `qnum` times a size word, an
/// `ipc_msg`, and its `msize` bytes padded to 8. A queue cut short at a message
/// boundary ends there, as crit reads it.
fn read_ipc_messages(reader: &mut ImageReader, qnum: u32) -> Result<Vec<u8>, ImageError> {
    let start = reader.position;
    for _ in 0..qnum {
        if reader.is_at_end() {
            break;
        }
        let offset = reader.offset();
        let index = reader.entry_index();
        let file = reader.file.clone();
        let Some(bytes) = reader.next_raw_entry()? else {
            break;
        };
        let message = pb::IpcMsg::decode(bytes).map_err(|source| ImageError::Decode {
            file,
            offset,
            index,
            message: "IpcMsg".to_owned(),
            source,
        })?;
        // the messages are part of the queue's entry, not entries of their own
        reader.entry_index -= 1;
        reader.skip_payload(round_up(u64::from(message.msize), 8))?;
    }
    Ok(reader.data[start..reader.position].to_vec())
}

/// A buffered writer of one image file.
pub struct ImageWriter<W: Write = BufWriter<File>> {
    sink: W,
    file: String,
    path: Option<PathBuf>,
    kind: ImageKind,
    byte_order: ByteOrder,
    offset: u64,
    entries_written: usize,
}

impl ImageWriter<BufWriter<File>> {
    /// Creates `dir/<CRIU file name for kind and id>` and writes its magic header in this
    /// machine's byte order.
    pub fn create(dir: &Path, kind: ImageKind, id: u64) -> Result<ImageWriter, ImageError> {
        ImageWriter::create_path(&dir.join(kind.file_name(id)), kind)
    }

    /// Creates the image at an explicit path, readable and writable by its owner only
    /// (0600: images hold process memory and credentials; an existing file is made
    /// 0600 too).
    pub fn create_path(path: &Path, kind: ImageKind) -> Result<ImageWriter, ImageError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let write_error = |source| ImageError::WriteFile {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(write_error)?;
        if file.metadata().map_err(write_error)?.mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(write_error)?;
        }
        ImageWriter::from_file(file, path, kind)
    }

    /// Writes the image into `file`, already created (empty, 0600) at `path`.
    pub fn from_file(file: File, path: &Path, kind: ImageKind) -> Result<ImageWriter, ImageError> {
        let mut writer = ImageWriter::with_sink(
            BufWriter::new(file),
            path.display().to_string(),
            kind,
            ByteOrder::native(),
        )?;
        writer.path = Some(path.to_owned());
        Ok(writer)
    }
}

impl<W: Write> ImageWriter<W> {
    /// Writes an image into any sink (a `Vec<u8>` in tests), with an explicit byte order.
    pub fn with_sink(
        sink: W,
        file: impl Into<String>,
        kind: ImageKind,
        byte_order: ByteOrder,
    ) -> Result<ImageWriter<W>, ImageError> {
        let mut writer = ImageWriter {
            sink,
            file: file.into(),
            path: None,
            kind,
            byte_order,
            offset: 0,
            entries_written: 0,
        };
        match kind.framing() {
            Framing::Common => writer.put(&byte_order.write_u32(IMG_COMMON_MAGIC))?,
            Framing::Service => writer.put(&byte_order.write_u32(IMG_SERVICE_MAGIC))?,
            Framing::Bare | Framing::Raw => {}
        }
        if kind.framing() != Framing::Raw {
            writer.put(&byte_order.write_u32(kind.magic()))?;
        }
        Ok(writer)
    }

    /// The kind being written.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// Bytes written so far, header included.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Entries written so far.
    pub fn entries_written(&self) -> usize {
        self.entries_written
    }

    /// Encodes `message` as the next entry.
    pub fn write_entry<M: Message>(&mut self, message: &M) -> Result<(), ImageError> {
        self.write_raw_entry(&message.encode_to_vec())
    }

    /// Writes already encoded protobuf bytes as the next entry.
    pub fn write_raw_entry(&mut self, message: &[u8]) -> Result<(), ImageError> {
        let size = u32::try_from(message.len())
            .ok()
            .filter(|&size| u64::from(size) <= MAX_ENTRY_SIZE)
            .ok_or_else(|| ImageError::EntryTooLarge {
                file: self.file.clone(),
                offset: self.offset,
                index: self.entries_written,
                size: message.len() as u64,
                limit: MAX_ENTRY_SIZE,
            })?;
        self.put(&self.byte_order.write_u32(size))?;
        self.put(message)?;
        self.entries_written += 1;
        Ok(())
    }

    /// Writes raw bytes after the last entry (pipe data, ghost file contents, pages).
    pub fn write_payload(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.put(bytes)
    }

    /// Flushes the image.
    pub fn finish(self) -> Result<(), ImageError> {
        self.into_inner().map(|_| ())
    }

    /// Flushes the image and gives back the sink.
    pub fn into_inner(mut self) -> Result<W, ImageError> {
        let result = self.sink.flush();
        self.check(result)?;
        Ok(self.sink)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        let result = self.sink.write_all(bytes);
        self.check(result)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn check(&self, result: std::io::Result<()>) -> Result<(), ImageError> {
        result.map_err(|source| ImageError::WriteFile {
            path: self
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from(&self.file)),
            source,
        })
    }
}

/// Writes a whole image of `entries` to `dir` in one call.
pub fn write_entries<M: Message>(
    dir: &Path,
    kind: ImageKind,
    id: u64,
    entries: &[M],
) -> Result<(), ImageError> {
    let mut writer = ImageWriter::create(dir, kind, id)?;
    for entry in entries {
        writer.write_entry(entry)?;
    }
    writer.finish()
}

fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_bytes(kind: ImageKind, byte_order: ByteOrder, entries: &[pb::PstreeEntry]) -> Vec<u8> {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "test.img", kind, byte_order).expect("vec sink");
        for entry in entries {
            writer.write_entry(entry).expect("vec sink");
        }
        writer.into_inner().expect("vec sink")
    }

    fn sample() -> pb::PstreeEntry {
        pb::PstreeEntry {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            threads: vec![1, 2],
        }
    }

    #[test]
    fn entries_left_counts_whole_entries_in_either_byte_order() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let bytes = image_bytes(ImageKind::Pstree, order, &[sample(), sample(), sample()]);
            let mut reader = ImageReader::from_bytes("pstree.img", bytes.clone()).expect("header");
            assert_eq!(reader.entries_left(), 3);
            reader.next_entry::<pb::PstreeEntry>().expect("entry");
            assert_eq!(reader.entries_left(), 2);
            // A cut last entry is not counted; the read still reports it.
            let cut = ImageReader::from_bytes("pstree.img", bytes[..bytes.len() - 1].to_vec()).expect("header");
            assert_eq!(cut.entries_left(), 2);
        }
    }

    #[test]
    fn header_is_common_magic_then_kind() {
        let bytes = image_bytes(ImageKind::Pstree, ByteOrder::Little, &[]);
        assert_eq!(bytes, [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50]);
    }

    #[test]
    fn inventory_has_only_its_own_magic() {
        let writer = ImageWriter::with_sink(
            Vec::new(),
            "inventory.img",
            ImageKind::Inventory,
            ByteOrder::Little,
        )
        .expect("vec sink");
        assert_eq!(
            writer.into_inner().expect("vec sink"),
            0x5831_3116u32.to_le_bytes()
        );
    }

    #[test]
    fn writer_counts_offset_and_entries() {
        let mut writer = ImageWriter::with_sink(
            Vec::new(),
            "pstree.img",
            ImageKind::Pstree,
            ByteOrder::Little,
        )
        .expect("vec sink");
        assert_eq!((writer.offset(), writer.entries_written()), (8, 0));
        writer.write_entry(&sample()).expect("vec sink");
        assert_eq!(writer.offset(), 8 + 4 + sample().encoded_len() as u64);
        assert_eq!(writer.entries_written(), 1);
    }

    #[test]
    fn big_endian_images_read_back() {
        let bytes = image_bytes(ImageKind::Pstree, ByteOrder::Big, &[sample(), sample()]);
        let mut reader = ImageReader::from_bytes("pstree.img", bytes).expect("valid header");
        assert_eq!(reader.byte_order(), ByteOrder::Big);
        assert_eq!(reader.kind(), ImageKind::Pstree);
        assert_eq!(
            reader.next_entry::<pb::PstreeEntry>().expect("entry"),
            Some(sample())
        );
        assert_eq!(
            reader.next_entry::<pb::PstreeEntry>().expect("entry"),
            Some(sample())
        );
        assert_eq!(reader.next_entry::<pb::PstreeEntry>().expect("end"), None);
    }

    #[test]
    fn bad_magic_names_offset() {
        let error =
            ImageReader::from_bytes("x.img", vec![1, 2, 3, 4, 5, 6, 7, 8]).expect_err("bad magic");
        assert_eq!(
            error.to_string(),
            "x.img: offset 0: unknown magic 0x04030201"
        );
        let mut bytes = IMG_COMMON_MAGIC.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        let error = ImageReader::from_bytes("y.img", bytes).expect_err("bad second magic");
        assert_eq!(
            error.to_string(),
            "y.img: offset 4: unknown magic 0x12345678"
        );
    }

    #[test]
    fn truncated_header() {
        let error = ImageReader::from_bytes("z.img", IMG_COMMON_MAGIC.to_le_bytes().to_vec())
            .expect_err("short");
        assert!(
            matches!(
                error,
                ImageError::Truncated {
                    what: "header",
                    offset: 4,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn truncated_entry_names_index_and_offset() {
        let mut bytes = image_bytes(ImageKind::Pstree, ByteOrder::Little, &[sample(), sample()]);
        bytes.truncate(bytes.len() - 1);
        let mut reader = ImageReader::from_bytes("pstree.img", bytes).expect("header");
        reader
            .next_entry::<pb::PstreeEntry>()
            .expect("first entry whole");
        let error = reader
            .next_entry::<pb::PstreeEntry>()
            .expect_err("second cut");
        let ImageError::Truncated {
            index,
            offset,
            what,
            ..
        } = &error
        else {
            panic!("{error}")
        };
        assert_eq!((*index, *what), (1, "entry"));
        assert_eq!(*offset, 8 + 4 + sample().encoded_len() as u64);
    }

    #[test]
    fn truncated_size_word() {
        let mut bytes = image_bytes(ImageKind::Pstree, ByteOrder::Little, &[]);
        bytes.extend_from_slice(&[1, 0]);
        let mut reader = ImageReader::from_bytes("pstree.img", bytes).expect("header");
        let error = reader.next_raw_entry().expect_err("cut size");
        assert!(
            matches!(
                error,
                ImageError::Truncated {
                    what: "size",
                    needed: 4,
                    available: 2,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn oversized_entry_is_refused_before_allocation() {
        let mut bytes = image_bytes(ImageKind::Pstree, ByteOrder::Little, &[]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut reader = ImageReader::from_bytes("pstree.img", bytes).expect("header");
        let error = reader.next_raw_entry().expect_err("too big");
        assert!(
            matches!(
                error,
                ImageError::EntryTooLarge {
                    size: 0xffff_ffff,
                    offset: 8,
                    index: 0,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn decode_error_names_message() {
        let mut bytes = image_bytes(ImageKind::Pstree, ByteOrder::Little, &[]);
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&[0x08, 0x80]); // varint cut short
        let mut reader = ImageReader::from_bytes("pstree.img", bytes).expect("header");
        let error = reader
            .next_entry::<pb::PstreeEntry>()
            .expect_err("bad varint");
        assert!(
            error
                .to_string()
                .starts_with("pstree.img: offset 8: entry 0: decode PstreeEntry:"),
            "{error}"
        );
    }

    #[test]
    fn payload_past_end_is_truncation() {
        let mut writer = ImageWriter::with_sink(
            Vec::new(),
            "pipes-data.img",
            ImageKind::PipesData,
            ByteOrder::Little,
        )
        .expect("vec");
        writer
            .write_entry(&pb::PipeDataEntry {
                pipe_id: 1,
                bytes: 10,
                size: None,
            })
            .expect("vec");
        writer.write_payload(b"short").expect("vec");
        let bytes = writer.into_inner().expect("vec");
        let error = parse("pipes-data.img", &bytes).expect_err("payload cut");
        assert!(
            matches!(
                error,
                ImageError::Truncated {
                    what: "payload",
                    needed: 10,
                    available: 5,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn parse_splits_payloads() {
        let mut writer = ImageWriter::with_sink(
            Vec::new(),
            "pipes-data.img",
            ImageKind::PipesData,
            ByteOrder::Little,
        )
        .expect("vec");
        writer
            .write_entry(&pb::PipeDataEntry {
                pipe_id: 1,
                bytes: 3,
                size: Some(4096),
            })
            .expect("vec");
        writer.write_payload(b"abc").expect("vec");
        writer
            .write_entry(&pb::PipeDataEntry {
                pipe_id: 2,
                bytes: 0,
                size: None,
            })
            .expect("vec");
        let image = parse("pipes-data.img", &writer.into_inner().expect("vec")).expect("valid");
        assert_eq!(image.entries.len(), 2);
        assert_eq!(image.entries[0].payload.as_deref(), Some(&b"abc"[..]));
        assert_eq!(image.entries[1].payload.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn files_round_trip_through_disk() {
        let dir = std::env::temp_dir().join(format!("crust-images-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        write_entries(&dir, ImageKind::Pstree, 0, &[sample()]).expect("write");
        let path = dir.join("pstree.img");
        assert_eq!(
            read_entries::<pb::PstreeEntry>(&path).expect("read"),
            vec![sample()]
        );
        assert_eq!(
            read_single::<pb::PstreeEntry>(&path).expect("read"),
            sample()
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

/// A pull reader that holds only the current entry in memory and hands payload over in
/// pieces: for images whose payload may be larger than memory allows (ghost files).
pub struct StreamReader {
    file: String,
    inner: std::io::BufReader<std::fs::File>,
    header: Header,
    position: u64,
    entry_index: usize,
}

impl StreamReader {
    /// Opens `path` and parses its header.
    pub fn open(path: &Path) -> Result<StreamReader, ImageError> {
        use std::io::Read;
        let read_error = |source| ImageError::ReadFile { path: path.to_owned(), source };
        let file_name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut inner = std::io::BufReader::new(std::fs::File::open(path).map_err(read_error)?);
        let mut first = Vec::with_capacity(8);
        inner.by_ref().take(8).read_to_end(&mut first).map_err(read_error)?;
        let header = parse_header(&file_name, &first)?;
        // A bare header is 4 bytes: the other 4 already read belong to the first entry.
        if header.len < first.len() {
            inner.seek_relative(header.len as i64 - first.len() as i64).map_err(read_error)?;
        }
        Ok(StreamReader { file: file_name, inner, position: header.len as u64, header, entry_index: 0 })
    }

    /// The kind of image.
    pub fn kind(&self) -> ImageKind {
        self.header.kind
    }

    /// Reads `buf.len()` bytes, or fewer at the end of the file.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ImageError> {
        use std::io::Read;
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ImageError::ReadFile { path: PathBuf::from(self.file.clone()), source }),
            }
        }
        self.position += got as u64;
        Ok(got)
    }

    /// The next entry, or `None` at a clean end of file.
    pub fn next_entry<M: Message + Default>(&mut self) -> Result<Option<M>, ImageError> {
        let size_offset = self.position;
        let index = self.entry_index;
        let mut size_bytes = [0u8; 4];
        match self.fill(&mut size_bytes)? {
            0 => return Ok(None),
            4 => {}
            n => return Err(ImageError::Truncated { file: self.file.clone(), offset: size_offset, index, what: "size", needed: 4, available: n as u64 }),
        }
        let size = u64::from(self.header.byte_order.read_u32(size_bytes));
        if size > MAX_ENTRY_SIZE {
            return Err(ImageError::EntryTooLarge { file: self.file.clone(), offset: size_offset, index, size, limit: MAX_ENTRY_SIZE });
        }
        let mut bytes = vec![0u8; size as usize];
        let got = self.fill(&mut bytes)?;
        if got as u64 != size {
            return Err(ImageError::Truncated { file: self.file.clone(), offset: size_offset + 4, index, what: "entry", needed: size, available: got as u64 });
        }
        self.entry_index += 1;
        M::decode(bytes.as_slice()).map(Some).map_err(|source| ImageError::Decode {
            file: self.file.clone(),
            offset: size_offset,
            index,
            message: short_type_name::<M>().to_owned(),
            source,
        })
    }

    /// Skips the `len` payload bytes after the last entry without reading them.
    pub fn skip_payload(&mut self, len: u64) -> Result<(), ImageError> {
        let read_error = |source| ImageError::ReadFile { path: PathBuf::from(self.file.clone()), source };
        let size = self.inner.get_ref().metadata().map_err(read_error)?.len();
        let available = size.saturating_sub(self.position);
        if available < len {
            return Err(ImageError::Truncated { file: self.file.clone(), offset: self.position, index: self.entry_index, what: "payload", needed: len, available });
        }
        let offset = i64::try_from(len).map_err(|_| read_error(std::io::Error::other("payload too long")))?;
        self.inner.seek_relative(offset).map_err(|source| ImageError::ReadFile { path: PathBuf::from(self.file.clone()), source })?;
        self.position += len;
        Ok(())
    }

    /// How many bytes of the file are left after what was read (a payload that runs to
    /// the end of the file, like CRIU's small ghost files).
    pub fn remaining(&self) -> Result<u64, ImageError> {
        let size = self.inner.get_ref().metadata().map_err(|source| ImageError::ReadFile { path: PathBuf::from(self.file.clone()), source })?.len();
        Ok(size.saturating_sub(self.position))
    }

    /// Hands the `len` payload bytes after the last entry to `sink`, a piece (at most
    /// 1 MiB) at a time; the payload is never whole in memory.
    pub fn copy_payload(&mut self, len: u64, mut sink: impl FnMut(&[u8]) -> std::io::Result<()>) -> Result<(), ImageError> {
        let mut buf = vec![0u8; len.min(1 << 20) as usize];
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let at = self.position;
            let got = self.fill(&mut buf[..want])?;
            if got != want {
                return Err(ImageError::Truncated { file: self.file.clone(), offset: at, index: self.entry_index, what: "payload", needed: left, available: got as u64 });
            }
            sink(&buf[..got]).map_err(|source| ImageError::ReadFile { path: PathBuf::from(self.file.clone()), source })?;
            left -= got as u64;
        }
        Ok(())
    }
}
