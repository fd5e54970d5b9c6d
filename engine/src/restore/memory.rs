//! The memory plan of a restore: which private areas (anonymous, or of a file) are
//! premapped (shared copy-on-write between a parent and a child at dump time, so filled
//! once before the fork), and the System V shared memory attaches to make again. Pure,
//! but for [`segment_sizes`], which asks the IPC namespace once before planning.

use std::collections::{BTreeMap, BTreeSet};

use crust_arch::Abi;
use crust_images::pb;

use crate::model::vma as vs;
use crate::restore::images::{Images, ProcessImages};
use crate::restore::layout::HostLayout;
use crate::restore::plan::PlanError;

/// A private area (anonymous, or a private mapping of a file) shared copy-on-write with a
/// parent or child at dump time: it is filled in a slot of the premap arena before the
/// children are forked, so that they inherit its pages; a child that inherited the slot
/// rewrites only the pages whose contents differ (and every page its parent's slot did
/// not have, which is the file's page or the zero page there), drops the pages it did not
/// have, and so keeps sharing the rest. The restorer moves the slot into place with
/// mremap.
#[derive(Debug)]
pub(crate) struct Premap {
    pub(crate) slot: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// The slot came from the parent through fork (else it is mapped here).
    pub(crate) inherited: bool,
    /// The area's runs of dumped pages: (address, bytes, index of the pages image in
    /// `Plan::page_files`, offset in it).
    pub(crate) runs: Vec<(u64, u64, usize, u64)>,
    /// In an inherited slot: the parent's runs in the area, (address, bytes), which the
    /// slot holds already.
    pub(crate) parent_runs: Vec<(u64, u64)>,
    /// The file a private file area maps, and from which byte (`None`: anonymous).
    pub(crate) file: Option<(PremapFile, u64)>,
    pub(crate) noreserve: bool,
    pub(crate) no_huge: bool,
}

/// Where the file of a premapped private file area comes from in the restored process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PremapFile {
    /// Opened by path (read-only is enough for a private mapping).
    Path(std::path::PathBuf),
    /// The broker's description of this file id (an unlinked file, a memfd).
    Broker(u32),
}

/// Whether an area may be premapped: private memory, anonymous or of a file, that is not
/// a stack or the kernel's, nor locked (mlock populates it writable, so its pages were
/// never shared with a parent; a child does not inherit the lock).
pub(crate) fn premappable(v: &pb::VmaEntry) -> bool {
    v.status & (vs::ANON_PRIVATE | vs::FILE_PRIVATE) != 0
        && v.status & (vs::STACK | vs::VDSO | vs::VVAR | vs::VSYSCALL | vs::SYSVIPC) == 0
        && v.flags as i32 & MAP_TYPE == libc::MAP_PRIVATE
        && v.flags as i32 & (libc::MAP_GROWSDOWN | libc::MAP_LOCKED) == 0
}

/// The map-type bits of mmap's flags.
const MAP_TYPE: i32 = 0x0f;

/// What makes two processes' areas one area shared through fork, as CRIU matches them:
/// the same range, and for a file area the same file and offset.
type AreaKey = (u64, u64, bool, u64, u64);

fn area_key(v: &pb::VmaEntry) -> AreaKey {
    let file = v.status & vs::FILE_PRIVATE != 0;
    if file {
        (v.start, v.end, true, v.shmid, v.pgoff)
    } else {
        (v.start, v.end, false, 0, 0)
    }
}

/// Per process: premapped area start → (slot address, inherited from the parent).
pub(crate) type PremapSlots = BTreeMap<u64, (u64, bool)>;

/// The premap plan of a tree: each process's slots, and the arena's range if any.
pub(crate) type PremapPlan = (Vec<PremapSlots>, Option<(u64, u64)>);

