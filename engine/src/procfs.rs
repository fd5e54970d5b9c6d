//! Pure parsers of /proc text: maps, smaps flags, stat, status, fdinfo. No I/O here, so
//! each parser is unit-tested on fixtures and fuzzed.

use std::collections::BTreeMap;

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The path or pseudo-name (`[heap]`, `[vdso]`, ...), empty for anonymous memory.
    pub name: String,
}

/// Why a /proc text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} line {line}: {reason}")]
pub struct ParseError {
    pub what: &'static str,
    pub line: usize,
    pub reason: String,
}

fn hex(s: &str, what: &'static str, line: usize) -> Result<u64, ParseError> {
    u64::from_str_radix(s, 16)
        .map_err(|_| ParseError { what, line, reason: format!("bad hex number {s:?}") })
}

fn parse_maps_line(text: &str, line: usize) -> Result<MapsLine, ParseError> {
    let what = "maps";
    let bad = |reason: &str| ParseError { what, line, reason: reason.to_string() };
    let mut rest = text;
    let mut field = || {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (head, tail) = trimmed.split_at(end);
        rest = tail;
        head
    };
    let range = field();
    let perms = field();
    let offset = field();
    let dev = field();
    let inode = field();
    let name = rest.trim_start_matches(' ').to_string();
    let (start, end) = range.split_once('-').ok_or_else(|| bad("no address range"))?;
    let (start, end) = (hex(start, what, line)?, hex(end, what, line)?);
    if start >= end {
        return Err(bad("empty or reversed range"));
    }
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return Err(bad("permissions are not 4 characters"));
    }
    let (major, minor) = dev.split_once(':').ok_or_else(|| bad("device is not major:minor"))?;
    Ok(MapsLine {
        start,
        end,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset: hex(offset, what, line)?,
        dev_major: hex(major, what, line)? as u32,
        dev_minor: hex(minor, what, line)? as u32,
        inode: inode.parse().map_err(|_| bad("bad inode"))?,
        name,
    })
}

/// Parses /proc/PID/maps.
pub fn parse_maps(text: &str) -> Result<Vec<MapsLine>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(index, l)| parse_maps_line(l, index + 1))
        .collect()
}

/// A mapping of /proc/PID/smaps with the fields the dump needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsEntry {
    pub map: MapsLine,
    /// The two-letter VmFlags (`rd`, `wr`, `gd`, `hg`, `dc`, ...).
    pub vm_flags: Vec<String>,
}

/// Parses /proc/PID/smaps: each mapping line followed by `Key: value` lines.
pub fn parse_smaps(text: &str) -> Result<Vec<SmapsEntry>, ParseError> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let entry = out.last_mut().ok_or_else(|| ParseError {
                what: "smaps",
                line: index + 1,
                reason: "VmFlags before any mapping".into(),
            })?;
            entry.vm_flags = flags.split_whitespace().map(str::to_string).collect();
            continue;
        }
        // Header lines start with a hex range; `Key:` lines start with a capital word.
        let first = line.split(' ').next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            out.push(SmapsEntry { map: parse_maps_line(line, index + 1)?, vm_flags: Vec::new() });
        }
    }
    Ok(out)
}

/// Fields of /proc/PID/stat the dump needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub flags: u64,
    pub num_threads: i64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub exit_signal: i32,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub exit_code: i32,
}

/// Parses /proc/PID/stat (the comm may hold spaces and parentheses: it ends at the last
/// `)` of the line).
pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    let bad = |reason: &str| ParseError { what: "stat", line: 1, reason: reason.to_string() };
    let open = text.find('(').ok_or_else(|| bad("no comm"))?;
    let close = text.rfind(')').ok_or_else(|| bad("no comm"))?;
    if close < open {
        return Err(bad("comm parentheses reversed"));
    }
    let pid = text[..open].trim().parse().map_err(|_| bad("bad pid"))?;
    let comm = text[open + 1..close].to_string();
    // Fields after the comm, numbered from 3 as in proc(5).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<&str, ParseError> {
        rest.get(n - 3).copied().ok_or_else(|| bad(&format!("missing field {n}")))
    };
    let num = |n: usize| -> Result<u64, ParseError> {
        let f = field(n)?;
        f.parse::<u64>()
            .or_else(|_| f.parse::<i64>().map(|v| v as u64))
            .map_err(|_| bad(&format!("field {n} is not a number")))
    };
    Ok(Stat {
        pid,
        comm,
        state: field(3)?.chars().next().unwrap_or('?'),
        ppid: num(4)? as i32,
        pgid: num(5)? as i32,
        sid: num(6)? as i32,
        flags: num(9)?,
        num_threads: num(20)? as i64,
        start_code: num(26)?,
        end_code: num(27)?,
        start_stack: num(28)?,
        exit_signal: num(38)? as i32,
        start_data: num(45)?,
        end_data: num(46)?,
        start_brk: num(47)?,
        arg_start: num(48)?,
        arg_end: num(49)?,
        env_start: num(50)?,
        env_end: num(51)?,
        exit_code: num(52)? as i32,
    })
}

