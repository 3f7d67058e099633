"""The history and the change feed over REST through the real Envoy: the watch streams as
newline-delimited JSON with nothing buffered, errors before its first line are ordinary JSON
errors, and an HTTP/1.1 stream cut later simply ends."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from grpc_status import rpc_status

from server.domain import messages
from server.domain.feed import encode_position
from tests.e2e.payloads import upcoming
from tests.e2e.rest import HTTP_1_1, RestClient, assert_error, field_violations
from tests.e2e.stack import Stack, World

INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, OUT_OF_RANGE, UNAUTHENTICATED = 3, 5, 8, 11, 16
TIMEOUT = 30.0


def _changes(world: World) -> str:
    return f"/api/v5/orgs/{world.organization_id}/changes"


class _Lines:
    """An open REST watch: its status and headers, and its body read one line at a time, each
    read failing after TIMEOUT (a stream that never ends a line must fail the test, not hang
    it: heartbeats would keep a socket timeout from ever expiring)."""

    def __init__(self, status: int, headers: dict[str, str], lines: Iterator[bytes]) -> None:
        self.status, self.headers, self._lines = status, headers, lines
        self._reader = futures.ThreadPoolExecutor(1)

    def _read(self, read: Callable[[], bytes]) -> bytes:
        try:
            return self._reader.submit(read).result(timeout=TIMEOUT)
        except futures.TimeoutError:
            raise AssertionError(f"nothing complete came within {TIMEOUT} s") from None

    def next(self) -> dict[str, Any]:
        line = self._read(lambda: next(self._lines))
        assert line.endswith(b"\n"), line
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def rest(self) -> bytes:
        """What comes until the body ends."""
        return self._read(lambda: b"".join(self._lines))

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)


@contextmanager
def watching(stack: Stack, protocol: str, path: str, token: str | None) -> Iterator[_Lines]:
    """GET `path` with the body streamed, over HTTP/1.1 (http.client) or HTTP/2 (httpx)."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    if protocol == HTTP_1_1:
        parts = urlsplit(stack.base_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            received = {name.lower(): value for name, value in response.getheaders()}
            lines = _Lines(response.status, received, iter(response.readline, b""))
            try:
                yield lines
            finally:
                lines.close()
        finally:
            connection.close()  # ends a read still waiting
        return
    with (
        httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client,
        client.stream("GET", stack.base_url + path, headers=headers) as streamed,
    ):
        body = (line.encode() + b"\n" for line in streamed.iter_lines() if line)
        lines = _Lines(streamed.status_code, dict(streamed.headers), body)
        try:
            yield lines
        finally:
            lines.close()


def test_a_watch_streams_each_message_as_a_json_line_as_it_happens(
    client: RestClient, stack: Stack, protocol: str, fresh_world: World
) -> None:
    path = f"{_changes(fresh_world)}/watch"
    with watching(stack, protocol, path, fresh_world.tokens.settings) as watch:
        assert watch.status == 200
        # Labelled as what it is, so that a client does not parse the endless body as one JSON.
        assert watch.headers["content-type"] == "application/x-ndjson"
        # The first line arrives while the stream is open: neither Envoy nor a filter buffers it.
        start = watch.next()
        created = client.post(
            fresh_world.experiments,
            token=fresh_world.tokens.settings,
            json_body=upcoming(fresh_world),
        ).json()
        change = watch.next()

    assert set(start) == {"heartbeat"} and start["heartbeat"]["cursor"]
    assert set(change) == {"change"}
    revision = change["change"]
    assert (revision["action"], revision["revision"]) == ("created", 1)
    assert revision["experiment"] == created
    assert revision["user"]["id"] == created["created_by_user_id"] == revision["user_id"]
    # Every field as the documented JSON: snake_case, unset values as null.
    assert {"field": "ends_at", "before": None, "after": created["ends_at"]} in revision["changes"]


@pytest.mark.parametrize(
    ("after", "status", "code", "message"),
    [
        ("nope", 400, INVALID_ARGUMENT, messages.INVALID_REQUEST),
        (encode_position(10**12), 400, OUT_OF_RANGE, messages.CURSOR_AHEAD),
    ],
)
def test_a_watch_refused_before_its_first_line_is_an_ordinary_json_error(
    http1: RestClient, stack: Stack, world: World, after: str, status: int, code: int, message: str
) -> None:
    path = f"{_changes(world)}/watch?after={after}"

    response = http1.get(path, token=world.tokens.settings)

    assert assert_error(response, status, code)["message"] == message
    assert response.headers["content-type"].startswith("application/json")
    if code == INVALID_ARGUMENT:
        assert field_violations(response.json()) == {"after": messages.INVALID_FEED_CURSOR}
    anonymous = http1.get(path)
    assert_error(anonymous, 401, UNAUTHENTICATED)
    assert anonymous.headers["www-authenticate"] == "Token"


def test_an_http1_watch_cut_by_a_stopping_server_simply_ends(own_stack: Stack) -> None:
    world = own_stack.new_world()
    with watching(own_stack, HTTP_1_1, f"{_changes(world)}/watch", world.tokens.settings) as watch:
        assert set(watch.next()) == {"heartbeat"}
        stopping = threading.Thread(target=own_stack.stop_server)
        stopping.start()
        # UNAVAILABLE after the first line: HTTP/1.1 has no trailers for it, the body just ends
        # (its last chunk). A client reconnects from its last cursor.
        rest = watch.rest()
        stopping.join()

    assert watch.status == 200
    assert rest == b""


@pytest.fixture
def one_stream_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack whose one worker holds one stream at most."""
    stack = Stack(tmp_path)
    stack.env.update(EXPERIMENTS_MAX_STREAMS="1")
    yield from stack.running()


def test_a_watch_beyond_the_streams_a_server_holds_is_429_with_retry_after(
    one_stream_stack: Stack,
) -> None:
    # The second watch is refused before its first line, as the OpenAPI document's 429 says
    # (code 8, Retry-After), rather than left waiting.
    world = one_stream_stack.new_world()
    path = f"{_changes(world)}/watch"
    with watching(one_stream_stack, HTTP_1_1, path, world.tokens.settings) as first:
        assert set(first.next()) == {"heartbeat"}
        refused = RestClient(one_stream_stack.base_url, HTTP_1_1).get(
            path, token=world.tokens.settings
        )

    assert assert_error(refused, 429, RESOURCE_EXHAUSTED)["message"] == messages.BUSY
    assert refused.headers["retry-after"] == "1"


def test_the_changes_and_the_revisions_in_the_documented_json(
    http1: RestClient, fresh_world: World
) -> None:
    token = fresh_world.tokens.settings
    empty = http1.get(_changes(fresh_world), token=token)
    created = http1.post(fresh_world.experiments, token=token, json_body=upcoming(fresh_world))
    one = f"{fresh_world.experiments}/{created.json()['id']}"
    assert http1.delete(one, token=token).status == 204
    changes = http1.get(f"{_changes(fresh_world)}?after={empty.json()['next_cursor']}", token=token)
    revisions = http1.get(f"{one}/revisions?page_size=1", token=token)

    # A poller always gets a cursor to continue from, an empty page included.
    assert empty.status == 200 and empty.json()["results"] == []
    assert empty.json()["next_cursor"]
    assert [r["action"] for r in changes.json()["results"]] == ["created", "deleted"]
    assert changes.json()["next_cursor"] == changes.json()["results"][-1]["cursor"]
    page = revisions.json()
    assert [r["action"] for r in page["results"]] == ["deleted"]
    assert page["next"].endswith(f"{one}/revisions?cursor={page['next_cursor']}&page_size=1")
    assert page["previous"] == ""


def test_revisions_of_an_experiment_never_there_are_404(http1: RestClient, world: World) -> None:
    response = http1.get(
        f"{world.experiments}/00000000-0000-4000-8000-000000000000/revisions",
        token=world.tokens.settings,
    )

    assert assert_error(response, 404, NOT_FOUND)["message"] == messages.EXPERIMENT_NOT_FOUND


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_the_history_paths_allow_only_get(http1: RestClient, world: World, method: str) -> None:
    for path in (
        _changes(world),
        f"{_changes(world)}/watch",
        f"{world.experiments}/00000000-0000-4000-8000-000000000000/revisions",
    ):
        response = http1.request(method, path, token=world.tokens.settings)
        assert response.status == 405, (path, response.body)
        assert response.headers["allow"] == "GET"


def test_a_native_grpc_watch_through_the_gateway_streams_and_keeps_its_status(
    stack: Stack, fresh_world: World
) -> None:
    assert stack.envoy is not None
    metadata = (("authorization", f"Token {fresh_world.tokens.settings}"),)
    request = pb.WatchExperimentChangesRequest(organization_id=fresh_world.organization_id)
    with grpc.insecure_channel(f"127.0.0.1:{stack.envoy.http_port}") as channel:
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        stream = stub.WatchExperimentChanges(request, metadata=metadata, timeout=TIMEOUT)
        start = next(stream)
        created = stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=fresh_world.organization_id, experiment=pb.Experiment(is_draft=True)
            ),
            metadata=metadata,
            timeout=TIMEOUT,
        )
        change = next(stream)
        stream.cancel()
        request.after = "nope"
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.WatchExperimentChanges(request, metadata=metadata, timeout=TIMEOUT))

    assert start.WhichOneof("event") == "heartbeat"
    assert change.change.experiment == created
    # The gRPC status and its details pass through untouched (the gateway's REST filters stay out).
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None and status.message == messages.INVALID_REQUEST
