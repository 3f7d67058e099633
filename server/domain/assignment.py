"""Deterministic visitor assignment: which group of an experiment a visitor is in, computed the
same way by the server and by every client (README, "Visitor assignment (the algorithm)").

A visitor's bucket (0-9,999) comes from SHA-256 of the experiment id, the reset period and the
visitor id; each group owns half-open ranges of buckets that together tile 0-9,999, a group of
p percent holding p * 100 buckets. When the percentages of a running experiment change, the
ranges change minimally (`rebalanced_ranges`), so only the visitors that must move do.
contract/assignment-vectors.json (tools/assignment_vectors.py) pins all of this down for other
languages. Plain functions of their arguments: no clock, no storage.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Generic, TypeVar
from uuid import UUID

from server.domain import limits, messages
from server.domain.errors import FieldViolation, InvalidArgument

if TYPE_CHECKING:
    # Only a type here: the model imports this module (its groups' ranges come from here).
    from server.domain.model import ResetInterval

BUCKETS: Final = 10_000
# Percentages are whole numbers, so every range boundary the functions below make is a multiple
# of this: at most 100 ranges in all, whatever the history of changes.
BUCKETS_PER_POINT: Final = BUCKETS // 100

# How long a period of each reset interval lasts, by the interval's value (a ResetInterval is
# a str enum, equal to its value); `full` never resets.
PERIOD_LENGTHS: Final[dict[str, timedelta | None]] = {
    "full": None,
    "1w": timedelta(days=7),
    "1d": timedelta(days=1),
}


@dataclass(frozen=True, order=True)
class BucketRange:
    """The buckets start, start + 1, ..., end - 1 (half-open, never empty)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= BUCKETS:
            raise ValueError(f"not a non-empty range of buckets 0-{BUCKETS - 1}: {self}")

    def __len__(self) -> int:
        return self.end - self.start


# The ranges of each group of an experiment, in group order (the groups' `order`).
GroupRanges = tuple[tuple[BucketRange, ...], ...]


@dataclass(frozen=True)
class Assignment:
    """Where a visitor is in one experiment at one time, and until when that holds."""

    group_index: int
    bucket: int
    period: int
    # The next period boundary or the experiment's end, whichever comes first; None when
    # neither exists (a `full` experiment without an end).
    valid_until: datetime | None