/// Parses `Key:\tvalue` files (/proc/PID/status, fdinfo) into a map of trimmed values.
pub fn parse_key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Fields of /proc/PID/fdinfo/FD.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: u64,
    /// open(2) flags, with O_CLOEXEC standing for the fd's close-on-exec flag.
    pub flags: u32,
    pub mnt_id: i32,
}

/// Parses /proc/PID/fdinfo/FD.
pub fn parse_fdinfo(text: &str) -> Result<FdInfo, ParseError> {
    let kv = parse_key_values(text);
    let bad = |reason: &str| ParseError { what: "fdinfo", line: 0, reason: reason.to_string() };
    let pos = kv.get("pos").ok_or_else(|| bad("no pos"))?.parse().map_err(|_| bad("bad pos"))?;
    let flags = u32::from_str_radix(kv.get("flags").ok_or_else(|| bad("no flags"))?, 8)
        .map_err(|_| bad("bad flags"))?;
    let mnt_id = kv.get("mnt_id").and_then(|v| v.parse().ok()).unwrap_or(-1);
    Ok(FdInfo { pos, flags, mnt_id })
}

/// Parses a hexadecimal signal mask such as `SigBlk:\t0000000000010000`.
pub fn parse_sigmask(value: &str) -> Option<u64> {
    u64::from_str_radix(value.trim(), 16).ok()
}

/// Parses the `Uid:`/`Gid:` lines: real, effective, saved, filesystem.
pub fn parse_id_quad(value: &str) -> Option<[u32; 4]> {
    let ids: Vec<u32> = value.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    ids.try_into().ok()
}

/// The innermost pid of a /proc/PID/status text: the last number of its `NSpid:` line,
/// the pid as the process's own pid namespace sees it. The one place NSpid is parsed.
pub fn parse_nspid(status: &str) -> Option<i32> {
    status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse().ok()
}

/// The innermost id of a `NSpgid:`/`NSsid:`-style line of /proc/PID/status (`key`
/// without its colon); `None` when absent or 0 (a leader outside the namespace).
pub fn parse_innermost_id(status: &str, key: &str) -> Option<i32> {
    parse_key_values(status).get(key)?.split_whitespace().last()?.parse().ok().filter(|&id: &i32| id > 0)
}

/// The supplementary groups of a `Groups:` value of /proc/PID/status. The one place
/// Groups is parsed.
pub fn parse_groups(value: &str) -> Vec<u32> {
    value.split_whitespace().filter_map(|v| v.parse().ok()).collect()
}

/// One POSIX timer of /proc/PID/timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosixTimer {
    pub id: u32,
    /// `sigev_signo` (0 for SIGEV_NONE timers).
    pub signo: u32,
    pub sival: u64,
    /// `sigev_notify` as the kernel stores it: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD
    /// 2, with SIGEV_THREAD_ID (4) added when a thread is the target.
    pub notify: u32,
    /// The process or thread notified, as the reader's pid namespace numbers it.
    pub notify_pid: i32,
    pub clock: u32,
}

