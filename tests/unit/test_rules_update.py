"""The rules of updating an experiment: draft to published, ended, and read-only once started."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from server.domain import messages
from server.domain.model import Experiment, GroupState, GroupType, ResetInterval
from server.domain.rules import MISSING, ExperimentInput, validate_update
from tests.unit.builders import (
    DAY,
    GOAL,
    NOW,
    OTHER_ORGANIZATION_GOAL,
    OTHER_ORGANIZATION_ROOM,
    REFERENCES,
    ROOM_A,
    ROOM_B,
    SECOND,
    SECOND_GOAL,
    TREATMENT_A,
    TREATMENT_B,
    draft_experiment,
    group_input,
    input_from,
    published_input,
    scheduled_experiment,
    started_experiment,
    violations_of,
    with_group,
    without_read_only_attributes,
)


def update(current: Experiment, data: ExperimentInput) -> Any:
    return validate_update(current, data, REFERENCES, NOW)


def rejected(current: Experiment, data: ExperimentInput) -> set[tuple[str, str]]:
    return violations_of(validate_update, current, data, REFERENCES, NOW)


# --- Draft and published --------------------------------------------------------------------


def test_is_draft_is_required_on_update() -> None:
    current = scheduled_experiment()

    assert rejected(current, replace(input_from(current), is_draft=None)) == {
        ("is_draft", messages.REQUIRED)
    }


@pytest.mark.parametrize("current", [scheduled_experiment(), started_experiment()])
def test_published_experiment_cannot_return_to_draft(current: Experiment) -> None:
    assert rejected(current, replace(input_from(current), is_draft=True)) == {
        ("is_draft", messages.CANNOT_RETURN_TO_DRAFT)
    }


def test_draft_can_be_published() -> None:
    state = update(draft_experiment(name=None, goal=None, groups=()), published_input())

    assert state.is_draft is False


def test_draft_can_stay_a_draft_with_attributes_missing() -> None:
    state = update(draft_experiment(), replace(input_from(draft_experiment()), name=None))

    assert state.is_draft is True
    assert state.name is None


def test_publishing_a_draft_checks_what_publishing_requires() -> None:
    data = published_input(name=None, goal_id=None, groups=(group_input(None, 60, MISSING),))

    # The draft has no groups yet: the group is added, so its group_type is required as on create.
    assert rejected(draft_experiment(groups=()), data) == {
        ("name", messages.REQUIRED_WHEN_PUBLISHED),
        ("goal_id", messages.REQUIRED_WHEN_PUBLISHED),
        ("groups[0].name", messages.REQUIRED_WHEN_PUBLISHED),
        ("groups[0].group_type", messages.REQUIRED_WHEN_PUBLISHED),
        ("groups", messages.PERCENTAGES_TOTAL.format(total=60)),
    }


# --- Ended experiments and dates ------------------------------------------------------------


def test_experiment_whose_end_has_passed_can_no_longer_be_updated() -> None:
    current = started_experiment(ends_at=NOW - SECOND)

    assert rejected(current, input_from(current)) == {("ends_at", messages.EXPERIMENT_ENDED)}
    # Not even to extend it.
    assert rejected(current, replace(input_from(current), ends_at=NOW + DAY)) == {
        ("ends_at", messages.EXPERIMENT_ENDED)
    }


def test_experiment_ending_later_can_still_be_updated() -> None:
    current = started_experiment(ends_at=NOW + SECOND)

    assert update(current, replace(input_from(current), name="Renamed")).name == "Renamed"


def test_ends_at_before_starts_at_is_rejected_on_update() -> None:
    current = scheduled_experiment()
    data = replace(input_from(current), starts_at=NOW + 2 * DAY, ends_at=NOW + DAY)

    assert rejected(current, data) == {("ends_at", messages.ENDS_BEFORE_START)}


def test_ends_at_cannot_be_moved_before_the_start_of_a_started_experiment() -> None:
    current = started_experiment(starts_at=NOW - DAY)
    data = replace(without_read_only_attributes(input_from(current)), ends_at=NOW - 2 * DAY)

    assert rejected(current, data) == {("ends_at", messages.ENDS_BEFORE_START)}


def test_end_of_a_started_experiment_can_be_changed_or_removed() -> None:
    current = started_experiment()

    assert update(current, replace(input_from(current), ends_at=NOW + 60 * DAY)).ends_at == (
        NOW + 60 * DAY
    )
    assert update(current, replace(input_from(current), ends_at=None)).ends_at is None


# --- Read-only once started -----------------------------------------------------------------


def test_started_experiment_accepts_its_current_values_sent_back() -> None:
    current = started_experiment()

    state = update(current, input_from(current))

    assert state.goal_id == GOAL.id
    assert state.starts_at == current.starts_at
    assert state.room_ids == (ROOM_A.id, ROOM_B.id)
    assert state.group_reset_interval is ResetInterval.WEEK
    assert state.groups == (
        GroupState("A", 90, GroupType.CONTROL, TREATMENT_A),
        GroupState("B", 10, GroupType.USER_DEFINED, TREATMENT_B),
    )


def test_started_experiment_keeps_read_only_values_that_are_omitted() -> None:
    current = started_experiment()

    state = update(current, without_read_only_attributes(input_from(current)))

    assert state.goal_id == GOAL.id
    assert state.starts_at == current.starts_at
    assert state.room_ids == (ROOM_A.id, ROOM_B.id)
    assert state.group_reset_interval is ResetInterval.WEEK
    assert [(g.group_type, g.treatment) for g in state.groups] == [
        (GroupType.CONTROL, TREATMENT_A),
        (GroupType.USER_DEFINED, TREATMENT_B),
    ]


def test_started_experiment_accepts_its_rooms_in_another_order() -> None:
    current = started_experiment()
    data = replace(input_from(current), room_ids=(str(ROOM_B.id), str(ROOM_A.id)))

    assert set(update(current, data).room_ids) == {ROOM_A.id, ROOM_B.id}


def test_started_experiment_null_group_type_sent_back_as_null_is_accepted() -> None:
    control, user_defined = started_experiment().groups
    current = started_experiment(groups=(control, replace(user_defined, group_type=None)))

    assert update(current, input_from(current)).groups[1].group_type is None


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("goal_id", {"goal_id": str(SECOND_GOAL.id)}),
        ("starts_at", {"starts_at": NOW - DAY + SECOND}),
        ("room_ids", {"room_ids": (str(ROOM_A.id),)}),
        ("group_reset_interval", {"group_reset_interval": "1d"}),
    ],
)
def test_started_experiment_rejects_a_new_value_of_a_read_only_attribute(
    field: str, change: dict[str, Any]
) -> None:
    current = started_experiment(starts_at=NOW - DAY)

    assert rejected(current, replace(input_from(current), **change)) == {
        (field, messages.READ_ONLY_AFTER_START)
    }


@pytest.mark.parametrize(
    ("field", "index", "change"),
    [
        ("groups[0].group_type", 0, {"group_type": "target_random"}),
        ("groups[0].group_type", 0, {"group_type": None}),
        ("groups[1].treatment", 1, {"treatment": TREATMENT_A}),
        ("groups[1].treatment", 1, {"treatment": {**TREATMENT_B, "conditions": [{"a": 1}]}}),
    ],
)
def test_started_experiment_rejects_a_new_group_type_or_treatment_naming_the_group(
    field: str, index: int, change: dict[str, Any]
) -> None:
    current = started_experiment()

    assert rejected(current, with_group(input_from(current), index, **change)) == {
        (field, messages.READ_ONLY_AFTER_START)
    }


def test_started_experiment_lists_every_changed_read_only_attribute_at_once() -> None:
    current = started_experiment()
    data = published_input(
        goal_id=str(SECOND_GOAL.id),
        starts_at=NOW + DAY,
        ends_at=NOW + 30 * DAY,
        group_reset_interval="1d",
        room_ids=(str(ROOM_B.id),),
        groups=(
            group_input("A", 90, "target_algorithm", TREATMENT_A),
            group_input("B", 10, "user_defined", None),
        ),
    )

    # groups[1].treatment omitted keeps the current treatment: not a change.
    assert rejected(current, data) == {
        ("goal_id", messages.READ_ONLY_AFTER_START),
        ("starts_at", messages.READ_ONLY_AFTER_START),
        ("group_reset_interval", messages.READ_ONLY_AFTER_START),
        ("room_ids", messages.READ_ONLY_AFTER_START),
        ("groups[0].group_type", messages.READ_ONLY_AFTER_START),
    }


def test_started_experiment_groups_can_be_renamed_and_reweighted() -> None:
    current = started_experiment()
    data = with_group(input_from(current), 0, name="Control", percentage=50)
    data = with_group(data, 1, percentage=50)

    state = update(current, data)

    assert [(g.name, g.percentage, g.group_type) for g in state.groups] == [
        ("Control", 50, GroupType.CONTROL),
        ("B", 50, GroupType.USER_DEFINED),
    ]


def test_reweighted_groups_of_a_started_experiment_must_still_add_up_to_100() -> None:
    current = started_experiment()

    assert rejected(current, with_group(input_from(current), 1, percentage=20)) == {
        ("groups", messages.PERCENTAGES_TOTAL.format(total=110))
    }


def test_started_experiment_name_can_be_changed_but_not_removed() -> None:
    current = started_experiment()

    assert update(current, replace(input_from(current), name="New name")).name == "New name"
    assert rejected(current, replace(input_from(current), name=None)) == {
        ("name", messages.REQUIRED_WHEN_PUBLISHED)
    }


def test_started_experiment_groups_cannot_be_added() -> None:
    current = started_experiment()
    sent = input_from(current)
    data = replace(sent, groups=(*sent.groups, group_input("C", 0, "target_random")))

    assert rejected(current, data) == {
        ("groups", messages.GROUPS_FIXED_AFTER_START.format(count=2))
    }


def test_started_experiment_groups_cannot_be_removed() -> None:
    current = started_experiment()
    data = replace(input_from(current), groups=(group_input("A", 100, "control", TREATMENT_A),))

    assert rejected(current, data) == {
        ("groups", messages.GROUPS_FIXED_AFTER_START.format(count=2))
    }


# --- Not started yet: everything can change -------------------------------------------------


def changed_everything(current: Experiment) -> ExperimentInput:
    return replace(
        input_from(current),
        goal_id=str(SECOND_GOAL.id),
        starts_at=NOW + 3 * DAY,
        ends_at=NOW + 10 * DAY,
        group_reset_interval="1d",
        room_ids=(str(ROOM_B.id),),
        groups=(
            group_input("A", 40, "target_algorithm", TREATMENT_B),
            # An empty treatment replaces group B's (omitting it would keep it).
            group_input("B", 40, None, {}),
            group_input("C", 20, "target_random", TREATMENT_A),
        ),
    )


def test_scheduled_experiment_can_change_every_attribute() -> None:
    state = update(scheduled_experiment(), changed_everything(scheduled_experiment()))

    assert state.goal_id == SECOND_GOAL.id
    assert state.starts_at == NOW + 3 * DAY
    assert state.group_reset_interval is ResetInterval.DAY
    assert state.room_ids == (ROOM_B.id,)
    assert [(g.group_type, g.treatment) for g in state.groups] == [
        (GroupType.TARGET_ALGORITHM, TREATMENT_B),
        (None, {}),
        (GroupType.TARGET_RANDOM, TREATMENT_A),
    ]


def test_draft_whose_start_has_passed_is_not_started() -> None:
    current = draft_experiment(starts_at=NOW - DAY)

    state = update(current, changed_everything(current))

    assert state.goal_id == SECOND_GOAL.id
    assert len(state.groups) == 3


def test_experiment_becomes_read_only_the_moment_its_start_passes() -> None:
    current = started_experiment(starts_at=NOW + SECOND)
    data = replace(input_from(current), group_reset_interval="1d")

    assert validate_update(current, data, REFERENCES, NOW).group_reset_interval == "1d"
    assert violations_of(validate_update, current, data, REFERENCES, NOW + 2 * SECOND) == {
        ("group_reset_interval", messages.READ_ONLY_AFTER_START)
    }


def test_scheduled_experiment_omitting_the_reset_interval_goes_back_to_full() -> None:
    current = scheduled_experiment()

    state = update(current, replace(input_from(current), group_reset_interval=None))

    assert state.group_reset_interval is ResetInterval.FULL


def test_scheduled_experiment_still_checks_references() -> None:
    current = scheduled_experiment()
    data = replace(
        input_from(current),
        goal_id=str(OTHER_ORGANIZATION_GOAL.id),
        room_ids=(str(ROOM_A.id), str(OTHER_ORGANIZATION_ROOM.id)),
    )

    assert rejected(current, data) == {
        ("goal_id", messages.GOAL_NOT_IN_ORGANIZATION),
        ("room_ids[1]", messages.ROOM_NOT_IN_ORGANIZATION),
    }


# --- Optional group_type and treatment before the start (the spec's update table) ----------


def test_scheduled_experiment_group_omitting_group_type_and_treatment_keeps_both() -> None:
    current = scheduled_experiment()
    data = with_group(input_from(current), 1, group_type=MISSING, treatment=None)

    state = update(current, data)

    assert (state.groups[1].group_type, state.groups[1].treatment) == (
        GroupType.USER_DEFINED,
        TREATMENT_B,
    )


def test_draft_group_omitting_group_type_and_treatment_keeps_both() -> None:
    current = draft_experiment()
    data = with_group(input_from(current), 0, group_type=MISSING, treatment=None)

    state = update(current, data)

    assert (state.groups[0].group_type, state.groups[0].treatment) == (
        GroupType.CONTROL,
        TREATMENT_A,
    )


def test_scheduled_experiment_group_null_group_type_still_clears_it() -> None:
    current = scheduled_experiment()

    state = update(current, with_group(input_from(current), 1, group_type=None))

    assert state.groups[1].group_type is None


def test_group_added_by_an_update_needs_group_type_when_published() -> None:
    current = scheduled_experiment()
    data = input_from(current)
    data = replace(
        data,
        groups=(
            replace(data.groups[0], percentage=80),
            data.groups[1],
            group_input("C", 10, MISSING, None),
        ),
    )

    assert rejected(current, data) == {("groups[2].group_type", messages.REQUIRED_WHEN_PUBLISHED)}


def test_group_added_by_an_update_without_treatment_has_none() -> None:
    current = scheduled_experiment()
    data = input_from(current)
    data = replace(
        data,
        groups=(
            replace(data.groups[0], percentage=80),
            data.groups[1],
            group_input("C", 10, None, None),
        ),
    )

    assert update(current, data).groups[2].treatment is None


def test_started_experiment_group_omitting_treatment_keeps_it() -> None:
    current = started_experiment()

    state = update(current, with_group(input_from(current), 0, treatment=None))

    assert state.groups[0].treatment == TREATMENT_A
