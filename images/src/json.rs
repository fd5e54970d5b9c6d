//! crit's JSON: images to `{"magic": "CORE", "entries": [...]}` and back, following
//! pycriu's `pb2dict` conventions field by field, driven by the `(criu)` options in
//! our `.proto` files.
//!
//! Plain mode (`crit decode`) prints integers as numbers; pretty mode (`crit show`,
//! `crit decode --pretty`) prints `hex` fields as `"0x..."`, `flags` fields as
//! `"PROT_READ | PROT_WRITE"`, `dev` fields as `"major:minor"`, `ipadd` fields as
//! dotted addresses and `dict` fields by name. Both modes print enums by name and bytes
//! as base64 (76-column lines, each ending in `\n`, as Python's `encodebytes`). Raw
//! payloads after entries go into an `"extra"` member, as crit does.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    ReflectMessage, Value,
};
use serde_json::{Map, Number, Value as Json};

use crate::error::ImageError;
use crate::image::{parse, ByteOrder, ImageWriter};
use crate::magic::ImageKind;

/// How to render an image as JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// field-specific formats (crit's `--pretty`, implied by `show`)
    pub pretty: bool,
    /// replace payloads by their size (crit's `show --nopl`)
    pub no_payload: bool,
}

/// Why a JSON value does not give the number, address or bytes its field needs; the
/// caller names the field ([`JsonError::Field`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

/// What went wrong converting between an image and JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The image framing is broken.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// We have no schema for this kind of image.
    #[error("no schema for {kind} images")]
    NoSchema {
        /// crit's name of the kind
        kind: &'static str,
    },
    /// The JSON names a magic we do not know.
    #[error("unknown magic {name:?}")]
    UnknownMagic {
        /// the name found
        name: String,
    },
    /// An entry does not decode as its message type.
    #[error("{file}: entry {index}: decode {message}: {source}")]
    Decode {
        /// file name
        file: String,
        /// entry index
        index: usize,
        /// message type
        message: String,
        /// prost's reason
        source: prost::DecodeError,
    },
    /// A JSON value does not fit the field it is meant for.
    #[error("{path}: {reason}")]
    Field {
        /// where: `entries[0].vmas[2].prot`
        path: String,
        /// why
        reason: String,
    },
}

/// The descriptor pool of all our `.proto` files.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::DESCRIPTOR_SET)
            .expect("descriptor set built by build.rs decodes")
    })
}

/// Full protobuf name of the message each entry of `kind` is (the first entry of
/// pagemap and ghost-file images differs, see [`image_to_json`]).
pub fn entry_message_name(kind: ImageKind) -> Option<&'static str> {
    use ImageKind::*;
    Some(match kind {
        Inventory => "criu.inventory_entry",
        Pstree => "criu.pstree_entry",
        Fdinfo => "criu.fdinfo_entry",
        Pagemap | PagemapShmem => "criu.pagemap_entry",
        Core => "criu.core_entry",
        Ids => "criu.task_kobj_ids_entry",
        Vmas => "criu.vma_entry",
        Pipes => "criu.pipe_entry",
        PipesData | FifoData => "criu.pipe_data_entry",
        Fifo => "criu.fifo_entry",
        Sigact => "criu.sa_entry",
        Unixsk => "criu.unix_sk_entry",
        Inetsk => "criu.inet_sk_entry",
        Packetsk => "criu.packet_sock_entry",
        Itimers => "criu.itimer_entry",
        PosixTimers => "criu.posix_timer_entry",
        SkQueues => "criu.sk_packet_entry",
        Utsns => "criu.utsns_entry",
        Creds => "criu.creds_entry",
        RegFiles => "criu.reg_file_entry",
        ExtFiles => "criu.ext_file_entry",
        Fs => "criu.fs_entry",
        Mm => "criu.mm_entry",
        RemapFpath => "criu.remap_file_path_entry",
        GhostFile => "criu.ghost_chunk_entry",
        TcpStream => "criu.tcp_stream_entry",
        EventfdFile => "criu.eventfd_file_entry",
        EventpollFile => "criu.eventpoll_file_entry",
        EventpollTfd => "criu.eventpoll_tfd_entry",
        Signalfd => "criu.signalfd_entry",
        InotifyFile => "criu.inotify_file_entry",
        InotifyWd => "criu.inotify_wd_entry",
        FanotifyFile => "criu.fanotify_file_entry",
        FanotifyMark => "criu.fanotify_mark_entry",
        TtyFiles => "criu.tty_file_entry",
        TtyInfo => "criu.tty_info_entry",
        TtyData => "criu.tty_data_entry",
        FileLocks => "criu.file_lock_entry",
        Rlimit => "criu.rlimit_entry",
        Signal | Psignal => "criu.signal_queue_entry",
        NetlinkSk => "criu.netlink_sk_entry",
        NsFiles => "criu.ns_file_entry",
        Tunfile => "criu.tunfile_entry",
        Cgroup => "criu.cgroup_entry",
        Timerfd => "criu.timerfd_entry",
        Userns => "criu.userns_entry",
        Seccomp => "criu.seccomp_entry",
        Files => "criu.file_entry",
        MemfdInode => "criu.memfd_inode_entry",
        Timens => "criu.timens_entry",
        StatsDump | StatsRestore => "criu.stats_entry",
        IrmapCache => "criu.irmap_cache_entry",
        Mnts => "criu.mnt_entry",
        Netdev => "criu.net_device_entry",
        Netns => "criu.netns_entry",
        Cpuinfo => "criu.cpuinfo_entry",
        BpfmapFile => "criu.bpfmap_file_entry",
        BpfmapData => "criu.bpfmap_data_entry",
        Apparmor => "criu.apparmor_entry",
        Autofs => "criu.autofs_entry",
        BinfmtMisc => "criu.binfmt_misc_entry",
        Pidfd => "criu.pidfd_entry",
        IpcVar => "criu.ipc_var_entry",
        IpcnsShm => "criu.ipc_shm_entry",
        IpcnsMsg => "criu.ipc_msg_entry",
        IpcnsSem => "criu.ipc_sem_entry",
        Pidns => "criu.pidns_entry",
        // raw data: no protobuf entries
        Pages | Ifaddr | Route | Route6 | Rule | Iptables | Ip6tables | Nftables | NetnsCt
        | NetnsExp | TmpfsDev | TmpfsImg => return None,
    })
}

