"""Visitor assignment (domain.assignment): buckets, periods, ranges, when an experiment applies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import NamedTuple
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import limits, messages
from server.domain.assignment import (
    BUCKETS,
    BUCKETS_PER_POINT,
    Assignment,
    AssignmentRequest,
    BucketRange,
    GroupRanges,
    applies,
    assign,
    assign_all,
    bucket,
    checked_request,
    checked_visitor_id,
    group_index,
    group_table,
    initial_ranges,
    micros,
    moment_of,
    period_of,
    rebalanced_ranges,
    running_experiment,
    valid_until,
)
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.model import ResetInterval

EXPERIMENT = UUID("0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978")
START = datetime(2030, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
ROOM = UUID("1a000000-0000-4000-8000-00000000000a")
OTHER_ROOM = UUID("1b000000-0000-4000-8000-00000000000b")


# -- bucket ------------------------------------------------------------------------------------


def test_bucket_is_the_first_8_bytes_of_sha256_big_endian_modulo_10000() -> None:
    # printf '%s' '0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978:0:visitor-1' | sha256sum
    # -> 1cdca713e9635bfb..., and 0x1cdca713e9635bfb = 2079720831900146683.
    assert bucket(EXPERIMENT, 0, "visitor-1") == 2079720831900146683 % 10_000 == 6683


def test_bucket_hashes_the_visitor_id_as_utf_8() -> None:
    # printf '%s' '0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978:3:Zoë 🙂' | sha256sum -> 3073628943ef3ee1...
    assert bucket(EXPERIMENT, 3, "Zoë 🙂") == 0x3073628943EF3EE1 % 10_000 == 641


def test_the_experiment_id_is_hashed_lowercase_whatever_way_it_was_written() -> None:
    upper = UUID("0B9E7F3C-5A4D-4C2B-9F1E-2D3C4B5A6978")
    assert bucket(upper, 0, "visitor-1") == 6683


def test_the_visitor_id_is_hashed_without_unicode_normalization() -> None:
    composed, decomposed = "Zo\u00eb", "Zoe\u0308"  # the same text to a reader, not to the hash
    assert bucket(EXPERIMENT, 0, composed) != bucket(EXPERIMENT, 0, decomposed)


def test_each_period_draws_again() -> None:
    # The same sha256sum, over ...:1:visitor-1 and ...:2:visitor-1.
    assert [bucket(EXPERIMENT, period, "visitor-1") for period in range(3)] == [6683, 3177, 8876]


def test_a_period_is_never_negative() -> None:
    with pytest.raises(ValueError, match="never negative"):
        bucket(EXPERIMENT, -1, "visitor-1")


# -- periods ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "elapsed", "period"),
    [
        (ResetInterval.FULL, timedelta(0), 0),
        (ResetInterval.FULL, 10_000 * DAY, 0),
        (ResetInterval.DAY, timedelta(0), 0),
        (ResetInterval.DAY, DAY - MICROSECOND, 0),
        (ResetInterval.DAY, DAY, 1),
        (ResetInterval.DAY, 365 * DAY - MICROSECOND, 364),
        (ResetInterval.DAY, 365 * DAY, 365),
        (ResetInterval.WEEK, WEEK - MICROSECOND, 0),
        (ResetInterval.WEEK, WEEK, 1),
        (ResetInterval.WEEK, 52 * WEEK + 6 * DAY, 52),
    ],
)
def test_periods_are_whole_days_or_weeks_since_the_start(
    interval: ResetInterval, elapsed: timedelta, period: int
) -> None:
    assert period_of(interval, START, START + elapsed) == period


def test_periods_are_exact_to_the_microsecond_across_millennia() -> None:
    # 2,914,871 days from 1970 to 9950: as float seconds, 1 µs would be lost to rounding.
    start = datetime(1970, 1, 1, tzinfo=UTC)
    boundary = start + 2_914_871 * DAY
    assert period_of(ResetInterval.DAY, start, boundary - MICROSECOND) == 2_914_870
    assert period_of(ResetInterval.DAY, start, boundary) == 2_914_871


def test_periods_count_elapsed_time_whatever_the_offsets_of_the_times() -> None:
    paris_summer = timezone(timedelta(hours=2))
    at = (START + DAY).astimezone(paris_summer)
    assert period_of(ResetInterval.DAY, START, at) == 1
    assert period_of(ResetInterval.DAY, START, at - MICROSECOND) == 0


@pytest.mark.parametrize("interval", list(ResetInterval))
def test_there_is_no_period_before_the_start(interval: ResetInterval) -> None:
    with pytest.raises(ValueError, match="before the experiment starts"):
        period_of(interval, START, START - MICROSECOND)


def test_times_without_a_time_zone_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        period_of(ResetInterval.DAY, START, datetime(2030, 6, 2))


# -- valid_until --------------------------------------------------------------------------------


def test_an_assignment_holds_until_the_next_period_starts() -> None:
    assert valid_until(ResetInterval.DAY, START, None, START) == START + DAY
    assert valid_until(ResetInterval.DAY, START, None, START + DAY - MICROSECOND) == START + DAY
    assert valid_until(ResetInterval.DAY, START, None, START + DAY) == START + 2 * DAY
    assert valid_until(ResetInterval.WEEK, START, None, START + 8 * DAY) == START + 2 * WEEK


def test_an_assignment_holds_until_the_end_when_that_comes_first() -> None:
    ends_at = START + DAY + timedelta(hours=3)
    assert valid_until(ResetInterval.DAY, START, ends_at, START + DAY) == ends_at
    assert valid_until(ResetInterval.DAY, START, ends_at, START) == START + DAY
    assert valid_until(ResetInterval.DAY, START, START + DAY, START) == START + DAY


def test_a_full_experiment_holds_until_its_end_or_for_ever() -> None:
    assert valid_until(ResetInterval.FULL, START, None, START + 400 * DAY) is None
    assert valid_until(ResetInterval.FULL, START, START + WEEK, START) == START + WEEK


def test_valid_until_is_in_utc() -> None:
    start = START.astimezone(timezone(timedelta(hours=-5)))
    until = valid_until(ResetInterval.DAY, start, None, start)
    assert until is not None and until.tzinfo is UTC and until == START + DAY


def test_valid_until_is_only_for_a_running_experiment() -> None:
    with pytest.raises(ValueError, match="has ended"):
        valid_until(ResetInterval.DAY, START, START + DAY, START + DAY)
    with pytest.raises(ValueError, match="before the experiment starts"):
        valid_until(ResetInterval.DAY, START, None, START - MICROSECOND)


# -- ranges -------------------------------------------------------------------------------------


def test_a_new_split_is_consecutive_ranges_in_group_order() -> None:
    assert initial_ranges([50, 30, 20]) == (
        (BucketRange(0, 5000),),
        (BucketRange(5000, 8000),),
        (BucketRange(8000, 10_000),),
    )


def test_a_0_percent_group_holds_no_bucket() -> None:
    assert initial_ranges([0, 100, 0]) == ((), (BucketRange(0, 10_000),), ())


def test_100_groups_of_1_percent_each_hold_100_buckets() -> None:
    ranges = initial_ranges([1] * 100)
    assert list(ranges) == [(BucketRange(100 * i, 100 * i + 100),) for i in range(100)]


@pytest.mark.parametrize(
    "percentages", [[], [50, 40], [50, None], [60, 60, -20], [101, -1], [True, 99]]
)
def test_groups_that_are_not_a_split_hold_no_bucket(percentages: list[int | None]) -> None:
    # A draft's groups: nobody is assigned until the percentages add up to 100.
    assert initial_ranges(percentages) == tuple(() for _ in percentages)
    assert rebalanced_ranges(initial_ranges([50, 50]), percentages) == initial_ranges(percentages)


def test_a_change_moves_only_the_buckets_that_must_move() -> None:
    # Recomputed cumulative ranges (0-4000, 4000-7000, 7000-10000) would move 20% of the
    # visitors; the shrinking group frees its top 1000 buckets and only they move.
    assert rebalanced_ranges(initial_ranges([50, 30, 20]), [40, 30, 30]) == (
        (BucketRange(0, 4000),),
        (BucketRange(5000, 8000),),
        (BucketRange(4000, 5000), BucketRange(8000, 10_000)),
    )


def test_freed_buckets_go_in_ascending_order_to_the_growing_groups_in_group_order() -> None:
    before = initial_ranges([40, 40, 10, 10])
    assert rebalanced_ranges(before, [10, 20, 30, 40]) == (
        (BucketRange(0, 1000),),
        (BucketRange(4000, 6000),),
        (BucketRange(1000, 3000), BucketRange(8000, 9000)),
        (BucketRange(3000, 4000), BucketRange(6000, 8000), BucketRange(9000, 10_000)),
    )


def test_added_groups_take_and_removed_groups_give_up_all() -> None:
    before = initial_ranges([50, 25, 25])
    assert rebalanced_ranges(before, [50, 50]) == (
        (BucketRange(0, 5000),),
        (BucketRange(5000, 10_000),),
    )
    assert rebalanced_ranges(before, [50, 25, 15, 10]) == (
        (BucketRange(0, 5000),),
        (BucketRange(5000, 7500),),
        (BucketRange(7500, 9000),),
        (BucketRange(9000, 10_000),),
    )


def test_ranges_of_a_draft_are_simply_computed_anew() -> None:
    assert rebalanced_ranges(((), ()), [30, 70]) == initial_ranges([30, 70])


def test_old_ranges_that_do_not_tile_the_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="gap or overlap at 5000"):
        rebalanced_ranges(((BucketRange(0, 5000),), (BucketRange(6000, 10_000),)), [50, 50])
    with pytest.raises(ValueError, match="stop at 9000"):
        rebalanced_ranges(((BucketRange(0, 5000),), (BucketRange(5000, 9000),)), [50, 50])


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 5), (6, 5), (0, 10_001)])
def test_a_range_is_a_non_empty_run_of_buckets(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="not a non-empty range"):
        BucketRange(start, end)


def _splits(max_groups: int) -> st.SearchStrategy[list[int]]:
    """Whole percentages adding up to 100 over 1 to max_groups groups, zeros included."""
    cuts = st.lists(st.integers(0, 100), min_size=0, max_size=max_groups - 1).map(sorted)
    return cuts.map(lambda c: [b - a for a, b in zip([0, *c], [*c, 100], strict=True)])


def _owners(ranges: GroupRanges) -> list[int]:
    """Each bucket's group, asserting that every bucket has exactly one."""
    owners = [-1] * BUCKETS
    for index, group in enumerate(ranges):
        for r in group:
            for b in range(r.start, r.end):
                assert owners[b] == -1, f"bucket {b} is in groups {owners[b]} and {index}"
                owners[b] = index
    assert -1 not in owners, f"bucket {owners.index(-1)} is in no group"
    return owners


