"""The fields each RPC takes from its REST path, read from the google.api.http rules of the
descriptor set the transcoder serves: the gateway refuses a query parameter that names one
(rest_path_fields in gateway/envoy.yaml), since the transcoder would let it override the path.

Derived, not listed: an RPC added to the proto is covered by the next rendered config.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from server.domain import messages


def from_descriptor(descriptor: Path) -> dict[str, dict[str, str]]:
    """For each RPC with REST bindings, by its gRPC path: each query parameter that would set
    a field one of its bindings takes from the path, as the transcoder reads a parameter (each
    dotted segment the field's name or its JSON name) -> that field."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    messages_by_name = {
        name: message for file in files.file for name, message in _messages(file.package, file)
    }
    found: dict[str, dict[str, str]] = {}
    for file in files.file:
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                fields: dict[str, str] = {}
                for binding in (rule, *rule.additional_bindings):
                    for path in re.findall(r"{([^}=]+)", template(binding)):
                        spellings = _spellings(messages_by_name, method.input_type, path.split("."))
                        fields.update(dict.fromkeys(spellings, path))
                if fields:
                    found[f"/{file.package}.{service.name}/{method.name}"] = fields
    return found


def lua_table(descriptor: Path) -> str:
    """from_descriptor as a Lua table, each field as its google.rpc.BadRequest violation (JSON),
    which rest_path_fields puts in its 400 as it is."""
    return lua_literal(
        {
            method: {spelling: _violation(field) for spelling, field in fields.items()}
            for method, fields in from_descriptor(descriptor).items()
        }
    )


def lua_reply_head() -> str:
    """A Lua string: the google.rpc.Status JSON body (INVALID_ARGUMENT, as the server words it)
    up to its BadRequest's field violations, which rest_path_fields appends and closes."""
    status = {
        "code": 3,
        "message": messages.INVALID_REQUEST,
        "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "field_violations": []}],
    }
    return lua_literal(json.dumps(status, separators=(",", ":")).removesuffix("]}]}"))


def template(binding: http_pb2.HttpRule) -> str:
    pattern = binding.WhichOneof("pattern")
    if pattern is None:
        return ""  # no REST binding
    if pattern == "custom":
        return str(binding.custom.path)
    template: str = getattr(binding, pattern)
    return template


def _messages(
    scope: str, parent: descriptor_pb2.FileDescriptorProto | descriptor_pb2.DescriptorProto
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    nested = (
        parent.message_type
        if isinstance(parent, descriptor_pb2.FileDescriptorProto)
        else parent.nested_type
    )
    for message in nested:
        name = f"{scope}.{message.name}"
        yield f".{name}", message
        yield from _messages(name, message)


def _spellings(
    messages_by_name: Mapping[str, descriptor_pb2.DescriptorProto], type_name: str, path: list[str]
) -> set[str]:
    """How a query parameter may spell the field `path` of `type_name`."""
    head, *rest = path
    (field,) = [f for f in messages_by_name[type_name].field if f.name == head]
    # protoc fills json_name in descriptor sets; otherwise it is the lowerCamelCase name.
    json_name = field.json_name or re.sub(r"_([a-z])", lambda m: m.group(1).upper(), field.name)
    names = {field.name, json_name}
    if not rest:
        return names
    return {
        f"{name}.{tail}"
        for name in names
        for tail in _spellings(messages_by_name, field.type_name, rest)
    }


def _violation(field: str) -> str:
    return json.dumps(
        {"field": field, "description": messages.PATH_FIELD_IN_QUERY, "reason": ""},
        separators=(",", ":"),
    )


def lua_literal(value: str | Mapping[str, Any]) -> str:
    """A Lua literal, on one line: a string, or a table of string keys."""
    if isinstance(value, Mapping):
        entries = [
            f"[{lua_literal(key)}] = {lua_literal(item)}" for key, item in sorted(value.items())
        ]
        return "{" + ", ".join(entries) + "}"
    # A JSON string literal is a Lua one as long as it holds no \u escapes (ASCII only).
    assert value.isascii(), value
    return json.dumps(value)
