//! End-to-end checks of `crust dump` and `crust restore` on a real C process: a fault
//! injected after every dump step leaves the target running unchanged, and a dump and
//! restore bring back the same process (same pid, same memory, still responding).

mod common;

use std::path::Path;

use common::{compile, crust, signal, skip_reason, subreaper, tempdir, wait_exit};

fn build_target(dir: &Path) -> std::path::PathBuf {
    compile(dir, "pattern", &[])
}

/// Starts the pattern target (`out`, `mib` MiB) and waits until it is ready.
fn start_target(binary: &Path, out: &Path, mib: u32) -> i32 {
    let mut command = std::process::Command::new(binary);
    command.arg(out).arg(mib.to_string());
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    assert_eq!(text.trim(), child.id().to_string(), "target wrote its pid");
    child.id() as i32
}

fn state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn failed_dump_leaves_target_running_unchanged() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("fault");
    let binary = build_target(&dir);
    for step in ["seize", "collect", "parasite", "memory", "files", "images", "pages"] {
        let out = dir.join(format!("{step}.out"));
        let pid = start_target(&binary, &out, 16);
        let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let output = crust()
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(dir.join(format!("img-{step}")))
            .args(["--fault-inject", step])
            .output()
            .unwrap();
        assert!(!output.status.success(), "dump with a fault after {step} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("fault injected after step {step}")), "{stderr}");
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(), maps_before, "maps after {step}");
        assert!(!state(pid).contains("stopped") && !state(pid).contains("tracing"), "{step}: {}", state(pid));
        signal(pid, libc::SIGUSR1);
        let status = wait_exit(pid);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n", "after a fault at {step}");
        assert_eq!(status, 0);
    }
}

#[test]
fn dump_and_restore_keep_pid_and_memory() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("roundtrip");
    let binary = build_target(&dir);
    let out = dir.join("roundtrip.out");
    let pid = start_target(&binary, &out, 64);
    let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let images = dir.join("img");
    let status = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["-o", "dump.log", "-v4"]).status().unwrap();
    assert!(status.success(), "dump: {}", std::fs::read_to_string(images.join("dump.log")).unwrap_or_default());
    // The target is gone (killed by the dump): reap it so its pid is free.
    let killed = wait_exit(pid);
    assert!(libc::WIFSIGNALED(killed) && libc::WTERMSIG(killed) == libc::SIGKILL, "target killed by the dump");
    let status = crust().args(["restore", "-d", "-D"]).arg(&images).args(["-o", "restore.log", "-v4"]).status().unwrap();
    assert!(status.success(), "restore: {}", std::fs::read_to_string(images.join("restore.log")).unwrap_or_default());
    let maps_after = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert_eq!(merge_maps(&maps_after), merge_maps(&maps_before));
    signal(pid, libc::SIGUSR1);
    let status = wait_exit(pid);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

/// maps with adjacent lines of identical properties merged (the kernel merges such
/// areas when they are mapped again one by one).
fn merge_maps(text: &str) -> Vec<String> {
    let mut out: Vec<(u64, u64, String)> = Vec::new();
    for line in text.lines() {
        let (range, rest) = line.split_once(' ').unwrap();
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let props: String = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(last) = out.last_mut() {
            if last.1 == start && last.2 == props && props.split(' ').nth(3) == Some("0") {
                last.1 = end;
                continue;
            }
        }
        out.push((start, end, props));
    }
    out.into_iter().map(|(s, e, p)| format!("{s:x}-{e:x} {p}")).collect()
}


/// A file the dump names but that is gone at restore time (here the program's own
/// binary) is a one-line error naming it, a non-zero exit, and nothing left running;
/// once the file is back, the same images restore.
#[test]
fn restore_names_a_missing_file_and_leaves_nothing() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("missing");
    let binary = build_target(&dir);
    let out = dir.join("missing.out");
    let pid = start_target(&binary, &out, 4);
    let images = dir.join("img");
    let status = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).status().unwrap();
    assert!(status.success(), "dump");
    wait_exit(pid);
    let away = dir.join("pattern.away");
    std::fs::rename(&binary, &away).unwrap();
    let output = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "restore without the binary succeeded");
    assert!(stderr.contains(&binary.display().to_string()), "the error names the missing file: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing left of pid {pid} after the failed restore");
    std::fs::rename(&away, &binary).unwrap();
    let status = crust().args(["restore", "-d", "-D"]).arg(&images).status().unwrap();
    assert!(status.success(), "restore once the file is back");
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
}