/// Message of entry `index` of an image of `kind`.
fn message_for_entry(kind: ImageKind, index: usize) -> Result<MessageDescriptor, JsonError> {
    let name = match (kind, index) {
        (ImageKind::Pagemap | ImageKind::PagemapShmem, 0) => "criu.pagemap_head",
        (ImageKind::GhostFile, 0) => "criu.ghost_file_entry",
        _ => entry_message_name(kind).ok_or(JsonError::NoSchema { kind: kind.name() })?,
    };
    Ok(descriptor_pool()
        .get_message_by_name(name)
        .expect("every named message is in our schema"))
}

/// Decodes image bytes into crit's JSON. `file` names the image (its file name also
/// tells `signal-p` from `signal-s` and the like).
pub fn image_to_json(file: &str, bytes: &[u8], options: &JsonOptions) -> Result<Json, JsonError> {
    let image = parse(file, bytes)?;
    let kind = image.header.kind;
    let mut entries = Vec::with_capacity(image.entries.len());
    for (index, raw) in image.entries.iter().enumerate() {
        let descriptor = message_for_entry(kind, index)?;
        let message = DynamicMessage::decode(descriptor.clone(), raw.message.as_slice()).map_err(
            |source| JsonError::Decode {
                file: file.to_owned(),
                index,
                message: descriptor.name().to_owned(),
                source,
            },
        )?;
        let mut object = message_to_json(&message, options.pretty);
        if let Some(payload) = &raw.payload {
            let extra = payload_to_json(kind, &message, payload, image.header.byte_order, options)
                .map_err(|source| JsonError::Decode {
                    file: file.to_owned(),
                    index,
                    message: "ipc_msg".to_owned(),
                    source,
                })?;
            if let Some(extra) = extra {
                object.insert("extra".into(), extra);
            }
        }
        entries.push(Json::Object(object));
    }
    let mut envelope = Map::new();
    envelope.insert("magic".into(), Json::String(kind.name().to_owned()));
    envelope.insert("entries".into(), Json::Array(entries));
    Ok(Json::Object(envelope))
}

