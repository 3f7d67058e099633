"""SIGTERM lets an RPC that is already running finish before experiments-server exits,
on SQLite and PostgreSQL (a lock held by the test keeps the RPC running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from sqlalchemy.engine import make_url

from tests.integration.grpc_client import demo_world, published, serving
from tests.integration.locks import DEADLINE_SECONDS, postgres_row_held, sqlite_writer_held, until
from tests.ports import port_served


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
        until(lambda: serving(channel), "the server to serve")
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
            sqlite_writer_held(migrated_url)
            if make_url(migrated_url).get_backend_name() == "sqlite"
            else postgres_row_held(migrated_url, created.id)
        )
        with held as someone_waits:
            call = stub.UpdateExperiment.future(request, metadata=metadata)
            until(someone_waits, "the Update to wait for the lock")
            server.send_signal(signal.SIGTERM)
            # Released only once the server has taken the signal: the Update is in flight.
            until(lambda: "stopping gracefully" in server_log.read_text(), "SIGTERM")
        updated = call.result(timeout=DEADLINE_SECONDS)
        assert updated.name == "Renamed while stopping"
        assert server.wait(timeout=DEADLINE_SECONDS) == 0
    finally:
        channel.close()
        if server.poll() is None:
            server.kill()
        log.close()
    assert "received SIGTERM, stopping gracefully" in server_log.read_text()