def bucket(experiment_id: UUID, period: int, visitor_id: str) -> int:
    """The visitor's bucket in this period of the experiment: the first 8 bytes of SHA-256 over
    the UTF-8 of "{experiment_id}:{period}:{visitor_id}", big-endian, modulo BUCKETS.

    The experiment id is written lowercase with hyphens (str(UUID)), the period in decimal, and
    the visitor id exactly as given: no Unicode normalization, no trimming, no case folding.
    """
    if period < 0:
        raise ValueError(f"a period is never negative: {period}")
    # Raises UnicodeEncodeError (a ValueError) for text with an unpaired surrogate, which has no
    # UTF-8 form; checked_visitor_id refuses such ids first.
    digest = hashlib.sha256(f"{experiment_id}:{period}:{visitor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def period_of(interval: ResetInterval, starts_at: datetime, at: datetime) -> int:
    """Which period of the experiment `at` falls in: 0 for `full`; for `1d` and `1w`, the whole
    days or weeks elapsed since `starts_at` (floor), counted in exact microseconds.

    A period exists only from the start on: `at` before `starts_at` raises ValueError, because
    an experiment does not apply then (`applies` is checked first). Both times must be aware;
    elapsed time does not depend on their offsets, so this is the same as counting in UTC.
    """
    _require_aware(starts_at, at)
    if at < starts_at:
        raise ValueError(f"no period before the experiment starts ({at} < {starts_at})")
    length = PERIOD_LENGTHS[interval]
    if length is None:
        return 0
    # timedelta // timedelta divides whole microseconds as integers: no float rounding.
    return (at - starts_at) // length


def valid_until(
    interval: ResetInterval, starts_at: datetime, ends_at: datetime | None, at: datetime
) -> datetime | None:
    """Until when an assignment made at `at` holds, in UTC: the start of the next period or
    `ends_at`, whichever comes first; None for `full` without an end.

    Only for a time at which the experiment runs (starts_at <= at < ends_at): other times raise
    ValueError.
    """
    period = period_of(interval, starts_at, at)
    if ends_at is not None and not at < ends_at:
        raise ValueError(f"the experiment has ended ({at} >= {ends_at})")
    length = PERIOD_LENGTHS[interval]
    next_period = None if length is None else starts_at + (period + 1) * length
    until = min((t for t in (next_period, ends_at) if t is not None), default=None)
    return None if until is None else until.astimezone(UTC)


def initial_ranges(percentages: Sequence[int | None]) -> GroupRanges:
    """The ranges of a new split: consecutive in group order from bucket 0, group i holding
    percentages[i] * 100 buckets; a 0% group holds none.

    Only a split (whole percentages 0-100 adding up to 100) has ranges: for anything else, such
    as a draft's unfinished groups, every group gets none, and nobody is assigned.
    """
    if not _is_split(percentages):
        return tuple(() for _ in percentages)
    ranges: list[tuple[BucketRange, ...]] = []
    start = 0
    for percentage in percentages:
        size = _size_of(percentage)
        ranges.append((BucketRange(start, start + size),) if size else ())
        start += size
    return tuple(ranges)


def rebalanced_ranges(
    old_ranges: Sequence[Sequence[BucketRange]], new_percentages: Sequence[int | None]
) -> GroupRanges:
    """The ranges after the percentages change, moving as few buckets as possible.

    Groups are matched by position (group i of old_ranges is group i of new_percentages); a
    group only in old_ranges is removed (its share becomes 0), one only in new_percentages is
    added (its share was 0). Then:

    - a group whose share is unchanged keeps exactly its buckets;
    - a group whose share shrinks keeps its lowest-numbered buckets and frees the rest;
    - the freed buckets, in ascending order, go to the growing groups in group order, each
      taking as many as it lacks;
    - each group's ranges are sorted and adjacent ones merged.

    So exactly 1/2 * sum(|new - old percentage|) percent of the buckets change group. Every
    boundary stays a multiple of BUCKETS_PER_POINT when the old ones were (all ranges made here
    are), which bounds the fragmentation: at most 100 ranges in all, at most p ranges for a
    group of p percent; one change adds at most (groups shrinking + groups growing - 1).

    Old ranges that hold no bucket (a draft's) give initial_ranges(new_percentages); new
    percentages that are not a split give every group none, as initial_ranges does. Old ranges
    that do not tile 0-9,999 exactly raise ValueError.
    """
    if not _is_split(new_percentages) or not any(old_ranges):
        return initial_ranges(new_percentages)
    _require_tiling(old_ranges)
    count = max(len(old_ranges), len(new_percentages))
    owned = [sorted(old_ranges[i]) if i < len(old_ranges) else [] for i in range(count)]
    targets = [_size_of(p) for p in new_percentages] + [0] * (count - len(new_percentages))
    freed: list[BucketRange] = []
    for i, target in enumerate(targets):
        owned[i], surplus = _split_lowest(owned[i], target)
        freed += surplus
    pool = _merged(sorted(freed))
    for i, target in enumerate(targets):
        taken, pool = _split_lowest(pool, target - _count(owned[i]))
        owned[i] = _merged(sorted(owned[i] + taken))
    return tuple(tuple(owned[i]) for i in range(len(new_percentages)))


def group_index(bucket: int, ranges: Sequence[Sequence[BucketRange]]) -> int:
    """The position of the group whose ranges hold the bucket. ValueError if none does (ranges
    that are not a split, such as a draft's)."""
    for index, group in enumerate(ranges):
        if any(r.start <= bucket < r.end for r in group):
            return index
    raise ValueError(f"no group holds bucket {bucket}")


def group_table(ranges: Sequence[Sequence[BucketRange]]) -> tuple[int | None, ...]:
    """group_index of every bucket, as a table indexed by bucket (None where no group holds it):
    one lookup per assignment instead of a walk over the ranges."""
    table: list[int | None] = [None] * BUCKETS
    for index, group in enumerate(ranges):
        for r in group:
            table[r.start : r.end] = [index] * len(r)
    return tuple(table)


def applies(
    *,
    is_draft: bool,
    starts_at: datetime | None,
    ends_at: datetime | None,
    room_ids: Collection[UUID],
    room_id: UUID | None,
    at: datetime,
) -> bool:
    """Whether the experiment assigns visitors at `at` in the room: it is published, has
    started (starts_at <= at), has not ended (at < ends_at, if it has an end), and runs in
    every room (room_ids empty) or in this one. Without a room (None), only an experiment that
    runs in every room applies.
    """
    if is_draft or starts_at is None:
        return False
    _require_aware(starts_at, at)
    if at < starts_at or (ends_at is not None and not at < ends_at):
        return False
    return not room_ids or (room_id is not None and room_id in room_ids)


def assign(
    *,
    experiment_id: UUID,
    interval: ResetInterval,
    starts_at: datetime,
    ends_at: datetime | None,
    ranges: Sequence[Sequence[BucketRange]],
    visitor_id: str,
    at: datetime,
) -> Assignment:
    """The visitor's group in an experiment that applies at `at` (see `applies`), with the
    bucket and period that chose it and until when it holds."""
    period = period_of(interval, starts_at, at)
    chosen = bucket(experiment_id, period, visitor_id)
    return Assignment(
        group_index=group_index(chosen, ranges),
        bucket=chosen,
        period=period,
        valid_until=valid_until(interval, starts_at, ends_at, at),
    )


def checked_visitor_id(visitor_id: str, field: str = "visitor_id") -> str:
    """The visitor id as given, or InvalidArgument naming `field`: it must be 1 to
    limits.VISITOR_ID_MAX_LENGTH characters (code points, as Python counts them) of Unicode text
    (no unpaired surrogate, which has no UTF-8 form to hash)."""
    problems: list[FieldViolation] = []
    _visitor_bytes(visitor_id, problems, field)
    if problems:
        raise InvalidArgument(problems)
    return visitor_id


# --- the hot path: many experiments, one visitor ----------------------------------------------

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)
# The table of a RunningExperiment has one entry per block of BUCKETS_PER_POINT buckets.
_BLOCKS: Final = BUCKETS // BUCKETS_PER_POINT
_NO_GROUP: Final = 255

