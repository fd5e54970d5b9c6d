//! GNU tar archives (tmpfs images), tested three ways:
//!
//! - fixtures made by GNU tar 1.34 with CRIU's flags (`tests/fixtures/tmpfs/`, one of
//!   them a real CRIU image of a container's /dev): read to the snapshotted entries and
//!   written back byte for byte; these run everywhere;
//! - a tree made on a tmpfs by `make-tree.sh` (plus a socket), archived by GNU tar with
//!   CRIU's exact command: crust reads the same entries and data as `lstat`/`SEEK_DATA`
//!   show on the live tree, and writes the same bytes from entries built from the live
//!   tree alone;
//! - an archive crust writes from entries built here is extracted by GNU tar with CRIU's
//!   extract command into the same tree: contents, holes, modes, owners, mtimes, links,
//!   devices.
//!
//! The last two need GNU tar, a tmpfs at /dev/shm and root (devices, owners) and say
//! why they skip otherwise.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crust_images::tar::{
    gzip_reader, gzip_writer, list_entries, ArchiveReader, ArchiveWriter, Entry, EntryKind, Extent,
    FileLayout, TarReadError,
};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tmpfs")
}

/// An entry and, for a file, its whole contents (holes as zeros).
type Member = (Entry, Vec<u8>);

fn gunzip(gzip: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(gzip)
        .read_to_end(&mut plain)
        .expect("gunzip");
    plain
}

/// Every entry of a plain tar stream with its contents.
fn read_members<R: Read>(mut reader: ArchiveReader<R>) -> Result<Vec<Member>, TarReadError> {
    let mut members = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        let mut contents = Vec::new();
        if let EntryKind::File(layout) = &entry.kind {
            contents = vec![0u8; layout.size as usize];
            reader.read_data(|offset, bytes| {
                contents[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
                Ok(())
            })?;
        }
        members.push((entry, contents));
    }
    Ok(members)
}

/// Reads every entry and its data, keeping nothing.
fn drain<R: Read>(mut reader: ArchiveReader<R>) -> Result<usize, TarReadError> {
    let mut count = 0;
    while reader.next_entry()?.is_some() {
        reader.read_data(|_, _| Ok(()))?;
        count += 1;
    }
    Ok(count)
}

fn write_members(members: &[Member]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new());
    for (entry, contents) in members {
        writer
            .append_file(entry, &mut contents.as_slice())
            .unwrap_or_else(|error| panic!("{error}"));
    }
    writer.finish().expect("finish")
}

/// FNV-1a: a stable content fingerprint for snapshots.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One line per member, as a listing to snapshot.
fn describe(members: &[Member]) -> String {
    let mut lines = Vec::new();
    for (entry, contents) in members {
        let kind = match &entry.kind {
            EntryKind::Directory => "dir".to_owned(),
            EntryKind::File(layout) => {
                let extents: Vec<String> = layout
                    .data
                    .iter()
                    .map(|extent| format!("{}+{}", extent.offset, extent.length))
                    .collect();
                format!(
                    "file size {} data [{}] fnv {:016x}",
                    layout.size,
                    extents.join(" "),
                    fingerprint(contents)
                )
            }
            EntryKind::HardLink { target } => format!("hardlink -> {}", target.display()),
            EntryKind::Symlink { target } => format!("symlink -> {}", target.display()),
            EntryKind::CharDevice { major, minor } => format!("char {major}:{minor}"),
            EntryKind::BlockDevice { major, minor } => format!("block {major}:{minor}"),
            EntryKind::Fifo => "fifo".to_owned(),
            EntryKind::Socket => "socket".to_owned(),
        };
        lines.push(format!(
            "{} {:04o} {}:{} mtime {} {kind}",
            entry.path.display(),
            entry.mode,
            entry.uid,
            entry.gid,
            entry.mtime
        ));
    }
    lines.join("\n")
}

