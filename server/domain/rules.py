"""The rules of creating and updating an experiment, checked all at once.

The use case hands in what the client sent (ExperimentInput, unparsed values) and
the facts that need storage (which referenced goal and room IDs exist in the
organization, the current experiment, the time); the rules answer with the
state to store, or raise InvalidArgument listing every offending field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from server.domain import limits, messages
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.model import (
    DEFAULT_RESET_INTERVAL,
    Experiment,
    ExperimentState,
    Goal,
    Group,
    GroupState,
    GroupType,
    ResetInterval,
    Room,
    Treatment,
)

NAME_MAX_LENGTH: Final = limits.NAME_MAX_LENGTH
MAX_GROUPS: Final = limits.MAX_GROUPS

# Text neither database can store: PostgreSQL refuses NUL in text and in JSON, and no UTF-8
# encoder takes a lone surrogate (protobuf strings cannot carry one; other callers might).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Missing:
    """An attribute the client did not send, told apart from one sent as null."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


class Unreadable:
    """A value the client sent that is not one of its type at all (a Timestamp with nanos -1)."""

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE: Final = Unreadable()

Time = datetime | Unreadable | None


class Oversized:
    """A treatment so large that it cannot be valid: refused as it came, before it was
    converted to Python values (see limits.MAX_TREATMENT_WIRE_BYTES)."""

    def __repr__(self) -> str:
        return "OVERSIZED"


OVERSIZED: Final = Oversized()


@dataclass(frozen=True)
class GroupInput:
    """One group as sent. On update, an omitted group_type (MISSING) or treatment (None) of an
    existing group keeps its current value; for a group the update adds, omitted means what it
    means on create."""

    name: str | None = None
    percentage: int | None = None
    group_type: str | Missing | None = MISSING
    treatment: Treatment | Oversized | None = None


@dataclass(frozen=True)
class ExperimentInput:
    """What a client sent for an experiment, before any check. None means not sent (or null)."""

    is_draft: bool | None = None
    name: str | None = None
    goal_id: str | None = None
    starts_at: Time = None
    ends_at: Time = None
    group_reset_interval: str | None = None
    room_ids: tuple[str, ...] = ()
    groups: tuple[GroupInput, ...] = ()


@dataclass(frozen=True)
class References:
    """The goals and rooms, among those a request refers to, that exist in the experiment's
    organization, by ID."""

    goals: Mapping[UUID, Goal] = field(default_factory=dict)
    rooms: Mapping[UUID, Room] = field(default_factory=dict)

    def goal_and_rooms(self, state: ExperimentState) -> tuple[Goal | None, tuple[Room, ...]]:
        """What a valid state's goal_id and room_ids refer to (validated against these)."""
        goal = self.goals[state.goal_id] if state.goal_id is not None else None
        return goal, tuple(self.rooms[room_id] for room_id in state.room_ids)


@dataclass(frozen=True)
class ReadOnly:
    """An attribute that cannot change once the experiment has started: omitted, it keeps its
    current value; sent with another value, it is refused (`message`, formatted with the
    current value as `count`). A value that fails its own check is refused for that alone."""

    field: str
    # What the client sent (from an ExperimentInput or a GroupInput), comparable with
    # `comparable(current)`; MISSING when omitted.
    sent: Callable[[Any], object]
    # The stored value (from an Experiment or a Group).
    current: Callable[[Any], Any]
    comparable: Callable[[Any], object] = lambda value: value
    message: str = messages.READ_ONLY_AFTER_START


def _omitted_if_none(value: object) -> object:
    return MISSING if value is None else value


