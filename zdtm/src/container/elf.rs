//! What a dynamically linked program needs to start in a rootfs of its own: its
//! interpreter (`PT_INTERP`) and the shared libraries it names (`DT_NEEDED`, searched in
//! `DT_RUNPATH`/`DT_RPATH` and the usual directories). The VMs have no `ldd`, so the
//! harness reads the ELF headers itself. The parser is pure (64-bit ELF, either byte
//! order: all four architectures crust runs on); the resolver reads files.

use std::path::{Path, PathBuf};

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `PT_INTERP`: the loader's path; `None` for a static executable or a library.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` entries, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` and `DT_RPATH` directories.
    pub search_path: Vec<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Reads fixed-size fields in the file's byte order.
struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn slice(&self, offset: u64, len: u64) -> Result<&[u8], String> {
        let start = usize::try_from(offset).map_err(|_| format!("offset {offset:#x} too large"))?;
        let len = usize::try_from(len).map_err(|_| format!("length {len:#x} too large"))?;
        start
            .checked_add(len)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| format!("{len} bytes at {offset:#x} beyond the file's {} bytes", self.bytes.len()))
    }

    fn u16(&self, offset: u64) -> Result<u16, String> {
        let bytes: [u8; 2] = self.slice(offset, 2)?.try_into().expect("2 bytes");
        Ok(if self.big_endian { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) })
    }

    fn u32(&self, offset: u64) -> Result<u32, String> {
        let bytes: [u8; 4] = self.slice(offset, 4)?.try_into().expect("4 bytes");
        Ok(if self.big_endian { u32::from_be_bytes(bytes) } else { u32::from_le_bytes(bytes) })
    }

    fn u64(&self, offset: u64) -> Result<u64, String> {
        let bytes: [u8; 8] = self.slice(offset, 8)?.try_into().expect("8 bytes");
        Ok(if self.big_endian { u64::from_be_bytes(bytes) } else { u64::from_le_bytes(bytes) })
    }

    /// The NUL-terminated string at `offset`.
    fn string(&self, offset: u64) -> Result<String, String> {
        let start = usize::try_from(offset).map_err(|_| format!("string offset {offset:#x} too large"))?;
        let rest = self.bytes.get(start..).ok_or_else(|| format!("string at {offset:#x} beyond the file"))?;
        let end = rest.iter().position(|byte| *byte == 0).ok_or_else(|| format!("string at {offset:#x} not terminated"))?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

/// A program header's type, file offset, virtual address and file size.
struct Segment {
    kind: u32,
    offset: u64,
    address: u64,
    file_size: u64,
}

/// Parses the dynamic-linking facts of a 64-bit ELF file. `Err` says what is wrong.
pub fn parse(bytes: &[u8]) -> Result<DynamicInfo, String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 {
        return Err(format!("ELF class {} (only 64-bit files are read)", bytes[4]));
    }
    let big_endian = match bytes[5] {
        1 => false,
        2 => true,
        other => return Err(format!("ELF data encoding {other}")),
    };
    let reader = Reader { bytes, big_endian };
    let header_offset = reader.u64(0x20)?;
    let header_size = u64::from(reader.u16(0x36)?);
    let header_count = u64::from(reader.u16(0x38)?);
    if header_size < 56 {
        return Err(format!("program header size {header_size}"));
    }
    let mut segments = Vec::new();
    for index in 0..header_count {
        let at = header_offset + index * header_size;
        segments.push(Segment {
            kind: reader.u32(at)?,
            offset: reader.u64(at + 8)?,
            address: reader.u64(at + 16)?,
            file_size: reader.u64(at + 32)?,
        });
    }
    let mut info = DynamicInfo::default();
    if let Some(interp) = segments.iter().find(|segment| segment.kind == PT_INTERP) {
        let text = reader.slice(interp.offset, interp.file_size)?;
        let end = text.iter().position(|byte| *byte == 0).unwrap_or(text.len());
        info.interpreter = Some(String::from_utf8_lossy(&text[..end]).into_owned());
    }
    let Some(dynamic) = segments.iter().find(|segment| segment.kind == PT_DYNAMIC) else {
        return Ok(info);
    };
    let mut entries = Vec::new();
    let mut string_table = None;
    for index in 0..dynamic.file_size / 16 {
        let at = dynamic.offset + index * 16;
        let tag = reader.u64(at)?;
        let value = reader.u64(at + 8)?;
        match tag {
            DT_NULL => break,
            DT_STRTAB => string_table = Some(value),
            DT_NEEDED | DT_RPATH | DT_RUNPATH => entries.push((tag, value)),
            _ => {}
        }
    }
    if entries.is_empty() {
        return Ok(info);
    }
    let table_address = string_table.ok_or("DT_NEEDED without DT_STRTAB")?;
    // DT_STRTAB is an address: the load segment that holds it gives its file offset.
    let table_offset = segments
        .iter()
        .filter(|segment| segment.kind == PT_LOAD)
        .find(|segment| table_address >= segment.address && table_address < segment.address + segment.file_size)
        .map(|segment| table_address - segment.address + segment.offset)
        .ok_or_else(|| format!("DT_STRTAB {table_address:#x} in no load segment"))?;
    for (tag, value) in entries {
        let text = reader.string(table_offset + value)?;
        if tag == DT_NEEDED {
            info.needed.push(text);
        } else {
            info.search_path.extend(text.split(':').filter(|dir| !dir.is_empty()).map(str::to_string));
        }
    }
    Ok(info)
}

