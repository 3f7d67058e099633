"""Engines and sessions for the configured database: an SQLite file or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import contextvars
import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Final

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger("experiments.database")

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
# The longest a write waits for the database (its writer lock on SQLite, row and other locks on
# PostgreSQL) when its call has no deadline, or a later one: the same on both databases.
WRITE_WAIT_SECONDS: Final = SQLITE_BUSY_TIMEOUT_MS / 1000

# The deadline of the call being served, as time.monotonic(), set by the gRPC interceptor in the
# call's own context (grpcio runs each call in one); None outside a call or without a deadline.
# A write waits for the database until then at most, and commits only before it: a client that
# saw its call fail must never find the write done later (server/adapters/unit_of_work.py).
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "call_deadline", default=None
)


def write_deadline() -> float:
    """When a write starting now must have committed: the call's deadline, or WRITE_WAIT_SECONDS
    from now if that is sooner (as time.monotonic())."""
    bound = time.monotonic() + WRITE_WAIT_SECONDS
    call = CALL_DEADLINE.get()
    return bound if call is None else min(call, bound)


class WriteTimedOut(Exception):
    """A write could not get the database, or finish, before its deadline; nothing was written
    (the transaction, if begun, is rolled back). Answered UNAVAILABLE: a retry is safe."""


URL_FORMS: Final = (
    "use sqlite:///path/to/file.sqlite3 or postgresql+psycopg://user:password@host:5432/database"
)


class DatabaseUnusable(Exception):
    """EXPERIMENTS_DATABASE_URL cannot be used: the message says, in one line, what is wrong and
    how to fix it (never with the password)."""


def engine_url(url: str) -> URL:
    """The URL to connect to: a bare postgresql:// means psycopg 3, the driver we ship."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnusable(
            f"EXPERIMENTS_DATABASE_URL is not a database URL; {URL_FORMS}"
        ) from None
    scheme = parsed.drivername
    if scheme.split("+")[0] == "postgres":
        raise DatabaseUnusable(
            f"EXPERIMENTS_DATABASE_URL starts with {scheme}://, which is not a known scheme; "
            "write postgresql+psycopg:// instead (the rest of the URL stays as it is)"
        )
    if scheme == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise DatabaseUnusable(
            f"EXPERIMENTS_DATABASE_URL has the unsupported scheme {scheme}://; {URL_FORMS}"
        )
    return parsed


def check_database(url: str) -> None:
    """Connects once, so that a wrong URL or an unreachable database is one clear line at
    startup (DatabaseUnusable) rather than a traceback at the first request."""
    parsed = engine_url(url)
    try:
        engine = make_engine(url, pool_size=1, max_overflow=0)
    except OSError as error:
        raise DatabaseUnusable(
            f"cannot create the SQLite file {parsed.database}: {error.strerror}; "
            "fix the path in EXPERIMENTS_DATABASE_URL"
        ) from None
    try:
        with engine.connect():
            pass
    except DBAPIError as error:
        raise DatabaseUnusable(_connection_problem(parsed, str(error.orig))) from None
    finally:
        engine.dispose()


def _connection_problem(url: URL, driver_message: str) -> str:
    if url.get_backend_name() == "sqlite":
        return (
            f"cannot open the SQLite file {url.database} ({driver_message}); "
            "fix the path in EXPERIMENTS_DATABASE_URL"
        )
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    if f'database "{url.database}" does not exist' in driver_message:
        return (
            f'the database "{url.database}" does not exist on {where}; create it '
            f'(CREATE DATABASE "{url.database}") or fix the name in EXPERIMENTS_DATABASE_URL'
        )
    if "authentication failed" in driver_message or "role" in driver_message:
        return (
            f"{where} refused the user {url.username!r}; fix the user or password "
            "in EXPERIMENTS_DATABASE_URL"
        )
    reason = driver_message.strip().splitlines()[0] if driver_message.strip() else "no answer"
    return (
        f"cannot connect to {where} ({reason}); start PostgreSQL there, "
        "or fix the host and port in EXPERIMENTS_DATABASE_URL"
    )


