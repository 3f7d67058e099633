"""Fixtures of the end-to-end tests: the real stack, demo worlds and REST clients.

One stack per database serves the whole session (startup takes about two seconds): SQLite, and
PostgreSQL when a server is there (tests/integration/databases.py), on a throwaway database. Each
is started when a test first needs it and kept to the end of the session (of each pytest-xdist
worker), whatever order pytest runs the tests in.
Tests share a stack but not state: each creates the experiments it reads, and a test that needs
an organization to itself (pagination, cross-organization) creates a fresh demo world. A test
that stops the server gets a stack of its own.

Every test runs on each database. A test that takes `client` also runs over HTTP/1.1 and HTTP/2,
on SQLite only: what the HTTP version changes (headers, trailers, framing) is Envoy's part and
does not depend on the database behind the server. So only tests of those take `client`: one
per status the gateway maps or writes itself, the headers, the body limits. Tests of what the
server answers take `http1`, and a business rule is tested once, in tests/unit (or in
tests/integration where it needs the database), not again here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.front_end import FrontEnd, serve_front_end
from tests.e2e.rest import HTTP_1_1, HTTP_2, RestClient
from tests.e2e.stack import Stack, World
from tests.integration.databases import (
    POSTGRESQL,
    SQLITE,
    backend_params,
    postgres_server_url,
)
from tests.temporary_database import temporary_postgres_database


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    backends = [param.values[0] for param in backend_params()]
    if metafunc.definition.get_closest_marker("one_database"):
        backends = [SQLITE]
    if "protocol" in metafunc.fixturenames:
        combinations = [(SQLITE, HTTP_1_1), (SQLITE, HTTP_2)]
        combinations += [(backend, HTTP_1_1) for backend in backends if backend != SQLITE]
        metafunc.parametrize(
            ("backend", "protocol"),
            [
                pytest.param(*pair, id=f"{pair[0]}-{pair[1]}", marks=_marks(pair[0]))
                for pair in combinations
            ],
            scope="session",
        )
    else:
        metafunc.parametrize(
            "backend",
            [pytest.param(backend, id=backend, marks=_marks(backend)) for backend in backends],
            scope="session",
        )


def _marks(backend: str) -> list[Any]:
    return [pytest.mark.postgres] if backend == POSTGRESQL else []


@pytest.fixture(scope="session")
def allowed_front_end() -> Iterator[FrontEnd]:
    """A page on an origin the session's gateways allow (EXPERIMENTS_CORS_ORIGINS)."""
    with serve_front_end() as front_end:
        yield front_end


@pytest.fixture(scope="session")
def other_front_end() -> Iterator[FrontEnd]:
    """A page on an origin no gateway allows."""
    with serve_front_end() as front_end:
        yield front_end


class SharedStacks:
    """The session's stacks by database, each started on first use, and their shared worlds.

    pytest tears a session fixture down whenever the next test has another parameter (here the
    database, and the protocol beside it), and would start a stack again for it; these stay up.
    """

    def __init__(
        self,
        cleanup: ExitStack,
        tmp_path_factory: pytest.TempPathFactory,
        cors_origins: Sequence[str],
    ) -> None:
        self._cleanup = cleanup
        self._tmp_path_factory = tmp_path_factory
        self._cors_origins = cors_origins
        self._stacks: dict[str, Stack] = {}
        self._worlds: dict[tuple[str, str], World] = {}

    def stack(self, backend: str) -> Stack:
        if backend not in self._stacks:
            workdir = self._tmp_path_factory.mktemp(f"e2e-{backend}")
            url = None
            if backend != SQLITE:
                server = postgres_server_url()
                assert server is not None
                url = self._cleanup.enter_context(temporary_postgres_database(server))
            stack = Stack(workdir, url, cors_origins=self._cors_origins)
            self._cleanup.callback(stack.close)
            stack.start()
            self._stacks[backend] = stack
        return self._stacks[backend]

    def world(self, backend: str, name: str) -> World:
        """The demo world `name` of the stack of `backend`, made once."""
        if (backend, name) not in self._worlds:
            self._worlds[(backend, name)] = self.stack(backend).new_world()
        return self._worlds[(backend, name)]


@pytest.fixture(scope="session")
def shared_stacks(
    tmp_path_factory: pytest.TempPathFactory, allowed_front_end: FrontEnd
) -> Iterator[SharedStacks]:
    with ExitStack() as cleanup:
        yield SharedStacks(cleanup, tmp_path_factory, [allowed_front_end.origin])


@pytest.fixture(scope="session")
def stack(backend: str, shared_stacks: SharedStacks) -> Stack:
    return shared_stacks.stack(backend)


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own (SQLite), for tests that stop the server."""
    yield from Stack(tmp_path).running()


@pytest.fixture(scope="session")
def world(backend: str, shared_stacks: SharedStacks) -> World:
    return shared_stacks.world(backend, "world")


@pytest.fixture(scope="session")
def other_world(backend: str, shared_stacks: SharedStacks) -> World:
    """A second demo world, for calls across organizations."""
    return shared_stacks.world(backend, "other_world")


@pytest.fixture
def fresh_world(stack: Stack) -> World:
    """An organization no other test touches."""
    return stack.new_world()


@pytest.fixture
def client(protocol: str, stack: Stack) -> Iterator[RestClient]:
    """A REST client of the session's gateway: HTTP/1.1 and HTTP/2 (see the module's notes)."""
    rest = RestClient(stack.base_url, protocol)
    yield rest
    rest.close()


@pytest.fixture
def http1(stack: Stack) -> Iterator[RestClient]:
    rest = RestClient(stack.base_url, HTTP_1_1)
    yield rest
    rest.close()
