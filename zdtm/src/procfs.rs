//! Pure parsers for the /proc files the harness records before a dump and compares after
//! a restore: `maps`, `smaps` (VmFlags), `status` and `fdinfo`. No I/O here: `snapshot.rs`
//! reads the files and hands the text in.

use std::collections::BTreeMap;

/// One line of `/proc/PID/maps`, with the fields the harness compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    /// First address of the VMA.
    pub start: u64,
    /// One past the last address of the VMA.
    pub end: u64,
    /// `rwxp` / `rwxs` as printed by the kernel.
    pub perms: String,
    /// File offset (pgoff << PAGE_SHIFT).
    pub offset: u64,
    /// `major:minor` of the backing file's device.
    pub device: String,
    /// Inode of the backing file, 0 for anonymous memory.
    pub inode: u64,
    /// Path or pseudo-name (`[heap]`, `[stack]`, `/dev/zero (deleted)`), empty for anon.
    pub path: String,
}

/// Error from one of the parsers: which file, which line, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which /proc file (e.g. `maps`).
    pub file: &'static str,
    /// The offending line.
    pub line: String,
    /// What was wrong with it.
    pub what: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parse {}: {}: {:?}", self.file, self.what, self.line)
    }
}

impl std::error::Error for ParseError {}

/// Parses the whole text of `/proc/PID/maps`.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>, ParseError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_maps_line)
        .collect()
}

/// Parses one line of `/proc/PID/maps` (or a VMA header line of `smaps`).
pub fn parse_maps_line(line: &str) -> Result<MapsEntry, ParseError> {
    let error = |what| ParseError {
        file: "maps",
        line: line.to_string(),
        what,
    };
    let mut rest = line;
    let mut next_field = || -> Option<&str> {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (field, tail) = trimmed.split_at(end);
        rest = tail;
        (!field.is_empty()).then_some(field)
    };
    let range = next_field().ok_or_else(|| error("missing range"))?;
    let perms = next_field()
        .ok_or_else(|| error("missing perms"))?
        .to_string();
    let offset = next_field().ok_or_else(|| error("missing offset"))?;
    let device = next_field()
        .ok_or_else(|| error("missing device"))?
        .to_string();
    let inode = next_field().ok_or_else(|| error("missing inode"))?;
    let path = rest.trim_start().to_string();
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| error("range without '-'"))?;
    let hex = |text: &str| u64::from_str_radix(text, 16).map_err(|_| error("bad hex number"));
    Ok(MapsEntry {
        start: hex(start)?,
        end: hex(end)?,
        perms,
        offset: hex(offset)?,
        device,
        inode: inode.parse().map_err(|_| error("bad inode"))?,
        path,
    })
}

/// True for the pseudo-file that backs a `MAP_SHARED|MAP_ANONYMOUS` mapping: its inode
/// and device are picked by the kernel at mmap time and cannot survive a restore. CRIU
/// restores such memory from a memfd named after it (`/memfd:/dev/zero (deleted)`), which
/// only /proc can tell apart, so that name counts as the same mapping.
pub fn is_shared_anon(entry: &MapsEntry) -> bool {
    matches!(
        entry.path.as_str(),
        "/dev/zero (deleted)" | "/memfd:/dev/zero (deleted)" | "[anon_shmem]"
    )
}

/// The text of a maps entry with what must differ across a restore blanked out.
pub fn normalised_maps_line(entry: &MapsEntry) -> String {
    let (device, inode, path) = if is_shared_anon(entry) {
        ("*".to_string(), "*".to_string(), "/dev/zero (deleted)")
    } else if entry.path.ends_with(" (deleted)") {
        // An unlinked file cannot be opened again by name: a restorer brings its content
        // back in a new file (CRIU's ghost files), so only the inode may differ.
        (entry.device.clone(), "*".to_string(), entry.path.as_str())
    } else {
        (
            entry.device.clone(),
            entry.inode.to_string(),
            entry.path.as_str(),
        )
    };
    format!(
        "{:x}-{:x} {} {:08x} {} {} {}",
        entry.start, entry.end, entry.perms, entry.offset, device, inode, path
    )
}