# psycopg's own connection parameter, which EXPERIMENTS_DATABASE_URL may carry as
# ?prepare_threshold=none (behind PgBouncer in transaction pooling mode: a statement prepared on
# one server connection is not there on the next) or =N; libpq's connection string has no such
# parameter, so it is taken out of the URL and given to psycopg.
PREPARE_THRESHOLD: Final = "prepare_threshold"


def _psycopg_arguments(parsed: URL) -> tuple[URL, dict[str, Any]]:
    """The URL without prepare_threshold, and psycopg's connect arguments it asked for."""
    value = parsed.query.get(PREPARE_THRESHOLD)
    if value is None:
        return parsed, {}
    parsed = parsed.difference_update_query([PREPARE_THRESHOLD])
    text_value = (value if isinstance(value, str) else value[-1]).strip().lower()
    if text_value in ("none", ""):
        return parsed, {PREPARE_THRESHOLD: None}
    if text_value.isdigit():
        return parsed, {PREPARE_THRESHOLD: int(text_value)}
    raise DatabaseUnusable(
        f"EXPERIMENTS_DATABASE_URL: {PREPARE_THRESHOLD} must be none (never prepare, behind "
        f"PgBouncer in transaction pooling mode) or a number of executions, got {text_value!r}"
    )


def make_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, read_only: bool = False
) -> Engine:
    """An engine for `url`; an SQLite file gets its folder, WAL, foreign keys, real transactions.

    `read_only=True` makes an engine for reads: its connections refuse every write, and
    each statement runs on its own, without BEGIN and ROLLBACK round trips (every read of
    the repositories is a single statement). PostgreSQL: autocommit on sessions whose
    default_transaction_read_only is set once at connect. SQLite: no BEGIN, query_only.
    """
    parsed = engine_url(url)
    # hide_parameters: an error's text (logged) never carries the values a client sent.
    if parsed.get_backend_name() != "sqlite":
        parsed, connect_args = _psycopg_arguments(parsed)
        options: dict[str, Any] = {}
        if read_only:
            options = {"isolation_level": "AUTOCOMMIT"}
            connect_args["options"] = "-c default_transaction_read_only=on"
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            hide_parameters=True,
            connect_args=connect_args,
            **options,
        )
        event.listen(engine, "handle_error", _invalidate_the_pool_when_the_server_ends_sessions)
        return engine
    path = _on_disk(parsed.database)
    if path is not None:
        create_private_file(path)
        engine = create_engine(
            parsed, pool_size=pool_size, max_overflow=max_overflow, hide_parameters=True
        )
    else:
        engine = create_engine(parsed, hide_parameters=True)
    _configure_sqlite(engine, read_only=read_only)
    return engine


# SQLite result codes that mean "not now" rather than a bug: busy or locked beyond the busy
# timeout, the file cannot be opened, an I/O error (the primary code; extended codes share it).
_SQLITE_TRANSIENT = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR}
)


