"""Settings of the whole test run: whether PostgreSQL and the Go client test are covered, and
what was fuzzed."""

from __future__ import annotations

import os

import pytest

from tests.e2e import go_client, phases
from tests.fuzz.tally import write_summary
from tests.integration.databases import postgres_status

# The servers the tests start stop at once on SIGTERM, without the drain a server behind a
# gateway needs (EXPERIMENTS_DRAIN_SECONDS); tests/e2e/test_cluster.py sets it where it is tested.
os.environ.setdefault("EXPERIMENTS_DRAIN_SECONDS", "0")


def _coverage() -> list[str]:
    return [postgres_status(), go_client.status()]


def pytest_report_header() -> list[str]:
    return _coverage()


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # `-q` (as `make test` runs) hides the report header: say it first anyway.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.get_verbosity() < 0:
        for line in _coverage():
            reporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Without the toolchain the Go test is not generated (the lines above say so), rather than
    # a skip in every run of a machine without Go.
    if not go_client.runs():
        items[:] = [item for item in items if item.get_closest_marker("go") is None]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Here rather than in tests/fuzz: with pytest-xdist only this conftest is sure to be loaded
    # in the process that writes the summary.
    write_summary(terminalreporter)
    phases.write_summary(terminalreporter)
    for line in _coverage():
        terminalreporter.write_line(line)
