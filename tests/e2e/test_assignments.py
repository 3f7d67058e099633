"""AssignVisitor end to end: REST through Envoy, and the README's algorithm, implemented again
from its text alone (tests/unit/test_assignment_readme.py, which imports nothing of the
server), agreeing with the live server on 10,000 calls over gRPC and 10,000 over REST."""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc

from server.domain import limits, messages
from tests.e2e.rest import RestClient, assert_error, field_violations
from tests.e2e.stack import Stack, World
from tests.unit.test_assignment_readme import (
    micros,
    readme_applies,
    readme_bucket,
    readme_group,
    readme_period,
    readme_valid_until,
)

CALLS = 10_000
# Calls in flight at once, each on a connection of its own (gRPC: channels, REST: HTTP/1.1).
CONNECTIONS = 4
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNKNOWN_ROOM = "00000000-0000-4000-8000-000000000000"


def _assignments(world: World) -> str:
    return f"/api/v5/orgs/{world.organization_id}/assignments"


def _group(name: str, percentage: int, group_type: str | None = None) -> dict[str, Any]:
    return {"name": name, "percentage": percentage, "group_type": group_type}


def _experiment(world: World, name: str, **attributes: Any) -> dict[str, Any]:
    return {
        "is_draft": False,
        "name": name,
        "goal_id": world.goal_id,
        "room_ids": [],
        "starts_at": "2020-01-01T03:17:00Z",
        "group_reset_interval": "full",
        "groups": [_group("A", 50, "control"), _group("B", 50)],
        **attributes,
    }


def _created(http1: RestClient, world: World, body: dict[str, Any]) -> dict[str, Any]:
    response = http1.post(world.experiments, token=world.tokens.settings, json_body=body)
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json()
    return created


def test_a_visitor_is_assigned_over_rest(http1: RestClient, fresh_world: World) -> None:
    world = fresh_world
    made = _created(
        http1,
        world,
        _experiment(
            world,
            "Daily",
            group_reset_interval="1d",
            groups=[_group("A", 100, "control") | {"treatment": {"name": "Rule-A"}}],
        ),
    )
    query = urlencode({"visitor_id": "a visitor+1", "at": "2030-01-01T05:00:00.000001Z"})

    response = http1.get(f"{_assignments(world)}?{query}", token=world.tokens.no_settings)

    assert response.status == 200, response.body
    group = made["groups"][0]
    period = readme_period("1d", micros(made["starts_at"]), micros("2030-01-01T05:00:00.000001Z"))
    assert response.json() == {
        "assignments": [
            {
                "experiment_id": made["id"],
                "group_id": group["id"],
                "group_name": "A",
                "group_type": "control",
                "treatment": {"name": "Rule-A"},
                # The space and the plus sign as sent: a query string is form-encoded.
                "bucket": readme_bucket(made["id"], period, "a visitor+1"),
                "period": period,
                "valid_until": "2030-01-02T03:17:00Z",
            }
        ]
    }


def test_a_bad_request_over_rest_names_each_field(http1: RestClient, world: World) -> None:
    query = urlencode({"visitor_id": "x" * (limits.VISITOR_ID_MAX_LENGTH + 1), "room_id": "r"})

    body = assert_error(
        http1.get(f"{_assignments(world)}?{query}", token=world.tokens.settings), 400, 3
    )

    assert field_violations(body) == {
        "visitor_id": messages.TOO_LONG.format(limit=limits.VISITOR_ID_MAX_LENGTH),
        "room_id": messages.NOT_A_UUID,
    }


def test_the_organization_comes_only_from_the_path(http1: RestClient, world: World) -> None:
    query = urlencode({"visitor_id": "v", "organization_id": world.other_organization_id})

    body = assert_error(
        http1.get(f"{_assignments(world)}?{query}", token=world.tokens.settings), 400, 3
    )

    assert field_violations(body) == {"organization_id": messages.PATH_FIELD_IN_QUERY}


@pytest.mark.parametrize("method", ["POST", "DELETE", "QUERY"])
def test_assignments_are_read_only(http1: RestClient, world: World, method: str) -> None:
    # A QUERY without Content-Type is refused by Envoy itself before routing: the same 405.
    response = http1.request(
        method, f"{_assignments(world)}?visitor_id=v", token=world.tokens.settings
    )

    assert_error(response, 405, 12)
    assert response.headers["allow"] == "GET"