G = TypeVar("G")


def micros(moment: datetime) -> int:
    """A time as whole microseconds since 1970-01-01T00:00:00Z: the algorithm's integers."""
    return (moment - EPOCH) // MICROSECOND


def moment_of(micros: int) -> datetime:
    """The time `micros` stands for, in UTC (micros() the other way)."""
    return EPOCH + micros * MICROSECOND


@dataclass(frozen=True, slots=True)
class RunningExperiment(Generic[G]):
    """A published experiment reduced to what assigning a visitor needs, precomputed once
    (`running_experiment`), so that `assign_all` does per experiment a few integer
    comparisons, one SHA-256 and one table lookup. Times are microseconds since the epoch.
    `groups` is whatever the caller answers with for each group, in group order (the
    entrypoint keeps each group's serialized answer there); it is opaque here."""

    experiment_id: UUID
    starts_at: int
    ends_at: int | None
    period_length: int | None  # None: `full`, one period for ever
    room_ids: frozenset[UUID]  # empty: every room
    groups: tuple[G, ...]
    # The group index of each block of BUCKETS_PER_POINT buckets (every range boundary is a
    # multiple of it, so 100 entries hold what group_table's 10,000 do); _NO_GROUP for none.
    table: bytes
    key: bytes  # b"{experiment_id}:", the start of every hashed text
    # b"{experiment_id}:0:" for `full` (every text hashed starts so); b"" otherwise.
    full_key: bytes


