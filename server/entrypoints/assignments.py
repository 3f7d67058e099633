"""Visitor assignment in messages: the experiments the cache keeps, read from the stored views
and the feed's revisions, each group's answer serialized once, and the AssignVisitorResponse
assembled from those bytes per call (the hot path: nothing is built field by field).

An Assignment's fields 1 to 5 (experiment_id, group_id, group_name, group_type, treatment)
depend only on the group: they are serialized when the experiment is read. Fields 6 to 8
(bucket, period, valid_until) are appended per call; protobuf parsers accept the fields of a
message in any order, and these come last anyway, as protobuf writes them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC
from typing import Final
from uuid import UUID

from experiments.v5 import experiments_pb2 as pb

from server.domain.assignment import (
    BUCKETS,
    Assigned,
    BucketRange,
    running_experiment,
)
from server.domain.model import ResetInterval
from server.entrypoints.translate import _tag, _varint
from server.service_layer.assignments import Reading, Running
from server.service_layer.ports import Change

_DELETED: Final = "deleted"
_ASSIGNMENTS_TAG = _tag(pb.AssignVisitorResponse, "assignments")


def running_of_view(message: bytes) -> Running | None:
    """A stored view (a serialized Experiment) as the cache keeps it; None for a draft."""
    return _running(pb.Experiment.FromString(message))


def running_of_change(change: Change) -> tuple[UUID, Running | None]:
    """A change of the feed (a stored ExperimentRevision): its experiment, and what the cache
    keeps of it now (None once deleted, or while a draft)."""
    revision = pb.ExperimentRevision.FromString(change.message)
    if revision.action == _DELETED:
        return change.experiment_id, None
    return change.experiment_id, _running(revision.experiment)


READING = Reading(view=running_of_view, change=running_of_change)


def _running(experiment: pb.Experiment) -> Running | None:
    if experiment.is_draft:
        return None
    return running_experiment(
        experiment_id=UUID(experiment.id),
        interval=ResetInterval(experiment.group_reset_interval),
        starts_at=experiment.starts_at.ToDatetime(tzinfo=UTC),
        ends_at=experiment.ends_at.ToDatetime(tzinfo=UTC)
        if experiment.HasField("ends_at")
        else None,
        room_ids=[UUID(room_id) for room_id in experiment.room_ids],
        ranges=[tuple(BucketRange(r.start, r.end) for r in g.buckets) for g in experiment.groups],
        groups=[_answer(experiment.id, group) for group in experiment.groups],
    )


def _answer(experiment_id: str, group: pb.Group) -> bytes:
    """The Assignment fields that depend only on the group, serialized."""
    answer = pb.Assignment(experiment_id=experiment_id, group_id=group.id, group_name=group.name)
    answer.group_type.CopyFrom(group.group_type)
    if group.HasField("treatment"):
        answer.treatment.CopyFrom(group.treatment)
    return answer.SerializeToString(deterministic=True)


def assignments_response(found: Sequence[Assigned[bytes]]) -> bytes:
    """A serialized AssignVisitorResponse of assign_all's assignments."""
    parts: list[bytes] = []
    for _, answer, bucket, period, until in found:
        bucket_field, tail = _BUCKET_FIELDS[bucket], _tail(period, until)
        size = len(answer) + len(bucket_field) + len(tail)
        parts += (_ASSIGNMENTS_TAG, _SIZES[size] if size < _SIZED else _varint(size))
        parts += (answer, bucket_field, tail)
    return b"".join(parts)


def at_of(request: pb.AssignVisitorRequest) -> tuple[int, int] | None:
    """The request's `at` as seconds and nanos, None when it was not sent."""
    return (request.at.seconds, request.at.nanos) if request.HasField("at") else None


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


_VARINT, _LENGTH_DELIMITED = 0, 2
_BUCKET = _field(pb.Assignment.BUCKET_FIELD_NUMBER, _VARINT)
_PERIOD = _field(pb.Assignment.PERIOD_FIELD_NUMBER, _VARINT)
_VALID_UNTIL = _field(pb.Assignment.VALID_UNTIL_FIELD_NUMBER, _LENGTH_DELIMITED)
_SECONDS = _field(1, _VARINT)  # google.protobuf.Timestamp
_NANOS = _field(2, _VARINT)
# Every bucket's field, made once (0 is left out, as protobuf leaves out a zero).
_BUCKET_FIELDS: Final = [b""] + [_BUCKET + _varint(b) for b in range(1, BUCKETS)]


# The varint of every size up to 16 KiB (two bytes of varint), made once.
_SIZED: Final = 1 << 14
_SIZES: Final = [_varint(n) for n in range(_SIZED)]


@functools.lru_cache(maxsize=4096)
def _tail(period: int, until: int | None) -> bytes:
    """The period and valid_until (microseconds since the epoch; None: unset) as their fields.
    Cached: an experiment's are the same for every call of one of its periods."""
    tail = _PERIOD + _varint(period) if period else b""
    if until is None:
        return tail
    seconds, micros = divmod(until, 1_000_000)
    stamp = (_SECONDS + _varint(seconds) if seconds else b"") + (
        _NANOS + _varint(micros * 1000) if micros else b""
    )
    return tail + _VALID_UNTIL + _varint(len(stamp)) + stamp