/// crit's `extra` member for the raw bytes after an entry; `None` where crit prints none.
/// One deliberate difference: a shared memory segment kept in the pagemaps
/// (`in_pagemaps`) has no bytes here and gets no `extra`, where crit would read the
/// next entry as segment data.
fn payload_to_json(
    kind: ImageKind,
    message: &DynamicMessage,
    payload: &[u8],
    byte_order: ByteOrder,
    options: &JsonOptions,
) -> Result<Option<Json>, prost::DecodeError> {
    let number = |name: &str| match message.get_field_by_name(name).as_deref() {
        Some(Value::U32(value)) => u64::from(*value),
        Some(Value::U64(value)) => *value,
        _ => 0,
    };
    let clamp = |len: u64| {
        usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(payload.len())
    };
    match kind {
        ImageKind::GhostFile if options.no_payload => Ok(None),
        ImageKind::TcpStream if !options.no_payload => {
            let inq_len = clamp(number("inq_len"));
            let mut extra = Map::new();
            extra.insert(
                "inq".into(),
                Json::String(encode_base64(&payload[..inq_len])),
            );
            extra.insert(
                "outq".into(),
                Json::String(encode_base64(&payload[inq_len..])),
            );
            Ok(Some(Json::Object(extra)))
        }
        ImageKind::IpcnsShm => {
            let size = number("size");
            Ok(Some(if options.no_payload {
                Json::String(format!("... <{}>", human_readable(size)))
            } else {
                Json::String(encode_base64(&payload[..clamp(size)]))
            }))
        }
        ImageKind::IpcnsSem => {
            let size = number("nsems") * 2;
            if options.no_payload {
                return Ok(Some(Json::String(format!(
                    "... <{}>",
                    human_readable(size)
                ))));
            }
            let values = payload[..clamp(size)]
                .chunks_exact(2)
                .map(|pair| {
                    let pair = [pair[0], pair[1]];
                    Json::from(match byte_order {
                        ByteOrder::Little => u16::from_le_bytes(pair),
                        ByteOrder::Big => u16::from_be_bytes(pair),
                    })
                })
                .collect();
            Ok(Some(Json::Array(values)))
        }
        ImageKind::IpcnsMsg => {
            let mut items = Vec::new();
            let mut total = 0u64;
            let mut rest = payload;
            while rest.len() >= 4 {
                let size = byte_order.read_u32([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let body = rest.get(4..4 + size).unwrap_or_default();
                let ipc_msg = DynamicMessage::decode(ipc_msg_descriptor(), body)?;
                let msize = match ipc_msg.get_field_by_name("msize").as_deref() {
                    Some(Value::U32(msize)) => *msize as usize,
                    _ => 0,
                };
                let data_start = (4 + size).min(rest.len());
                let data = &rest[data_start..(data_start + msize).min(rest.len())];
                total += (size + msize) as u64;
                // crit renders queued messages plainly, even in pretty mode
                items.push(Json::Object(message_to_json(&ipc_msg, false)));
                items.push(Json::String(encode_base64(data)));
                let padded =
                    usize::try_from(crate::image::round_up(msize as u64, 8)).unwrap_or(usize::MAX);
                rest = rest
                    .get(data_start.saturating_add(padded)..)
                    .unwrap_or_default();
            }
            Ok(Some(if options.no_payload {
                Json::String(format!("... <{}>", human_readable(total)))
            } else {
                Json::Array(items)
            }))
        }
        _ if options.no_payload => Ok(Some(Json::String(format!(
            "... <{}>",
            human_readable(payload.len() as u64)
        )))),
        _ => Ok(Some(Json::String(encode_base64(payload)))),
    }
}

fn ipc_msg_descriptor() -> MessageDescriptor {
    descriptor_pool()
        .get_message_by_name("criu.ipc_msg")
        .expect("ipc_msg is in our schema")
}

/// Encodes crit's JSON back into image bytes, framed in `byte_order`.
pub fn json_to_image(json: &Json, byte_order: ByteOrder) -> Result<Vec<u8>, JsonError> {
    let field_error = |path: &str, reason: &str| JsonError::Field {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let magic = json
        .get("magic")
        .and_then(Json::as_str)
        .ok_or_else(|| field_error("magic", "missing or not a string"))?;
    let kind = ImageKind::from_name(magic).ok_or_else(|| JsonError::UnknownMagic {
        name: magic.to_owned(),
    })?;
    let entries = json
        .get("entries")
        .and_then(Json::as_array)
        .ok_or_else(|| field_error("entries", "missing or not a list"))?;
    let mut writer = ImageWriter::with_sink(Vec::new(), kind.file_name(0), kind, byte_order)?;
    let mut ghost_chunks = false;
    for (index, entry) in entries.iter().enumerate() {
        let path = format!("entries[{index}]");
        let object = entry
            .as_object()
            .ok_or_else(|| field_error(&path, "entry is not an object"))?;
        let descriptor = message_for_entry(kind, index)?;
        let message = json_to_message(object, &descriptor, &path)?;
        writer.write_raw_entry(&message.encode_to_vec())?;
        if kind == ImageKind::GhostFile && index == 0 {
            ghost_chunks = matches!(
                message.get_field_by_name("chunks").as_deref(),
                Some(Value::Bool(true))
            );
        }
        let extra = object.get("extra");
        let extra_path = format!("{path}.extra");
        let payload_start = writer.offset();
        match kind {
            ImageKind::PipesData
            | ImageKind::FifoData
            | ImageKind::SkQueues
            | ImageKind::BpfmapData => {
                if let Some(extra) = extra.filter(|extra| is_truthy(extra)) {
                    writer.write_payload(&decode_base64_json(extra, &extra_path)?)?;
                }
            }
            ImageKind::TcpStream => {
                if let Some(extra) = extra.filter(|extra| is_truthy(extra)) {
                    for queue in ["inq", "outq"] {
                        let queue_path = format!("{extra_path}.{queue}");
                        let data = extra
                            .get(queue)
                            .ok_or_else(|| field_error(&queue_path, "missing"))?;
                        writer.write_payload(&decode_base64_json(data, &queue_path)?)?;
                    }
                }
            }
            ImageKind::GhostFile if index == 0 && !ghost_chunks => {
                let extra =
                    extra.ok_or_else(|| field_error(&extra_path, "missing ghost file contents"))?;
                writer.write_payload(&decode_base64_json(extra, &extra_path)?)?;
                break; // crit ignores anything after an unchunked ghost file
            }
            ImageKind::GhostFile if index > 0 => {
                let extra =
                    extra.ok_or_else(|| field_error(&extra_path, "missing chunk contents"))?;
                writer.write_payload(&decode_base64_json(extra, &extra_path)?)?;
            }
            ImageKind::IpcnsShm | ImageKind::IpcnsSem | ImageKind::IpcnsMsg => {
                if let Some(extra) = extra.filter(|extra| is_truthy(extra)) {
                    let payload =
                        ipc_payload_from_json(kind, &message, extra, byte_order, &extra_path)?;
                    writer.write_payload(&payload)?;
                }
            }
            _ => {}
        }
        // The bytes after the entry must be as many as a reader takes for it, or the
        // image would read back as other entries.
        if let Some(expected) = expected_payload(kind, index, ghost_chunks, &message) {
            let written = writer.offset() - payload_start;
            if written != expected {
                return Err(JsonError::Field {
                    path: extra_path,
                    reason: format!("{written} payload bytes where the entry says {expected}"),
                });
            }
        }
    }
    Ok(writer.into_inner()?)
}

/// How many payload bytes a reader takes after entry `index` of `kind` (see
/// `image::parse`); `None` where that is not a fixed count (an unchunked ghost file's
/// rest, queued IPC messages).
fn expected_payload(kind: ImageKind, index: usize, ghost_chunks: bool, message: &DynamicMessage) -> Option<u64> {
    let number = |name: &str| match message.get_field_by_name(name).as_deref() {
        Some(Value::U32(value)) => u64::from(*value),
        Some(Value::U64(value)) => *value,
        _ => 0,
    };
    let round_up = |x: u64, to: u64| x.checked_add(to - 1).map_or(u64::MAX, |v| v / to * to);
    match kind {
        ImageKind::PipesData | ImageKind::FifoData => Some(number("bytes")),
        ImageKind::SkQueues => Some(number("length")),
        ImageKind::BpfmapData => Some(number("keys_bytes").saturating_add(number("values_bytes"))),
        ImageKind::TcpStream => Some(number("inq_len").saturating_add(number("outq_len"))),
        ImageKind::GhostFile if index > 0 && ghost_chunks => Some(number("len")),
        ImageKind::IpcnsShm => {
            let in_pagemaps = matches!(message.get_field_by_name("in_pagemaps").as_deref(), Some(Value::Bool(true)));
            Some(if in_pagemaps { 0 } else { round_up(number("size"), 4) })
        }
        ImageKind::IpcnsSem => Some(round_up(number("nsems").saturating_mul(2), 8)),
        ImageKind::IpcnsMsg if number("qnum") == 0 => Some(0),
        _ => None,
    }
}

/// The bytes after an IPC entry, from crit's `extra`: segment contents padded to 4,
/// semaphore values padded to 8, or framed queued messages with data padded to 8.
fn ipc_payload_from_json(
    kind: ImageKind,
    message: &DynamicMessage,
    extra: &Json,
    byte_order: ByteOrder,
    path: &str,
) -> Result<Vec<u8>, JsonError> {
    let error = |reason: String| JsonError::Field {
        path: path.to_owned(),
        reason,
    };
    let number =
        |message: &DynamicMessage, name: &str| match message.get_field_by_name(name).as_deref() {
            Some(Value::U32(value)) => u64::from(*value),
            Some(Value::U64(value)) => *value,
            _ => 0,
        };
    let padded = |mut bytes: Vec<u8>, len: u64, align: u64| -> Result<Vec<u8>, JsonError> {
        let len =
            usize::try_from(len).map_err(|_| error(format!("{len} bytes do not fit in memory")))?;
        if bytes.len() < len {
            return Err(error(format!("{} bytes of data for {len}", bytes.len())));
        }
        bytes.truncate(len);
        let total =
            usize::try_from(crate::image::round_up(len as u64, align)).unwrap_or(usize::MAX);
        bytes.resize(total, 0);
        Ok(bytes)
    };
    match kind {
        ImageKind::IpcnsShm => padded(decode_base64_json(extra, path)?, number(message, "size"), 4),
        ImageKind::IpcnsSem => {
            let values = extra
                .as_array()
                .ok_or_else(|| error("expected a list of semaphore values".into()))?;
            if values.len() as u64 != number(message, "nsems") {
                return Err(error(format!(
                    "{} values for nsems {}",
                    values.len(),
                    number(message, "nsems")
                )));
            }
            let mut bytes = Vec::with_capacity(values.len() * 2 + 8);
            for value in values {
                let value = value
                    .as_u64()
                    .and_then(|value| u16::try_from(value).ok())
                    .ok_or_else(|| error(format!("{value} is not a 16-bit semaphore value")))?;
                bytes.extend_from_slice(&match byte_order {
                    ByteOrder::Little => value.to_le_bytes(),
                    ByteOrder::Big => value.to_be_bytes(),
                });
            }
            let len = bytes.len() as u64;
            padded(bytes, len, 8)
        }
        _ => {
            let items = extra
                .as_array()
                .ok_or_else(|| error("expected [message, data, ...]".into()))?;
            let mut bytes = Vec::new();
            for (position, pair) in items.chunks(2).enumerate() {
                let item_path = format!("{path}[{}]", position * 2);
                let object = pair[0]
                    .as_object()
                    .ok_or_else(|| error(format!("item {} is not a message", position * 2)))?;
                let ipc_msg = json_to_message(object, &ipc_msg_descriptor(), &item_path)?;
                let encoded = ipc_msg.encode_to_vec();
                let size =
                    u32::try_from(encoded.len()).map_err(|_| error("message too large".into()))?;
                bytes.extend_from_slice(&byte_order.write_u32(size));
                bytes.extend_from_slice(&encoded);
                let data_json = pair
                    .get(1)
                    .ok_or_else(|| error(format!("item {} has no data", position * 2)))?;
                let data = decode_base64_json(data_json, &format!("{path}[{}]", position * 2 + 1))?;
                bytes.extend(padded(data, number(&ipc_msg, "msize"), 8)?);
            }
            Ok(bytes)
        }
    }
}

/// Renders one message as crit's `pb2dict` does: set fields only, in field-number order.
pub fn message_to_json(message: &DynamicMessage, pretty: bool) -> Map<String, Json> {
    message_to_json_inner(message, pretty, false)
}

fn message_to_json_inner(
    message: &DynamicMessage,
    pretty: bool,
    inherited_hex: bool,
) -> Map<String, Json> {
    let mut object = Map::new();
    let mut fields: Vec<FieldDescriptor> = message.descriptor().fields().collect();
    fields.sort_by_key(FieldDescriptor::number);
    for field in fields {
        if !message.has_field(&field) {
            continue;
        }
        let style = FieldStyle::of(&field);
        let value = message.get_field(&field);
        let rendered = match value.as_ref() {
            Value::List(items) => {
                if pretty && style.ipadd {
                    match render_ip(items) {
                        Some(address) => Json::Array(vec![Json::String(address)]),
                        None => Json::Array(
                            items
                                .iter()
                                .map(|item| {
                                    render_value(&field, &style, item, pretty, inherited_hex)
                                })
                                .collect(),
                        ),
                    }
                } else {
                    Json::Array(
                        items
                            .iter()
                            .map(|item| render_value(&field, &style, item, pretty, inherited_hex))
                            .collect(),
                    )
                }
            }
            single => render_value(&field, &style, single, pretty, inherited_hex),
        };
        object.insert(field.name().to_owned(), rendered);
    }
    object
}

fn render_value(
    field: &FieldDescriptor,
    style: &FieldStyle,
    value: &Value,
    pretty: bool,
    inherited_hex: bool,
) -> Json {
    let hex = inherited_hex || style.hex;
    let integer: Option<i128> = match value {
        Value::I32(number) => Some(i128::from(*number)),
        Value::I64(number) => Some(i128::from(*number)),
        Value::U32(number) => Some(i128::from(*number)),
        Value::U64(number) => Some(i128::from(*number)),
        _ => None,
    };
    if let Some(number) = integer {
        if pretty {
            if hex {
                return Json::String(python_hex(number));
            }
            if style.dev {
                return Json::String(format_dev(number as u64, style.odev));
            }
            if let Some(flags) = &style.flags {
                return Json::String(match flag_table(flags) {
                    Some(table) => map_flags(number as u64, table),
                    None => python_hex(number),
                });
            }
            if let Some(dict) = &style.dict {
                if let Some(name) = dict_table(dict, field.name())
                    .and_then(|table| table.iter().find(|(key, _)| i128::from(*key) == number))
                {
                    return Json::String(name.1.to_owned());
                }
            }
        }
        return json_integer(number);
    }
    match value {
        Value::Bool(flag) => Json::Bool(*flag),
        Value::String(text) => Json::String(text.clone()),
        Value::Bytes(bytes) => match style.conv.as_deref() {
            Some("unix_name") => Json::String(encode_quoted_printable(bytes)),
            _ => Json::String(encode_base64(bytes)),
        },
        Value::EnumNumber(number) => match field.kind() {
            Kind::Enum(enum_descriptor) => match enum_descriptor.get_value(*number) {
                Some(enum_value) => Json::String(enum_value.name().to_owned()),
                None => Json::from(*number),
            },
            _ => Json::from(*number),
        },
        Value::Message(inner) => Json::Object(message_to_json_inner(inner, pretty, hex && pretty)),
        Value::F32(number) => Number::from_f64(f64::from(*number)).map_or(Json::Null, Json::Number),
        Value::F64(number) => Number::from_f64(*number).map_or(Json::Null, Json::Number),
        Value::List(_) | Value::Map(_) => Json::Null,
        Value::I32(_) | Value::I64(_) | Value::U32(_) | Value::U64(_) => {
            unreachable!("integers handled above")
        }
    }
}

/// Builds a message from crit's JSON object, as `dict2pb` does; `path` names it in errors.
pub fn json_to_message(
    object: &Map<String, Json>,
    descriptor: &MessageDescriptor,
    path: &str,
) -> Result<DynamicMessage, JsonError> {
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        let Some(json) = object.get(field.name()) else {
            continue;
        };
        let field_path = format!("{path}.{}", field.name());
        let style = FieldStyle::of(&field);
        let value = if field.is_list() {
            let items = json.as_array().ok_or_else(|| JsonError::Field {
                path: field_path.clone(),
                reason: "expected a list".into(),
            })?;
            if style.ipadd && items.first().is_some_and(Json::is_string) {
                let text = items[0].as_str().unwrap_or_default();
                Value::List(
                    parse_ip(text)
                        .map_err(|reason| JsonError::Field {
                            path: field_path.clone(),
                            reason: reason.0,
                        })?
                        .into_iter()
                        .map(Value::U32)
                        .collect(),
                )
            } else {
                let mut values = Vec::with_capacity(items.len());
                for (position, item) in items.iter().enumerate() {
                    values.push(json_to_value(
                        &field,
                        &style,
                        item,
                        &format!("{field_path}[{position}]"),
                    )?);
                }
                Value::List(values)
            }
        } else {
            json_to_value(&field, &style, json, &field_path)?
        };
        message
            .try_set_field(&field, value)
            .map_err(|error| JsonError::Field {
                path: field_path,
                reason: error.to_string(),
            })?;
    }
    Ok(message)
}

fn json_to_value(
    field: &FieldDescriptor,
    style: &FieldStyle,
    json: &Json,
    path: &str,
) -> Result<Value, JsonError> {
    let error = |reason: String| JsonError::Field {
        path: path.to_owned(),
        reason,
    };
    match field.kind() {
        Kind::Message(inner) => {
            let object = json
                .as_object()
                .ok_or_else(|| error("expected an object".into()))?;
            Ok(Value::Message(json_to_message(object, &inner, path)?))
        }
        Kind::Bytes => {
            let text = json
                .as_str()
                .ok_or_else(|| error("expected a string".into()))?;
            let bytes = match style.conv.as_deref() {
                Some("unix_name") => decode_quoted_printable(text),
                _ => decode_base64(text).map_err(|bad| error(bad.0))?,
            };
            Ok(Value::Bytes(prost::bytes::Bytes::from(bytes)))
        }
        Kind::Enum(enum_descriptor) => match json {
            Json::String(name) => enum_descriptor
                .get_value_by_name(name)
                .map(|value| Value::EnumNumber(value.number()))
                .ok_or_else(|| {
                    error(format!(
                        "{name:?} is not a value of {}",
                        enum_descriptor.name()
                    ))
                }),
            Json::Number(number) => number
                .as_i64()
                .and_then(|number| i32::try_from(number).ok())
                .map(Value::EnumNumber)
                .ok_or_else(|| error(format!("{number} is not an enum number"))),
            _ => Err(error("expected an enum name".into())),
        },
        Kind::Bool => json
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| error("expected true or false".into())),
        Kind::String => json
            .as_str()
            .map(|text| Value::String(text.to_owned()))
            .ok_or_else(|| error("expected a string".into())),
        Kind::Float | Kind::Double => {
            let number = json
                .as_f64()
                .ok_or_else(|| error("expected a number".into()))?;
            Ok(if field.kind() == Kind::Float {
                Value::F32(number as f32)
            } else {
                Value::F64(number)
            })
        }
        integer_kind => {
            let number: i128 = match json {
                Json::Number(number) => number
                    .as_u64()
                    .map(i128::from)
                    .or_else(|| number.as_i64().map(i128::from))
                    .ok_or_else(|| error(format!("{number} is not an integer")))?,
                Json::String(text) => string_to_integer(field, style, text).map_err(|bad| error(bad.0))?,
                _ => return Err(error("expected an integer".into())),
            };
            let out_of_range = || error(format!("{number} does not fit {integer_kind:?}"));
            Ok(match integer_kind {
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                    Value::I32(i32::try_from(number).map_err(|_| out_of_range())?)
                }
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                    Value::I64(i64::try_from(number).map_err(|_| out_of_range())?)
                }
                Kind::Uint32 | Kind::Fixed32 => {
                    Value::U32(u32::try_from(number).map_err(|_| out_of_range())?)
                }
                _ => Value::U64(u64::try_from(number).map_err(|_| out_of_range())?),
            })
        }
    }
}