/// Parses /proc/PID/timers: blocks of `ID:`, `signal: SIGNO/SIVAL`,
/// `notify: KIND/pid.N` or `KIND/tid.N`, `ClockID:`.
pub fn parse_timers(text: &str) -> Result<Vec<PosixTimer>, ParseError> {
    let what = "timers";
    let mut timers = Vec::new();
    let mut current: Option<PosixTimer> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let bad = |reason: &str| ParseError { what, line, reason: reason.to_string() };
        let (key, value) = raw.split_once(": ").ok_or_else(|| bad("no `key: value`"))?;
        if key == "ID" {
            if let Some(done) = current.take() {
                timers.push(done);
            }
            let id = value.parse().map_err(|_| bad("bad timer id"))?;
            current = Some(PosixTimer { id, signo: 0, sival: 0, notify: 0, notify_pid: 0, clock: 0 });
            continue;
        }
        let timer = current.as_mut().ok_or_else(|| bad("a field before the first ID"))?;
        match key {
            "signal" => {
                let (signo, sival) = value.split_once('/').ok_or_else(|| bad("signal is not SIGNO/VALUE"))?;
                timer.signo = signo.parse().map_err(|_| bad("bad signal number"))?;
                timer.sival = hex(sival, what, line)?;
            }
            "notify" => {
                let (kind, target) = value.split_once('/').ok_or_else(|| bad("notify is not KIND/TARGET"))?;
                let base = match kind {
                    "signal" => 0,
                    "none" => 1,
                    "thread" => 2,
                    _ => return Err(bad("unknown notify kind")),
                };
                let (scope, pid) = target.split_once('.').ok_or_else(|| bad("notify target is not pid.N or tid.N"))?;
                timer.notify = match scope {
                    "pid" => base,
                    "tid" => base | 4,
                    _ => return Err(bad("notify target is neither pid nor tid")),
                };
                timer.notify_pid = pid.parse().map_err(|_| bad("bad notify pid"))?;
            }
            "ClockID" => timer.clock = value.parse().map_err(|_| bad("bad clock id"))?,
            _ => {}
        }
    }
    timers.extend(current);
    Ok(timers)
}

/// A time namespace's offsets (/proc/PID/timens_offsets), each (seconds, nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimensOffsets {
    pub(crate) monotonic: (i64, i64),
    pub(crate) boottime: (i64, i64),
}

/// Parses /proc/PID/timens_offsets (`monotonic S NS` and `boottime S NS` lines; a
/// clock may be named by number, 1 and 7). Pure.
pub(crate) fn parse_timens_offsets(text: &str) -> Result<TimensOffsets, String> {
    let mut offsets = TimensOffsets::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [clock, sec, nsec] = words[..] else { return Err(format!("timens_offsets line {line:?}: not CLOCK SECONDS NANOSECONDS")) };
        let value = (
            sec.parse::<i64>().map_err(|_| format!("timens_offsets line {line:?}: bad seconds"))?,
            nsec.parse::<i64>().map_err(|_| format!("timens_offsets line {line:?}: bad nanoseconds"))?,
        );
        match clock {
            "monotonic" | "1" => offsets.monotonic = value,
            "boottime" | "7" => offsets.boottime = value,
            _ => return Err(format!("timens_offsets line {line:?}: unknown clock {clock}")),
        }
    }
    Ok(offsets)
}

/// `time + offset`, nanoseconds normalised to 0..1e9. Pure.
pub(crate) fn add_offset(time: (i64, i64), offset: (i64, i64)) -> (i64, i64) {
    let total = (time.0 + offset.0) as i128 * 1_000_000_000 + (time.1 + offset.1) as i128;
    (total.div_euclid(1_000_000_000) as i64, total.rem_euclid(1_000_000_000) as i64)
}

