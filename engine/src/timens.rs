//! Time namespaces, restore half (the dump half is `timens-ID.img`, written with the
//! other per-dump images in `dump/write.rs` from crust's clocks and the tree's
//! `/proc/PID/timens_offsets`): the restored root, single-threaded and before anything
//! else of the tree runs, makes a new time namespace whose offsets put
//! CLOCK_MONOTONIC and CLOCK_BOOTTIME where they were at dump, and enters it; every
//! process and thread it forks or clones is in it.
//!
//! Invariant: imports no pipeline.

use std::io;

use crust_images::pb;

use crate::procfs;

/// The offsets (each `dumped - now`, nanoseconds in 0..1e9) that make a new time
/// namespace's clocks carry on from `dumped`, given crust's clocks `now`. Pure.
pub(crate) fn offsets_from(dumped: &pb::TimensEntry, now: procfs::TimensOffsets) -> procfs::TimensOffsets {
    let value = |t: &pb::Timespec| (t.tv_sec as i64, t.tv_nsec as i64);
    procfs::TimensOffsets {
        monotonic: procfs::sub_time(value(&dumped.monotonic), now.monotonic),
        boottime: procfs::sub_time(value(&dumped.boottime), now.boottime),
    }
}

/// The text /proc/self/timens_offsets takes for `offsets`. Pure.
pub(crate) fn offsets_text(offsets: &procfs::TimensOffsets) -> String {
    format!(
        "monotonic {} {}\nboottime {} {}\n",
        offsets.monotonic.0, offsets.monotonic.1, offsets.boottime.0, offsets.boottime.1
    )
}

/// Makes the calling (single-threaded) process's new time namespace with the dump's
/// clocks and enters it: `unshare(CLONE_NEWTIME)`, the offsets into
/// `/proc/self/timens_offsets` (possible only before any task is in it), then
/// `setns(/proc/self/ns/time_for_children)`.
pub(crate) fn enter_new(dumped: &pb::TimensEntry) -> io::Result<procfs::TimensOffsets> {
    crate::sys::process::new_time_namespace_for_children()?;
    let clock = |id| nix::time::clock_gettime(id).map(|t| (t.tv_sec() as i64, t.tv_nsec() as i64)).map_err(io::Error::from);
    let now = procfs::TimensOffsets { monotonic: clock(nix::time::ClockId::CLOCK_MONOTONIC)?, boottime: clock(nix::time::ClockId::CLOCK_BOOTTIME)? };
    let offsets = offsets_from(dumped, now);
    std::fs::write("/proc/self/timens_offsets", offsets_text(&offsets))
        .map_err(|e| io::Error::new(e.kind(), format!("write /proc/self/timens_offsets: {e}")))?;
    crate::sys::process::enter_time_namespace_for_children()?;
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_carry_the_clocks_on_from_the_dump() {
        let dumped = pb::TimensEntry {
            monotonic: pb::Timespec { tv_sec: 2139, tv_nsec: 100 },
            boottime: pb::Timespec { tv_sec: 50, tv_nsec: 900_000_000 },
        };
        let now = procfs::TimensOffsets { monotonic: (1200, 200), boottime: (60, 100_000_000) };
        let offsets = offsets_from(&dumped, now);
        assert_eq!(offsets.monotonic, (938, 999_999_900));
        assert_eq!(offsets.boottime, (-10, 800_000_000));
        assert_eq!(offsets_text(&offsets), "monotonic 938 999999900\nboottime -10 800000000\n");
    }
}