/// The directories a library is looked for in, after a file's own search path: the
/// loader's own directory, then every `lib*` multiarch directory of `root` and the plain
/// ones.
pub fn default_library_dirs(root: &Path, interpreter: Option<&str>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = interpreter.and_then(|path| Path::new(path).parent()) {
        dirs.push(dir.to_path_buf());
    }
    for base in ["lib", "usr/lib"] {
        let Ok(entries) = std::fs::read_dir(root.join(base)) else { continue };
        let mut multiarch: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("-linux-gnu"))
            .map(|name| Path::new("/").join(base).join(name))
            .collect();
        multiarch.sort();
        dirs.extend(multiarch);
    }
    for dir in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        dirs.push(PathBuf::from(dir));
    }
    dirs
}

/// Every file `programs` need to start, found from `/`: interpreters and libraries,
/// transitively, each by the path the loader opens (a symlink's own path, as the loader
/// opens it). Sorted, without duplicates. `Err` names the program or library that
/// cannot be read or whose library is nowhere.
pub fn runtime_files(programs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut queue: Vec<(PathBuf, Option<String>)> = programs.iter().map(|p| (p.clone(), None)).collect();
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some((file, inherited_interpreter)) = queue.pop() {
        if seen.contains(&file) {
            continue;
        }
        seen.push(file.clone());
        let bytes = std::fs::read(&file).map_err(|error| format!("read {}: {error}", file.display()))?;
        let info = match parse(&bytes) {
            Ok(info) => info,
            // Scripts and data files carry no libraries.
            Err(_) if !bytes.starts_with(b"\x7fELF") => continue,
            Err(error) => return Err(format!("{}: {error}", file.display())),
        };
        let interpreter = info.interpreter.clone().or(inherited_interpreter);
        if let Some(loader) = &info.interpreter {
            let loader = PathBuf::from(loader);
            if !files.contains(&loader) {
                files.push(loader.clone());
                queue.push((loader, None));
            }
        }
        let mut dirs: Vec<PathBuf> = info.search_path.iter().map(PathBuf::from).collect();
        dirs.extend(default_library_dirs(Path::new("/"), interpreter.as_deref()));
        for name in &info.needed {
            let found = dirs.iter().map(|dir| dir.join(name)).find(|candidate| candidate.is_file()).ok_or_else(|| {
                format!("{}: library {name} not found in {}", file.display(), dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"))
            })?;
            if !files.contains(&found) {
                files.push(found.clone());
                queue.push((found, interpreter.clone()));
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit ELF: header, three program headers (INTERP, LOAD over the whole
    /// file, DYNAMIC), the interpreter string, a string table and a dynamic section
    /// with two DT_NEEDED, a DT_RUNPATH and DT_STRTAB. `big_endian` picks the byte order.
    fn tiny_elf(big_endian: bool) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x200];
        let put16 = |bytes: &mut Vec<u8>, at: usize, value: u16| {
            let raw = if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
            bytes[at..at + 2].copy_from_slice(&raw);
        };
        let put32 = |bytes: &mut Vec<u8>, at: usize, value: u32| {
            let raw = if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
            bytes[at..at + 4].copy_from_slice(&raw);
        };
        let put64 = |bytes: &mut Vec<u8>, at: usize, value: u64| {
            let raw = if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
            bytes[at..at + 8].copy_from_slice(&raw);
        };
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = if big_endian { 2 } else { 1 };
        put64(&mut bytes, 0x20, 0x40);
        put16(&mut bytes, 0x36, 56);
        put16(&mut bytes, 0x38, 3);
        let interp = b"/lib/ld-test.so.1\0";
        bytes[0x100..0x100 + interp.len()].copy_from_slice(interp);
        let strings = b"\0libc.so.6\0libm.so.6\0/opt/lib:/x\0";
        bytes[0x140..0x140 + strings.len()].copy_from_slice(strings);
        // (type, offset, vaddr, filesz); the load segment maps file offset 0 at 0x400000.
        let headers = [(PT_INTERP, 0x100u64, 0x400100u64, interp.len() as u64), (PT_LOAD, 0, 0x400000, 0x200), (PT_DYNAMIC, 0x180, 0x400180, 0x50)];
        for (index, (kind, offset, address, size)) in headers.into_iter().enumerate() {
            let at = 0x40 + index * 56;
            put32(&mut bytes, at, kind);
            put64(&mut bytes, at + 8, offset);
            put64(&mut bytes, at + 16, address);
            put64(&mut bytes, at + 32, size);
        }
        let dynamic = [(DT_NEEDED, 1u64), (DT_NEEDED, 11), (DT_RUNPATH, 21), (DT_STRTAB, 0x400140), (DT_NULL, 0)];
        for (index, (tag, value)) in dynamic.into_iter().enumerate() {
            put64(&mut bytes, 0x180 + index * 16, tag);
            put64(&mut bytes, 0x180 + index * 16 + 8, value);
        }
        bytes
    }

    #[test]
    fn both_byte_orders_give_the_same_facts() {
        for big_endian in [false, true] {
            let info = parse(&tiny_elf(big_endian)).expect("parses");
            assert_eq!(info.interpreter.as_deref(), Some("/lib/ld-test.so.1"));
            assert_eq!(info.needed, vec!["libc.so.6", "libm.so.6"]);
            assert_eq!(info.search_path, vec!["/opt/lib", "/x"]);
        }
    }

    #[test]
    fn broken_files_say_what_is_wrong() {
        assert_eq!(parse(b"#!/bin/sh\n").unwrap_err(), "not an ELF file");
        let mut elf = tiny_elf(false);
        elf[4] = 1;
        assert!(parse(&elf).unwrap_err().contains("64-bit"));
        let elf = tiny_elf(false);
        assert!(parse(&elf[..0x150]).unwrap_err().contains("beyond"));
        let mut elf = tiny_elf(false);
        // DT_STRTAB pointing nowhere.
        elf[0x180 + 3 * 16 + 8..0x180 + 3 * 16 + 16].copy_from_slice(&0x900000u64.to_le_bytes());
        assert!(parse(&elf).unwrap_err().contains("no load segment"));
    }

    #[test]
    fn the_test_binary_itself_is_read() {
        // This test program is an ELF of the running architecture: static (no
        // interpreter) or dynamic (an interpreter and libc among what it needs).
        let exe = std::fs::read("/proc/self/exe").expect("read own executable");
        let info = parse(&exe).expect("own executable parses");
        if info.interpreter.is_some() {
            assert!(info.needed.iter().any(|name| name.starts_with("libc.so")), "{info:?}");
            let files = runtime_files(&[PathBuf::from("/proc/self/exe")]).expect("libraries found");
            assert!(files.iter().any(|file| file.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libc.so"))));
        }
    }
}
