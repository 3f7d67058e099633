"""server/entrypoints/rest_statuses.py's table as the gateway applies it (rest_edge and rest_status
in gateway/envoy.yaml): each RPC's success status by the REST method and path its
google.api.http rules bind, as the request arrives (before the transcoder names the RPC), and the
failed answers' statuses by gRPC code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gateway.path_fields import lua_literal, template
from server.entrypoints import rest_statuses


def success_patterns(descriptor: Path) -> dict[str, dict[str, str]]:
    """By HTTP method: a Lua pattern of each bound path (query string removed) whose RPC does
    not answer 200 -> that status."""

    def status(method: descriptor_pb2.MethodDescriptorProto) -> str | None:
        code = rest_statuses.success(method.name)
        return None if code == 200 else str(code)

    return _bound_patterns(descriptor, status)


def stream_patterns(descriptor: Path) -> dict[str, dict[str, str]]:
    """By HTTP method: a Lua pattern of each bound path whose RPC streams its answers (server
    streaming) -> "1". Their 200 is newline-delimited JSON, labelled application/x-ndjson."""
    return _bound_patterns(descriptor, lambda method: "1" if method.server_streaming else None)


def _bound_patterns(
    descriptor: Path, value: Callable[[descriptor_pb2.MethodDescriptorProto], str | None]
) -> dict[str, dict[str, str]]:
    """By HTTP method: a Lua pattern of each path bound to an RPC whose `value` is not None
    -> that value."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    found: dict[str, dict[str, str]] = {}
    for file in files.file:
        for service in file.service:
            for method in service.method:
                found_value = value(method)
                if found_value is None:
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb is None or verb == "custom":
                        continue  # no such bindings in the API; a custom verb would need its own
                    found.setdefault(verb.upper(), {})[lua_pattern(template(binding))] = found_value
    return found


def lua_streams(descriptor: Path) -> str:
    return lua_literal(stream_patterns(descriptor))


def lua_pattern(path_template: str) -> str:
    """A Lua pattern matching the paths of `path_template`: each {variable} one or more
    characters other than `/`, a trailing `/` allowed, anchored at both ends."""
    parts = re.split(r"\{[^}]*\}", path_template)
    literal = [re.sub(r"([^0-9A-Za-z/_])", r"%\1", part) for part in parts]
    return "^" + "[^/]+".join(literal).rstrip("/") + "/?$"


def lua_success(descriptor: Path) -> str:
    return lua_literal(success_patterns(descriptor))


def lua_errors() -> str:
    """rest_statuses.ERROR as a Lua table: Envoy's status for the code -> the REST status."""
    return lua_literal(
        {
            str(rest_statuses.ENVOY_ERROR[code]): str(status)
            for code, status in rest_statuses.ERROR.items()
        }
    )


def lua_without_body() -> str:
    return lua_literal({str(status): "1" for status in sorted(rest_statuses.WITHOUT_BODY)})
