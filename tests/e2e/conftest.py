"""Fixtures of the end-to-end tests: the real stack, demo worlds and REST clients.

One stack serves the whole session (startup takes about two seconds); tests share it but not
state: each creates the experiments it reads, and a test that needs an organization to itself
(pagination, cross-organization) creates a fresh demo world. A test that stops the server gets a
stack of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.rest import HTTP_1_1, HTTP_2, RestClient
from tests.e2e.stack import Stack, World


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        started.start()
        yield started
    finally:
        started.close()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for tests that stop the server."""
    started = Stack(tmp_path)
    try:
        started.start()
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def world(stack: Stack) -> World:
    return stack.new_world()


@pytest.fixture(scope="session")
def other_world(stack: Stack) -> World:
    """A second demo world, for calls across organizations."""
    return stack.new_world()


@pytest.fixture
def fresh_world(stack: Stack) -> World:
    """An organization no other test touches."""
    return stack.new_world()


@pytest.fixture(params=[HTTP_1_1, HTTP_2])
def client(request: pytest.FixtureRequest, stack: Stack) -> Iterator[RestClient]:
    """A REST client of the session's gateway, once per HTTP version."""
    rest = RestClient(stack.base_url, request.param)
    yield rest
    rest.close()


@pytest.fixture
def http1(stack: Stack) -> Iterator[RestClient]:
    rest = RestClient(stack.base_url, HTTP_1_1)
    yield rest
    rest.close()
