//! File state: cwd, regular files with offsets, flags and O_APPEND, a shared file
//! description (dup), an unlinked open file.
//!
//! Unsafe: raw fcntl/lseek/dup on fds this module opened.
#![allow(unsafe_code)]

use crust_zdtm::testlib::{ensure, fill_pattern, random_u64, Test};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileExt, MetadataExt};

fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut words = vec![0u64; len / 8];
    fill_pattern(&mut words, seed);
    words.iter().flat_map(|word| word.to_ne_bytes()).collect()
}

fn fd_flags(fd: i32) -> (i32, i32) {
    // SAFETY: fcntl queries on an fd we own.
    unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    }
}

/// The working directory: a random directory inside the output dir.
pub fn cwd(test: &mut Test) -> Result<(), String> {
    let dir = test.path(&format!("cwd-{:016x}/sub dir", random_u64()));
    std::fs::create_dir_all(&dir).map_err(|error| format!("mkdir {}: {error}", dir.display()))?;
    std::env::set_current_dir(&dir).map_err(|error| format!("chdir {}: {error}", dir.display()))?;
    let marker = format!("{:016x}", random_u64());
    std::fs::write("marker", &marker).map_err(|error| format!("write marker: {error}"))?;
    let expected = std::env::current_dir().map_err(|error| format!("getcwd: {error}"))?;
    test.ready();
    test.wait_for_term();
    let now = std::env::current_dir().map_err(|error| format!("getcwd: {error}"))?;
    ensure(now == expected, || {
        format!("cwd {}, was {}", now.display(), expected.display())
    })?;
    let read_back =
        std::fs::read_to_string("marker").map_err(|error| format!("read ./marker: {error}"))?;
    ensure(read_back == marker, || {
        "relative ./marker has other content".into()
    })
}

