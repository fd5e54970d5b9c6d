//! Pipes and FIFOs: their unread data is copied at dump with `tee` (nothing is consumed,
//! so a `--leave-running` target reads exactly what it would have), and written back into
//! a new pipe by the broker, which creates both ends at once so ends held by different
//! processes stay one pipe.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys;
use super::{file_io, FileError};
use crust_images::pb;


/// What a pipe (or FIFO) holds: capacity and unread bytes.
pub(crate) struct PipeContents {
    pub(crate) size: u32,
    pub(crate) data: Vec<u8>,
}

/// Reads the capacity and unread data of the pipe or FIFO behind `/proc/PID/fd/FD`
/// without consuming it: a new read description is opened through /proc and its
/// buffers are `tee`d into a pipe of ours.
pub(crate) fn read_contents(pid: i32, fd: u32) -> std::io::Result<PipeContents> {
    let source = sys::file::open_path(&format!("/proc/{pid}/fd/{fd}"), libc::O_RDONLY | libc::O_NONBLOCK)?;
    let size = sys::file::pipe_size(&source)?;
    let queued = sys::file::bytes_queued(source.as_raw_fd())? as usize;
    let mut data = Vec::new();
    if queued > 0 {
        let (read_end, write_end) = sys::file::create_pipe()?;
        sys::file::set_pipe_size(&write_end, size)?;
        let copied = sys::file::copy_pipe(&source, &write_end, queued)?;
        if copied != queued {
            return Err(std::io::Error::other(format!("tee copied {copied} of {queued} queued bytes")));
        }
        data.resize(queued, 0);
        let mut at = 0;
        while at < queued {
            let n = sys::file::read_some(&read_end, &mut data[at..])?;
            if n == 0 {
                break;
            }
            at += n;
        }
    }
    Ok(PipeContents { size, data })
}

/// Creates every pipe of the image once, both ends, with its capacity and unread data,
/// and one open description per pipe entry (a second description of one end is a reopen
/// through /proc). Returns file id → fd, with each description's status flags set.
pub(crate) fn create_pipes(
    pipes: &[pb::PipeEntry],
    contents: &BTreeMap<u32, PipeContents>,
) -> Result<BTreeMap<u32, OwnedFd>, FileError> {
    let mut by_pipe: BTreeMap<u32, Vec<&pb::PipeEntry>> = BTreeMap::new();
    for pipe in pipes {
        by_pipe.entry(pipe.pipe_id).or_default().push(pipe);
    }
    let mut out = BTreeMap::new();
    for (pipe_id, ends) in by_pipe {
        let (read_end, write_end) = sys::file::create_pipe().map_err(file_io(format!("pipe {pipe_id}: pipe2")))?;
        if let Some(contents) = contents.get(&pipe_id) {
            fill(&write_end, &format!("pipe {pipe_id}"), contents)?;
        }
        let (mut read_used, mut write_used) = (false, false);
        for end in ends {
            let reading = end.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY;
            let (original, used) = if reading { (&read_end, &mut read_used) } else { (&write_end, &mut write_used) };
            let fd = if *used {
                sys::file::reopen(original, end.flags as i32 & libc::O_ACCMODE)
            } else {
                original.try_clone()
            }
            .map_err(file_io(format!("pipe {pipe_id}: end {}", end.id)))?;
            *used = true;
            sys::file::set_status_flags(&fd, end.flags as i32)
                .map_err(file_io(format!("pipe {pipe_id}: flags of end {}", end.id)))?;
            out.insert(end.id, fd);
        }
    }
    Ok(out)
}