# --- the README's algorithm against the live server --------------------------------------------


class Call(NamedTuple):
    visitor_id: str
    room_id: str | None
    at: int  # microseconds since the epoch


# What an assignment says, in the form both transports are compared in.
Answer = tuple[str, str, int, int, int | None]


def _calls(world: World, seed: int) -> list[Call]:
    """CALLS calls: visitor ids of every kind the README warns about, the rooms (none, each,
    one the organization lacks) and times around the experiments' starts, ends and period
    boundaries as well as anywhere from 2019 to 2095."""
    rng = random.Random(seed)
    alphabet = "az09 +:/%?&=#é😀\u0301日本\u200b"
    edges = [
        micros(text) + delta
        for text in ("2020-01-01T03:17:00Z", "2021-06-01T12:00:00.25Z", "2030-01-01T00:00:00Z")
        for delta in (-1, 0, 1, 86_400_000_000 - 1, 86_400_000_000, 7 * 86_400_000_000)
    ]
    calls = []
    for n in range(CALLS):
        length = rng.choice([1, 2, 8, 36, limits.VISITOR_ID_MAX_LENGTH])
        visitor_id = "".join(rng.choice(alphabet) for _ in range(length)) if n % 3 else f"v-{n}"
        room = rng.choice([None, world.room_ids[0], world.room_ids[1], UNKNOWN_ROOM])
        at = rng.choice(edges) if n % 5 == 0 else rng.randrange(edges[0] - 10**14, 4 * 10**15)
        calls.append(Call(visitor_id, room, at))
    return calls


def _expected(experiments: Sequence[dict[str, Any]], call: Call) -> list[Answer]:
    """The README's answer, from the experiments as REST lists them (steps 1 to 6)."""
    found = []
    for experiment in experiments:
        case = {
            "is_draft": experiment["is_draft"],
            "starts_at": experiment.get("starts_at"),
            "ends_at": experiment.get("ends_at"),
            "room_ids": experiment["room_ids"],
            "room_id": call.room_id,
            "at": _rfc_3339(call.at),
        }
        if case["starts_at"] is None or not readme_applies(case):
            continue
        starts_at = micros(experiment["starts_at"])
        ends_at = micros(experiment["ends_at"]) if "ends_at" in experiment else None
        interval = experiment["group_reset_interval"]
        period = readme_period(interval, starts_at, call.at)
        chosen = readme_bucket(experiment["id"], period, call.visitor_id)
        ranges = [[[r["start"], r["end"]] for r in g["buckets"]] for g in experiment["groups"]]
        group = experiment["groups"][readme_group(chosen, ranges)]
        until = readme_valid_until(interval, starts_at, ends_at, call.at)
        found.append((experiment["id"], group["id"], chosen, period, until))
    return sorted(found)


@pytest.fixture
def assigning_world(http1: RestClient, fresh_world: World) -> Iterator[list[dict[str, Any]]]:
    """Experiments of every shape, as a client reads them back: each reset interval, with
    and without an end, in every room or some, fragmented ranges, 100 groups, a draft and one
    not started before 2090."""
    world = fresh_world
    room_0, room_1 = world.room_ids[0], world.room_ids[1]
    fragmented = _created(
        http1,
        world,
        _experiment(world, "Full", groups=[_group("A", 50), _group("B", 30), _group("C", 20)]),
    )
    for group, percentage in zip(fragmented["groups"], (40, 30, 30), strict=True):
        group["percentage"] = percentage
    put = http1.put(
        f"{world.experiments}/{fragmented['id']}",
        token=world.tokens.settings,
        json_body=fragmented,
    )
    assert put.status == 200, put.body
    for body in [
        _experiment(
            world,
            "Daily in room 0",
            group_reset_interval="1d",
            starts_at="2021-06-01T12:00:00.25Z",
            ends_at="2080-01-01T00:00:00Z",
            room_ids=[room_0],
            groups=[_group("A", 25), _group("B", 75)],
        ),
        _experiment(
            world,
            "Weekly",
            group_reset_interval="1w",
            groups=[_group(name, 25) for name in "ABCD"],
        ),
        _experiment(
            world, "Ends in 2030", group_reset_interval="1d", ends_at="2030-01-01T00:00:00Z"
        ),
        _experiment(
            world, "100 groups", room_ids=[room_1], groups=[_group(f"G{n}", 1) for n in range(100)]
        ),
        _experiment(world, "Later", starts_at="2090-01-01T00:00:00Z"),
        {"is_draft": True, "name": "Draft"},
    ]:
        _created(http1, world, body)
    listed = http1.get(f"{world.experiments}?page_size=100", token=world.tokens.settings)
    experiments: list[dict[str, Any]] = listed.json()["results"]
    assert len(experiments) == 7 and listed.json()["next"] == ""
    yield experiments


