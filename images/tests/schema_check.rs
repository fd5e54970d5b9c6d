//! Our `.proto` schema against CRIU's own: every message and enum both have must agree on
//! field numbers, labels, types, type names, field names and `(criu)` options.
//!
//! CRIU's side is `tests/criu-schema.json`, printed by `ci/schema-check` from the compiled
//! descriptors of the reference pycriu (`ci/criu-reference.sh`). The comparison runs on
//! the committed copy everywhere; when the reference is installed the copy is also checked
//! to be what `ci/schema-check` prints now. Without the reference that check is skipped
//! with a reason, except under `CI=true`, where it must run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost_reflect::{Cardinality, DescriptorPool, FieldDescriptor, Kind, Value};
use serde_json::{json, Map, Value as Json};

/// Where a field of ours may differ from CRIU's, and why. Everything else must be equal.
struct Allowed {
    message: &'static str,
    number: u32,
    /// what may differ: "name", "options", "missing" (CRIU has the field, we do not)
    what: &'static str,
    why: &'static str,
}

const ALLOWED: &[Allowed] = &[];

/// The committed copy of CRIU's schema.
fn committed_schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/criu-schema.json")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("images/ sits in the repository")
        .to_path_buf()
}

fn load_committed_schema() -> Json {
    let text = std::fs::read_to_string(committed_schema_path()).expect("read criu-schema.json");
    serde_json::from_str(&text).expect("criu-schema.json is JSON")
}

/// Our schema in the shape `ci/schema-check` prints, names without the `criu.` and
/// `criu.rpc.` packages.
fn our_schema() -> Json {
    let pool = DescriptorPool::decode(crust_images::DESCRIPTOR_SET).expect("our descriptor set");
    let extension = pool
        .get_extension_by_name("criu.criu")
        .expect("opts.proto declares (criu)");
    let mut messages = Map::new();
    for message in pool.all_messages() {
        if !message.full_name().starts_with("criu.") {
            continue; // google.protobuf.* from descriptor.proto
        }
        let fields: Vec<Json> = message
            .fields()
            .map(|field| field_json(&field, &extension))
            .collect();
        messages.insert(
            strip_package(message.full_name()).to_string(),
            json!({ "file": message.parent_file().name(), "fields": fields }),
        );
    }
    let mut enums = Map::new();
    for enumeration in pool.all_enums() {
        if !enumeration.full_name().starts_with("criu.") {
            continue;
        }
        let values: Map<String, Json> = enumeration
            .values()
            .map(|value| (value.name().to_string(), json!(value.number())))
            .collect();
        enums.insert(
            strip_package(enumeration.full_name()).to_string(),
            json!({ "file": enumeration.parent_file().name(), "values": values }),
        );
    }
    json!({ "messages": messages, "enums": enums })
}

/// CRIU's name of one of ours: images live in package `criu`, the RPC in `criu.rpc`
/// (CRIU's protos have no package).
fn strip_package(name: &str) -> &str {
    name.strip_prefix("criu.rpc.").or_else(|| name.strip_prefix("criu.")).unwrap_or(name)
}

fn field_json(field: &FieldDescriptor, extension: &prost_reflect::ExtensionDescriptor) -> Json {
    let label = match field.cardinality() {
        Cardinality::Optional => "optional",
        Cardinality::Required => "required",
        Cardinality::Repeated => "repeated",
    };
    let (kind, type_name) = match field.kind() {
        Kind::Double => ("double", String::new()),
        Kind::Float => ("float", String::new()),
        Kind::Int32 => ("int32", String::new()),
        Kind::Int64 => ("int64", String::new()),
        Kind::Uint32 => ("uint32", String::new()),
        Kind::Uint64 => ("uint64", String::new()),
        Kind::Sint32 => ("sint32", String::new()),
        Kind::Sint64 => ("sint64", String::new()),
        Kind::Fixed32 => ("fixed32", String::new()),
        Kind::Fixed64 => ("fixed64", String::new()),
        Kind::Sfixed32 => ("sfixed32", String::new()),
        Kind::Sfixed64 => ("sfixed64", String::new()),
        Kind::Bool => ("bool", String::new()),
        Kind::String => ("string", String::new()),
        Kind::Bytes => ("bytes", String::new()),
        Kind::Message(message) => (
            if field.is_group() { "group" } else { "message" },
            strip_package(message.full_name()).to_string(),
        ),
        Kind::Enum(enumeration) => ("enum", strip_package(enumeration.full_name()).to_string()),
    };
    let mut options = Map::new();
    let field_options = field.options();
    if field_options.has_extension(extension) {
        if let Value::Message(criu) = field_options.get_extension(extension).into_owned() {
            for (option, value) in criu.fields() {
                let value = match value {
                    Value::Bool(flag) => json!(flag),
                    Value::String(text) => json!(text),
                    other => json!(format!("{other:?}")),
                };
                options.insert(option.name().to_string(), value);
            }
        }
    }
    json!({
        "name": field.name(),
        "number": field.number(),
        "label": label,
        "type": kind,
        "type_name": type_name,
        "default": field.field_descriptor_proto().default_value.clone(),
        "options": options,
    })
}

