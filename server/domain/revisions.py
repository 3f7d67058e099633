"""What a write did to an experiment, as a revision: its action, number, author and the
field-level differences, a pure function of the experiment before and after.

The use cases ask here whether a write changed anything and what (a PUT that changes
nothing is no revision at all); the unit of work stores the revision in the write's own
transaction, so the history and the change feed hold exactly what was committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from server.domain.model import Experiment, Group, User

# A value as the experiment's JSON writes it: None, bool, int, str, or lists and objects of them.
JsonValue = Any


class Action(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True)
class FieldChange:
    """One attribute that differs, named as field violations name it (`groups[1].percentage`)."""

    field: str
    before: JsonValue
    after: JsonValue


@dataclass(frozen=True)
class Revision:
    """One change to an experiment: `experiment` is the experiment after it (before it, for a
    delete); `number` its version after it (for a delete, the version after the last)."""

    action: Action
    number: int
    experiment: Experiment
    author: User
    made_at: datetime
    changes: tuple[FieldChange, ...]


def creation(experiment: Experiment) -> Revision:
    """The revision of a create: every attribute it set."""
    return Revision(
        Action.CREATED,
        experiment.version,
        experiment,
        experiment.created_by,
        experiment.created_at,
        changes(None, experiment),
    )


def first_known(experiment: Experiment) -> Revision:
    """The revision recorded for an experiment that existed before revisions were: a create of
    it as it is now, by its last updater, when last updated (its earlier history is unknown)."""
    return Revision(
        Action.CREATED,
        experiment.version,
        experiment,
        experiment.updated_by,
        experiment.updated_at,
        changes(None, experiment),
    )


def update(before: Experiment, after: Experiment) -> Revision | None:
    """The revision of an update, or None when it changes no attribute (a no-op)."""
    differences = changes(before, after)
    if not differences:
        return None
    return Revision(
        Action.UPDATED, after.version, after, after.updated_by, after.updated_at, differences
    )


def deletion(experiment: Experiment, author: User, now: datetime) -> Revision:
    """The revision of a delete: every attribute the experiment had, now gone."""
    return Revision(
        Action.DELETED,
        experiment.version + 1,
        experiment,
        author,
        now,
        changes(experiment, None),
    )


def changes(before: Experiment | None, after: Experiment | None) -> tuple[FieldChange, ...]:
    """The writable attributes that differ, in the order of the experiment's attributes; a
    missing experiment (before a create, after a delete) has every attribute unset. Groups
    are compared by position, as updates match them: `groups[i].name` for a changed
    attribute, `groups[i]` for a group added or removed."""
    old, new = _attributes(before), _attributes(after)
    found = [FieldChange(name, old[name], new[name]) for name in old if old[name] != new[name]]
    old_groups = before.groups if before is not None else ()
    new_groups = after.groups if after is not None else ()
    for index in range(max(len(old_groups), len(new_groups))):
        prefix = f"groups[{index}]"
        if index >= len(old_groups):
            found.append(FieldChange(prefix, None, _group(new_groups[index])))
        elif index >= len(new_groups):
            found.append(FieldChange(prefix, _group(old_groups[index]), None))
        else:
            found.extend(_group_changes(prefix, old_groups[index], new_groups[index]))
    return tuple(found)


def _attributes(experiment: Experiment | None) -> dict[str, JsonValue]:
    """The experiment's own writable attributes as JSON values; all None for no experiment."""
    if experiment is None:
        return dict.fromkeys(_ATTRIBUTES)
    return {
        "is_draft": experiment.is_draft,
        "name": experiment.name,
        "goal_id": str(experiment.goal_id) if experiment.goal_id else None,
        "starts_at": _time(experiment.starts_at),
        "ends_at": _time(experiment.ends_at),
        "group_reset_interval": experiment.group_reset_interval.value,
        "room_ids": [str(room_id) for room_id in experiment.room_ids],
    }


_ATTRIBUTES = (
    "is_draft",
    "name",
    "goal_id",
    "starts_at",
    "ends_at",
    "group_reset_interval",
    "room_ids",
)


def _group(group: Group) -> dict[str, JsonValue]:
    return {
        "name": group.name,
        "percentage": group.percentage,
        "group_type": group.group_type.value if group.group_type else None,
        "treatment": group.treatment,
    }


def _group_changes(prefix: str, old: Group, new: Group) -> Iterator[FieldChange]:
    before, after = _group(old), _group(new)
    for name, value in before.items():
        if value != after[name]:
            yield FieldChange(f"{prefix}.{name}", value, after[name])


def _time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC, as protobuf's JSON writes a Timestamp (3 or 6 digits of fraction)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    micros = value.microsecond
    if micros % 1000 == 0:
        fraction = f".{micros // 1000:03d}" if micros else ""
    else:
        fraction = f".{micros:06d}"
    return f"{text}{fraction}Z"
