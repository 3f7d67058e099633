"""Database fixtures of the integration tests: every test gets its own empty database.

`database_url` runs a test on SQLite and on PostgreSQL (skipped unless
EXPERIMENTS_TEST_POSTGRES_URL is set); `migrated_url` is such a database with the schema
made by the Alembic migrations (a copy of a database they upgraded once per session);
`engine` connects to it, `read_engine` too with the read-only connections that the server's
reads use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine

from server.adapters import database
from tests.integration.databases import backend_params, migrated_template, temporary_database


@pytest.fixture(params=backend_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, without tables, of each backend in turn."""
    with temporary_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_template_of(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], str]]:
    """By backend, made on first use: a database upgraded to head, for `migrated_url` to copy."""
    with ExitStack() as cleanup:
        templates: dict[str, str] = {}

        def template(backend: str) -> str:
            if backend not in templates:
                directory = tmp_path_factory.mktemp(f"template-{backend}")
                templates[backend] = cleanup.enter_context(migrated_template(backend, directory))
            return templates[backend]

        yield template


@pytest.fixture(params=backend_params())
def migrated_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_template_of: Callable[[str], str]
) -> Iterator[str]:
    """An empty database whose schema the Alembic migrations made (upgraded to head)."""
    template = migrated_template_of(request.param)
    with temporary_database(request.param, tmp_path, template=template) as url:
        yield url


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
