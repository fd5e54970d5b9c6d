//! Property tests: encode -> decode is the identity for messages and whole images, in
//! both byte orders and through crit's JSON; arbitrary bytes never panic a parser.

use crust_images::json::{image_to_json, json_to_image, to_crit_string, JsonOptions};
use crust_images::{parse, pb, ByteOrder, ImageKind, ImageReader, ImageWriter, PagemapReader};
use proptest::prelude::*;

fn byte_order() -> impl Strategy<Value = ByteOrder> {
    prop_oneof![Just(ByteOrder::Little), Just(ByteOrder::Big)]
}

fn vma() -> impl Strategy<Value = pb::VmaEntry> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(start, end, shmid, prot, flags, status, fd, madv, fdflags)| pb::VmaEntry {
                start,
                end,
                pgoff: start / 3,
                shmid,
                prot,
                flags,
                status,
                fd,
                madv,
                fdflags,
            },
        )
}

fn mm() -> impl Strategy<Value = pb::MmEntry> {
    (
        proptest::collection::vec(vma(), 0..6),
        proptest::collection::vec(any::<u64>(), 0..6),
        any::<u64>(),
        any::<u32>(),
        proptest::option::of(any::<i32>()),
    )
        .prop_map(
            |(vmas, mm_saved_auxv, base, exe_file_id, dumpable)| pb::MmEntry {
                mm_start_code: base,
                mm_end_code: base.wrapping_add(1),
                mm_start_data: base ^ 0xff,
                mm_end_data: !base,
                mm_start_stack: base.rotate_left(7),
                mm_start_brk: base.rotate_left(13),
                mm_brk: base.rotate_left(17),
                mm_arg_start: 1,
                mm_arg_end: 2,
                mm_env_start: 3,
                mm_env_end: u64::MAX,
                exe_file_id,
                mm_saved_auxv,
                vmas,
                dumpable,
                aios: vec![],
                thp_disabled: None,
            },
        )
}

fn inet_socket() -> impl Strategy<Value = pb::FileEntry> {
    (
        any::<u32>(),
        any::<u32>(),
        prop_oneof![Just(2u32), Just(10u32), any::<u32>()],
        any::<u32>(),
        any::<[u32; 4]>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(id, ino, family, state, words, v4, name)| {
            let addr = if v4 { vec![words[0]] } else { words.to_vec() };
            pb::FileEntry {
                r#type: pb::FdTypes::Inetsk as i32,
                id,
                isk: Some(Box::new(pb::InetSkEntry {
                    id,
                    ino,
                    family,
                    r#type: state % 12,
                    proto: state % 140,
                    state,
                    src_addr: addr.clone(),
                    dst_addr: addr,
                    opts: pb::SkOptsEntry {
                        so_filter: vec![u64::from(ino)],
                        ..Default::default()
                    },
                    ..Default::default()
                })),
                usk: Some(Box::new(pb::UnixSkEntry {
                    id,
                    name,
                    ..Default::default()
                })),
                ..Default::default()
            }
        })
}

fn image<M: prost::Message>(kind: ImageKind, byte_order: ByteOrder, entries: &[M]) -> Vec<u8> {
    let mut writer =
        ImageWriter::with_sink(Vec::new(), kind.file_name(1), kind, byte_order).expect("vec sink");
    for entry in entries {
        writer.write_entry(entry).expect("vec sink");
    }
    writer.into_inner().expect("vec sink")
}

fn read_all<M: prost::Message + Default>(bytes: Vec<u8>) -> Vec<M> {
    let mut reader = ImageReader::from_bytes("prop.img", bytes).expect("own header");
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry().expect("own entries") {
        entries.push(entry);
    }
    assert!(reader.is_at_end());
    entries
}

