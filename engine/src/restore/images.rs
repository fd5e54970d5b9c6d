//! The images of a tree, loaded for restore on top of [`ImageDir`]: per process its
//! pstree entry, cores, mm, pagemap (resolved through parent dumps to the pages files
//! that hold each run), fds and fs; for the tree its regular files, ghosts, seccomp
//! filters, pidfds and the files in flight in socket queues. Then the checks that need
//! the host's filesystem (every file still there), before anything is planned.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use crust_images::pb;
use crust_images::{ImageDir, ImageKind, ImageReader};

use crate::memory::page_sources::{self, PageSources, PageSourcesError};
use crate::model::vma as vs;
use crate::model::{TASK_ALIVE, TASK_DEAD};
use crate::ns::NsKind;
use crate::restore::namespaces::{plan_namespaces, TreeNamespaces};

/// Why the images could not be read, or do not hold together.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// `source` names the file.
    #[error("restore: {source}")]
    Image { image: String, source: crust_images::ImageError },
    #[error("restore: {image}{}{what}", if image.is_empty() { "" } else { ": " })]
    BadImage { image: String, what: String },
    /// The pages of a process could not be found (the error names the pagemap).
    #[error("restore: {0}")]
    PageSources(#[from] PageSourcesError),
    #[error("restore pid {pid}: {what}: {source}")]
    Missing { pid: i32, what: String, source: io::Error },
}

/// The images of one process.
#[derive(Clone)]
pub(crate) struct ProcessImages {
    pub(crate) pstree: pb::PstreeEntry,
    /// One core per thread, in `pstree.threads` order (the leader first); a zombie's
    /// one core.
    pub(crate) cores: Vec<pb::CoreEntry>,
    /// Kernel-object and namespace ids (ids-PID.img, CRIU's place and crust's; the
    /// leader's core in crust's dumps before 2026-12-06; a zombie has none).
    pub(crate) ids: pb::TaskKobjIdsEntry,
    /// Everything below is empty for a zombie.
    pub(crate) mm: pb::MmEntry,
    pub(crate) pages_id: u32,
    pub(crate) pagemap: Vec<pb::PagemapEntry>,
    /// Where each dumped page is: this dump's pages file or a parent dump's.
    pub(crate) pages: PageSources,
    pub(crate) fds: Vec<pb::FdinfoEntry>,
    pub(crate) fs: pb::FsEntry,
}

impl ProcessImages {
    pub(crate) fn pid(&self) -> i32 {
        self.pstree.pid as i32
    }

    pub(crate) fn task_state(&self) -> u32 {
        self.cores[0].tc.as_ref().map(|t| t.task_state).unwrap_or(TASK_ALIVE)
    }

    pub(crate) fn is_zombie(&self) -> bool {
        self.task_state() == TASK_DEAD
    }

    /// The leader thread had exited while the others ran on: its core has no registers.
    /// Restore recreates it to run the restorer, then has it exit again.
    pub(crate) fn leader_gone(&self) -> bool {
        let leader = &self.cores[0];
        !self.is_zombie()
            && self.cores.len() > 1
            && leader.thread_info.is_none()
            && leader.ti_aarch64.is_none()
            && leader.ti_ppc64.is_none()
            && leader.ti_s390.is_none()
    }

    /// Index of the thread that acts for the process once restored: the leader, or the
    /// first live thread when the leader had exited.
    pub(crate) fn acting_thread(&self) -> usize {
        usize::from(self.leader_gone())
    }

    /// The signal that stopped a stopped task (SIGSTOP when the image does not say).
    pub(crate) fn stop_signal(&self) -> i32 {
        self.cores[0].tc.as_ref().and_then(|t| t.stop_signo).filter(|&s| s > 0 && s < 32).unwrap_or(libc::SIGSTOP as u32) as i32
    }
}

