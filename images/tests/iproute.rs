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

/// With iproute2 and root: streams `ip ... save` writes in a scratch network namespace
/// parse and write back byte for byte, and a stream crust builds from typed messages
/// is read by `ip addr showdump` / `ip route showdump`. The namespace has only `lo`
/// and goes away with the command; nothing is sent anywhere.
#[test]
fn iproute2_reads_and_writes_the_same_streams() {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"));
    let has = |tool: &str| {
        std::process::Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if !is_root || !has("ip") || !has("unshare") {
        eprintln!("skipped: needs root, iproute2's ip and util-linux's unshare");
        return;
    }
    let dir = std::env::temp_dir().join(format!("crust-iproute-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let script = "set -e
        ip link set lo up
        ip addr add 10.1.2.3/8 dev lo
        ip -6 addr add fd00:1::3/64 dev lo nodad
        ip route add 10.9.0.0/16 via 10.1.2.4 dev lo metric 50
        ip rule add from 10.1.2.3 table 100 priority 1000
        ip addr save > ifaddr-1.img
        ip route save > route-1.img
        ip -6 route save > route6-1.img
        ip rule save > rule-1.img";
    let status = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .current_dir(&dir)
        .status()
        .expect("run unshare");
    assert!(status.success(), "ip ... save in a new netns failed");

    let parse = |name: &str| {
        let bytes = std::fs::read(dir.join(name)).expect("read stream");
        let (kind, _) = ImageKind::from_file_name(name).expect("file name");
        let stream =
            SaveStream::parse_image(name, kind, &bytes).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(stream.to_bytes(), bytes, "{name}");
        stream
    };
    let addresses = parse("ifaddr-1.img");
    let routes = parse("route-1.img");
    parse("route6-1.img");
    let rules = parse("rule-1.img");
    let has_address = addresses.addresses().any(|address| {
        address.header.prefix_len == 8
            && address.attributes.iter().any(|attribute| {
                matches!(attribute, AddressAttribute::Address(ip) if ip.to_string() == "10.1.2.3")
            })
    });
    assert!(has_address, "10.1.2.3/8 not in ip addr save's stream");
    assert!(routes
        .routes()
        .any(|route| route.attributes.contains(&RouteAttribute::Priority(50))));
    assert!(rules
        .rules()
        .any(|rule| format!("{rule:?}").contains("Priority(1000)")));

    // crust's own encoding of the typed messages, read by iproute2
    for (name, stream, command, expected) in [
        ("ifaddr-2.img", &addresses, "address", "10.1.2.3/8"),
        ("route-2.img", &routes, "route", "10.9.0.0/16 via 10.1.2.4"),
    ] {
        let mut rebuilt = SaveStream::new(stream.kind);
        for message in stream.messages() {
            rebuilt
                .push(message.inner().expect("inner message").clone())
                .expect("push");
        }
        std::fs::write(dir.join(name), rebuilt.to_bytes()).expect("write stream");
        let output = std::process::Command::new("ip")
            .args([command, "showdump"])
            .stdin(std::fs::File::open(dir.join(name)).expect("open stream"))
            .output()
            .expect("run ip showdump");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "ip {command} showdump: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.contains(expected),
            "ip {command} showdump of crust's stream:\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
