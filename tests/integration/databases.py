"""Throwaway databases for tests: a fresh SQLite file, or a fresh PostgreSQL database.

The PostgreSQL server to create databases on is EXPERIMENTS_TEST_POSTGRES_URL when set (it
must then be reachable: the tests fail otherwise), else the default local server
postgresql+psycopg://postgres@127.0.0.1:5432/test if a probe (once per session) reaches it.
Without one, the PostgreSQL variants are not generated at all and the run says so in one
line (tests/conftest.py). Each database gets a random name and is dropped afterwards, so
no test sees another's rows.

A migrated database is a copy of one the Alembic migrations upgraded once per session (per
backend, and per pytest-xdist worker): running the migrations took longer than making the
database itself.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from server.adapters import schema
from server.adapters.database import engine_url
from server.adapters.unit_of_work import SqlAlchemyReadUnitOfWork, SqlAlchemyUnitOfWork
from server.entrypoints.translate import RENDERER
from tests.temporary_database import temporary_postgres_database

POSTGRES_URL_VARIABLE = "EXPERIMENTS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PROBE_TIMEOUT_SECONDS = 2
SQLITE = "sqlite"
POSTGRESQL = "postgresql"


@functools.cache
def postgres_server_url() -> str | None:
    """The PostgreSQL server of this test session, or None if there is none."""
    configured = os.environ.get(POSTGRES_URL_VARIABLE)
    if configured:
        return configured
    return DEFAULT_POSTGRES_URL if _reachable(DEFAULT_POSTGRES_URL) else None


def _reachable(url: str) -> bool:
    engine = create_engine(engine_url(url), connect_args={"connect_timeout": PROBE_TIMEOUT_SECONDS})
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


def postgres_status() -> str:
    """One line for the test report: whether and where the PostgreSQL variants run."""
    server = postgres_server_url()
    if server is not None:
        return f"PostgreSQL variants run on {engine_url(server).render_as_string()}"
    return (
        f"PostgreSQL variants NOT run: nothing answers at {DEFAULT_POSTGRES_URL} and "
        f"{POSTGRES_URL_VARIABLE} is not set (only SQLite was tested)"
    )


def backend_params() -> list[Any]:
    """pytest parameters for each database; PostgreSQL only when a server is there."""
    params = [pytest.param(SQLITE, id=SQLITE)]
    if postgres_server_url() is not None:
        params.append(pytest.param(POSTGRESQL, id=POSTGRESQL, marks=pytest.mark.postgres))
    return params


@contextmanager
def temporary_database(
    backend: str, directory: Path, *, template: str | None = None
) -> Iterator[str]:
    """The URL of an empty database of `backend`, removed afterwards; with `template` (a URL
    from `migrated_template`), a copy of that database."""
    if backend == SQLITE:
        # A folder that does not exist yet: make_engine must create it.
        path = directory / "database" / "experiments.sqlite3"
        if template is not None:
            path.parent.mkdir(parents=True)
            shutil.copyfile(_sqlite_path(template), path)
        yield f"sqlite:///{path}"
        return
    server = postgres_server_url()
    if server is None:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set")
    copied = None if template is None else engine_url(template).database
    with temporary_postgres_database(server, template=copied) as url:
        yield url


@contextmanager
def migrated_template(backend: str, directory: Path) -> Iterator[str]:
    """The URL of a database of `backend` that the migrations upgraded to head, with nothing
    connected to it once made: for `temporary_database` to copy."""
    if backend == SQLITE:
        url = f"sqlite:///{directory / 'template.sqlite3'}"
        schema.upgrade(url)
        yield url
        return
    server = postgres_server_url()
    if server is None:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set")
    with temporary_postgres_database(server, prefix="experiments_template") as url:
        schema.upgrade(url)  # its engine is disposed: no connection is left open
        yield url


def _sqlite_path(url: str) -> Path:
    database = engine_url(url).database
    assert database is not None, url
    return Path(database)


def unit_of_work(engine: Engine) -> SqlAlchemyUnitOfWork:
    """A unit of work on the test's engine, as the server makes one per writing RPC."""
    return SqlAlchemyUnitOfWork(engine, renderer=RENDERER)


def read_unit_of_work(read_engine: Engine) -> SqlAlchemyReadUnitOfWork:
    """A read unit of work on the test's read-only engine, as the server makes one per read."""
    return SqlAlchemyReadUnitOfWork(read_engine)
