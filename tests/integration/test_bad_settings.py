"""A setting that cannot be used ends experiments-server and experiments-admin with one line
naming the variable, never with a traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from gateway import launcher


@pytest.mark.parametrize("command", [["experiments-admin", "migrate"], ["experiments-server"]])
@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("EXPERIMENTS_GRPC_PORT", "fifty", "EXPERIMENTS_GRPC_PORT must be a number, got 'fifty'"),
        ("EXPERIMENTS_LOG_LEVEL", "verbose", "must be one of DEBUG, INFO, WARNING"),
        ("EXPERIMENTS_CORS_ORIGINS", "app.example.com", "'app.example.com' is not an origin"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    command: list[str], variable: str, value: str, says: str
) -> None:
    result = subprocess.run(
        [launcher.console_script(command[0]), *command[1:]],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{command[0]}: {variable}")
    assert says in lines[0]
