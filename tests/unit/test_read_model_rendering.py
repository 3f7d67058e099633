"""The read model's bytes: an experiment rendered once, the same in every process, and List
pages assembled from them.

The golden file pins what render_experiment produces for one fixed experiment at the current
RENDER_VERSION. A change to the message or to how it is filled changes those bytes: raise
RENDER_VERSION (so `experiments-admin migrate` renders the stored views again), then record
the new golden with

    EXPERIMENTS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_read_model_rendering.py

which refuses to overwrite the golden of an unchanged RENDER_VERSION with other bytes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from experiments.v5 import experiments_pb2 as pb
from google.protobuf import json_format

from server.domain.model import Experiment, GroupType
from server.entrypoints.translate import (
    RENDER_VERSION,
    experiment_message,
    list_response,
    render_experiment,
)
from tests.unit.builders import NOW, SECOND, started_experiment, stored_group

GOLDEN = Path(__file__).parent / "golden" / "rendered_experiment.json"
UPDATE_GOLDEN = "EXPERIMENTS_UPDATE_GOLDEN"
ROOT = Path(__file__).resolve().parents[2]

LINKS = pb.ListExperimentsResponse(
    next="https://example.test/api/v5/orgs/o/experiments?cursor=n",
    previous="https://example.test/api/v5/orgs/o/experiments?cursor=p",
    next_cursor="n",
    previous_cursor="p",
)

# Maps at several depths, in an order that is not the keys' order: what made the bytes differ
# from one process to the next.
RICH_TREATMENT = {
    "name": "Rule-A",
    "weights": {"zeta": 1, "alpha": 2.5, "mid": -3, "beta": 0},
    "actions": [{"type": "banner", "text": "Hi", "position": {"y": 2, "x": 1}}],
    "conditions": [{"op": "in", "field": "country", "values": ["de", "fr"]}],
    "flags": {"on": True, "off": False, "unset": None},
}


def golden_experiment() -> Experiment:
    """A started experiment with every attribute set, a null group type and rich treatments."""
    return started_experiment(
        groups=(
            stored_group(0, "A", 60, GroupType.CONTROL, RICH_TREATMENT),
            stored_group(1, "B", 30, None, {}),
            stored_group(2, "C", 10, GroupType.TARGET_RANDOM, None),
        )
    )


def test_an_experiment_renders_to_the_golden_bytes_of_the_current_render_version() -> None:
    rendered = render_experiment(golden_experiment())
    if os.environ.get(UPDATE_GOLDEN):
        _record_golden(rendered)
    golden = json.loads(GOLDEN.read_text())

    # The readable form first, for a useful diff; the bytes are what reads send.
    assert _readable(rendered) == golden["message"], (
        "render_experiment's message changed: raise RENDER_VERSION in "
        f"server/entrypoints/translate.py, then record the golden ({UPDATE_GOLDEN}=1)"
    )
    assert (RENDER_VERSION, _text(rendered)) == (golden["render_version"], golden["bytes"]), (
        "the rendered bytes or RENDER_VERSION changed: raise RENDER_VERSION for new bytes, "
        f"and record the golden of the new version ({UPDATE_GOLDEN}=1)"
    )


def test_an_experiment_renders_to_the_same_bytes_in_separate_processes() -> None:
    script = (
        "import sys, base64\n"
        "from tests.unit.test_read_model_rendering import golden_experiment\n"
        "from server.entrypoints.translate import render_experiment\n"
        "sys.stdout.write(base64.b64encode(render_experiment(golden_experiment())).decode())\n"
    )

    renders = [
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]

    assert renders[0] == renders[1] == _text(render_experiment(golden_experiment()))


def test_the_order_a_treatment_was_written_in_does_not_change_the_bytes() -> None:
    reordered = dict(reversed(list(RICH_TREATMENT.items())))
    one = started_experiment(groups=(stored_group(0, "A", 100, None, RICH_TREATMENT),))
    other = started_experiment(groups=(stored_group(0, "A", 100, None, reordered),))

    assert render_experiment(one) == render_experiment(other)


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


def _readable(rendered: bytes) -> dict[str, object]:
    return json_format.MessageToDict(
        pb.Experiment.FromString(rendered), preserving_proto_field_name=True
    )


def _text(rendered: bytes) -> str:
    return base64.b64encode(rendered).decode()


def _record_golden(rendered: bytes) -> None:
    """Writes the golden of RENDER_VERSION; never other bytes under an unchanged version."""
    if GOLDEN.exists():
        golden = json.loads(GOLDEN.read_text())
        if golden["render_version"] == RENDER_VERSION and golden["bytes"] != _text(rendered):
            pytest.fail(
                f"the rendered bytes changed but RENDER_VERSION is still {RENDER_VERSION}: "
                "raise it first, so that `migrate` renders the stored views again"
            )
    GOLDEN.parent.mkdir(exist_ok=True)
    record = {
        "render_version": RENDER_VERSION,
        "bytes": _text(rendered),
        "message": _readable(rendered),
    }
    GOLDEN.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
