//! Fixture images under `tests/fixtures/`: they match their builders, decode to the
//! snapshotted crit JSON, and encode back from that JSON byte for byte.
//!
//! Set `CRUST_UPDATE_FIXTURES=1` to rewrite the fixture files after changing a builder.

mod common;

use std::path::PathBuf;

use crust_images::json::{image_to_json, json_to_image, to_crit_string, JsonOptions};
use crust_images::{pb, ByteOrder, ImageKind, ImageReader, PagemapReader};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn fixture_files_match_their_builders() {
    let update = std::env::var_os("CRUST_UPDATE_FIXTURES").is_some();
    for fixture in common::all_fixtures() {
        let path = fixtures_dir().join(fixture.dir).join(&fixture.name);
        if update || !path.exists() {
            std::fs::create_dir_all(path.parent().expect("fixture has a directory"))
                .expect("create fixture dir");
            std::fs::write(&path, &fixture.bytes).expect("write fixture");
        }
        let on_disk = std::fs::read(&path).expect("read fixture");
        assert!(
            on_disk == fixture.bytes,
            "{} differs from its builder; rerun with CRUST_UPDATE_FIXTURES=1",
            path.display()
        );
    }
}

fn image_fixtures() -> Vec<common::Fixture> {
    common::all_fixtures()
        .into_iter()
        .filter(|fixture| !fixture.name.starts_with("pages-"))
        .collect()
}

#[test]
fn fixtures_decode_to_snapshotted_json() {
    for fixture in image_fixtures() {
        for (mode, options) in [
            (
                "plain",
                JsonOptions {
                    pretty: false,
                    no_payload: false,
                },
            ),
            (
                "pretty",
                JsonOptions {
                    pretty: true,
                    no_payload: false,
                },
            ),
        ] {
            let json =
                image_to_json(&fixture.name, &fixture.bytes, &options).expect("fixture decodes");
            let text = to_crit_string(&json, options.pretty);
            insta::assert_snapshot!(format!("{}__{}__{mode}", fixture.dir, fixture.name), text);
        }
    }
}

#[test]
fn nopl_replaces_payloads_by_sizes() {
    for fixture in image_fixtures().into_iter().filter(|fixture| {
        ["pipes-data.img", "tcp-stream-1f.img", "ghost-file-1a.img"]
            .contains(&fixture.name.as_str())
    }) {
        let json = image_to_json(
            &fixture.name,
            &fixture.bytes,
            &JsonOptions {
                pretty: true,
                no_payload: true,
            },
        )
        .expect("decodes");
        insta::assert_snapshot!(
            format!("{}__{}__nopl", fixture.dir, fixture.name),
            to_crit_string(&json, true)
        );
    }
}

#[test]
fn json_encodes_back_to_identical_images() {
    for fixture in image_fixtures() {
        let byte_order = ImageReader::from_bytes(fixture.name.clone(), fixture.bytes.clone())
            .expect("header")
            .byte_order();
        for pretty in [false, true] {
            let json = image_to_json(
                &fixture.name,
                &fixture.bytes,
                &JsonOptions {
                    pretty,
                    no_payload: false,
                },
            )
            .expect("decodes");
            // through text, as `crust encode` reads it
            let reparsed: serde_json::Value =
                serde_json::from_str(&to_crit_string(&json, pretty)).expect("valid JSON");
            let bytes = json_to_image(&reparsed, byte_order).expect("encodes");
            assert!(
                bytes == fixture.bytes,
                "{} (pretty: {pretty}) does not round trip",
                fixture.name
            );
        }
    }
}

#[test]
fn big_endian_core_reads_on_any_host() {
    let path = fixtures_dir().join("arch/core-390.img");
    let mut reader = ImageReader::open(&path).expect("open");
    assert_eq!(reader.byte_order(), ByteOrder::Big);
    let core: pb::CoreEntry = reader.next_entry().expect("decode").expect("one entry");
    assert_eq!(core.mtype(), pb::core_entry::March::S390);
    let regs = core.ti_s390.map(|ti| ti.gpregs).expect("s390 registers");
    assert_eq!(regs.psw_addr, 0x1000_0a3c);
}

#[test]
fn pagemap_fixture_maps_addresses() {
    let dir = fixtures_dir().join("dump");
    let map = PagemapReader::open(&dir, 1000, common::PAGE).expect("valid pagemap");
    assert_eq!(map.pages_id(), 1000);
    assert_eq!(map.pages_path(), Some(dir.join("pages-1000.img").as_path()));
    assert_eq!(map.offset_of(0x60_2000), Some(0));
    assert_eq!(map.offset_of(0x60_3008), Some(0x1008));
    assert_eq!(map.offset_of(0x7ffd_0000_1000), None, "in the parent");
    assert_eq!(map.offset_of(0x7ffd_0000_2000), Some(2 * common::PAGE));
    let pages = std::fs::read(dir.join("pages-1000.img")).expect("pages");
    let offset = map.offset_of(0x7ffd_0000_2000).expect("stored") as usize;
    assert_eq!(pages[offset], 3);
    assert_eq!(map.stored_pages(), 3);
}

#[test]
fn signal_kinds_follow_the_file_name() {
    let bytes = std::fs::read(fixtures_dir().join("dump/stats-dump")).expect("stats");
    let reader = ImageReader::from_bytes("stats-dump", bytes).expect("header");
    assert_eq!(reader.kind(), ImageKind::StatsDump);
    assert_eq!(reader.kind().name(), "STATS");
}