fn string_to_integer(
    field: &FieldDescriptor,
    style: &FieldStyle,
    text: &str,
) -> Result<i128, BadValue> {
    if style.dev {
        return parse_dev(text, style.odev).map(i128::from);
    }
    if let Some(table) = style.flags.as_deref().and_then(flag_table) {
        return unmap_flags(text, table);
    }
    if let Some(dict) = &style.dict {
        if let Some((number, _)) = dict_table(dict, field.name())
            .and_then(|table| table.iter().find(|(_, name)| *name == text))
        {
            return Ok(i128::from(*number));
        }
    }
    python_int(text)
}

/// The `(criu)` options of one field.
#[derive(Clone, Debug, Default)]
struct FieldStyle {
    hex: bool,
    ipadd: bool,
    flags: Option<String>,
    dev: bool,
    odev: bool,
    dict: Option<String>,
    conv: Option<String>,
}

impl FieldStyle {
    fn of(field: &FieldDescriptor) -> FieldStyle {
        let options = field.options();
        let extension = criu_extension();
        if !options.has_extension(extension) {
            return FieldStyle::default();
        }
        let Value::Message(criu) = options.get_extension(extension).into_owned() else {
            return FieldStyle::default();
        };
        let boolean = |name: &str| {
            matches!(
                criu.get_field_by_name(name).as_deref(),
                Some(Value::Bool(true))
            )
        };
        let text = |name: &str| {
            let field = criu.descriptor().get_field_by_name(name)?;
            if !criu.has_field(&field) {
                return None;
            }
            match criu.get_field(&field).into_owned() {
                Value::String(text) => Some(text),
                _ => None,
            }
        };
        FieldStyle {
            hex: boolean("hex"),
            ipadd: boolean("ipadd"),
            flags: text("flags"),
            dev: boolean("dev"),
            odev: boolean("odev"),
            dict: text("dict"),
            conv: text("conv"),
        }
    }
}

