"""SIGTERM lets an RPC that is already running finish before experiments-server exits,
on SQLite and PostgreSQL (a lock held by the test keeps the RPC running)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from server.adapters.database import make_engine
from tests.integration.grpc_client import demo_world, published
from tests.ports import port_served

DEADLINE_SECONDS = 30


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling a condition, not waiting for time to pass


def _serving(channel: grpc.Channel) -> bool:
    try:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1
        )
    except grpc.RpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _someone_waits_for(lock_file: Path) -> bool:
    # /proc/locks lists a blocked flock() request as a line starting with "->" after the holder.
    inode = f":{os.stat(lock_file).st_ino} "
    return any(
        line.split()[1] == "->" and inode in line
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 1
    )


@contextmanager
def _sqlite_writer_held(url: str) -> Iterator[Callable[[], bool]]:
    """Holds the SQLite writer lock; yields whether a writer of the server waits for it."""
    lock_file = Path(f"{make_url(url).database}.writer-lock")
    lock_file.touch()
    with lock_file.open("r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the server's writer now has to wait for us
        try:
            yield lambda: _someone_waits_for(lock_file)
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


@contextmanager
def _postgres_row_held(url: str, experiment_id: str) -> Iterator[Callable[[], bool]]:
    """Locks the experiment's row in an open transaction; yields whether a backend waits for it."""
    engine = make_engine(url)
    try:
        with engine.connect() as holder, engine.connect() as observer:
            holder.execute(
                text("SELECT id FROM experiments WHERE id = :id FOR UPDATE"),
                {"id": uuid.UUID(experiment_id)},
            )
            observer.execution_options(isolation_level="AUTOCOMMIT")
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            try:
                yield lambda: bool(observer.execute(waiting).scalar_one())
            finally:
                holder.rollback()
    finally:
        engine.dispose()


def test_sigterm_lets_a_running_update_finish_then_exits_cleanly(
    migrated_url: str, tmp_path: Path
) -> None:
    world = demo_world(migrated_url)

    server_log = tmp_path / "server.log"
    log = server_log.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "server.entrypoints.grpc_server", "--workers", "1"],
        env={
            **os.environ,
            "EXPERIMENTS_DATABASE_URL": migrated_url,
            "EXPERIMENTS_GRPC_PORT": "0",
        },
        stderr=log,
        text=True,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port_served(server_log, server)}")
    metadata = (("authorization", f"Token {world.tokens.settings}"),)
    try:
        _until(lambda: _serving(channel), "the server to serve")
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        organization_id = world.organization_id
        created = stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=organization_id, experiment=published(world)
            ),
            metadata=metadata,
        )
        created.name = "Renamed while stopping"
        request = pb.UpdateExperimentRequest(
            organization_id=organization_id, experiment_id=created.id, experiment=created
        )
        # SQLite: the writer lock; PostgreSQL: a row lock held by another connection.
        held = (
            _sqlite_writer_held(migrated_url)
            if make_url(migrated_url).get_backend_name() == "sqlite"
            else _postgres_row_held(migrated_url, created.id)
        )
        with held as someone_waits:
            call = stub.UpdateExperiment.future(request, metadata=metadata)
            _until(someone_waits, "the Update to wait for the lock")
            server.send_signal(signal.SIGTERM)
            # Released only once the server has taken the signal: the Update is in flight.
            _until(lambda: "stopping gracefully" in server_log.read_text(), "SIGTERM")
        updated = call.result(timeout=DEADLINE_SECONDS)
        assert updated.name == "Renamed while stopping"
        assert server.wait(timeout=DEADLINE_SECONDS) == 0
    finally:
        channel.close()
        if server.poll() is None:
            server.kill()
        log.close()
    assert "received SIGTERM, stopping gracefully" in server_log.read_text()
