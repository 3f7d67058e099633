"""SQLite's WAL is copied back into the database file by each worker's checkpointer thread,
not by the write whose commit filled it (server/adapters/checkpoints.py), and the WAL stays
bounded when no checkpointer runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import Engine, text

from server.adapters.checkpoints import BACKSTOP_PAGES, WalCheckpointer
from server.adapters.database import make_engine
from tests.integration.databases import temporary_database
from tests.integration.grpc_client import published, running_client

PAGE = 4096
# SQLite's own default threshold, at which a commit would checkpoint without the checkpointer.
SQLITE_DEFAULT_PAGES = 1000


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.sqlite3'}")
    yield engine
    engine.dispose()


def _database_file(engine: Engine) -> Path:
    assert engine.url.database is not None
    return Path(engine.url.database)


def _write_pages(engine: Engine, pages: int, *, per_commit: int = 100) -> None:
    """Commits about `pages` pages of new rows, `per_commit` pages per transaction."""
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS blobs (b BLOB)"))
        connection.commit()
        for _ in range(pages // per_commit):
            for _ in range(per_commit):
                connection.execute(text("INSERT INTO blobs VALUES (randomblob(3900))"))
            connection.commit()


def test_commits_leave_the_checkpoint_to_the_checkpointer(sqlite_engine: Engine) -> None:
    checkpointer = WalCheckpointer.for_engine(sqlite_engine)
    assert checkpointer is not None
    database = _database_file(sqlite_engine)
    before = database.stat().st_size
    # Past SQLite's own threshold: without the checkpointer a commit would have copied the
    # WAL into the file, and the file would have grown by those pages.
    _write_pages(sqlite_engine, 2 * SQLITE_DEFAULT_PAGES)
    assert database.stat().st_size < before + SQLITE_DEFAULT_PAGES * PAGE

    checkpointer.start()
    try:
        _write_pages(sqlite_engine, 100)
        assert checkpointer.wait_for_checkpoints(1, timeout=30)
    finally:
        checkpointer.stop()
    # Every committed page is in the file now, the WAL no longer needed for any of them.
    assert database.stat().st_size >= 2 * SQLITE_DEFAULT_PAGES * PAGE
    checkpointed = sqlite3.connect(database)
    try:
        _, in_wal, copied = checkpointed.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        checkpointed.close()
    assert in_wal == copied


def test_without_a_running_checkpointer_sqlite_still_bounds_the_wal(
    sqlite_engine: Engine,
) -> None:
    assert WalCheckpointer.for_engine(sqlite_engine) is not None  # made, never started
    database = _database_file(sqlite_engine)
    _write_pages(sqlite_engine, BACKSTOP_PAGES + 500)
    # A commit past the backstop copied the WAL back, and the next writer started it over.
    assert database.stat().st_size >= BACKSTOP_PAGES * PAGE * 3 // 4
    wal = Path(f"{database}-wal")
    assert wal.stat().st_size < (BACKSTOP_PAGES + 200) * (PAGE + 24)


def test_a_stopped_checkpointer_copies_nothing_more(sqlite_engine: Engine) -> None:
    checkpointer = WalCheckpointer.for_engine(sqlite_engine)
    assert checkpointer is not None
    checkpointer.start()
    _write_pages(sqlite_engine, 100)
    assert checkpointer.wait_for_checkpoints(1, timeout=30)
    checkpointer.stop()
    done = checkpointer.checkpoints
    _write_pages(sqlite_engine, 100)
    assert not checkpointer.wait_for_checkpoints(done + 1, timeout=0.5)


def test_no_checkpointer_for_postgresql_or_sqlite_in_memory(database_url: str) -> None:
    engine = make_engine(database_url if database_url.startswith("postgresql") else "sqlite://")
    try:
        assert WalCheckpointer.for_engine(engine) is None
    finally:
        engine.dispose()


def test_the_servers_writes_reach_the_database_file_without_a_commit_copying_them(
    tmp_path: Path, migrated_template_of: Callable[[str], str]
) -> None:
    with (
        temporary_database("sqlite", tmp_path, template=migrated_template_of("sqlite")) as url,
        running_client(url) as client,
    ):
        checkpointer = client.server.checkpointer
        assert checkpointer is not None
        done = checkpointer.checkpoints
        created = client.stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=client.org, experiment=published(client.world)
            ),
            metadata=client.metadata(),
            timeout=10,
        )
        assert checkpointer.wait_for_checkpoints(done + 1, timeout=30)
        # The file alone, without its WAL, holds the experiment: the checkpointer copied it.
        alone = tmp_path / "alone.sqlite3"
        alone.write_bytes(Path(url.removeprefix("sqlite:///")).read_bytes())
        copy = sqlite3.connect(alone)
        try:
            names = [name for (name,) in copy.execute("SELECT name FROM experiments")]
        finally:
            copy.close()
    assert names == [created.name]
