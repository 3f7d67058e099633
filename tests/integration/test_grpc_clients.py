"""What a gRPC client gets without a URL parser or compiled-in types: raw page cursors to pass
straight back, and error details it can decode with what server reflection serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from tests.integration.grpc_client import Client, running_client


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url) as running:
        yield running


def _page(client: Client, cursor: str = "") -> pb.ListExperimentsResponse:
    request = pb.ListExperimentsRequest(organization_id=client.org, page_size=2, cursor=cursor)
    return client.stub.ListExperiments(request, metadata=client.metadata())


def test_next_cursor_pages_to_the_end_and_previous_cursor_back(client: Client) -> None:
    created = [
        client.stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=client.org, experiment=pb.Experiment(is_draft=True, name=f"E{n}")
            ),
            metadata=client.metadata(),
        ).id
        for n in range(5)
    ]

    pages = [_page(client)]
    while pages[-1].next_cursor:
        pages.append(_page(client, pages[-1].next_cursor))
    backwards = [pages[-1]]
    while backwards[-1].previous_cursor:
        backwards.append(_page(client, backwards[-1].previous_cursor))

    assert [[e.id for e in page.results] for page in pages] == [
        created[4:2:-1],
        created[2:0:-1],
        created[0:1],
    ]
    assert pages[0].previous_cursor == ""
    assert pages[-1].next_cursor == "" and pages[-1].next == ""
    assert [[e.id for e in p.results] for p in backwards] == [
        [e.id for e in p.results] for p in reversed(pages)
    ]


def _reflected_files(
    channel: grpc.Channel, symbol: str
) -> list[descriptor_pb2.FileDescriptorProto]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    answer = next(stub.ServerReflectionInfo(iter([request])))
    assert answer.HasField("file_descriptor_response"), answer.error_response
    return [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in answer.file_descriptor_response.file_descriptor_proto
    ]


def test_reflection_serves_the_error_types_so_a_bad_request_can_be_decoded(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=client.org, experiment=pb.Experiment(is_draft=False)
            ),
            metadata=client.metadata(),
        )
    status = rpc_status.from_call(raised.value)  # type: ignore[arg-type]
    assert status is not None
    (detail,) = status.details

    # A pool of only what reflection served: no compiled-in google.rpc types.
    pool = descriptor_pool.DescriptorPool()
    files = {f.name: f for f in _reflected_files(client.channel, "google.rpc.BadRequest")}
    added: set[str] = set()

    def add(name: str) -> None:
        if name not in added:
            for dependency in files[name].dependency:
                add(dependency)
            pool.Add(files[name])
            added.add(name)

    for name in files:
        add(name)
    bad_request_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("google.rpc.BadRequest")
    )
    bad_request: Any = bad_request_type.FromString(detail.value)  # a class made at run time

    assert detail.type_url == "type.googleapis.com/google.rpc.BadRequest"
    assert {v.field for v in bad_request.field_violations} >= {"name", "goal_id", "starts_at"}
