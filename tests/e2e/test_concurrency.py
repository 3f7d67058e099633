"""Etags, conditional requests, idempotency keys and a database outage over REST, through
the real Envoy."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from server.domain import messages
from tests.e2e.payloads import upcoming
from tests.e2e.rest import HTTP_1_1, RestClient, assert_error, field_violations
from tests.e2e.stack import Stack, World
from tests.integration.databases import (
    POSTGRES_URL_VARIABLE,
    postgres_server_url,
)
from tests.integration.tcp_proxy import TcpProxy
from tests.temporary_database import temporary_postgres_database

ABORTED = 10
INVALID_ARGUMENT = 3
UNAVAILABLE = 14


def _create(
    client: RestClient, world: World, payload: dict[str, Any] | None = None, **headers: str
) -> tuple[str, dict[str, Any], str]:
    response = client.post(
        world.experiments,
        token=world.tokens.settings,
        json_body=payload or upcoming(world),
        headers=headers,
    )
    assert response.status == 201, response.body
    body: dict[str, Any] = response.json()
    return f"{world.experiments}/{body['id']}", body, response.headers["etag"]


def test_every_answer_with_an_experiment_carries_its_etag_as_a_quoted_header(
    client: RestClient, world: World
) -> None:
    url, created, created_tag = _create(client, world)
    got = client.get(url, token=world.tokens.settings)
    updated = client.put(url, token=world.tokens.settings, json_body=upcoming(world, "Renamed"))

    assert created_tag == f'"{created["etag"]}"'
    assert got.headers["etag"] == created_tag
    assert got.json()["etag"] == created["etag"]
    assert updated.status == 200, updated.body
    assert updated.headers["etag"] == f'"{updated.json()["etag"]}"' != created_tag


def test_a_put_with_a_stale_if_match_is_412_and_writes_nothing(
    client: RestClient, world: World
) -> None:
    url, _, stale = _create(client, world)
    first = client.put(
        url,
        token=world.tokens.settings,
        json_body=upcoming(world, "First"),
        headers={"If-Match": stale},
    )
    assert first.status == 200, first.body

    second = client.put(
        url,
        token=world.tokens.settings,
        json_body=upcoming(world, "Second"),
        headers={"If-Match": stale},
    )

    assert_error(second, 412, ABORTED)
    assert "etag" not in second.headers
    assert client.get(url, token=world.tokens.settings).json()["name"] == "First"


def test_a_delete_with_a_stale_if_match_is_412_and_one_with_the_current_etag_is_204(
    client: RestClient, world: World
) -> None:
    url, _, stale = _create(client, world)
    current = client.put(url, token=world.tokens.settings, json_body=upcoming(world))
    assert current.status == 200, current.body

    refused = client.delete(url, token=world.tokens.settings, headers={"If-Match": stale})
    assert_error(refused, 412, ABORTED)
    assert client.get(url, token=world.tokens.settings).status == 200

    deleted = client.delete(
        url,
        token=world.tokens.settings,
        headers={"If-Match": f"{stale}, {current.headers['etag']}"},
    )
    assert deleted.status == 204, deleted.body


def test_a_get_whose_if_none_match_names_the_etag_is_304_without_a_body(
    client: RestClient, world: World
) -> None:
    url, _, tag = _create(client, world)

    cached = client.get(url, token=world.tokens.settings, headers={"If-None-Match": tag})
    changed = client.get(url, token=world.tokens.settings, headers={"If-None-Match": '"0"'})

    assert cached.status == 304, cached.body
    assert cached.body == b""
    assert cached.headers["etag"] == tag
    assert "content-type" not in cached.headers
    assert changed.status == 200, changed.body
    assert changed.json()["etag"] == tag.strip('"')


def test_a_create_retried_with_its_idempotency_key_returns_the_first_experiment(
    client: RestClient, world: World
) -> None:
    key, payload = str(uuid.uuid4()), upcoming(world)
    _, first, _ = _create(client, world, payload, **{"Idempotency-Key": key})
    _, retried, _ = _create(client, world, payload, **{"Idempotency-Key": key})

    assert retried["id"] == first["id"]


def test_an_idempotency_key_reused_for_another_body_is_400_naming_it(
    client: RestClient, world: World
) -> None:
    key = str(uuid.uuid4())
    _create(client, world, upcoming(world), **{"Idempotency-Key": key})

    response = client.post(
        world.experiments,
        token=world.tokens.settings,
        json_body=upcoming(world, "Another experiment"),
        headers={"Idempotency-Key": key},
    )

    body = assert_error(response, 400, INVALID_ARGUMENT)
    assert set(field_violations(body)) == {"idempotency-key"}


@pytest.fixture
def stack_behind_a_proxy(tmp_path: Path) -> Iterator[tuple[Stack, TcpProxy]]:
    """A stack of its own over a throwaway PostgreSQL database reached through a TCP proxy."""
    server = postgres_server_url()
    if server is None:
        pytest.skip(f"needs {POSTGRES_URL_VARIABLE}")
    with temporary_postgres_database(server) as url:
        target = make_url(url)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
        through_proxy = target.set(host="127.0.0.1", port=proxy.port)
        stack = Stack(tmp_path, through_proxy.render_as_string(hide_password=False))
        try:
            stack.start()
            yield stack, proxy
        finally:
            stack.close()
            proxy.close()


def test_a_database_outage_is_503_json_saying_retry_then_recovers(
    stack_behind_a_proxy: tuple[Stack, TcpProxy],
) -> None:
    stack, proxy = stack_behind_a_proxy
    world = stack.new_world()
    rest = RestClient(stack.base_url, HTTP_1_1)
    assert rest.get(world.experiments, token=world.tokens.settings).status == 200

    proxy.refuse()
    down = rest.get(world.experiments, token=world.tokens.settings)
    proxy.accept()

    body = assert_error(down, 503, UNAVAILABLE)
    assert body["message"] == messages.UNAVAILABLE
    deadline = time.monotonic() + 15
    while rest.get(world.experiments, token=world.tokens.settings).status != 200:
        assert time.monotonic() < deadline, "no recovery"
        time.sleep(0.05)  # polling for recovery, not waiting for time to pass
