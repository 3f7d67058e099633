"""Settings of the whole test run: whether PostgreSQL is covered, and what was fuzzed."""

from __future__ import annotations

import pytest

from tests.fuzz.tally import write_summary
from tests.integration.databases import postgres_status


def pytest_report_header() -> str:
    return postgres_status()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Here rather than in tests/fuzz: with pytest-xdist only this conftest is sure to be loaded
    # in the process that writes the summary.
    write_summary(terminalreporter)
    terminalreporter.write_line(postgres_status())
