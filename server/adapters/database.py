"""Engines and sessions for the configured database: an SQLite file or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger(__name__)

# A connection execution option: the connection will only read, one statement at a
# time. On SQLite it then emits no BEGIN at all: each statement is its own
# transaction, so readers never wait for the write lock.
READ_ONLY: Final = "experiments_read_only"

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


def engine_url(url: str) -> URL:
    """The URL to connect to: a bare postgresql:// means psycopg 3, the driver we ship."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An engine for `url`; an SQLite file gets its folder, WAL, foreign keys, real transactions."""
    parsed = engine_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_size=pool_size, max_overflow=max_overflow)
    if (
        parsed.database
        and parsed.database != ":memory:"
        and not parsed.database.startswith("file:")
    ):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=max_overflow)
    else:
        engine = create_engine(parsed)
    _configure_sqlite(engine)
    return engine


def read_only_options(dialect: str) -> dict[str, Any]:
    """Execution options for a connection whose statements each run on their own.

    Saves the BEGIN and ROLLBACK round trips of a transaction: PostgreSQL in
    autocommit mode, SQLite without the BEGIN that the begin hook below emits.
    """
    if dialect == "sqlite":
        return {READ_ONLY: True}
    return {"isolation_level": "AUTOCOMMIT"}


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # Domain objects are built from rows before commit, so nothing needs reloading after it.
    return sessionmaker(bind=engine, expire_on_commit=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # pysqlite's legacy transaction handling only BEGINs before DML, so SELECTs and DDL
        # would run outside the transaction; turn it off and emit BEGIN ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL lets readers work while one writer commits; NORMAL sync is safe with WAL.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A transaction that reads and then writes must hold the write lock from the start:
        # with a deferred BEGIN its read snapshot may be stale by the time it writes, and
        # SQLite then fails at once (SQLITE_BUSY_SNAPSHOT) instead of waiting its turn.
        # IMMEDIATE queues writers behind busy_timeout, so concurrent writes serialize.
        if not connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
