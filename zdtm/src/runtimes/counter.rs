//! The counting containers' programs and what their logs must show after a checkpoint
//! and restore. Pure: the scripts are text, the checks read log text.
//!
//! A counter appends `1`, `2`, `3`, ... to a log file, one line per step, from a shell
//! variable. Only a real restore continues it from the value the dump froze: a container
//! started again would count from 1, and one restored from other images would jump.

/// The script of a counting container: a random number of short-lived processes first
/// (so the sleeper's pid inside is not a constant), a long-lived sleeper, then the
/// counter appending to `log` every 0.2 s.
pub fn counting_script(log: &str) -> String {
    format!(
        "n=$((${{RANDOM:-7}} % 16)); while [ $n -gt 0 ]; do /bin/true; n=$((n-1)); done; \
         sleep 100000 & \
         i=0; while :; do i=$((i+1)); echo $i >> {log}; sleep 0.2; done"
    )
}

/// The script of a container whose two processes talk over loopback TCP: a server (its
/// stdin a pipe that never ends, so it never half-closes) writes what it receives to
/// `log`; the client sends the count. The client retries until the server listens;
/// a retry starts from 1 again, and only the connection that got through writes to the
/// log.
pub fn tcp_script(log: &str, port: u16) -> String {
    format!(
        "sleep 100000 | nc -l -p {port} > {log} & \
         while :; do i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done | nc 127.0.0.1 {port}; sleep 0.1; done"
    )
}

/// The numbers of a log, one per complete line (a last line without its newline is
/// being written and is left out).
pub fn values(text: &str) -> Result<Vec<u64>, String> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .map(|(index, line)| line.trim().parse::<u64>().map_err(|_| format!("log line {}: {line:?} is not a count", index + 1)))
        .collect()
}

/// Checks a log read after a restore. `cut` is how many lines the log had when the
/// checkpointed container was gone (killed by the checkpoint, or stopped after a
/// `--leave-running` one); the dumped count lies in `low..=high` (read just before and
/// just after the checkpoint; equal when the checkpoint stopped the container). The
/// lines before `cut` must count 1, 2, 3, ... without a gap; the lines after it must go
/// on from the dumped count (the first is `dumped + 1`, so in `low + 1..=high + 1`)
/// without a gap, and there must be at least `more` of them.
pub fn check_continues(log: &[u64], cut: usize, low: u64, high: u64, more: usize) -> Result<(), String> {
    if cut > log.len() {
        return Err(format!("the log shrank from {cut} lines to {}", log.len()));
    }
    let (before, after) = log.split_at(cut);
    check_steps(before, 1).map_err(|why| format!("before the checkpoint: {why}"))?;
    let Some(&first) = after.first() else {
        return Err(format!("no count after the restore (the log ends at {:?})", before.last()));
    };
    if first == 1 {
        return Err(format!("the count started again from 1 after the restore (dumped at {low}..={high}): not restored"));
    }
    if first < low + 1 || first > high + 1 {
        return Err(format!("the count went on from {first} after the restore, not from the dumped {}", dumped_range(low, high)));
    }
    check_steps(after, first).map_err(|why| format!("after the restore: {why}"))?;
    if after.len() < more {
        return Err(format!("only {} counts after the restore, waited for {more}", after.len()));
    }
    Ok(())
}

/// The log of a container never stopped: 1, 2, 3, ... without a gap.
pub fn check_counting(log: &[u64]) -> Result<(), String> {
    check_steps(log, 1)
}

/// `values` count up by one from `start`.
fn check_steps(values: &[u64], start: u64) -> Result<(), String> {
    let mut expected = start;
    for (index, value) in values.iter().enumerate() {
        if *value != expected {
            return Err(format!("count {value} at position {} where {expected} was due", index + 1));
        }
        expected += 1;
    }
    Ok(())
}

fn dumped_range(low: u64, high: u64) -> String {
    if low == high {
        format!("{} + 1", low)
    } else {
        format!("{low}..={high} + 1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_leave_out_a_line_being_written() {
        assert_eq!(values("1\n2\n3").unwrap(), [1, 2]);
        assert_eq!(values("1\n2\n").unwrap(), [1, 2]);
        assert_eq!(values("").unwrap(), Vec::<u64>::new());
        assert_eq!(values("1\nx\n").unwrap_err(), "log line 2: \"x\" is not a count");
    }

    #[test]
    fn a_restored_counter_goes_on_from_the_dumped_count() {
        let log = [1, 2, 3, 4, 5, 6, 7];
        assert_eq!(check_continues(&log, 4, 4, 4, 3), Ok(()));
        // --leave-running: the original went on to 6 before it was stopped; the dump
        // froze it somewhere in 3..=4.
        let log = [1, 2, 3, 4, 5, 6, 4, 5, 6, 7];
        assert_eq!(check_continues(&log, 6, 3, 4, 2), Ok(()));
    }

    #[test]
    fn a_counter_started_again_or_resumed_elsewhere_fails() {
        let again = [1, 2, 3, 4, 1, 2, 3];
        assert!(check_continues(&again, 4, 4, 4, 1).unwrap_err().contains("started again from 1"));
        let jumped = [1, 2, 3, 4, 9, 10];
        assert_eq!(
            check_continues(&jumped, 4, 4, 4, 1).unwrap_err(),
            "the count went on from 9 after the restore, not from the dumped 4 + 1"
        );
        let gap = [1, 2, 3, 4, 5, 7];
        assert_eq!(check_continues(&gap, 4, 4, 4, 1).unwrap_err(), "after the restore: count 7 at position 2 where 6 was due");
        assert!(check_continues(&[1, 2, 3, 4], 4, 4, 4, 1).unwrap_err().starts_with("no count after the restore"));
        assert_eq!(check_continues(&[1, 3, 4, 5], 2, 3, 3, 1).unwrap_err(), "before the checkpoint: count 3 at position 2 where 2 was due");
        assert_eq!(check_continues(&[1, 2, 3, 4, 5], 3, 3, 3, 3).unwrap_err(), "only 2 counts after the restore, waited for 3");
    }

    #[test]
    fn scripts_name_their_log() {
        assert!(counting_script("/data/log").contains("echo $i >> /data/log"));
        assert!(tcp_script("/log", 7000).contains("nc -l -p 7000 > /log"));
    }
}