fn allowed(message: &str, number: u64, what: &str) -> bool {
    ALLOWED.iter().any(|allowed| {
        allowed.message == message && u64::from(allowed.number) == number && allowed.what == what
    })
}

fn fields_by_number(message: &Json) -> BTreeMap<u64, &Json> {
    message["fields"]
        .as_array()
        .expect("fields array")
        .iter()
        .map(|field| (field["number"].as_u64().expect("field number"), field))
        .collect()
}

/// Every difference between CRIU's schema and ours in messages and enums both have.
fn differences(criu: &Json, ours: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let criu_messages = criu["messages"].as_object().expect("messages");
    let our_messages = ours["messages"].as_object().expect("messages");
    for (name, criu_message) in criu_messages {
        let Some(our_message) = our_messages.get(name) else {
            continue;
        };
        let criu_fields = fields_by_number(criu_message);
        let our_fields = fields_by_number(our_message);
        for (number, criu_field) in &criu_fields {
            let Some(our_field) = our_fields.get(number) else {
                if !allowed(name, *number, "missing") {
                    problems.push(format!(
                        "{name}: field {number} ({}) missing in ours: {criu_field}",
                        criu_field["name"]
                    ));
                }
                continue;
            };
            for key in ["label", "type", "type_name", "default"] {
                if criu_field[key] != our_field[key] {
                    problems.push(format!(
                        "{name}.{} = {number}: {key} is {} in CRIU, {} in ours",
                        criu_field["name"], criu_field[key], our_field[key]
                    ));
                }
            }
            if criu_field["name"] != our_field["name"] && !allowed(name, *number, "name") {
                problems.push(format!(
                    "{name} field {number}: named {} in CRIU, {} in ours",
                    criu_field["name"], our_field["name"]
                ));
            }
            if criu_field["options"] != our_field["options"] && !allowed(name, *number, "options") {
                problems.push(format!(
                    "{name}.{} = {number}: options {} in CRIU, {} in ours",
                    criu_field["name"], criu_field["options"], our_field["options"]
                ));
            }
        }
        for (number, our_field) in &our_fields {
            if !criu_fields.contains_key(number) {
                problems.push(format!(
                    "{name}: field {number} ({}) of ours is not in CRIU",
                    our_field["name"]
                ));
            }
        }
    }
    let criu_enums = criu["enums"].as_object().expect("enums");
    let our_enums = ours["enums"].as_object().expect("enums");
    for (name, criu_enum) in criu_enums {
        let Some(our_enum) = our_enums.get(name) else {
            continue;
        };
        if criu_enum["values"] != our_enum["values"] {
            problems.push(format!(
                "enum {name}: values {} in CRIU, {} in ours",
                criu_enum["values"], our_enum["values"]
            ));
        }
    }
    problems
}

#[test]
fn our_schema_matches_criu() {
    let criu = load_committed_schema();
    let ours = our_schema();
    let problems = differences(&criu, &ours);
    assert!(
        problems.is_empty(),
        "{} differences from CRIU's schema:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Messages and enums CRIU has that we do not (printed with --nocapture), and none of
/// ours that CRIU lacks: crit could not read them.
#[test]
fn list_what_criu_has_and_we_lack() {
    let criu = load_committed_schema();
    let ours = our_schema();
    for section in ["messages", "enums"] {
        let criu_names = criu[section].as_object().expect("section");
        let our_names = ours[section].as_object().expect("section");
        let missing: Vec<&String> = criu_names
            .keys()
            .filter(|name| !our_names.contains_key(*name))
            .collect();
        eprintln!(
            "{section} CRIU has and we lack ({}): {missing:?}",
            missing.len()
        );
        let ours_only: Vec<&String> = our_names
            .keys()
            .filter(|name| !criu_names.contains_key(*name) && name.as_str() != "CRIU_Opts")
            .collect();
        assert!(
            ours_only.is_empty(),
            "{section} of ours CRIU does not have: {ours_only:?}"
        );
    }
}

#[test]
fn every_allowed_difference_is_still_needed() {
    let criu = load_committed_schema();
    let ours = our_schema();
    for allowed in ALLOWED {
        let criu_message = &criu["messages"][allowed.message];
        let our_message = &ours["messages"][allowed.message];
        let number = u64::from(allowed.number);
        let criu_field = fields_by_number(criu_message)
            .get(&number)
            .copied()
            .cloned();
        let our_field = fields_by_number(our_message).get(&number).copied().cloned();
        let still_differs = match allowed.what {
            "missing" => criu_field.is_some() && our_field.is_none(),
            key => match (criu_field, our_field) {
                (Some(criu_field), Some(our_field)) => criu_field[key] != our_field[key],
                _ => false,
            },
        };
        assert!(
            still_differs,
            "{}.{} {}: allowed difference no longer exists ({}); drop it from ALLOWED",
            allowed.message, allowed.number, allowed.what, allowed.why
        );
    }
}

/// The committed copy is what the installed reference prints now.
#[test]
fn committed_schema_is_fresh() {
    let script = repo_root().join("ci/schema-check");
    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    let output = Command::new(&script).output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) if !in_ci && output.status.code() == Some(127) => {
            eprintln!(
                "skipped: reference CRIU not installed (run ci/criu-reference.sh): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return;
        }
        Ok(output) => panic!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) if !in_ci => {
            eprintln!("skipped: cannot run {}: {error}", script.display());
            return;
        }
        Err(error) => panic!("run {}: {error}", script.display()),
    };
    let now: Json = serde_json::from_slice(&output.stdout).expect("ci/schema-check prints JSON");
    assert!(
        now == load_committed_schema(),
        "images/tests/criu-schema.json is stale: run ci/schema-check > images/tests/criu-schema.json"
    );
}

