//! Process-wide state: argv/env/auxv, pid, comm, umask, rlimits, a Rust std program,
//! a busy counter, and the demo's counter.
//!
//! Unsafe: getauxval, raw getpid/gettid, prctl(PR_SET_NAME), umask, setrlimit, reading
//! the 16 AT_RANDOM bytes the kernel put on the stack.
#![allow(unsafe_code)]

use crust_zdtm::testlib::{ensure, random_u64, Test};
use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;

fn read_proc(file: &str) -> Result<Vec<u8>, String> {
    std::fs::read(format!("/proc/self/{file}"))
        .map_err(|error| format!("read /proc/self/{file}: {error}"))
}

/// argv, environment and auxv (including the AT_RANDOM bytes) stay as they were.
pub fn env_args_auxv(test: &mut Test) -> Result<(), String> {
    let cmdline = read_proc("cmdline")?;
    let environ = read_proc("environ")?;
    let auxv = read_proc("auxv")?;
    // SAFETY: getauxval only reads the saved auxv.
    let at_random = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u8;
    ensure(!at_random.is_null(), || "no AT_RANDOM in auxv".into())?;
    // SAFETY: AT_RANDOM points at 16 bytes on the initial stack, alive for the process.
    let random_bytes = unsafe { std::slice::from_raw_parts(at_random, 16) }.to_vec();
    let env_value = format!("{:016x}", random_u64());
    std::env::set_var("ZDTM_ENV_VALUE", &env_value);
    let args: Vec<String> = std::env::args().collect();
    test.ready();
    test.wait_for_term();
    ensure(read_proc("cmdline")? == cmdline, || {
        "/proc/self/cmdline changed".into()
    })?;
    ensure(read_proc("environ")? == environ, || {
        "/proc/self/environ changed".into()
    })?;
    ensure(read_proc("auxv")? == auxv, || {
        "/proc/self/auxv changed".into()
    })?;
    // SAFETY: as above.
    let at_random_after = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u8;
    ensure(at_random_after == at_random, || {
        format!("AT_RANDOM moved {at_random:p} -> {at_random_after:p}")
    })?;
    // SAFETY: as above.
    let random_after = unsafe { std::slice::from_raw_parts(at_random, 16) };
    ensure(random_after == random_bytes.as_slice(), || {
        "AT_RANDOM bytes changed".into()
    })?;
    ensure(
        std::env::var("ZDTM_ENV_VALUE").ok().as_deref() == Some(env_value.as_str()),
        || "setenv'd variable lost".into(),
    )?;
    let expected_args = ["env_args_auxv", "--alpha", "two words", "", "ünïcode"];
    ensure(args.len() == 6 && args[1..] == expected_args, || {
        format!("args {args:?}")
    })?;
    ensure(std::env::args().collect::<Vec<_>>() == args, || {
        "std::env::args changed".into()
    })?;
    Ok(())
}

/// getpid, gettid and /proc/self all still name the pid from before the dump.
pub fn pid_kept(test: &mut Test) -> Result<(), String> {
    let pid = std::process::id() as i64;
    test.ready();
    test.wait_for_term();
    // SAFETY: raw syscalls without arguments.
    let (raw_pid, raw_tid) = unsafe {
        (
            libc::syscall(libc::SYS_getpid),
            libc::syscall(libc::SYS_gettid),
        )
    };
    ensure(raw_pid == pid, || format!("getpid {raw_pid}, was {pid}"))?;
    ensure(raw_tid == pid, || format!("gettid {raw_tid}, was {pid}"))?;
    let self_link = std::fs::read_link("/proc/self")
        .map_err(|error| format!("readlink /proc/self: {error}"))?;
    ensure(self_link.to_string_lossy() == pid.to_string(), || {
        format!("/proc/self -> {}", self_link.display())
    })
}

/// A counter incremented in a tight loop with no syscalls, running (state R) at dump.
pub fn busy_counter(test: &mut Test) -> Result<(), String> {
    let base = random_u64() >> 8;
    let mut counter = base;
    while counter - base < 1_000_000 {
        counter = black_box(counter + 1);
    }
    let at_ready = counter;
    let shadow = black_box(!base);
    test.ready();
    // At least one step after ready: on a loaded machine the process may not run at
    // all between its ready and the harness's SIGTERM after the restore, and the
    // check below is that the counter goes on from where it was, not how far.
    loop {
        counter = black_box(counter + 1);
        if test.term_requested() {
            break;
        }
    }
    ensure(!shadow == base, || "shadow copy of the base changed".into())?;
    ensure(counter > at_ready && counter - base < 1 << 50, || {
        format!("counter {counter} did not keep going from {at_ready} (base {base})")
    })
}

