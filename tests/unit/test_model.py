"""The experiment a write stores, built before it is stored (domain.model): what reads will show."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

from server.domain.model import (
    Experiment,
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


# -- buckets: the ranges each write stores (README, "Visitor assignment") ----------------------


def _split(*percentages: int | None, is_draft: bool = False) -> ExperimentState:
    groups = tuple(GroupState(f"G{i}", p, None, None) for i, p in enumerate(percentages))
    return replace(_state(*groups), is_draft=is_draft)


def _buckets(experiment: Experiment) -> list[list[tuple[int, int]]]:
    return [[(r.start, r.end) for r in group.buckets] for group in experiment.groups]


def _written(*splits: ExperimentState) -> Experiment:
    """The experiment after a create of the first state and an update to each of the others."""
    experiment = new_experiment(uuid4(), ORGANIZATION, splits[0], GOAL, (), USER, NOW)
    for state in splits[1:]:
        experiment = changed_experiment(experiment, state, GOAL, (), EDITOR, LATER)
    return experiment


def test_a_new_experiment_lays_its_buckets_out_in_group_order() -> None:
    assert _buckets(_written(_split(50, 30, 0, 20))) == [
        [(0, 5000)],
        [(5000, 8000)],
        [],
        [(8000, 10_000)],
    ]


def test_a_draft_whose_percentages_are_not_a_split_has_no_buckets() -> None:
    assert _buckets(_written(_split(60, None, is_draft=True))) == [[], []]


def test_a_drafts_buckets_are_laid_out_afresh_on_every_write() -> None:
    draft = _written(_split(50, 30, 20, is_draft=True), _split(40, 30, 30, is_draft=True))

    assert _buckets(draft) == [[(0, 4000)], [(4000, 7000)], [(7000, 10_000)]]


def test_publishing_a_draft_lays_its_buckets_out_afresh() -> None:
    published = _written(_split(50, 30, 20, is_draft=True), _split(40, 30, 30))

    assert _buckets(published) == [[(0, 4000)], [(4000, 7000)], [(7000, 10_000)]]


def test_a_published_experiments_buckets_move_minimally_when_its_percentages_change() -> None:
    # Before its start as after it: the state starts at NOW, the change comes LATER, and a
    # scheduled experiment (starting tomorrow) is treated the same.
    changed = _written(_split(50, 30, 20), _split(40, 30, 30))

    assert _buckets(changed) == [[(0, 4000)], [(5000, 8000)], [(4000, 5000), (8000, 10_000)]]


def test_a_published_experiment_not_yet_started_keeps_its_visitors_in_place_too() -> None:
    current = scheduled_experiment()  # 90/10, starting tomorrow
    changed = changed_experiment(current, _split(95, 5), GOAL, (), EDITOR, LATER)

    # Laid out afresh it would be [0, 9500) and [9500, 10000): group 1's visitors would move.
    assert _buckets(changed) == [[(0, 9000), (9500, 10_000)], [(9000, 9500)]]


def test_a_group_whose_buckets_alone_change_keeps_its_id_and_update_time() -> None:
    draft = _written(_split(50, 50, is_draft=True))
    changed = changed_experiment(draft, _split(30, 50, 20, is_draft=True), GOAL, (), EDITOR, LATER)

    assert _buckets(changed)[1] == [(3000, 8000)]
    assert (changed.groups[1].id, changed.groups[1].updated_at) == (
        draft.groups[1].id,
        draft.groups[1].updated_at,
    )


def test_a_write_that_keeps_the_percentages_keeps_every_bucket() -> None:
    changed = _written(_split(50, 30, 20), _split(40, 30, 30))
    renamed = changed_experiment(
        changed, replace(_split(40, 30, 30), name="Renamed"), GOAL, (), EDITOR, LATER
    )

    assert renamed.groups == changed.groups
