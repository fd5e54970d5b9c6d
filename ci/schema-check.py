# ci/schema-check.py: run by ci/schema-check with the reference root's own python3.
# Prints every message and enum of pycriu's compiled descriptors (CRIU's own schema) as
# JSON: per message its fields with number, label, type, type name and (criu) options.
import json
import os
import sys

import google.protobuf.descriptor as descriptor
from google.protobuf.descriptor_pb2 import FieldDescriptorProto
import pycriu.images  # noqa: F401  (puts the *_pb2 modules on sys.path and loads them)
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
    messages, enums = {}, {}
    for module_file in sorted(os.listdir(images_dir)):
        if not module_file.endswith("_pb2.py"):
            continue
        module = __import__(module_file[: -len(".py")])
        file_descriptor = module.DESCRIPTOR
        for message in file_descriptor.message_types_by_name.values():
            walk_message(message, file_descriptor.name, messages, enums)
        for enum in file_descriptor.enum_types_by_name.values():
            walk_enum(enum, file_descriptor.name, enums)
    json.dump(
        {"messages": dict(sorted(messages.items())), "enums": dict(sorted(enums.items()))},
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


main()
