//! The dump half of memory when the pages go to a page server (`dump --page-server`):
//! the glue between the memory dumper and the wire (`page_server/`).
//!
//! - Each process's runs are sent as they are found (`ADD_F` headers written into the
//!   page copier's stream, so headers and pages stay in order; pages come from the
//!   target's pipes or process_vm_readv as for a local dump, then go out through the
//!   socket).
//! - With `--prev-images-dir` and a page server whose parent dump has the process,
//!   pages whose digest equals the parent's (`page_server/digests.rs`) go as PE_PARENT
//!   runs, without their bytes. Digests are taken (and kept in the images directory)
//!   only when a next dump can use them: the tree runs on (`pre-dump`,
//!   `--leave-running`).
//! - Shared memory objects and memfds are written into the images directory as for a
//!   local dump, then [`Session::ship_local_pagemaps`] sends them and removes them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crust_images::{ImageKind, ImageReader, PagemapReader};

use super::pages::{read_remote, PageCopier};
use super::remote_pipes::RemotePipes;
use crate::page_server::digests::{self, Digests};
use crate::page_server::proto::{Destination, Header, PE_PARENT, PE_PRESENT};
use crate::page_server::{Client, PageServerError};
use crate::sys;

/// The connection of one dump to its page server.
pub(crate) struct Session {
    client: Client,
    /// The dump's images directory (the digests are kept there).
    dir: PathBuf,
    /// The sending side's parent dump (its digests).
    parent_dir: Option<PathBuf>,
    /// Take and keep digests for a next dump.
    keep_digests: bool,
    /// Pages sent, and sent as in the parent.
    pub(crate) sent: u64,
    pub(crate) in_parent: u64,
}

impl Session {
    /// Connects to the page server before anything is frozen.
    pub(crate) fn connect(address: &str, port: u16, dir: &Path, parent_dir: Option<&Path>, keep_digests: bool) -> Result<Session, PageServerError> {
        let client = Client::connect(address, port)?;
        digests::remove_all(dir).map_err(|source| PageServerError::Io {
            address: client.address().to_string(),
            what: format!("remove earlier page digests from {}", dir.display()),
            source,
        })?;
        Ok(Session { client, dir: dir.to_path_buf(), parent_dir: parent_dir.map(Path::to_path_buf), keep_digests, sent: 0, in_parent: 0 })
    }

    /// Opens process `image_pid`'s pagemap on the server.
    pub(crate) fn open_process(&mut self, image_pid: u64) -> Result<ProcessSender, PageServerError> {
        let destination = Destination::Process(image_pid);
        let server_has_parent = self.client.open(destination)?;
        let parent = match (&self.parent_dir, server_has_parent) {
            (Some(dir), true) => Digests::read(dir, image_pid).map_err(|source| PageServerError::Io {
                address: self.client.address().to_string(),
                what: format!("read {}", dir.join(digests::file_name(image_pid)).display()),
                source,
            })?,
            _ => None,
        };
        if self.parent_dir.is_some() && parent.is_none() {
            log::info!("pid {image_pid}: every page sent (the page server's parent dump has the process: {server_has_parent}; digests here: no)");
        }
        let page_size = sys::page_size();
        Ok(ProcessSender {
            destination,
            stream: self.client.stream()?,
            parent,
            digests: self.keep_digests.then(|| Digests { page_size, entries: Vec::new() }),
            buffer: Vec::new(),
            sent: 0,
            in_parent: 0,
        })
    }

    /// Closes a process: its digests kept, its counts added.
    pub(crate) fn close_process(&mut self, sender: ProcessSender) -> Result<(), PageServerError> {
        self.sent += sender.sent;
        self.in_parent += sender.in_parent;
        if let (Some(digests), Destination::Process(id)) = (sender.digests, sender.destination) {
            digests.write(&self.dir, id).map_err(|source| PageServerError::Io {
                address: self.client.address().to_string(),
                what: format!("write {}", self.dir.join(digests::file_name(id)).display()),
                source,
            })?;
        }
        Ok(())
    }

