"""A wrong EXPERIMENTS_DATABASE_URL ends experiments-admin and experiments-server with one line
that says what is wrong and how to fix it, never with a traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from gateway import launcher
from server.adapters.database import engine_url
from tests.integration.databases import postgres_server_url
from tests.ports import unused_port


def _cases() -> list[tuple[str, str]]:
    cases = [
        ("postgres://postgres@127.0.0.1:5432/test", "write postgresql+psycopg://"),
        ("mysql://user@127.0.0.1/experiments", "unsupported scheme mysql://"),
        ("not a url", "is not a database URL"),
        (
            f"postgresql+psycopg://postgres@127.0.0.1:{unused_port()}/test",
            "cannot connect to PostgreSQL at 127.0.0.1",
        ),
    ]
    server = postgres_server_url()
    if server is not None:
        missing = engine_url(server).set(database="experiments_no_such_database")
        cases.append(
            (
                missing.render_as_string(hide_password=False),
                'the database "experiments_no_such_database" does not exist',
            )
        )
    return cases


@pytest.mark.parametrize("command", [["experiments-admin", "migrate"], ["experiments-server"]])
@pytest.mark.parametrize(("url", "says"), _cases())
def test_a_bad_database_url_is_one_clear_line(command: list[str], url: str, says: str) -> None:
    result = subprocess.run(
        [launcher.console_script(command[0]), *command[1:]],
        env={
            **os.environ,
            "EXPERIMENTS_DATABASE_URL": url,
            "EXPERIMENTS_GRPC_PORT": "0",
            "EXPERIMENTS_WORKERS": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{command[0]}: ")
    assert says in lines[0]
    assert "EXPERIMENTS_DATABASE_URL" in lines[0]