fn json_round_trip(kind: ImageKind, bytes: &[u8], byte_order: ByteOrder) {
    for pretty in [false, true] {
        let name = kind.file_name(1);
        let json = image_to_json(
            &name,
            bytes,
            &JsonOptions {
                pretty,
                no_payload: false,
            },
        )
        .expect("decodes");
        let text = to_crit_string(&json, pretty);
        let reparsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let back = json_to_image(&reparsed, byte_order).expect("encodes");
        assert_eq!(back, bytes, "pretty={pretty}: {text}");
    }
}

proptest! {
    #[test]
    fn mm_images_round_trip(entries in proptest::collection::vec(mm(), 0..3), order in byte_order()) {
        let bytes = image(ImageKind::Mm, order, &entries);
        prop_assert_eq!(read_all::<pb::MmEntry>(bytes.clone()), entries);
        json_round_trip(ImageKind::Mm, &bytes, order);
    }

    #[test]
    fn pstree_images_round_trip(entries in proptest::collection::vec(
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), proptest::collection::vec(any::<u32>(), 0..5))
            .prop_map(|(pid, ppid, pgid, sid, threads)| pb::PstreeEntry { pid, ppid, pgid, sid, threads }),
        0..5), order in byte_order()) {
        let bytes = image(ImageKind::Pstree, order, &entries);
        prop_assert_eq!(read_all::<pb::PstreeEntry>(bytes.clone()), entries);
        json_round_trip(ImageKind::Pstree, &bytes, order);
    }

    #[test]
    fn files_with_addresses_round_trip(entries in proptest::collection::vec(inet_socket(), 0..4), order in byte_order()) {
        let bytes = image(ImageKind::Files, order, &entries);
        prop_assert_eq!(read_all::<pb::FileEntry>(bytes.clone()), entries);
        json_round_trip(ImageKind::Files, &bytes, order);
    }

    #[test]
    fn payload_images_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..4), order in byte_order()) {
        let mut writer = ImageWriter::with_sink(Vec::new(), "pipes-data.img", ImageKind::PipesData, order).expect("vec");
        for (pipe_id, payload) in payloads.iter().enumerate() {
            writer.write_entry(&pb::PipeDataEntry { pipe_id: pipe_id as u32, bytes: payload.len() as u32, size: None }).expect("vec");
            writer.write_payload(payload).expect("vec");
        }
        let bytes = writer.into_inner().expect("vec");
        let raw = parse("pipes-data.img", &bytes).expect("own image");
        let got: Vec<Vec<u8>> = raw.entries.into_iter().map(|entry| entry.payload.unwrap_or_default()).collect();
        prop_assert_eq!(got, payloads);
        json_round_trip(ImageKind::PipesData, &bytes, order);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse("any.img", &bytes);
        let _ = image_to_json("any.img", &bytes, &JsonOptions { pretty: true, no_payload: false });
        if let Ok(mut reader) = ImageReader::from_bytes("any.img", bytes.clone()) {
            while let Ok(Some(_)) = reader.next_entry::<pb::CoreEntry>() {}
        }
    }

    #[test]
    fn ghost_images_stream_back(chunks in proptest::collection::vec((0u64..1 << 30, proptest::collection::vec(any::<u8>(), 0..300)), 0..4), order in byte_order()) {
        // A chunked ghost file read through StreamReader gives back every chunk's place
        // and bytes; arbitrary bytes after the header never panic it.
        let mut writer = ImageWriter::with_sink(Vec::new(), "ghost-file-1.img", ImageKind::GhostFile, order).expect("vec");
        writer.write_entry(&pb::GhostFileEntry { chunks: Some(true), size: Some(1 << 31), ..Default::default() }).expect("vec");
        for (off, data) in &chunks {
            writer.write_entry(&pb::GhostChunkEntry { len: data.len() as u64, off: *off }).expect("vec");
            writer.write_payload(data).expect("vec");
        }
        let bytes = writer.into_inner().expect("vec");
        let dir = std::env::temp_dir().join(format!("crust-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ghost-file-1.img");
        std::fs::write(&path, &bytes).expect("write");
        let mut reader = crust_images::StreamReader::open(&path).expect("own image");
        let head: pb::GhostFileEntry = reader.next_entry().expect("head").expect("present");
        prop_assert_eq!(head.chunks, Some(true));
        for (index, (off, data)) in chunks.iter().enumerate() {
            let chunk: pb::GhostChunkEntry = reader.next_entry().expect("chunk").expect("present");
            prop_assert_eq!(chunk.off, *off);
            // Every other payload is skipped unread: the next entry still lines up.
            if index % 2 == 1 {
                reader.skip_payload(chunk.len).expect("skip");
                continue;
            }
            let mut got = Vec::new();
            reader.copy_payload(chunk.len, |piece| { got.extend_from_slice(piece); Ok(()) }).expect("payload");
            prop_assert_eq!(&got, data);
        }
        prop_assert!(reader.next_entry::<pb::GhostChunkEntry>().expect("end").is_none());
        let mut garbage = bytes[..8].to_vec();
        garbage.extend(chunks.iter().flat_map(|c| c.1.iter().copied()));
        std::fs::write(&path, &garbage).expect("write");
        if let Ok(mut reader) = crust_images::StreamReader::open(&path) {
            while let Ok(Some(chunk)) = reader.next_entry::<pb::GhostChunkEntry>() {
                let result = if chunk.off % 2 == 0 { reader.copy_payload(chunk.len.min(1 << 20), |_| Ok(())) } else { reader.skip_payload(chunk.len) };
                if result.is_err() {
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn arbitrary_entries_after_a_valid_header_never_panic(kind_index in 0..ImageKind::ALL.len(), tail in proptest::collection::vec(any::<u8>(), 0..256), order in byte_order()) {
        let kind = ImageKind::ALL[kind_index];
        let mut bytes = ImageWriter::with_sink(Vec::new(), "x", kind, order).expect("vec").into_inner().expect("vec");
        bytes.extend_from_slice(&tail);
        let name = kind.file_name(1);
        let _ = parse(&name, &bytes);
        for pretty in [false, true] {
            let _ = image_to_json(&name, &bytes, &JsonOptions { pretty, no_payload: !pretty });
        }
    }

    #[test]
    fn arbitrary_pagemaps_never_panic(entries in proptest::collection::vec((any::<u64>(), any::<u32>(), proptest::option::of(any::<u32>()), proptest::option::of(any::<bool>()), proptest::option::of(any::<u64>())), 0..8), pages_len in any::<u64>(), page_shift in 0u32..20) {
        let entries: Vec<pb::PagemapEntry> = entries.into_iter().map(|(vaddr, compat_nr_pages, flags, in_parent, nr_pages)| pb::PagemapEntry { vaddr, compat_nr_pages, in_parent, flags, nr_pages }).collect();
        if let Ok(map) = PagemapReader::from_parts("p", &pb::PagemapHead { pages_id: 1 }, &entries, pages_len, 1 << page_shift) {
            for entry in &entries {
                let _ = map.offset_of(entry.vaddr);
                let _ = map.offset_of(entry.vaddr.wrapping_add(1));
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(text in "\\PC{0,200}") {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = json_to_image(&json, ByteOrder::Little);
        }
    }
}

#[test]
fn hostile_json_is_an_error_not_a_panic() {
    for text in [
        r#"{"magic": "CORE", "entries": [{"mtype": "NOPE"}]}"#,
        r#"{"magic": "MM", "entries": [{"vmas": [{"prot": "PROT_BOGUS"}]}]}"#,
        r#"{"magic": "MM", "entries": [{"exe_file_id": 99999999999}]}"#,
        r#"{"magic": "FILES", "entries": [{"isk": {"src_addr": ["not-an-ip"]}}]}"#,
        r#"{"magic": "GHOST_FILE", "entries": [{"uid": 0}]}"#,
        r#"{"magic": "NOPE", "entries": []}"#,
        r#"{"entries": []}"#,
    ] {
        let json: serde_json::Value = serde_json::from_str(text).expect("test JSON parses");
        assert!(json_to_image(&json, ByteOrder::Little).is_err(), "{text}");
    }
}
