"""A worker holds a bounded number of calls: beyond it a call is refused at once with
RESOURCE_EXHAUSTED, health checks are answered while every thread is busy, and streams run on
threads of their own (server/entrypoints/executor.py).

Admission does not depend on the database, so this runs on SQLite, whose writer lock, held by
the test, keeps the server's writes waiting on purpose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.domain import messages
from tests.integration.databases import SQLITE, temporary_database
from tests.integration.grpc_client import Client, published, running_client
from tests.integration.locks import DEADLINE_SECONDS, sqlite_writer_held, until

THREADS = 1
MAX_CALLS = 2


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_template_of: Callable[[str], str]) -> Iterator[str]:
    with temporary_database(SQLITE, tmp_path, template=migrated_template_of(SQLITE)) as url:
        yield url


def _create(client: Client) -> grpc.Future[pb.Experiment]:
    request = pb.CreateExperimentRequest(
        organization_id=client.org, experiment=published(client.world)
    )
    return client.stub.CreateExperiment.future(
        request, metadata=client.metadata(), timeout=DEADLINE_SECONDS
    )


def test_a_full_worker_refuses_at_once_and_still_answers_reads_and_health_checks(
    sqlite_url: str,
) -> None:
    with running_client(
        sqlite_url, threads=THREADS, write_threads=THREADS, max_calls=MAX_CALLS
    ) as client:
        pool = client.server.pools.writes
        with sqlite_writer_held(sqlite_url) as someone_waits:
            running = _create(client)  # takes the worker's one write thread, waiting for the lock
            until(someone_waits, "the first create to wait for the writer lock")
            queued = _create(client)  # waits for the thread
            until(lambda: pool.admitted == MAX_CALLS, "the second create to be queued")

            with pytest.raises(grpc.RpcError) as refused:
                _create(client).result()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.value.details() == messages.BUSY
            trailers: dict[str, object] = {
                m.key: m.value for m in refused.value.trailing_metadata() or ()
            }
            assert trailers.get("retry-after") == "1"

            # Reads have threads of their own: waiting writes do not hold them.
            with pytest.raises(grpc.RpcError) as answered:
                client.stub.GetExperiment(
                    pb.GetExperimentRequest(organization_id=client.org, experiment_id="x"),
                    metadata=client.metadata(),
                    timeout=DEADLINE_SECONDS,
                )
            assert answered.value.code() == grpc.StatusCode.NOT_FOUND

            health = health_pb2_grpc.HealthStub(client.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=DEADLINE_SECONDS
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING

            # Streams have threads of their own: server reflection answers too.
            reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
            answers = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                timeout=DEADLINE_SECONDS,
            )
            services = {s.name for s in next(answers).list_services_response.service}
            assert "experiments.v5.ExperimentService" in services
        # Refused calls were never queued: both admitted creates finish once the lock is free.
        assert running.result().id and queued.result().id
        until(lambda: pool.admitted == 0, "the pool to drain")


def test_streams_beyond_the_limit_are_refused_at_once(sqlite_url: str) -> None:
    with running_client(sqlite_url, max_streams=1) as client:
        health = health_pb2_grpc.HealthStub(client.channel)
        held = health.Watch(health_pb2.HealthCheckRequest(), timeout=DEADLINE_SECONDS)
        assert next(held).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            next(health.Watch(health_pb2.HealthCheckRequest(), timeout=DEADLINE_SECONDS))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        held.cancel()
        until(lambda: client.server.pools.streams.admitted == 0, "the stream to end")
        # Its slot is free again.
        again = health.Watch(health_pb2.HealthCheckRequest(), timeout=DEADLINE_SECONDS)
        assert next(again).status == health_pb2.HealthCheckResponse.SERVING
        again.cancel()


def test_our_watches_beyond_the_limit_are_refused_at_once_and_logged_when_they_end(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = pb.WatchExperimentChangesRequest(organization_id="")
    with (
        caplog.at_level(logging.INFO, logger="experiments.rpc"),
        running_client(sqlite_url, max_streams=1) as client,
    ):
        request.organization_id = client.org
        held = client.stub.WatchExperimentChanges(
            request, metadata=client.metadata(), timeout=DEADLINE_SECONDS
        )
        assert next(held).WhichOneof("event") == "heartbeat"
        with pytest.raises(grpc.RpcError) as refused:
            next(
                client.stub.WatchExperimentChanges(
                    request, metadata=client.metadata(), timeout=DEADLINE_SECONDS
                )
            )
        held.cancel()
        until(lambda: client.server.pools.streams.admitted == 0, "the watch to end")

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == messages.BUSY
    # One line per call, when it ends: the refused one at once, the held one when cancelled.
    method = "rpc method=/experiments.v5.ExperimentService/WatchExperimentChanges"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(method)]
    assert [line.split(" duration_ms=")[0] for line in lines] == [
        f"{method} status=RESOURCE_EXHAUSTED refused: worker full",
        f"{method} status=CANCELLED",
    ]
