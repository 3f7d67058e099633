"""Visitor assignment implemented again from README.md's "Visitor assignment (the algorithm)"
alone, checked against every vector of contract/assignment-vectors.json.

Nothing of the server is imported: if the README and the server's code disagree, or the README
leaves something out that the vectors need, this fails. It is what another team would write.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "contract" / "assignment-vectors.json").read_text(
        encoding="utf-8"
    )
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PERIOD_MICROSECONDS = {"1d": 86_400_000_000, "1w": 604_800_000_000}

# Step 3: ranges are per group, in group order, of half-open [start, end) pairs.
Ranges = list[list[list[int]]]


def readme_bucket(experiment_id: str, period: int, visitor_id: str) -> int:
    """Step 1: SHA-256 of the UTF-8 of "{experiment_id}:{period}:{visitor_id}", first 8 bytes
    big-endian, modulo 10,000."""
    text = f"{experiment_id.lower()}:{period}:{visitor_id}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def readme_bucket_in_32_bit_words(experiment_id: str, period: int, visitor_id: str) -> int:
    """Step 1.5's form for languages without unsigned 64-bit integers."""
    digest = hashlib.sha256(f"{experiment_id.lower()}:{period}:{visitor_id}".encode()).digest()
    hi, lo = int.from_bytes(digest[0:4], "big"), int.from_bytes(digest[4:8], "big")
    return ((hi % 10_000) * 7296 + lo) % 10_000


def micros(text: str) -> int:
    """Whole microseconds since 1970-01-01T00:00:00Z (step 2)."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def readme_period(interval: str, starts_at: int, at: int) -> int:
    assert at >= starts_at, "no period before the start"
    return 0 if interval == "full" else (at - starts_at) // PERIOD_MICROSECONDS[interval]


def readme_valid_until(interval: str, starts_at: int, ends_at: int | None, at: int) -> int | None:
    """Step 6: the next period boundary or the end, whichever comes first."""
    candidates = [] if ends_at is None else [ends_at]
    if interval != "full":
        length = PERIOD_MICROSECONDS[interval]
        candidates.append(starts_at + (readme_period(interval, starts_at, at) + 1) * length)
    return min(candidates, default=None)


def readme_group(bucket: int, ranges: Ranges) -> int:
    [group] = [i for i, group in enumerate(ranges) if any(s <= bucket < e for s, e in group)]
    return group


def readme_applies(case: dict[str, Any]) -> bool:
    """Step 5."""
    if case["is_draft"]:
        return False
    at = micros(case["at"])
    if micros(case["starts_at"]) > at:
        return False
    if case["ends_at"] is not None and not at < micros(case["ends_at"]):
        return False
    return not case["room_ids"] or case["room_id"] in case["room_ids"]


def readme_rebalanced(ranges: Ranges, percentages: list[int]) -> Ranges:
    """Step 4, one bucket at a time."""
    count = max(len(ranges), len(percentages))
    held = [
        sorted(b for s, e in ranges[i] for b in range(s, e)) if i < len(ranges) else []
        for i in range(count)
    ]
    targets = [p * 100 for p in percentages] + [0] * (count - len(percentages))
    freed: list[int] = []
    for i, target in enumerate(targets):
        if len(held[i]) > target:
            held[i], surplus = held[i][:target], held[i][target:]
            freed += surplus
    freed.sort()
    for i, target in enumerate(targets):
        if len(held[i]) < target:
            wanted = target - len(held[i])
            held[i], freed = sorted(held[i] + freed[:wanted]), freed[wanted:]
    return [_as_ranges(buckets) for buckets in held[: len(percentages)]]


def _as_ranges(buckets: list[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for b in buckets:
        if ranges and ranges[-1][1] == b:
            ranges[-1][1] = b + 1
        else:
            ranges.append([b, b + 1])
    return ranges


def test_every_assignment_vector() -> None:
    wrong = []
    for case in VECTORS["assignments"]:
        experiment_id, visitor_id = case["experiment_id"], case["visitor_id"]
        period = case["period"]
        bucket = readme_bucket(experiment_id, period, visitor_id)
        got: dict[str, int | None] = {
            "bucket": bucket,
            "bucket in 32-bit words": readme_bucket_in_32_bit_words(
                experiment_id, period, visitor_id
            ),
            "group": readme_group(bucket, case["ranges"]),
        }
        expected: dict[str, int | None] = {
            "bucket": case["bucket"],
            "bucket in 32-bit words": case["bucket"],
            "group": case["group"],
        }
        if "at" in case:
            starts_at, at = micros(case["starts_at"]), micros(case["at"])
            ends_at = None if case["ends_at"] is None else micros(case["ends_at"])
            valid_until = None if case["valid_until"] is None else micros(case["valid_until"])
            got["period"] = readme_period(case["interval"], starts_at, at)
            got["valid_until"] = readme_valid_until(case["interval"], starts_at, ends_at, at)
            expected |= {"period": period, "valid_until": valid_until}
        if got != expected:
            wrong.append((case, got))
    assert not wrong, f"{len(wrong)} of {len(VECTORS['assignments'])} disagree; first: {wrong[0]}"


def test_every_applies_vector() -> None:
    assert [readme_applies(case) for case in VECTORS["applies"]] == [
        case["applies"] for case in VECTORS["applies"]
    ]


def test_every_rebalance_vector() -> None:
    for case in VECTORS["rebalances"]:
        after = readme_rebalanced(case["ranges"], case["percentages"])
        assert after == case["expected"], case
        before_owners, after_owners = _owners(case["ranges"]), _owners(after)
        moved = sum(before_owners[b] != after_owners[b] for b in range(10_000))
        assert (
            moved
            == case["moved"]
            == 50
            * sum(
                abs(_share(case["ranges"], i) - _share(after, i))
                for i in range(max(len(case["ranges"]), len(after)))
            )
        )


def _owners(ranges: Ranges) -> dict[int, int]:
    """Each bucket's group."""
    return {b: i for i, group in enumerate(ranges) for s, e in group for b in range(s, e)}


def _share(ranges: Ranges, index: int) -> int:
    """A group's percentage from its ranges (0 for a group that does not exist)."""
    return sum(e - s for s, e in ranges[index]) // 100 if index < len(ranges) else 0