def _range_count(ranges: GroupRanges) -> int:
    return sum(len(group) for group in ranges)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(st.one_of(_splits(6), _splits(100)), min_size=2, max_size=8))
def test_percentage_changes_move_exactly_half_the_sum_of_the_changes(
    history: list[list[int]],
) -> None:
    percentages = history[0]
    ranges = initial_ranges(percentages)
    owners = _owners(ranges)
    for new in history[1:]:
        count = max(len(percentages), len(new))
        old_p = percentages + [0] * (count - len(percentages))
        new_p = new + [0] * (count - len(new))
        changed = rebalanced_ranges(ranges, new)
        new_owners = _owners(changed)

        moved = sum(a != b for a, b in zip(owners, new_owners, strict=True))
        changes = sum(abs(a - b) for a, b in zip(old_p, new_p, strict=True))
        assert moved * 2 == changes * BUCKETS_PER_POINT
        assert [sum(len(r) for r in group) for group in changed] == [
            p * BUCKETS_PER_POINT for p in new
        ]
        for i in range(min(len(percentages), len(new))):
            before = {b for r in ranges[i] for b in range(r.start, r.end)}
            after = {b for r in changed[i] for b in range(r.start, r.end)}
            if new[i] == percentages[i]:
                assert changed[i] == ranges[i], f"group {i} is unchanged but its ranges moved"
            assert after <= before if new[i] < percentages[i] else before <= after
        for group in changed:
            assert list(group) == sorted(group)
            assert all(a.end < b.start for a, b in pairwise(group)), "adjacent, not merged"
            assert all(r.start % BUCKETS_PER_POINT == r.end % BUCKETS_PER_POINT == 0 for r in group)
        assert all(len(group) <= p for group, p in zip(changed, new, strict=True))
        shrinking = sum(a > b for a, b in zip(old_p, new_p, strict=True))
        growing = sum(a < b for a, b in zip(old_p, new_p, strict=True))
        assert _range_count(changed) <= _range_count(ranges) + max(0, shrinking + growing - 1)

        percentages, ranges, owners = new, changed, new_owners