/// Every image kind of ours has CRIU's magic under CRIU's name, and its entries decode as
/// the message crit decodes them as.
#[test]
fn image_kinds_match_criu() {
    let criu = load_committed_schema();
    let criu_images = criu["images"].as_object().expect("images");
    let mut problems = Vec::new();
    for &kind in crust_images::ImageKind::ALL {
        if kind.is_raw() {
            continue; // raw data, no magic (CRIU's RAW_IMAGE_MAGIC)
        }
        let Some(criu_kind) = criu_images.get(kind.name()) else {
            problems.push(format!("{kind:?}: CRIU has no magic named {}", kind.name()));
            continue;
        };
        if criu_kind["magic"].as_u64() != Some(u64::from(kind.magic())) {
            problems.push(format!(
                "{kind:?}: magic {:#x}, CRIU's {} is {}",
                kind.magic(),
                kind.name(),
                criu_kind["magic"]
            ));
        }
        let ours = crust_images::json::entry_message_name(kind).map(strip_package);
        if let Some(message) = criu_kind.get("message").and_then(Json::as_str) {
            if ours != Some(message) {
                problems.push(format!(
                    "{kind:?}: entries are {ours:?} in ours, {message} in crit"
                ));
            }
        }
    }
    for (name, ours) in [
        ("IMG_COMMON", crust_images::IMG_COMMON_MAGIC),
        ("IMG_SERVICE", crust_images::IMG_SERVICE_MAGIC),
        ("CRTOOLS_IMAGES_V1_1", crust_images::IMAGES_VERSION),
    ] {
        if criu_images[name]["magic"].as_u64() != Some(u64::from(ours)) {
            problems.push(format!(
                "{name}: {ours:#x} in ours, {} in CRIU",
                criu_images[name]["magic"]
            ));
        }
    }
    let framing = ["IMG_COMMON", "IMG_SERVICE", "CRTOOLS_IMAGES_V1_1"];
    let ours: Vec<&str> = crust_images::ImageKind::ALL
        .iter()
        .map(|kind| kind.name())
        .collect();
    let lacking: Vec<&String> = criu_images
        .keys()
        .filter(|name| !ours.contains(&name.as_str()) && !framing.contains(&name.as_str()))
        .collect();
    eprintln!(
        "image magics CRIU has and we lack ({}): {lacking:?}",
        lacking.len()
    );
    assert!(
        problems.is_empty(),
        "image kinds differ from CRIU's:\n{}",
        problems.join("\n")
    );
}

/// Every message and enum of CRIU's rpc.proto is ours too, in our rpc.proto: the RPC
/// server (`crust swrk`, `crust service`) must decode whatever a CRIU client sends.
#[test]
fn rpc_schema_is_complete() {
    let criu = load_committed_schema();
    let ours = our_schema();
    let mut missing = Vec::new();
    for section in ["messages", "enums"] {
        for (name, criu_item) in criu[section].as_object().expect("section") {
            if criu_item["file"] != "rpc.proto" {
                continue;
            }
            match ours[section].get(name) {
                Some(our_item) if our_item["file"] == "rpc.proto" => {}
                Some(our_item) => missing.push(format!("{name} is in our {}", our_item["file"])),
                None => missing.push(format!("{section} {name} missing")),
            }
        }
    }
    assert!(missing.is_empty(), "rpc.proto differs from CRIU's: {missing:?}");
    let rpc_messages = criu["messages"].as_object().expect("messages").values().filter(|m| m["file"] == "rpc.proto").count();
    assert!(rpc_messages >= 15, "CRIU's schema has {rpc_messages} rpc messages: refresh criu-schema.json");
}
