"""Holding the database's locks from a test, to keep a server's call waiting on purpose, and
waiting (by polling a condition, never for a fixed time) until the server is where it should be."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from server.adapters.database import make_engine

DEADLINE_SECONDS = 30


def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling a condition, not waiting for time to pass


def someone_waits_for(lock_file: Path) -> bool:
    # /proc/locks lists a blocked flock() request as a line starting with "->" after the holder.
    inode = f":{os.stat(lock_file).st_ino} "
    return any(
        line.split()[1] == "->" and inode in line
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 1
    )


@contextmanager
def sqlite_writer_held(url: str) -> Iterator[Callable[[], bool]]:
    """Holds the SQLite writer lock; yields whether a writer of the server waits for it."""
    lock_file = Path(f"{make_url(url).database}.writer-lock")
    lock_file.touch()
    with lock_file.open("r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the server's writer now has to wait for us
        try:
            yield lambda: someone_waits_for(lock_file)
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


@contextmanager
def sqlite_database_locked(url: str) -> Iterator[None]:
    """Holds SQLite's own write lock on the file, as another program in a write would."""
    holder = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.close()  # rolls back


@contextmanager
def postgres_row_held(
    url: str, row_id: str, table: str = "experiments"
) -> Iterator[Callable[[], bool]]:
    """Locks a row (an experiment's by default) in an open transaction; yields whether a
    backend waits for a lock. An organization's row held so keeps its new experiments from
    being inserted (their foreign key check waits for it)."""
    engine = make_engine(url)
    try:
        with engine.connect() as holder, engine.connect() as observer:
            holder.execute(
                text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"),
                {"id": uuid.UUID(row_id)},
            )
            observer.execution_options(isolation_level="AUTOCOMMIT")
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            try:
                yield lambda: bool(observer.execute(waiting).scalar_one())
            finally:
                holder.rollback()
    finally:
        engine.dispose()
