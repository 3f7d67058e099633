"""The REST status of every answer that is not the one Envoy's transcoder gives (200 on success,
its mapping of the gRPC code on failure), in one table: the gateway renders it into its Lua
filters (gateway/rest_statuses.py), the OpenAPI document states it (tools/openapi.py), and the
servicer sends the one status only it can know (a 304) with the response metadata below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import grpc

# By RPC: the status of a successful answer. Every RPC not named here answers 200.
SUCCESS: Final[Mapping[str, int]] = {"CreateExperiment": 201, "DeleteExperiment": 204}
# Successful answers without a body: Delete's google.protobuf.Empty would be transcoded to {},
# and a 304 carries no experiment.
WITHOUT_BODY: Final = frozenset({204, 304})

# By gRPC code: the status of a failed answer, where it is not Envoy's mapping of the code
# (ENVOY_ERROR).
ERROR: Final[Mapping[grpc.StatusCode, int]] = {
    # A stale If-Match: RFC 9110's 412.
    grpc.StatusCode.ABORTED: 412,
}
# Envoy's mapping (Grpc::Utility::grpcToHttpStatus) of the codes in ERROR: a transcoded error
# reaches the gateway's filters with that status and without its grpc-status, so the gateway
# tells the code by the status. 409 is also Envoy's ALREADY_EXISTS, which the server never
# answers (server/entrypoints/errors.py).
ENVOY_ERROR: Final[Mapping[grpc.StatusCode, int]] = {grpc.StatusCode.ABORTED: 409}

# A GET whose If-None-Match names the current etag is answered 304: whether it does is known
# only once the experiment is read, so the servicer says so per call, in the response metadata
# HEADER (the gateway drops it before a REST client sees it). gRPC has no "not modified": a gRPC
# client that sent if-none-match gets the experiment, and the same marker tells it its copy was
# already current. Success statuses are fixed per RPC and no longer travel in metadata.
NOT_MODIFIED: Final = 304
HEADER: Final = "x-http-code"


def success(rpc: str) -> int:
    """The REST status of a successful answer of `rpc` (its method name)."""
    return SUCCESS.get(rpc, 200)
