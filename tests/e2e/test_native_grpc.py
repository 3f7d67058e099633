"""Native gRPC through the gateway's port (issue 17, item 2): internal clients use one address
for both protocols, and get exactly what the server answers, statuses, details and trailers
included."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from server.domain import limits, messages
from tests.e2e.stack import Stack, World

TIMEOUT = 10.0


@pytest.fixture
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    assert stack.envoy is not None
    with grpc.insecure_channel(f"127.0.0.1:{stack.envoy.http_port}") as opened:
        yield opened


def _metadata(world: World) -> tuple[tuple[str, str | bytes], ...]:
    # A legitimate binary header passes as it is: the gateway drops -bin headers only for REST.
    return (("authorization", f"Token {world.tokens.settings}"), ("x-trace-bin", b"\x00\xff"))


def test_the_experiment_service_answers_through_the_gateway(
    channel: grpc.Channel, world: World
) -> None:
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
    created, call = stub.CreateExperiment.with_call(
        pb.CreateExperimentRequest(
            organization_id=world.organization_id, experiment=pb.Experiment(is_draft=True)
        ),
        metadata=_metadata(world),
        timeout=TIMEOUT,
    )
    read = stub.GetExperiment(
        pb.GetExperimentRequest(organization_id=world.organization_id, experiment_id=created.id),
        metadata=_metadata(world),
        timeout=TIMEOUT,
    )
    deleted = stub.DeleteExperiment(
        pb.DeleteExperimentRequest(organization_id=world.organization_id, experiment_id=created.id),
        metadata=_metadata(world),
        timeout=TIMEOUT,
    )

    assert read == created
    assert ("etag", f'"{created.etag}"') in call.initial_metadata()
    assert deleted.ByteSize() == 0  # google.protobuf.Empty, not an emptied body


def test_an_error_keeps_its_status_and_bad_request_details(
    channel: grpc.Channel, world: World
) -> None:
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)

    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=world.organization_id, experiment=pb.Experiment(is_draft=False)
            ),
            metadata=_metadata(world),
            timeout=TIMEOUT,
        )

    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and status.message == messages.INVALID_REQUEST
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert "name" in {violation.field for violation in bad_request.field_violations}


@pytest.mark.one_database
def test_a_request_larger_than_the_rest_body_limit_is_the_servers_to_judge(
    channel: grpc.Channel, world: World
) -> None:
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
    too_long = pb.Experiment(is_draft=True, name="n" * (limits.MAX_REQUEST_BODY_BYTES + 1024))

    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateExperiment(
            pb.CreateExperimentRequest(organization_id=world.organization_id, experiment=too_long),
            metadata=_metadata(world),
            timeout=TIMEOUT,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unauthenticated_is_unauthenticated(channel: grpc.Channel, world: World) -> None:
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)

    with pytest.raises(grpc.RpcError) as caught:
        stub.ListExperiments(
            pb.ListExperimentsRequest(organization_id=world.organization_id), timeout=TIMEOUT
        )

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.one_database
def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    (answer,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )

    assert {service.name for service in answer.list_services_response.service} >= {
        "experiments.v5.ExperimentService",
        "grpc.health.v1.Health",
    }


@pytest.mark.one_database
def test_health_is_serving(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="experiments.v5.ExperimentService"),
        timeout=TIMEOUT,
    )

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.one_database
def test_a_service_the_server_lacks_is_unimplemented(channel: grpc.Channel) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/no.such.Service/Method"
    )

    with pytest.raises(grpc.RpcError) as caught:
        call(b"", timeout=TIMEOUT)

    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