def _ranges(*groups: Sequence[tuple[int, int]]) -> GroupRanges:
    return tuple(tuple(BucketRange(*r) for r in group) for group in groups)


# -- group lookup ------------------------------------------------------------------------------


def test_the_group_is_the_one_whose_ranges_hold_the_bucket() -> None:
    ranges = _ranges([(0, 1000), (6000, 8000)], [], [(1000, 6000), (8000, 10_000)])
    assert [group_index(b, ranges) for b in (0, 999, 1000, 5999, 6000, 7999, 8000, 9999)] == [
        0,
        0,
        2,
        2,
        0,
        0,
        2,
        2,
    ]


def test_no_group_holds_a_bucket_of_a_draft() -> None:
    with pytest.raises(ValueError, match="no group holds bucket 0"):
        group_index(0, initial_ranges([50, None]))
    assert set(group_table(initial_ranges([50, None]))) == {None}


def test_the_group_table_is_the_group_of_each_bucket() -> None:
    ranges = rebalanced_ranges(initial_ranges([40, 40, 10, 10]), [10, 20, 30, 40])
    assert group_table(ranges) == tuple(group_index(b, ranges) for b in range(BUCKETS))


# -- when an experiment applies -----------------------------------------------------------------


def _applies(
    is_draft: bool = False,
    starts_at: datetime | None = START,
    ends_at: datetime | None = None,
    room_ids: tuple[UUID, ...] = (),
    room_id: UUID | None = ROOM,
    at: datetime = START,
) -> bool:
    return applies(
        is_draft=is_draft,
        starts_at=starts_at,
        ends_at=ends_at,
        room_ids=room_ids,
        room_id=room_id,
        at=at,
    )