/// The premap arena of the tree: per process, the slot of each premapped area (by its
/// start) and whether it is inherited from the parent; and the arena's range. An area
/// is premapped when the parent or a child has the same area (same range, and for a file
/// the same file and offset: fork left them sharing pages); one that is not inherited
/// gets a slot of its own. A file area gets a slot only where its process has dumped
/// pages in it: without them there is nothing private to share (the file's pages are
/// shared anyway).
pub(crate) fn plan_premaps<A: Abi>(images: &Images, layout: &HostLayout) -> Result<PremapPlan, PlanError> {
    let pid = images.processes[0].pid();
    let page = layout.page_size;
    let live = |p: &ProcessImages| !p.is_zombie();
    let index_of: BTreeMap<u32, usize> = images.processes.iter().enumerate().map(|(i, p)| (p.pstree.pid, i)).collect();
    let has_pages = |p: &ProcessImages, start: u64, end: u64| {
        let at = p.pages.runs.partition_point(|r| r.vaddr + r.bytes <= start);
        p.pages.runs.get(at).is_some_and(|r| r.vaddr < end)
    };
    let ranges = |p: &ProcessImages| -> BTreeSet<AreaKey> { p.mm.vmas.iter().filter(|v| premappable(v)).map(area_key).collect() };
    let all_ranges: Vec<_> = images.processes.iter().map(|p| if live(p) { ranges(p) } else { Default::default() }).collect();
    // Offsets inside the arena first; addresses once its size is known.
    let mut slots: Vec<PremapSlots> = vec![BTreeMap::new(); images.processes.len()];
    let mut arena_len = 0u64;
    for (index, process) in images.processes.iter().enumerate() {
        if !live(process) {
            continue;
        }
        let parent = index_of.get(&process.pstree.ppid).copied().filter(|&i| i < index);
        let children: Vec<usize> = images.processes.iter().enumerate().filter(|(i, c)| *i > index && c.pstree.ppid == process.pstree.pid && live(c)).map(|(i, _)| i).collect();
        for &key in &all_ranges[index] {
            let (start, end, file, _, _) = key;
            let from_parent = parent.and_then(|p| slots[p].get(&start).copied()).filter(|_| parent.is_some_and(|p| all_ranges[p].contains(&key)));
            if let Some((offset, _)) = from_parent {
                slots[index].insert(start, (offset, true));
            } else if children.iter().any(|&c| all_ranges[c].contains(&key)) && (!file || has_pages(process, start, end)) {
                slots[index].insert(start, (arena_len, false));
                arena_len += end - start + page;
            }
        }
    }
    if arena_len == 0 {
        return Ok((slots, None));
    }
    let mut used: Vec<(u64, u64)> = images.processes.iter().flat_map(|p| p.mm.vmas.iter().map(|v| (v.start, v.end))).collect();
    used.extend(layout.own_maps.iter().copied());
    let base = layout.gap_below_top::<A>(pid, used, arena_len)?;
    for map in &mut slots {
        for slot in map.values_mut() {
            slot.0 += base;
        }
    }
    Ok((slots, Some((base, base + arena_len))))
}

/// `shmat` flag: replace whatever is mapped there.
pub(crate) const SHM_REMAP: u64 = 0o40000;

/// One System V shared memory attach to make again: consecutive areas of one segment,
/// at consecutive offsets, are one attach (an mprotect split it).
#[derive(Debug)]
pub(crate) struct SysvAttach {
    pub(crate) id: i32,
    /// Where the whole segment goes, and its length in whole pages.
    pub(crate) base: u64,
    pub(crate) segment_len: u64,
    /// The part the process had kept.
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) writable: bool,
}

/// The System V attaches of `mm`, each checked against its segment (`sizes`, from
/// [`segment_sizes`]).
pub(crate) fn sysv_attaches(pid: i32, mm: &pb::MmEntry, sizes: &SegmentSizes, page: u64) -> Result<Vec<SysvAttach>, PlanError> {
    let mut out: Vec<SysvAttach> = Vec::new();
    for vma in mm.vmas.iter().filter(|v| v.status & vs::SYSVIPC != 0) {
        let id = vma.shmid as i32;
        let writable = vma.fdflags.unwrap_or(0) as i32 & libc::O_ACCMODE == libc::O_RDWR;
        if let Some(last) = out.last_mut() {
            if last.id == id && last.end == vma.start && vma.pgoff == last.end - last.base {
                last.end = vma.end;
                last.writable |= writable;
                continue;
            }
        }
        let bad = |what: String| PlanError::BadImage { image: format!("mm-{pid}.img"), what };
        let size = match sizes {
            SegmentSizes::Dumped(sizes) => *sizes.get(&id).ok_or_else(|| bad(format!("vma {:#x} attaches System V shared memory {id}, not in ipcns-shm (vma_entry.shmid)", vma.start)))?,
            SegmentSizes::Host(sizes) => *sizes.get(&id).ok_or_else(|| PlanError::Host { pid, what: format!("System V shared memory {id} was not looked up") })?,
        };
        let segment_len = size.div_ceil(page) * page;
        let base = vma.start.checked_sub(vma.pgoff).filter(|_| vma.pgoff % page == 0 && vma.pgoff + (vma.end - vma.start) <= segment_len);
        let Some(base) = base else {
            return Err(bad(format!("vma {:#x}-{:#x} at offset {:#x} outside System V shared memory {id} of {size} bytes (vma_entry.pgoff)", vma.start, vma.end, vma.pgoff)));
        };
        out.push(SysvAttach { id, base, segment_len, start: vma.start, end: vma.end, writable });
    }
    Ok(out)
}

/// The sizes of the System V segments a tree attaches, by id: the dumped segments of
/// its own IPC namespace, or the ones of crust's namespace it shared.
#[derive(Clone, Debug)]
pub(crate) enum SegmentSizes {
    Dumped(BTreeMap<i32, u64>),
    Host(BTreeMap<i32, u64>),
}

