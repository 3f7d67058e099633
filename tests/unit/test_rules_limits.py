"""Input the databases cannot store, and every documented limit, checked at its edge."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from server.domain import limits, messages, rules
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.rules import UNREADABLE, References, validate_new, validate_update
from tests.unit.builders import (
    DAY,
    NOW,
    REFERENCES,
    ROOM_A,
    SECOND,
    draft_experiment,
    draft_input,
    group_input,
    input_from,
    published_input,
    started_experiment,
    violations_of,
    with_group,
)


def rejected(data: Any, refs: References = REFERENCES) -> set[tuple[str, str]]:
    return violations_of(validate_new, data, refs)


def nested(depth: int) -> dict[str, Any]:
    """A treatment of `depth` levels of objects and arrays, itself being level 1."""
    value: Any = {}
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value]
    return value if isinstance(value, dict) else {"a": value[0]}


# --- Text neither database can store --------------------------------------------------------


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "lone \ud800 surrogate"])
def test_name_with_nul_or_a_lone_surrogate_is_rejected(text: str) -> None:
    data = with_group(published_input(name=text), 1, name=text)

    assert rejected(data) == {
        ("name", messages.UNSTORABLE_TEXT),
        ("groups[1].name", messages.UNSTORABLE_TEXT),
    }


def test_draft_name_with_nul_is_rejected_too() -> None:
    assert rejected(draft_input(name="a\x00")) == {("name", messages.UNSTORABLE_TEXT)}


@pytest.mark.parametrize(
    "treatment",
    [
        {"a\x00": 1},
        {"name": "x\x00"},
        {"actions": [{"deep": ["\x00"]}]},
        {"s": "\udfff"},
    ],
)
def test_treatment_with_nul_in_a_key_or_string_is_rejected(treatment: dict[str, Any]) -> None:
    assert rejected(with_group(published_input(), 0, treatment=treatment)) == {
        ("groups[0].treatment", messages.TREATMENT_UNSTORABLE_TEXT)
    }


def test_other_control_characters_are_stored() -> None:
    data = with_group(published_input(name="tab\there"), 0, treatment={"s": "line\nbreak\x01"})

    assert validate_new(data, REFERENCES).name == "tab\there"


# --- Numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_treatment_with_a_non_finite_number_is_rejected(number: float) -> None:
    treatment = {"priority": 1.0, "nested": [{"weight": number}]}

    assert rejected(with_group(published_input(), 0, treatment=treatment)) == {
        ("groups[0].treatment", messages.TREATMENT_NOT_FINITE)
    }


def test_group_type_that_is_a_number_is_rejected_by_name() -> None:
    assert rejected(with_group(published_input(), 0, group_type="<number_value>")) == {
        ("groups[0].group_type", messages.GROUP_TYPE_CHOICES)
    }


# --- Treatment depth and size ---------------------------------------------------------------


def test_treatment_nested_to_the_limit_is_accepted() -> None:
    treatment = nested(limits.MAX_TREATMENT_DEPTH)

    state = validate_new(with_group(published_input(), 0, treatment=treatment), REFERENCES)

    assert state.groups[0].treatment == treatment


def test_treatment_nested_one_level_deeper_is_rejected() -> None:
    treatment = nested(limits.MAX_TREATMENT_DEPTH + 1)

    assert rejected(with_group(published_input(), 0, treatment=treatment)) == {
        (
            "groups[0].treatment",
            messages.TREATMENT_TOO_DEEP.format(limit=limits.MAX_TREATMENT_DEPTH),
        )
    }


def _treatment_of_bytes(size: int) -> dict[str, str]:
    # {"s":"..."}: 8 bytes around the text; "é" is 2 bytes in UTF-8.
    return {"s": "é" + "x" * (size - 10)}


def test_treatment_of_the_limit_in_bytes_is_accepted() -> None:
    treatment = _treatment_of_bytes(limits.MAX_TREATMENT_BYTES)

    state = validate_new(with_group(published_input(), 0, treatment=treatment), REFERENCES)

    assert state.groups[0].treatment == treatment


def test_treatment_one_byte_over_the_limit_is_rejected() -> None:
    treatment = _treatment_of_bytes(limits.MAX_TREATMENT_BYTES + 1)

    assert rejected(with_group(published_input(), 0, treatment=treatment)) == {
        (
            "groups[0].treatment",
            messages.TREATMENT_TOO_LARGE.format(limit=limits.MAX_TREATMENT_BYTES),
        )
    }


def _groups_totalling(size: int) -> tuple[Any, ...]:
    """Groups whose treatments make the experiment `size` bytes as measured."""
    groups = [group_input(f"G{i}", 10, "control", {"s": ""}) for i in range(10)]
    measured = _measure(published_input(groups=tuple(groups)))
    remaining = size - measured
    per_group, extra = divmod(remaining, 10)
    return tuple(
        replace(g, treatment={"s": "x" * (per_group + (extra if i == 0 else 0))})
        for i, g in enumerate(groups)
    )


def _measure(data: Any) -> int:
    return rules._size(validate_new(data, REFERENCES))


def test_experiment_of_the_limit_in_bytes_is_accepted() -> None:
    data = published_input(groups=_groups_totalling(limits.MAX_EXPERIMENT_BYTES))

    assert _measure(data) == limits.MAX_EXPERIMENT_BYTES


def test_experiment_one_byte_over_the_limit_is_rejected() -> None:
    data = published_input(groups=_groups_totalling(limits.MAX_EXPERIMENT_BYTES + 1))

    assert rejected(data) == {
        ("", messages.EXPERIMENT_TOO_LARGE.format(limit=limits.MAX_EXPERIMENT_BYTES))
    }


# --- Rooms ----------------------------------------------------------------------------------


def _rooms(count: int) -> tuple[tuple[str, ...], References]:
    rooms = {room.id: room for room in (replace(ROOM_A, id=UUID(int=n + 1)) for n in range(count))}
    return tuple(map(str, rooms)), replace(REFERENCES, rooms=rooms)


def test_the_maximum_number_of_rooms_is_accepted() -> None:
    room_ids, refs = _rooms(limits.MAX_ROOMS)

    state = validate_new(published_input(room_ids=room_ids), refs)

    assert len(state.room_ids) == limits.MAX_ROOMS


def test_one_room_more_than_the_maximum_is_one_violation() -> None:
    room_ids, refs = _rooms(limits.MAX_ROOMS + 1)

    assert rejected(published_input(room_ids=room_ids), refs) == {
        ("room_ids", messages.TOO_MANY_ROOMS.format(limit=limits.MAX_ROOMS))
    }


# --- Times ----------------------------------------------------------------------------------

EARLIEST = limits.EARLIEST_TIME
LATEST = limits.LATEST_TIME


@pytest.mark.parametrize(
    "starts_at", [EARLIEST, LATEST - timedelta(microseconds=1), datetime(2030, 1, 1, tzinfo=UTC)]
)
def test_times_in_the_supported_range_are_accepted(starts_at: datetime) -> None:
    data = draft_input(starts_at=starts_at, ends_at=starts_at)

    assert validate_new(data, REFERENCES).starts_at == starts_at


@pytest.mark.parametrize("time", [EARLIEST - timedelta(microseconds=1), LATEST])
def test_times_outside_the_supported_range_are_rejected(time: datetime) -> None:
    assert rejected(draft_input(starts_at=time, ends_at=time)) == {
        ("starts_at", messages.TIME_OUT_OF_RANGE),
        ("ends_at", messages.TIME_OUT_OF_RANGE),
    }


def test_unreadable_timestamps_are_rejected_by_name() -> None:
    assert rejected(published_input(starts_at=UNREADABLE, ends_at=UNREADABLE)) == {
        ("starts_at", messages.INVALID_TIMESTAMP),
        ("ends_at", messages.INVALID_TIMESTAMP),
    }


def test_started_experiment_with_an_unreadable_start_keeps_its_start() -> None:
    current = started_experiment()

    assert violations_of(
        validate_update,
        current,
        replace(input_from(current), starts_at=UNREADABLE),
        REFERENCES,
        NOW,
    ) == {("starts_at", messages.INVALID_TIMESTAMP)}


# --- A draft never ends; publishing with a past end -----------------------------------------


def test_draft_whose_end_has_passed_can_be_edited() -> None:
    current = draft_experiment(ends_at=NOW - DAY)

    state = validate_update(current, replace(input_from(current), name="Renamed"), REFERENCES, NOW)

    assert state.name == "Renamed"


def test_publishing_a_draft_whose_end_has_passed_is_rejected_on_ends_at() -> None:
    current = draft_experiment(starts_at=NOW - 2 * DAY, ends_at=NOW - DAY)
    data = replace(input_from(current), is_draft=False)

    assert violations_of(validate_update, current, data, REFERENCES, NOW) == {
        ("ends_at", messages.ENDS_IN_THE_PAST)
    }


def test_creating_a_published_experiment_that_has_already_ended_is_accepted() -> None:
    # As the spec's example payload does (2019 dates); it is then read-only for good.
    data = published_input(starts_at=NOW - DAY, ends_at=NOW - SECOND)

    assert validate_new(data, REFERENCES).ends_at == NOW - SECOND


def test_a_draft_may_be_created_with_an_end_in_the_past() -> None:
    data = draft_input(ends_at=NOW - DAY)

    assert validate_new(data, REFERENCES).ends_at == NOW - DAY


def test_published_experiment_still_running_may_move_its_end_to_now() -> None:
    current = started_experiment()

    state = validate_update(current, replace(input_from(current), ends_at=NOW), REFERENCES, NOW)

    assert state.ends_at == NOW


# --- How many violations one answer carries -------------------------------------------------


def test_violations_up_to_the_cap_are_all_reported() -> None:
    violations = [FieldViolation(f"f{n}", "bad") for n in range(limits.MAX_FIELD_VIOLATIONS)]

    assert InvalidArgument(violations).violations == tuple(violations)


def test_violations_beyond_the_cap_are_counted_in_one_more() -> None:
    violations = [FieldViolation(f"f{n}", "bad") for n in range(limits.MAX_FIELD_VIOLATIONS + 7)]

    reported = InvalidArgument(violations).violations

    assert reported[:-1] == tuple(violations[: limits.MAX_FIELD_VIOLATIONS])
    assert reported[-1] == FieldViolation("", messages.MORE_VIOLATIONS.format(count=7))


def test_violations_stop_at_the_byte_budget_whatever_their_count() -> None:
    long = "x" * 1000
    violations = [FieldViolation(f"f{n}", long) for n in range(10)]

    reported = InvalidArgument(violations).violations

    assert len(reported) == 5
    assert reported[-1] == FieldViolation("", messages.MORE_VIOLATIONS.format(count=6))
    assert sum(len(v.field) + len(v.description) for v in reported) < 4 * 1024 + 100


def test_a_hundred_bad_percentages_give_a_capped_answer() -> None:
    groups = tuple(group_input(f"G{i}", 101) for i in range(limits.MAX_GROUPS))

    reported = rejected(published_input(groups=groups))

    assert len(reported) <= limits.MAX_FIELD_VIOLATIONS + 1
    assert ("groups[0].percentage", messages.PERCENTAGE_RANGE) in reported


def test_a_treatment_refused_on_the_wire_is_named_as_too_large() -> None:
    # translate.experiment_input sends OVERSIZED for a treatment too large to convert.
    data = with_group(published_input(), 1, treatment=rules.OVERSIZED)

    assert rejected(data) == {
        (
            "groups[1].treatment",
            messages.TREATMENT_TOO_LARGE.format(limit=limits.MAX_TREATMENT_BYTES),
        )
    }