def test_a_published_experiment_applies_from_its_start_to_just_before_its_end() -> None:
    assert not _applies(at=START - MICROSECOND)
    assert _applies(at=START)
    assert _applies(ends_at=START + DAY, at=START + DAY - MICROSECOND)
    assert not _applies(ends_at=START + DAY, at=START + DAY)
    assert _applies(at=START + 10_000 * DAY)


def test_a_draft_never_applies() -> None:
    assert not _applies(is_draft=True)
    assert not _applies(is_draft=True, starts_at=None)


def test_an_experiment_applies_in_its_rooms_or_everywhere_when_it_names_none() -> None:
    assert _applies(room_ids=(), room_id=ROOM)
    assert _applies(room_ids=(OTHER_ROOM, ROOM), room_id=ROOM)
    assert not _applies(room_ids=(OTHER_ROOM,), room_id=ROOM)


def test_without_a_room_only_experiments_of_every_room_apply() -> None:
    assert _applies(room_ids=(), room_id=None)
    assert not _applies(room_ids=(ROOM,), room_id=None)


# -- assign -------------------------------------------------------------------------------------


def test_assign_names_the_group_bucket_period_and_validity() -> None:
    ranges = _ranges([(0, 3177)], [(3177, 3178)], [(3178, 10_000)])
    at = START + DAY + timedelta(hours=1)
    assert assign(
        experiment_id=EXPERIMENT,
        interval=ResetInterval.DAY,
        starts_at=START,
        ends_at=None,
        ranges=ranges,
        visitor_id="visitor-1",
        at=at,
    ) == Assignment(group_index=1, bucket=3177, period=1, valid_until=START + 2 * DAY)


