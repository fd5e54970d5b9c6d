# ci/schema-check.py: run by ci/schema-check with the reference root's own python3.
# Prints every message and enum of pycriu's compiled descriptors (CRIU's own schema) as
# JSON: per message its fields with number, label, type, type name and (criu) options.
# Besides the image protos (pycriu/images) it walks pycriu's rpc_pb2: the RPC messages
# `crust swrk` and `crust service` speak.
import json
import os
import sys

import google.protobuf.descriptor as descriptor
from google.protobuf.descriptor_pb2 import FieldDescriptorProto, FileDescriptorProto
import pycriu.images  # noqa: F401  (puts the *_pb2 modules on sys.path and loads them)
from pycriu.images import images as crit_images
from pycriu.images import magic as crit_magic
import opts_pb2

LABELS = {
    FieldDescriptorProto.LABEL_OPTIONAL: "optional",
    FieldDescriptorProto.LABEL_REQUIRED: "required",
    FieldDescriptorProto.LABEL_REPEATED: "repeated",
}
TYPES = {
    value: name[len("TYPE_"):].lower()
    for name, value in FieldDescriptorProto.Type.items()
}


def criu_options(field):
    options = field.GetOptions()
    if not options.HasExtension(opts_pb2.criu):
        return {}
    criu = options.Extensions[opts_pb2.criu]
    return {option.name: value for option, value in criu.ListFields()}


def explicit_defaults(file_descriptor):
    """(message full name, field name) -> the [default = ...] text, as written in the .proto."""
    file_proto = FileDescriptorProto.FromString(file_descriptor.serialized_pb)
    defaults = {}

    def walk(message_proto, prefix):
        full_name = prefix + message_proto.name
        for field_proto in message_proto.field:
            if field_proto.HasField("default_value"):
                defaults[(full_name, field_proto.name)] = field_proto.default_value
        for nested in message_proto.nested_type:
            walk(nested, full_name + ".")

    package = file_proto.package + "." if file_proto.package else ""
    for message_proto in file_proto.message_type:
        walk(message_proto, package)
    return defaults


DEFAULTS = {}


def field_json(field):
    type_name = ""
    if field.message_type is not None:
        type_name = field.message_type.full_name
    elif field.enum_type is not None:
        type_name = field.enum_type.full_name
    return {
        "name": field.name,
        "number": field.number,
        "label": LABELS[field.label],
        "type": TYPES[field.type],
        "type_name": type_name,
        "default": DEFAULTS.get((field.containing_type.full_name, field.name)),
        "options": criu_options(field),
    }


def walk_message(message, file_name, messages, enums):
    messages[message.full_name] = {
        "file": file_name,
        "fields": [field_json(field) for field in message.fields],
    }
    for nested in message.nested_types:
        walk_message(nested, file_name, messages, enums)
    for enum in message.enum_types:
        walk_enum(enum, file_name, enums)


def walk_enum(enum, file_name, enums):
    enums[enum.full_name] = {
        "file": file_name,
        "values": {value.name: value.number for value in enum.values},
    }


def main():
    images_dir = os.path.dirname(pycriu.images.__file__)
    modules = [
        __import__(module_file[: -len(".py")])
        for module_file in sorted(os.listdir(images_dir))
        if module_file.endswith("_pb2.py")
    ]
    modules.append(rpc_module())
    messages, enums = {}, {}
    for module in modules:
        file_descriptor = module.DESCRIPTOR
        DEFAULTS.update(explicit_defaults(file_descriptor))
        for message in file_descriptor.message_types_by_name.values():
            walk_message(message, file_descriptor.name, messages, enums)
        for enum in file_descriptor.enum_types_by_name.values():
            walk_enum(enum, file_descriptor.name, enums)
    write_compact(messages, enums, image_kinds(), sys.stdout)


def rpc_module():
    """pycriu's rpc_pb2 (CRIU's rpc.proto), which sits beside images/ in the package."""
    import importlib.util

    path = os.path.join(os.path.dirname(pycriu.__file__), "rpc_pb2.py")
    spec = importlib.util.spec_from_file_location("rpc_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image_kinds():
    """Magic name -> its value and what crit decodes its entries as: the message, and
    the extra handler for raw payloads after entries (or the special handler class)."""
    kinds = {}
    for name, value in sorted(crit_magic.by_name.items()):
        kind = {"magic": value}
        handler = crit_images.handlers.get(name)
        if handler is not None:
            payload = getattr(handler, "payload", None)
            if payload is not None:
                kind["message"] = payload.DESCRIPTOR.full_name
            else:
                kind["special"] = type(handler).__name__
            extra = getattr(handler, "extra_handler", None)
            if extra is not None:
                kind["extra"] = type(extra).__name__
        kinds[name] = kind
    return kinds


def write_compact(messages, enums, kinds, out):
    """One message per block and one field per line, so a diff names the field."""
    def line(value):
        return json.dumps(value, sort_keys=False)

    out.write('{\n "messages": {\n')
    for index, (name, message) in enumerate(sorted(messages.items())):
        out.write('  %s: {"file": %s, "fields": [' % (line(name), line(message["file"])))
        fields = message["fields"]
        for field_index, field in enumerate(fields):
            out.write("\n   " + line(field) + ("," if field_index + 1 < len(fields) else ""))
        out.write("\n  ]}" if fields else "]}")
        out.write(",\n" if index + 1 < len(messages) else "\n")
    out.write(' },\n "enums": {\n')
    for index, (name, enum) in enumerate(sorted(enums.items())):
        out.write("  %s: {\"file\": %s, \"values\": %s}" % (line(name), line(enum["file"]), line(enum["values"])))
        out.write(",\n" if index + 1 < len(enums) else "\n")
    out.write(' },\n "images": {\n')
    for index, (name, kind) in enumerate(kinds.items()):
        out.write("  %s: %s" % (line(name), line(kind)))
        out.write(",\n" if index + 1 < len(kinds) else "\n")
    out.write(" }\n}\n")


main()