/// Reads the sizes of the segments the tree attaches: from ipcns-shm when the tree had
/// its own IPC namespace, else from this host's namespace (each must still exist).
/// Nothing is read for a tree without attaches.
pub(crate) fn segment_sizes(images: &Images) -> Result<SegmentSizes, PlanError> {
    let attaching: Vec<&ProcessImages> =
        images.processes.iter().filter(|p| p.mm.vmas.iter().any(|v| v.status & vs::SYSVIPC != 0)).collect();
    if attaching.is_empty() {
        return Ok(SegmentSizes::Host(BTreeMap::new()));
    }
    if let Some(ns_id) = images.namespaces.ipc_ns_id {
        let sizes = crate::ipc::segment_sizes(images.dir.path(), ns_id).map_err(|what| PlanError::BadImage { image: "ipcns-shm".into(), what: what.to_string() })?;
        return Ok(SegmentSizes::Dumped(sizes));
    }
    let mut sizes = BTreeMap::new();
    for process in attaching {
        for vma in process.mm.vmas.iter().filter(|v| v.status & vs::SYSVIPC != 0) {
            let id = vma.shmid as i32;
            if let std::collections::btree_map::Entry::Vacant(slot) = sizes.entry(id) {
                let size = crate::ipc::host_segment_size(id).map_err(|what| PlanError::Host { pid: process.pid(), what: what.to_string() })?;
                slot.insert(size);
            }
        }
    }
    Ok(SegmentSizes::Host(sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(start: u64, end: u64, pgoff: u64, id: u64, writable: bool) -> pb::VmaEntry {
        pb::VmaEntry {
            start,
            end,
            pgoff,
            shmid: id,
            status: vs::REGULAR | vs::SYSVIPC,
            fdflags: Some(if writable { libc::O_RDWR } else { libc::O_RDONLY } as u32),
            ..Default::default()
        }
    }

    #[test]
    fn areas_of_one_segment_are_one_attach_of_the_whole_segment() {
        // Segment 7 of 5 pages and a bit, attached at 0x10000; the process keeps pages
        // 1-3, the middle one made read-only by an mprotect.
        let mm = pb::MmEntry {
            vmas: vec![attach(0x11000, 0x12000, 0x1000, 7, true), attach(0x12000, 0x14000, 0x2000, 7, false)],
            ..Default::default()
        };
        let sizes = SegmentSizes::Dumped(BTreeMap::from([(7, 5 * 4096 + 10)]));
        let attaches = sysv_attaches(42, &mm, &sizes, 4096).expect("plan");
        assert_eq!(attaches.len(), 1);
        let a = &attaches[0];
        assert_eq!((a.id, a.base, a.segment_len, a.start, a.end, a.writable), (7, 0x10000, 6 * 4096, 0x11000, 0x14000, true));
    }

    #[test]
    fn an_attach_outside_its_segment_is_a_bad_image() {
        let mm = pb::MmEntry { vmas: vec![attach(0x11000, 0x13000, 0x1000, 7, true)], ..Default::default() };
        let sizes = SegmentSizes::Dumped(BTreeMap::from([(7, 4096)]));
        let error = sysv_attaches(42, &mm, &sizes, 4096).expect_err("outside").to_string();
        assert!(error.starts_with("restore: mm-42.img: vma 0x11000-0x13000 at offset 0x1000 outside System V shared memory 7"), "{error}");
        let missing = SegmentSizes::Dumped(BTreeMap::new());
        let error = sysv_attaches(42, &mm, &missing, 4096).expect_err("not dumped").to_string();
        assert!(error.contains("not in ipcns-shm"), "{error}");
    }

    #[test]
    fn stacks_and_shared_areas_are_not_premapped() {
        let area = |status: u32, flags: i32| pb::VmaEntry { status, flags: flags as u32, ..Default::default() };
        assert!(premappable(&area(vs::REGULAR | vs::ANON_PRIVATE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)));
        assert!(!premappable(&area(vs::REGULAR | vs::ANON_PRIVATE | vs::STACK, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)));
        assert!(!premappable(&area(vs::REGULAR | vs::ANON_PRIVATE, libc::MAP_PRIVATE | libc::MAP_GROWSDOWN)));
        assert!(!premappable(&area(vs::REGULAR | vs::ANON_SHARED, libc::MAP_SHARED | libc::MAP_ANONYMOUS)));
        assert!(premappable(&area(vs::REGULAR | vs::FILE_PRIVATE, libc::MAP_PRIVATE)));
        assert!(!premappable(&area(vs::REGULAR | vs::FILE_SHARED, libc::MAP_SHARED)));
        assert!(!premappable(&area(vs::REGULAR | vs::ANON_PRIVATE, libc::MAP_DROPPABLE | libc::MAP_ANONYMOUS)));
        assert!(!premappable(&area(vs::REGULAR | vs::ANON_PRIVATE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED)));
    }
}