# -- visitor ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("visitor_id", ["v", "x" * 255, "🙂" * 255, "e\u0301" * 127])
def test_visitor_ids_of_1_to_255_characters_are_taken_as_given(visitor_id: str) -> None:
    assert checked_visitor_id(visitor_id) is visitor_id


@pytest.mark.parametrize(
    ("visitor_id", "description"),
    [
        ("", messages.REQUIRED),
        ("x" * 256, messages.TOO_LONG.format(limit=limits.VISITOR_ID_MAX_LENGTH)),
        ("🙂" * 256, messages.TOO_LONG.format(limit=limits.VISITOR_ID_MAX_LENGTH)),
        ("half \ud83d", messages.UNPAIRED_SURROGATE),
    ],
)
def test_other_visitor_ids_are_refused_naming_the_field(visitor_id: str, description: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        checked_visitor_id(visitor_id)
    assert refused.value.violations == (FieldViolation("visitor_id", description),)


# -- many experiments at once (the server's hot path) ------------------------------------------

_TIMES = st.integers(micros(START - 3 * WEEK), micros(START) + 10**13)


class _Spec(NamedTuple):
    """An experiment as assign_all takes it, before it is made one."""

    experiment_id: UUID
    interval: ResetInterval
    starts_at: int
    length: int | None  # microseconds to its end; None: no end
    room_ids: tuple[UUID, ...]
    percentages: list[int]

    @property
    def times(self) -> tuple[datetime, datetime | None]:
        starts_at = moment_of(self.starts_at)
        return starts_at, None if self.length is None else starts_at + self.length * MICROSECOND


_SPECS = st.builds(
    _Spec,
    st.uuids(),
    st.sampled_from(list(ResetInterval)),
    _TIMES,
    st.one_of(st.none(), st.integers(1, 10**12)),
    st.sampled_from([(), (ROOM,), (OTHER_ROOM,), (ROOM, OTHER_ROOM)]),
    _splits(5),
)


@settings(derandomize=True, max_examples=500, deadline=None)
@given(
    st.lists(_SPECS, min_size=1, max_size=6),
    _TIMES,
    st.sampled_from([None, ROOM, OTHER_ROOM]),
    st.text(min_size=1, max_size=20),
)
def test_assigning_many_at_once_is_applies_and_assign_for_each(
    specs: list[_Spec], at: int, room: UUID | None, visitor_id: str
) -> None:
    experiments = []
    expected = []
    for spec in specs:
        starts_at, ends_at = spec.times
        ranges = initial_ranges(spec.percentages)
        experiment = running_experiment(
            experiment_id=spec.experiment_id,
            interval=spec.interval,
            starts_at=starts_at,
            ends_at=ends_at,
            room_ids=spec.room_ids,
            ranges=ranges,
            groups=[f"group {i}" for i in range(len(ranges))],
        )
        experiments.append(experiment)
        moment = moment_of(at)
        if applies(
            is_draft=False,
            starts_at=starts_at,
            ends_at=ends_at,
            room_ids=spec.room_ids,
            room_id=room,
            at=moment,
        ):
            one = assign(
                experiment_id=spec.experiment_id,
                interval=spec.interval,
                starts_at=starts_at,
                ends_at=ends_at,
                ranges=ranges,
                visitor_id=visitor_id,
                at=moment,
            )
            until = None if one.valid_until is None else micros(one.valid_until)
            expected.append((experiment, f"group {one.group_index}", one.bucket, one.period, until))

    assert assign_all(experiments, visitor_id.encode(), room, at) == expected


def test_an_experiment_to_assign_needs_ranges_that_tile_the_buckets_at_whole_points() -> None:
    def running(*ranges: Sequence[tuple[int, int]]) -> object:
        return running_experiment(
            experiment_id=EXPERIMENT,
            interval=ResetInterval.FULL,
            starts_at=START,
            ends_at=None,
            room_ids=(),
            ranges=_ranges(*ranges),
            groups=["a"] * len(ranges),
        )

    assert running([(0, 5000)], [(5000, 10_000)])
    with pytest.raises(ValueError, match="tile"):
        running([(0, 5000)], [])  # a draft's, or a corrupt one
    with pytest.raises(ValueError, match="whole percentage points"):
        running([(0, 5050)], [(5050, 10_000)])


def test_times_are_whole_microseconds_since_the_epoch() -> None:
    assert micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    assert moment_of(micros(START)) == START


# -- the request ---------------------------------------------------------------------------------


def test_a_request_is_the_visitor_ids_utf_8_a_room_or_none_and_a_time_or_now() -> None:
    assert checked_request("Zoë", str(ROOM), (1, 500_999)) == AssignmentRequest(
        "Zoë".encode(), ROOM, 1_000_500
    )
    assert checked_request("v", "", None) == AssignmentRequest(b"v", None, None)


def test_every_offending_field_of_a_request_is_named_at_once() -> None:
    with pytest.raises(InvalidArgument) as refused:
        checked_request("", "room 1", (0, -1))
    assert refused.value.violations == (
        FieldViolation("visitor_id", messages.REQUIRED),
        FieldViolation("room_id", messages.NOT_A_UUID),
        FieldViolation("at", messages.INVALID_TIMESTAMP),
    )


@pytest.mark.parametrize(
    ("seconds", "refused"),
    [(-1, True), (0, False), (253370764799, False), (253370764800, True)],
)
def test_times_of_a_request_lie_within_the_apis_times(seconds: int, refused: bool) -> None:
    # 253370764800 is 9999-01-01T00:00:00Z, the first time refused.
    if refused:
        with pytest.raises(InvalidArgument) as caught:
            checked_request("v", "", (seconds, 0))
        assert caught.value.violations == (FieldViolation("at", messages.TIME_OUT_OF_RANGE),)
    else:
        assert checked_request("v", "", (seconds, 0)).at == seconds * 1_000_000


@pytest.mark.parametrize("interval", list(ResetInterval))
def test_assigning_many_at_once_keeps_the_boundaries_of_time(interval: ResetInterval) -> None:
    ends_at = START + 3 * WEEK + MICROSECOND
    experiment = running_experiment(
        experiment_id=EXPERIMENT,
        interval=interval,
        starts_at=START,
        ends_at=ends_at,
        room_ids=(),
        ranges=initial_ranges([50, 50]),
        groups=["A", "B"],
    )
    for at in (START - MICROSECOND, START, START + WEEK, ends_at - MICROSECOND, ends_at):
        found = assign_all([experiment], b"visitor-1", None, micros(at))
        if not START <= at < ends_at:
            assert found == [], at
            continue
        one = assign(
            experiment_id=EXPERIMENT,
            interval=interval,
            starts_at=START,
            ends_at=ends_at,
            ranges=initial_ranges([50, 50]),
            visitor_id="visitor-1",
            at=at,
        )
        assert one.valid_until is not None
        until = micros(one.valid_until)
        assert found == [(experiment, "AB"[one.group_index], one.bucket, one.period, until)], at