/// std on Rust: a HashMap with per-process random hasher keys, heap data, Instant.
pub fn rust_std(test: &mut Test) -> Result<(), String> {
    let mut map = HashMap::new();
    for index in 0..2000u64 {
        map.insert(format!("key-{:016x}", random_u64()), index);
    }
    let keys: Vec<(String, u64)> = map
        .iter()
        .map(|(key, value)| (key.clone(), *value))
        .collect();
    let boxed: Vec<Box<[u64]>> = (0..64)
        .map(|i| vec![random_u64() ^ i; 100].into_boxed_slice())
        .collect();
    let sums: Vec<u64> = boxed
        .iter()
        .map(|slice| slice.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
        .collect();
    let started = std::time::Instant::now();
    let exe = std::env::current_exe().map_err(|error| format!("current_exe: {error}"))?;
    test.ready();
    test.wait_for_term();
    for (key, value) in &keys {
        ensure(map.get(key) == Some(value), || {
            format!("HashMap lost {key}: hasher keys or buckets changed")
        })?;
    }
    map.insert("after-restore".into(), 7);
    ensure(map.len() == keys.len() + 1, || {
        "HashMap insert after restore".into()
    })?;
    for (slice, sum) in boxed.iter().zip(&sums) {
        ensure(
            slice.iter().fold(0u64, |a, b| a.wrapping_add(*b)) == *sum,
            || "boxed slice changed".into(),
        )?;
    }
    ensure(started.elapsed().as_secs() < 3600, || {
        "Instant went backwards or jumped".into()
    })?;
    let exe_after = std::env::current_exe().map_err(|error| format!("current_exe: {error}"))?;
    ensure(exe_after == exe, || {
        format!("exe {} -> {}", exe.display(), exe_after.display())
    })
}

/// umask: a random value kept; new files get it applied.
pub fn umask(test: &mut Test) -> Result<(), String> {
    let mask = (random_u64() as libc::mode_t & 0o077) | 0o002;
    // SAFETY: umask takes and returns a mode.
    unsafe { libc::umask(mask) };
    test.ready();
    test.wait_for_term();
    // SAFETY: as above; put the value back at once.
    let after = unsafe { libc::umask(mask) };
    ensure(after == mask, || format!("umask {after:o}, was {mask:o}"))?;
    let path = test.path("umask.file");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path);
    let metadata = file
        .and_then(|file| file.metadata())
        .map_err(|error| format!("create {}: {error}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    // std creates files with mode 0o666 before the umask.
    ensure(mode == 0o666 & !mask, || {
        format!("new file mode {mode:o}, expected {:o}", 0o666 & !mask)
    })
}

fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    crust_zdtm::procfs::parse_key_values(&status)
        .get("CapEff")
        .and_then(|caps| u64::from_str_radix(caps, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Resource limits with random soft values, lowered hard limits (and a raised RTPRIO hard
/// limit where CAP_SYS_RESOURCE allows).
pub fn rlimits(test: &mut Test) -> Result<(), String> {
    let resources = [
        libc::RLIMIT_NOFILE,
        libc::RLIMIT_CORE,
        libc::RLIMIT_MSGQUEUE,
        libc::RLIMIT_NICE,
        libc::RLIMIT_RTPRIO,
        libc::RLIMIT_SIGPENDING,
        libc::RLIMIT_LOCKS,
        libc::RLIMIT_CPU,
    ];
    let mut expected = Vec::new();
    for resource in resources {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct on our stack.
        unsafe { libc::getrlimit(resource, &mut limit) };
        let random = random_u64();
        if resource == libc::RLIMIT_RTPRIO && has_cap_sys_resource() {
            limit.rlim_max = limit.rlim_max.max(10 + random % 80);
        } else if limit.rlim_max == libc::RLIM_INFINITY {
            limit.rlim_max = 1_000_000 + random % 1_000_000;
        } else if limit.rlim_max > 100_000 {
            limit.rlim_max -= random % 1000;
        }
        // Keep the process workable: enough fds, and CPU seconds it will never reach.
        let floor = match resource {
            libc::RLIMIT_NOFILE => 64,
            libc::RLIMIT_CPU => 100_000,
            _ => 0,
        }
        .min(limit.rlim_max);
        limit.rlim_cur = floor + (random >> 20) % (limit.rlim_max - floor + 1);
        // SAFETY: setrlimit reads the struct on our stack.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(format!(
                "setrlimit {resource}: {}",
                std::io::Error::last_os_error()
            ));
        }
        expected.push((resource, limit.rlim_cur, limit.rlim_max));
    }
    test.ready();
    test.wait_for_term();
    for (resource, soft, hard) in expected {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        unsafe { libc::getrlimit(resource, &mut limit) };
        ensure(limit.rlim_cur == soft && limit.rlim_max == hard, || {
            format!(
                "rlimit {resource}: {}/{}, was {soft}/{hard}",
                limit.rlim_cur, limit.rlim_max
            )
        })?;
    }
    Ok(())
}

/// A random process name (comm) set with PR_SET_NAME.
pub fn comm(test: &mut Test) -> Result<(), String> {
    let name = format!("zd-{:012x}", random_u64() >> 16);
    let c_name = std::ffi::CString::new(name.clone()).map_err(|error| error.to_string())?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c_name.as_ptr()) };
    test.ready();
    test.wait_for_term();
    let mut buffer = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer.
    unsafe { libc::prctl(libc::PR_GET_NAME, buffer.as_mut_ptr()) };
    let got =
        String::from_utf8_lossy(buffer.split(|byte| *byte == 0).next().unwrap_or(&[])).into_owned();
    ensure(got == name, || format!("PR_GET_NAME {got:?}, was {name:?}"))?;
    let comm = std::fs::read_to_string("/proc/self/comm")
        .map_err(|error| format!("read comm: {error}"))?;
    ensure(comm.trim_end() == name, || {
        format!("/proc/self/comm {comm:?}, was {name:?}")
    })
}