/// Where a signals test holds crust (`--fault-inject hold:POINT`) and the step it then
/// fails at: every step of a dump, and inside the parasite (the leader running its
/// program, then every thread running one).
const HELD_FAULTS: &[(&str, &str)] = &[
    ("seize", "seize"),
    ("collect", "collect"),
    ("parasite-leader", "parasite"),
    ("parasite-threads", "parasite"),
    ("parasite", "parasite"),
    ("memory", "memory"),
    ("files", "files"),
    ("images", "images"),
    ("pages", "pages"),
];

/// Starts one round's signals program (its report in `round-N.out`, its FIFO
/// `round-N.fifo`) and waits until both its threads sleep where they wait (the main
/// thread in its read()): the report path, the FIFO, the pid, the second thread's tid,
/// the guard.
fn start_round(dir: &std::path::Path, binary: &std::path::Path, round: usize, what: &str) -> (std::path::PathBuf, std::path::PathBuf, i32, i32, common::KillOnDrop) {
    let out = dir.join(format!("round-{round}.out"));
    let fifo = dir.join(format!("round-{round}.fifo"));
    let fifo_c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut command = std::process::Command::new(binary);
    command.arg(&out).arg(&fifo);
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    let guard = common::KillOnDrop(child.id() as i32);
    let ids: Vec<i32> = text.split_whitespace().map(|w| w.parse().unwrap()).collect();
    let (pid, second) = (ids[0], ids[1]);
    wait_handled(pid, &[pid, second], what);
    (out, fifo, pid, second, guard)
}

/// Signals sent while crust holds the target at each step of a dump that then fails
/// reach the target exactly as they do without crust: each once, with the sender's
/// siginfo (si_code, si_pid, si_value), to the thread it was meant for, interrupting
/// the syscall that thread waits in; the threads' masks and tracer as before. The first
/// round runs without crust and must give the same record.
#[test]
fn signals_sent_while_a_failing_dump_holds_the_target_arrive_as_without_it() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("signals");
    let binary = compile(&dir, "signals", &["-lpthread"]);
    let rounds = std::iter::once(None).chain(HELD_FAULTS.iter().map(Some));
    for (round, held) in rounds.enumerate() {
        let what = held.map_or("without crust".to_string(), |(point, step)| format!("held at {point}, failing at {step}"));
        let (out, fifo, pid, second, mut guard) = start_round(&dir, &binary, round, &what);
        let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let masks_before = [thread_field(pid, pid, "SigBlk:"), thread_field(pid, second, "SigBlk:")];
        let crust_run = held.map(|(point, step)| start_held(pid, &dir.join(format!("img-{round}")), point, step));
        send_the_signals(pid, second);
        if let Some((mut child, mut stderr)) = crust_run {
            drop(child.stdin.take());
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
            let status = child.wait().unwrap();
            assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(), maps_before, "{what}: maps");
            let step = held.unwrap().1;
            assert!(!status.success(), "{what}: the dump must fail");
            assert!(rest.contains(&format!("fault injected after step {step}")), "{what}: {rest}");
            for tid in [pid, second] {
                assert_eq!(thread_field(pid, tid, "TracerPid:"), "0", "{what}: tid {tid} still traced");
            }
            assert_eq!([thread_field(pid, pid, "SigBlk:"), thread_field(pid, second, "SigBlk:")], masks_before, "{what}: masks");
        }
        wait_handled(pid, &[pid, second], &what);
        std::fs::write(&fifo, "report\n").unwrap();
        let status = wait_exit(pid);
        guard.disarm();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{what}: target status {status:#x}");
        let record = std::fs::read_to_string(&out).unwrap();
        assert_eq!(sorted_record(&record), expected_record(), "{what}: the target's record:\n{record}");
    }
}

