"""The read model's bytes: an experiment rendered once, and List pages assembled from them."""

from __future__ import annotations

from uuid import UUID

import pytest
from experiments.v5 import experiments_pb2 as pb

from server.entrypoints.translate import experiment_message, list_response, render_experiment
from tests.unit.builders import NOW, SECOND, started_experiment

LINKS = pb.ListExperimentsResponse(
    next="https://example.test/api/v5/orgs/o/experiments?cursor=n",
    previous="https://example.test/api/v5/orgs/o/experiments?cursor=p",
    next_cursor="n",
    previous_cursor="p",
)


def test_a_rendered_experiment_is_the_serialized_response_message() -> None:
    experiment = started_experiment()

    rendered = pb.Experiment.FromString(render_experiment(experiment))

    assert rendered == experiment_message(experiment)
    assert rendered.etag == experiment.etag


@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_page_assembled_from_stored_bytes_is_the_message_built_field_by_field(
    count: int,
) -> None:
    experiments = [
        started_experiment(id=UUID(int=n + 1), created_at=NOW - n * SECOND) for n in range(count)
    ]
    expected = pb.ListExperimentsResponse()
    expected.CopyFrom(LINKS)
    expected.results.extend(experiment_message(e) for e in experiments)

    assembled = list_response([render_experiment(e) for e in experiments], LINKS)

    assert pb.ListExperimentsResponse.FromString(assembled) == expected
    assert len(assembled) == expected.ByteSize()


def test_a_page_holds_items_whose_length_takes_several_bytes_to_encode() -> None:
    # A message of 300 bytes: its length needs a two-byte varint (300 > 127).
    large = pb.Experiment(id="x", name="n" * 290).SerializeToString()
    small = pb.Experiment(id="y").SerializeToString()

    parsed = pb.ListExperimentsResponse.FromString(
        list_response([large, small], pb.ListExperimentsResponse())
    )

    assert [item.id for item in parsed.results] == ["x", "y"]
    assert parsed.results[0].name == "n" * 290
