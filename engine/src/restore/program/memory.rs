//! The memory sections of the op program: the helper fds the areas are mapped from,
//! unmapping everything but the restorer area, the System V attaches, and every area
//! with its pages (premapped ones moved into place).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use crust_arch::{Abi, RestorerOp, Sys};
use crust_images::{pb, ImageKind};

use super::{Program, Shmem};
use crate::memory::page_sources::{Run, AT_SOURCE};
use crate::model::vma as vs;
use crate::restore::images::{Images, ProcessImages};
use crate::restore::memory::{Premap, PremapFile, PremapSlots, SysvAttach, SHM_REMAP};
use crate::restore::plan::PlanError;

/// The map-type bits of mmap's flags: shared, private, shared-validate, droppable.
const MAP_TYPE: i32 = 0x0f;

/// `mremap` flags.
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

/// `madvise` advice that makes a range guard pages (Linux 6.13), `<linux/mman.h>`.
const MADV_GUARD_INSTALL: u64 = 102;

/// `madvise` advice that faults a range in for writing (Linux 5.14), `<linux/mman.h>`.
const MADV_POPULATE_WRITE: u64 = 23;
/// Runs of pages at least this long are populated before their pread.
const POPULATE_AT_LEAST: u64 = 64 << 10;
/// The most bytes one restorer pread reads (a run of pages longer than this, which a
/// pagemap entry may hold, is read in several).
const READ_AT_MOST: u64 = 1 << 30;

/// A run of `bytes` as the restorer reads it: `(offset in the run, length)` pieces of
/// at most [`READ_AT_MOST`].
fn read_pieces(bytes: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..bytes.div_ceil(READ_AT_MOST)).map(move |index| {
        let done = index * READ_AT_MOST;
        (done, (bytes - done).min(READ_AT_MOST))
    })
}

/// The helper fds of one process: what the child opens (pages files, mapped files, the
/// exe) or copies from the broker before it jumps to the restorer.
pub(crate) struct Helpers {
    /// (number, path, open flags), opened by path.
    pub(crate) opened: Vec<(i32, PathBuf, i32)>,
    /// (number, file id, open mode), from the broker (unlinked mapped files, memfds):
    /// a description of its own opened through the broker's fd with the area's mode
    /// (`vma.fdflags`; CRIU's entries for mappings carry no flags of their own), or,
    /// without one, the broker's description.
    pub(crate) from_broker: Vec<(i32, u32, Option<i32>)>,
    /// (file id, access mode) → helper fd of each mapped file: one file mapped through
    /// a read-only and a read-write description (CRIU names both areas by the one file
    /// id, with the mode in `fdflags`) gets a helper of each mode ([`file_key`]).
    pub(crate) file_fds: BTreeMap<(u32, i32), i32>,
    pub(crate) exe_fd: i32,
    /// The helper fd of each pages file of `ProcessImages::pages`.
    pub(crate) page_fds: Vec<i32>,
}

/// Numbers the helper fds of `process` from `base`: its pages file, each mapped file,
/// the exe, then the parent dumps' pages files.
pub(crate) fn helper_fds(images: &Images, process: &ProcessImages, base: i32) -> Result<Helpers, PlanError> {
    let pid = process.pid();
    let mm = &process.mm;
    let mut opened: Vec<(i32, PathBuf, i32)> = Vec::new();
    let pages_path = images.dir.image_path(ImageKind::Pages, process.pages_id as u64);
    let pages_fd = base;
    opened.push((pages_fd, pages_path, libc::O_RDONLY));
    let mut file_fds: BTreeMap<(u32, i32), i32> = BTreeMap::new();
    let mut from_broker = Vec::new();
    for vma in &mm.vmas {
        let id = vma.shmid as u32;
        let key = file_key(vma);
        if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) == 0 || file_fds.contains_key(&key) {
            continue;
        }
        let fd = base + 1 + file_fds.len() as i32;
        // Unlinked files and memfds cannot be opened by name: the broker has them. A
        // ghost's area is opened as its own file was (CRIU writes a mapping's reg entry
        // read-only and the mode in the area's fdflags).
        if images.ghosts.contains_key(&id) || !images.files.contains_key(&id) {
            file_fds.insert(key, fd);
            from_broker.push((fd, id, vma.fdflags.map(|f| f as i32 & libc::O_ACCMODE)));
            continue;
        }
        let reg = images.files.get(&id).ok_or_else(|| PlanError::BadImage {
            image: format!("mm-{pid}.img"),
            what: format!("vma {:#x} names file id {} that files.img lacks", vma.start, vma.shmid),
        })?;
        file_fds.insert(key, fd);
        opened.push((fd, PathBuf::from(&reg.name), (vma.fdflags.unwrap_or(0) as i32) & libc::O_ACCMODE));
    }
    let exe_fd = base + 1 + file_fds.len() as i32;
    let exe = images.files.get(&mm.exe_file_id).ok_or_else(|| PlanError::BadImage {
        image: format!("mm-{pid}.img"),
        what: format!("exe_file_id {} not in files.img", mm.exe_file_id),
    })?;
    opened.push((exe_fd, PathBuf::from(&exe.name), libc::O_RDONLY));
    // Where every dumped page is: this dump's pages file (helper fd `pages_fd`), or a
    // parent dump's (pre-dump), each of those a helper fd after the exe's.
    let mut page_fds = vec![pages_fd];
    for (index, path) in process.pages.files.iter().enumerate().skip(1) {
        let fd = exe_fd + index as i32;
        opened.push((fd, path.clone(), libc::O_RDONLY));
        page_fds.push(fd);
    }
    Ok(Helpers { opened, from_broker, file_fds, exe_fd, page_fds })
}

