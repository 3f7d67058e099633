"""A real experiments gRPC server on port 0 over a migrated database, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from server.adapters.admin import DemoWorld, create_demo_world
from server.adapters.database import make_engine
from server.config import Settings
from server.entrypoints.grpc_server import RunningServer, build_server

PUBLIC_BASE_URL = "http://gateway.test"


@dataclass
class Client:
    stub: experiments_pb2_grpc.ExperimentServiceStub
    channel: grpc.Channel
    world: DemoWorld
    server: RunningServer

    def metadata(self, who: str = "settings") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Token {getattr(self.world.tokens, who)}"),)

    @property
    def org(self) -> str:
        return self.world.organization_id


@contextmanager
def running_client(database_url: str, **settings_overrides: Any) -> Iterator[Client]:
    """A server on port 0 (Settings' defaults but for `settings_overrides`) and a client."""
    world = demo_world(database_url)
    settings = Settings(
        database_url=database_url,
        grpc_port=0,
        workers=1,
        public_base_url=PUBLIC_BASE_URL,
        **settings_overrides,
    )
    server = build_server(settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Client(experiments_pb2_grpc.ExperimentServiceStub(channel), channel, world, server)
    finally:
        channel.close()
        server.stop(grace=1)


def own_connection(port: int) -> tuple[grpc.Channel, experiments_pb2_grpc.ExperimentServiceStub]:
    """A client of the server on `port` with a connection of its own (not shared with other
    channels to the same port), so that with several worker processes on one port the kernel
    may hand it to any of them."""
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )
    return channel, experiments_pb2_grpc.ExperimentServiceStub(channel)


def serving(channel: grpc.Channel) -> bool:
    """Whether the server behind `channel` answers its health check with SERVING."""
    try:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1
        )
    except grpc.RpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def demo_world(database_url: str) -> DemoWorld:
    """A fresh demo world in the database, as `experiments-admin demo` makes it."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            return create_demo_world(connection)
    finally:
        engine.dispose()


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations of a failed call, by field."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT without google.rpc.Status details"
    violations: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations.update({v.field: v.description for v in bad_request.field_violations})
    return violations


def published(world: DemoWorld, **overrides: Any) -> pb.Experiment:
    """A valid published experiment of the demo organization, starting in the future."""
    fields: dict[str, Any] = {
        "is_draft": False,
        "name": "Hello experiment",
        "goal_id": world.goal_id,
        "room_ids": list(world.room_ids),
        "group_reset_interval": "1w",
        "groups": [
            pb.Group(
                name="A",
                percentage=90,
                group_type=_string("control"),
                treatment=_struct({"name": "Rule-A", "actions": [], "conditions": []}),
            ),
            pb.Group(name="B", percentage=10, group_type=_string("user_defined")),
        ],
    }
    fields.update(overrides)
    experiment = pb.Experiment(**fields)
    if "starts_at" not in overrides:
        experiment.starts_at.FromJsonString("2099-05-08T13:02:35.123Z")
    return experiment


def _string(value: str) -> Any:
    from google.protobuf import struct_pb2

    return struct_pb2.Value(string_value=value)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct
