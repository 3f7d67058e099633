"""SQLite's WAL checkpoints, on a thread of each worker instead of inside a write's commit.

A checkpoint copies the pages written to the WAL back into the database file and fsyncs it.
SQLite runs one by itself whenever a commit leaves the WAL over `wal_autocheckpoint` pages
(1,000 by default), inside that commit: the write holds SQLite's one writer (and WriterLock,
server/adapters/database.py) through the copy and the fsync, and every other write waits.
A bench Create writes about 33 pages, so one commit in 30 took about 7 ms here instead of
0.1 ms. With the checkpointer, over 4,500 bench creates in-process, the mean commit went from
355 to 193 us and its p99 from 7.2 to 0.5 ms; under load, Create +7% and the mixed phase's
p99 -20% (bench/README.md, "Issue 18, item 5, third pass").

Each worker's WalCheckpointer runs a PASSIVE checkpoint on a connection of its own after every
COMMITS_PER_CHECKPOINT commits of its process, and INTERVAL_SECONDS after fewer. PASSIVE takes
neither the writer nor waits for readers: it copies what no reader still needs while writes go
on, and the next writer starts the WAL over once all of it is copied. The write connections
keep SQLite's own checkpoint as a backstop, at BACKSTOP_PAGES: the WAL never grows much past
that when the checkpointer falls behind, or where none runs (migrations, the admin commands,
the bench's seeding).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, event

from server.adapters.database import sqlite_file

logger = logging.getLogger("experiments.database")

# The write connections' wal_autocheckpoint (pages of 4 KiB: about 16 MiB of WAL).
BACKSTOP_PAGES: Final = 4_000
# The checkpointer copies the WAL back after this many commits of its process (a bench Create
# writes about 33 pages: about SQLite's own 1,000), or once a while after fewer.
COMMITS_PER_CHECKPOINT: Final = 25
INTERVAL_SECONDS: Final = 0.5


def _with_the_backstop(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")


class WalCheckpointer:
    """Checkpoints one SQLite file's WAL on a daemon thread, after this process's commits."""

    def __init__(
        self,
        path: Path,
        commits: int = COMMITS_PER_CHECKPOINT,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self._path = path
        self._commits_per_checkpoint = commits
        self._interval = interval
        self._commits = 0  # since the last checkpoint (approximate: no lock on the count)
        self._due = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)
        self._done = threading.Condition()
        self.checkpoints = 0  # completed, whatever they found to copy

    @classmethod
    def for_engine(cls, engine: Engine) -> WalCheckpointer | None:
        """A checkpointer told of every commit on `engine`, for an SQLite file; None for
        other databases (PostgreSQL checkpoints by itself, in the background). Made before
        the engine's first connection, which gets the backstop like every later one."""
        path = sqlite_file(engine)
        if path is None:
            return None
        checkpointer = cls(path)
        event.listen(engine, "connect", _with_the_backstop)
        event.listen(engine, "commit", checkpointer.written)
        return checkpointer

    def written(self, *_: object) -> None:
        """This process commits: the WAL will have pages to copy back."""
        self._commits += 1
        if self._commits >= self._commits_per_checkpoint:
            self._due.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread once its checkpoint in progress, if any, is over."""
        self._stopped.set()
        self._due.set()
        if self._thread.is_alive():
            self._thread.join()

    def wait_for_checkpoints(self, count: int, timeout: float) -> bool:
        """Waits until `count` checkpoints are complete (for tests); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.checkpoints >= count, timeout)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._due.wait(self._interval)
                self._due.clear()
                if self._stopped.is_set():
                    return
                if self._commits == 0:
                    continue  # nothing written since the last checkpoint
                self._commits = 0
                if connection is None:
                    connection = self._connect()
                self._checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # As the service's own connections: the checkpoint fsyncs the file, not each frame.
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as error:
            # The next commit tries again; meanwhile SQLite's own checkpoint bounds the WAL.
            logger.warning("WAL checkpoint failed (%s); retried after the next commit", error)
            return
        with self._done:
            self.checkpoints += 1
            self._done.notify_all()
