"""What the fuzz tests sent and got back, added up for the "fuzzed requests" section."""

from __future__ import annotations

from collections import Counter

import pytest

FUZZED_PROPERTY = "fuzzed"


class Tally:
    """What one fuzz test sent and got back, reported at its end (also from a pytest-xdist
    worker) as the test's user property `fuzzed`; the run's closing section adds them up."""

    def __init__(self) -> None:
        # (tier, database) -> requests sent / answered with INTERNAL, UNKNOWN or a 5xx.
        self.fuzzed: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        # (tier, database, answer) -> count: shows the fuzzing reached past validation too.
        self.answers: Counter[tuple[str, str, str]] = Counter()

    def sent(self, tier: str, database: str) -> None:
        self.fuzzed[(tier, database)] += 1

    def answered(self, tier: str, database: str, answer: str, *, failed: bool) -> None:
        self.answers[(tier, database, answer)] += 1
        if failed:
            self.failed[(tier, database)] += 1


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The "fuzzed requests" section: the tallies of every fuzz test that ran (tests/conftest.py
    calls it, in the process that reports, pytest-xdist's controller included)."""
    total = Tally()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name != FUZZED_PROPERTY or getattr(report, "when", None) != "teardown":
                    continue
                for *key, n in value["fuzzed"]:
                    total.fuzzed[(key[0], key[1])] += n
                for *key, n in value["failed"]:
                    total.failed[(key[0], key[1])] += n
                for *key, n in value["answers"]:
                    total.answers[(key[0], key[1], key[2])] += n
    if not total.fuzzed:
        return
    terminalreporter.section("fuzzed requests")
    for (tier, database), count in sorted(total.fuzzed.items()):
        answers = ", ".join(
            f"{answer} {n}"
            for (t, d, answer), n in sorted(total.answers.items())
            if (t, d) == (tier, database)
        )
        terminalreporter.write_line(
            f"{tier} on {database}: {count} fuzzed requests, "
            f"{total.failed[(tier, database)]} INTERNAL/5xx ({answers})"
        )