/// Gives a new pipe (or FIFO) its capacity and writes its unread data. Data the capacity
/// cannot hold is refused: the write would wait forever for a reader (an image whose
/// `size` is smaller than its `bytes`). A size of 0 (absent) keeps the kernel's default.
fn fill(pipe: &OwnedFd, what: &str, contents: &PipeContents) -> Result<(), FileError> {
    let capacity = if contents.size == 0 {
        sys::file::pipe_size(pipe)
    } else {
        sys::file::set_pipe_size(pipe, contents.size)
    }
    .map_err(file_io(format!("{what}: set size {}", contents.size)))?;
    let queued = sys::file::bytes_queued(pipe.as_raw_fd()).map_err(file_io(format!("{what}: FIONREAD")))?;
    if contents.data.len() as u64 + queued as u64 > capacity as u64 {
        return Err(FileError::refused(format!(
            "{what}: {} unread bytes do not fit its capacity of {capacity} bytes (pipe_data_entry.size {}{})",
            contents.data.len(),
            contents.size,
            if queued > 0 { format!(", {queued} bytes already queued") } else { String::new() }
        )));
    }
    sys::file::write_all(pipe, &contents.data).map_err(file_io(format!("{what}: write {} unread bytes", contents.data.len())))
}

/// Opens every FIFO entry at its path with its flags; the FIFO's unread data is written
/// first, through a read-write description held while the others open (so no open
/// blocks waiting for the other side).
pub(crate) fn open_fifos(
    fifos: &[pb::FifoEntry],
    regs: &BTreeMap<u32, pb::RegFileEntry>,
    contents: &BTreeMap<u32, PipeContents>,
) -> Result<BTreeMap<u32, OwnedFd>, FileError> {
    let mut holders: BTreeMap<u32, OwnedFd> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for fifo in fifos {
        let reg_id = fifo.regf_id.unwrap_or(fifo.id);
        let reg = regs.get(&reg_id).ok_or_else(|| FileError::refused(format!("fifo {}: reg file {reg_id} is not in files.img", fifo.id)))?;
        if let std::collections::btree_map::Entry::Vacant(slot) = holders.entry(fifo.pipe_id) {
            let holder = sys::file::open_path(&reg.name, libc::O_RDWR | libc::O_NONBLOCK)
                .map_err(file_io(format!("open fifo {}", reg.name)))?;
            if let Some(contents) = contents.get(&fifo.pipe_id) {
                fill(&holder, &format!("fifo {}", reg.name), contents)?;
            }
            slot.insert(holder);
        }
        let flags = reg.flags as i32 & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC);
        let fd = sys::file::open_path(&reg.name, flags).map_err(file_io(format!("open fifo {}", reg.name)))?;
        out.insert(fifo.id, fd);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(pipe_id: u32) -> Vec<pb::PipeEntry> {
        [(1, libc::O_RDONLY), (2, libc::O_WRONLY)]
            .into_iter()
            .map(|(id, flags)| pb::PipeEntry { id, pipe_id, flags: flags as u32, fown: Default::default() })
            .collect()
    }

    #[test]
    fn unread_data_beyond_the_capacity_is_refused_not_waited_on() {
        // A dumped pipe of 256 KiB holding 8 KiB, its size edited to 77 (one page).
        let contents = BTreeMap::from([(7, PipeContents { size: 77, data: vec![0x5a; 8192] })]);
        let error = create_pipes(&ends(7), &contents).err().expect("8 KiB in a one-page pipe is refused");
        let text = error.to_string();
        assert!(text.contains("pipe 7: 8192 unread bytes do not fit its capacity of 4096 bytes"), "{text}");
    }

    #[test]
    fn unread_data_comes_back_in_a_pipe_of_its_size() {
        let data: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let contents = BTreeMap::from([(3, PipeContents { size: 1 << 17, data: data.clone() })]);
        let made = create_pipes(&ends(3), &contents).expect("pipe made");
        assert_eq!(sys::file::pipe_size(&made[&1]).unwrap(), 1 << 17);
        let mut back = vec![0; data.len()];
        let mut at = 0;
        while at < back.len() {
            at += sys::file::read_some(&made[&1], &mut back[at..]).unwrap();
        }
        assert_eq!(back, data);
        // A size of 0 (absent) keeps the kernel's default capacity.
        let contents = BTreeMap::from([(4, PipeContents { size: 0, data: vec![1; 10] })]);
        let made = create_pipes(&ends(4), &contents).expect("pipe made");
        assert_eq!(sys::file::pipe_size(&made[&1]).unwrap(), 65536);
    }
}