def unavailable_cause(error: BaseException) -> str | None:
    """A short name for a database fault worth retrying (no SQL, no values); None for a bug.

    Worth retrying: a connection that was lost, refused or closed (SQLAlchemy then discards
    the pool's connections, so the next call reconnects), a server shutting down or
    refusing connections, a full pool, SQLite locked beyond its busy timeout. Anything
    else (a syntax error, a missing table, a constraint) is a bug and stays INTERNAL.
    """
    if isinstance(error, WriteTimedOut):
        return f"write deadline reached ({error})"
    if isinstance(error, sa_exc.TimeoutError):
        return "connection pool exhausted"
    if isinstance(error, sa_exc.DisconnectionError):
        return "connection lost"
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    original = error.orig
    if error.connection_invalidated:
        return f"connection lost ({type(original).__name__})"
    if isinstance(original, psycopg.OperationalError | psycopg.InterfaceError):
        # Classes 08 (connection), 40 (rollback), 53 (resources), 57 (shutdown), 58 (system).
        sqlstate = getattr(original, "sqlstate", None)
        return f"{type(original).__name__} sqlstate={sqlstate}"
    if isinstance(original, sqlite3.OperationalError):
        code = getattr(original, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_TRANSIENT:
            return f"sqlite {getattr(original, 'sqlite_errorname', code)}"
    return None


# SQLSTATEs with which PostgreSQL ends a session: connection exceptions (class 08) and the
# server's shutdown or restart (57P01 admin_shutdown, the reply to pg_terminate_backend; 57P02
# crash_shutdown; 57P03 cannot_connect_now). Not 57014: a statement cancelled by its timeout.
_SESSION_ENDED = ("08", "57P01", "57P02", "57P03")


def ends_the_session(error: BaseException) -> bool:
    """Whether a DBAPI error says that the database server ended the connection's session.

    SQLAlchemy's psycopg dialect calls a connection lost only once psycopg has seen it
    closed, which can come after the server's own message saying so: a connection that
    answered "terminating connection due to administrator command" would be left in the pool
    (and its read not run again), as would every other connection of the ended sessions."""
    sqlstate = getattr(error, "sqlstate", None) or ""
    return isinstance(error, psycopg.Error) and sqlstate.startswith(_SESSION_ENDED)


def _invalidate_the_pool_when_the_server_ends_sessions(context: ExceptionContext) -> None:
    if ends_the_session(context.original_exception):
        context.is_disconnect = True  # SQLAlchemy then invalidates the pool


def connection_lost(error: BaseException) -> bool:
    """Whether `error` is a lost connection, after which the pool has dropped its connections
    from before the loss (so a read may be run again on a fresh one)."""
    if isinstance(error, sa_exc.DisconnectionError):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def create_private_file(path: Path) -> None:
    """Creates the SQLite file readable by its owner only (0600), in a 0700 folder if the folder
    is new. SQLite gives its -wal and -shm files the mode of the database file."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class WriterLock:
    """Queues the writers to one SQLite file: this process's threads, then other processes,
    each waiting until a deadline at most.

    SQLite admits one writer at a time, and a writer that finds the file locked
    waits in SQLite's busy handler, which polls with sleeps of up to 100 ms: under
    load that made write latency spiky (p99 near a second) and left the file idle
    between sleeps. Threads queue on a lock and processes on an flock() of a file
    beside the database, so the file is handed over the moment it is free.

    Measured again against SQLAlchemy's pysqlite recipe alone (BEGIN IMMEDIATE in the
    begin hook, which stays, and no lock), `make bench`, 2 workers, two runs each:
    Update p99 569-1363 ms without the lock vs 122-180 ms with it, Create p99
    920-977 ms vs 160-178 ms, at the same or lower RPS. So the lock stays.

    Every wait ends at the caller's deadline: a writer that waited past its call's
    deadline must not write (its client was told it failed), and a waiting writer holds
    a thread of its worker.
    """

    def __init__(self, path: Path | None) -> None:
        self._threads = threading.Lock()
        self._file = None if path is None else _FileLock(path)

    def acquire(self, deadline: float) -> bool:
        """Takes the lock unless `deadline` (time.monotonic()) comes first; False then."""
        if not self._threads.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            if self._file is None or self._file.acquire(deadline):
                return True
        except BaseException:
            self._threads.release()
            raise
        self._threads.release()
        return False

    def release(self) -> None:
        try:
            if self._file is not None:
                self._file.release()
        finally:
            self._threads.release()


class _FileLock:
    """An flock() of a file, waited for until a deadline; one caller at a time (the holder of
    WriterLock's thread lock).

    flock() cannot time out, so a lock another process holds is waited for by a helper thread
    of this process while the caller waits for the helper until its deadline. A caller that
    gives up leaves the helper waiting, and the next caller takes its wait over; a lock the
    helper gets while no caller waits is let go at once, so a process never holds the writer
    for nobody. The file is handed over as soon as it is free, as with a blocking flock().
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._state = threading.Condition()
        self._helper: threading.Thread | None = None
        self._asked = False  # the helper is to start waiting
        self._waiting = False  # the helper waits in flock(LOCK_EX), or is about to
        self._wanted = False  # a caller waits for the helper
        self._granted = False  # the helper got the lock for that caller

    def acquire(self, deadline: float) -> bool:
        with self._state:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            if not self._waiting:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass
                self._waiting = self._asked = True
                if self._helper is None:
                    self._helper = threading.Thread(
                        target=self._wait_for_the_file, name="writer-lock", daemon=True
                    )
                    self._helper.start()
                self._state.notify_all()
            self._wanted = True
            try:
                granted = self._state.wait_for(
                    lambda: self._granted, max(0.0, deadline - time.monotonic())
                )
            finally:
                self._wanted = False
            self._granted = False
            return granted

    def release(self) -> None:
        assert self._fd is not None, "released before it was acquired"
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _wait_for_the_file(self) -> None:
        while True:
            with self._state:
                self._state.wait_for(lambda: self._asked)
                self._asked = False
                fd = self._fd
            assert fd is not None
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks, without holding the state
            with self._state:
                self._waiting = False
                if self._wanted:
                    self._granted = True
                    self._state.notify_all()
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)