def running_experiment(
    *,
    experiment_id: UUID,
    interval: ResetInterval,
    starts_at: datetime,
    ends_at: datetime | None,
    room_ids: Collection[UUID],
    ranges: Sequence[Sequence[BucketRange]],
    groups: Sequence[G],
) -> RunningExperiment[G]:
    """The experiment ready for `assign_all`. ValueError unless `ranges` (one entry per group
    of `groups`) tile the buckets at whole percentage points, as every range the functions
    above make does (a draft's empty ranges do not: a draft is never assigned)."""
    if len(ranges) != len(groups) or len(groups) >= _NO_GROUP:
        raise ValueError(f"{len(ranges)} groups of ranges for {len(groups)} groups")
    _require_tiling(ranges)
    table = bytearray([_NO_GROUP]) * _BLOCKS
    for index, group in enumerate(ranges):
        for r in group:
            if r.start % BUCKETS_PER_POINT or r.end % BUCKETS_PER_POINT:
                raise ValueError(f"{r} is not made of whole percentage points")
            start, end = r.start // BUCKETS_PER_POINT, r.end // BUCKETS_PER_POINT
            table[start:end] = bytes([index]) * (end - start)
    length = PERIOD_LENGTHS[interval]
    return RunningExperiment(
        experiment_id=experiment_id,
        starts_at=micros(starts_at),
        ends_at=None if ends_at is None else micros(ends_at),
        period_length=None if length is None else length // MICROSECOND,
        room_ids=frozenset(room_ids),
        groups=tuple(groups),
        table=bytes(table),
        key=f"{experiment_id}:".encode(),
        full_key=f"{experiment_id}:0:".encode() if length is None else b"",
    )


_BIG_ENDIAN_U64: Final = struct.Struct(">Q")

# One assignment of assign_all: the experiment, its group (as given to running_experiment),
# the bucket, the period, and valid_until in microseconds (None: for ever).
Assigned = tuple[RunningExperiment[G], G, int, int, int | None]