    /// Sends every `pagemap-shmem-*.img` of the images directory (shared memory
    /// objects, memfds) with its pages, and removes them here.
    pub(crate) fn ship_local_pagemaps(&mut self) -> Result<(), PageServerError> {
        let dir = self.dir.clone();
        let read_dir = std::fs::read_dir(&dir).map_err(self.io(format!("read {}", dir.display())))?;
        let mut shmids: Vec<u64> = read_dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| match ImageKind::from_file_name(&name) {
                Some((ImageKind::PagemapShmem, id)) => Some(id),
                _ => None,
            })
            .collect();
        shmids.sort_unstable();
        let page = sys::page_size();
        for shmid in shmids {
            let pagemap_path = dir.join(ImageKind::PagemapShmem.file_name(shmid));
            let image_error = |source| PageServerError::Image { path: pagemap_path.clone(), source };
            let mut reader = ImageReader::open(&pagemap_path).map_err(image_error)?;
            let head: crust_images::pb::PagemapHead = reader.next_entry().map_err(image_error)?.unwrap_or_default();
            let mut entries = Vec::new();
            while let Some(entry) = reader.next_entry::<crust_images::pb::PagemapEntry>().map_err(image_error)? {
                entries.push(entry);
            }
            let pages_path = dir.join(ImageKind::Pages.file_name(u64::from(head.pages_id)));
            let pages = File::open(&pages_path).map_err(self.io(format!("open {}", pages_path.display())))?;
            let pages_len = pages.metadata().map_err(self.io(format!("stat {}", pages_path.display())))?.len();
            let pagemap = PagemapReader::from_parts(reader.file_name(), &head, &entries, pages_len, page).map_err(image_error)?;
            let destination = Destination::Shmem(shmid);
            self.client.open(destination)?;
            let mut buffer = Vec::new();
            for run in pagemap.runs() {
                let Some(offset) = run.pages_offset else {
                    self.client.send(&Header::run(destination, run.vaddr, run.nr_pages, run.flags))?;
                    continue;
                };
                // In pieces of at most 1 MiB, each a run of its own.
                const PIECE: u64 = 256;
                let mut done = 0;
                while done < run.nr_pages {
                    let count = PIECE.min(run.nr_pages - done);
                    buffer.resize((count * page) as usize, 0);
                    pages.read_exact_at(&mut buffer, offset + done * page).map_err(self.io(format!("read {}", pages_path.display())))?;
                    self.client.send_run(&Header::run(destination, run.vaddr + done * page, count, run.flags), &buffer)?;
                    self.sent += count;
                    done += count;
                }
            }
            drop(pages);
            std::fs::remove_file(&pagemap_path).map_err(self.io(format!("remove {}", pagemap_path.display())))?;
            std::fs::remove_file(&pages_path).map_err(self.io(format!("remove {}", pages_path.display())))?;
        }
        Ok(())
    }

    /// Waits until the server has written everything (`FLUSH`).
    pub(crate) fn flush(&mut self) -> Result<(), PageServerError> {
        self.client.flush()?;
        log::info!("page server {}: {} pages sent, {} pages left in the parent dump", self.client.address(), self.sent, self.in_parent);
        Ok(())
    }

    fn io(&self, what: String) -> impl FnOnce(io::Error) -> PageServerError {
        let address = self.client.address().to_string();
        move |source| PageServerError::Io { address, what, source }
    }
}

/// One process's pagemap being sent.
pub(crate) struct ProcessSender {
    destination: Destination,
    stream: File,
    parent: Option<Digests>,
    digests: Option<Digests>,
    buffer: Vec<u8>,
    sent: u64,
    in_parent: u64,
}

impl ProcessSender {
    /// Whether pages go out as they are, without digests (then they may come through the
    /// target's page pipes).
    pub(crate) fn streams_plainly(&self) -> bool {
        self.parent.is_none() && self.digests.is_none()
    }

    /// The socket, for the page copier to write to.
    pub(crate) fn stream(&self) -> io::Result<File> {
        self.stream.try_clone()
    }

    /// Sends the run of `pages` pages at `addr` of stopped process `pid` through
    /// `copier`; the pages sent with their bytes.
    #[allow(clippy::too_many_arguments)] // one caller, each argument a different thing
    pub(crate) fn send_run(
        &mut self,
        copier: &mut PageCopier,
        pid: i32,
        mem: &File,
        addr: u64,
        pages: u64,
        readable: bool,
        pipes: Option<&mut RemotePipes>,
    ) -> io::Result<u64> {
        let page = sys::page_size();
        if self.parent.is_none() && self.digests.is_none() {
            copier.append_bytes(&Header::run(self.destination, addr, pages, PE_PRESENT).encode())?;
            match pipes {
                Some(remote) => copier.copy_spliced(mem, addr, pages * page, readable, &mut |index, from, len| remote.vmsplice(index, from, len))?,
                None => copier.copy(mem, addr, pages * page, readable)?,
            }
            self.sent += pages;
            return Ok(pages);
        }
        // Read in 1 MiB steps, a digest per page; runs of pages equal to the parent's go
        // as PE_PARENT, the others with the bytes just read.
        let mut sent = 0;
        let mut done = 0u64;
        while done < pages {
            let count = (super::pages::READ_BUFFER as u64 / page).min(pages - done);
            let start = addr + done * page;
            self.buffer.resize((count * page) as usize, 0);
            let read = if readable { read_remote(pid, &mut self.buffer, start).unwrap_or(0) } else { 0 };
            if read < self.buffer.len() {
                mem.read_exact_at(&mut self.buffer[read..], start + read as u64)?;
            }
            let mut index = 0usize;
            while index < count as usize {
                let same_at = |i: usize, me: &Self| {
                    let at = start + i as u64 * page;
                    let bytes = &me.buffer[i * page as usize..(i + 1) * page as usize];
                    (digests::digest(bytes), at)
                };
                let (first_digest, first_at) = same_at(index, self);
                let first_same = self.parent.as_ref().and_then(|p| p.get(first_at)) == Some(first_digest);
                let mut end = index;
                while end < count as usize {
                    let (d, at) = if end == index { (first_digest, first_at) } else { same_at(end, self) };
                    let same = self.parent.as_ref().and_then(|p| p.get(at)) == Some(d);
                    if same != first_same {
                        break;
                    }
                    if let Some(digests) = self.digests.as_mut() {
                        digests.entries.push((at, d));
                    }
                    end += 1;
                }
                let run_pages = (end - index) as u64;
                if first_same {
                    copier.append_bytes(&Header::run(self.destination, first_at, run_pages, PE_PARENT).encode())?;
                    self.in_parent += run_pages;
                } else {
                    copier.append_bytes(&Header::run(self.destination, first_at, run_pages, PE_PRESENT).encode())?;
                    let bytes = &self.buffer[index * page as usize..end * page as usize];
                    copier.append_bytes(bytes)?;
                    sent += run_pages;
                }
                index = end;
            }
            done += count;
        }
        self.sent += sent;
        Ok(sent)
    }
}
