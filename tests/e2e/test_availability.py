"""Availability through the real gateway: a busy server answers 429 with Retry-After, a REST
write that cannot be done within its deadline is 503 and never written, and abusive clients
leave a well-behaved client served, the upstream healthy and the workers' memory bounded.

Each test has a stack of its own: they hold its SQLite writer lock, or load it on purpose (on
each database).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import abuse, procstats
from gateway import launcher
from server.domain import messages
from tests.e2e.payloads import upcoming
from tests.e2e.rest import HTTP_1_1, Response, RestClient, assert_error
from tests.e2e.stack import Stack
from tests.integration.databases import POSTGRESQL, postgres_server_url
from tests.integration.locks import sqlite_writer_held, until
from tests.temporary_database import temporary_postgres_database

RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14
# Seconds of abusive load: enough for the gateway to health-check the server a few times.
ABUSE_SECONDS = 8.0
WORKERS = 2
PEAK_RSS_MB = 300
REST_DEADLINE_SECONDS = 2.0


@pytest.fixture
def small_stack(tmp_path: Path) -> Iterator[Stack]:
    """One write thread that admits one write at a time, and a REST deadline of 2 s."""
    stack = Stack(tmp_path, rest_deadline_seconds=REST_DEADLINE_SECONDS)
    stack.env.update(EXPERIMENTS_WRITE_THREADS="1", EXPERIMENTS_MAX_CALLS="1")
    yield from stack.running()


def _create_in_background(
    rest: RestClient, path: str, token: str, payload: object
) -> list[Response]:
    answers: list[Response] = []
    thread = threading.Thread(
        target=lambda: answers.append(rest.post(path, token=token, json_body=payload)),
        daemon=True,
    )
    thread.start()
    return answers


def test_a_server_full_of_writes_answers_429_with_retry_after(small_stack: Stack) -> None:
    world = small_stack.new_world()
    with sqlite_writer_held(small_stack.database_url) as someone_waits:
        waiting = _create_in_background(
            RestClient(small_stack.base_url, HTTP_1_1),
            world.experiments,
            world.tokens.settings,
            upcoming(world),
        )
        until(someone_waits, "the first create to wait for the writer lock")

        refused = RestClient(small_stack.base_url, HTTP_1_1).post(
            world.experiments, token=world.tokens.settings, json_body=upcoming(world)
        )
    until(lambda: waiting, "the waiting create to be answered")

    body = assert_error(refused, 429, RESOURCE_EXHAUSTED)
    assert body["message"] == messages.BUSY
    assert refused.headers["retry-after"] == "1"
    # The first create was admitted, not refused: it is written once the lock is free.
    assert waiting[0].status == 201, waiting[0].body


def test_a_rest_write_stalled_past_its_deadline_is_503_and_never_written(
    small_stack: Stack,
) -> None:
    world = small_stack.new_world()
    rest = RestClient(small_stack.base_url, HTTP_1_1)
    payload = upcoming(world, name="stalled past its deadline")
    with sqlite_writer_held(small_stack.database_url):
        stalled = rest.post(world.experiments, token=world.tokens.settings, json_body=payload)

    # The server's answer (before Envoy's own 504 at 10 s more), in our words.
    assert_error(stalled, 503, UNAVAILABLE)
    listed = rest.get(world.experiments, token=world.tokens.settings).json()["results"]
    assert payload["name"] not in [experiment.get("name") for experiment in listed]


@pytest.fixture
def busy_stack(backend: str, tmp_path: Path) -> Iterator[Stack]:
    """The production process model (several worker processes sharing the port), on each
    database: the abusive requests never reach it, the well-behaved reads do."""
    with contextlib.ExitStack() as cleanup:
        url = None
        if backend == POSTGRESQL:
            server = postgres_server_url()
            assert server is not None
            url = cleanup.enter_context(temporary_postgres_database(server))
        stack = Stack(tmp_path, url)
        stack.env["EXPERIMENTS_WORKERS"] = str(WORKERS)
        yield from stack.running()


def test_abusive_clients_leave_reads_served_and_the_upstream_healthy(
    busy_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    world = busy_stack.new_world()
    rest = RestClient(busy_stack.base_url, HTTP_1_1)
    created = rest.post(world.experiments, token=world.tokens.settings, json_body=upcoming(world))
    assert created.status == 201, created.body
    assert busy_stack.server is not None and busy_stack.envoy is not None
    server = busy_stack.server
    workers = launcher.poll(
        lambda: procstats.spawned_workers(server.pid) or None,
        what="the server's workers",
        process=server,
    )

    report = abuse.run(
        abuse.Target(
            grpc_port=busy_stack.grpc_port,
            envoy=busy_stack.envoy,
            api_key=world.tokens.settings,
            organization_id=world.organization_id,
            experiment_id=created.json()["id"],
            workers=tuple(workers),
        ),
        ABUSE_SECONDS,
    )

    with capsys.disabled():
        print("\nabuse:", *report.lines(), sep="\n  ")
    assert report.abusive.calls > 0
    assert report.no_healthy_upstream == 0
    assert report.unhealthy_spells == 0
    assert report.good_share >= 0.99
    assert max(report.peak_rss_mb) < PEAK_RSS_MB
