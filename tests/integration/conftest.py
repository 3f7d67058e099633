"""Database fixtures of the integration tests: every test gets its own empty database.

`database_url` runs a test on SQLite and on PostgreSQL (skipped unless
EXPERIMENTS_TEST_POSTGRES_URL is set); `migrated_url` is the same database with the
schema made by the Alembic migrations; `engine` connects to it, `read_engine` too with
the read-only connections that the server's reads use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from server.adapters import database, schema
from tests.integration.databases import backend_params, temporary_database


@pytest.fixture(params=backend_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, without tables, of each backend in turn."""
    with temporary_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """An empty database whose schema the Alembic migrations made (upgraded to head)."""
    schema.upgrade(database_url)
    return database_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = database.make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def read_engine(migrated_url: str) -> Iterator[Engine]:
    engine = database.make_engine(migrated_url, read_only=True)
    yield engine
    engine.dispose()
