//! Writes what the dump half of files found: fdinfo-N.img per process, and for the
//! tree files.img, pipe and FIFO data, tty-info, tcp-stream, memfd, file locks, socket
//! queues, ghost files and remap-fpath.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crust_images::pb;
use crust_images::ImageKind;

use crate::sys;
use super::{DumpedFd, FileDumpError, FileTable};
use super::io_err;

/// Writes one process's fd table, fdinfo-N.img (N is its files id).
pub(crate) fn write_fdinfo(pid: i32, dir: &Path, fds: &[DumpedFd], files_id: u32) -> Result<(), FileDumpError> {
    let image = |source| FileDumpError::Image { pid, source };
    let mut w = crate::private::create_image(dir, ImageKind::Fdinfo, files_id as u64).map_err(image)?;
    for fd in fds {
        w.write_entry(&pb::FdinfoEntry {
            id: fd.id,
            flags: if fd.cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: fd.kind as i32,
            fd: fd.fd,
            ..Default::default()
        })
        .map_err(image)?;
    }
    w.finish().map_err(image)?;
    Ok(())
}

/// Writes the tree's files.img and, for unlinked files, ghost-file and remap-fpath.
pub(crate) fn write_images(pid: i32, dir: &Path, files: &FileTable, first_shmem_pages_id: u32) -> Result<(), FileDumpError> {
    let image = |source| FileDumpError::Image { pid, source };
    let mut w = crate::private::create_image(dir, ImageKind::Files, 0).map_err(image)?;
    for entry in &files.entries {
        w.write_entry(entry).map_err(image)?;
    }
    w.finish().map_err(image)?;

    for (kind, data) in [(ImageKind::PipesData, &files.pipe_data), (ImageKind::FifoData, &files.fifo_data)] {
        if data.is_empty() {
            continue;
        }
        let mut w = crate::private::create_image(dir, kind, 0).map_err(image)?;
        for (pipe_id, contents) in data {
            w.write_entry(&pb::PipeDataEntry { pipe_id: *pipe_id, bytes: contents.data.len() as u32, size: Some(contents.size) })
                .map_err(image)?;
            w.write_payload(&contents.data).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }
    if !files.tty_infos.is_empty() {
        let mut w = crate::private::create_image(dir, ImageKind::TtyInfo, 0).map_err(image)?;
        for info in &files.tty_infos {
            w.write_entry(info).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }
    for (ino, connection) in &files.tcp.connections {
        let mut w = crate::private::create_image(dir, ImageKind::TcpStream, *ino as u64).map_err(image)?;
        w.write_entry(&connection.stream).map_err(image)?;
        w.write_payload(&connection.inq).map_err(image)?;
        w.write_payload(&connection.outq).map_err(image)?;
        w.finish().map_err(image)?;
    }
    // memfd data takes pages ids after every process's.
    files.memfds.write(dir, first_shmem_pages_id, files.id_maps.as_ref()).map_err(|what| FileDumpError::Unsupported { pid, what: format!("memfd data: {what}") })?;
    if !files.locks.is_empty() {
        let mut w = crate::private::create_image(dir, ImageKind::FileLocks, 0).map_err(image)?;
        for lock in &files.locks {
            w.write_entry(lock).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }
    if !files.sk_queues.is_empty() {
        let mut w = crate::private::create_image(dir, ImageKind::SkQueues, 0).map_err(image)?;
        for (id_for, message, in_flight) in &files.sk_queues {
            let scm = if in_flight.is_empty() { Vec::new() } else { vec![pb::ScmEntry { r#type: libc::SCM_RIGHTS as u32, rights: in_flight.clone() }] };
            w.write_entry(&pb::SkPacketEntry { id_for: *id_for, length: message.len() as u32, scm }).map_err(image)?;
            w.write_payload(message).map_err(image)?;
        }
        w.finish().map_err(image)?;
    }

    if !files.ghosts.is_empty() {
        for (ghost_id, source, meta) in &files.ghosts {
            let mut w = crate::private::create_image(dir, ImageKind::GhostFile, *ghost_id as u64).map_err(image)?;
            w.write_entry(&pb::GhostFileEntry {
                uid: files.id_maps.as_ref().map_or(meta.uid(), |maps| maps.uid_inside(meta.uid())),
                gid: files.id_maps.as_ref().map_or(meta.gid(), |maps| maps.gid_inside(meta.gid())),
                mode: meta.mode(),
                dev: Some(kernel_dev(meta.dev())),
                ino: Some(meta.ino()),
                size: Some(meta.len()),
                chunks: Some(true),
                ..Default::default()
            })
            .map_err(image)?;
            // Data runs only (SEEK_DATA/SEEK_HOLE), a MiB at a time: holes stay holes and
            // a big file never sits in memory whole.
            let contents = File::open(source).map_err(io_err(pid, format!("open {}", source.display())))?;
            let mut chunk = vec![0u8; 1 << 20];
            let mut at = 0u64;
            while at < meta.len() {
                let Some(data) = sys::file::seek_data_or_hole(&contents, at, true).map_err(io_err(pid, "SEEK_DATA in unlinked file"))? else { break };
                let hole = sys::file::seek_data_or_hole(&contents, data, false).map_err(io_err(pid, "SEEK_HOLE in unlinked file"))?.unwrap_or(meta.len()).min(meta.len());
                if hole <= data {
                    break;
                }
                w.write_entry(&pb::GhostChunkEntry { len: hole - data, off: data }).map_err(image)?;
                let mut offset = data;
                while offset < hole {
                    let want = chunk.len().min((hole - offset) as usize);
                    std::os::unix::fs::FileExt::read_exact_at(&contents, &mut chunk[..want], offset)
                        .map_err(io_err(pid, format!("read unlinked file at {offset}")))?;
                    w.write_payload(&chunk[..want]).map_err(image)?;
                    offset += want as u64;
                }
                at = hole;
            }
            w.finish().map_err(image)?;
        }
        let mut remap = crate::private::create_image(dir, ImageKind::RemapFpath, 0).map_err(image)?;
        for &(reg_id, ghost_id) in &files.ghost_remaps {
            remap
                .write_entry(&pb::RemapFilePathEntry { orig_id: reg_id, remap_id: ghost_id, remap_type: Some(pb::RemapType::Ghost as i32) })
                .map_err(image)?;
        }
        remap.finish().map_err(image)?;
    }
    Ok(())
}

/// A device number as the kernel encodes it (`major << 20 | minor`, `new_encode_dev`'s
/// inverse of `MKDEV`), which CRIU's ghost_file_entry.dev holds, from the user-space
/// `dev_t` that stat gives.
fn kernel_dev(dev: u64) -> u32 {
    (libc::major(dev) << 20) | libc::minor(dev)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ghost_devices_are_in_the_kernel_encoding() {
        // 254:0 (a device-mapper disk) and 8:17, as stat's dev_t and as CRIU writes them.
        assert_eq!(super::kernel_dev(libc::makedev(254, 0)), 254 << 20);
        assert_eq!(super::kernel_dev(libc::makedev(8, 17)), (8 << 20) | 17);
        assert_eq!(super::kernel_dev(libc::makedev(0, 65)), 65);
    }
}