#[test]
fn gnu_fixtures_read_to_their_entries_and_write_back_byte_for_byte() {
    for name in ["gnu-tree.tar.gz", "tmpfs-dev-42.tar.gz.img"] {
        let gzip = std::fs::read(fixtures_dir().join(name)).expect("read fixture");
        let members = read_members(gzip_reader(name, gzip.as_slice()))
            .unwrap_or_else(|error| panic!("{error}"));
        insta::assert_snapshot!(format!("tar_{name}"), describe(&members));
        assert_eq!(
            write_members(&members),
            gunzip(&gzip),
            "{name}: crust's archive differs from GNU tar's"
        );
        let listed = list_entries(name, &gzip).expect("list");
        assert_eq!(listed.len(), members.len());
    }
}

#[test]
fn gzip_round_trip() {
    let gzip = std::fs::read(fixtures_dir().join("gnu-tree.tar.gz")).expect("read fixture");
    let members = read_members(gzip_reader("gnu-tree.tar.gz", gzip.as_slice())).expect("read");
    let mut writer = gzip_writer(Vec::new());
    for (entry, contents) in &members {
        writer
            .append_file(entry, &mut contents.as_slice())
            .expect("append");
    }
    let ours = writer.finish_gzip().expect("finish");
    assert_eq!(gunzip(&ours), gunzip(&gzip));
    let again = read_members(gzip_reader("ours", ours.as_slice())).expect("read ours");
    assert_eq!(again, members);
}

#[test]
fn every_truncation_of_an_archive_is_an_error_naming_the_image() {
    let gzip = std::fs::read(fixtures_dir().join("gnu-tree.tar.gz")).expect("read fixture");
    let plain = gunzip(&gzip);
    // the end-of-archive blocks start after the last entry's data; cutting anywhere
    // before them must fail
    let end = plain.len() - plain.iter().rev().take_while(|&&byte| byte == 0).count();
    let end = end.next_multiple_of(512);
    for cut in (0..end).step_by(97).chain([1, 511, 512, 513, end - 1]) {
        let result = drain(ArchiveReader::new("cut.tar", &plain[..cut]));
        let error = result.expect_err("a cut archive must not read cleanly");
        assert!(error.to_string().starts_with("cut.tar: "), "{error}");
    }
    for cut in [10, gzip.len() / 2, gzip.len() - 4] {
        let error = drain(gzip_reader("cut.tar.gz", &gzip[..cut])).expect_err("cut gzip");
        assert!(error.to_string().starts_with("cut.tar.gz: "), "{error}");
    }
}

/// A small archive with one entry of each kind, a sparse file of 30 one-block extents
/// (two extension blocks), long names and targets and base-256 numbers: the seed that
/// lets the tar fuzz target reach every branch in few bytes.
fn small_archive() -> (Vec<Member>, Vec<u8>) {
    let entry = |path: &str, kind: EntryKind| Entry {
        path: PathBuf::from(path),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
    };
    // 30 one-block extents, one per 1 KiB, the last one short
    let mut extents: Vec<Extent> = (0..30)
        .map(|index| Extent {
            offset: 1024 * index + 512,
            length: 512,
        })
        .collect();
    extents.last_mut().expect("30 extents").length = 7;
    let mut sparse_contents = vec![0u8; 30 * 1024];
    for extent in &extents {
        let start = extent.offset as usize;
        sparse_contents[start..start + extent.length as usize]
            .fill(b'a' + (extent.offset / 1024 % 26) as u8);
    }
    let long = format!("./{}", "x".repeat(110));
    let members: Vec<Member> = vec![
        (
            Entry {
                mode: 0o1777,
                ..entry(".", EntryKind::Directory)
            },
            Vec::new(),
        ),
        (
            entry("./dense", EntryKind::File(FileLayout::dense(3))),
            b"abc".to_vec(),
        ),
        (
            entry(
                "./sparse",
                EntryKind::File(FileLayout {
                    size: 30 * 1024,
                    data: extents,
                }),
            ),
            sparse_contents,
        ),
        (
            Entry {
                uid: 3_000_000,
                mtime: -1,
                ..entry(&long, EntryKind::File(FileLayout::dense(1)))
            },
            b"L".to_vec(),
        ),
        (
            entry(
                "./link",
                EntryKind::HardLink {
                    target: long.clone().into(),
                },
            ),
            Vec::new(),
        ),
        (
            Entry {
                mode: 0o777,
                ..entry(
                    "./sym",
                    EntryKind::Symlink {
                        target: "s".repeat(120).into(),
                    },
                )
            },
            Vec::new(),
        ),
        (entry("./fifo", EntryKind::Fifo), Vec::new()),
        (
            entry("./null", EntryKind::CharDevice { major: 1, minor: 3 }),
            Vec::new(),
        ),
        (
            entry("./loop", EntryKind::BlockDevice { major: 7, minor: 0 }),
            Vec::new(),
        ),
        (entry("./dir", EntryKind::Directory), Vec::new()),
    ];
    let archive = write_members(&members);
    (members, archive)
}

