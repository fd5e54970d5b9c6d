//! iproute2 save streams from a real CRIU dump (`tests/fixtures/netns/`, a runc busybox
//! container with a veth, dumped by CRIU 4.2.1 directly): they parse to the messages
//! snapshotted here, and write back byte for byte.

use std::path::PathBuf;

use crust_images::iproute::netlink_packet_route::address::AddressAttribute;
use crust_images::iproute::netlink_packet_route::route::{RouteAttribute, RouteMessage};
use crust_images::iproute::{SaveStream, SaveStreamKind};
use crust_images::ImageKind;

fn fixture(name: &str) -> (ImageKind, Vec<u8>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netns")
        .join(name);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let (kind, _) = ImageKind::from_file_name(name).expect("a CRIU file name");
    (kind, bytes)
}

const FIXTURES: [&str; 4] = [
    "ifaddr-10.img",
    "route-10.img",
    "route6-10.img",
    "rule-10.img",
];

#[test]
fn criu_streams_write_back_byte_for_byte() {
    if cfg!(target_endian = "big") {
        eprintln!("skipped: the fixtures were written on a little-endian host");
        return;
    }
    for name in FIXTURES {
        let (kind, bytes) = fixture(name);
        let stream =
            SaveStream::parse_image(name, kind, &bytes).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(stream.to_bytes(), bytes, "{name}");
    }
}

#[test]
fn criu_streams_hold_what_the_container_had() {
    if cfg!(target_endian = "big") {
        eprintln!("skipped: the fixtures were written on a little-endian host");
        return;
    }
    let parse = |name: &str| {
        let (kind, bytes) = fixture(name);
        SaveStream::parse_image(name, kind, &bytes).expect("parse")
    };
    let addresses = parse("ifaddr-10.img");
    assert_eq!(addresses.kind, SaveStreamKind::Addresses);
    let labels: Vec<String> = addresses
        .addresses()
        .map(|address| {
            let label = address
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Address(ip) => Some(ip.to_string()),
                    _ => None,
                });
            format!(
                "{}/{} dev {}",
                label.unwrap_or_default(),
                address.header.prefix_len,
                address.header.index
            )
        })
        .collect();
    insta::assert_snapshot!("ifaddr_addresses", labels.join("\n"));

    let describe_routes = |routes: &SaveStream| -> String {
        routes
            .routes()
            .map(describe_route)
            .collect::<Vec<_>>()
            .join("\n")
    };
    insta::assert_snapshot!("route_v4", describe_routes(&parse("route-10.img")));
    insta::assert_snapshot!("route_v6", describe_routes(&parse("route6-10.img")));

    let rules = parse("rule-10.img");
    let described: Vec<String> = rules.rules().map(|rule| format!("{:?}", rule)).collect();
    insta::assert_snapshot!("rules", described.join("\n"));
}

fn describe_route(route: &RouteMessage) -> String {
    let mut words = vec![format!(
        "family {:?} dst_len {} table {} protocol {:?} scope {:?} kind {:?}",
        route.header.address_family,
        route.header.destination_prefix_length,
        route.header.table,
        route.header.protocol,
        route.header.scope,
        route.header.kind
    )];
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::CacheInfo(_) => words.push("cacheinfo".to_owned()),
            other => words.push(format!("{other:?}")),
        }
    }
    words.join(" ")
}

#[test]
fn a_route_image_holding_addresses_is_refused() {
    let (_, bytes) = fixture("ifaddr-10.img");
    let error = SaveStream::parse_image("route-10.img", ImageKind::Route, &bytes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "route-10.img: expected a ip route save stream, found ip addr save"
    );
}

#[test]
fn truncated_streams_fail_with_the_message_named() {
    if cfg!(target_endian = "big") {
        eprintln!("skipped: the fixtures were written on a little-endian host");
        return;
    }
    for name in FIXTURES {
        let (_, bytes) = fixture(name);
        for cut in 1..bytes.len() {
            match SaveStream::parse(name, &bytes[..cut]) {
                Ok(stream) => assert!(stream.to_bytes() == bytes[..cut], "{name} cut at {cut}"),
                Err(error) => assert!(error.to_string().starts_with(name), "{error}"),
            }
        }
    }
}

/// Fuzz regression (fuzz/regressions/iproute/crash-92de0fd0...): an unknown route
/// attribute with both NLA_F_NESTED and NLA_F_NET_BYTEORDER set comes back from
/// netlink-packet-route's encoder with other flag bits, so streams are written from the
/// bytes they were read from.
#[test]
fn unknown_attributes_with_flag_bits_write_back_verbatim() {
    if cfg!(target_endian = "big") {
        eprintln!("skipped: the fixtures were written on a little-endian host");
        return;
    }
    let (_, mut bytes) = fixture("route-10.img");
    // the first route's RTA_TABLE attribute (type 15 at offset 0x22) becomes type 0xfe0f
    assert_eq!(bytes[0x22..0x24], [0x0f, 0x00]);
    bytes[0x22..0x24].copy_from_slice(&[0x0f, 0xfe]);
    let stream = SaveStream::parse("route-10.img", &bytes).expect("parse");
    assert_eq!(stream.to_bytes(), bytes);
}
