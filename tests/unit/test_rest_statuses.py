"""One table of REST statuses (server/entrypoints/rest_statuses.py): the gateway's rendering of
it finds each RPC by its bound path, and the OpenAPI document states the same statuses.

(Reads the generated descriptor and the checked-in OpenAPI document; no network, no processes.)
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import yaml
from experiments.v5 import experiments_pb2

from gateway import launcher
from gateway.rest_statuses import success_patterns
from server.entrypoints import errors, rest_statuses

SERVICE = experiments_pb2.DESCRIPTOR.services_by_name["ExperimentService"]
OPENAPI = Path(__file__).resolve().parents[2] / "openapi" / "experiments.v5.yaml"


def rest_status_of(method: str, path: str) -> str:
    """The success status the gateway's rest_edge finds for a request (200 when none)."""
    path = path.split("?", 1)[0]
    for pattern, status in success_patterns(launcher.DESCRIPTOR).get(method, {}).items():
        # The patterns use only Lua's %-escapes of punctuation, [^/]+, ^, /? and $.
        if re.search(re.sub(r"%(.)", lambda m: re.escape(m.group(1)), pattern), path):
            return status
    return "200"


def test_every_rpc_in_the_table_is_one_the_service_has() -> None:
    assert set(rest_statuses.SUCCESS) <= set(SERVICE.methods_by_name)


def test_the_gateway_finds_create_and_delete_by_their_paths_and_nothing_else() -> None:
    org, experiments = "o-1", "/api/v5/orgs/o-1/experiments"
    assert rest_status_of("POST", experiments) == "201"
    assert rest_status_of("POST", f"{experiments}/") == "201"
    assert rest_status_of("DELETE", f"{experiments}/e.1") == "204"
    assert rest_status_of("DELETE", f"{experiments}/e.1?x=1") == "204"
    assert rest_status_of("GET", experiments) == "200"
    assert rest_status_of("GET", f"{experiments}/e.1") == "200"
    assert rest_status_of("PUT", f"{experiments}/e.1") == "200"
    assert rest_status_of("POST", f"/api/v5/orgs/{org}/changes") == "200"
    assert rest_status_of("DELETE", f"{experiments}/e.1/revisions") == "200"
    assert rest_status_of("DELETE", experiments) == "200"


def test_the_openapi_document_states_each_rpcs_success_status() -> None:
    document = yaml.safe_load(OPENAPI.read_text())
    found = {
        operation["operationId"]: {s for s in operation["responses"] if s.startswith("2")}
        for path in document["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert found == {name: {str(rest_statuses.success(name))} for name in found}
    assert found["CreateExperiment"] == {"201"} and found["DeleteExperiment"] == {"204"}


def test_the_gateway_tells_aborted_by_a_status_no_other_answer_of_the_server_has() -> None:
    envoy_409 = {grpc.StatusCode.ABORTED, grpc.StatusCode.ALREADY_EXISTS}
    assert set(errors.STATUS_OF.values()) & envoy_409 == {grpc.StatusCode.ABORTED}
    assert rest_statuses.ENVOY_ERROR == {grpc.StatusCode.ABORTED: 409}
