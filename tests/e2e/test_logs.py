"""No request value in any log (issue 20, item 2): a marker sent in every header the API reads
and in one it does not, in every malformed form we know of, over REST (both HTTP versions,
through Envoy) and direct gRPC, appears neither in the server's log nor in Envoy's."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest
from experiments.v5 import experiments_pb2 as pb

from gateway import launcher
from server.domain import limits
from tests import h2c
from tests.e2e.rest import raw_http1, raw_http2
from tests.e2e.stack import Stack, World

HEADERS = ["authorization", "idempotency-key", "if-match", "if-none-match", "x-custom"]
CREATE = "/experiments.v5.ExperimentService/CreateExperiment"
LIST = "/experiments.v5.ExperimentService/ListExperiments"
GET = "/experiments.v5.ExperimentService/GetExperiment"


def malformed(marker: bytes) -> list[list[tuple[bytes, bytes]]]:
    """For each header: its value as sent, not UTF-8, not printable, too large for the API's
    limit and for grpcio's; and `-bin` forms that are not base64, and gRPC's own headers."""
    forms: list[list[tuple[bytes, bytes]]] = []
    for name in (h.encode() for h in HEADERS):
        value = b"Token " + marker if name == b"authorization" else marker
        forms += [
            [(name, value)],
            [(name, value + b"\xe9\xff")],
            [(name, value + b"\x01")],
            [(name, value + b"a" * limits.MAX_HEADER_BYTES)],
            [(name + b"-bin", value + b"!")],
        ]
    forms += [
        [(b"x-custom", marker + b"a" * limits.GRPC_METADATA_BYTES)],
        [(b"grpc-timeout", marker)],
        [(b"grpc-encoding", marker)],
    ]
    return forms


# What a log shows does not depend on the database.
@pytest.mark.one_database
def test_no_header_value_reaches_the_server_or_gateway_logs(stack: Stack, world: World) -> None:
    marker = f"marker{uuid.uuid4().hex}".encode()
    token = (b"authorization", f"Token {world.tokens.settings}".encode())
    for headers in malformed(marker):
        if headers[0][0] != b"authorization":
            headers = [token, *headers]
        _send_everywhere(stack, world, headers)

    _wait_for_the_access_log(stack)
    _wait_for_the_server_log(stack, world, token)
    for log in (stack.workdir / "server.log", stack.envoy_log):
        assert marker not in log.read_bytes(), f"{log.name} quotes a request value"


def _send_everywhere(stack: Stack, world: World, headers: list[tuple[bytes, bytes]]) -> None:
    """A List and a Create with `headers`: REST over HTTP/1.1 and HTTP/2, and direct gRPC."""
    json = [(b"content-type", b"application/json")]
    draft = b'{"is_draft": true}'
    for method, sent, body in (("GET", headers, b""), ("POST", [*json, *headers], draft)):
        # The gateway may close or reset instead of answering (beyond what its codec decodes).
        with contextlib.suppress(ConnectionError):
            raw_http1(stack.base_url, method, world.experiments, sent, body)
        if not any(byte < 0x20 for _, value in headers for byte in value):
            # HTTP/2 forbids control characters in a value: Envoy's codec drops the connection
            # before anything could log it (after its 5 s delayed close, hence skipped).
            with contextlib.suppress(ConnectionError):
                raw_http2(stack.base_url, method, world.experiments, headers=sent, content=body)
    listing = pb.ListExperimentsRequest(organization_id=world.organization_id)
    create = pb.CreateExperimentRequest(
        organization_id=world.organization_id, experiment=pb.Experiment(is_draft=True)
    )
    for method, request in ((LIST, listing), (CREATE, create)):
        with contextlib.suppress(ConnectionError):
            h2c.grpc_call(
                "127.0.0.1", stack.grpc_port, method, request.SerializeToString(), headers
            )


def _wait_for_the_server_log(stack: Stack, world: World, token: tuple[bytes, bytes]) -> None:
    """Until a last call's line is in the server's log (written at most
    logs.WRITE_INTERVAL_SECONDS after the call), so that every line before it is too: the
    only Get of the test, of an experiment that does not exist."""
    assert stack.server is not None
    log = stack.workdir / "server.log"
    line = f"rpc method={GET} status=NOT_FOUND".encode()
    before = log.read_bytes().count(line)
    get = pb.GetExperimentRequest(
        organization_id=world.organization_id, experiment_id=str(uuid.uuid4())
    )
    h2c.grpc_call("127.0.0.1", stack.grpc_port, GET, get.SerializeToString(), [token])
    launcher.poll(
        lambda: True if log.read_bytes().count(line) > before else None,
        what="the server log's last line",
        process=stack.server,
    )


def _wait_for_the_access_log(stack: Stack) -> None:
    """Until a last request's line is in Envoy's access log (flushed every 250 ms), so that
    every line before it is too."""
    assert stack.envoy is not None
    last = f"/last-{uuid.uuid4().hex}"
    raw_http1(stack.base_url, "GET", last, [])
    log: Path = stack.envoy_log
    launcher.poll(
        lambda: True if last in log.read_text(errors="replace") else None,
        what="the access log's last line",
        process=stack.envoy.process,
    )
