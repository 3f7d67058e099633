"""Connections that hold a slot without using it cannot lock real clients out (issue 20, item
3): the gateway's connection limit, its idle and header timeouts, set low here (the defaults
and why are in README, "Limits")."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import launcher
from tests.e2e.rest import HTTP_1_1, Response, RestClient
from tests.e2e.stack import Stack

# A small gateway, so that a flood is a few dozen sockets, with short timeouts, so that the
# test takes seconds.
SMALL = launcher.ConnectionLimits(
    max_connections=20, idle_timeout_seconds=2, request_headers_timeout_seconds=2
)
DEADLINE = 15.0


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Stack]:
    yield from Stack(tmp_path, connection_limits=SMALL).running()


def _address(stack: Stack) -> tuple[str, int]:
    assert stack.envoy is not None
    return "127.0.0.1", stack.envoy.http_port


def _read_until_closed(sock: socket.socket) -> bytes | None:
    """What the gateway sent on `sock` before it closed it, or None if it did not close it
    within the deadline."""
    sock.settimeout(1.0)
    received = b""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def _closed_by_the_gateway(sock: socket.socket) -> bool:
    return _read_until_closed(sock) is not None


def test_more_idle_connections_than_the_limit_do_not_lock_a_new_client_out(
    small: Stack,
) -> None:
    world = small.new_world()
    idle = [socket.create_connection(_address(small)) for _ in range(SMALL.max_connections + 10)]
    rest = RestClient(small.base_url, HTTP_1_1)
    try:

        def served() -> Response | None:
            # While the idle ones hold every slot, the gateway closes a new connection at once.
            with contextlib.suppress(ConnectionError, OSError):
                response = rest.get(world.experiments, token=world.tokens.settings)
                if response.status == 200:
                    return response
            return None

        assert small.envoy is not None
        launcher.poll(
            served, what="a new client's request", process=small.envoy.process, timeout=DEADLINE
        )
        assert all(_closed_by_the_gateway(sock) for sock in idle)
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_that_never_sends_anything_is_closed(small: Stack) -> None:
    with socket.create_connection(_address(small)) as sock:
        assert _closed_by_the_gateway(sock)


def test_a_request_whose_headers_never_end_is_closed(small: Stack) -> None:
    with socket.create_connection(_address(small)) as sock:
        sock.sendall(b"GET /api/v5/orgs/x/experiments HTTP/1.1\r\nHost: gateway\r\nX-Slow: 1")

        received = _read_until_closed(sock)

    assert received is not None, "the gateway kept the connection open"
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b'"code":4' in received