def _grpc_answers(stack: Stack, world: World, calls: Sequence[Call]) -> list[list[Answer]]:
    metadata = (("authorization", f"Token {world.tokens.settings}"),)
    channels = [
        grpc.insecure_channel(
            f"127.0.0.1:{stack.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(CONNECTIONS)
    ]

    def answer(index: int, call: Call) -> list[Answer]:
        stub = experiments_pb2_grpc.ExperimentServiceStub(channels[index % CONNECTIONS])
        request = pb.AssignVisitorRequest(
            organization_id=world.organization_id,
            visitor_id=call.visitor_id,
            room_id=call.room_id or "",
        )
        request.at.seconds, micro = divmod(call.at, 1_000_000)
        request.at.nanos = micro * 1000
        response = stub.AssignVisitor(request, metadata=metadata, timeout=30)
        return sorted(
            (
                a.experiment_id,
                a.group_id,
                a.bucket,
                a.period,
                _micros_of(a.valid_until) if a.HasField("valid_until") else None,
            )
            for a in response.assignments
        )

    try:
        return _in_parallel(answer, calls)
    finally:
        for channel in channels:
            channel.close()


def _rest_answers(stack: Stack, world: World, calls: Sequence[Call]) -> list[list[Answer]]:
    gateway = urlsplit(stack.base_url)
    local = threading.local()
    headers = {"Authorization": f"Token {world.tokens.settings}"}

    def answer(_: int, call: Call) -> list[Answer]:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(gateway.hostname or "", gateway.port)
        query = {"visitor_id": call.visitor_id, "at": _rfc_3339(call.at)}
        if call.room_id is not None:
            query["room_id"] = call.room_id
        local.connection.request(
            "GET", f"{_assignments(world)}?{urlencode(query)}", headers=headers
        )
        response = local.connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return sorted(
            (
                a["experiment_id"],
                a["group_id"],
                a["bucket"],
                a["period"],
                micros(a["valid_until"]) if "valid_until" in a else None,
            )
            for a in json.loads(body)["assignments"]
        )

    return _in_parallel(answer, calls)


def _in_parallel(
    answer: Callable[[int, Call], list[Answer]], calls: Sequence[Call]
) -> list[list[Answer]]:
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        return list(pool.map(answer, range(len(calls)), calls))


def _micros_of(stamp: Any) -> int:
    return int(stamp.seconds) * 1_000_000 + int(stamp.nanos) // 1000


def _rfc_3339(moment: int) -> str:
    return (EPOCH + timedelta(microseconds=moment)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The algorithm's agreement, not the database's: storage of the buckets is tested on both.
@pytest.mark.one_database
@pytest.mark.parametrize("transport", ["gRPC", "REST"])
def test_the_readme_algorithm_agrees_with_the_live_server_on_10000_calls(
    stack: Stack, fresh_world: World, assigning_world: list[dict[str, Any]], transport: str
) -> None:
    calls = _calls(fresh_world, seed=16 if transport == "gRPC" else 17)
    ask = _grpc_answers if transport == "gRPC" else _rest_answers

    answers = ask(stack, fresh_world, calls)

    expected = [_expected(assigning_world, call) for call in calls]
    disagreements = [
        (call, got, wanted)
        for call, got, wanted in zip(calls, answers, expected, strict=True)
        if got != wanted
    ]
    assert not disagreements, f"{len(disagreements)} of {CALLS}, e.g. {disagreements[:3]}"
    # The calls reached every kind of answer: none, several, and each experiment.
    sizes = {len(answer) for answer in answers}
    assert 0 in sizes and max(sizes) >= 3, sizes
    assert {a[0] for answer in answers for a in answer} == {
        e["id"] for e in assigning_world if not e["is_draft"]
    }