_writer_locks: weakref.WeakKeyDictionary[Engine, WriterLock] = weakref.WeakKeyDictionary()
_writer_locks_guard = threading.Lock()


def writer_lock_for(engine: Engine) -> WriterLock | None:
    """The WriterLock of an SQLite engine's file; None for databases with real concurrency."""
    if engine.dialect.name != "sqlite":
        return None
    with _writer_locks_guard:
        lock = _writer_locks.get(engine)
        if lock is None:
            path = sqlite_file(engine)
            lock = WriterLock(None if path is None else Path(f"{path}.writer-lock"))
            _writer_locks[engine] = lock
        return lock


def sqlite_file(engine: Engine) -> Path | None:
    """The file of an SQLite engine's database; None for other databases and SQLite in memory
    or named by a URI."""
    if engine.dialect.name != "sqlite":
        return None
    return _on_disk(engine.url.database)


def _on_disk(database: str | None) -> Path | None:
    """The file an SQLite URL's database names; None in memory or for a `file:` URI."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


# SET LOCAL for both, in one round trip; both end with the transaction.
_POSTGRES_WAIT_BOUNDS = text(
    "SELECT set_config('lock_timeout', :ms, true), set_config('statement_timeout', :ms, true)"
)


def begin_write(connection: Connection, deadline: float) -> None:
    """Begins a write transaction on `connection` in which no wait for the database lasts
    beyond `deadline` (time.monotonic()): past it, a statement fails (SQLite busy, PostgreSQL
    lock or statement timeout) rather than wait on, and the write is UNAVAILABLE.

    SQLite: the busy timeout of BEGIN IMMEDIATE, which waits for the file's write lock (held
    by another program: this one's writers queue on WriterLock first). PostgreSQL: lock waits
    (rows, advisory locks, a concurrent insert of the same key) and each statement, each
    bounded by the time left when the transaction begins.
    """
    milliseconds = max(1, int((deadline - time.monotonic()) * 1000))
    if connection.dialect.name == "sqlite":
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None, "an open Connection has its DBAPI connection"
        dbapi_connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
        connection.begin()
        return
    connection.begin()
    connection.execute(_POSTGRES_WAIT_BOUNDS, {"ms": str(milliseconds)})


def _configure_sqlite(engine: Engine, *, read_only: bool) -> None:
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
            if read_only:
                cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    if read_only:
        return  # no BEGIN: each statement is its own transaction, readers never wait

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A transaction that reads and then writes must hold the write lock from the start:
        # with a deferred BEGIN its read snapshot may be stale by the time it writes, and
        # SQLite then fails at once (SQLITE_BUSY_SNAPSHOT) instead of waiting its turn.
        # IMMEDIATE queues writers behind busy_timeout, so concurrent writes serialize.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