# Every rule of "read-only after start", of the experiment, then of each of its groups.
READ_ONLY_AFTER_START: Final = {
    row.field: row
    for row in (
        ReadOnly(
            "goal_id",
            lambda data: MISSING if data.goal_id is None else parse_uuid(data.goal_id),
            lambda experiment: experiment.goal_id,
        ),
        ReadOnly(
            "starts_at",
            lambda data: _omitted_if_none(data.starts_at),
            lambda experiment: experiment.starts_at,
        ),
        ReadOnly(
            "group_reset_interval",
            lambda data: _omitted_if_none(data.group_reset_interval),
            lambda experiment: experiment.group_reset_interval,
        ),
        # In any order; proto3 cannot tell an omitted list from an empty one: empty keeps them.
        ReadOnly(
            "room_ids",
            lambda data: frozenset(map(parse_uuid, data.room_ids)) if data.room_ids else MISSING,
            lambda experiment: experiment.room_ids,
            comparable=frozenset,
        ),
        # Groups are matched by position: none can be added or removed.
        ReadOnly(
            "groups",
            lambda data: len(data.groups),
            lambda experiment: experiment.groups,
            comparable=len,
            message=messages.GROUPS_FIXED_AFTER_START,
        ),
    )
}
GROUP_READ_ONLY_AFTER_START: Final = {
    row.field: row
    for row in (
        # Omitted (MISSING) keeps it; null is a value (no type).
        ReadOnly("group_type", lambda group: group.group_type, lambda group: group.group_type),
        ReadOnly(
            "treatment",
            lambda group: _omitted_if_none(group.treatment),
            lambda group: group.treatment,
        ),
    )
}


def parse_uuid(value: str) -> UUID | None:
    try:
        return UUID(value.strip())
    except (ValueError, AttributeError):
        return None


def referenced_ids(data: ExperimentInput) -> tuple[set[UUID], set[UUID]]:
    """The well-formed goal and room IDs of a request, for the use case to look up."""
    goal_ids = {g for g in [parse_uuid(data.goal_id or "")] if g}
    room_ids = {r for r in map(parse_uuid, data.room_ids) if r}
    return goal_ids, room_ids


def validate_new(data: ExperimentInput, refs: References) -> ExperimentState:
    """The state of a new experiment, or InvalidArgument with every violation."""
    return _Check(data, refs, current=None, now=None).run()


def validate_update(
    current: Experiment, data: ExperimentInput, refs: References, now: datetime
) -> ExperimentState:
    """The new state of an existing experiment, or InvalidArgument with every violation.

    Attributes that are read-only once the experiment has started keep their
    current value when omitted and are rejected when sent with another value.
    A draft never ends, so only a published experiment whose end has passed is refused;
    publishing a draft whose `ends_at` has passed is refused on `ends_at`.
    """
    if current.has_ended(now):
        raise InvalidArgument([FieldViolation("ends_at", messages.EXPERIMENT_ENDED)])
    return _Check(data, refs, current=current, now=now).run()