/// Joins neighbouring VMAs the kernel would have merged but for bookkeeping a restore
/// cannot reproduce (two anonymous VMAs with different `anon_vma`s look the same from
/// user space): same perms, file, flags, adjacent addresses and, for files, offsets.
/// Each entry comes with its VmFlags.
pub fn merge_adjacent(entries: Vec<(MapsEntry, Vec<String>)>) -> Vec<(MapsEntry, Vec<String>)> {
    let mut merged: Vec<(MapsEntry, Vec<String>)> = Vec::with_capacity(entries.len());
    for (entry, flags) in entries {
        if let Some((last, last_flags)) = merged.last_mut() {
            let anonymous = entry.inode == 0 && last.inode == 0;
            let offsets_follow = anonymous || last.offset + (last.end - last.start) == entry.offset;
            let same_kind = last.perms == entry.perms
                && last.device == entry.device
                && last.inode == entry.inode
                && last.path == entry.path
                && *last_flags == flags;
            // [stack] and friends have one VMA each; never fold them into a neighbour.
            let plain = !entry.path.starts_with('[') || entry.path == "[heap]";
            if last.end == entry.start && same_kind && offsets_follow && plain {
                last.end = entry.end;
                continue;
            }
        }
        merged.push((entry, flags));
    }
    merged
}

/// VmFlags of each VMA in `/proc/PID/smaps`, keyed by start address. Flags the kernel
/// sets by itself and a restore cannot be asked to keep are dropped: `sd` (soft-dirty,
/// set on every new VMA) and `ac` (VM_ACCOUNT, which a restorer gets on a read-only
/// mapping it had to map writable to fill in, as CRIU does).
pub fn parse_smaps_vmflags(text: &str) -> Result<BTreeMap<u64, Vec<String>>, ParseError> {
    let mut flags_by_start = BTreeMap::new();
    let mut current_start = None;
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let start = current_start.ok_or_else(|| ParseError {
                file: "smaps",
                line: line.to_string(),
                what: "VmFlags before any VMA header",
            })?;
            let mut flags: Vec<String> = flags
                .split_whitespace()
                .filter(|flag| !IGNORED_VMFLAGS.contains(flag))
                .map(str::to_string)
                .collect();
            flags.sort();
            flags_by_start.insert(start, flags);
        } else if is_smaps_header(line) {
            current_start = Some(parse_maps_line(line)?.start);
        }
    }
    Ok(flags_by_start)
}

const IGNORED_VMFLAGS: &[&str] = &["sd", "ac"];

