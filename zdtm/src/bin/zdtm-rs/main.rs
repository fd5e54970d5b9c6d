//! `zdtm-rs NAME [ARGS]`: the Rust zdtm test programs, one subcommand each. Every test
//! builds state from randomness, calls `ready`, waits for SIGTERM, then compares the live
//! state with what it recorded before the dump.
//!
//! Unsafe: test programs poke at memory maps, signals and raw syscalls on purpose; each
//! module opts in and says what it touches.
#![deny(unsafe_code)]

mod fds;
mod files;
mod kill;
mod memory;
mod process;
mod registers;
mod signals;

use crust_zdtm::testlib::Test;

/// A test body: prepare, `test.ready()`, wait, verify.
type TestBody = fn(&mut Test) -> Result<(), String>;

const TESTS: &[(&str, TestBody)] = &[
    ("env_args_auxv", process::env_args_auxv),
    ("pid_kept", process::pid_kept),
    ("anon_4k", memory::anon_4k),
    ("anon_64m", memory::anon_64m),
    ("anon_256m", memory::anon_256m),
    ("big_area_shapes", memory::big_area_shapes),
    ("anon_1g", memory::anon_1g),
    ("private_file_cow", memory::private_file_cow),
    ("shared_file", memory::shared_file),
    ("shared_anon", memory::shared_anon),
    ("mapped_deleted_file", memory::mapped_deleted_file),
    ("mremap_moved", memory::mremap_moved),
    ("mprotect_split", memory::mprotect_split),
    ("madvise_flags", memory::madvise_flags),
    ("sigaltstack", signals::sigaltstack),
    ("gpr_asm", registers::gpr_asm),
    ("sleep_nanosleep", signals::sleep_nanosleep),
    ("sleep_poll", signals::sleep_poll),
    ("busy_counter", process::busy_counter),
    ("cwd", files::cwd),
    ("file_offsets", files::file_offsets),
    ("unlinked_file", files::unlinked_file),
    ("rust_std", process::rust_std),
    ("umask", process::umask),
    ("timens_monotonic", process::timens_monotonic),
    ("rlimits", process::rlimits),
    ("comm", process::comm),
    ("caps_ids", process::caps_ids),
    ("prctl_flags", process::prctl_flags),
    ("counter", process::counter),
    ("pipe_data", fds::pipe_data),
    ("fifo_data", fds::fifo_data),
    ("unix_sockets", fds::unix_sockets),
    ("event_fds", fds::event_fds),
    ("inet_sockets", fds::inet_sockets),
    ("file_locks", fds::file_locks),
    ("inotify_watches", fds::inotify_watches),
    ("kill_target", kill::kill_target),
];

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some((name, body)) = TESTS.iter().find(|(test_name, _)| *test_name == name) else {
        eprintln!("usage: zdtm-rs TEST [ARGS]; tests:");
        for (test_name, _) in TESTS {
            eprintln!("  {test_name}");
        }
        std::process::exit(2);
    };
    let mut test = Test::init(name);
    let result = body(&mut test);
    test.finish(result)
}