#[test]
fn small_fixture_matches_its_builder_and_reads_back() {
    let (members, archive) = small_archive();
    let path = fixtures_dir().join("crust-small.tar");
    if std::env::var_os("CRUST_UPDATE_FIXTURES").is_some() || !path.exists() {
        std::fs::write(&path, &archive).expect("write fixture");
    }
    assert!(
        std::fs::read(&path).expect("read fixture") == archive,
        "{} differs from its builder; rerun with CRUST_UPDATE_FIXTURES=1",
        path.display()
    );
    let read =
        read_members(ArchiveReader::new("crust-small.tar", archive.as_slice())).expect("read");
    assert_eq!(read, members);
    assert_eq!(archive.len() % 10240, 0, "whole records");
}

// ---- GNU tar interop ------------------------------------------------------------------

/// Why the interop tests cannot run here, if they cannot.
fn interop_skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (devices, owners)".to_owned());
    }
    match Command::new("tar").arg("--version").output() {
        Ok(output) if String::from_utf8_lossy(&output.stdout).contains("GNU tar") => {}
        Ok(_) => return Some("tar is not GNU tar".to_owned()),
        Err(_) => return Some("no tar binary (GNU tar)".to_owned()),
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let shm_is_tmpfs = mountinfo.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(4) == Some(&"/dev/shm") && line.contains(" - tmpfs ")
    });
    if !shm_is_tmpfs {
        return Some("/dev/shm is not a tmpfs".to_owned());
    }
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"))
}

/// A scratch directory on the tmpfs, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let path = PathBuf::from(format!(
            "/dev/shm/crust-tar-test-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("create scratch dir");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CRIU's dump command: the directory is tar's stdin and `--directory /proc/self/fd/0`.
