"""Any input gets a clear answer over gRPC, the same on SQLite and PostgreSQL, and the limits hold.

Each refused request is INVALID_ARGUMENT in our words (never INTERNAL, never a grpcio string)
and writes nothing.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from google.protobuf import struct_pb2

from server.domain import limits, messages
from tests.integration.grpc_client import Client, field_violations, published, running_client

SERVICE = "/experiments.v5.ExperimentService/"


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url) as running:
        yield running


def _count(client: Client) -> int:
    request = pb.ListExperimentsRequest(organization_id=client.org, page_size=100)
    return len(client.stub.ListExperiments(request, metadata=client.metadata()).results)


def _create(client: Client, experiment: pb.Experiment) -> pb.Experiment:
    request = pb.CreateExperimentRequest(organization_id=client.org, experiment=experiment)
    return client.stub.CreateExperiment(request, metadata=client.metadata())


def _refused(client: Client, experiment: pb.Experiment) -> grpc.RpcError:
    before = _count(client)
    with pytest.raises(grpc.RpcError) as raised:
        _create(client, experiment)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _count(client) == before, "a refused request wrote something"
    return raised.value


def _raw_call(client: Client, method: str, payload: bytes) -> grpc.RpcError | bytes:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = client.channel.unary_unary(SERVICE + method)
    try:
        result: bytes = call(payload, metadata=client.metadata())
    except grpc.RpcError as error:
        return error
    return result


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string_field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand: it may hold anything (invalid UTF-8,
    a message nested deeper than the protobuf library would build)."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


# --- Undecodable requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "ListExperiments",
        "GetExperiment",
        "CreateExperiment",
        "UpdateExperiment",
        "DeleteExperiment",
    ],
)
def test_undecodable_bytes_are_invalid_argument_in_our_words(client: Client, method: str) -> None:
    error = _raw_call(client, method, b"\xff\xff\xff\xff\x0f garbage")

    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    request_type = f"experiments.v5.{method}Request"
    assert error.details() == messages.UNREADABLE_REQUEST.format(message=request_type)
    assert _count(client) == 0


def test_invalid_utf8_in_a_path_id_is_invalid_argument(client: Client) -> None:
    payload = _string_field(1, client.org.encode()) + _string_field(2, b"\xff\xfe-not-utf8")

    error = _raw_call(client, "GetExperiment", payload)

    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == messages.UNREADABLE_REQUEST.format(
        message="experiments.v5.GetExperimentRequest"
    )


def _padded_create(client: Client, size: int) -> bytes:
    """A CreateExperimentRequest of a draft, padded to `size` bytes with an unknown field."""
    head = pb.CreateExperimentRequest(
        organization_id=client.org, experiment=pb.Experiment(is_draft=True)
    ).SerializeToString()
    # Field 99 (unknown, so skipped by the parser): a 2-byte tag, then a varint length.
    filler = next(
        filler
        for width in range(1, 6)
        if len(_varint(filler := size - len(head) - 2 - width)) == width
    )
    payload = head + _string_field(99, b"x" * filler)
    assert len(payload) == size
    return payload


def test_request_at_the_size_limit_is_served(client: Client) -> None:
    result = _raw_call(client, "CreateExperiment", _padded_create(client, limits.MAX_REQUEST_BYTES))

    assert isinstance(result, bytes)
    assert pb.Experiment.FromString(result).is_draft


def test_request_over_the_size_limit_is_refused_in_our_words(client: Client) -> None:
    payload = _padded_create(client, limits.MAX_REQUEST_BYTES + 1)

    error = _raw_call(client, "CreateExperiment", payload)

    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == messages.REQUEST_TOO_LARGE.format(limit=limits.MAX_REQUEST_BYTES)
    assert _count(client) == 0


# --- Text, numbers, times, depth: the same answer on both databases -------------------------


def test_nul_in_names_is_refused_on_every_database(client: Client) -> None:
    experiment = published(client.world, name="Hello\x00")
    experiment.groups[1].name = "B\x00"

    assert field_violations(_refused(client, experiment)) == {
        "name": messages.UNSTORABLE_TEXT,
        "groups[1].name": messages.UNSTORABLE_TEXT,
    }


def test_nul_in_a_treatment_is_refused_on_every_database(client: Client) -> None:
    experiment = published(client.world)
    experiment.groups[0].treatment.CopyFrom(_struct({"key\x00": "value", "s": "a\x00"}))

    assert field_violations(_refused(client, experiment)) == {
        "groups[0].treatment": messages.TREATMENT_UNSTORABLE_TEXT
    }


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(client: Client, number: float) -> None:
    experiment = published(client.world)
    experiment.groups[0].group_type.number_value = number
    experiment.groups[1].treatment.CopyFrom(_struct({"weight": number}))

    assert field_violations(_refused(client, experiment)) == {
        "groups[0].group_type": messages.GROUP_TYPE_CHOICES,
        "groups[1].treatment": messages.TREATMENT_NOT_FINITE,
    }


@pytest.mark.parametrize(
    ("seconds", "nanos", "description"),
    [
        (2**62, 0, messages.INVALID_TIMESTAMP),
        (-(2**62), 0, messages.INVALID_TIMESTAMP),
        (1_900_000_000, -1, messages.INVALID_TIMESTAMP),
        (1_900_000_000, 1_000_000_000, messages.INVALID_TIMESTAMP),
        (-1, 0, messages.TIME_OUT_OF_RANGE),
        (253_370_764_800, 0, messages.TIME_OUT_OF_RANGE),  # 9999-01-01T00:00:00Z
    ],
)
def test_timestamps_outside_the_supported_range_are_refused_by_name(
    client: Client, seconds: int, nanos: int, description: str
) -> None:
    experiment = pb.Experiment(is_draft=True)
    experiment.starts_at.seconds, experiment.starts_at.nanos = seconds, nanos
    experiment.ends_at.seconds, experiment.ends_at.nanos = seconds, nanos

    assert field_violations(_refused(client, experiment)) == {
        "starts_at": description,
        "ends_at": description,
    }


@pytest.mark.parametrize("seconds", [0, 253_370_764_799])
def test_timestamps_at_the_ends_of_the_range_round_trip(client: Client, seconds: int) -> None:
    experiment = pb.Experiment(is_draft=True)
    experiment.starts_at.seconds = experiment.ends_at.seconds = seconds
    experiment.ends_at.nanos = 999_999_000

    created = _create(client, experiment)

    assert (created.starts_at.seconds, created.ends_at.nanos) == (seconds, 999_999_000)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_treatment_at_the_depth_limit_is_stored(client: Client) -> None:
    experiment = published(client.world)
    experiment.groups[0].treatment.CopyFrom(_struct(_nested(limits.MAX_TREATMENT_DEPTH)))

    created = _create(client, experiment)

    assert created.groups[0].treatment == experiment.groups[0].treatment


@pytest.mark.parametrize("depth", [limits.MAX_TREATMENT_DEPTH + 1, 60])
def test_deeper_treatments_are_refused(client: Client, depth: int) -> None:
    experiment = published(client.world)
    treatment = experiment.groups[0].treatment
    treatment.Clear()
    inner = treatment
    for _ in range(depth - 1):
        inner = inner.fields["a"].struct_value
    inner.SetInParent()
    payload = _string_field(1, client.org.encode()) + _string_field(
        2, experiment.SerializeToString()
    )

    error = _raw_call(client, "CreateExperiment", payload)
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _count(client) == 0
    if depth == limits.MAX_TREATMENT_DEPTH + 1:
        assert set(field_violations(error)) == {"groups[0].treatment"}
    else:  # deeper than protobuf's own parser goes: no field can be named
        assert error.details() == messages.UNREADABLE_REQUEST.format(
            message="experiments.v5.CreateExperimentRequest"
        )


# --- Violations and rooms are capped so the answer fits a trailer ---------------------------


@pytest.mark.parametrize("count", [1000, 3000])
def test_thousands_of_invalid_room_ids_give_one_violation(client: Client, count: int) -> None:
    experiment = published(client.world, room_ids=[f"not-a-uuid-{n}" for n in range(count)])

    assert field_violations(_refused(client, experiment)) == {
        "room_ids": messages.TOO_MANY_ROOMS.format(limit=limits.MAX_ROOMS)
    }


def test_a_hundred_bad_groups_give_a_readable_capped_answer(client: Client) -> None:
    groups = [
        pb.Group(name="x" * 300, percentage=101, group_type=struct_pb2.Value(string_value="?"))
        for _ in range(limits.MAX_GROUPS)
    ]

    violations = field_violations(_refused(client, published(client.world, groups=groups)))

    assert 10 < len(violations) <= limits.MAX_FIELD_VIOLATIONS + 1
    assert violations[""].endswith("more violations were left out; fix these and send again.")


# --- A list page always fits a default client -----------------------------------------------


def _large(client: Client, index: int) -> pb.Experiment:
    """A draft of about 120 KiB: ten treatments just under the per-treatment limit."""
    groups = [
        pb.Group(name=f"G{g}", treatment=_struct({"s": f"{index}" + "x" * 12_000}))
        for g in range(10)
    ]
    return pb.Experiment(is_draft=True, name=f"large {index}", groups=groups)


def test_list_pages_stop_at_the_byte_budget_and_cursors_reach_every_experiment(
    client: Client,
) -> None:
    created = [_create(client, _large(client, n)).id for n in range(8)]

    seen: list[str] = []
    cursor = ""
    sizes: list[int] = []
    for _ in range(10):
        request = pb.ListExperimentsRequest(
            organization_id=client.org, page_size=100, cursor=cursor
        )
        page = client.stub.ListExperiments(request, metadata=client.metadata())
        sizes.append(page.ByteSize())
        seen.extend(e.id for e in page.results)
        cursor = page.next_cursor
        if not cursor:
            break

    assert sorted(seen) == sorted(created) and len(seen) == len(set(seen))
    assert len(sizes) > 1, "every experiment fit one page: the budget was not tested"
    assert max(sizes) <= limits.PAGE_BUDGET_BYTES + 4096

    # And back: previous pages, from the last one, reach every experiment again.
    back: list[str] = []
    cursor = page.previous_cursor
    while cursor:
        request = pb.ListExperimentsRequest(
            organization_id=client.org, page_size=100, cursor=cursor
        )
        previous = client.stub.ListExperiments(request, metadata=client.metadata())
        back.extend(e.id for e in previous.results)
        cursor = previous.previous_cursor
    assert sorted(back + [e.id for e in page.results]) == sorted(created)


def test_forged_cursors_are_invalid_argument_on_every_database(client: Client) -> None:
    for time in ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]:
        raw = json.dumps({"t": time, "i": "00000000-0000-4000-8000-000000000000", "b": False})
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        request = pb.ListExperimentsRequest(organization_id=client.org, cursor=cursor)
        with pytest.raises(grpc.RpcError) as raised:
            client.stub.ListExperiments(request, metadata=client.metadata())
        assert field_violations(raised.value) == {"cursor": messages.INVALID_CURSOR}


# --- Update semantics of the spec's table ---------------------------------------------------


def test_update_without_group_type_and_treatment_before_the_start_keeps_both(
    client: Client,
) -> None:
    created = _create(client, published(client.world))
    sent = pb.Experiment()
    sent.CopyFrom(created)
    for group in sent.groups:
        group.ClearField("group_type")
        group.ClearField("treatment")
    sent.groups[0].name = "Renamed"

    request = pb.UpdateExperimentRequest(
        organization_id=client.org, experiment_id=created.id, experiment=sent
    )
    updated = client.stub.UpdateExperiment(request, metadata=client.metadata())

    assert updated.groups[0].name == "Renamed"
    assert [g.group_type for g in updated.groups] == [g.group_type for g in created.groups]
    assert [g.treatment for g in updated.groups] == [g.treatment for g in created.groups]


def _treatment_of_bytes(size: int) -> dict[str, str]:
    return {"s": "é" + "x" * (size - 10)}  # {"s":"..."} is 8 bytes; "é" is 2


def test_treatment_at_the_size_limit_is_stored_and_one_byte_more_is_refused(
    client: Client,
) -> None:
    experiment = published(client.world)
    experiment.groups[0].treatment.CopyFrom(
        _struct(_treatment_of_bytes(limits.MAX_TREATMENT_BYTES))
    )
    created = _create(client, experiment)
    assert created.groups[0].treatment == experiment.groups[0].treatment

    experiment.groups[0].treatment.CopyFrom(
        _struct(_treatment_of_bytes(limits.MAX_TREATMENT_BYTES + 1))
    )
    assert field_violations(_refused(client, experiment)) == {
        "groups[0].treatment": messages.TREATMENT_TOO_LARGE.format(limit=limits.MAX_TREATMENT_BYTES)
    }


# --- Refused before it is converted: what an abusive request sends --------------------------


def test_the_largest_treatment_in_protobuf_of_the_size_limit_is_stored(client: Client) -> None:
    # Numbers in an array are what protobuf spends most on (11 bytes for "0.0,", as the size
    # limit counts a number): the treatment that is largest on the wire while within the limit.
    # The check on the wire (limits.MAX_TREATMENT_WIRE_BYTES) must let it through.
    count = (limits.MAX_TREATMENT_BYTES - len('{"a":[]}') + 1) // 4
    numbers = {"a": [10.0] + [0.0] * (count - 1)}  # one two-digit number: exactly the limit
    assert len(json.dumps(numbers, separators=(",", ":"))) == limits.MAX_TREATMENT_BYTES
    treatment = _struct(numbers)
    experiment = published(client.world)
    experiment.groups[0].treatment.CopyFrom(treatment)

    created = _create(client, experiment)

    assert created.groups[0].treatment == treatment


def test_a_treatment_of_thousands_of_keys_is_refused_as_too_large(client: Client) -> None:
    experiment = published(client.world)
    experiment.groups[0].treatment.CopyFrom(_struct({f"key{n}": n for n in range(10_000)}))
    assert experiment.ByteSize() < limits.MAX_REQUEST_BYTES

    assert field_violations(_refused(client, experiment)) == {
        "groups[0].treatment": messages.TREATMENT_TOO_LARGE.format(limit=limits.MAX_TREATMENT_BYTES)
    }


def test_tens_of_thousands_of_groups_give_one_violation(client: Client) -> None:
    experiment = published(client.world, groups=[pb.Group() for _ in range(50_000)])
    assert experiment.ByteSize() < limits.MAX_REQUEST_BYTES

    assert field_violations(_refused(client, experiment)) == {
        "groups": messages.TOO_MANY_GROUPS.format(limit=limits.MAX_GROUPS)
    }