/// The key of a mapped file's helper fd: its file id and the access mode its area was
/// mapped with (`-1`: the area names none).
pub(crate) fn file_key(vma: &pb::VmaEntry) -> (u32, i32) {
    (vma.shmid as u32, vma.fdflags.map_or(-1, |f| f as i32 & libc::O_ACCMODE))
}

/// Drops everything but `area` (and, where the architecture moves it, crust's own
/// vDSO block, and this process's premapped slots until they move into place).
pub(crate) fn unmap_all_but<A: Abi>(
    program: &mut Program<A>,
    mm: &pb::MmEntry,
    premapped: &PremapSlots,
    area: (u64, u64),
    own_block: &[(u64, u64)],
) {
    let mut keep: Vec<(u64, u64)> = vec![area];
    if A::MOVES_OWN_VDSO {
        keep.extend(own_block.iter().copied());
    }
    for vma in mm.vmas.iter().filter(|v| premapped.contains_key(&v.start) && v.status & vs::GUARD == 0) {
        let slot = premapped[&vma.start].0;
        keep.push((slot, slot + vma.end - vma.start));
    }
    keep.sort_unstable();
    let mut from = 0u64;
    for &(start, end) in keep.iter().chain(std::iter::once(&(A::TASK_SIZE, A::TASK_SIZE))) {
        if start > from {
            program.call(Sys::Munmap, [from, start - from, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("unmap {from:#x}-{start:#x}"));
        }
        from = from.max(end);
    }
}

/// System V shared memory, attached before the other areas are mapped: a partial attach
/// maps the whole segment first and unmaps what the process had not kept.
pub(crate) fn attach_sysv<A: Abi>(program: &mut Program<A>, attaches: &[SysvAttach]) {
    for attach in attaches {
        let flags = SHM_REMAP | if attach.writable { 0 } else { libc::SHM_RDONLY as u64 };
        program.call(
            Sys::Shmat,
            [attach.id as u64, attach.base, flags, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            attach.base,
            format!("attach System V shared memory {} at {:#x}", attach.id, attach.base),
        );
        for (from, to) in [(attach.base, attach.start), (attach.end, attach.base + attach.segment_len)] {
            if to > from {
                program.call(Sys::Munmap, [from, to - from, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("unmap {from:#x}-{to:#x} of shared memory {}", attach.id));
            }
        }
    }
}

/// Every memory area, with its pages; premapped ones are moved into place (and
/// returned, for the child to fill before it forks).
/// `parent`: the process's parent, whose runs an inherited slot already holds.
/// `emptied`: the private anonymous areas mapped empty, whose pages crust hands to the
/// lazy-pages daemon (`lazy`: every such area with pages) or puts in itself (the areas
/// with [`FILL_AT_LEAST`](crate::lazy::fill::FILL_AT_LEAST) bytes of pages or more).
pub(crate) fn map_areas<A: Abi>(
    program: &mut Program<A>,
    process: &ProcessImages,
    parent: Option<&ProcessImages>,
    helpers: &super::memory::Helpers,
    shmem: &Shmem,
    premapped: &PremapSlots,
    lazy: bool,
    emptied: &mut Vec<crate::lazy::LazyArea>,
) -> Result<Vec<Premap>, PlanError> {
    let pid = process.pid();
    let sources = &process.pages;
    let mut premap = Vec::new();
    let mut guards = Vec::new();
    let mut pagemap: VecDeque<Run> = sources.runs.iter().copied().collect();
    for vma in &process.mm.vmas {
        if vma.status & vs::GUARD != 0 {
            // Guard pages inside the areas (CRIU lists them after all of them): installed
            // once every area is in place.
            guards.push(vma);
            continue;
        }
        if vma.status & (vs::VDSO | vs::VVAR | vs::VSYSCALL) != 0 {
            // The kernel's own pages (CRIU dumps the vDSO's): this kernel's are mapped.
            while pagemap.front().is_some_and(|r| r.vaddr >= vma.start && r.vaddr + r.bytes <= vma.end) {
                pagemap.pop_front();
            }
            continue;
        }
        let len = vma.end - vma.start;
        let mut runs: Vec<(u64, u64, usize, u64)> = Vec::new();
        while let Some(entry) = pagemap.front().copied() {
            if entry.vaddr >= vma.end {
                break;
            }
            if entry.vaddr < vma.start {
                return Err(PlanError::BadImage {
                    image: format!("pagemap-{pid}.img"),
                    what: format!("pages {:#x}+{:#x} cross vma {:#x}-{:#x}", entry.vaddr, entry.bytes, vma.start, vma.end),
                });
            }
            pagemap.pop_front();
            if entry.vaddr + entry.bytes > vma.end {
                // A run that goes on into the next area (CRIU writes one run over
                // adjacent areas): this area's part here, the rest for the next one.
                let here = vma.end - entry.vaddr;
                runs.push((entry.vaddr, here, entry.file, entry.offset));
                pagemap.push_front(Run { vaddr: vma.end, bytes: entry.bytes - here, file: entry.file, offset: entry.offset + here });
                break;
            }
            runs.push((entry.vaddr, entry.bytes, entry.file, entry.offset));
        }
        let prot = vma.prot as i32;
        if let Some(&(slot, inherited)) = premapped.get(&vma.start) {
            if let Some(&(addr, bytes, _, _)) = runs.iter().find(|r| r.2 == AT_SOURCE) {
                return Err(left_at_source(pid, vma, addr, bytes, lazy));
            }
            let madv = vma.madv.unwrap_or(0);
            let parent_runs = match parent.filter(|_| inherited) {
                Some(parent) => {
                    let runs = &parent.pages.runs;
                    let first = runs.partition_point(|r| r.vaddr + r.bytes <= vma.start);
                    runs[first..]
                        .iter()
                        .take_while(|r| r.vaddr < vma.end)
                        .map(|r| (r.vaddr.max(vma.start), (r.vaddr + r.bytes).min(vma.end) - r.vaddr.max(vma.start)))
                        .collect()
                }
                None => Vec::new(),
            };
            let file = if vma.status & vs::FILE_PRIVATE != 0 {
                let id = vma.shmid as u32;
                let number = helpers.file_fds[&file_key(vma)];
                let source = if helpers.from_broker.iter().any(|h| h.1 == id) {
                    PremapFile::Broker(id)
                } else {
                    let path = helpers.opened.iter().find(|h| h.0 == number).map(|h| h.1.clone()).ok_or_else(|| PlanError::BadImage {
                        image: format!("mm-{pid}.img"),
                        what: format!("vma {:#x} names file id {id} that has no path", vma.start),
                    })?;
                    PremapFile::Path(path)
                };
                Some((source, vma.pgoff))
            } else {
                None
            };
            premap.push(Premap {
                slot,
                start: vma.start,
                end: vma.end,
                inherited,
                runs,
                parent_runs,
                file,
                noreserve: vma.flags as i32 & libc::MAP_NORESERVE != 0,
                no_huge: madv & (1 << libc::MADV_NOHUGEPAGE) != 0,
            });
            program.call(
                Sys::Mremap,
                [slot, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, vma.start, 0],
                RestorerOp::CHECK_EQ,
                vma.start,
                format!("move premapped vma {:#x}-{:#x} into place from {slot:#x}", vma.start, vma.end),
            );
            if prot != libc::PROT_READ | libc::PROT_WRITE {
                program.call(Sys::Mprotect, [vma.start, len, prot as u64, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("protect vma {:#x}-{:#x}", vma.start, vma.end));
            }
            add_madvise(program, vma, len);
            continue;
        }
        if vma.status & vs::SYSVIPC != 0 {
            if !runs.is_empty() {
                return Err(PlanError::BadImage {
                    image: "pagemap".into(),
                    what: format!("pages at {:#x} in System V shared memory, whose pages the segment holds", vma.start),
                });
            }
            program.call(Sys::Mprotect, [vma.start, len, prot as u64, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("protect vma {:#x}-{:#x}", vma.start, vma.end));
            add_madvise(program, vma, len);
            continue;
        }
        // Lazy restore: a private anonymous area (not locked: MAP_LOCKED would fault
        // every page in at mmap) is mapped empty; the lazy-pages daemon fills it.
        // Otherwise such an area with many pages, all in pages images, is mapped empty
        // too, and crust fills it before the process runs (`lazy/fill.rs`).
        let big = || runs.iter().all(|r| r.2 != AT_SOURCE) && runs.iter().map(|r| r.1).sum::<u64>() >= crate::lazy::fill::FILL_AT_LEAST;
        if !runs.is_empty() && crate::memory::can_be_lazy(vma) && (lazy || big()) {
            emptied.push(crate::lazy::LazyArea {
                start: vma.start,
                end: vma.end,
                runs: std::mem::take(&mut runs)
                    .into_iter()
                    .map(|(addr, bytes, file, offset)| crate::lazy::LazyRun { addr, bytes, file: sources.files.get(file).cloned(), offset })
                    .collect(),
            });
        }
        if let Some(&(addr, bytes, _, _)) = runs.iter().find(|r| r.2 == AT_SOURCE) {
            return Err(left_at_source(pid, vma, addr, bytes, lazy));
        }
        let map_prot = if runs.is_empty() { prot } else { prot | libc::PROT_WRITE };
        // The map type (shared, private, droppable) and the flags that shape the area;
        // MAP_LOCKED as CRIU maps it (crust's restore has CAP_IPC_LOCK at this point, so
        // RLIMIT_MEMLOCK does not limit it).
        let keep = MAP_TYPE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN | libc::MAP_NORESERVE | libc::MAP_LOCKED;
        let mut flags = (vma.flags as i32 & keep) | libc::MAP_FIXED;
        let fd = if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) != 0 {
            helpers.file_fds[&file_key(vma)] as i64 as u64
        } else if vma.status & vs::ANON_SHARED != 0 {
            // One shmem object per shmid, shared by every process (and area) mapping it.
            flags &= !libc::MAP_ANONYMOUS;
            shmem[&vma.shmid].0 as u64
        } else {
            u64::MAX
        };
        let offset = if fd == u64::MAX { 0 } else { vma.pgoff };
        let droppable = if flags & MAP_TYPE == libc::MAP_DROPPABLE { " MAP_DROPPABLE (Linux 6.11)" } else { "" };
        program.call(
            Sys::Mmap,
            [vma.start, len, map_prot as u64, flags as u64, fd, offset],
            RestorerOp::CHECK_EQ,
            vma.start,
            format!("map vma {:#x}-{:#x}{droppable}", vma.start, vma.end),
        );
        let madv = vma.madv.unwrap_or(0);
        // MADV_NOHUGEPAGE before the pages are faulted in, so that a THP "always" kernel
        // puts no huge page where the dumped area forbade them. MADV_HUGEPAGE stays after
        // the pages (below): faulting 1 GiB as huge pages here took 0.25-3.8 s (direct
        // compaction under defrag=madvise) against 0.85-1.0 s as small pages.
        let no_huge = libc::MADV_NOHUGEPAGE as u64;
        if madv & (1 << no_huge) != 0 && !runs.is_empty() {
            program.call_logged(
                Sys::Madvise,
                [vma.start, len, no_huge, 0, 0, 0],
                format!("madvise({no_huge}) vma {:#x}-{:#x} before its pages", vma.start, vma.end),
            );
        }
        let private = vma.flags as i32 & libc::MAP_PRIVATE != 0;
        for (addr, bytes, file, file_offset) in runs {
            if private && bytes >= POPULATE_AT_LEAST {
                // Fault the run's pages in with one call (batched, no exception per page)
                // before pread copies into them: measured here on 1 GiB, populate + pread
                // 0.65 s against 0.8-2.4 s for the pread alone. Only the run: pages the
                // image does not hold stay absent. Lenient: kernels before 5.14 lack it.
                program.call(
                    Sys::Madvise,
                    [addr, bytes, MADV_POPULATE_WRITE, 0, 0, 0],
                    RestorerOp::CHECK_NONE,
                    0,
                    format!("populate pages {:#x}-{:#x}", addr, addr + bytes),
                );
            }
            // One pread per READ_AT_MOST: the kernel moves at most 2 GiB - 4 KiB per
            // read (MAX_RW_COUNT), and each op checks for its whole length.
            for (done, step) in read_pieces(bytes) {
                program.call(
                    Sys::Pread64,
                    [helpers.page_fds[file] as u64, addr + done, step, file_offset + done, 0, 0],
                    RestorerOp::CHECK_EQ,
                    step,
                    format!("read pages {:#x}-{:#x} from {}", addr + done, addr + done + step, sources.files[file].display()),
                );
            }
        }
        if map_prot != prot {
            program.call(Sys::Mprotect, [vma.start, len, prot as u64, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("protect vma {:#x}-{:#x}", vma.start, vma.end));
        }
        add_madvise(program, vma, len);
    }
    if !pagemap.is_empty() {
        return Err(PlanError::BadImage { image: "pagemap".into(), what: "entries outside every vma".into() });
    }
    for guard in guards {
        if guard.end <= guard.start {
            return Err(PlanError::BadImage {
                image: format!("mm-{pid}.img"),
                what: format!("guard region {:#x}-{:#x} (vma_entry with VMA_AREA_GUARD)", guard.start, guard.end),
            });
        }
        program.call(
            Sys::Madvise,
            [guard.start, guard.end - guard.start, MADV_GUARD_INSTALL, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            format!("install guard pages {:#x}-{:#x} (MADV_GUARD_INSTALL: Linux 6.13, file mappings 6.15)", guard.start, guard.end),
        );
    }
    Ok(premap)
}

/// Pages the dump left at the source (PE_LAZY) in an area this restore fills itself.
fn left_at_source(pid: i32, vma: &pb::VmaEntry, addr: u64, bytes: u64, lazy: bool) -> PlanError {
    let why = if lazy {
        "an area crust's lazy restore does not map empty (shared with another process through fork, or not private anonymous memory); restore from a dump without --lazy-pages"
    } else {
        "restore with --lazy-pages and `crust lazy-pages --page-server --address A --port P` fetching them from the source"
    };
    PlanError::BadImage {
        image: format!("pagemap-{pid}.img"),
        what: format!("pages {:#x}-{:#x} of vma {:#x}-{:#x} were left at the source (PE_LAZY): {why}", addr, addr + bytes, vma.start, vma.end),
    }
}

/// The madvise calls that give area `vma` its advice bits. HUGEPAGE and NOHUGEPAGE do not
/// stop the restore where the kernel refuses them (no transparent huge pages here): the
/// failure is logged (`Program::call_logged`).
fn add_madvise<A: Abi>(program: &mut Program<A>, vma: &pb::VmaEntry, len: u64) {
    let madv = vma.madv.unwrap_or(0);
    for advice in 0..64u64 {
        if madv & (1 << advice) != 0 {
            let description = format!("madvise({advice}) vma {:#x}-{:#x}", vma.start, vma.end);
            if advice == libc::MADV_HUGEPAGE as u64 || advice == libc::MADV_NOHUGEPAGE as u64 {
                program.call_logged(Sys::Madvise, [vma.start, len, advice, 0, 0, 0], description);
            } else {
                program.call(Sys::Madvise, [vma.start, len, advice, 0, 0, 0], RestorerOp::CHECK_EQ, 0, description);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{read_pieces, READ_AT_MOST};

    #[test]
    fn a_run_over_a_gib_is_read_in_pieces_the_kernel_reads_whole() {
        let gib = 1u64 << 30;
        assert_eq!(read_pieces(4096).collect::<Vec<_>>(), vec![(0, 4096)]);
        assert_eq!(read_pieces(gib).collect::<Vec<_>>(), vec![(0, gib)]);
        // 4 GiB and a page: what one pagemap entry of a big area may hold.
        let pieces: Vec<(u64, u64)> = read_pieces(4 * gib + 4096).collect();
        assert_eq!(pieces, vec![(0, gib), (gib, gib), (2 * gib, gib), (3 * gib, gib), (4 * gib, 4096)]);
        // Each under the kernel's MAX_RW_COUNT (2 GiB - 4 KiB).
        assert!(pieces.iter().all(|&(_, len)| len <= READ_AT_MOST && len < (1 << 31) - 4096));
        assert_eq!(read_pieces(0).count(), 0);
    }
}
