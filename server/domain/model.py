"""The experiment aggregate and the organization objects it refers to, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from server.domain.assignment import BucketRange, GroupRanges, initial_ranges, rebalanced_ranges

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
    # Output only: the buckets whose visitors are in this group (domain.assignment), set by
    # every write from the percentages (bucket_ranges); none for a draft that is not a split.
    buckets: tuple[BucketRange, ...] = ()


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
    numbered in the order given, with their buckets, every timestamp `now`."""
    groups = [_new_group(order, group, now) for order, group in enumerate(state.groups)]
    return Experiment(
        id=experiment_id,
        organization=organization,
        **_attributes(state),
        goal=goal,
        rooms=rooms,
        groups=_with_buckets(groups, bucket_ranges(None, state)),
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
    new updated_at only if its values change (not for its buckets alone, which follow from
    the percentages: bucket_ranges). Groups beyond the current count are new, and current
    groups beyond the new count are gone.
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
        groups=_with_buckets(groups, bucket_ranges(current, state)),
        updated_at=now,
        updated_by=author,
        version=current.version + 1,
    )


def bucket_ranges(current: Experiment | None, state: ExperimentState) -> GroupRanges:
    """The buckets each group of `state` owns once written (README, "Visitor assignment").

    A draft's are laid out afresh on every write (initial_ranges: consecutive in group
    order), and so are they when a draft is published, since a draft was never assigned.
    From publication on they move minimally (rebalanced_ranges from the stored ones), before
    the start as after it: an assignment may be asked for any time, a future one included,
    and callers may cache it until its valid_until, so a published experiment's visitors
    are never moved needlessly.
    """
    percentages = [group.percentage for group in state.groups]
    if current is None or current.is_draft:
        return initial_ranges(percentages)
    return rebalanced_ranges([group.buckets for group in current.groups], percentages)


def _with_buckets(groups: list[Group], ranges: GroupRanges) -> tuple[Group, ...]:
    return tuple(
        group if group.buckets == buckets else replace(group, buckets=buckets)
        for group, buckets in zip(groups, ranges, strict=True)
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
