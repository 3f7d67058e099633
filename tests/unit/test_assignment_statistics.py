"""The split's statistics over 1,000,000 synthetic visitors: shares, independence between
experiments, and the re-draw of a daily reset.

The visitors are "visitor-0" to "visitor-999999", sequential ids being the hard case for a weak
hash; the experiment ids are fixed, so every run computes the same figures. Each tolerance is
about 4 standard deviations of the figure for an ideal random split, so the test fails for a
biased or correlated hash, not by bad luck (and never on a later run, being deterministic).
"""

from __future__ import annotations

import functools
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from uuid import UUID

from server.domain.assignment import (
    GroupRanges,
    bucket,
    group_table,
    initial_ranges,
    period_of,
    rebalanced_ranges,
)
from server.domain.model import ResetInterval
from tests.unit.builders import DAY, NOW

VISITORS = 1_000_000
FIRST = UUID("5f0c2d8e-3b1a-4e6f-9a7b-0c1d2e3f4a5b")
SECOND = UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")


def _visitor_ids() -> Iterator[str]:
    return (f"visitor-{n}" for n in range(VISITORS))


@functools.cache
def _buckets(experiment_id: UUID, period: int) -> array[int]:
    """Each visitor's bucket, through the public function: hashlib is C, the loop is the cost
    (1.3-1.8 s per million on a 2-core box, 5 s with both cores busy), so the tests of one
    process share what they compute; 2 bytes a bucket."""
    return array("H", map(partial(bucket, experiment_id, period), _visitor_ids()))


def _groups(buckets: Sequence[int], ranges: GroupRanges) -> list[int | None]:
    table = group_table(ranges)
    return [table[b] for b in buckets]


def test_each_group_gets_its_percentage_within_0_2_points() -> None:
    # A history of changes, so the ranges are fragmented, with a 1% and a 0% group.
    ranges = initial_ranges([50, 30, 20])
    for percentages in ([40, 30, 30], [15, 1, 30, 54], [15, 1, 0, 44, 40]):
        ranges = rebalanced_ranges(ranges, percentages)
    assert max(len(group) for group in ranges) > 1, "meant to test fragmented ranges"
    groups = _groups(_buckets(FIRST, 0), ranges)

    counts = Counter(groups)
    shares = [100 * counts[index] / VISITORS for index in range(len(percentages))]
    # One standard deviation of a share p is 100 * sqrt(p (1 - p) / 1e6) points: 0.05 at 50%.
    assert all(abs(share - p) <= 0.2 for share, p in zip(shares, percentages, strict=True)), shares


# The chi-square distribution with 4 degrees of freedom exceeds 18.467 with probability 0.001
# (e.g. NIST/SEMATECH e-Handbook of Statistical Methods, 1.3.6.7.4, upper critical values).
CHI_SQUARE_4_DOF_0_001 = 18.467


def _chi_square(rows: Sequence[int | None], columns: Sequence[int | None]) -> float:
    """Pearson's statistic of the contingency table of two assignments of the same visitors."""
    counts = Counter(zip(rows, columns, strict=True))
    row_totals, column_totals = Counter(rows), Counter(columns)
    statistic = 0.0
    for r, row_total in row_totals.items():
        for c, column_total in column_totals.items():
            expected = row_total * column_total / len(rows)
            statistic += (counts[r, c] - expected) ** 2 / expected
    return statistic


def test_two_experiments_assign_independently() -> None:
    first_ranges, second_ranges = initial_ranges([50, 30, 20]), initial_ranges([25, 25, 50])
    first_buckets = _buckets(FIRST, 0)
    first = _groups(first_buckets, first_ranges)

    # 3 x 3 groups: (3 - 1) * (3 - 1) = 4 degrees of freedom; independence is rejected at the
    # 0.1% level above the critical value.
    assert _chi_square(first, _groups(_buckets(SECOND, 0), second_ranges)) < CHI_SQUARE_4_DOF_0_001
    # The same statistic does see dependence: the first experiment's buckets under the second's
    # ranges (what one shared hash for all experiments would give) are far above it.
    assert _chi_square(first, _groups(first_buckets, second_ranges)) > 100 * CHI_SQUARE_4_DOF_0_001


def test_a_daily_reset_draws_again_so_a_visitor_stays_with_probability_sum_of_p_squared() -> None:
    percentages = [50, 30, 20]
    ranges = initial_ranges(percentages)
    today = period_of(ResetInterval.DAY, NOW, NOW + DAY - DAY // 2)
    tomorrow = period_of(ResetInterval.DAY, NOW, NOW + DAY)
    assert (today, tomorrow) == (0, 1)
    before = _groups(_buckets(FIRST, today), ranges)
    after = _groups(_buckets(FIRST, tomorrow), ranges)
    stayed = sum(a == b for a, b in zip(before, after, strict=True))

    expected = sum((p / 100) ** 2 for p in percentages)  # 0.38
    # One standard deviation: sqrt(0.38 * 0.62 / 1e6) = 0.00049.
    assert abs(stayed / VISITORS - expected) <= 0.002, stayed / VISITORS
