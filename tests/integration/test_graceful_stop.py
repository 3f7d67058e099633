"""SIGTERM lets an RPC that is already running finish before experiments-server exits."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.orm import Session

from server.adapters.admin import create_demo_world
from server.adapters.database import make_engine
from tests.integration.grpc_client import published

DEADLINE_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def test_sigterm_lets_a_running_create_finish_then_exits_cleanly(
    migrated_url: str, tmp_path: Path
) -> None:
    engine = make_engine(migrated_url)
    if engine.dialect.name != "sqlite":
        pytest.skip("holds the SQLite writer lock to keep an RPC in flight")
    with Session(engine) as session:
        world: dict[str, Any] = dict(create_demo_world(session))
        session.commit()
    engine.dispose()
    lock_file = Path(f"{engine.url.database}.writer-lock")
    lock_file.touch()

    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "server.entrypoints.grpc_server", "--workers", "1"],
        env={
            **os.environ,
            "EXPERIMENTS_DATABASE_URL": migrated_url,
            "EXPERIMENTS_GRPC_PORT": str(port),
        },
        stderr=log,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        _until(lambda: _serving(channel), "the server to serve")
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        request = pb.CreateExperimentRequest(
            organization_id=str(world["organization_id"]), experiment=published(world)
        )
        with lock_file.open("r+") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # the server's writer now has to wait for us
            call = stub.CreateExperiment.future(
                request, metadata=(("authorization", f"Token {world['tokens']['settings']}"),)
            )
            _until(lambda: _someone_waits_for(lock_file), "the Create to wait for the lock")
            server.send_signal(signal.SIGTERM)
            fcntl.flock(held, fcntl.LOCK_UN)
        created = call.result(timeout=DEADLINE_SECONDS)
        assert created.name == "Hello experiment"
        assert server.wait(timeout=DEADLINE_SECONDS) == 0
    finally:
        channel.close()
        if server.poll() is None:
            server.kill()
        log.close()
    assert "received SIGTERM, stopping gracefully" in (tmp_path / "server.log").read_text()
