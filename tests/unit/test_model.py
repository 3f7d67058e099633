"""The experiment a write stores, built before it is stored (domain.model): what reads will show."""

from __future__ import annotations

from uuid import uuid4

from server.domain.model import (
    ExperimentState,
    GroupState,
    GroupType,
    ResetInterval,
    User,
    changed_experiment,
    new_experiment,
)
from tests.unit.builders import (
    GOAL,
    NOW,
    ORGANIZATION,
    ROOM_A,
    ROOM_B,
    SECOND,
    TREATMENT_A,
    TREATMENT_B,
    USER,
    scheduled_experiment,
)

EDITOR = User(uuid4(), "Ed", "Itor", ORGANIZATION.id)
LATER = NOW + 5 * SECOND


def _state(*groups: GroupState) -> ExperimentState:
    return ExperimentState(
        is_draft=False,
        name="Changed",
        goal_id=GOAL.id,
        starts_at=NOW,
        ends_at=None,
        group_reset_interval=ResetInterval.DAY,
        room_ids=(ROOM_B.id, ROOM_A.id),
        groups=groups,
    )


A = GroupState("A", 90, GroupType.CONTROL, TREATMENT_A)
B = GroupState("B", 10, GroupType.USER_DEFINED, TREATMENT_B)


def test_a_new_experiment_is_version_1_with_groups_in_the_order_sent_all_at_the_same_time() -> None:
    experiment_id = uuid4()

    experiment = new_experiment(
        experiment_id, ORGANIZATION, _state(B, A), GOAL, (ROOM_B, ROOM_A), USER, NOW
    )

    assert (experiment.id, experiment.version, experiment.etag) == (experiment_id, 1, "1")
    assert [(g.order, g.name) for g in experiment.groups] == [(0, "B"), (1, "A")]
    assert len({g.id for g in experiment.groups}) == 2
    assert {g.created_at for g in experiment.groups} | {
        g.updated_at for g in experiment.groups
    } == {NOW}
    assert (experiment.created_at, experiment.updated_at) == (NOW, NOW)
    assert experiment.created_by == experiment.updated_by == USER
    assert (experiment.goal, experiment.rooms) == (GOAL, (ROOM_B, ROOM_A))
    assert (experiment.name, experiment.group_reset_interval) == ("Changed", ResetInterval.DAY)


def test_a_change_is_the_next_version_by_its_author_keeping_its_creation() -> None:
    current = scheduled_experiment(version=7)

    changed = changed_experiment(current, _state(A, B), GOAL, (ROOM_B, ROOM_A), EDITOR, LATER)

    assert (changed.version, changed.updated_at, changed.updated_by) == (8, LATER, EDITOR)
    assert (changed.created_at, changed.created_by) == (current.created_at, current.created_by)
    assert (changed.name, changed.rooms) == ("Changed", (ROOM_B, ROOM_A))


def test_only_groups_whose_values_change_get_a_new_update_time() -> None:
    current = scheduled_experiment()
    renamed_b = GroupState("B2", 10, GroupType.USER_DEFINED, TREATMENT_B)

    changed = changed_experiment(current, _state(A, renamed_b), GOAL, (), EDITOR, LATER)

    assert changed.groups[0] == current.groups[0]
    assert changed.groups[1].id == current.groups[1].id
    assert changed.groups[1].created_at == current.groups[1].created_at
    assert (changed.groups[1].name, changed.groups[1].updated_at) == ("B2", LATER)


def test_groups_are_added_past_the_current_count_and_dropped_past_the_new_one() -> None:
    current = scheduled_experiment()
    third = GroupState("C", 0, GroupType.TARGET_RANDOM, None)

    grown = changed_experiment(current, _state(A, B, third), GOAL, (), EDITOR, LATER)
    shrunk = changed_experiment(grown, _state(B), GOAL, (), EDITOR, LATER + SECOND)

    assert [g.id for g in grown.groups[:2]] == [g.id for g in current.groups]
    assert grown.groups[2].id not in {g.id for g in current.groups}
    assert (grown.groups[2].order, grown.groups[2].created_at) == (2, LATER)
    assert [(g.id, g.order, g.name) for g in shrunk.groups] == [(current.groups[0].id, 0, "B")]
