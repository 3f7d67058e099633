"""AssignVisitor over gRPC on SQLite and PostgreSQL: the answer, its checks and access, the
groups' buckets in reads and revisions, and freshness across real server processes (a write
shows at once on the worker that made it, and within moments on every other worker)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from functools import partial
from typing import Any

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from google.protobuf import timestamp_pb2

from server.domain import limits, messages
from server.domain.assignment import BucketRange, assign
from server.domain.model import ResetInterval
from tests.integration.grpc_client import (
    Client,
    demo_world,
    field_violations,
    own_connection,
    published,
    running_client,
)
from tests.integration.locks import DEADLINE_SECONDS, until


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url) as running:
        yield running


def _running(client: Client, **overrides: object) -> pb.Experiment:
    """Published, started in 2020, every room, 1d resets."""
    fields: dict[str, object] = {"room_ids": [], "group_reset_interval": "1d", **overrides}
    experiment = published(client.world, **fields)
    if "starts_at" not in overrides:
        experiment.starts_at.FromJsonString("2020-01-01T00:00:00Z")
    return experiment


def _create(client: Client, experiment: pb.Experiment) -> pb.Experiment:
    request = pb.CreateExperimentRequest(organization_id=client.org, experiment=experiment)
    return client.stub.CreateExperiment(request, metadata=client.metadata())


def _assign(
    client: Client,
    visitor_id: str,
    who: str = "settings",
    room_id: str = "",
    at: timestamp_pb2.Timestamp | None = None,
) -> pb.AssignVisitorResponse:
    request = pb.AssignVisitorRequest(
        organization_id=client.org, visitor_id=visitor_id, room_id=room_id, at=at
    )
    return client.stub.AssignVisitor(request, metadata=client.metadata(who))


def _fails(call: object, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_a_visitor_gets_one_assignment_per_experiment_that_applies_with_its_group_as_stored(
    client: Client,
) -> None:
    world = client.world
    every_room = _create(client, _running(client))
    in_room = _create(client, _running(client, name="In room 0", room_ids=[world.room_ids[0]]))
    _create(client, _running(client, name="In room 1", room_ids=[world.room_ids[1]]))
    _create(client, published(world, name="Not yet"))
    _create(client, pb.Experiment(is_draft=True, name="Draft"))
    at = "2030-06-01T12:00:00Z"

    answer = _assign(client, "visitor-1", room_id=world.room_ids[0], at=_time(at))

    found = {a.experiment_id: a for a in answer.assignments}
    assert found.keys() == {every_room.id, in_room.id}
    for experiment in (every_room, in_room):
        expected = assign(
            experiment_id=uuid.UUID(experiment.id),
            interval=ResetInterval.DAY,
            starts_at=experiment.starts_at.ToDatetime(tzinfo=UTC),
            ends_at=None,
            ranges=[[BucketRange(r.start, r.end) for r in g.buckets] for g in experiment.groups],
            visitor_id="visitor-1",
            at=_time(at).ToDatetime(tzinfo=UTC),
        )
        group = experiment.groups[expected.group_index]
        assert found[experiment.id] == pb.Assignment(
            experiment_id=experiment.id,
            group_id=group.id,
            group_name=group.name,
            group_type=group.group_type,
            treatment=group.treatment if group.HasField("treatment") else None,
            bucket=expected.bucket,
            period=expected.period,
            valid_until=_time("2030-06-02T00:00:00Z"),
        )
    # Without a room, only experiments of every room.
    assert [a.experiment_id for a in _assign(client, "v", at=_time(at)).assignments] == [
        every_room.id
    ]


def test_a_reader_without_the_settings_permission_may_assign(client: Client) -> None:
    made = _create(client, _running(client))
    assert [a.experiment_id for a in _assign(client, "v", "no_settings").assignments] == [made.id]


@pytest.mark.parametrize(
    ("who", "code", "message"),
    [
        ("other_organization", grpc.StatusCode.PERMISSION_DENIED, messages.NO_ORGANIZATION_ACCESS),
        ("inactive_subscription", grpc.StatusCode.PERMISSION_DENIED, None),
    ],
)
def test_access_is_as_for_get(
    client: Client, who: str, code: grpc.StatusCode, message: str | None
) -> None:
    error = _fails(_assign, client, "", who)
    assert error.code() == code
    if message is not None:
        assert error.details() == message
    unauthenticated = _fails(
        client.stub.AssignVisitor, pb.AssignVisitorRequest(organization_id=client.org)
    )
    assert unauthenticated.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_visitor_id_of_255_characters_is_assigned_and_one_of_256_refused(client: Client) -> None:
    made = _create(client, _running(client))
    longest = "🙂" * limits.VISITOR_ID_MAX_LENGTH

    assert [a.experiment_id for a in _assign(client, longest).assignments] == [made.id]
    error = _fails(_assign, client, longest + "x")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {
        "visitor_id": messages.TOO_LONG.format(limit=limits.VISITOR_ID_MAX_LENGTH)
    }


def test_every_offending_field_is_named_at_once(client: Client) -> None:
    error = _fails(_assign, client, "", room_id="room 1", at=_time("9999-01-01T00:00:00Z"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {
        "visitor_id": messages.REQUIRED,
        "room_id": messages.NOT_A_UUID,
        "at": messages.TIME_OUT_OF_RANGE,
    }


def test_buckets_show_in_reads_and_revisions_and_move_minimally(client: Client) -> None:
    experiment = _running(client)
    experiment.groups[0].percentage, experiment.groups[1].percentage = 50, 50
    made = _create(client, experiment)
    made.groups[0].percentage, made.groups[1].percentage = 60, 40
    update = pb.UpdateExperimentRequest(
        organization_id=client.org, experiment_id=made.id, experiment=made
    )
    updated = client.stub.UpdateExperiment(update, metadata=client.metadata())
    got = client.stub.GetExperiment(
        pb.GetExperimentRequest(organization_id=client.org, experiment_id=made.id),
        metadata=client.metadata(),
    )
    revisions = client.stub.ListExperimentRevisions(
        pb.ListExperimentRevisionsRequest(organization_id=client.org, experiment_id=made.id),
        metadata=client.metadata(),
    )

    assert [_ranges(g) for g in made.groups] == [[(0, 5000)], [(5000, 10_000)]]
    # Group 1 shrank: it kept its lowest buckets and gave up the rest, which group 0 took.
    assert [_ranges(g) for g in updated.groups] == [[(0, 5000), (9000, 10_000)], [(5000, 9000)]]
    assert got == updated
    newest = revisions.results[0]
    assert newest.experiment == updated
    assert [c.field for c in newest.changes] == ["groups[0].percentage", "groups[1].percentage"]


def _ranges(group: pb.Group) -> list[tuple[int, int]]:
    return [(r.start, r.end) for r in group.buckets]


def _time(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


# --- freshness across processes ---------------------------------------------------------------


# Clients per server port: on SQLite's two workers sharing one port, enough connections that
# both workers get some (each lands on either, as the kernel hashes it).
OBSERVERS_PER_PORT = 4


def test_a_write_shows_at_once_on_its_worker_and_moments_later_on_every_other(
    migrated_url: str, server_ports: list[int]
) -> None:
    world = demo_world(migrated_url)
    metadata = (("authorization", f"Token {world.tokens.settings}"),)
    org = world.organization_id
    writer_channel, writer = own_connection(server_ports[0])
    observers = [own_connection(port) for port in server_ports for _ in range(OBSERVERS_PER_PORT)]

    def groups_of(stub: experiments_pb2_grpc.ExperimentServiceStub) -> dict[str, str]:
        answer = stub.AssignVisitor(
            pb.AssignVisitorRequest(organization_id=org, visitor_id="visitor-1"),
            metadata=metadata,
            timeout=DEADLINE_SECONDS,
        )
        return {a.experiment_id: a.group_name for a in answer.assignments}

    def shown_everywhere(expected: dict[str, str], what: str) -> None:
        # On the writer's worker at once: its first call after the write.
        assert groups_of(writer) == expected, f"{what}: not at once on its own worker"
        for _, stub in observers:
            until(partial(_equal, groups_of, stub, expected), f"{what} on every worker")

    try:
        for _, stub in [(writer_channel, writer), *observers]:
            assert groups_of(stub) == {}  # each worker has the organization in memory now
        experiment = published(world, room_ids=[], group_reset_interval="full")
        experiment.starts_at.FromJsonString("2020-01-01T00:00:00Z")
        made = writer.CreateExperiment(
            pb.CreateExperimentRequest(organization_id=org, experiment=experiment),
            metadata=metadata,
        )
        group = {made.id: made.groups[_index(made, "visitor-1")].name}
        shown_everywhere(group, "a create")

        moved = pb.Experiment()
        moved.CopyFrom(made)
        for g, percentage in zip(moved.groups, (0, 100), strict=True):
            g.percentage = percentage
        writer.UpdateExperiment(
            pb.UpdateExperimentRequest(
                organization_id=org, experiment_id=made.id, experiment=moved
            ),
            metadata=metadata,
        )
        shown_everywhere({made.id: "B"}, "an update")

        writer.DeleteExperiment(
            pb.DeleteExperimentRequest(organization_id=org, experiment_id=made.id),
            metadata=metadata,
        )
        shown_everywhere({}, "a delete")
    finally:
        writer_channel.close()
        for channel, _ in observers:
            channel.close()


def _equal(function: Callable[[Any], object], argument: Any, expected: object) -> bool:
    return function(argument) == expected


def _index(experiment: pb.Experiment, visitor_id: str) -> int:
    """The visitor's group in a `full` experiment (the same at any time after its start)."""
    starts_at = experiment.starts_at.ToDatetime(tzinfo=UTC)
    return assign(
        experiment_id=uuid.UUID(experiment.id),
        interval=ResetInterval.FULL,
        starts_at=starts_at,
        ends_at=None,
        ranges=[[BucketRange(r.start, r.end) for r in g.buckets] for g in experiment.groups],
        visitor_id=visitor_id,
        at=starts_at,
    ).group_index
