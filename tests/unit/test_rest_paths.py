"""The REST paths are written in three places: the proto's google.api.http rules (the source),
gateway/envoy.yaml (405 routes and the CORS preflight route) and the servicer's collection URL.
These tests derive the paths from the descriptor and check the other two agree with them.

(Reads the checked-in Envoy template and the generated descriptor; no network, no processes.)
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import yaml
from experiments.v5 import experiments_pb2
from google.api import annotations_pb2

from gateway import launcher
from server.entrypoints.servicer import ExperimentServicer

SERVICE = experiments_pb2.DESCRIPTOR.services_by_name["ExperimentService"]


def documented_paths() -> dict[str, set[str]]:
    """Each path template of the service's google.api.http rules, with its HTTP methods."""
    paths: dict[str, set[str]] = defaultdict(set)
    for method in SERVICE.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        assert verb in ("get", "put", "post", "delete", "patch"), method.name
        paths[getattr(rule, verb)].add(verb.upper())
    return dict(paths)


def example(template: str) -> str:
    """The template with each {variable} filled in."""
    return re.sub(r"\{[^}]+\}", "x1", template)


def routes() -> list[dict[str, Any]]:
    config = yaml.safe_load(
        launcher.render_config(
            http_host="127.0.0.1",
            http_port=0,
            grpc_host="127.0.0.1",
            grpc_port=1,
            cors_origins=["https://app.example.com"],
        )
    )
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    (host,) = manager["typed_config"]["route_config"]["virtual_hosts"]
    found: list[dict[str, Any]] = host["routes"]
    return found


def test_every_documented_path_has_a_405_route_allowing_exactly_its_methods() -> None:
    refusals = [r for r in routes() if r.get("direct_response", {}).get("status") == 405]
    by_template: dict[str, set[str]] = {}
    for template in documented_paths():
        (route,) = [
            r
            for r in refusals
            if re.fullmatch(r["match"]["safe_regex"]["regex"], example(template))
        ]
        (method_match,) = route["match"]["headers"]
        assert method_match["invert_match"] is True
        allowed = set(method_match["string_match"]["safe_regex"]["regex"].split("|"))
        (allow,) = route["response_headers_to_add"]
        by_template[template] = allowed
        assert set(allow["header"]["value"].split(", ")) == allowed
        assert all(m in route["direct_response"]["body"]["inline_string"] for m in allowed)
    assert by_template == documented_paths()
    # No 405 route for a path the proto lacks (one route may serve paths with the same methods).
    assert all(
        any(re.fullmatch(r["match"]["safe_regex"]["regex"], example(t)) for t in by_template)
        for r in refusals
    )


def test_the_preflight_route_covers_exactly_the_documented_paths() -> None:
    (preflight,) = [r for r in routes() if r.get("name") == "cors_preflight"]
    regex = preflight["match"]["safe_regex"]["regex"]

    assert all(re.fullmatch(regex, example(t)) for t in documented_paths())
    assert not re.fullmatch(regex, "/api/v5/orgs/x1/experiments/x1/groups")
    assert set(launcher.CORS_ALLOW_METHODS.split(", ")) == set().union(*documented_paths().values())


def test_the_servicers_collection_url_is_the_documented_list_path() -> None:
    (list_path,) = [t for t, methods in documented_paths().items() if "POST" in methods]
    servicer = ExperimentServicer(service=None, public_base_url="https://api.example.com")  # type: ignore[arg-type]

    url = servicer._collection_url("x1")

    assert url == "https://api.example.com" + example(list_path)