/// What `signals.c` sends itself: SIGUSR1 with kill(), SIGRTMIN+3 twice with sigqueue()
/// (values 11 and 22), and SIGUSR2 with tgkill() to the second thread.
fn send_the_signals(pid: i32, second: i32) {
    // SAFETY: no pointers but the sigval, passed by value.
    unsafe {
        assert_eq!(libc::kill(pid, libc::SIGUSR1), 0);
        for value in [11usize, 22] {
            let sigval = libc::sigval { sival_ptr: value as *mut libc::c_void };
            assert_eq!(libc::sigqueue(pid, libc::SIGRTMIN() + 3, sigval), 0);
        }
        assert_eq!(libc::syscall(libc::SYS_tgkill, pid, second, libc::SIGUSR2), 0);
    }
}

/// The record `signals.c` must write: every signal once with the test's siginfo, on
/// its thread (0 main, 1 second), ordered by signal number (a thread handles pending
/// signals of different numbers in an order of the kernel's), the real-time ones in
/// the order they were queued; the main thread's read() interrupted.
fn expected_record() -> Vec<String> {
    let me = std::process::id();
    let rt = libc::SIGRTMIN() + 3;
    vec![
        format!("{} 0 {me} 0 0", libc::SIGUSR1),
        format!("{} {} {me} 0 1", libc::SIGUSR2, libc::SI_TKILL),
        format!("{rt} {} {me} 11 0", libc::SI_QUEUE),
        format!("{rt} {} {me} 22 0", libc::SI_QUEUE),
        "interrupted 1".to_string(),
    ]
}

/// The record's signal lines sorted by signal number (stable), then its last line.
fn sorted_record(record: &str) -> Vec<String> {
    let mut lines: Vec<String> = record.lines().map(str::to_string).collect();
    let last = lines.pop().unwrap_or_default();
    lines.sort_by_key(|line| line.split(' ').next().and_then(|n| n.parse::<i32>().ok()).unwrap_or(0));
    lines.push(last);
    lines
}

/// A field of /proc/PID/task/TID/status.
fn thread_field(pid: i32, tid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// A SIGSTOP sent while crust holds the target at each step of a dump that then fails
/// stops the target as it would have without crust: once crust is gone every thread is
/// stopped and untraced, and after SIGCONT the SIGUSR1 sent with the SIGSTOP reaches the
/// main thread once, with its siginfo, interrupting its read().
#[test]
fn a_stop_sent_while_a_failing_dump_holds_the_target_stops_it_as_without_it() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("stop");
    let binary = compile(&dir, "signals", &["-lpthread"]);
    let rounds = std::iter::once(None).chain(HELD_FAULTS.iter().map(Some));
    for (round, held) in rounds.enumerate() {
        let what = held.map_or("without crust".to_string(), |(point, step)| format!("held at {point}, failing at {step}"));
        let (out, fifo, pid, second, mut guard) = start_round(&dir, &binary, round, &what);
        let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let crust_run = held.map(|(point, step)| start_held(pid, &dir.join(format!("img-{round}")), point, step));
        signal(pid, libc::SIGUSR1);
        signal(pid, libc::SIGSTOP);
        if let Some((mut child, mut stderr)) = crust_run {
            drop(child.stdin.take());
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
            let status = child.wait().unwrap();
            assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(), maps_before, "{what}: maps");
            assert!(!status.success(), "{what}: the dump must fail: {rest}");
        }
        for tid in [pid, second] {
            wait_for_state(pid, tid, 'T', &what);
            assert_eq!(thread_field(pid, tid, "TracerPid:"), "0", "{what}: tid {tid} still traced");
        }
        signal(pid, libc::SIGCONT);
        wait_handled(pid, &[pid, second], &what);
        std::fs::write(&fifo, "report\n").unwrap();
        let status = wait_exit(pid);
        guard.disarm();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{what}: target status {status:#x}");
        let record = std::fs::read_to_string(&out).unwrap();
        let me = std::process::id();
        assert_eq!(record, format!("{} 0 {me} 0 0\ninterrupted 1\n", libc::SIGUSR1), "{what}: the target's record");
    }
}

/// `crust dump` of `pid` held at `point` and failing at `step`, once it says it is held.
fn start_held(pid: i32, images: &Path, point: &str, step: &str) -> (std::process::Child, std::io::BufReader<std::process::ChildStderr>) {
    let mut child = crust()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(images)
        .args(["-o", "dump.log", "-v4", "--fault-inject", step, "--fault-inject", &format!("hold:{point}")])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let wanted = format!("crust: held at {point} until stdin closes");
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "held at {point}: crust never held: {said}");
        if line.trim_end() == wanted {
            return (child, stderr);
        }
        said.push_str(&line);
    }
}

