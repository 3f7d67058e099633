"""The rules of a new experiment: required attributes, allowed values, references, all at once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.domain import messages
from server.domain.model import GroupState, GroupType, ResetInterval
from server.domain.rules import MAX_GROUPS, MISSING, NAME_MAX_LENGTH, referenced_ids, validate_new
from tests.unit.builders import (
    DAY,
    GOAL,
    NOW,
    OTHER_ORGANIZATION_GOAL,
    OTHER_ORGANIZATION_ROOM,
    REFERENCES,
    ROOM_A,
    ROOM_B,
    TREATMENT_A,
    TREATMENT_B,
    draft_input,
    group_input,
    published_input,
    rejected_fields,
    violations_of,
    with_group,
)

# --- is_draft and what publishing requires --------------------------------------------------


def test_valid_published_experiment_is_stored_as_sent() -> None:
    state = validate_new(published_input(), REFERENCES)

    assert state.is_draft is False
    assert state.name == "Hello experiment"
    assert state.goal_id == GOAL.id
    assert state.starts_at == NOW + DAY
    assert state.ends_at == NOW + 15 * DAY
    assert state.group_reset_interval is ResetInterval.FULL
    assert state.room_ids == (ROOM_A.id,)
    assert state.groups == (
        GroupState("A", 90, GroupType.CONTROL, TREATMENT_A),
        GroupState("B", 10, GroupType.USER_DEFINED, TREATMENT_B),
    )


def test_is_draft_is_required() -> None:
    assert violations_of(validate_new, replace(published_input(), is_draft=None), REFERENCES) == {
        ("is_draft", messages.REQUIRED)
    }


def test_draft_may_leave_every_other_attribute_unset() -> None:
    state = validate_new(draft_input(), REFERENCES)

    assert state.is_draft is True
    assert (state.name, state.goal_id, state.starts_at, state.ends_at) == (None, None, None, None)
    assert state.room_ids == ()
    assert state.groups == ()


def test_draft_groups_may_leave_every_attribute_unset() -> None:
    state = validate_new(draft_input(groups=(group_input(None, None, MISSING),)), REFERENCES)

    assert state.groups == (GroupState(None, None, None, None),)


def test_published_experiment_requires_goal_name_and_start() -> None:
    data = published_input(goal_id=None, name=None, starts_at=None, ends_at=None)

    assert violations_of(validate_new, data, REFERENCES) == {
        ("goal_id", messages.REQUIRED_WHEN_PUBLISHED),
        ("name", messages.REQUIRED_WHEN_PUBLISHED),
        ("starts_at", messages.REQUIRED_WHEN_PUBLISHED),
    }


def test_published_experiment_requires_groups() -> None:
    assert violations_of(validate_new, published_input(groups=()), REFERENCES) == {
        ("groups", messages.PERCENTAGES_TOTAL.format(total=0))
    }


def test_published_group_requires_name_percentage_and_group_type() -> None:
    data = published_input(groups=(group_input("A", 100), group_input(None, None, MISSING)))

    assert violations_of(validate_new, data, REFERENCES) == {
        ("groups[1].name", messages.REQUIRED_WHEN_PUBLISHED),
        ("groups[1].percentage", messages.REQUIRED_WHEN_PUBLISHED),
        ("groups[1].group_type", messages.REQUIRED_WHEN_PUBLISHED),
    }


def test_published_group_type_may_be_sent_as_null() -> None:
    state = validate_new(with_group(published_input(), 1, group_type=None), REFERENCES)

    assert state.groups[1].group_type is None


def test_published_group_treatment_is_optional() -> None:
    state = validate_new(with_group(published_input(), 0, treatment=None), REFERENCES)

    assert state.groups[0].treatment is None


def test_published_experiment_without_rooms_runs_in_any_room() -> None:
    state = validate_new(published_input(room_ids=()), REFERENCES)

    assert state.room_ids == ()


def test_published_experiment_without_end_is_indefinite() -> None:
    state = validate_new(published_input(ends_at=None), REFERENCES)

    assert state.ends_at is None


def test_blank_name_is_rejected_when_published() -> None:
    data = with_group(published_input(name="   "), 0, name="")

    assert violations_of(validate_new, data, REFERENCES) == {
        ("name", messages.BLANK),
        ("groups[0].name", messages.BLANK),
    }


def test_name_may_have_255_characters_but_not_more() -> None:
    longest = "x" * NAME_MAX_LENGTH
    assert validate_new(published_input(name=longest), REFERENCES).name == longest

    data = with_group(published_input(name=longest + "x"), 1, name=longest + "x")
    too_long = messages.TOO_LONG.format(limit=NAME_MAX_LENGTH)
    assert violations_of(validate_new, data, REFERENCES) == {
        ("name", too_long),
        ("groups[1].name", too_long),
    }


# --- Group reset interval and group types ---------------------------------------------------


def test_group_reset_interval_defaults_to_full() -> None:
    published = validate_new(published_input(group_reset_interval=None), REFERENCES)
    draft = validate_new(draft_input(), REFERENCES)

    assert published.group_reset_interval is ResetInterval.FULL
    assert draft.group_reset_interval is ResetInterval.FULL


@pytest.mark.parametrize("interval", ["full", "1w", "1d"])
def test_every_documented_group_reset_interval_is_accepted(interval: str) -> None:
    state = validate_new(published_input(group_reset_interval=interval), REFERENCES)

    assert state.group_reset_interval == interval


@pytest.mark.parametrize("interval", ["2w", "weekly", "FULL", ""])
def test_unknown_group_reset_interval_is_rejected(interval: str) -> None:
    published = published_input(group_reset_interval=interval)
    draft = draft_input(group_reset_interval=interval)

    for data in (published, draft):
        assert violations_of(validate_new, data, REFERENCES) == {
            ("group_reset_interval", messages.RESET_INTERVAL_CHOICES)
        }


@pytest.mark.parametrize(
    "group_type", ["control", "user_defined", "target_algorithm", "target_random"]
)
def test_every_documented_group_type_is_accepted(group_type: str) -> None:
    state = validate_new(with_group(published_input(), 0, group_type=group_type), REFERENCES)

    assert state.groups[0].group_type == group_type


@pytest.mark.parametrize("group_type", ["Control", "random", "", "null"])
def test_unknown_group_type_is_rejected(group_type: str) -> None:
    published = with_group(published_input(), 1, group_type=group_type)
    draft = draft_input(groups=(group_input(group_type=group_type),))

    assert violations_of(validate_new, published, REFERENCES) == {
        ("groups[1].group_type", messages.GROUP_TYPE_CHOICES)
    }
    assert violations_of(validate_new, draft, REFERENCES) == {
        ("groups[0].group_type", messages.GROUP_TYPE_CHOICES)
    }


# --- Percentages ----------------------------------------------------------------------------


def test_percentages_of_0_and_100_are_accepted() -> None:
    data = published_input(groups=(group_input("A", 100), group_input("B", 0, "user_defined")))

    assert [g.percentage for g in validate_new(data, REFERENCES).groups] == [100, 0]


@pytest.mark.parametrize("percentage", [-1, 101, 1000])
def test_percentage_outside_0_to_100_is_rejected_naming_the_group(percentage: int) -> None:
    published = with_group(published_input(), 1, percentage=percentage)
    draft = draft_input(groups=(group_input(percentage=10), group_input(percentage=percentage)))

    # Reported on its own: no second complaint about the total.
    for data in (published, draft):
        assert violations_of(validate_new, data, REFERENCES) == {
            ("groups[1].percentage", messages.PERCENTAGE_RANGE)
        }


@pytest.mark.parametrize(("first", "second"), [(90, 20), (50, 49), (0, 0)])
def test_published_percentages_must_add_up_to_100(first: int, second: int) -> None:
    data = with_group(with_group(published_input(), 0, percentage=first), 1, percentage=second)

    assert violations_of(validate_new, data, REFERENCES) == {
        ("groups", messages.PERCENTAGES_TOTAL.format(total=first + second))
    }


def test_draft_percentages_need_not_add_up_to_100() -> None:
    data = draft_input(groups=(group_input(percentage=30), group_input(percentage=30)))

    assert [g.percentage for g in validate_new(data, REFERENCES).groups] == [30, 30]


def test_at_most_100_groups_are_allowed() -> None:
    groups = tuple(group_input(f"G{i}", 1) for i in range(MAX_GROUPS))
    assert len(validate_new(published_input(groups=groups), REFERENCES).groups) == MAX_GROUPS

    too_many = (*groups, group_input("one too many", 0))
    assert violations_of(validate_new, draft_input(groups=too_many), REFERENCES) == {
        ("groups", messages.TOO_MANY_GROUPS.format(limit=MAX_GROUPS))
    }


# --- References: goal and rooms of the experiment's organization ----------------------------


def test_goal_of_another_organization_is_rejected() -> None:
    for data in (
        published_input(goal_id=str(OTHER_ORGANIZATION_GOAL.id)),
        draft_input(goal_id=str(OTHER_ORGANIZATION_GOAL.id)),
    ):
        assert violations_of(validate_new, data, REFERENCES) == {
            ("goal_id", messages.GOAL_NOT_IN_ORGANIZATION)
        }


@pytest.mark.parametrize("goal_id", ["not-a-uuid", "", "0a534844-869a-11e9-8dcc"])
def test_malformed_goal_id_is_rejected(goal_id: str) -> None:
    assert violations_of(validate_new, published_input(goal_id=goal_id), REFERENCES) == {
        ("goal_id", messages.NOT_A_UUID)
    }


def test_goal_id_in_upper_case_is_the_same_goal() -> None:
    state = validate_new(published_input(goal_id=str(GOAL.id).upper()), REFERENCES)

    assert state.goal_id == GOAL.id


def test_room_of_another_organization_is_rejected_naming_its_index() -> None:
    data = published_input(room_ids=(str(ROOM_A.id), str(OTHER_ORGANIZATION_ROOM.id)))

    assert violations_of(validate_new, data, REFERENCES) == {
        ("room_ids[1]", messages.ROOM_NOT_IN_ORGANIZATION)
    }


def test_malformed_room_id_is_rejected_naming_its_index() -> None:
    data = draft_input(room_ids=("room-1", str(ROOM_B.id), "42"))

    assert violations_of(validate_new, data, REFERENCES) == {
        ("room_ids[0]", messages.NOT_A_UUID),
        ("room_ids[2]", messages.NOT_A_UUID),
    }


def test_duplicate_room_id_is_rejected_naming_the_repetition() -> None:
    data = published_input(room_ids=(str(ROOM_A.id), str(ROOM_B.id), str(ROOM_A.id).upper()))

    assert violations_of(validate_new, data, REFERENCES) == {
        ("room_ids[2]", messages.DUPLICATE_ROOM)
    }


def test_rooms_are_stored_in_the_order_sent() -> None:
    data = published_input(room_ids=(str(ROOM_B.id), str(ROOM_A.id)))

    assert validate_new(data, REFERENCES).room_ids == (ROOM_B.id, ROOM_A.id)


def test_only_well_formed_ids_are_looked_up_in_the_organization() -> None:
    data = published_input(room_ids=(str(ROOM_A.id), "room-1", str(ROOM_B.id)))

    assert referenced_ids(data) == ({GOAL.id}, {ROOM_A.id, ROOM_B.id})
    assert referenced_ids(draft_input(goal_id="goal-1")) == (set(), set())


# --- Dates ----------------------------------------------------------------------------------


def test_ends_at_before_starts_at_is_rejected() -> None:
    published = published_input(starts_at=NOW + DAY, ends_at=NOW)
    draft = draft_input(starts_at=NOW + DAY, ends_at=NOW)

    for data in (published, draft):
        assert violations_of(validate_new, data, REFERENCES) == {
            ("ends_at", messages.ENDS_BEFORE_START)
        }


def test_ends_at_equal_to_starts_at_is_accepted() -> None:
    state = validate_new(published_input(starts_at=NOW + DAY, ends_at=NOW + DAY), REFERENCES)

    assert state.ends_at == state.starts_at


# --- Every violation at once ----------------------------------------------------------------


def test_rejection_lists_every_offending_field_at_once() -> None:
    data = published_input(
        name=None,
        goal_id="nope",
        starts_at=NOW + DAY,
        ends_at=NOW,
        group_reset_interval="monthly",
        room_ids=(str(ROOM_A.id), str(OTHER_ORGANIZATION_ROOM.id), str(ROOM_A.id), "x"),
        groups=(
            group_input("A", 50, "control"),
            group_input("B", 101, "champion"),
            group_input(None, 10, MISSING),
        ),
    )

    assert violations_of(validate_new, data, REFERENCES) == {
        ("name", messages.REQUIRED_WHEN_PUBLISHED),
        ("goal_id", messages.NOT_A_UUID),
        ("ends_at", messages.ENDS_BEFORE_START),
        ("group_reset_interval", messages.RESET_INTERVAL_CHOICES),
        ("room_ids[1]", messages.ROOM_NOT_IN_ORGANIZATION),
        ("room_ids[2]", messages.DUPLICATE_ROOM),
        ("room_ids[3]", messages.NOT_A_UUID),
        ("groups[1].percentage", messages.PERCENTAGE_RANGE),
        ("groups[1].group_type", messages.GROUP_TYPE_CHOICES),
        ("groups[2].name", messages.REQUIRED_WHEN_PUBLISHED),
        ("groups[2].group_type", messages.REQUIRED_WHEN_PUBLISHED),
    }


def test_missing_is_draft_is_reported_with_the_other_violations() -> None:
    data = replace(draft_input(goal_id="nope", room_ids=("x",)), is_draft=None)

    assert rejected_fields(validate_new, data, REFERENCES) == {"is_draft", "goal_id", "room_ids[0]"}
