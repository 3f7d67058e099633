"""Small builders of requests and stored experiments, so each test shows only what it varies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from server.domain.assignment import initial_ranges
from server.domain.errors import InvalidArgument
from server.domain.model import (
    Experiment,
    Goal,
    Group,
    GroupType,
    Organization,
    Principal,
    ResetInterval,
    Room,
    Treatment,
    User,
)
from server.domain.rules import MISSING, ExperimentInput, GroupInput, References

# The one "current time" of the unit tests: nothing reads the real clock.
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)

ORGANIZATION = Organization(UUID("aabefa3e-1c8e-4690-99e4-2683c77d4ff0"), "Company Inc.")
OTHER_ORGANIZATION = Organization(UUID("0b0b0b0b-0000-4000-8000-000000000002"), "Other Ltd.")
UNSUBSCRIBED_ORGANIZATION = Organization(
    UUID("0c0c0c0c-0000-4000-8000-000000000003"), "Lapsed Co.", has_active_subscription=False
)

GOAL = Goal(UUID("0a534844-869a-11e9-8dcc-27f1dd2d9764"), "Reached checkout page", ORGANIZATION)
SECOND_GOAL = Goal(UUID("0a534844-869a-11e9-8dcc-000000000002"), "Signed up", ORGANIZATION)
OTHER_ORGANIZATION_GOAL = Goal(
    UUID("0a534844-869a-11e9-8dcc-000000000003"), "Their goal", OTHER_ORGANIZATION
)

ROOM_A = Room(UUID("1a000000-0000-4000-8000-00000000000a"), "Web shop", ORGANIZATION.id)
ROOM_B = Room(UUID("1b000000-0000-4000-8000-00000000000b"), "Mobile app", ORGANIZATION.id)
OTHER_ORGANIZATION_ROOM = Room(
    UUID("1c000000-0000-4000-8000-00000000000c"), "Their shop", OTHER_ORGANIZATION.id
)

USER = User(UUID("97abf1ee-6308-11e7-9d09-00163ec04961"), "John", "Doe", ORGANIZATION.id)
VIEWER_USER = User(UUID("97abf1ee-0000-4000-8000-000000000002"), "Vera", "Viewer", ORGANIZATION.id)

# Callers of the use cases, each with its API key.
EDITOR_KEY = "editor-key"
EDITOR = Principal(USER, ORGANIZATION, can_manage_settings=True)
VIEWER_KEY = "viewer-key"
VIEWER = Principal(VIEWER_USER, ORGANIZATION, can_manage_settings=False)
OUTSIDER_KEY = "outsider-key"
OUTSIDER = Principal(
    User(UUID("97abf1ee-0000-4000-8000-000000000003"), "Olga", "Other", OTHER_ORGANIZATION.id),
    OTHER_ORGANIZATION,
    can_manage_settings=True,
)
LAPSED_KEY = "lapsed-key"
LAPSED = Principal(
    User(
        UUID("97abf1ee-0000-4000-8000-000000000004"), "Len", "Lapsed", UNSUBSCRIBED_ORGANIZATION.id
    ),
    UNSUBSCRIBED_ORGANIZATION,
    can_manage_settings=True,
)


# What the rules are told exists in ORGANIZATION when they check a request's references.
REFERENCES = References(
    goals={GOAL.id: GOAL, SECOND_GOAL.id: SECOND_GOAL},
    rooms={ROOM_A.id: ROOM_A, ROOM_B.id: ROOM_B},
)

TREATMENT_A: Treatment = {"name": "Rule-A", "actions": [], "conditions": []}
TREATMENT_B: Treatment = {"name": "Rule-B", "actions": [{"type": "banner"}], "conditions": []}


# --- Requests, as a client sends them -------------------------------------------------------


def group_input(
    name: str | None = "A",
    percentage: int | None = 50,
    group_type: Any = "control",
    treatment: Treatment | None = None,
) -> GroupInput:
    return GroupInput(name=name, percentage=percentage, group_type=group_type, treatment=treatment)


def published_input(**changes: Any) -> ExperimentInput:
    """A valid request for a published experiment (the documented example), with `changes`."""
    valid = ExperimentInput(
        is_draft=False,
        name="Hello experiment",
        goal_id=str(GOAL.id),
        starts_at=NOW + DAY,
        ends_at=NOW + 15 * DAY,
        group_reset_interval="full",
        room_ids=(str(ROOM_A.id),),
        groups=(
            group_input("A", 90, "control", TREATMENT_A),
            group_input("B", 10, "user_defined", TREATMENT_B),
        ),
    )
    return replace(valid, **changes)


def draft_input(**changes: Any) -> ExperimentInput:
    return replace(ExperimentInput(is_draft=True), **changes)


def with_group(data: ExperimentInput, index: int, **changes: Any) -> ExperimentInput:
    """`data` with the group at `index` changed."""
    groups = list(data.groups)
    groups[index] = replace(groups[index], **changes)
    return replace(data, groups=tuple(groups))


def input_from(experiment: Experiment) -> ExperimentInput:
    """What a client PUTs back after GETting `experiment` unchanged."""
    return ExperimentInput(
        is_draft=experiment.is_draft,
        name=experiment.name,
        goal_id=str(experiment.goal_id) if experiment.goal_id else None,
        starts_at=experiment.starts_at,
        ends_at=experiment.ends_at,
        group_reset_interval=experiment.group_reset_interval.value,
        room_ids=tuple(str(room_id) for room_id in experiment.room_ids),
        groups=tuple(
            GroupInput(
                name=group.name,
                percentage=group.percentage,
                group_type=group.group_type.value if group.group_type else None,
                treatment=group.treatment,
            )
            for group in experiment.groups
        ),
    )


def without_read_only_attributes(data: ExperimentInput) -> ExperimentInput:
    """`data` with every attribute that is read-only after the start left out."""
    return replace(
        data,
        goal_id=None,
        starts_at=None,
        group_reset_interval=None,
        room_ids=(),
        groups=tuple(replace(g, group_type=MISSING, treatment=None) for g in data.groups),
    )


# --- Experiments, as stored -----------------------------------------------------------------


def stored_group(
    order: int,
    name: str,
    percentage: int,
    group_type: GroupType | None,
    treatment: Treatment | None,
) -> Group:
    return Group(
        id=UUID(f"9000000{order}-0000-4000-8000-000000000000"),
        order=order,
        name=name,
        percentage=percentage,
        group_type=group_type,
        treatment=treatment,
        created_at=NOW - 30 * DAY,
        updated_at=NOW - 30 * DAY,
    )


def stored_experiment(**changes: Any) -> Experiment:
    """A published experiment of ORGANIZATION that started yesterday and ends in two weeks.

    Its reset interval is 1w, not the default, so that "kept" and "reset to default" differ.
    """
    experiment = Experiment(
        id=UUID("e0000000-0000-4000-8000-000000000001"),
        organization=ORGANIZATION,
        is_draft=False,
        name="Hello experiment",
        goal=GOAL,
        starts_at=NOW - DAY,
        ends_at=NOW + 14 * DAY,
        group_reset_interval=ResetInterval.WEEK,
        rooms=(ROOM_A, ROOM_B),
        groups=(
            stored_group(0, "A", 90, GroupType.CONTROL, TREATMENT_A),
            stored_group(1, "B", 10, GroupType.USER_DEFINED, TREATMENT_B),
        ),
        created_at=NOW - 30 * DAY,
        created_by=USER,
        updated_at=NOW - 30 * DAY,
        updated_by=USER,
    )
    return with_buckets(replace(experiment, **changes))


def with_buckets(experiment: Experiment) -> Experiment:
    """The experiment with its groups' buckets as its create stored them, unless given."""
    if any(group.buckets for group in experiment.groups):
        return experiment
    ranges = initial_ranges([group.percentage for group in experiment.groups])
    groups = tuple(
        replace(group, buckets=buckets)
        for group, buckets in zip(experiment.groups, ranges, strict=True)
    )
    return replace(experiment, groups=groups)


def started_experiment(**changes: Any) -> Experiment:
    return stored_experiment(**changes)


def scheduled_experiment(**changes: Any) -> Experiment:
    """Published, starting tomorrow: nothing is read-only yet."""
    return stored_experiment(starts_at=NOW + DAY, **changes)


def draft_experiment(**changes: Any) -> Experiment:
    return stored_experiment(is_draft=True, **changes)


# --- Outcomes -------------------------------------------------------------------------------


def violations_of(action: Callable[..., object], *args: Any) -> set[tuple[str, str]]:
    """The (field, description) pairs of the InvalidArgument that `action(*args)` raises."""
    with pytest.raises(InvalidArgument) as caught:
        action(*args)
    return {(violation.field, violation.description) for violation in caught.value.violations}


def rejected_fields(action: Callable[..., object], *args: Any) -> set[str]:
    return {field for field, _ in violations_of(action, *args)}
