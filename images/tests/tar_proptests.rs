//! Property tests of the tmpfs archive code: any entries the writer takes read back the
//! same, plain and gzipped; arbitrary bytes and mutated archives never panic the reader.

use std::path::PathBuf;

use crust_images::tar::{
    gzip_reader, gzip_writer, ArchiveReader, ArchiveWriter, Entry, EntryKind, Extent, FileLayout,
};
use proptest::prelude::*;

/// A name below the root: 1..4 components of 1..120 bytes, so names cross the 100-byte
/// field now and then.
fn member_name() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9._-]{1,120}", 1..4).prop_map(|components| {
        let components: Vec<String> = components
            .into_iter()
            .map(|component| {
                if component == "." || component == ".." {
                    "x".to_owned()
                } else {
                    component
                }
            })
            .collect();
        format!("./{}", components.join("/"))
    })
}

/// A file layout with holes: block-aligned extents (all but the last whole blocks),
/// and its contents.
fn sparse_file() -> impl Strategy<Value = (FileLayout, Vec<u8>)> {
    (
        proptest::collection::vec((0u64..8, 1u64..4), 0..30),
        0u64..700,
        0u64..3000,
    )
        .prop_map(|(runs, last_length, tail)| {
            let mut data = Vec::new();
            let mut offset = 0;
            for (gap_blocks, blocks) in runs {
                offset += gap_blocks * 512;
                data.push(Extent {
                    offset,
                    length: blocks * 512,
                });
                offset += blocks * 512;
            }
            if last_length > 0 {
                offset += 512;
                data.push(Extent {
                    offset,
                    length: last_length,
                });
                offset += last_length;
            }
            let size = offset + tail;
            let mut contents = vec![0u8; size as usize];
            for (index, extent) in data.iter().enumerate() {
                contents[extent.offset as usize..extent.end() as usize].fill(1 + index as u8);
            }
            (FileLayout { size, data }, contents)
        })
}

fn kind_and_contents() -> impl Strategy<Value = (EntryKind, Vec<u8>)> {
    prop_oneof![
        Just((EntryKind::Directory, Vec::new())),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(|contents| (
            EntryKind::File(FileLayout::dense(contents.len() as u64)),
            contents
        )),
        sparse_file().prop_map(|(layout, contents)| (EntryKind::File(layout), contents)),
        member_name().prop_map(|target| (
            EntryKind::HardLink {
                target: target.into()
            },
            Vec::new()
        )),
        "[ -~]{1,300}".prop_map(|target| (
            EntryKind::Symlink {
                target: target.into()
            },
            Vec::new()
        )),
        (any::<u32>(), any::<u32>())
            .prop_map(|(major, minor)| (EntryKind::CharDevice { major, minor }, Vec::new())),
        (any::<u32>(), any::<u32>())
            .prop_map(|(major, minor)| (EntryKind::BlockDevice { major, minor }, Vec::new())),
        Just((EntryKind::Fifo, Vec::new())),
    ]
}

fn member() -> impl Strategy<Value = (Entry, Vec<u8>)> {
    (
        member_name(),
        kind_and_contents(),
        0u32..0o10000,
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
    )
        .prop_map(|(name, (kind, contents), mode, uid, gid, mtime)| {
            (
                Entry {
                    path: PathBuf::from(name),
                    kind,
                    mode,
                    uid,
                    gid,
                    mtime,
                },
                contents,
            )
        })
}

fn read_back<R: std::io::Read>(mut reader: ArchiveReader<R>) -> Vec<(Entry, Vec<u8>)> {
    let mut members = Vec::new();
    while let Some(entry) = reader
        .next_entry()
        .unwrap_or_else(|error| panic!("{error}"))
    {
        let mut contents = Vec::new();
        if let EntryKind::File(layout) = &entry.kind {
            contents = vec![0u8; layout.size as usize];
            reader
                .read_data(|offset, bytes| {
                    contents[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
                    Ok(())
                })
                .unwrap_or_else(|error| panic!("{error}"));
        }
        members.push((entry, contents));
    }
    members
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn written_entries_read_back(members in proptest::collection::vec(member(), 0..12)) {
        let mut plain = ArchiveWriter::new(Vec::new());
        let mut gzip = gzip_writer(Vec::new());
        for (entry, contents) in &members {
            prop_assert!(plain.append_file(entry, &mut contents.as_slice()).expect("append"));
            prop_assert!(gzip.append_file(entry, &mut contents.as_slice()).expect("append"));
        }
        let plain = plain.finish().expect("finish");
        prop_assert_eq!(plain.len() % 10240, 0);
        let gzip = gzip.finish_gzip().expect("finish");
        // a file of whole extents without a hole is written as a plain file: one extent
        let expected: Vec<(Entry, Vec<u8>)> = members
            .into_iter()
            .map(|(mut entry, contents)| {
                if let EntryKind::File(layout) = &mut entry.kind {
                    if !layout.has_holes() {
                        *layout = FileLayout::dense(layout.size);
                    }
                }
                entry.mode &= 0o7777;
                (entry, contents)
            })
            .collect();
        prop_assert_eq!(&read_back(ArchiveReader::new("plain.tar", plain.as_slice())), &expected);
        prop_assert_eq!(&read_back(gzip_reader("archive.tar.gz", gzip.as_slice())), &expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut reader = ArchiveReader::new("any.tar", bytes.as_slice());
        while let Ok(Some(_)) = reader.next_entry() {
            if reader.read_data(|_, _| Ok(())).is_err() {
                break;
            }
        }
    }

    #[test]
    fn mutated_archives_never_panic_the_reader(members in proptest::collection::vec(member(), 1..6), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut writer = ArchiveWriter::new(Vec::new());
        for (entry, contents) in &members {
            writer.append_file(entry, &mut contents.as_slice()).expect("append");
        }
        let mut bytes = writer.finish().expect("finish");
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let mut reader = ArchiveReader::new("mutated.tar", bytes.as_slice());
        while let Ok(Some(_)) = reader.next_entry() {
            if reader.read_data(|_, _| Ok(())).is_err() {
                break;
            }
        }
    }
}
