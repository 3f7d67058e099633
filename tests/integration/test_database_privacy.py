"""What the database keeps to itself: the SQLite files are its owner's only, and an error's
text (which the server logs) never carries the values a request sent; nor do grpcio's own log
lines."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from server.adapters.database import make_engine

SECRET = "secret-value-4711"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_file_its_wal_and_shm_and_a_new_folder_are_private(tmp_path: Path) -> None:
    database = tmp_path / "new-folder" / "experiments.sqlite3"
    previous = os.umask(0o022)  # the usual umask, which would make them world-readable
    try:
        engine = make_engine(f"sqlite:///{database}")
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x TEXT)"))
            connection.execute(text("INSERT INTO t VALUES ('x')"))
            wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
            assert wal.exists() and shm.exists()
            modes = {p.name: mode(p) for p in (database, wal, shm)}
        engine.dispose()
    finally:
        os.umask(previous)

    assert modes == {name: 0o600 for name in modes}
    assert mode(database.parent) == 0o700


def test_a_database_error_does_not_carry_the_bound_values(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with pytest.raises(DBAPIError) as raised, engine.connect() as connection:
            connection.execute(
                text("SELECT * FROM no_such_table WHERE name = :name"), {"name": SECRET}
            )
    finally:
        engine.dispose()

    assert SECRET not in str(raised.value)


def test_a_logged_traceback_names_the_error_without_its_message() -> None:
    script = f"""
import logging
from server.entrypoints.logs import configure_logging
configure_logging("INFO")
try:
    try:
        raise KeyError({SECRET!r})
    except KeyError as error:
        raise ValueError("bad value: " + {SECRET!r}) from error
except ValueError:
    logging.getLogger("experiments.rpc").exception("rpc %s failed", "/x.Y/Z")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert "rpc /x.Y/Z failed" in result.stderr
    assert "builtins.KeyError" in result.stderr and "builtins.ValueError" in result.stderr
    assert 'File "<string>", line 9' in result.stderr  # the frames are kept
    assert SECRET not in result.stderr


def test_grpcios_own_lines_do_not_carry_request_values() -> None:
    # The two forms grpcio logs: a header value that is not UTF-8 (the whole value, with a
    # traceback), and an exception's text after "Exception calling application:".
    script = f"""
import logging
from server.entrypoints.logs import configure_logging
configure_logging("INFO")
value = b"Token {SECRET}\\xe9"
try:
    value.decode("utf8")
except UnicodeDecodeError:
    logging.getLogger("grpc._cython.cygrpc").exception("Invalid encoding on %s", value)
try:
    raise ValueError("bad value: {SECRET}")
except ValueError as error:
    logging.getLogger("grpc._server").exception("Exception calling application: " + str(error))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert "Invalid encoding" not in result.stderr  # the interceptor names the header instead
    assert "Exception calling application: (message not logged" in result.stderr
    assert SECRET not in result.stderr
