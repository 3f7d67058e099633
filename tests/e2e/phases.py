"""Calls and failures per phase of the cluster test (tests/e2e/test_cluster.py), printed at the
end of the run ("cluster phases") for the closing note, as tests/fuzz/tally.py does for the fuzz
tier."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

PHASES_PROPERTY = "cluster_phases"
# Failures quoted in the summary, per test (the counts hold them all).
MAX_FAILURES_SHOWN = 10


class PhaseTally:
    """Thread-safe: every loader records each call under the phase it started in."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self._lock = threading.Lock()
        # (test, phase, client) -> calls / calls that failed.
        self.calls: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        self.failures: list[str] = []

    def record(self, client: str, phase: str, failure: str | None) -> None:
        with self._lock:
            self.calls[(phase, client)] += 1
            if failure is not None:
                self.failed[(phase, client)] += 1
                self.failures.append(f"{phase}: {client}: {failure}")

    def count(self, client: str, phase: str) -> int:
        with self._lock:
            return self.calls[(phase, client)]

    def failed_of(self, kind: str) -> list[str]:
        """The failures of clients whose name starts with `kind` (e.g. "read")."""
        with self._lock:
            return [f for f in self.failures if f.split(": ")[1].startswith(kind)]

    def as_property(self, test: str) -> tuple[str, dict[str, Any]]:
        with self._lock:
            rows = [
                [test, phase, client, n, self.failed[(phase, client)]]
                for (phase, client), n in self.calls.items()
            ]
            failures = self.failures[:MAX_FAILURES_SHOWN]
        return PHASES_PROPERTY, {"rows": rows, "failures": [[test, f] for f in failures]}


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows: list[list[Any]] = []
    failures: list[list[str]] = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == PHASES_PROPERTY:
                    rows.extend(value["rows"])
                    failures.extend(value["failures"])
    if not rows:
        return
    terminalreporter.section("cluster phases")
    terminalreporter.write_line(
        "calls/failed per phase and client (a watch's calls are its streams, failed: ended by "
        "an error and resumed; a write's failed tries were tried again with the same key)"
    )
    for test in sorted({row[0] for row in rows}):
        mine = [row for row in rows if row[0] == test]
        clients = sorted({row[2] for row in mine})
        terminalreporter.write_line(f"{test}:")
        terminalreporter.write_line("| phase | " + " | ".join(clients) + " |")
        terminalreporter.write_line("| --- " * (len(clients) + 1) + "|")
        for phase in sorted({row[1] for row in mine}):
            cells = {row[2]: f"{row[3]}/{row[4]}" for row in mine if row[1] == phase}
            terminalreporter.write_line(
                f"| {phase} | " + " | ".join(cells.get(c, "0/0") for c in clients) + " |"
            )
        for _, failure in (f for f in failures if f[0] == test):
            terminalreporter.write_line(f"  failed: {failure}")
