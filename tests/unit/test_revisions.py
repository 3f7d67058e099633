"""What a write did, as a revision: the field-level differences name the fields as field
violations do, a write that changes nothing is no revision, a delete keeps what was there."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from server.domain.model import Experiment, GroupType, changed_experiment
from server.domain.revisions import (
    Action,
    FieldChange,
    changes,
    creation,
    deletion,
    first_known,
    update,
)
from server.domain.rules import validate_update
from tests.unit.builders import (
    DAY,
    NOW,
    REFERENCES,
    ROOM_A,
    ROOM_B,
    SECOND_GOAL,
    TREATMENT_A,
    USER,
    VIEWER_USER,
    input_from,
    scheduled_experiment,
    stored_group,
    with_group,
)

BEFORE = scheduled_experiment(version=3)


def fields(before: Experiment | None, after: Experiment | None) -> list[str]:
    return [change.field for change in changes(before, after)]


def test_an_unchanged_experiment_has_no_changes_and_its_update_no_revision() -> None:
    assert changes(BEFORE, BEFORE) == ()
    # Even written again by someone else, later, as the next version: nothing a client wrote.
    rewritten = replace(BEFORE, updated_at=NOW, updated_by=VIEWER_USER, version=4)
    assert update(BEFORE, rewritten) is None


def test_a_changed_name_is_named_name_with_its_values_before_and_after() -> None:
    after = replace(BEFORE, name="Renamed", version=4)

    assert changes(BEFORE, after) == (FieldChange("name", "Hello experiment", "Renamed"),)


def test_a_changed_group_attribute_is_named_by_its_position() -> None:
    groups = (BEFORE.groups[0], replace(BEFORE.groups[1], percentage=20, name="B2"))
    after = replace(BEFORE, groups=groups)

    assert changes(BEFORE, after) == (
        FieldChange("groups[1].name", "B", "B2"),
        FieldChange("groups[1].percentage", 10, 20),
    )


def test_an_added_group_and_a_removed_one_are_named_groups_index() -> None:
    added = stored_group(2, "C", 0, None, None)
    grown = replace(BEFORE, groups=(*BEFORE.groups, added))
    shrunk = replace(BEFORE, groups=BEFORE.groups[:1])
    group = {"name": "C", "percentage": 0, "group_type": None, "treatment": None}

    assert changes(BEFORE, grown) == (FieldChange("groups[2]", None, group),)
    assert fields(BEFORE, shrunk) == ["groups[1]"]
    (removed,) = changes(BEFORE, shrunk)
    assert removed.after is None and removed.before["name"] == "B"


def test_rooms_goal_times_type_and_treatment_are_named_as_the_client_writes_them() -> None:
    after = replace(
        BEFORE,
        rooms=(ROOM_B, ROOM_A),
        goal=SECOND_GOAL,
        ends_at=None,
        groups=(
            replace(BEFORE.groups[0], group_type=None, treatment={"name": "X"}),
            BEFORE.groups[1],
        ),
    )

    found = {change.field: change for change in changes(BEFORE, after)}

    assert list(found) == [
        "goal_id",
        "ends_at",
        "room_ids",
        "groups[0].group_type",
        "groups[0].treatment",
    ]
    assert found["goal_id"].after == str(SECOND_GOAL.id)
    # Times as protobuf's JSON writes a Timestamp, in UTC; unset is None.
    assert found["ends_at"] == FieldChange("ends_at", "2030-06-15T12:00:00Z", None)
    assert found["room_ids"].before == [str(ROOM_A.id), str(ROOM_B.id)]
    assert found["room_ids"].after == [str(ROOM_B.id), str(ROOM_A.id)]
    assert found["groups[0].group_type"] == FieldChange("groups[0].group_type", "control", None)
    assert found["groups[0].treatment"].before == TREATMENT_A


def test_fractions_of_a_second_are_written_with_3_or_6_digits() -> None:
    millis = replace(BEFORE, starts_at=NOW + DAY + 0.123 * (DAY / 86400))
    micros = replace(BEFORE, starts_at=(NOW + DAY).replace(microsecond=123456))

    assert changes(BEFORE, millis)[0].after == "2030-06-02T12:00:00.123Z"
    assert changes(BEFORE, micros)[0].after == "2030-06-02T12:00:00.123456Z"


def test_an_update_from_the_rules_records_who_when_the_next_number_and_the_changes() -> None:
    data = with_group(input_from(BEFORE), 1, percentage=5)
    data = with_group(data, 0, percentage=95)
    state = validate_update(BEFORE, data, REFERENCES, NOW)
    after = changed_experiment(BEFORE, state, BEFORE.goal, BEFORE.rooms, VIEWER_USER, NOW)

    revision = update(BEFORE, after)

    assert revision is not None
    assert (revision.action, revision.number, revision.author, revision.made_at) == (
        Action.UPDATED,
        4,
        VIEWER_USER,
        NOW,
    )
    assert revision.experiment == after
    # The buckets moved with the percentages: the experiment shows them, `changes` lists only
    # what the client wrote.
    assert after.groups[1].buckets != BEFORE.groups[1].buckets
    assert [c.field for c in revision.changes] == ["groups[0].percentage", "groups[1].percentage"]


def test_a_create_lists_every_attribute_it_set_and_a_delete_every_one_it_had() -> None:
    experiment = replace(BEFORE, version=1, ends_at=None)

    created = creation(experiment)
    deleted = deletion(replace(experiment, version=7), VIEWER_USER, NOW)

    set_attributes = [
        "is_draft",
        "name",
        "goal_id",
        "starts_at",
        "group_reset_interval",
        "room_ids",
        "groups[0]",
        "groups[1]",
    ]
    assert [c.field for c in created.changes] == set_attributes
    assert all(c.before is None for c in created.changes)
    assert (created.action, created.number, created.author) == (Action.CREATED, 1, USER)
    assert [c.field for c in deleted.changes] == set_attributes
    assert all(c.after is None for c in deleted.changes)
    # A delete is numbered after the last version, by who deleted, with the experiment as it was.
    assert (deleted.action, deleted.number, deleted.author) == (Action.DELETED, 8, VIEWER_USER)
    assert deleted.experiment.version == 7


def test_a_group_type_left_unset_is_null_not_missing() -> None:
    draft = replace(BEFORE, groups=(stored_group(0, "A", 100, None, None),))
    typed = replace(draft, groups=(stored_group(0, "A", 100, GroupType.CONTROL, None),))

    assert changes(draft, typed) == (FieldChange("groups[0].group_type", None, "control"),)


def test_an_experiment_older_than_revisions_is_first_known_as_created_as_it_is_now() -> None:
    experiment = replace(BEFORE, updated_by=VIEWER_USER, updated_at=NOW, version=5)

    revision = first_known(experiment)

    assert (revision.action, revision.number, revision.author, revision.made_at) == (
        Action.CREATED,
        5,
        VIEWER_USER,
        NOW,
    )
    assert revision.experiment.id == UUID("e0000000-0000-4000-8000-000000000001")