/// `a - b`, nanoseconds normalised to 0..1e9 (the form timens_offsets takes). Pure.
pub(crate) fn sub_time(a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
    add_offset(a, (-b.0, -b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c2a00000-55d0c2a02000 r--p 00000000 fe:00 1311768                    /usr/bin/cat
7f15a0de6000-7f15a0dea000 r--p 00000000 00:00 0                          [vvar]
7f15a0dea000-7f15a0dec000 r--p 00000000 00:00 0                          [vvar_vclock]
7f3c1a000000-7f3c1a100000 rw-s 00000000 00:01 4242                       /dev/zero (deleted)
7ffc5a222000-7ffc5a243000 rw-p 00000000 00:00 0                          [stack]
7f0000001000-7f0000002000 ---p 00000000 00:00 0 
";

    #[test]
    fn maps_lines() {
        let maps = parse_maps(MAPS).unwrap();
        assert_eq!(maps.len(), 6);
        assert_eq!(maps[0].name, "/usr/bin/cat");
        assert_eq!((maps[0].dev_major, maps[0].dev_minor, maps[0].inode), (0xfe, 0, 1311768));
        assert_eq!(maps[2].name, "[vvar_vclock]");
        assert!(maps[3].shared && maps[3].write && !maps[3].exec);
        assert_eq!(maps[3].name, "/dev/zero (deleted)");
        assert_eq!(maps[5].name, "");
        assert!(!maps[5].read);
    }

    #[test]
    fn maps_errors_name_the_line() {
        let err = parse_maps("zz-10 r--p 0 00:00 0\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(parse_maps("10-5 r--p 0 00:00 0\n").is_err());
        assert!(parse_maps("5-10 r-p 0 00:00 0\n").is_err());
    }

    #[test]
    fn smaps_flags() {
        let text = "\
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
Size:                  4 kB
VmFlags: rd wr mr mw me ac sd hg 
7f0000002000-7f0000003000 r--p 00000000 00:00 0                          [vvar]
VmFlags: rd mr pf io de dd 
";
        let s = parse_smaps(text).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[0].vm_flags.contains(&"hg".to_string()));
        assert_eq!(s[1].map.name, "[vvar]");
        assert!(s[1].vm_flags.contains(&"dd".to_string()));
    }

    #[test]
    fn stat_with_odd_comm() {
        let text = "4711 (a (b) c) S 1 4711 4711 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 18446744073709551615 94000 95000 140000 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 96000 97000 98000 141000 141100 141100 141200 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!((s.pid, s.comm.as_str(), s.state, s.ppid, s.sid), (4711, "a (b) c", 'S', 1, 4711));
        assert_eq!((s.start_code, s.end_code, s.start_stack), (94000, 95000, 140000));
        assert_eq!((s.start_brk, s.env_end, s.exit_code), (98000, 141200, 0));
        assert!(parse_stat("12 (x) S 1").is_err());
    }

    #[test]
    fn fdinfo_fields() {
        let f = parse_fdinfo("pos:\t42\nflags:\t02102002\nmnt_id:\t27\nino:\t5\n").unwrap();
        assert_eq!(f, FdInfo { pos: 42, flags: 0o2102002, mnt_id: 27 });
        assert!(parse_fdinfo("flags:\t0\n").is_err());
    }

    #[test]
    fn status_values() {
        let kv = parse_key_values("Name:\tcat\nSigBlk:\t0000000000010000\nUid:\t0\t1\t2\t3\n");
        assert_eq!(parse_sigmask(&kv["SigBlk"]), Some(0x10000));
        assert_eq!(parse_id_quad(&kv["Uid"]), Some([0, 1, 2, 3]));
    }

    #[test]
    fn nspid_groups_and_namespace_ids() {
        let status = "Name:\tsh\nNSpid:\t4711\t12\t1\nNSpgid:\t4700\t0\nNSsid:\t4711\t12\nGroups:\t4 24 27 \n";
        assert_eq!(parse_nspid(status), Some(1));
        assert_eq!(parse_nspid("Name:\tsh\n"), None);
        assert_eq!(parse_innermost_id(status, "NSpgid"), None);
        assert_eq!(parse_innermost_id(status, "NSsid"), Some(12));
        assert_eq!(parse_groups(&parse_key_values(status)["Groups"]), vec![4, 24, 27]);
        assert_eq!(parse_groups(""), Vec::<u32>::new());
    }

    #[test]
    fn timers() {
        let text = "ID: 2\nsignal: 0/0000000000000000\nnotify: none/pid.16737\nClockID: 0\n\
                    ID: 1\nsignal: 10/0000000000000000\nnotify: signal/tid.16738\nClockID: 1\n\
                    ID: 0\nsignal: 37/000000001234abcd\nnotify: signal/pid.16737\nClockID: 7\n";
        let timers = parse_timers(text).unwrap();
        assert_eq!(timers.len(), 3);
        assert_eq!(timers[0], PosixTimer { id: 2, signo: 0, sival: 0, notify: 1, notify_pid: 16737, clock: 0 });
        assert_eq!(timers[1], PosixTimer { id: 1, signo: 10, sival: 0, notify: 4, notify_pid: 16738, clock: 1 });
        assert_eq!(timers[2], PosixTimer { id: 0, signo: 37, sival: 0x1234abcd, notify: 0, notify_pid: 16737, clock: 7 });
        assert!(parse_timers("").unwrap().is_empty());
        assert!(parse_timers("signal: 1/0\n").is_err());
        assert!(parse_timers("ID: 1\nnotify: bogus/pid.1\n").is_err());
    }

    #[test]
    fn timens_offsets_parse_and_normalise() {
        let offsets = parse_timens_offsets("monotonic   1000         0\nboottime      -2       500\n").unwrap();
        assert_eq!(offsets, TimensOffsets { monotonic: (1000, 0), boottime: (-2, 500) });
        assert_eq!(parse_timens_offsets("1 5 0\n7 6 1\n").unwrap(), TimensOffsets { monotonic: (5, 0), boottime: (6, 1) });
        assert!(parse_timens_offsets("realtime 1 0\n").is_err());
        assert_eq!(add_offset((10, 900_000_000), (1, 200_000_000)), (12, 100_000_000));
        assert_eq!(sub_time((10, 100), (12, 200)), (-3, 999_999_900));
    }
}