fn criu_extension() -> &'static ExtensionDescriptor {
    static EXTENSION: OnceLock<ExtensionDescriptor> = OnceLock::new();
    EXTENSION.get_or_init(|| {
        descriptor_pool()
            .get_extension_by_name("criu.criu")
            .expect("opts.proto declares (criu)")
    })
}

type FlagTable = &'static [(&'static str, u64)];

/// Symbolic flag tables, named as the `flags` option names them.
fn flag_table(name: &str) -> Option<FlagTable> {
    const MMAP_PROT: FlagTable = &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];
    const MMAP_FLAGS: FlagTable = &[
        ("MAP_SHARED", 0x1),
        ("MAP_PRIVATE", 0x2),
        ("MAP_DROPPABLE", 0x08),
        ("MAP_ANON", 0x20),
        ("MAP_GROWSDOWN", 0x0100),
    ];
    const MMAP_STATUS: FlagTable = &[
        ("VMA_AREA_NONE", 0),
        ("VMA_AREA_REGULAR", 1 << 0),
        ("VMA_AREA_STACK", 1 << 1),
        ("VMA_AREA_VSYSCALL", 1 << 2),
        ("VMA_AREA_VDSO", 1 << 3),
        ("VMA_AREA_HEAP", 1 << 5),
        ("VMA_FILE_PRIVATE", 1 << 6),
        ("VMA_FILE_SHARED", 1 << 7),
        ("VMA_ANON_SHARED", 1 << 8),
        ("VMA_ANON_PRIVATE", 1 << 9),
        ("VMA_AREA_SYSVIPC", 1 << 10),
        ("VMA_AREA_SOCKET", 1 << 11),
        ("VMA_AREA_VVAR", 1 << 12),
        ("VMA_AREA_AIORING", 1 << 13),
        ("VMA_AREA_MEMFD", 1 << 14),
        ("VMA_AREA_SHSTK", 1 << 15),
        ("VMA_AREA_UPROBES", 1 << 17),
        ("VMA_UNSUPP", 1 << 31),
    ];
    const RFILE_FLAGS: FlagTable = &[
        ("O_WRONLY", 0o1),
        ("O_RDWR", 0o2),
        ("O_CREAT", 0o100),
        ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400),
        ("O_TRUNC", 0o1000),
        ("O_APPEND", 0o2000),
        ("O_NONBLOCK", 0o4000),
        ("O_DSYNC", 0o10000),
        ("FASYNC", 0o20000),
        ("O_DIRECT", 0o40000),
        ("O_LARGEFILE", 0o100000),
        ("O_DIRECTORY", 0o200000),
        ("O_NOFOLLOW", 0o400000),
        ("O_NOATIME", 0o1000000),
        ("O_CLOEXEC", 0o2000000),
    ];
    const PMAP_FLAGS: FlagTable = &[
        ("PE_PARENT", 1 << 0),
        ("PE_LAZY", 1 << 1),
        ("PE_PRESENT", 1 << 2),
    ];
    const SEALS_FLAGS: FlagTable = &[
        ("F_SEAL_SEAL", 0x1),
        ("F_SEAL_SHRINK", 0x2),
        ("F_SEAL_GROW", 0x4),
        ("F_SEAL_WRITE", 0x8),
        ("F_SEAL_FUTURE_WRITE", 0x10),
    ];
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        _ => return None,
    })
}

