"""Conversions between the protobuf messages and the domain's plain values, both ways,
and the stored renderings: an experiment as the bytes reads send, a revision as the
history stores it, and the responses assembled from those bytes without decoding them."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from experiments.v5 import experiments_pb2 as pb
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from server.adapters.views import Renderer
from server.domain import limits
from server.domain.feed import encode_position
from server.domain.model import Experiment, Group, Treatment, User
from server.domain.revisions import JsonValue, Revision
from server.domain.rules import (
    MISSING,
    OVERSIZED,
    UNREADABLE,
    ExperimentInput,
    GroupInput,
    Missing,
    Oversized,
    Time,
)
from server.service_layer.ports import Change, RevisionRecord


def experiment_input(message: pb.Experiment) -> ExperimentInput:
    """What the client sent; output-only fields are ignored.

    Sizes and counts are checked on the parsed message before anything becomes a Python
    value, which costs far more than protobuf's C parser: beyond the limit of groups or rooms
    only one more is converted (the rules then refuse the list as too long), and a treatment
    too large to be valid is not converted at all (OVERSIZED; the rules name it).
    """
    return ExperimentInput(
        is_draft=message.is_draft if message.HasField("is_draft") else None,
        name=message.name if message.HasField("name") else None,
        goal_id=message.goal_id if message.HasField("goal_id") else None,
        starts_at=_time(message.starts_at) if message.HasField("starts_at") else None,
        ends_at=_time(message.ends_at) if message.HasField("ends_at") else None,
        group_reset_interval=(
            message.group_reset_interval if message.HasField("group_reset_interval") else None
        ),
        room_ids=tuple(message.room_ids[: limits.MAX_ROOMS + 1]),
        groups=tuple(_group_input(group) for group in message.groups[: limits.MAX_GROUPS + 1]),
    )


def _group_input(message: pb.Group) -> GroupInput:
    group_type: str | Missing | None = MISSING
    if message.HasField("group_type"):
        kind = message.group_type.WhichOneof("kind")
        if kind is None or kind == "null_value":  # an unset Value is JSON null
            group_type = None
        elif kind == "string_value":
            group_type = message.group_type.string_value
        else:
            # Not a string (a number, perhaps NaN): named by its kind, so the rules reject it.
            group_type = f"<{kind}>"
    return GroupInput(
        name=message.name if message.HasField("name") else None,
        percentage=message.percentage if message.HasField("percentage") else None,
        group_type=group_type,
        treatment=_treatment(message.treatment) if message.HasField("treatment") else None,
    )


def _treatment(message: struct_pb2.Struct) -> Treatment | Oversized:
    # ByteSize is computed in C, without a Python object per key.
    if message.ByteSize() > limits.MAX_TREATMENT_WIRE_BYTES:
        return OVERSIZED
    return _treatment_dict(message)


def _treatment_dict(message: struct_pb2.Struct) -> Treatment:
    # By hand rather than json_format.MessageToDict, which raises on NaN and Infinity: those
    # reach the rules as floats, to be refused by name.
    return {key: _plain(value) for key, value in message.fields.items()}


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _treatment_dict(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or no kind at all (JSON null)


def render_experiment(experiment: Experiment) -> bytes:
    """The serialized Experiment message: what the read model stores and reads send.

    Deterministic: protobuf leaves the order of a map's entries (a treatment's Struct) to each
    process otherwise, so the same experiment gave other bytes after a restart, and the read
    model's check (the stored bytes against a fresh render) flagged views that were right.
    """
    return experiment_message(experiment).SerializeToString(deterministic=True)


# Bump RENDER_VERSION whenever render_experiment would produce other bytes for the same
# experiment (a field added to the message, a new way to fill one): `experiments-admin
# migrate` then renders the stored views of older versions again. The golden test
# (tests/unit/test_read_model_rendering.py) fails when the bytes change without a bump.
# 2: deterministic serialization (the map entries of treatments in key order).
# 3: each group's `buckets` (visitor assignment).
RENDER_VERSION = 3
RENDERER = Renderer(render_experiment, RENDER_VERSION)


def list_response(experiments: list[bytes], links: pb.ListExperimentsResponse) -> bytes:
    """A serialized ListExperimentsResponse: `links` (its other fields) followed by each
    serialized Experiment as one `results` entry (tag, length, bytes).

    Protobuf parsers accept fields in any order and append the entries of a repeated field,
    so this is the same message as `links` with `results` filled, without decoding anything.
    """
    return _with_entries(links.SerializeToString(deterministic=True), _RESULTS_TAG, experiments)


def revisions_response(changes: list[Change], links: pb.ListExperimentRevisionsResponse) -> bytes:
    """A serialized ListExperimentRevisionsResponse: `links` and the stored revisions, as
    list_response assembles a list page."""
    return _with_entries(
        links.SerializeToString(deterministic=True), _REVISIONS_TAG, map(revision_message, changes)
    )


def changes_response(changes: tuple[Change, ...], next_position: int) -> bytes:
    """A serialized ListExperimentChangesResponse, assembled from the stored revisions."""
    links = pb.ListExperimentChangesResponse(next_cursor=encode_position(next_position))
    return _with_entries(
        links.SerializeToString(deterministic=True), _CHANGES_TAG, map(revision_message, changes)
    )


def revision_message(change: Change) -> bytes:
    """A stored revision as clients get it: the ExperimentRevision with its `cursor` (field 1,
    made from its feed position) in front of the stored fields."""
    cursor = encode_position(change.position).encode()
    return b"".join((_CURSOR_TAG, _varint(len(cursor)), cursor, change.message))


# Changes whose watch message a worker keeps: the latest news, which every watch of the worker
# sends within moments (typically a few MB at most; a change is at most about 0.5 MB).
WATCH_MESSAGES_CACHED = 128


@functools.lru_cache(maxsize=WATCH_MESSAGES_CACHED)
def watch_change(change: Change) -> bytes:
    """A serialized WatchExperimentChangesResponse carrying the change: made once for all the
    watches of a worker that send it (they send the latest changes at about the same time)."""
    return _with_entries(b"", _WATCH_CHANGE_TAG, [revision_message(change)])


def watch_heartbeat(position: int) -> bytes:
    """A serialized WatchExperimentChangesResponse carrying a heartbeat at `position`."""
    heartbeat = pb.WatchHeartbeat(cursor=encode_position(position))
    return pb.WatchExperimentChangesResponse(heartbeat=heartbeat).SerializeToString()


def revision_record(revision: Revision, experiment: bytes) -> RevisionRecord:
    """The revision as the history stores it: a serialized ExperimentRevision without its
    `cursor` (unknown until stored), embedding `experiment` (the serialized Experiment it
    shows, the read model's rendering) as it is. Deterministic: the same revision gives the
    same bytes (map keys of treatments in order)."""
    message = pb.ExperimentRevision(
        experiment_id=str(revision.experiment.id),
        organization_id=str(revision.experiment.organization.id),
        revision=revision.number,
        action=revision.action.value,
        user_id=str(revision.author.id),
    )
    _fill_user(message.user, revision.author)
    _set_time(message.created_at, revision.made_at)
    for change in revision.changes:
        field_change = message.changes.add(field=change.field)
        _fill_value(field_change.before, change.before)
        _fill_value(field_change.after, change.after)
    stored = _with_entries(
        message.SerializeToString(deterministic=True), _EXPERIMENT_TAG, [experiment]
    )
    return RevisionRecord(
        organization_id=revision.experiment.organization.id,
        experiment_id=revision.experiment.id,
        number=revision.number,
        action=revision.action.value,
        user_id=revision.author.id,
        created_at=revision.made_at,
        message=stored,
    )


def _fill_value(message: struct_pb2.Value, value: JsonValue) -> None:
    if value is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = value
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, dict):
        message.struct_value.SetInParent()
        message.struct_value.update(value)
    else:
        message.list_value.SetInParent()
        message.list_value.extend(value)


def _with_entries(head: bytes, tag: bytes, entries: Iterable[bytes]) -> bytes:
    """`head` (serialized fields of a message) followed by each of `entries` as one entry of
    the length-delimited field `tag`: the same message with those entries appended."""
    parts = [head]
    for entry in entries:
        parts += (tag, _varint(len(entry)), entry)
    return b"".join(parts)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(message: type[Message], field: str) -> bytes:
    """The tag of a length-delimited field (wire type 2): (number << 3) | 2."""
    return _varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | 2)


_RESULTS_TAG = _tag(pb.ListExperimentsResponse, "results")
_REVISIONS_TAG = _tag(pb.ListExperimentRevisionsResponse, "results")
_CHANGES_TAG = _tag(pb.ListExperimentChangesResponse, "results")
_CURSOR_TAG = _tag(pb.ExperimentRevision, "cursor")
_EXPERIMENT_TAG = _tag(pb.ExperimentRevision, "experiment")
_WATCH_CHANGE_TAG = _tag(pb.WatchExperimentChangesResponse, "change")


def experiment_message(experiment: Experiment) -> pb.Experiment:
    message = pb.Experiment()
    fill_experiment(message, experiment)
    return message


def fill_experiment(message: pb.Experiment, experiment: Experiment) -> None:
    """Writes the experiment into an empty message in place (the hot path of every read).

    Sub-messages are filled where they live rather than built and copied in.
    """
    message.id = str(experiment.id)
    message.etag = experiment.etag
    message.is_draft = experiment.is_draft
    _set_time(message.created_at, experiment.created_at)
    _fill_user(message.created_by_user, experiment.created_by)
    message.created_by_user_id = message.created_by_user.id
    _set_time(message.updated_at, experiment.updated_at)
    _fill_user(message.updated_by_user, experiment.updated_by)
    message.updated_by_user_id = message.updated_by_user.id
    organization = message.organization
    organization.id = message.organization_id = str(experiment.organization.id)
    organization.name = experiment.organization.name
    for group in experiment.groups:
        _fill_group(message.groups.add(), group)
    message.group_reset_interval = experiment.group_reset_interval.value
    for room in experiment.rooms:
        room_message = message.rooms.add()
        room_message.id = str(room.id)
        room_message.name = room.name
        room_message.organization_id = str(room.organization_id)
        message.room_ids.append(room_message.id)
    if experiment.name is not None:
        message.name = experiment.name
    if experiment.goal is not None:
        goal = message.goal
        goal.id = message.goal_id = str(experiment.goal.id)
        goal.name = experiment.goal.name
        goal.organization.id = goal.organization_id = str(experiment.goal.organization.id)
        goal.organization.name = experiment.goal.organization.name
    if experiment.starts_at is not None:
        _set_time(message.starts_at, experiment.starts_at)
    if experiment.ends_at is not None:
        _set_time(message.ends_at, experiment.ends_at)


def _fill_group(message: pb.Group, group: Group) -> None:
    message.id = str(group.id)
    _set_time(message.created_at, group.created_at)
    _set_time(message.updated_at, group.updated_at)
    message.order = group.order
    if group.group_type is not None:
        message.group_type.string_value = group.group_type.value
    else:
        message.group_type.null_value = struct_pb2.NULL_VALUE
    if group.name is not None:
        message.name = group.name
    if group.percentage is not None:
        message.percentage = group.percentage
    if group.treatment is not None:
        _fill_treatment(message.treatment, group.treatment)
    for bucket_range in group.buckets:
        message.buckets.add(start=bucket_range.start, end=bucket_range.end)


def _fill_user(message: pb.User, user: User) -> None:
    message.id = str(user.id)
    message.first_name = user.first_name
    message.last_name = user.last_name
    message.full_name = user.full_name
    message.organization_id = str(user.organization_id)
    message.is_bot = user.is_bot


def _fill_treatment(message: struct_pb2.Struct, treatment: Treatment) -> None:
    message.SetInParent()  # an empty treatment {} is still a treatment
    message.update(treatment)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _set_time(message: timestamp_pb2.Timestamp, value: datetime) -> None:
    # Timestamp.FromDatetime goes through calendar.timegm in Python; this is exact and ~5x faster.
    delta = value - _EPOCH
    message.seconds = delta.days * 86_400 + delta.seconds
    message.nanos = delta.microseconds * 1_000


def _time(value: timestamp_pb2.Timestamp) -> Time:
    """The time a Timestamp stands for (to the microsecond), or UNREADABLE if it is not valid:
    nanos outside 0..999,999,999, or seconds outside what a datetime holds (years 1-9999)."""
    if not 0 <= value.nanos <= 999_999_999:
        return UNREADABLE
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        return UNREADABLE
