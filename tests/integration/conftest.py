"""Database fixtures of the integration tests: every test gets its own empty database.

`database_url` runs a test on SQLite and on PostgreSQL (skipped unless
EXPERIMENTS_TEST_POSTGRES_URL is set); `migrated_url` is such a database with the schema
made by the Alembic migrations (a copy of a database they upgraded once per session);
`engine` connects to it, `read_engine` too with the read-only connections that the server's
reads use. `server_ports` serves it with real experiments-server processes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from gateway import launcher
from server.adapters import database
from tests.integration.databases import backend_params, migrated_template, temporary_database
from tests.ports import port_served


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


@pytest.fixture
def server_ports(migrated_url: str, tmp_path: Path) -> Iterator[list[int]]:
    """experiments-server processes on `migrated_url`, by their ports: two instances on
    PostgreSQL, one of two worker processes on SQLite (a file of one machine), listed twice so
    that each of two clients has one."""
    sqlite = make_url(migrated_url).get_backend_name() == "sqlite"
    instances = [2] if sqlite else [1, 1]  # worker processes of each instance
    started: list[subprocess.Popen[str]] = []
    found: list[int] = []
    try:
        for n, workers in enumerate(instances):
            log = tmp_path / f"server-{n}.log"
            with log.open("w") as output:
                process = launcher.spawn(
                    [launcher.console_script("experiments-server"), f"--workers={workers}"],
                    env={
                        **os.environ,
                        "EXPERIMENTS_DATABASE_URL": migrated_url,
                        "EXPERIMENTS_GRPC_PORT": "0",
                        "EXPERIMENTS_WATCH_HEARTBEAT_SECONDS": "1",
                    },
                    output=output,
                )
            started.append(process)
            port = port_served(log, process)
            launcher.wait_for_grpc("127.0.0.1", port, process, log=log)
            found.append(port)
        # On SQLite both clients of a pair reach the one port; the kernel spreads connections.
        yield found * 2 if sqlite else found
    finally:
        for process in started:
            launcher.stop(process)
