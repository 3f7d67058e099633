"""The experiment aggregate and the organization objects it refers to, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

# A treatment is stored and returned as the client sent it (name, actions, conditions).
Treatment = dict[str, Any]


class GroupType(StrEnum):
    CONTROL = "control"
    USER_DEFINED = "user_defined"
    TARGET_ALGORITHM = "target_algorithm"
    TARGET_RANDOM = "target_random"


class ResetInterval(StrEnum):
    FULL = "full"
    WEEK = "1w"
    DAY = "1d"


DEFAULT_RESET_INTERVAL = ResetInterval.FULL


@dataclass(frozen=True)
class Organization:
    id: UUID
    name: str
    has_active_subscription: bool = True


@dataclass(frozen=True)
class User:
    id: UUID
    first_name: str
    last_name: str
    organization_id: UUID
    is_bot: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a user, its organization and what it may do."""

    user: User
    organization: Organization
    can_manage_settings: bool


@dataclass(frozen=True)
class Goal:
    id: UUID
    name: str
    organization: Organization


@dataclass(frozen=True)
class Room:
    id: UUID
    name: str
    organization_id: UUID


@dataclass(frozen=True)
class Group:
    id: UUID
    order: int
    name: str | None
    percentage: int | None
    group_type: GroupType | None
    treatment: Treatment | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Experiment:
    """An experiment as stored, with everything a response shows about it."""

    id: UUID
    organization: Organization
    is_draft: bool
    name: str | None
    goal: Goal | None
    starts_at: datetime | None
    ends_at: datetime | None
    group_reset_interval: ResetInterval
    rooms: tuple[Room, ...]
    groups: tuple[Group, ...]
    created_at: datetime
    created_by: User
    updated_at: datetime
    updated_by: User
    # Incremented on every write; the etag clients see is made from it.
    version: int = 1

    @property
    def etag(self) -> str:
        """The stored version as clients see it: opaque to them, new on every write."""
        return etag_of(self.version)

    @property
    def goal_id(self) -> UUID | None:
        return self.goal.id if self.goal else None

    @property
    def room_ids(self) -> tuple[UUID, ...]:
        return tuple(room.id for room in self.rooms)

    def has_started(self, now: datetime) -> bool:
        """A published experiment whose start has passed; a draft never runs, so never starts."""
        return not self.is_draft and self.starts_at is not None and self.starts_at <= now

    def has_ended(self, now: datetime) -> bool:
        """A published experiment whose end has passed; a draft never runs, so never ends."""
        return not self.is_draft and self.ends_at is not None and self.ends_at <= now


@dataclass(frozen=True)
class GroupState:
    """The writable attributes of a group after validation."""

    name: str | None
    percentage: int | None
    group_type: GroupType | None
    treatment: Treatment | None


@dataclass(frozen=True)
class ExperimentState:
    """The writable attributes of an experiment after validation: what gets stored."""

    is_draft: bool
    name: str | None
    goal_id: UUID | None
    starts_at: datetime | None
    ends_at: datetime | None
    group_reset_interval: ResetInterval
    room_ids: tuple[UUID, ...]
    groups: tuple[GroupState, ...] = field(default_factory=tuple)


def etag_of(version: int) -> str:
    """The etag clients see for a stored version of an experiment."""
    return str(version)


def new_experiment(
    experiment_id: UUID,
    organization: Organization,
    state: ExperimentState,
    goal: Goal | None,
    rooms: tuple[Room, ...],
    author: User,
    now: datetime,
) -> Experiment:
    """The experiment a create stores, exactly as a read will show it: version 1, its groups
    numbered in the order given, every timestamp `now`."""
    return Experiment(
        id=experiment_id,
        organization=organization,
        **_attributes(state),
        goal=goal,
        rooms=rooms,
        groups=tuple(_new_group(order, group, now) for order, group in enumerate(state.groups)),
        created_at=now,
        created_by=author,
        updated_at=now,
        updated_by=author,
    )


def changed_experiment(
    current: Experiment,
    state: ExperimentState,
    goal: Goal | None,
    rooms: tuple[Room, ...],
    author: User,
    now: datetime,
) -> Experiment:
    """The experiment an update stores: the next version, updated by `author` at `now`.

    Group i of the new state is the current group i with its id and created_at; it gets a
    new updated_at only if its values change. Groups beyond the current count are new, and
    current groups beyond the new count are gone.
    """
    groups = []
    for order, group in enumerate(state.groups):
        kept = current.groups[order] if order < len(current.groups) else None
        if kept is None:
            groups.append(_new_group(order, group, now))
        elif _values(kept) == _values(group):
            groups.append(kept)
        else:
            groups.append(replace(kept, **_values(group), updated_at=now))
    return replace(
        current,
        **_attributes(state),
        goal=goal,
        rooms=rooms,
        groups=tuple(groups),
        updated_at=now,
        updated_by=author,
        version=current.version + 1,
    )


def _attributes(state: ExperimentState) -> dict[str, Any]:
    """The experiment's own writable attributes (its goal, rooms and groups aside)."""
    return {
        "is_draft": state.is_draft,
        "name": state.name,
        "starts_at": state.starts_at,
        "ends_at": state.ends_at,
        "group_reset_interval": state.group_reset_interval,
    }


def _new_group(order: int, group: GroupState, now: datetime) -> Group:
    return Group(id=uuid4(), order=order, **_values(group), created_at=now, updated_at=now)


def _values(group: Group | GroupState) -> dict[str, Any]:
    """A group's writable attributes."""
    return {
        "name": group.name,
        "percentage": group.percentage,
        "group_type": group.group_type,
        "treatment": group.treatment,
    }