def assign_all(
    experiments: Iterable[RunningExperiment[G]], visitor: bytes, room_id: UUID | None, at: int
) -> list[Assigned[G]]:
    """The visitor's assignment in each experiment that applies at `at` (microseconds) in the
    room (None: no room, so only experiments of every room), in the order given: `applies`
    and `assign` above, in integers, for many experiments at once. `visitor` is the visitor
    id's UTF-8 (`checked_request`)."""
    found: list[Assigned[G]] = []
    sha256 = hashlib.sha256
    first_8_bytes = _BIG_ENDIAN_U64.unpack_from
    for experiment in experiments:
        start, end = experiment.starts_at, experiment.ends_at
        if at < start or (end is not None and at >= end):
            continue
        if experiment.room_ids and room_id not in experiment.room_ids:
            continue
        length = experiment.period_length
        if length is None:
            period, until = 0, end
            digest = sha256(experiment.full_key + visitor).digest()
        else:
            period = (at - start) // length
            until = start + (period + 1) * length
            if end is not None and end < until:
                until = end
            digest = sha256(b"%s%d:%s" % (experiment.key, period, visitor)).digest()
        chosen = first_8_bytes(digest)[0] % BUCKETS
        group = experiment.groups[experiment.table[chosen // BUCKETS_PER_POINT]]
        found.append((experiment, group, chosen, period, until))
    return found


_EARLIEST: Final = micros(limits.EARLIEST_TIME)
_LATEST: Final = micros(limits.LATEST_TIME)


@dataclass(frozen=True)
class AssignmentRequest:
    """An assignment request after its checks."""

    visitor: bytes  # the visitor id's UTF-8, what is hashed
    room_id: UUID | None
    at: int | None  # microseconds since the epoch; None: now


def checked_request(visitor_id: str, room_id: str, at: tuple[int, int] | None) -> AssignmentRequest:
    """The request, or InvalidArgument naming every offending field: `visitor_id` as
    checked_visitor_id says, `room_id` a UUID or empty (no room), `at` (seconds and nanos of a
    Timestamp, None when not sent) a valid time within the API's times. A room that is not
    one of the organization's is not an error: no experiment names it."""
    problems: list[FieldViolation] = []
    visitor = _visitor_bytes(visitor_id, problems)
    room = None
    if room_id:
        try:
            room = UUID(room_id.strip())
        except ValueError:
            problems.append(FieldViolation("room_id", messages.NOT_A_UUID))
    moment = None
    if at is not None:
        seconds, nanos = at
        moment = seconds * 1_000_000 + nanos // 1_000
        if not 0 <= nanos <= 999_999_999:
            problems.append(FieldViolation("at", messages.INVALID_TIMESTAMP))
        elif not _EARLIEST <= moment < _LATEST:
            problems.append(FieldViolation("at", messages.TIME_OUT_OF_RANGE))
    if problems:
        raise InvalidArgument(problems)
    return AssignmentRequest(visitor, room, moment)


def _visitor_bytes(
    visitor_id: str, problems: list[FieldViolation], field: str = "visitor_id"
) -> bytes:
    """The visitor id's UTF-8, or b"" with its problem added to `problems`."""
    if not visitor_id:
        description = messages.REQUIRED
    elif len(visitor_id) > limits.VISITOR_ID_MAX_LENGTH:
        description = messages.TOO_LONG.format(limit=limits.VISITOR_ID_MAX_LENGTH)
    else:
        try:
            return visitor_id.encode()
        except UnicodeEncodeError:  # an unpaired surrogate has no UTF-8 form
            description = messages.UNPAIRED_SURROGATE
    problems.append(FieldViolation(field, description))
    return b""


def _is_split(percentages: Sequence[int | None]) -> bool:
    """Whole percentages 0-100 adding up to 100: what a published experiment has."""
    valid = all(type(p) is int and 0 <= p <= 100 for p in percentages)
    return valid and sum(p or 0 for p in percentages) == 100


def _size_of(percentage: int | None) -> int:
    return (percentage or 0) * BUCKETS_PER_POINT


def _count(ranges: Sequence[BucketRange]) -> int:
    return sum(len(r) for r in ranges)


def _split_lowest(
    ranges: Sequence[BucketRange], count: int
) -> tuple[list[BucketRange], list[BucketRange]]:
    """The lowest `count` buckets of sorted ranges (all of them if there are fewer), and the
    rest; a range is cut in two where needed."""
    lowest: list[BucketRange] = []
    rest: list[BucketRange] = []
    for r in ranges:
        wanted = count - _count(lowest)
        if wanted >= len(r):
            lowest.append(r)
        elif wanted > 0:
            lowest.append(BucketRange(r.start, r.start + wanted))
            rest.append(BucketRange(r.start + wanted, r.end))
        else:
            rest.append(r)
    return lowest, rest


def _merged(ranges: Sequence[BucketRange]) -> list[BucketRange]:
    """Sorted ranges with each run of adjacent ones joined into one."""
    merged: list[BucketRange] = []
    for r in ranges:
        if merged and merged[-1].end == r.start:
            merged[-1] = BucketRange(merged[-1].start, r.end)
        else:
            merged.append(r)
    return merged


def _require_tiling(ranges: Sequence[Sequence[BucketRange]]) -> None:
    """ValueError unless the ranges, all groups together, cover each bucket exactly once."""
    end = 0
    for r in sorted(r for group in ranges for r in group):
        if r.start != end:
            raise ValueError(f"the ranges do not tile 0-{BUCKETS - 1}: a gap or overlap at {end}")
        end = r.end
    if end != BUCKETS:
        raise ValueError(f"the ranges do not tile 0-{BUCKETS - 1}: they stop at {end}")


def _require_aware(*times: datetime) -> None:
    if any(t.utcoffset() is None for t in times):
        raise ValueError("times must carry a time zone (the service's are UTC)")
