"""The bench's assignment floor (bench/echo_server.py --assign-from) answers exactly what the
service answers: it is the service's own work, without the service around it, so `make bench`
may read the assignment target against it (README, "Visitor assignment: the call")."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from experiments.v5 import experiments_pb2 as pb
from google.protobuf import timestamp_pb2

from bench import seed, stack
from server.adapters.database import make_engine
from server.config import Settings
from server.entrypoints.grpc_server import SERVICE_NAME, build_server

VISITORS = ["visitor-2f8d1c", "ünïcode-訪問者", "x" * 255, "42"]


def test_the_floor_answers_byte_for_byte_what_the_service_answers(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        world = seed.seed(engine, 10)
    finally:
        engine.dispose()
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(datetime.now(UTC))
    requests = [
        pb.AssignVisitorRequest(
            organization_id=str(world.assigning_organization_id),
            visitor_id=visitor,
            room_id=str(room),
            at=at,
        )
        for visitor in VISITORS
        for room in (world.assigning_room_id, "")
    ]
    floor = stack.start_echo(
        1, 2, affinity=False, assign_from=(migrated_url, world.assigning_organization_id)
    )
    service = build_server(Settings(database_url=migrated_url, grpc_port=0, workers=1))
    try:
        answers = []
        for port, metadata in (
            (floor.port, ()),
            (service.port, (("authorization", f"Token {world.assigning_api_key}"),)),
        ):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                    f"/{SERVICE_NAME}/AssignVisitor"
                )
                answers.append(
                    [call(r.SerializeToString(), metadata=metadata, timeout=10) for r in requests]
                )
    finally:
        service.stop(grace=0)
        floor.stop()
    from_floor, from_service = answers
    assert from_floor == from_service
    assignments = [len(pb.AssignVisitorResponse.FromString(a).assignments) for a in from_floor]
    # In the room all of the organization's assigning experiments apply; without a room only
    # those of every room: the floor serves the same choice of experiments, not just bytes.
    assert assignments[0::2] == [seed.ASSIGNING_EXPERIMENTS] * len(VISITORS)
    assert 0 < assignments[1] < seed.ASSIGNING_EXPERIMENTS