class _Check:
    def __init__(
        self,
        data: ExperimentInput,
        refs: References,
        current: Experiment | None,
        now: datetime | None,
    ) -> None:
        self.data = data
        self.refs = refs
        self.current = current
        self.now = now
        self.started = current is not None and now is not None and current.has_started(now)
        self.published = data.is_draft is False
        # A draft published by this request. (Creating a published experiment that has already
        # ended stays allowed: the spec's own example payload does it.)
        self.publishing = self.published and current is not None and current.is_draft
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def _kept(self, rule: ReadOnly, sent: object, current: object, prefix: str = "") -> Any:
        """The current value of a read-only attribute of a started experiment (or group), and
        a violation if another value was sent (unless the value failed a check of its own)."""
        field = prefix + rule.field
        value = rule.current(current)
        sent_value = rule.sent(sent)
        if (
            sent_value is not MISSING
            and sent_value != rule.comparable(value)
            and all(v.field != field for v in self.violations)
        ):
            self.fail(field, rule.message.format(count=rule.comparable(value)))
        return value

    def _experiment_kept(self, field: str) -> Any:
        assert self.current is not None
        return self._kept(READ_ONLY_AFTER_START[field], self.data, self.current)

    def run(self) -> ExperimentState:
        self._check_is_draft()
        state = ExperimentState(
            is_draft=self.data.is_draft is not False,
            name=self._name("name", self.data.name),
            goal_id=self._goal_id(),
            starts_at=self._starts_at(),
            ends_at=self._ends_at(),
            group_reset_interval=self._group_reset_interval(),
            room_ids=self._room_ids(),
            groups=self._groups(),
        )
        if state.starts_at and state.ends_at and state.ends_at < state.starts_at:
            self.fail("ends_at", messages.ENDS_BEFORE_START)
        if _size(state) > limits.MAX_EXPERIMENT_BYTES:
            self.fail("", messages.EXPERIMENT_TOO_LARGE.format(limit=limits.MAX_EXPERIMENT_BYTES))
        if self.violations:
            raise InvalidArgument(self.violations)
        return state

    def _check_is_draft(self) -> None:
        if self.data.is_draft is None:
            self.fail("is_draft", messages.REQUIRED)
        elif self.data.is_draft and self.current is not None and not self.current.is_draft:
            self.fail("is_draft", messages.CANNOT_RETURN_TO_DRAFT)

    def _name(self, field: str, value: str | None) -> str | None:
        if value is None:
            if self.published:
                self.fail(field, messages.REQUIRED_WHEN_PUBLISHED)
            return None
        if len(value) > NAME_MAX_LENGTH:
            self.fail(field, messages.TOO_LONG.format(limit=NAME_MAX_LENGTH))
        elif _UNSTORABLE.search(value):
            self.fail(field, messages.UNSTORABLE_TEXT)
        elif self.published and not value.strip():
            self.fail(field, messages.BLANK)
        return value

    def _goal_id(self) -> UUID | None:
        sent = self.data.goal_id
        if self.started:
            kept: UUID | None = self._experiment_kept("goal_id")
            return kept
        if sent is None:
            if self.published:
                self.fail("goal_id", messages.REQUIRED_WHEN_PUBLISHED)
            return None
        goal_id = parse_uuid(sent)
        if goal_id is None:
            self.fail("goal_id", messages.NOT_A_UUID)
        elif goal_id not in self.refs.goals:
            self.fail("goal_id", messages.GOAL_NOT_IN_ORGANIZATION)
        return goal_id

    def _time(self, field: str, sent: Time) -> tuple[datetime | None, bool]:
        """The time sent (None if not sent), and whether it is one the API supports."""
        if isinstance(sent, Unreadable):
            self.fail(field, messages.INVALID_TIMESTAMP)
            return None, False
        if sent is not None and not limits.EARLIEST_TIME <= sent < limits.LATEST_TIME:
            self.fail(field, messages.TIME_OUT_OF_RANGE)
            return None, False
        return sent, True

    def _starts_at(self) -> datetime | None:
        sent, valid = self._time("starts_at", self.data.starts_at)
        if self.started:
            kept: datetime | None = self._experiment_kept("starts_at")
            return kept
        if sent is None and valid and self.published:
            self.fail("starts_at", messages.REQUIRED_WHEN_PUBLISHED)
        return sent

    def _ends_at(self) -> datetime | None:
        sent, _ = self._time("ends_at", self.data.ends_at)
        if sent is not None and self.publishing and self.now is not None and sent <= self.now:
            self.fail("ends_at", messages.ENDS_IN_THE_PAST)
        return sent

    def _group_reset_interval(self) -> ResetInterval:
        sent = self.data.group_reset_interval
        interval: ResetInterval | None = None
        if sent is not None:
            try:
                interval = ResetInterval(sent)
            except ValueError:
                self.fail("group_reset_interval", messages.RESET_INTERVAL_CHOICES)
                return DEFAULT_RESET_INTERVAL
        if self.started:
            kept: ResetInterval = self._experiment_kept("group_reset_interval")
            return kept
        return interval or DEFAULT_RESET_INTERVAL

    def _room_ids(self) -> tuple[UUID, ...]:
        sent = self.data.room_ids
        if len(sent) > limits.MAX_ROOMS:
            self.fail("room_ids", messages.TOO_MANY_ROOMS.format(limit=limits.MAX_ROOMS))
        if self.started:
            kept: tuple[UUID, ...] = self._experiment_kept("room_ids")
            return kept
        if len(sent) > limits.MAX_ROOMS:
            return ()
        room_ids: list[UUID] = []
        for index, raw in enumerate(sent):
            field = f"room_ids[{index}]"
            room_id = parse_uuid(raw)
            if room_id is None:
                self.fail(field, messages.NOT_A_UUID)
            elif room_id in room_ids:
                self.fail(field, messages.DUPLICATE_ROOM)
            elif room_id not in self.refs.rooms:
                self.fail(field, messages.ROOM_NOT_IN_ORGANIZATION)
            else:
                room_ids.append(room_id)
        return tuple(room_ids)

    def _groups(self) -> tuple[GroupState, ...]:
        sent = self.data.groups
        if len(sent) > MAX_GROUPS:
            self.fail("groups", messages.TOO_MANY_GROUPS.format(limit=MAX_GROUPS))
            return ()
        # Groups are matched by position: the group at index i updates the existing one of order i.
        existing: tuple[Group, ...] = self.current.groups if self.current is not None else ()
        if self.started:
            self._experiment_kept("groups")
        groups = tuple(
            self._group(index, group, existing[index] if index < len(existing) else None)
            for index, group in enumerate(sent)
        )
        self._check_total(groups)
        return groups

    def _group(self, index: int, sent: GroupInput, existing: Group | None) -> GroupState:
        prefix = f"groups[{index}]"
        name = self._name(f"{prefix}.name", sent.name)
        percentage = sent.percentage
        if percentage is None:
            if self.published:
                self.fail(f"{prefix}.percentage", messages.REQUIRED_WHEN_PUBLISHED)
        elif not 0 <= percentage <= 100:
            self.fail(f"{prefix}.percentage", messages.PERCENTAGE_RANGE)
        group_type = self._group_type(f"{prefix}.group_type", sent.group_type, existing)
        treatment = self._treatment(f"{prefix}.treatment", sent.treatment, existing)
        if self.started and existing is not None:
            for rule in GROUP_READ_ONLY_AFTER_START.values():
                self._kept(rule, sent, existing, prefix=f"{prefix}.")
        return GroupState(name, percentage, group_type, treatment)

    def _group_type(
        self, field: str, sent: str | Missing | None, existing: Group | None
    ) -> GroupType | None:
        """Omitted: an existing group keeps its type; a new one needs it when published."""
        if isinstance(sent, Missing):
            if existing is not None:
                return existing.group_type
            if self.published:
                self.fail(field, messages.REQUIRED_WHEN_PUBLISHED)
            return None
        group_type: GroupType | None = None
        if sent is not None:
            try:
                group_type = GroupType(sent)
            except ValueError:
                self.fail(field, messages.GROUP_TYPE_CHOICES)
                return None
        return group_type

    def _treatment(
        self, field: str, sent: Treatment | Oversized | None, existing: Group | None
    ) -> Treatment | None:
        """Omitted: an existing group keeps its treatment; a new one has none."""
        if sent is None or isinstance(sent, Oversized):
            if sent is not None:
                self.fail(
                    field, messages.TREATMENT_TOO_LARGE.format(limit=limits.MAX_TREATMENT_BYTES)
                )
            return existing.treatment if existing is not None else None
        problem = treatment_problem(sent)
        if problem is not None:
            self.fail(field, problem)
        return sent

    def _check_total(self, groups: Iterable[GroupState]) -> None:
        percentages = [g.percentage for g in groups]
        if not self.published or any(p is None or not 0 <= p <= 100 for p in percentages):
            return  # missing or out-of-range percentages are reported on their own
        total = sum(p for p in percentages if p is not None)
        if total != 100:
            self.fail("groups", messages.PERCENTAGES_TOTAL.format(total=total))