/// Value-name tables of `dict` options, per dict and field name.
fn dict_table(dict: &str, field: &str) -> Option<&'static [(u32, &'static str)]> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[(1, "Alive"), (2, "Dead"), (3, "Stopped"), (6, "Zombie")],
        ("sk", "family") => &[
            (1, "UNIX"),
            (2, "INET"),
            (10, "INET6"),
            (16, "NETLINK"),
            (17, "PACKET"),
        ],
        ("sk", "type") => &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
        ("sk", "state") => &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
        ("sk", "proto") => &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
        _ => return None,
    })
}

/// `"A | B | 0x40"`: names of known bits in table order, then leftover bits in hex.
fn map_flags(value: u64, table: FlagTable) -> String {
    let mut parts: Vec<String> = table
        .iter()
        .filter(|(_, bit)| value & bit != 0)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let known: u64 = table.iter().map(|(_, bit)| bit).sum();
    let leftover = value & !known;
    if leftover != 0 {
        parts.push(format!("0x{leftover:x}"));
    }
    parts.join(" | ")
}

fn unmap_flags(text: &str, table: FlagTable) -> Result<i128, BadValue> {
    if text.is_empty() {
        return Ok(0);
    }
    let mut total = 0i128;
    for part in text.split('|').map(str::trim) {
        total += match table.iter().find(|(name, _)| *name == part) {
            Some((_, bit)) => i128::from(*bit),
            None => python_int(part)?,
        };
    }
    Ok(total)
}

/// Kernel `dev_t` packing: 12-bit major above a 20-bit minor.
const KERNEL_MINOR_BITS: u32 = 20;

fn format_dev(value: u64, old_encoding: bool) -> String {
    if old_encoding {
        // glibc major()/minor()
        let major = ((value >> 8) & 0xfff) | ((value >> 32) & !0xfff);
        let minor = (value & 0xff) | ((value >> 12) & !0xff);
        format!("{major}:{minor}")
    } else {
        format!(
            "{}:{}",
            value >> KERNEL_MINOR_BITS,
            value & ((1 << KERNEL_MINOR_BITS) - 1)
        )
    }
}

fn parse_dev(text: &str, old_encoding: bool) -> Result<u64, BadValue> {
    let (major, minor) = text
        .split_once(':')
        .ok_or_else(|| BadValue(format!("{text:?} is not major:minor")))?;
    let parse = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|_| BadValue(format!("{text:?} is not major:minor")))
    };
    let (major, minor) = (parse(major)?, parse(minor)?);
    Ok(if old_encoding {
        // glibc makedev()
        ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff)
    } else {
        (major << KERNEL_MINOR_BITS) | minor
    })
}

