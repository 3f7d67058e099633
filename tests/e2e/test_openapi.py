"""openapi/experiments.v5.yaml: a valid OpenAPI 3.1 document, and what the live gateway does.

Schemathesis generates requests from the document (valid and invalid ones, fuzzed and chained:
create, then get, update, delete what it created) and sends them through the real Envoy to the
real server; it fails on any 5xx and on any response whose status, content type or body the
document does not describe. Settings and the checks left out, with why: openapi/schemathesis.toml.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from gateway import launcher
from server.domain import limits
from server.domain.concurrency import IDEMPOTENCY_KEY_MAX_LENGTH
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
    error = _response(document, one["put"]["responses"]["400"])
    assert error["content"]["application/json"]["schema"]["allOf"] == [
        {"$ref": "#/components/schemas/google.rpc.Status"}
    ]
    assert document["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <key>`: the word Token, a space, then the API key.",
    }
    group = schemas["Group"]["properties"]
    sent_group = schemas["GroupInput"]["properties"]
    # One named type each; null beside it where the API takes or prints null.
    assert schemas["GroupType"] == {
        "type": "string",
        "enum": ["control", "user_defined", "target_algorithm", "target_random"],
    }
    assert schemas["GroupResetInterval"] == {"type": "string", "enum": ["full", "1w", "1d"]}
    nullable_type = [{"$ref": "#/components/schemas/GroupType"}, {"type": "null"}]
    assert group["group_type"]["oneOf"] == sent_group["group_type"]["oneOf"] == nullable_type
    treatment = {"$ref": "#/components/schemas/Treatment"}
    assert schemas["Treatment"] == {"type": "object", "additionalProperties": True}
    assert sent_group["treatment"]["oneOf"] == [treatment, {"type": "null"}]
    assert group["treatment"]["allOf"] == [treatment]
    for groups in (group, sent_group):
        assert (groups["percentage"]["minimum"], groups["percentage"]["maximum"]) == (0, 100)
        assert groups["name"]["maxLength"] == limits.NAME_MAX_LENGTH
    experiment, sent = schemas["Experiment"], schemas["ExperimentInput"]
    for schema in (experiment, sent):
        assert schema["properties"]["name"]["maxLength"] == limits.NAME_MAX_LENGTH == 255
        assert schema["properties"]["groups"]["maxItems"] == limits.MAX_GROUPS
        assert schema["properties"]["room_ids"]["maxItems"] == limits.MAX_ROOMS
        assert "is_draft" in schema["required"]
    assert sent["properties"]["group_reset_interval"]["oneOf"] == [
        {"$ref": "#/components/schemas/GroupResetInterval"},
        {"type": "null"},
    ]
    assert experiment["properties"]["id"]["readOnly"] is True
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


def _response(document: Mapping[str, Any], response: Mapping[str, Any]) -> Mapping[str, Any]:
    """A response object, its $ref (to components/responses) followed."""
    if "$ref" not in response:
        return response
    name = response["$ref"].removeprefix("#/components/responses/")
    found: Mapping[str, Any] = document["components"]["responses"][name]
    return found


def _header_parameters(operation: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}


def test_the_document_states_conditional_requests_and_idempotent_creates() -> None:
    document, _ = read_from_filename(str(DOCUMENT))
    collection = document["paths"]["/api/v5/orgs/{organization_id}/experiments"]
    one = document["paths"]["/api/v5/orgs/{organization_id}/experiments/{experiment_id}"]

    assert set(_header_parameters(collection["get"])) == set()
    assert set(_header_parameters(one["get"])) == {"If-None-Match"}
    assert set(_header_parameters(one["put"])) == {"If-Match"}
    assert set(_header_parameters(one["delete"])) == {"If-Match"}
    key = _header_parameters(collection["post"])["Idempotency-Key"]
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (
        1,
        IDEMPOTENCY_KEY_MAX_LENGTH,
    )
    # Opt-in: a client written from the spec sends none of them.
    for operation in (collection["post"], one["get"], one["put"], one["delete"]):
        assert not any(p["required"] for p in _header_parameters(operation).values())

    for operation, status in (
        (one["get"], "200"),
        (collection["post"], "201"),
        (one["put"], "200"),
    ):
        etag = operation["responses"][status]["headers"]["ETag"]
        assert etag["required"] is True
        assert re.fullmatch(etag["schema"]["pattern"], '"3"')
    created = collection["post"]["responses"]["201"]
    assert created["headers"]["Location"]["required"] is True
    assert created["links"]["UpdateCreated"]["parameters"]["header.If-Match"] == (
        "$response.header.ETag"
    )
    not_modified = one["get"]["responses"]["304"]
    assert "content" not in not_modified
    assert not_modified["headers"]["ETag"]["required"] is True


def test_the_document_lists_every_status_each_operation_can_get_with_its_body() -> None:
    document, _ = read_from_filename(str(DOCUMENT))
    collection = document["paths"]["/api/v5/orgs/{organization_id}/experiments"]
    one = document["paths"]["/api/v5/orgs/{organization_id}/experiments/{experiment_id}"]
    errors = {"400", "401", "403", "415", "429", "431", "503", "5XX"}

    assert set(collection["get"]["responses"]) == {"200", *errors}
    assert set(collection["post"]["responses"]) == {"201", "413", *errors}
    assert set(one["get"]["responses"]) == {"200", "304", "404", *errors}
    assert set(one["put"]["responses"]) == {"200", "404", "412", "413", *errors}
    assert set(one["delete"]["responses"]) == {"204", "404", "412", *errors}
    # The google.rpc.Code each error body carries (Envoy's own refusals included).
    codes = {
        "400": 3,
        "401": 16,
        "403": 7,
        "404": 5,
        "412": 10,
        "413": 3,
        "415": 3,
        "429": 8,
        "431": 3,
        "503": 14,
    }
    for operation in (collection["get"], collection["post"], one["get"], one["put"], one["delete"]):
        for status, code in codes.items():
            if status in operation["responses"]:
                response = _response(document, operation["responses"][status])
                schema = response["content"]["application/json"]["schema"]
                assert schema["properties"]["code"] == {"const": code}, (status, schema)
    busy = _response(document, one["get"]["responses"]["429"])
    assert busy["headers"]["Retry-After"]["required"] is True
    unauthenticated = _response(document, one["get"]["responses"]["401"])
    assert unauthenticated["headers"]["WWW-Authenticate"]["schema"]["const"] == "Token"
    too_large = _response(document, one["put"]["responses"]["413"])
    assert str(limits.MAX_REQUEST_BODY_BYTES) in too_large["description"]


def test_the_document_describes_the_history_the_feed_and_the_watch() -> None:
    document, _ = read_from_filename(str(DOCUMENT))
    paths = document["paths"]
    revisions = paths["/api/v5/orgs/{organization_id}/experiments/{experiment_id}/revisions"]["get"]
    changes = paths["/api/v5/orgs/{organization_id}/changes"]["get"]
    watch = paths["/api/v5/orgs/{organization_id}/changes/watch"]["get"]
    errors = {"400", "401", "403", "415", "429", "431", "503", "5XX"}

    assert set(revisions["responses"]) == {"200", "404", *errors}
    assert set(changes["responses"]) == {"200", *errors}
    assert set(watch["responses"]) == {"200", *errors}
    assert {p["name"] for p in changes["parameters"]} == {"organization_id", "after", "page_size"}
    assert {p["name"] for p in watch["parameters"]} == {"organization_id", "after"}
    # A position older than the history kept is OUT_OF_RANGE (code 11) on a 400.
    for operation in (changes, watch):
        schema = operation["responses"]["400"]["content"]["application/json"]["schema"]
        assert schema["properties"]["code"] == {"enum": [3, 11]}
    # The watch: newline-delimited JSON, each line a change or a heartbeat.
    streamed = watch["responses"]["200"]
    assert "newline-delimited JSON" in streamed["description"]
    line = streamed["content"]["application/x-ndjson"]["schema"]
    assert line["allOf"] == [{"$ref": "#/components/schemas/WatchExperimentChangesResponse"}]
    assert line["oneOf"] == [{"required": ["change"]}, {"required": ["heartbeat"]}]
    schemas = document["components"]["schemas"]
    assert {"cursor", "experiment", "changes", "user"} <= set(
        schemas["ExperimentRevision"]["required"]
    )
    assert set(schemas["ListExperimentChangesResponse"]["required"]) == {"results", "next_cursor"}
    assign = paths["/api/v5/orgs/{organization_id}/assignments"]["get"]
    assert assign["operationId"] == "AssignVisitor"


def test_each_paths_405_in_the_document_is_what_the_gateway_answers() -> None:
    """OpenAPI has no place for undeclared methods: each path's description names the Allow
    header of the gateway's method_not_allowed route for it (gateway/envoy.yaml)."""
    document, _ = read_from_filename(str(DOCUMENT))
    config = yaml.safe_load(
        launcher.render_config(
            http_host="127.0.0.1", http_port=0, grpc_host="127.0.0.1", grpc_port=1
        )
    )
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    not_allowed = {
        route["match"]["safe_regex"]["regex"]: route["response_headers_to_add"][0]["header"][
            "value"
        ]
        for route in routes
        if route.get("direct_response", {}).get("status") == 405
    }

    for template, item in document["paths"].items():
        path = re.sub(r"{[^}]+}", "some-id", template)
        methods = ", ".join(m.upper() for m in item if m in ("get", "put", "post", "delete"))
        [allow] = [allow for regex, allow in not_allowed.items() if re.fullmatch(regex, path)]
        assert allow == methods
        assert f"`Allow: {allow}`" in item["description"]


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
    # Every operation was exercised, not skipped for want of a usable schema: all but the
    # endless watch stream (openapi/schemathesis.toml says why).
    assert "Tested: 8" in result.stdout, result.stdout


