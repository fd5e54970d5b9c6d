//! Test support: the image fixtures of `images/tests/` loaded as a restore would load
//! them, and host layouts as each architecture's machine would show them, so planning
//! is tested (and its op programs snapshotted) for every architecture on any host.

use std::path::PathBuf;

use crust_images::pb;

use crate::model::vma as vs;
use crate::restore::images::{self, Images};
use crate::restore::layout::{HostLayout, OwnCreds};

/// A dump under `images/tests/` (`criu-fixtures/threads`, `fixtures/s390x-dump`, ...).
pub(crate) fn fixture_dir(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../images/tests").join(path)
}

/// The images of a fixture dump, with 4 KiB pages.
pub(crate) fn load(path: &str) -> Images {
    images::load(&fixture_dir(path), 4096).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A tree of two processes from CRIU's `threads` dump (12122, with threads 12122 and
/// 12124): the process and a child 12200 forked from it (same areas, one thread).
pub(crate) fn parent_and_child() -> Images {
    let mut images = load("criu-fixtures/threads");
    let mut child = images.processes[0].clone();
    child.pstree = pb::PstreeEntry { pid: 12200, ppid: 12122, pgid: child.pstree.pgid, sid: child.pstree.sid, threads: vec![12200] };
    child.cores.truncate(1);
    images.processes.push(child);
    images
}

/// A host as the restoring machine would show it: crust's own program, heap, libraries
/// and stack at fixed places below `top` (the architecture's TASK_SIZE), and a vDSO
/// block laid out as the image's (same kernel) but at another address.
pub(crate) fn layout(images: &Images, top: u64) -> HostLayout {
    let mm: &pb::MmEntry = &images.processes.iter().find(|p| !p.is_zombie()).expect("a live process").mm;
    let special: Vec<&pb::VmaEntry> = mm.vmas.iter().filter(|v| v.status & (vs::VDSO | vs::VVAR) != 0).collect();
    // crust's stack 64 GiB below the top, its vDSO block just above it.
    let stack_end = top - (64 << 30);
    let stack = (stack_end - (132 << 10), stack_end);
    let block_base = stack_end + (1 << 20);
    let first = special.iter().map(|v| v.start).min().unwrap_or(0);
    let own_special: Vec<(u64, u64, bool)> =
        special.iter().map(|v| (v.start - first + block_base, v.end - first + block_base, v.status & vs::VDSO != 0)).collect();
    let libs = top / 2;
    let mut own_maps = vec![(0x10_0000_0000, 0x10_0040_0000), (0x10_0100_0000, 0x10_0120_0000), (libs, libs + (8 << 20)), stack];
    own_maps.extend(own_special.iter().map(|&(s, e, _)| (s, e)));
    own_maps.sort_unstable();
    HostLayout {
        page_size: 4096,
        own_maps,
        own_special,
        restorer_code_size: 3000,
        timer_restore_ids: true,
        cpu_itimer_tick_us: 4000,
        own_creds: OwnCreds {
            groups: vec![0],
            cap_prm: (1 << 41) - 1,
            cap_eff: (1 << 41) - 1,
            cap_bnd: (1 << 41) - 1,
            ..Default::default()
        },
        cap_last_cap: 40,
    }
}
