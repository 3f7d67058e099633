"""Read-only after the start, as one table (rules.READ_ONLY_AFTER_START and
GROUP_READ_ONLY_AFTER_START): each attribute it names is refused when a started experiment's
update changes it, kept when omitted, and accepted when sent back unchanged; a scheduled
experiment may change every one of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from server.domain import messages
from server.domain.rules import (
    GROUP_READ_ONLY_AFTER_START,
    MISSING,
    READ_ONLY_AFTER_START,
    ExperimentInput,
    GroupInput,
    validate_update,
)
from tests.unit.builders import (
    DAY,
    NOW,
    REFERENCES,
    ROOM_A,
    SECOND_GOAL,
    TREATMENT_B,
    input_from,
    scheduled_experiment,
    started_experiment,
    violations_of,
    with_group,
)

# A change of each read-only attribute, to an input as GETting the experiment gives it; the
# group ones change groups[0].
Change = Callable[[ExperimentInput], ExperimentInput]
CHANGES: dict[str, Change] = {
    "goal_id": lambda data: replace(data, goal_id=str(SECOND_GOAL.id)),
    "starts_at": lambda data: replace(data, starts_at=NOW - 2 * DAY),
    "group_reset_interval": lambda data: replace(data, group_reset_interval="1d"),
    "room_ids": lambda data: replace(data, room_ids=(str(ROOM_A.id),)),
    "groups": lambda data: replace(
        data, groups=(*data.groups, GroupInput("C", 0, "control", None))
    ),
    "group_type": lambda data: with_group(data, 0, group_type="target_random"),
    "treatment": lambda data: with_group(data, 0, treatment=TREATMENT_B),
}
OMITTED: dict[str, Change] = {
    "goal_id": lambda data: replace(data, goal_id=None),
    "starts_at": lambda data: replace(data, starts_at=None),
    "group_reset_interval": lambda data: replace(data, group_reset_interval=None),
    "room_ids": lambda data: replace(data, room_ids=()),
    "group_type": lambda data: with_group(data, 0, group_type=MISSING),
    "treatment": lambda data: with_group(data, 0, treatment=None),
}
FIELD = {name: name for name in READ_ONLY_AFTER_START}
FIELD.update({name: f"groups[0].{name}" for name in GROUP_READ_ONLY_AFTER_START})


def test_the_table_names_every_read_only_attribute() -> None:
    assert set(READ_ONLY_AFTER_START) == {
        "goal_id",
        "starts_at",
        "group_reset_interval",
        "room_ids",
        "groups",
    }
    assert set(GROUP_READ_ONLY_AFTER_START) == {"group_type", "treatment"}
    assert set(CHANGES) == set(FIELD)


@pytest.mark.parametrize("attribute", sorted(CHANGES))
def test_a_started_experiment_refuses_a_change_naming_the_attribute(attribute: str) -> None:
    current = started_experiment()
    data: ExperimentInput = CHANGES[attribute](input_from(current))

    (violation,) = violations_of(validate_update, current, data, REFERENCES, NOW)

    expected = (
        messages.GROUPS_FIXED_AFTER_START.format(count=2)
        if attribute == "groups"
        else messages.READ_ONLY_AFTER_START
    )
    assert violation == (FIELD[attribute], expected)


@pytest.mark.parametrize("attribute", sorted(OMITTED))
def test_a_started_experiment_keeps_an_omitted_read_only_attribute(attribute: str) -> None:
    current = started_experiment()
    data: ExperimentInput = OMITTED[attribute](input_from(current))

    state = validate_update(current, data, REFERENCES, NOW)

    assert state == validate_update(current, input_from(current), REFERENCES, NOW)


@pytest.mark.parametrize("attribute", sorted(CHANGES))
def test_a_scheduled_experiment_may_change_the_attribute(attribute: str) -> None:
    current = scheduled_experiment()
    data: ExperimentInput = CHANGES[attribute](input_from(current))

    validate_update(current, data, REFERENCES, NOW)