/// Waits (on /proc, for a state the kernel sets once the signal is taken) until the
/// thread's state letter is `state`; fails after 10 s.
fn wait_for_state(pid: i32, tid: i32, state: char, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = thread_field(pid, tid, "State:");
        if now.starts_with(state) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: tid {tid} is {now}, not {state}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Waits until every signal sent to the target was taken and its handler ran: nothing
/// pending in `tids` (their own queues and the process's) and each asleep again (in its
/// read() or pause(), where a handler returns to); fails after 10 s.
fn wait_handled(pid: i32, tids: &[i32], what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let settled = tids.iter().all(|&tid| {
            let zero = |key| thread_field(pid, tid, key).trim_start_matches('0').is_empty();
            zero("SigPnd:") && zero("ShdPnd:") && thread_field(pid, tid, "State:").starts_with('S')
        });
        if settled {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: signals still pending or threads busy after 10 s");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A target stopped (SIGSTOP) before a dump stays stopped through it, whether the dump
/// fails at a step or succeeds with `--leave-running`, and its parent (this test) hears
/// of no continue and of no new stop; after SIGCONT it takes a SIGUSR1 as usual.
#[test]
fn a_stopped_target_stays_stopped_and_its_parent_hears_nothing() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("stopped");
    let binary = compile(&dir, "signals", &["-lpthread"]);
    let rounds = HELD_FAULTS.iter().map(|&(point, step)| Some((point, step))).chain(std::iter::once(None));
    for (round, held) in rounds.enumerate() {
        let what = held.map_or("a --leave-running dump".to_string(), |(point, step)| format!("held at {point}, failing at {step}"));
        let out = dir.join(format!("round-{round}.out"));
        let fifo = dir.join(format!("round-{round}.fifo"));
        let fifo_c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0, "mkfifo");
        let mut command = std::process::Command::new(&binary);
        command.arg(&out).arg(&fifo);
        let (child, text, _) = common::start_with_pipes(&mut command, 0);
        let mut guard = common::KillOnDrop(child.id() as i32);
        let ids: Vec<i32> = text.split_whitespace().map(|w| w.parse().unwrap()).collect();
        let (pid, second) = (ids[0], ids[1]);
        wait_handled(pid, &[pid, second], &what);
        signal(pid, libc::SIGSTOP);
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) }, pid, "{what}: the stop's report");
        assert!(libc::WIFSTOPPED(status), "{what}: stopped first");
        let images = dir.join(format!("img-{round}"));
        match held {
            Some((point, step)) => {
                let (mut child, mut stderr) = start_held(pid, &images, point, step);
                drop(child.stdin.take());
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
                assert!(!child.wait().unwrap().success(), "{what}: the dump must fail: {rest}");
            }
            None => {
                let output = crust().args(["dump", "-t", &pid.to_string(), "--leave-running", "-D"]).arg(&images).output().unwrap();
                assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
        for tid in [pid, second] {
            wait_for_state(pid, tid, 'T', &what);
            assert_eq!(thread_field(pid, tid, "TracerPid:"), "0", "{what}: tid {tid} still traced");
        }
        // SAFETY: status is a valid out-pointer.
        let reported = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::WCONTINUED | libc::WNOHANG) };
        assert_eq!(reported, 0, "{what}: the parent was told of a change (status {status:#x})");
        signal(pid, libc::SIGCONT);
        signal(pid, libc::SIGUSR1);
        wait_handled(pid, &[pid, second], &what);
        std::fs::write(&fifo, "report\n").unwrap();
        let ended = loop {
            // SAFETY: status is a valid out-pointer.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                break status;
            }
        };
        guard.disarm();
        assert!(libc::WIFEXITED(ended) && libc::WEXITSTATUS(ended) == 0, "{what}: target status {ended:#x}");
        let me = std::process::id();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), format!("{} 0 {me} 0 0\ninterrupted 1\n", libc::SIGUSR1), "{what}: the target's record");
    }
}
