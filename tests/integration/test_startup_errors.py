"""A wrong EXPERIMENTS_DATABASE_URL or an unusable setting ends experiments-admin and
experiments-server with one line that says what is wrong and how to fix it, never with a
traceback. Each kind of database mistake is checked in process (check_database, which both
commands call first; the settings' are in tests/unit/test_settings.py), and each command
as a process once per kind of error."""

from __future__ import annotations

import os
import subprocess

import pytest

from gateway import launcher
from server.adapters.database import DatabaseUnusable, check_database, engine_url
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


# Named by what they say: the unused port differs between pytest-xdist workers, which must
# collect the same test names.
@pytest.mark.parametrize(("url", "says"), [pytest.param(*case, id=case[1]) for case in _cases()])
def test_a_bad_database_url_is_one_line_saying_what_to_fix(url: str, says: str) -> None:
    with pytest.raises(DatabaseUnusable) as raised:
        check_database(url)

    message = str(raised.value)
    assert "\n" not in message
    assert says in message
    assert "EXPERIMENTS_DATABASE_URL" in message


@pytest.mark.parametrize("command", [["experiments-admin", "migrate"], ["experiments-server"]])
@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("EXPERIMENTS_DATABASE_URL", "postgres://postgres@127.0.0.1/test", "postgresql+psycopg"),
        ("EXPERIMENTS_LOG_LEVEL", "verbose", "must be one of DEBUG, INFO, WARNING"),
    ],
    ids=["database URL", "setting"],
)
def test_each_command_ends_with_that_line_alone(
    command: list[str], variable: str, value: str, says: str
) -> None:
    result = subprocess.run(
        [launcher.console_script(command[0]), *command[1:]],
        env={
            **os.environ,
            variable: value,
            "EXPERIMENTS_GRPC_PORT": "0",
            "EXPERIMENTS_WORKERS": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{command[0]}: ")
    assert variable in lines[0] and says in lines[0]
