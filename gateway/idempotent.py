"""Which calls the gateway may send again to another instance, read from the google.api.http
rules of the descriptor set the transcoder serves (gateway/envoy.yaml, idempotent_retries).

Derived, not listed: a GET binding only reads, so running it twice changes nothing; a POST
binding creates, and runs once for each Idempotency-Key (the server answers a repeat with the
first result), so it is retried only with one. PUT, DELETE and anything else never are: the
first try may have committed. Health checks are reads too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def _rules(descriptor: Path) -> Iterator[tuple[str, str, bool]]:
    """(gRPC path, the verb of its REST binding or "", whether the server streams) per RPC."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    for file in files.file:
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern") or ""
                path = f"/{file.package}.{service.name}/{method.name}"
                yield path, verb, method.server_streaming


def idempotent_paths(descriptor: Path) -> list[str]:
    """The unary RPCs that only read (a GET binding), and health checks. Streams (watches)
    have routes of their own."""
    reads = [path for path, verb, streams in _rules(descriptor) if verb == "get" and not streams]
    return [*reads, HEALTH_CHECK]


def create_paths(descriptor: Path) -> list[str]:
    """The RPCs with a POST binding: creates, idempotent when they carry an Idempotency-Key."""
    return [path for path, verb, _ in _rules(descriptor) if verb == "post"]


def path_regex(paths: list[str]) -> str:
    """A RE2 regex matching exactly these paths, for a route's safe_regex (YAML-quoted)."""
    return "|".join(re.escape(path) for path in paths).replace("\\", "\\\\")
