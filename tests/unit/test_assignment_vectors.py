"""contract/assignment-vectors.json against the server's code: the file is what
tools/assignment_vectors.py generates now, and every case holds for domain.assignment."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from uuid import UUID

from server.domain.assignment import (
    BucketRange,
    GroupRanges,
    applies,
    bucket,
    group_index,
    period_of,
    rebalanced_ranges,
    valid_until,
)
from server.domain.model import ResetInterval

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "contract" / "assignment-vectors.json").read_text(encoding="utf-8"))


def _ranges(groups: list[list[list[int]]]) -> GroupRanges:
    return tuple(tuple(BucketRange(start, end) for start, end in group) for group in groups)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def test_the_vectors_file_is_what_the_code_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "assignment_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_several_thousand_assignments_with_period_boundaries_and_non_ascii_visitors() -> None:
    cases = VECTORS["assignments"]
    assert len(cases) >= 3000
    assert sum("at" in case for case in cases) >= 300
    assert any(not case["visitor_id"].isascii() for case in cases)


def test_the_server_agrees_with_every_assignment_vector() -> None:
    for case in VECTORS["assignments"]:
        experiment_id, ranges = UUID(case["experiment_id"]), _ranges(case["ranges"])
        chosen = bucket(experiment_id, case["period"], case["visitor_id"])
        assert (chosen, group_index(chosen, ranges)) == (case["bucket"], case["group"]), case
        if "at" in case:
            interval = ResetInterval(case["interval"])
            starts_at, at = _time(case["starts_at"]), _time(case["at"])
            assert starts_at is not None and at is not None
            assert period_of(interval, starts_at, at) == case["period"], case
            until = valid_until(interval, starts_at, _time(case["ends_at"]), at)
            assert until == _time(case["valid_until"]), case


def test_the_server_agrees_with_every_applies_vector() -> None:
    for case in VECTORS["applies"]:
        at = _time(case["at"])
        assert at is not None
        got = applies(
            is_draft=case["is_draft"],
            starts_at=_time(case["starts_at"]),
            ends_at=_time(case["ends_at"]),
            room_ids={UUID(room) for room in case["room_ids"]},
            room_id=None if case["room_id"] is None else UUID(case["room_id"]),
            at=at,
        )
        assert got == case["applies"], case


def test_the_server_agrees_with_every_rebalance_vector() -> None:
    for case in VECTORS["rebalances"]:
        after = rebalanced_ranges(_ranges(case["ranges"]), case["percentages"])
        assert after == _ranges(case["expected"]), case
