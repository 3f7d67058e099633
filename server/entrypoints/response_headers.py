"""A unary call's response headers (gRPC initial metadata: etags, Location, the 304 marker) sent
in the same batch as its response and status, rather than in a batch of their own.

Why: grpcio's `ServicerContext.send_initial_metadata` writes the headers at once; the response
and the status follow in a second batch. A client that has received headers holds a committed
call, which neither gRPC's retry policy (clients/grpc-service-config.json) nor the gateway's
retries try again: an instance killed between the two batches failed a read that was otherwise
retried on another instance (tests/e2e/test_cluster.py, about one run in ten: "UNAVAILABLE Stream
removed (Socket closed)"). In one batch, a client sees either nothing (and retries) or the whole
answer.

grpcio has no public way to attach headers to the final batch. Its final batch
(`grpc._server._status`, and `_abort` for errors) asks `grpc._server._get_initial_metadata(state,
None)` for them; this module wraps that function to answer with the headers kept on the call's
state. grpcio is pinned (pyproject.toml); where its internals are not as expected, the headers are
sent the documented way.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import grpc

_ATTRIBUTE = "experiments_response_headers"

_server: Any = importlib.import_module("grpc._server")
_original: Any = getattr(_server, "_get_initial_metadata", None)


def _with_kept_headers(state: Any, metadata: Any) -> Any:
    if metadata is None:
        metadata = getattr(state, _ATTRIBUTE, None)
    return _original(state, metadata)


_DEFERRABLE = _original is not None and hasattr(_server, "_status")
if _DEFERRABLE:
    _server._get_initial_metadata = _with_kept_headers


def send_with_response(context: grpc.ServicerContext, metadata: Sequence[tuple[str, str]]) -> None:
    """Sends `metadata` as the response headers of this unary call, with its response."""
    state = getattr(context, "_state", None)
    if _DEFERRABLE and state is not None and getattr(state, "initial_metadata_allowed", False):
        setattr(state, _ATTRIBUTE, tuple(metadata))
    else:
        context.send_initial_metadata(tuple(metadata))
