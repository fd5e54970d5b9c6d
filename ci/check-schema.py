"""ci/check-schema.py: compares crust's .proto schema with the reference CRIU's.

Run by ci/check-schema.sh with the reference root's python3 (its pycriu and protobuf).
Reads our FileDescriptorSet (built by images/build.rs) and every pycriu.images.*_pb2
module, matches messages and enums by name (ours are in package `criu`), and prints one
line per difference:

  WIRE  a field number the reference has and we lack, or a different type, or
        repeated/packed mismatch: images do not carry the same data
  JSON  same wire form, other field or enum value name: crit JSON differs
  REF   a message only the reference has (images we cannot read or write yet)
  OURS  a field or message only we have (harmless if we added it on purpose)

Exits 1 when there is a WIRE difference.
"""
import importlib
import pkgutil
import sys

from google.protobuf import descriptor_pb2
import pycriu.images

TYPE_NAMES = {
    value: name[len("TYPE_"):].lower()
    for name, value in descriptor_pb2.FieldDescriptorProto.Type.items()
}


def reference_messages():
    """(full name without package, descriptor) of every reference message and enum."""
    messages, enums = {}, {}

    def walk_message(descriptor, prefix):
        name = prefix + descriptor.name
        messages[name] = descriptor
        for nested in descriptor.nested_types:
            walk_message(nested, name + ".")
        for enum in descriptor.enum_types:
            enums[name + "." + enum.name] = enum

    for module_info in pkgutil.iter_modules(pycriu.images.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module("pycriu.images." + module_info.name)
        file_descriptor = module.DESCRIPTOR
        prefix = file_descriptor.package + "." if file_descriptor.package else ""
        for message in file_descriptor.message_types_by_name.values():
            walk_message(message, prefix)
        for enum in file_descriptor.enum_types_by_name.values():
            enums[prefix + enum.name] = enum
    return messages, enums


def our_messages(path):
    with open(path, "rb") as file:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(file.read())
    messages, enums, files = {}, {}, {}

    def walk_message(message, prefix, file_name):
        name = prefix + message.name
        messages[name] = message
        files[name] = file_name
        for nested in message.nested_type:
            walk_message(nested, name + ".", file_name)
        for enum in message.enum_type:
            enums[name + "." + enum.name] = enum

    for file in descriptor_set.file:
        if file.package.startswith("google."):
            continue  # descriptor.proto, imported for the (criu) field options
        for message in file.message_type:
            walk_message(message, "", file.name)
        for enum in file.enum_type:
            enums[enum.name] = enum
    return messages, enums, files


def is_packed(field_proto_or_descriptor, ours):
    if ours:
        return field_proto_or_descriptor.options.packed
    options = field_proto_or_descriptor.GetOptions()
    return bool(options.packed)


def main():
    reference, reference_enums = reference_messages()
    ours, our_enums, our_files = our_messages(sys.argv[1])
    wire = json = extra = missing = 0
    for name in sorted(reference):
        reference_message = reference[name]
        message = ours.get(name)
        if message is None:
            print(f"REF   message {name}: missing in ours")
            missing += 1
            continue
        our_fields = {field.number: field for field in message.field}
        for reference_field in reference_message.fields:
            field = our_fields.pop(reference_field.number, None)
            where = f"{name}.{reference_field.name} = {reference_field.number}"
            if field is None:
                print(f"WIRE  {where}: missing in {our_files[name]}")
                wire += 1
                continue
            reference_type = TYPE_NAMES[reference_field.type]
            our_type = TYPE_NAMES[field.type]
            if reference_type != our_type:
                print(f"WIRE  {where}: type {reference_type} here, {our_type} in ours")
                wire += 1
            reference_repeated = reference_field.label == reference_field.LABEL_REPEATED
            our_repeated = field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            if reference_repeated != our_repeated:
                print(f"WIRE  {where}: repeated {reference_repeated} here, {our_repeated} in ours")
                wire += 1
            elif reference_repeated and is_packed(reference_field, False) != is_packed(field, True):
                print(f"WIRE  {where}: packed {is_packed(reference_field, False)} here, "
                      f"{is_packed(field, True)} in ours")
                wire += 1
            if field.name != reference_field.name:
                print(f"JSON  {where}: named {field.name} in ours")
                json += 1
        for number, field in sorted(our_fields.items()):
            print(f"OURS  {name}.{field.name} = {number}: not in the reference")
            extra += 1
    for name in sorted(set(ours) - set(reference)):
        print(f"OURS  message {name}: not in the reference")
        extra += 1
    for name in sorted(reference_enums):
        enum = our_enums.get(name)
        if enum is None:
            print(f"JSON  enum {name}: missing in ours")
            json += 1
            continue
        our_values = {value.number: value.name for value in enum.value}
        for value in reference_enums[name].values:
            if our_values.get(value.number) != value.name:
                print(f"JSON  enum {name}: {value.number} is {value.name} here, "
                      f"{our_values.get(value.number)} in ours")
                json += 1
    print(f"schema: {wire} wire differences, {json} JSON name differences, "
          f"{missing} reference messages we lack, {extra} only in ours")
    return 1 if wire else 0


if __name__ == "__main__":
    sys.exit(main())