/// Everything read from the images of a tree.
pub(crate) struct Images {
    /// The directory they were read from.
    pub(crate) dir: ImageDir,
    /// In pstree order: the root first, every parent before its children.
    pub(crate) processes: Vec<ProcessImages>,
    pub(crate) files: BTreeMap<u32, pb::RegFileEntry>,
    /// The other entries of files.img (pipes, sockets, ...), which the broker makes.
    pub(crate) special_files: Vec<pb::FileEntry>,
    /// reg-file id → ghost id
    pub(crate) ghosts: BTreeMap<u32, u32>,
    /// seccomp.img's filters (threads name their newest by index).
    pub(crate) seccomp: Vec<pb::SeccompFilter>,
    /// pidfd entries of files.img by file id.
    pub(crate) pidfds: BTreeMap<u32, pb::PidfdEntry>,
    /// Files in flight in socket queues (SCM_RIGHTS), which no process holds.
    pub(crate) in_flight: BTreeSet<u32>,
    /// The namespaces of the tree's own that the restore makes again.
    pub(crate) namespaces: TreeNamespaces,
    /// inventory.img.
    pub(crate) inventory: pb::InventoryEntry,
    /// Every entry of files.img as (id, type), in image order (duplicates kept, for
    /// the validation to name them).
    pub(crate) file_entries: Vec<(u32, i32)>,
    /// Unix sockets' names by file id (sun_path holds 108 bytes).
    pub(crate) unix_names: BTreeMap<u32, usize>,
    /// The names of the files in the images directory.
    pub(crate) names: BTreeSet<String>,
    /// Shared anonymous objects written as memfds named `/dev/zero` (CRIU 4.2's form,
    /// turned back by `memory/shmem.rs`): each one's size, by shmid.
    pub(crate) shared_anon_sizes: BTreeMap<u64, u64>,
    /// Files under /proc/PID of a process or thread of the tree (as the tree numbers
    /// it), by file id: (PID, the rest of the path). Reopened for the restored process
    /// once the whole tree exists, by each process that holds them.
    pub(crate) proc_files: BTreeMap<u32, (i32, String)>,
    /// Owners of files (F_SETOWN, F_SETOWN_EX, F_SETSIG) by file id: set again by each
    /// holder once the whole tree exists.
    pub(crate) owners: BTreeMap<u32, pb::FownEntry>,
}

impl Images {
    /// The file ids the broker opens: every fd's, and every unlinked mapped file's.
    pub(crate) fn broker_ids(&self) -> BTreeSet<u32> {
        let mut ids = crate::files::broker_ids(
            self.processes.iter().map(|p| (p.fds.as_slice(), p.mm.vmas.as_slice())),
            &self.files,
            &self.ghosts,
            vs::FILE_PRIVATE | vs::FILE_SHARED,
        );
        ids.extend(self.in_flight.iter().copied());
        ids.retain(|id| !self.proc_files.contains_key(id));
        ids
    }
}

fn read_all<M: prost::Message + Default>(dir: &ImageDir, kind: ImageKind, id: u64) -> Result<Vec<M>, ImagesError> {
    dir.read_entries::<M>(kind, id).map_err(|source| image_error(dir, kind.file_name(id), source))
}

/// An image that could not be read: a missing one named as such, else the reader's
/// error (which names the file).
fn image_error(dir: &ImageDir, name: String, source: crust_images::ImageError) -> ImagesError {
    match source {
        crust_images::ImageError::ReadFile { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            ImagesError::BadImage { image: name, what: format!("missing from {}", dir.path().display()) }
        }
        source => ImagesError::Image { image: name, source },
    }
}

fn read_one<M: prost::Message + Default>(dir: &ImageDir, kind: ImageKind, id: u64) -> Result<M, ImagesError> {
    let mut all = read_all::<M>(dir, kind, id)?;
    if all.len() != 1 {
        return Err(ImagesError::BadImage {
            image: dir.image_path(kind, id).display().to_string(),
            what: format!("expected one entry, found {}", all.len()),
        });
    }
    Ok(all.remove(0))
}

/// Reads the images of the tree in `dir`; `page_size`: the pages' size, to resolve
/// each process's pages through its parent dumps.
#[cfg(test)]
pub(crate) fn load(dir: &Path, page_size: u64) -> Result<Images, ImagesError> {
    load_with(dir, page_size, true, false)
}

