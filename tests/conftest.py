"""Settings of the whole test run: one line on whether PostgreSQL is covered."""

from __future__ import annotations

import pytest

from tests.integration.databases import postgres_status


def pytest_report_header() -> str:
    return postgres_status()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(postgres_status())