fn is_smaps_header(line: &str) -> bool {
    // Header lines start with `start-end`; attribute lines with `Name:`.
    let first = line.split(' ').next().unwrap_or("");
    !first.ends_with(':')
        && first.contains('-')
        && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// `Key:\tvalue` lines of `/proc/PID/status` (or `fdinfo`), values trimmed.
pub fn parse_key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| {
            (
                key.trim().to_string(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

/// Keys of `/proc/PID/status` that a restore must keep as they were.
pub const STATUS_KEYS_KEPT: &[&str] = &[
    "Name",
    "Umask",
    "Tgid",
    "Pid",
    "PPid",
    "Uid",
    "Gid",
    "Groups",
    "NoNewPrivs",
    "Seccomp",
    "SigPnd",
    "ShdPnd",
    "SigBlk",
    "SigIgn",
    "SigCgt",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "Threads",
];

/// The fields of one fd's `fdinfo` that a restore must keep: position and open flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdInfo {
    /// File position (`pos:`).
    pub pos: u64,
    /// Open flags in octal as printed (`flags:`), including `O_CLOEXEC`.
    pub flags: String,
}

/// Parses `/proc/PID/fdinfo/FD`.
pub fn parse_fdinfo(text: &str) -> Result<FdInfo, ParseError> {
    let fields = parse_key_values(text);
    let error = |what| ParseError {
        file: "fdinfo",
        line: text.lines().next().unwrap_or("").to_string(),
        what,
    };
    let pos = fields.get("pos").ok_or_else(|| error("no pos"))?;
    let flags = fields.get("flags").ok_or_else(|| error("no flags"))?;
    Ok(FdInfo {
        pos: pos.parse().map_err(|_| error("bad pos"))?,
        flags: flags.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c7a00000-55d0c7a02000 r--p 00000000 fd:01 1315       /usr/bin/cat
7f2a1c000000-7f2a1c021000 rw-s 00000000 00:01 4711       /dev/zero (deleted)
7ffd6a1f2000-7ffd6a213000 rw-p 00000000 00:00 0          [stack]
7ffd6a3ed000-7ffd6a3ef000 r-xp 00000000 00:00 0
";

    #[test]
    fn maps_lines_parse_with_and_without_paths() {
        let entries = parse_maps(MAPS).expect("fixture parses");
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].start, 0x55d0c7a00000);
        assert_eq!(entries[0].path, "/usr/bin/cat");
        assert_eq!(entries[1].perms, "rw-s");
        assert_eq!(entries[1].inode, 4711);
        assert_eq!(entries[2].path, "[stack]");
        assert_eq!(entries[3].path, "");
    }

    #[test]
    fn shared_anon_inode_is_normalised_but_files_are_not() {
        let entries = parse_maps(MAPS).expect("fixture parses");
        assert!(
            normalised_maps_line(&entries[1]).ends_with("rw-s 00000000 * * /dev/zero (deleted)")
        );
        assert!(normalised_maps_line(&entries[0]).contains("fd:01 1315 /usr/bin/cat"));
    }

    #[test]
    fn adjacent_anonymous_vmas_merge_but_different_perms_do_not() {
        let entry = |line: &str| parse_maps_line(line).expect("parses");
        let flags = || vec!["rd".to_string(), "wr".to_string()];
        let merged = merge_adjacent(vec![
            (entry("1000-2000 rw-p 00000000 00:00 0"), flags()),
            (entry("2000-3000 rw-p 00000000 00:00 0"), flags()),
            (entry("3000-4000 r--p 00000000 00:00 0"), flags()),
            (entry("4000-5000 r--p 00000000 fd:01 7 /f"), flags()),
            (entry("5000-6000 r--p 00002000 fd:01 7 /f"), flags()),
        ]);
        let ranges: Vec<(u64, u64)> = merged
            .iter()
            .map(|(entry, _)| (entry.start, entry.end))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (0x1000, 0x3000),
                (0x3000, 0x4000),
                (0x4000, 0x5000),
                (0x5000, 0x6000)
            ]
        );
    }

    #[test]
    fn maps_line_with_spaces_in_path() {
        let entry = parse_maps_line("1000-2000 rw-p 00000000 00:00 0   /tmp/a b (deleted)")
            .expect("parses");
        assert_eq!(entry.path, "/tmp/a b (deleted)");
    }

    #[test]
    fn bad_maps_line_is_an_error() {
        assert!(parse_maps_line("zz-1000 rw-p").is_err());
    }

    #[test]
    fn smaps_vmflags_drop_soft_dirty() {
        let smaps = "\
7f00-8000 rw-p 00000000 00:00 0
Size:                  4 kB
VmFlags: rd wr mr mw me sd dc ac
8000-9000 r--p 00000000 00:00 0 [vvar]
VmFlags: rd mr pf io
";
        let flags = parse_smaps_vmflags(smaps).expect("fixture parses");
        assert_eq!(flags[&0x7f00], vec!["dc", "me", "mr", "mw", "rd", "wr"]);
        assert_eq!(flags[&0x8000], vec!["io", "mr", "pf", "rd"]);
    }

    #[test]
    fn status_and_fdinfo() {
        let status = parse_key_values("Name:\tcat\nSigBlk:\t0000000000010000\nUid:\t0\t0\t0\t0\n");
        assert_eq!(status["Name"], "cat");
        assert_eq!(status["Uid"], "0 0 0 0");
        let fdinfo =
            parse_fdinfo("pos:\t42\nflags:\t02100002\nmnt_id:\t21\nino:\t77\n").expect("parses");
        assert_eq!(
            fdinfo,
            FdInfo {
                pos: 42,
                flags: "02100002".into()
            }
        );
    }
}