/// [`load`], reading crust's list of images (`crust-checksums.img`) unless `listed`
/// is false (`--skip-checksums`).
pub(crate) fn load_with(dir: &Path, page_size: u64, listed: bool, empty_net: bool) -> Result<Images, ImagesError> {
    let dir = ImageDir::new(dir);
    let names: BTreeSet<String> = std::fs::read_dir(dir.path())
        .map_err(|source| ImagesError::Missing { pid: 0, what: format!("read the images directory {}", dir.path().display()), source })?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    // CRIU reads inventory.img first and refuses a dump without it; so does crust.
    let inventory: pb::InventoryEntry = read_one(&dir, ImageKind::Inventory, 0)?;
    // crust's list of the images its dump wrote: one missing is named as such before
    // any is read (an ids image, say, which an older dump could do without).
    let listed = if listed {
        crate::memory::checksums::read(dir.path())
            .map_err(|error| ImagesError::BadImage { image: String::new(), what: error.to_string() })?
            .map(|checksums| checksums.images)
    } else {
        None
    };
    if let Some(missing) = listed.iter().flatten().find(|name| !names.contains(*name)) {
        return Err(ImagesError::BadImage {
            image: missing.clone(),
            what: format!("missing: {} lists it among the images this dump wrote", crust_images::checksums::CHECKSUMS_FILE),
        });
    }
    let pstrees: Vec<pb::PstreeEntry> = read_all(&dir, ImageKind::Pstree, 0)?;
    if pstrees.is_empty() {
        let image = dir.image_path(ImageKind::Pstree, 0).display().to_string();
        return Err(ImagesError::BadImage { image, what: "no process".into() });
    }
    let root_ids = inventory.root_ids;
    let mut processes = Vec::new();
    for mut pstree in pstrees {
        let pid = pstree.pid as u64;
        // The process's own core first: a zombie has only that one (CRIU 4.2 writes
        // whatever it had in memory as a zombie's thread id).
        let own = read_one::<pb::CoreEntry>(&dir, ImageKind::Core, pid)?;
        let mut cores = Vec::new();
        if own.tc.as_ref().is_some_and(|t| t.task_state == TASK_DEAD) || pstree.threads.is_empty() {
            if own.tc.as_ref().is_some_and(|t| t.task_state == TASK_DEAD) {
                pstree.threads = vec![pstree.pid];
            }
            cores.push(own);
        } else {
            let mut own = Some(own);
            for &tid in &pstree.threads {
                match own.take() {
                    Some(core) if u64::from(tid) == pid => cores.push(core),
                    other => {
                        own = other;
                        cores.push(read_one::<pb::CoreEntry>(&dir, ImageKind::Core, tid as u64)?);
                    }
                }
            }
        }
        let zombie = cores[0].tc.as_ref().is_some_and(|t| t.task_state == TASK_DEAD);
        if zombie {
            processes.push(ProcessImages {
                pstree,
                cores,
                mm: Default::default(),
                pages_id: 0,
                pagemap: Vec::new(),
                pages: PageSources::default(),
                fds: Vec::new(),
                fs: Default::default(),
                ids: Default::default(),
            });
            continue;
        }
        let mm: pb::MmEntry = read_one(&dir, ImageKind::Mm, pid)?;
        let pagemap_path = dir.image_path(ImageKind::Pagemap, pid);
        let pagemap_name = ImageKind::Pagemap.file_name(pid);
        let image_err = |source| image_error(&dir, ImageKind::Pagemap.file_name(pid), source);
        let mut reader = ImageReader::open(&pagemap_path).map_err(image_err)?;
        let head: pb::PagemapHead = reader
            .next_entry()
            .map_err(image_err)?
            .ok_or_else(|| ImagesError::BadImage { image: pagemap_name.clone(), what: "no pagemap head".into() })?;
        let mut pagemap = Vec::new();
        while let Some(entry) = reader.next_entry::<pb::PagemapEntry>().map_err(image_err)? {
            pagemap.push(entry);
        }
        // ids-PID.img (CRIU's place, and crust's); crust before 2026-12-06 kept them in
        // the core. Without them nothing says which fd table, memory or fs the process
        // had.
        let ids = match cores[0].ids {
            _ if dir.exists(ImageKind::Ids, pid) => read_one::<pb::TaskKobjIdsEntry>(&dir, ImageKind::Ids, pid)?,
            Some(ids) => ids,
            None => {
                return Err(ImagesError::BadImage {
                    image: ImageKind::Ids.file_name(pid),
                    what: format!("missing, and {} has no ids either (core_entry.ids)", ImageKind::Core.file_name(pid)),
                })
            }
        };
        // CRIU writes no image without entries: a process without fds has no fdinfo.
        let fds = if dir.exists(ImageKind::Fdinfo, ids.files_id as u64) { read_all(&dir, ImageKind::Fdinfo, ids.files_id as u64)? } else { Vec::new() };
        let fs = read_one(&dir, ImageKind::Fs, pid)?;
        let pages = page_sources::resolve(dir.path(), pid, page_size)?;
        processes.push(ProcessImages { pstree, cores, ids, mm, pages_id: head.pages_id, pagemap, pages, fds, fs });
    }
    // No files.img means no file (CRIU writes no empty image); the validation finds
    // the fds that name one.
    let mut file_entries = if dir.exists(ImageKind::Files, 0) { read_all::<pb::FileEntry>(&dir, ImageKind::Files, 0)? } else { Vec::new() };
    let in_flight = crate::files::in_flight_ids(dir.path()).map_err(|error| match error {
        // The image error names the file already.
        crate::files::FileError::Image(source) => ImagesError::Image { image: "sk-queues.img".into(), source },
        other => ImagesError::BadImage { image: "sk-queues.img".into(), what: other.to_string() },
    })?;
    // Areas of memfds named /dev/zero that no fd holds: shared anonymous memory as CRIU
    // 4.2 writes it (crust too), mapped as such again.
    let shared_anon_sizes = if dir.exists(ImageKind::MemfdInode, 0) {
        let inodes: Vec<pb::MemfdInodeEntry> = read_all(&dir, ImageKind::MemfdInode, 0)?;
        let held: BTreeSet<u32> = processes.iter().flat_map(|p| p.fds.iter().map(|f| f.id)).chain(in_flight.iter().copied()).collect();
        crate::memory::shmem::memfd_areas_as_shared_anon(processes.iter_mut().flat_map(|p| p.mm.vmas.iter_mut()), &file_entries, &inodes, &held)
    } else {
        BTreeMap::new()
    };
    let file_kinds = file_entries.iter().map(|f| (f.id, f.r#type)).collect();
    let owners: BTreeMap<u32, pb::FownEntry> = file_entries
        .iter_mut()
        .filter_map(|entry| {
            let id = entry.id;
            crate::files::owner_of(entry).filter(|o| o.pid != 0 || o.signum != 0).map(|o| (id, *o))
        })
        .collect();
    let unix_names = file_entries.iter().filter_map(|f| Some((f.id, f.usk.as_ref()?.name.len()))).collect();
    let pidfds = file_entries.iter().filter_map(|f| f.pidfd.map(|p| (f.id, p))).collect();
    // One pass: regular files by id, the other kinds kept whole (an entry is moved once).
    let mut files: BTreeMap<u32, pb::RegFileEntry> = BTreeMap::new();
    let mut special_files = Vec::new();
    for mut entry in file_entries {
        match entry.reg.take() {
            Some(reg) => {
                files.insert(entry.id, reg);
            }
            None => special_files.push(entry),
        }
    }
    let ghosts = if dir.exists(ImageKind::RemapFpath, 0) {
        read_all::<pb::RemapFilePathEntry>(&dir, ImageKind::RemapFpath, 0)?.into_iter().map(|r| (r.orig_id, r.remap_id)).collect()
    } else {
        BTreeMap::new()
    };
    let seccomp = if dir.exists(ImageKind::Seccomp, 0) {
        read_all::<pb::SeccompEntry>(&dir, ImageKind::Seccomp, 0)?.into_iter().flat_map(|e| e.seccomp_filters).collect()
    } else {
        Vec::new()
    };
    let live: Vec<(u32, &pb::TaskKobjIdsEntry)> = processes.iter().filter(|p| !p.is_zombie()).map(|p| (p.pstree.pid, &p.ids)).collect();
    // Processes that shared an fd table (CLONE_FILES) or fs info (CLONE_FS) name one
    // files_id or fs_id: each would be restored with its own.
    for (index, (pid, ids)) in live.iter().enumerate() {
        for (other, other_ids) in &live[..index] {
            let shared = if ids.files_id == other_ids.files_id {
                Some(("fd table (CLONE_FILES)", ids.files_id))
            } else {
                (ids.fs_id == other_ids.fs_id).then_some(("cwd, root and umask (CLONE_FS)", ids.fs_id))
            };
            if let Some((what, id)) = shared {
                return Err(ImagesError::BadImage {
                    image: ImageKind::Ids.file_name(u64::from(*pid)),
                    what: format!("pid {pid} shares its {what} with pid {other} (id {id}), which crust does not restore yet"),
                });
            }
        }
    }
    let namespaces = plan_namespaces(&live, root_ids.as_ref(), |kind, id| match kind {
        NsKind::Ipc => crate::ipc::image_has_namespace(dir.path(), id),
        NsKind::Net => empty_net || crate::net::restore::has_namespace(dir.path(), id),
        NsKind::Mnt => dir.exists(ImageKind::Mnts, u64::from(id)),
        NsKind::Uts => dir.exists(ImageKind::Utsns, u64::from(id)),
        NsKind::Time => dir.exists(ImageKind::Timens, u64::from(id)),
        NsKind::User => dir.exists(ImageKind::Userns, u64::from(id)),
        _ => false,
    })
        .map_err(|refused| ImagesError::BadImage { image: refused.image, what: refused.what })?;
    let tree_tids: BTreeSet<i32> = processes.iter().flat_map(|p| p.pstree.threads.iter().copied().chain([p.pstree.pid])).map(|t| t as i32).collect();
    let proc_files = files
        .iter()
        .filter_map(|(&id, reg): (&u32, &pb::RegFileEntry)| {
            let (number, rest) = crate::files::proc_pid_path(&reg.name)?;
            tree_tids.contains(&number).then(|| (id, (number, rest.to_string())))
        })
        .collect();
    Ok(Images { dir, processes, files, special_files, ghosts, seccomp, pidfds, in_flight, namespaces, inventory, file_entries: file_kinds, unix_names, names, shared_anon_sizes, proc_files, owners })
}

/// Checks that every file the tree maps or holds open (not an unlinked one, which
/// comes back from its ghost image) is still on this host.
pub(crate) fn check_files<'a>(images: &'a Images) -> Result<(), ImagesError> {
    // Paths found once are not looked up again (10,000 fds of /dev/null: one stat).
    let mut present: BTreeSet<&str> = BTreeSet::new();
    let mut exists = |name: &'a str| present.contains(name) || (Path::new(name).exists() && present.insert(name));
    for process in images.processes.iter().filter(|p| !p.is_zombie()) {
        let pid = process.pid();
        let mut seen = BTreeSet::new();
        for vma in &process.mm.vmas {
            let id = vma.shmid as u32;
            let from_broker = images.ghosts.contains_key(&id) || !images.files.contains_key(&id);
            if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) == 0 || from_broker || !seen.insert(id) {
                continue;
            }
            let reg = &images.files[&id];
            if !exists(&reg.name) {
                return Err(ImagesError::Missing {
                    pid,
                    what: format!("file {} mapped at {:#x}", reg.name, vma.start),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
        }
        for fd in process.fds.iter().filter(|fd| fd.r#type == pb::FdTypes::Reg as i32) {
            let Some(reg) = images.files.get(&fd.id) else { continue };
            if !images.ghosts.contains_key(&fd.id) && !images.proc_files.contains_key(&fd.id) && !exists(&reg.name) {
                return Err(ImagesError::Missing {
                    pid,
                    what: format!("file {} for fd {}", reg.name, fd.fd),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
        }
    }
    Ok(())
}

impl Images {
    /// Whether the dumped tree had a network namespace of its own (its root's net
    /// namespace id differs from the inventory's): where CRIU's restore reaches
    /// network-unlock.
    pub(crate) fn own_net_namespace(&self) -> bool {
        let inventory: Option<pb::InventoryEntry> = self.dir.read_single(ImageKind::Inventory, 0).ok();
        let host = inventory.and_then(|i| i.root_ids).and_then(|ids| ids.net_ns_id);
        let root = self.processes.first();
        let tree = root.and_then(|p| p.cores[0].ids.and_then(|ids| ids.net_ns_id)).or_else(|| {
            let ids: Option<pb::TaskKobjIdsEntry> = root.and_then(|p| self.dir.read_single(ImageKind::Ids, p.pid() as u64).ok());
            ids.and_then(|ids| ids.net_ns_id)
        });
        matches!((host, tree), (Some(host), Some(tree)) if host != tree)
    }
}