def test_what_a_client_sends_has_only_the_writable_attributes() -> None:
    """Generators commonly ignore readOnly: a request schema with output-only fields made a
    generated client ask for placeholder ids and times on every create."""
    document, _ = read_from_filename(str(DOCUMENT))
    schemas = document["components"]["schemas"]
    collection = document["paths"]["/api/v5/orgs/{organization_id}/experiments"]
    one = document["paths"]["/api/v5/orgs/{organization_id}/experiments/{experiment_id}"]

    for operation in (collection["post"], one["put"]):
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ExperimentInput"}
        success = operation["responses"]["201" if operation is collection["post"] else "200"]
        returned = success["content"]["application/json"]["schema"]
        assert returned == {"$ref": "#/components/schemas/Experiment"}
    sent, group = schemas["ExperimentInput"], schemas["GroupInput"]
    assert set(sent["properties"]) == {
        "is_draft",
        "goal_id",
        "groups",
        "name",
        "starts_at",
        "ends_at",
        "group_reset_interval",
        "room_ids",
    }
    assert sent["required"] == ["is_draft"]
    assert sent["properties"]["groups"]["items"] == {"$ref": "#/components/schemas/GroupInput"}
    assert set(group["properties"]) == {"name", "percentage", "group_type", "treatment"}
    assert "required" not in group
    # What always comes back is required in the response, so a client need not check for it.
    assert {"id", "etag", "created_at", "updated_by_user", "groups", "room_ids"} <= set(
        schemas["Experiment"]["required"]
    )
    assert {"id", "order", "group_type"} <= set(schemas["Group"]["required"])