/// The demo's counter: `count N` appended to `<outdir>/counter.log` every ~100 ms.
pub fn counter(test: &mut Test) -> Result<(), String> {
    let path = test.path("counter.log");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|error| format!("open {}: {error}", path.display()))?;
    let mut count: u64 = 0;
    test.ready();
    while !test.term_requested() {
        count += 1;
        writeln!(log, "count {count}").map_err(|error| format!("append: {error}"))?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// Credentials as root: random supplementary groups and a random subset of capabilities dropped from the effective,
/// permitted, inheritable and bounding sets.
pub fn caps_ids(test: &mut Test) -> Result<(), String> {
    let groups: Vec<libc::gid_t> = (0..1 + random_u64() % 6)
        .map(|_| 1000 + (random_u64() % 50000) as u32)
        .collect();
    // The gids stay: with other ids than the dumper's, reading the task's rlimits
    // (prlimit) takes CAP_SYS_RESOURCE, which a container may not grant.
    // SAFETY: setgroups reads `groups.len()` gids.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(format!("setgroups: {}", std::io::Error::last_os_error()));
    }
    // Drop capabilities the rest of the test does not need. Keep CAP_DAC_OVERRIDE (1),
    // CAP_DAC_READ_SEARCH (2) and CAP_FOWNER (3): the verdict is written as root into a
    // directory that may be group-owned by the old gid.
    let droppable: Vec<u32> = (5..38).filter(|cap| *cap != 21).collect();
    let mut dropped = Vec::new();
    let bits = random_u64();
    for (index, cap) in droppable.iter().enumerate() {
        if bits & (1 << index) != 0 {
            dropped.push(*cap);
        }
    }
    for cap in &dropped {
        // SAFETY: PR_CAPBSET_DROP takes an integer.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0) };
    }
    let (mut effective, mut permitted, mut inheritable) = read_caps()?;
    let mask: u64 = dropped.iter().fold(0, |mask, cap| mask | (1 << cap));
    effective &= !mask;
    permitted &= !mask;
    inheritable = (inheritable | (permitted & 0b1110)) & !mask;
    write_caps(effective, permitted, inheritable)?;
    let before = read_caps()?;
    let status_before =
        std::fs::read_to_string("/proc/self/status").map_err(|error| error.to_string())?;
    let bounding_before = crust_zdtm::procfs::parse_key_values(&status_before)
        .get("CapBnd")
        .cloned();
    test.ready();
    test.wait_for_term();
    let after = read_caps()?;
    ensure(after == before, || {
        format!("capabilities (eff, prm, inh) {after:x?}, were {before:x?}")
    })?;
    let status_after =
        std::fs::read_to_string("/proc/self/status").map_err(|error| error.to_string())?;
    let bounding_after = crust_zdtm::procfs::parse_key_values(&status_after)
        .get("CapBnd")
        .cloned();
    ensure(bounding_after == bounding_before, || {
        format!("CapBnd {bounding_after:?}, was {bounding_before:?}")
    })?;
    let mut now = vec![0 as libc::gid_t; 64];
    // SAFETY: getgroups writes at most 64 gids into the buffer.
    let count = unsafe { libc::getgroups(64, now.as_mut_ptr()) };
    now.truncate(count.max(0) as usize);
    let mut expected = groups.clone();
    expected.sort_unstable();
    expected.dedup();
    now.sort_unstable();
    ensure(now == expected, || {
        format!("groups {now:?}, were {expected:?}")
    })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capget(2)`: (effective, permitted, inheritable) as 64-bit masks.
#[doc(alias = "capget")]
fn read_caps() -> Result<(u64, u64, u64), String> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes one header and two data structs, all on our stack.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// `capset(2)` from 64-bit masks.
#[doc(alias = "capset")]
fn write_caps(effective: u64, permitted: u64, inheritable: u64) -> Result<(), String> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: as in read_caps; capset only reads the data.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// prctl state: no_new_privs, child subreaper, THP disabled. (No timer slack: CRIU keeps
/// none. No
/// parent-death signal: with `restore -d` the restorer is the parent for a moment and its
/// exit would fire it.)
pub fn prctl_flags(test: &mut Test) -> Result<(), String> {
    // SAFETY: prctl setters with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    test.ready();
    test.wait_for_term();
    let mut subreaper: libc::c_int = 0;
    // SAFETY: getters write one int through the pointer, or return the value.
    let (no_new_privs, thp_disabled) = unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut subreaper as *mut libc::c_int,
            0,
            0,
            0,
        );
        (
            libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0),
        )
    };
    ensure(no_new_privs == 1, || "no_new_privs lost".into())?;
    ensure(subreaper == 1, || "child subreaper flag lost".into())?;
    ensure(thp_disabled == 1, || "THP disable lost".into())
}

/// A time namespace of the tree's own: the test enters a new one whose CLOCK_MONOTONIC
/// and CLOCK_BOOTTIME run 1000 s and 2000 s ahead of crust's. After the restore its
/// clocks carry on from the dump's values: never behind what it read before the dump
/// (a restore into crust's time namespace puts them 1000 s and 2000 s back), and ahead
/// of them by no more than the wall-clock time that passed.
pub fn timens_monotonic(test: &mut Test) -> Result<(), String> {
    const NEWTIME: libc::c_int = libc::CLONE_NEWTIME;
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(NEWTIME) } != 0 {
        return Err(format!("unshare(CLONE_NEWTIME): {}", std::io::Error::last_os_error()));
    }
    std::fs::write("/proc/self/timens_offsets", "monotonic 1000 0\nboottime 2000 0\n").map_err(|e| format!("write timens_offsets: {e}"))?;
    let namespace = std::fs::File::open("/proc/self/ns/time_for_children").map_err(|e| format!("open time_for_children: {e}"))?;
    // SAFETY: setns takes an fd this function holds open and a flag.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&namespace), NEWTIME) } != 0 {
        return Err(format!("setns(time_for_children): {}", std::io::Error::last_os_error()));
    }
    drop(namespace);
    let now = |clock: libc::clockid_t| -> f64 {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec into `t`.
        unsafe { libc::clock_gettime(clock, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    };
    let clocks = || (now(libc::CLOCK_MONOTONIC), now(libc::CLOCK_BOOTTIME), now(libc::CLOCK_REALTIME));
    let (monotonic, boottime, realtime) = clocks();
    test.ready();
    test.wait_for_term();
    let (monotonic_after, boottime_after, realtime_after) = clocks();
    let passed = realtime_after - realtime;
    for (name, before, after) in [("CLOCK_MONOTONIC", monotonic, monotonic_after), ("CLOCK_BOOTTIME", boottime, boottime_after)] {
        ensure(after >= before, || format!("{name} went back from {before:.3} to {after:.3}"))?;
        // A little slack: the clocks are read one after the other.
        ensure(after - before <= passed + 0.05, || {
            format!("{name} moved {:.3} s while {passed:.3} s of wall-clock time passed", after - before)
        })?;
    }
    Ok(())
}