/// An address stored as network-order 32-bit words read on a little-endian host.
fn render_ip(words: &[Value]) -> Option<String> {
    let words: Vec<u32> = words
        .iter()
        .map(|word| {
            if let Value::U32(word) = word {
                Some(*word)
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    match words.as_slice() {
        [word] => Some(Ipv4Addr::from(word.to_le_bytes()).to_string()),
        [a, b, c, d] => {
            let mut octets = [0u8; 16];
            for (chunk, word) in octets.chunks_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            Some(python_ipv6(&Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

fn parse_ip(text: &str) -> Result<Vec<u32>, BadValue> {
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Ok(vec![u32::from_le_bytes(v4.octets())]);
    }
    let v6 = text
        .parse::<Ipv6Addr>()
        .map_err(|_| BadValue(format!("{text:?} is not an IP address")))?;
    let octets = v6.octets();
    Ok(octets
        .chunks(4)
        .map(|chunk| u32::from_le_bytes(chunk.try_into().expect("chunks of 4")))
        .collect())
}

/// IPv6 text as Python's `IPv6Address.compressed` writes it (no dotted IPv4 tail).
fn python_ipv6(address: &Ipv6Addr) -> String {
    let groups = address.segments();
    let (mut best_start, mut best_len) = (usize::MAX, 0);
    let mut run_start = None;
    for (position, group) in groups.iter().enumerate() {
        if *group == 0 {
            let start = *run_start.get_or_insert(position);
            if position + 1 - start > best_len {
                (best_start, best_len) = (start, position + 1 - start);
            }
        } else {
            run_start = None;
        }
    }
    let hex = |slice: &[u16]| {
        slice
            .iter()
            .map(|group| format!("{group:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len > 1 {
        format!(
            "{}::{}",
            hex(&groups[..best_start]),
            hex(&groups[best_start + best_len..])
        )
    } else {
        hex(&groups)
    }
}

fn python_hex(number: i128) -> String {
    if number < 0 {
        format!("-0x{:x}", -number)
    } else {
        format!("0x{number:x}")
    }
}

/// Python's `int(text, 0)`: decimal, or `0x`/`0o`/`0b` prefixed, optional sign and underscores.
fn python_int(text: &str) -> Result<i128, BadValue> {
    let invalid = || BadValue(format!("{text:?} is not an integer"));
    let trimmed = text.trim().replace('_', "");
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest.to_owned()),
        None => (
            false,
            trimmed.strip_prefix('+').unwrap_or(&trimmed).to_owned(),
        ),
    };
    let lower = digits.to_ascii_lowercase();
    let magnitude = if let Some(hex) = lower.strip_prefix("0x") {
        i128::from_str_radix(hex, 16)
    } else if let Some(octal) = lower.strip_prefix("0o") {
        i128::from_str_radix(octal, 8)
    } else if let Some(binary) = lower.strip_prefix("0b") {
        i128::from_str_radix(binary, 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|byte| byte != b'0') {
        return Err(invalid()); // Python refuses "010" in base 0
    } else {
        lower.parse::<i128>()
    }
    .map_err(|_| invalid())?;
    Ok(if negative { -magnitude } else { magnitude })
}

fn json_integer(number: i128) -> Json {
    if let Ok(unsigned) = u64::try_from(number) {
        Json::from(unsigned)
    } else if let Ok(signed) = i64::try_from(number) {
        Json::from(signed)
    } else {
        Json::String(number.to_string())
    }
}

fn is_truthy(json: &Json) -> bool {
    match json {
        Json::Null => false,
        Json::Bool(flag) => *flag,
        Json::String(text) => !text.is_empty(),
        Json::Array(items) => !items.is_empty(),
        Json::Object(members) => !members.is_empty(),
        Json::Number(number) => number.as_f64() != Some(0.0),
    }
}

/// Python's `base64.encodebytes`: lines of at most 76 characters, each ending in `\n`.
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 4 / 3 + bytes.len() / 57 + 4);
    for chunk in bytes.chunks(57) {
        text.push_str(&base64::engine::general_purpose::STANDARD.encode(chunk));
        text.push('\n');
    }
    text
}

/// Python's `base64.decodebytes`: whitespace and newlines are ignored.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, BadValue> {
    let compact: String = text
        .chars()
        .filter(|character| !character.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|error| BadValue(format!("bad base64: {error}")))
}

fn decode_base64_json(json: &Json, path: &str) -> Result<Vec<u8>, JsonError> {
    let text = json.as_str().ok_or_else(|| JsonError::Field {
        path: path.to_owned(),
        reason: "expected a base64 string".into(),
    })?;
    decode_base64(text).map_err(|reason| JsonError::Field {
        path: path.to_owned(),
        reason: reason.0,
    })
}

/// Python's `quopri.encodestring` (CPython's `binascii.b2a_qp` in text mode, tabs and
/// spaces unquoted, 76-column lines), used for unix socket names.
pub fn encode_quoted_printable(data: &[u8]) -> String {
    const MAX_LINE: usize = 76;
    let crlf = data
        .iter()
        .position(|&byte| byte == b'\n')
        .is_some_and(|newline| newline > 0 && data[newline - 1] == b'\r');
    let line_break: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let hex = |byte: u8| format!("={byte:02X}").into_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(data.len() * 3);
    let mut line_len = 0usize;
    let mut position = 0usize;
    while position < data.len() {
        let byte = data[position];
        let next = data.get(position + 1).copied();
        let at_end = position + 1 == data.len();
        let must_quote = byte > 126
            || byte == b'='
            || (byte == b'.'
                && line_len == 0
                && (at_end || matches!(next, Some(b'\n' | b'\r' | 0))))
            || ((byte == b'\t' || byte == b' ') && at_end)
            || (byte < 33 && byte != b'\r' && byte != b'\n' && byte != b'\t' && byte != b' ');
        if must_quote {
            if line_len + 3 >= MAX_LINE {
                out.push(b'=');
                out.extend_from_slice(line_break);
                line_len = 0;
            }
            out.extend(hex(byte));
            line_len += 3;
            position += 1;
        } else if byte == b'\n' || (byte == b'\r' && next == Some(b'\n')) {
            line_len = 0;
            // whitespace at the end of a line is quoted
            if let Some(&last @ (b' ' | b'\t')) = out.last() {
                out.pop();
                out.extend(hex(last));
            }
            out.extend_from_slice(line_break);
            position += if byte == b'\r' { 2 } else { 1 };
        } else {
            if !at_end && next != Some(b'\n') && line_len + 1 >= MAX_LINE {
                out.push(b'=');
                out.extend_from_slice(line_break);
                line_len = 0;
            }
            line_len += 1;
            out.push(byte);
            position += 1;
        }
    }
    // every byte above 126 was quoted, so this is ASCII
    String::from_utf8_lossy(&out).into_owned()
}

/// Python's `quopri.decodestring`: `=XX` escapes and `=` soft line breaks.
pub fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut output = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        let byte = bytes[position];
        if byte == b'=' {
            if bytes.get(position + 1) == Some(&b'\n') {
                position += 2;
                continue;
            }
            if bytes.get(position + 1..position + 3) == Some(b"\r\n") {
                position += 3;
                continue;
            }
            let hex = bytes
                .get(position + 1..position + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok());
            if let Some(value) = hex.and_then(|pair| u8::from_str_radix(pair, 16).ok()) {
                output.push(value);
                position += 3;
                continue;
            }
        }
        output.push(byte);
        position += 1;
    }
    output
}

/// crit's `--nopl` sizes: `"4KB"`, `"1.5MB"`.
fn human_readable(size: u64) -> String {
    let mut number = size as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if number < 1024.0 {
            return if number.fract() == 0.0 {
                format!("{number:.0}{unit}B")
            } else {
                format!("{number:.1}{unit}B")
            };
        }
        number /= 1024.0;
    }
    format!("{number:.1}YB")
}

/// Serializes JSON exactly as Python's `json.dump` does: `", "` and `": "` separators
/// in one-line mode, 4-space indents and `","` line ends in pretty mode, non-ASCII
/// escaped as `\uXXXX`.
pub fn to_crit_string(json: &Json, pretty: bool) -> String {
    let mut output = String::new();
    write_python_json(&mut output, json, if pretty { Some(4) } else { None }, 0);
    output
}

fn write_python_json(output: &mut String, json: &Json, indent: Option<usize>, depth: usize) {
    let newline = |output: &mut String, depth: usize| {
        if let Some(width) = indent {
            output.push('\n');
            output.extend(std::iter::repeat_n(' ', width * depth));
        }
    };
    let item_separator = if indent.is_some() { "," } else { ", " };
    match json {
        Json::Null => output.push_str("null"),
        Json::Bool(flag) => output.push_str(if *flag { "true" } else { "false" }),
        Json::Number(number) => output.push_str(&number.to_string()),
        Json::String(text) => write_python_string(output, text),
        Json::Array(items) => {
            if items.is_empty() {
                output.push_str("[]");
                return;
            }
            output.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    output.push_str(item_separator);
                }
                newline(output, depth + 1);
                write_python_json(output, item, indent, depth + 1);
            }
            newline(output, depth);
            output.push(']');
        }
        Json::Object(members) => {
            if members.is_empty() {
                output.push_str("{}");
                return;
            }
            output.push('{');
            for (position, (key, value)) in members.iter().enumerate() {
                if position > 0 {
                    output.push_str(item_separator);
                }
                newline(output, depth + 1);
                write_python_string(output, key);
                output.push_str(": ");
                write_python_json(output, value, indent, depth + 1);
            }
            newline(output, depth);
            output.push('}');
        }
    }
}