fn gnu_tar_create(dir: &Path) -> Vec<u8> {
    let output = Command::new("tar")
        .args([
            "--create",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--one-file-system",
            "--check-links",
            "--preserve-permissions",
            "--sparse",
            "--numeric-owner",
            "--directory",
            "/proc/self/fd/0",
            ".",
        ])
        .stdin(File::open(dir).expect("open tree"))
        .stderr(Stdio::piped())
        .output()
        .expect("run tar");
    assert!(
        output.status.success(),
        "tar --create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// CRIU's restore command, the archive on stdin.
fn gnu_tar_extract(archive: &[u8], dir: &Path) {
    let scratch_archive = dir.with_extension("tar.gz");
    std::fs::write(&scratch_archive, archive).expect("write archive");
    let output = Command::new("tar")
        .args([
            "--extract",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--directory",
        ])
        .arg(dir)
        .stdin(File::open(&scratch_archive).expect("open archive"))
        .output()
        .expect("run tar");
    let _ = std::fs::remove_file(&scratch_archive);
    assert!(
        output.status.success(),
        "tar --extract: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The data extents of a file, by SEEK_DATA/SEEK_HOLE.
fn data_extents(file: &File, size: u64) -> Vec<Extent> {
    let mut extents = Vec::new();
    let mut offset: i64 = 0;
    let size = size as i64;
    while offset < size {
        // SAFETY: lseek on an fd we own; no memory is passed.
        let data = unsafe { libc::lseek(file.as_raw_fd(), offset, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: only a hole is left
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data, libc::SEEK_HOLE) };
        assert!(hole > data, "SEEK_HOLE after SEEK_DATA");
        extents.push(Extent {
            offset: data as u64,
            length: (hole - data) as u64,
        });
        offset = hole;
    }
    extents
}

/// The entry GNU tar (and the engine) would make of `path`, named `name`; hard links
/// are found by inode in the order of the calls.
fn entry_of_live_file(
    path: &Path,
    name: &Path,
    first_names: &mut HashMap<(u64, u64), PathBuf>,
) -> Option<Member> {
    let metadata = std::fs::symlink_metadata(path).expect("lstat");
    let file_type = metadata.file_type();
    let mut contents = Vec::new();
    let key = (metadata.dev(), metadata.ino());
    let kind = if !file_type.is_dir() && metadata.nlink() > 1 && first_names.contains_key(&key) {
        EntryKind::HardLink {
            target: first_names[&key].clone(),
        }
    } else if file_type.is_dir() {
        EntryKind::Directory
    } else if file_type.is_file() {
        let file = File::open(path).expect("open");
        let layout = FileLayout {
            size: metadata.len(),
            data: data_extents(&file, metadata.len()),
        };
        contents = std::fs::read(path).expect("read");
        EntryKind::File(layout)
    } else if file_type.is_symlink() {
        EntryKind::Symlink {
            target: std::fs::read_link(path).expect("readlink"),
        }
    } else if file_type.is_char_device() || file_type.is_block_device() {
        let (major, minor) = (libc::major(metadata.rdev()), libc::minor(metadata.rdev()));
        if file_type.is_char_device() {
            EntryKind::CharDevice { major, minor }
        } else {
            EntryKind::BlockDevice { major, minor }
        }
    } else if file_type.is_fifo() {
        EntryKind::Fifo
    } else {
        assert!(file_type.is_socket());
        return None;
    };
    if !file_type.is_dir() && metadata.nlink() > 1 {
        first_names.entry(key).or_insert_with(|| name.to_path_buf());
    }
    Some((
        Entry {
            path: name.to_path_buf(),
            kind,
            mode: metadata.mode() & 0o7777,
            uid: metadata.uid(),
            gid: metadata.gid(),
            mtime: metadata.mtime(),
        },
        contents,
    ))
}

/// Every name below `root` (root itself as `.`, others `./a/b`), sockets included.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut names = vec![PathBuf::from(".")];
    let mut pending = vec![PathBuf::from(".")];
    while let Some(dir) = pending.pop() {
        for dirent in std::fs::read_dir(root.join(&dir)).expect("readdir") {
            let dirent = dirent.expect("readdir");
            let name = dir.join(dirent.file_name());
            if dirent.file_type().expect("file type").is_dir() {
                pending.push(name.clone());
            }
            names.push(name);
        }
    }
    names
}

#[test]
fn gnu_tar_archives_of_a_tmpfs_read_back_and_write_identically() {
    if let Some(reason) = interop_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let scratch = Scratch::new("gnu");
    let script = fixtures_dir().join("make-tree.sh");
    let status = Command::new("sh")
        .arg(&script)
        .arg(&scratch.0)
        .status()
        .expect("run make-tree.sh");
    assert!(status.success(), "make-tree.sh failed");
    let socket =
        std::os::unix::net::UnixListener::bind(scratch.0.join("sock")).expect("bind socket");

    let gzip = gnu_tar_create(&scratch.0);
    drop(socket);
    let plain = gunzip(&gzip);
    let members = read_members(gzip_reader("gnu.tar.gz", gzip.as_slice()))
        .unwrap_or_else(|error| panic!("{error}"));

    // The same entries, built from the live tree alone in the archive's order.
    let mut first_names = HashMap::new();
    let live: Vec<Member> = members
        .iter()
        .filter_map(|(entry, _)| {
            entry_of_live_file(&scratch.0.join(&entry.path), &entry.path, &mut first_names)
        })
        .collect();
    assert_eq!(describe(&members), describe(&live));
    assert_eq!(members, live);

    // Everything but the socket is in the archive.
    let archived: Vec<&Path> = members
        .iter()
        .map(|(entry, _)| entry.path.as_path())
        .collect();
    for name in walk(&scratch.0) {
        let is_socket = name == Path::new("./sock");
        assert_eq!(
            archived.contains(&name.as_path()),
            !is_socket,
            "{}",
            name.display()
        );
    }

    // crust writes GNU tar's bytes from the live entries.
    assert!(
        write_members(&live) == plain,
        "crust's archive of the live tree differs from GNU tar's"
    );
}

/// The tree of the extraction test, built here (not by a script): every kind of entry,
/// names and targets past 100 bytes, a sparse file with more extents than the header
/// holds, owners and an mtime that need base-256.
fn built_tree() -> Vec<Member> {
    let pattern = |length: usize| -> Vec<u8> {
        b"crust writes this archive; GNU tar extracts it. "
            .iter()
            .copied()
            .cycle()
            .take(length)
            .collect()
    };
    let sparse = |size: u64, extents: &[(u64, u64)]| -> Member {
        let data: Vec<Extent> = extents
            .iter()
            .map(|&(offset, length)| Extent { offset, length })
            .collect();
        let mut contents = vec![0u8; size as usize];
        for extent in &data {
            let range = extent.offset as usize..extent.end() as usize;
            contents[range.clone()].copy_from_slice(&pattern(range.len()));
        }
        (
            entry("", EntryKind::File(FileLayout { size, data })),
            contents,
        )
    };
    let named = |(mut entry, contents): Member, path: &str| -> Member {
        entry.path = PathBuf::from(path);
        (entry, contents)
    };
    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: PathBuf::from(path),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }
    let long_name = format!("./{}", "l".repeat(140));
    let deep_dir = format!("./dir/{}", "d".repeat(90));
    let deep_file = format!("{deep_dir}/{}", "f".repeat(90));
    let many: Vec<(u64, u64)> = (0..30).map(|page| ((2 * page + 1) * 4096, 4096)).collect();
    let mut tree = vec![
        (
            Entry {
                mode: 0o755,
                mtime: 1_600_000_000,
                ..entry(".", EntryKind::Directory)
            },
            Vec::new(),
        ),
        (
            Entry {
                mode: 0o2750,
                uid: 1000,
                gid: 1000,
                ..entry("./dense", EntryKind::File(FileLayout::dense(10_000)))
            },
            pattern(10_000),
        ),
        named(
            sparse(
                4 << 20,
                &[(0, 4096), (40960, 8192), ((4 << 20) - 4096, 4096)],
            ),
            "./sparse",
        ),
        named(sparse(65536, &[(0, 4096)]), "./tailhole"),
        named(sparse(1 << 20, &[]), "./allhole"),
        named(sparse(61 * 4096 + 100, &many), "./manyholes"),
        (
            entry("./empty", EntryKind::File(FileLayout::dense(0))),
            Vec::new(),
        ),
        (
            entry(&long_name, EntryKind::File(FileLayout::dense(3))),
            b"abc".to_vec(),
        ),
        (
            Entry {
                mode: 0o755,
                ..entry("./dir", EntryKind::Directory)
            },
            Vec::new(),
        ),
        (
            Entry {
                mode: 0o700,
                ..entry(&deep_dir, EntryKind::Directory)
            },
            Vec::new(),
        ),
        (
            entry(&deep_file, EntryKind::File(FileLayout::dense(4))),
            b"deep".to_vec(),
        ),
        (
            entry(
                "./dense.link",
                EntryKind::HardLink {
                    target: "./dense".into(),
                },
            ),
            Vec::new(),
        ),
        (
            entry(
                "./long.link",
                EntryKind::HardLink {
                    target: long_name.clone().into(),
                },
            ),
            Vec::new(),
        ),
        (
            Entry {
                mode: 0o777,
                ..entry(
                    "./sym",
                    EntryKind::Symlink {
                        target: "dense".into(),
                    },
                )
            },
            Vec::new(),
        ),
        (
            Entry {
                mode: 0o777,
                ..entry(
                    "./longsym",
                    EntryKind::Symlink {
                        target: "t".repeat(200).into(),
                    },
                )
            },
            Vec::new(),
        ),
        (entry("./fifo", EntryKind::Fifo), Vec::new()),
        (
            entry("./null", EntryKind::CharDevice { major: 1, minor: 3 }),
            Vec::new(),
        ),
        (
            entry("./loop7", EntryKind::BlockDevice { major: 7, minor: 7 }),
            Vec::new(),
        ),
        (
            Entry {
                uid: 3_000_000,
                gid: 4_000_000,
                ..entry("./owned", EntryKind::File(FileLayout::dense(2)))
            },
            b"ow".to_vec(),
        ),
        (
            Entry {
                mtime: -100,
                ..entry("./old", EntryKind::File(FileLayout::dense(3)))
            },
            b"old".to_vec(),
        ),
        (
            Entry {
                mode: 0o4755,
                ..entry("./setuid", EntryKind::File(FileLayout::dense(1)))
            },
            b"x".to_vec(),
        ),
        (
            Entry {
                mode: 0o1777,
                ..entry("./sticky", EntryKind::Directory)
            },
            Vec::new(),
        ),
        (entry("./emptydir", EntryKind::Directory), Vec::new()),
        (entry("./sock", EntryKind::Socket), Vec::new()),
    ];
    // a hard link has its inode's metadata
    for index in 0..tree.len() {
        if let EntryKind::HardLink { target } = &tree[index].0.kind {
            let original = tree
                .iter()
                .find(|(entry, _)| &entry.path == target)
                .expect("link target")
                .0
                .clone();
            let link = &mut tree[index].0;
            (link.mode, link.uid, link.gid, link.mtime) =
                (original.mode, original.uid, original.gid, original.mtime);
        }
    }
    tree
}

#[test]
fn crust_archives_extract_with_gnu_tar_to_the_same_tree() {
    if let Some(reason) = interop_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let tree = built_tree();
    let mut writer = gzip_writer(Vec::new());
    let mut skipped = Vec::new();
    for (entry, contents) in &tree {
        if !writer
            .append_file(entry, &mut contents.as_slice())
            .unwrap_or_else(|error| panic!("{error}"))
        {
            skipped.push(entry.path.clone());
        }
    }
    assert_eq!(skipped, [PathBuf::from("./sock")]);
    let gzip = writer.finish_gzip().expect("finish");

    let scratch = Scratch::new("extract");
    gnu_tar_extract(&gzip, &scratch.0);

    // What GNU tar made, described from the live tree, in the tree's order.
    let mut first_names = HashMap::new();
    let extracted: Vec<Member> = tree
        .iter()
        .filter(|(entry, _)| entry.kind != EntryKind::Socket)
        .map(|(entry, _)| {
            entry_of_live_file(&scratch.0.join(&entry.path), &entry.path, &mut first_names)
                .expect("not a socket")
        })
        .collect();
    let expected: Vec<Member> = tree
        .into_iter()
        .filter(|(entry, _)| entry.kind != EntryKind::Socket)
        .collect();
    assert_eq!(describe(&extracted), describe(&expected));
    assert_eq!(extracted, expected);

    // Nothing more than that, and the holes took no space.
    let names: BTreeMap<PathBuf, ()> = walk(&scratch.0)
        .into_iter()
        .map(|name| (name, ()))
        .collect();
    assert_eq!(names.len(), expected.len());
    let sparse = std::fs::metadata(scratch.0.join("sparse")).expect("stat");
    assert_eq!(
        sparse.blocks() * 512,
        4 * 4096,
        "sparse: 4 pages of data, the rest holes"
    );
}

#[test]
fn unaligned_sparse_extents_extract_with_gnu_tar() {
    if let Some(reason) = interop_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let (members, archive) = small_archive();
    let mut gzip = gzip_writer(Vec::new());
    for (entry, contents) in &members {
        gzip.append_file(entry, &mut contents.as_slice())
            .expect("append");
    }
    let gzip = gzip.finish_gzip().expect("finish");
    assert_eq!(gunzip(&gzip), archive);
    let scratch = Scratch::new("small");
    gnu_tar_extract(&gzip, &scratch.0);
    for (entry, contents) in &members {
        if let EntryKind::File(_) = entry.kind {
            let extracted =
                std::fs::read(scratch.0.join(&entry.path)).expect("read extracted file");
            assert!(
                extracted == *contents,
                "{}: GNU tar extracted other bytes",
                entry.path.display()
            );
        }
    }
}

// ---- hostile archives ---------------------------------------------------------------

fn header(name: &[u8], flag: u8, size: u64) -> [u8; 512] {
    let mut block = [0u8; 512];
    block[..name.len()].copy_from_slice(name);
    block[100..108].copy_from_slice(b"0000644\0");
    block[108..116].copy_from_slice(b"0000000\0");
    block[116..124].copy_from_slice(b"0000000\0");
    block[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    block[136..148].copy_from_slice(b"00000000000\0");
    block[156] = flag;
    block[257..265].copy_from_slice(b"ustar  \0");
    seal(&mut block);
    block
}

fn seal(block: &mut [u8; 512]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&byte| u32::from(byte)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn archive(blocks: &[&[u8]]) -> Vec<u8> {
    let mut bytes: Vec<u8> = blocks.concat();
    bytes.resize(bytes.len().next_multiple_of(512) + 1024, 0);
    bytes
}

fn read_error(bytes: &[u8]) -> String {
    read_members(ArchiveReader::new("evil.tar", bytes))
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn hostile_archives_are_refused_by_name() {
    assert_eq!(
        read_error(&archive(&[&header(b"../etc/passwd", b'0', 0)])),
        "evil.tar: archive offset 0: ../etc/passwd: refused name: has a .. component"
    );
    assert!(read_error(&archive(&[&header(b"/etc/passwd", b'0', 0)]))
        .contains("refused name: absolute"));
    let mut link = header(b"./x", b'1', 0);
    link[157..166].copy_from_slice(b"./../../y");
    seal(&mut link);
    assert!(read_error(&archive(&[&link]))
        .contains("./x: refused hard link target: has a .. component"));

    let mut bad_sum = header(b"./x", b'0', 0);
    bad_sum[0] = b'y';
    assert!(read_error(&archive(&[&bad_sum])).contains("header of y/x: checksum"));

    // a long name claiming 4 GiB: refused before anything is read or allocated
    assert!(
        read_error(&archive(&[&header(b"././@LongLink", b'L', 1 << 32)]))
            .contains("over the 1048576 byte limit")
    );
    // a file claiming more data than there is
    assert!(read_error(&header(b"./big", b'0', 1 << 20)).contains("./big: truncated: data needs"));
    // a long name then the end
    assert!(
        read_error(&archive(&[&header(b"././@LongLink", b'L', 4), b"abc\0"]))
            .contains("long name is followed by the end")
    );
    // pax headers are not GNU tar's
    assert!(read_error(&archive(&[&header(b"./PaxHeaders/x", b'x', 0)]))
        .contains("unsupported entry type 'x' (pax extended header)"));
    // no end blocks
    assert!(read_error(&header(b"./x", b'5', 0))
        .contains("archive ends without its end-of-archive blocks (last entry ./x)"));
    // not a tar at all
    assert!(read_error(&[b'z'; 1024]).contains("not a GNU tar header"));
}

#[test]
fn hostile_sparse_maps_are_refused() {
    let sparse = |slots: &[(u64, u64)], real_size: u64, stored: u64| -> Vec<u8> {
        let mut block = header(b"./s", b'S', stored);
        for (index, (offset, length)) in slots.iter().enumerate() {
            let at = 386 + 24 * index;
            block[at..at + 12].copy_from_slice(format!("{offset:011o}\0").as_bytes());
            block[at + 12..at + 24].copy_from_slice(format!("{length:011o}\0").as_bytes());
        }
        block[483..495].copy_from_slice(format!("{real_size:011o}\0").as_bytes());
        seal(&mut block);
        let data = vec![b'd'; stored as usize];
        archive(&[&block, &data])
    };
    // a well-formed map reads
    let members = read_members(ArchiveReader::new(
        "ok.tar",
        sparse(&[(4096, 10), (8192, 0)], 8192, 10).as_slice(),
    ))
    .expect("read");
    assert_eq!(members[0].1[4096..4106], [b'd'; 10]);
    assert!(read_error(&sparse(&[(4096, 10), (4100, 10)], 8192, 20))
        .contains("sparse map: extent 1 at 4100 overlaps"));
    assert!(read_error(&sparse(&[(8190, 10)], 8192, 10)).contains("runs past the file's size 8192"));
    assert!(read_error(&sparse(&[(0, 10), (1024, 10)], 8192, 20))
        .contains("sparse map: data extent 0 (10 bytes at 0) is not the last and not whole 512-byte blocks"));
    assert!(read_error(&sparse(&[(0, 10)], 8192, 11))
        .contains("the extents hold 10 bytes, the header's size says 11"));
    assert!(read_error(&sparse(&[(0o77777777777, 1 << 32)], 8192, 0)).contains("./s"));
}

#[test]
fn the_writer_refuses_what_tar_cannot_hold() {
    let write = |entry: Entry| {
        ArchiveWriter::new(Vec::new())
            .append(&entry)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let file = |path: &str, layout: FileLayout| Entry {
        path: PathBuf::from(path),
        kind: EntryKind::File(layout),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
    };
    assert_eq!(
        write(file("./a\0b", FileLayout::dense(0))),
        "tar: ./a\0b: name holds a NUL byte"
    );
    assert!(write(file("./x", FileLayout::dense(5))).contains("needs its contents"));
    let overlapping = FileLayout {
        size: 100,
        data: vec![
            Extent {
                offset: 0,
                length: 10,
            },
            Extent {
                offset: 5,
                length: 10,
            },
        ],
    };
    assert_eq!(
        ArchiveWriter::new(Vec::new())
            .append_file(&file("./x", overlapping), &mut [0u8; 100].as_slice())
            .unwrap_err()
            .to_string(),
        "tar: ./x: data extent 1 (10 bytes at 5) overlaps or precedes the one before (size 100)"
    );
    let unaligned = FileLayout {
        size: 4096,
        data: vec![
            Extent {
                offset: 0,
                length: 10,
            },
            Extent {
                offset: 1024,
                length: 10,
            },
        ],
    };
    assert_eq!(
        ArchiveWriter::new(Vec::new())
            .append_file(&file("./x", unaligned), &mut [0u8; 4096].as_slice())
            .unwrap_err()
            .to_string(),
        "tar: ./x: data extent 0 (10 bytes at 0) is not the last and not whole 512-byte blocks: GNU tar's sparse format cannot hold it"
    );
    let short = ArchiveWriter::new(Vec::new())
        .append_file(
            &file("./x", FileLayout::dense(10)),
            &mut [0u8; 4].as_slice(),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        short,
        "tar: ./x: read 10 bytes at offset 0: unexpected end of file"
    );
}