def treatment_problem(treatment: Treatment) -> str | None:
    """Why a treatment cannot be stored as sent, or None: text, numbers, depth, then size."""
    stack: list[tuple[Any, int]] = [(treatment, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limits.MAX_TREATMENT_DEPTH:
                return messages.TREATMENT_TOO_DEEP.format(limit=limits.MAX_TREATMENT_DEPTH)
            if isinstance(value, dict):
                if any(_UNSTORABLE.search(key) for key in value):
                    return messages.TREATMENT_UNSTORABLE_TEXT
                items: Iterable[Any] = value.values()
            else:
                items = value
            stack.extend((item, depth + 1) for item in items)
        elif isinstance(value, str):
            if _UNSTORABLE.search(value):
                return messages.TREATMENT_UNSTORABLE_TEXT
        elif isinstance(value, float) and not math.isfinite(value):
            return messages.TREATMENT_NOT_FINITE
    if _json_bytes(treatment) > limits.MAX_TREATMENT_BYTES:
        return messages.TREATMENT_TOO_LARGE.format(limit=limits.MAX_TREATMENT_BYTES)
    return None


def _json_bytes(value: Any) -> int:
    """Size as compact JSON in UTF-8 (lone surrogates escaped, so this never fails)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode(errors="replace"))


def _size(state: ExperimentState) -> int:
    """The bytes a client wrote into the experiment, as compact JSON: see MAX_EXPERIMENT_BYTES."""
    return _json_bytes(
        [
            state.name,
            str(state.goal_id),
            [str(room) for room in state.room_ids],
            [[g.name, g.group_type, g.treatment] for g in state.groups],
        ]
    )