/// Regular files: read-only at a random offset, read-write at a random offset, O_APPEND,
/// O_CLOEXEC, and a dup sharing one file description (offset moves together).
pub fn file_offsets(test: &mut Test) -> Result<(), String> {
    let len = 64 * 1024;
    let seed = random_u64();
    let content = pattern_bytes(len, seed);
    let data_path = test.path("data.bin");
    std::fs::write(&data_path, &content).map_err(|error| format!("write data: {error}"))?;

    let mut read_only =
        std::fs::File::open(&data_path).map_err(|error| format!("open ro: {error}"))?;
    let read_offset = (random_u64() % (len as u64 / 2)) & !7;
    read_only
        .seek(SeekFrom::Start(read_offset))
        .map_err(|error| format!("seek: {error}"))?;
    // SAFETY: dup of an fd we own; the new fd is wrapped at once.
    let shared_fd = unsafe { libc::dup(read_only.as_raw_fd()) };
    ensure(shared_fd >= 0, || "dup failed".into())?;
    // SAFETY: shared_fd is a fresh fd nobody else owns.
    let shared = unsafe { std::fs::File::from_raw_fd(shared_fd) };

    let rw_path = test.path("rw.bin");
    let mut read_write = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&rw_path)
        .map_err(|error| format!("open rw: {error}"))?;
    read_write
        .write_all(&content[..len / 2])
        .map_err(|error| format!("write rw: {error}"))?;
    let rw_offset = random_u64() % (len as u64 / 2);
    read_write
        .seek(SeekFrom::Start(rw_offset))
        .map_err(|error| format!("seek rw: {error}"))?;

    let append_path = test.path("append.log");
    let mut append = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&append_path)
        .map_err(|error| format!("open append: {error}"))?;
    let first_line = format!("before {:016x}\n", random_u64());
    append
        .write_all(first_line.as_bytes())
        .map_err(|error| format!("append: {error}"))?;

    let mut cloexec_less =
        std::fs::File::open(&data_path).map_err(|error| format!("open: {error}"))?;
    // SAFETY: clears FD_CLOEXEC on our own fd.
    unsafe { libc::fcntl(cloexec_less.as_raw_fd(), libc::F_SETFD, 0) };
    cloexec_less
        .seek(SeekFrom::End(0))
        .map_err(|error| format!("seek end: {error}"))?;

    let fds = [
        read_only.as_raw_fd(),
        shared.as_raw_fd(),
        read_write.as_raw_fd(),
        append.as_raw_fd(),
        cloexec_less.as_raw_fd(),
    ];
    let flags_before: Vec<(i32, i32)> = fds.iter().map(|fd| fd_flags(*fd)).collect();
    test.ready();
    test.wait_for_term();

    for (fd, before) in fds.iter().zip(&flags_before) {
        let after = fd_flags(*fd);
        ensure(after == *before, || {
            format!("fd {fd}: F_GETFL/F_GETFD {after:?}, was {before:?}")
        })?;
    }
    let position = |file: &mut std::fs::File| {
        file.stream_position()
            .map_err(|error| format!("tell: {error}"))
    };
    ensure(position(&mut read_only)? == read_offset, || {
        "read-only offset changed".into()
    })?;
    ensure(position(&mut read_write)? == rw_offset, || {
        "read-write offset changed".into()
    })?;
    ensure(position(&mut append)? == first_line.len() as u64, || {
        "append offset changed".into()
    })?;
    ensure(position(&mut cloexec_less)? == len as u64, || {
        "end offset changed".into()
    })?;
    let mut word = [0u8; 8];
    read_only
        .read_exact(&mut word)
        .map_err(|error| format!("read: {error}"))?;
    let at = read_offset as usize;
    ensure(word == content[at..at + 8], || {
        "data at the offset differs".into()
    })?;
    let mut shared_for_tell = shared;
    ensure(position(&mut shared_for_tell)? == read_offset + 8, || {
        "dup'd fd no longer shares the file description (offset did not move with it)".into()
    })?;
    let second_line = "after restore\n";
    append
        .write_all(second_line.as_bytes())
        .map_err(|error| format!("append after: {error}"))?;
    let appended =
        std::fs::read_to_string(&append_path).map_err(|error| format!("read append: {error}"))?;
    ensure(appended == format!("{first_line}{second_line}"), || {
        format!("append file holds {appended:?}")
    })?;
    let mut rw_word = [0u8; 8];
    read_write
        .read_exact_at(&mut rw_word, 0)
        .map_err(|error| format!("pread rw: {error}"))?;
    ensure(rw_word == content[..8], || "rw file content differs".into())
}

/// An open file whose name is gone: content, offset and `(deleted)` link survive.
pub fn unlinked_file(test: &mut Test) -> Result<(), String> {
    let len = 128 * 1024 + 123;
    let seed = random_u64();
    let mut content = pattern_bytes(len + 5, seed);
    content.truncate(len);
    let path = test.path("unlinked.bin");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|error| format!("open: {error}"))?;
    file.write_all(&content)
        .map_err(|error| format!("write: {error}"))?;
    let offset = random_u64() % len as u64;
    file.seek(SeekFrom::Start(offset))
        .map_err(|error| format!("seek: {error}"))?;
    std::fs::remove_file(&path).map_err(|error| format!("unlink: {error}"))?;
    test.ready();
    test.wait_for_term();
    let metadata = file.metadata().map_err(|error| format!("fstat: {error}"))?;
    ensure(metadata.nlink() == 0, || {
        format!("nlink {} after restore, expected 0", metadata.nlink())
    })?;
    ensure(metadata.len() == len as u64, || {
        format!("size {}, was {len}", metadata.len())
    })?;
    ensure(file.stream_position().ok() == Some(offset), || {
        "offset changed".into()
    })?;
    let mut read_back = vec![0u8; len];
    file.read_exact_at(&mut read_back, 0)
        .map_err(|error| format!("pread: {error}"))?;
    ensure(read_back == content, || {
        "unlinked file content differs".into()
    })?;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|error| format!("readlink: {error}"))?;
    ensure(link.to_string_lossy().ends_with(" (deleted)"), || {
        format!("fd link {} is not deleted", link.display())
    })?;
    ensure(!path.exists(), || "the unlinked name came back".into())
}