fn write_python_string(output: &mut String, text: &str) {
    output.push('"');
    for character in text.chars() {
        match character {
            '"' => output.push_str("\\\""),
            '\\' => output.push_str("\\\\"),
            '\n' => output.push_str("\\n"),
            '\r' => output.push_str("\\r"),
            '\t' => output.push_str("\\t"),
            '\u{08}' => output.push_str("\\b"),
            '\u{0c}' => output.push_str("\\f"),
            ' '..='~' => output.push(character),
            other => {
                let mut units = [0u16; 2];
                for unit in other.encode_utf16(&mut units) {
                    output.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    output.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_framed_kind_has_a_schema() {
        for &kind in ImageKind::ALL {
            if kind.is_raw() {
                assert_eq!(entry_message_name(kind), None, "{kind:?}");
                continue;
            }
            let name = entry_message_name(kind).expect("schema for every framed kind");
            assert!(
                descriptor_pool().get_message_by_name(name).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn base64_matches_python_encodebytes() {
        assert_eq!(encode_base64(b""), "");
        assert_eq!(encode_base64(b"abc"), "YWJj\n");
        let long = vec![0u8; 60];
        let text = encode_base64(&long);
        assert_eq!(text.lines().next().map(str::len), Some(76));
        assert_eq!(decode_base64(&text).expect("round trip"), long);
    }

    #[test]
    fn flags_render_like_crit() {
        let prot = flag_table("mmap.prot").expect("table");
        assert_eq!(map_flags(3, prot), "PROT_READ | PROT_WRITE");
        assert_eq!(map_flags(0, prot), "");
        assert_eq!(map_flags(0x11, prot), "PROT_READ | 0x10");
        assert_eq!(unmap_flags("PROT_READ | 0x10", prot), Ok(0x11));
        assert_eq!(unmap_flags("", prot), Ok(0));
        let map_flags_table = flag_table("mmap.flags").expect("table");
        assert_eq!(map_flags(0x22, map_flags_table), "MAP_PRIVATE | MAP_ANON");
    }

    #[test]
    fn devices_render_like_crit() {
        assert_eq!(format_dev((8 << 20) | 1, false), "8:1");
        assert_eq!(parse_dev("8:1", false), Ok((8 << 20) | 1));
        assert_eq!(format_dev(0x0801, true), "8:1");
        assert_eq!(parse_dev("136:3", true), Ok(0x8803));
    }

    #[test]
    fn addresses_render_like_crit() {
        let loopback = u32::from_le_bytes([127, 0, 0, 1]);
        assert_eq!(
            render_ip(&[Value::U32(loopback)]).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(parse_ip("127.0.0.1"), Ok(vec![loopback]));
        let words = parse_ip("::1").expect("v6");
        let values: Vec<Value> = words.iter().copied().map(Value::U32).collect();
        assert_eq!(render_ip(&values).as_deref(), Some("::1"));
        assert_eq!(
            python_ipv6(&"::ffff:1.2.3.4".parse().expect("v6")),
            "::ffff:102:304"
        );
        assert_eq!(
            python_ipv6(&"fe80:0:0:1:0:0:0:1".parse().expect("v6")),
            "fe80:0:0:1::1"
        );
        assert_eq!(
            python_ipv6(&"1:0:2:0:3:0:4:0".parse().expect("v6")),
            "1:0:2:0:3:0:4:0"
        );
    }

    #[test]
    fn integers_parse_like_python() {
        assert_eq!(python_int("0x7f"), Ok(0x7f));
        assert_eq!(python_int("42"), Ok(42));
        assert_eq!(python_int("-0x1"), Ok(-1));
        assert_eq!(python_int("0"), Ok(0));
        assert!(python_int("010").is_err());
        assert!(python_int("zz").is_err());
        assert_eq!(python_hex(-5), "-0x5");
    }

    #[test]
    fn quoted_printable_matches_python_quopri() {
        // expected strings produced by CPython's quopri.encodestring
        let cases: [(&[u8], &str); 7] = [
            (b"\0abstract=name \xff", "=00abstract=3Dname =FF"),
            (b"/tmp/sock ", "/tmp/sock=20"),
            (b"a\rb", "a\rb"),
            (&[b'x'; 80], "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=\nxxxxx"),
            (b".\n", "=2E\n"),
            (b"line one \nline two\t\n", "line one=20\nline two=09\n"),
            (
                &[b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7, b'=', 0xe7],
                "=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=E7=3D=\n=E7",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(encode_quoted_printable(raw), expected, "{raw:?}");
            assert_eq!(decode_quoted_printable(expected), raw, "{expected:?}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_quoted_printable(&encode_quoted_printable(&all)), all);
    }

    #[test]
    fn python_json_layout() {
        let json: Json =
            serde_json::json!({"magic": "X", "entries": [{"a": 1, "b": [1, 2]}, {}], "u": "é"});
        assert_eq!(
            to_crit_string(&json, false),
            r#"{"magic": "X", "entries": [{"a": 1, "b": [1, 2]}, {}], "u": "\u00e9"}"#
        );
        assert_eq!(
            to_crit_string(&json, true),
            "{\n    \"magic\": \"X\",\n    \"entries\": [\n        {\n            \"a\": 1,\n            \"b\": [\n                1,\n                2\n            ]\n        },\n        {}\n    ],\n    \"u\": \"\\u00e9\"\n}"
        );
    }

    #[test]
    fn human_readable_sizes() {
        assert_eq!(human_readable(10), "10B");
        assert_eq!(human_readable(4096), "4KB");
        assert_eq!(human_readable(1536), "1.5KB");
    }

    #[test]
    fn options_are_visible_in_the_descriptor() {
        let vma = descriptor_pool()
            .get_message_by_name("criu.vma_entry")
            .expect("vma_entry");
        let start = FieldStyle::of(&vma.get_field_by_name("start").expect("start"));
        assert!(start.hex);
        let prot = FieldStyle::of(&vma.get_field_by_name("prot").expect("prot"));
        assert_eq!(prot.flags.as_deref(), Some("mmap.prot"));
        let pgoff = FieldStyle::of(&vma.get_field_by_name("pgoff").expect("pgoff"));
        assert!(!pgoff.hex && pgoff.flags.is_none());
    }
}
