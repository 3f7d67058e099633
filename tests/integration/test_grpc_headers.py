"""One header limit for direct gRPC clients (issue 20, item 4): up to limits.MAX_HEADER_BYTES
always served, beyond it INVALID_ARGUMENT in our words, never grpcio's RESOURCE_EXHAUSTED
("retry later"), which it used to answer at random from 8 KiB on."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb

from server.domain import limits, messages
from tests import h2c
from tests.integration.grpc_client import Client, running_client

LIST = "/experiments.v5.ExperimentService/ListExperiments"
OK, INVALID_ARGUMENT = 0, 3


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url) as running:
        yield running


def _filled_to(size: int, client: Client) -> list[tuple[bytes, bytes]]:
    """Metadata that counts exactly `size` bytes: names and values (README, "Limits")."""
    ((name, value),) = client.metadata()
    authorization = (name.encode(), value.encode())
    used = len(authorization[0]) + len(authorization[1]) + len(b"x-filler")
    return [authorization, (b"x-filler", b"f" * (size - used))]


def _list(client: Client, metadata: list[tuple[bytes, bytes]]) -> h2c.Exchange:
    request = pb.ListExperimentsRequest(organization_id=client.org).SerializeToString()
    return h2c.grpc_call("127.0.0.1", client.server.port, LIST, request, metadata)


def test_headers_at_the_limit_are_served(client: Client) -> None:
    for _ in range(5):  # grpcio's soft limit refused at random
        answer = _list(client, _filled_to(limits.MAX_HEADER_BYTES, client))

        assert h2c.grpc_status(answer) == OK, answer


def test_headers_one_byte_over_the_limit_are_invalid_argument_in_our_words(client: Client) -> None:
    answer = _list(client, _filled_to(limits.MAX_HEADER_BYTES + 1, client))

    assert h2c.grpc_status(answer) == INVALID_ARGUMENT, answer
    message = answer.trailers.get("grpc-message", answer.headers.get("grpc-message"))
    assert message is not None
    assert message.replace("%20", " ") == messages.HEADERS_TOO_LARGE.format(
        limit=limits.MAX_HEADER_BYTES
    )


@pytest.mark.parametrize(
    ("filler", "code"),
    [
        # Between grpcio's default soft (8 KiB) and hard (16 KiB) limits: refused at random.
        (12 * limits.KIB, grpc.StatusCode.OK),
        # Over ours, under grpcio's own (now limits.GRPC_METADATA_BYTES).
        (4 * limits.MAX_HEADER_BYTES, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_a_grpcio_client_gets_the_same_answer_every_time(
    client: Client, filler: int, code: grpc.StatusCode
) -> None:
    request = pb.ListExperimentsRequest(organization_id=client.org)
    metadata = (*client.metadata(), ("x-filler", "f" * filler))
    answers = set()

    for _ in range(20):
        try:
            client.stub.ListExperiments(request, metadata=metadata)
            answers.add(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            answers.add(error.code())

    assert answers == {code}
