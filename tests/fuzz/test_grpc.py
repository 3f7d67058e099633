"""Random and structured gRPC requests against a real server, on SQLite and PostgreSQL.

Whatever is sent, the answer is never INTERNAL or UNKNOWN, and a refused request changes
nothing in the database.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from experiments.v5 import experiments_pb2 as pb
from hypothesis import given
from hypothesis import strategies as st

from server.adapters import schema
from server.adapters.admin import DemoWorld
from tests.fuzz import strategies as fs
from tests.fuzz.conftest import FUZZ_SETTINGS, engine_for, snapshot
from tests.fuzz.tally import Tally
from tests.integration.grpc_client import Client, published, running_client

SERVICE = "/experiments.v5.ExperimentService/"
METHODS = [
    "ListExperiments",
    "GetExperiment",
    "CreateExperiment",
    "UpdateExperiment",
    "AssignVisitor",
    "ListExperimentRevisions",
    "ListExperimentChanges",
    "WatchExperimentChanges",
]
# Server streams: the first message is read, then the call is cancelled (a watch never ends).
STREAMS = {"WatchExperimentChanges"}
WRITES = {"CreateExperiment", "UpdateExperiment", "DeleteExperiment"}
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def _value(draw: st.DrawFn, target: Any) -> None:
    """Fills a google.protobuf.Value with any kind, or leaves it empty (set but kind-less)."""
    kind = draw(st.sampled_from(["string", "null", "number", "bool", "struct", "list", "empty"]))
    if kind == "string":
        target.string_value = draw(fs.TEXT)
    elif kind == "null":
        target.null_value = 0
    elif kind == "number":
        target.number_value = draw(fs.NUMBERS)
    elif kind == "bool":
        target.bool_value = draw(st.booleans())
    elif kind == "struct":
        target.struct_value.update(draw(fs.TREATMENTS))
    elif kind == "list":
        target.list_value.extend(draw(st.lists(fs.JSON_VALUES, max_size=3)))
    else:
        target.SetInParent()


@st.composite
def experiments(draw: st.DrawFn, world: DemoWorld) -> pb.Experiment:
    sent = draw(fs.experiment_dicts([world.goal_id], list(world.room_ids)))
    message = pb.Experiment()
    if draw(st.integers(0, 4)):  # mostly sent, so that requests get past the first check
        sent.setdefault("is_draft", draw(st.booleans()))
    for name in ("is_draft", "name", "goal_id", "group_reset_interval"):
        if sent.get(name) is not None:
            setattr(message, name, sent[name])
    message.room_ids.extend(sent.get("room_ids", []))
    for field in ("starts_at", "ends_at"):
        if draw(st.integers(0, 2)) == 0:
            stamp = getattr(message, field)
            stamp.seconds, stamp.nanos = draw(fs.SECONDS), draw(fs.NANOS)
    for group in sent.get("groups", []):
        added = message.groups.add()
        if group.get("name") is not None:
            added.name = group["name"]
        if group.get("percentage") is not None:
            added.percentage = group["percentage"]
        if draw(st.booleans()):
            _value(draw, added.group_type)
        if group.get("treatment") is not None:
            added.treatment.SetInParent()
            added.treatment.update(group["treatment"])
    return message


@st.composite
def hostile_experiments(draw: st.DrawFn, world: DemoWorld) -> pb.Experiment:
    """A valid experiment (draft or published) with hostile text, numbers or times in it, so
    that what passes the rules reaches the database."""
    message = published(world) if draw(st.booleans()) else pb.Experiment(is_draft=True)
    message.name = draw(fs.TEXT)
    if len(message.groups) > 0 and draw(st.booleans()):
        message.groups[0].name = draw(fs.TEXT)
    if len(message.groups) > 0 and draw(st.booleans()):
        message.groups[1].treatment.Clear()
        message.groups[1].treatment.update(draw(fs.TREATMENTS))
    if draw(st.integers(0, 3)) == 0:
        message.groups.add(name=draw(fs.TEXT), percentage=0)
        _value(draw, message.groups[-1].group_type)
    if draw(st.booleans()):
        message.starts_at.seconds = draw(fs.SECONDS)
    if draw(st.booleans()):
        message.ends_at.seconds = draw(fs.SECONDS)
    return message


@st.composite
def calls(draw: st.DrawFn, client: Client, known: tuple[str, ...]) -> tuple[str, bytes]:
    """(method, request bytes): a structured request, or raw random bytes."""
    method = draw(st.sampled_from([*METHODS, "DeleteExperiment"]))
    if draw(st.integers(0, 5)) == 0:
        return method, draw(st.binary(max_size=200))
    # Mostly the caller's organization and known experiments, so that calls reach the rules.
    organization = client.org if draw(st.integers(0, 7)) else draw(fs.UUIDISH)
    experiment_id = draw(st.sampled_from(known)) if draw(st.integers(0, 4)) else draw(fs.UUIDISH)
    request: Any
    if method == "ListExperiments":
        request = pb.ListExperimentsRequest(
            organization_id=organization,
            page_size=draw(fs.INT32),
            cursor=draw(fs.forged_cursors()),
        )
    elif method == "GetExperiment":
        request = pb.GetExperimentRequest(organization_id=organization, experiment_id=experiment_id)
    elif method == "ListExperimentRevisions":
        request = pb.ListExperimentRevisionsRequest(
            organization_id=organization,
            experiment_id=experiment_id,
            page_size=draw(fs.INT32),
            cursor=draw(st.one_of(fs.forged_cursors(), fs.feed_positions())),
        )
    elif method == "ListExperimentChanges":
        request = pb.ListExperimentChangesRequest(
            organization_id=organization, after=draw(fs.feed_positions()), page_size=draw(fs.INT32)
        )
    elif method == "WatchExperimentChanges":
        request = pb.WatchExperimentChangesRequest(
            organization_id=organization, after=draw(fs.feed_positions())
        )
    elif method == "AssignVisitor":
        request = pb.AssignVisitorRequest(
            organization_id=organization,
            visitor_id=draw(fs.TEXT),
            room_id=draw(st.one_of(st.sampled_from(client.world.room_ids), fs.UUIDISH)),
        )
        if draw(st.booleans()):
            request.at.seconds, request.at.nanos = draw(fs.SECONDS), draw(fs.NANOS)
    elif method == "DeleteExperiment":
        request = pb.DeleteExperimentRequest(
            organization_id=organization, experiment_id=experiment_id
        )
    elif method == "CreateExperiment":
        request = pb.CreateExperimentRequest(
            organization_id=organization,
            experiment=draw(
                st.one_of(experiments(client.world), hostile_experiments(client.world))
            ),
        )
    else:
        request = pb.UpdateExperimentRequest(
            organization_id=organization,
            experiment_id=experiment_id,
            experiment=draw(
                st.one_of(experiments(client.world), hostile_experiments(client.world))
            ),
        )
    payload: bytes = request.SerializeToString()
    if draw(st.integers(0, 9)) == 0:  # corrupt a structured request: a flipped byte
        position = draw(st.integers(0, max(len(payload) - 1, 0)))
        payload = payload[:position] + bytes([draw(st.integers(0, 255))]) + payload[position + 1 :]
    return method, payload


def _call(client: Client, method: str, payload: bytes, who: str) -> bytes:
    """The answer to a unary call, or the first message of a stream (then cancelled)."""
    if method not in STREAMS:
        rpc: grpc.UnaryUnaryMultiCallable[bytes, bytes] = client.channel.unary_unary(
            SERVICE + method
        )
        return rpc(payload, metadata=client.metadata(who), timeout=30)
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = client.channel.unary_stream(
        SERVICE + method
    )
    messages = stream(payload, metadata=client.metadata(who), timeout=30)
    try:
        return next(messages)
    finally:
        messages.cancel()


def _seed(client: Client) -> list[str]:
    """Experiments for updates and deletes to hit: drafts, scheduled, started (fixed, so the
    strategies do not depend on what earlier examples created)."""
    started = published(client.world)
    started.starts_at.FromJsonString("2020-01-01T00:00:00Z")
    seeds = [pb.Experiment(is_draft=True, name=f"draft {n}") for n in range(3)]
    seeds += [published(client.world), published(client.world), started]
    return [
        client.stub.CreateExperiment(
            pb.CreateExperimentRequest(organization_id=client.org, experiment=seed),
            metadata=client.metadata(),
        ).id
        for seed in seeds
    ]


def test_no_grpc_request_gets_internal_or_writes_when_refused(
    fuzz_database: tuple[str, str], tally: Tally
) -> None:
    backend, url = fuzz_database
    schema.upgrade(url)
    engine = engine_for(url)
    with running_client(url) as client:
        known = (str(uuid.uuid4()), *_seed(client))

        @FUZZ_SETTINGS
        @given(call=calls(client, known), who=st.sampled_from(["settings"] * 7 + ["no_settings"]))
        def one_request(call: tuple[str, bytes], who: str) -> None:
            method, payload = call
            before = snapshot(engine)
            tally.sent("gRPC", backend)
            try:
                answer = _call(client, method, payload, who)
            except grpc.RpcError as error:
                tally.answered("gRPC", backend, error.code().name, failed=error.code() in NEVER)
                assert error.code() not in NEVER, (method, error.code(), error.details())
                if method in WRITES:
                    assert snapshot(engine) == before, f"refused {method} wrote something"
                return
            tally.answered("gRPC", backend, "OK", failed=False)
            assert answer is not None

        one_request()
    engine.dispose()
