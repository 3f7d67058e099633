"""openapi/experiments.v5.yaml: a valid OpenAPI 3.1 document, and what the live gateway does.

Schemathesis generates requests from the document (valid and invalid ones, fuzzed and chained:
create, then get, update, delete what it created) and sends them through the real Envoy to the
real server; it fails on any 5xx and on any response whose status, content type or body the
document does not describe. Settings and the checks left out, with why: openapi/schemathesis.toml.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from tests.e2e.stack import Stack, World

ROOT = Path(__file__).resolve().parent.parent.parent
DOCUMENT = ROOT / "openapi" / "experiments.v5.yaml"
SETTINGS = ROOT / "openapi" / "schemathesis.toml"


def test_the_document_is_valid_openapi_3_1() -> None:
    document, _ = read_from_filename(str(DOCUMENT))
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_the_document_states_what_rest_clients_rely_on() -> None:
    document, _ = read_from_filename(str(DOCUMENT))
    collection = document["paths"]["/api/v5/orgs/{organization_id}/experiments"]
    one = document["paths"]["/api/v5/orgs/{organization_id}/experiments/{experiment_id}"]
    schemas = document["components"]["schemas"]
    assert "201" in collection["post"]["responses"]
    assert "204" in one["delete"]["responses"]
    assert "content" not in one["delete"]["responses"]["204"]
    error = one["put"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/google.rpc.Status"}
    assert document["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <key>`: the word Token, a space, then the API key.",
    }
    group = schemas["Group"]["properties"]
    assert group["group_type"]["enum"] == [
        "control",
        "user_defined",
        "target_algorithm",
        "target_random",
        None,
    ]
    assert group["treatment"]["type"] == ["object", "null"]
    assert (group["percentage"]["minimum"], group["percentage"]["maximum"]) == (0, 100)
    experiment = schemas["Experiment"]
    assert experiment["properties"]["name"]["maxLength"] == 255
    assert experiment["properties"]["group_reset_interval"]["enum"] == ["full", "1w", "1d", None]
    assert experiment["properties"]["id"]["readOnly"] is True
    assert "is_draft" in experiment["required"]
    assert {p["name"] for p in collection["get"]["parameters"]} == {
        "organization_id",
        "page_size",
        "cursor",
    }
    assert set(schemas["ListExperimentsResponse"]["required"]) == {
        "next",
        "previous",
        "results",
        "next_cursor",
        "previous_cursor",
    }


# The document against the gateway, not the databases: tests/fuzz sends hostile REST requests
# through Envoy to both, and the e2e suite runs on both.
@pytest.mark.one_database
def test_the_gateway_does_what_the_document_says(stack: Stack, fresh_world: World) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(SETTINGS),
            "run",
            str(DOCUMENT),
            "--url",
            stack.base_url,
        ],
        env={
            **os.environ,
            "EXPERIMENTS_KEY": fresh_world.tokens.settings,
            "EXPERIMENTS_ORG": fresh_world.organization_id,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every operation was exercised, not skipped for want of a usable schema.
    assert "Tested: 5" in result.stdout, result.stdout
