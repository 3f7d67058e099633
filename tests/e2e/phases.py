"""Calls and failures per phase of the cluster test (tests/e2e/test_cluster.py), printed at the
end of the run ("cluster phases") for the closing note, as tests/fuzz/tally.py does for the fuzz
tier."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

PHASES_PROPERTY = "cluster_phases"


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
        return PHASES_PROPERTY, {"rows": rows}


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows: list[list[Any]] = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == PHASES_PROPERTY:
                    rows.extend(value["rows"])
    if not rows:
        return
    terminalreporter.section("cluster phases")
    terminalreporter.write_line(
        "calls per phase and client; a watch's calls are its streams, failed: ended by an error"
    )
    for test, phase, client, calls, failed in rows:
        terminalreporter.write_line(f"{test} | {phase} | {client}: {calls} calls, {failed} failed")
