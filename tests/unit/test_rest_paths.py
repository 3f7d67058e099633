"""The REST paths are written in three places: the proto's google.api.http rules (the source),
gateway/envoy.yaml (405 routes and the CORS preflight route) and the servicer's collection URL.
These tests derive the paths from the descriptor and check the other two agree with them, and
that the gateway derives each RPC's path fields from its rules (what a query may not set).

(Reads the checked-in Envoy template and the generated descriptor; no network, no processes.)
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from experiments.v5 import experiments_pb2
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gateway import launcher, path_fields
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


def test_the_gateways_path_fields_are_those_of_every_binding_in_every_spelling(
    tmp_path: Path,
) -> None:
    # A contract of the shapes the transcoder binds: a nested path field, a JSON name other
    # than the field's name, additional bindings with paths of their own.
    book = descriptor_pb2.DescriptorProto(
        name="Book",
        field=[_field("shelf_id", "shelfId"), _field("title", "title")],
    )
    request = descriptor_pb2.DescriptorProto(
        name="MoveRequest",
        field=[
            _field("book", "book", type_name=".shelf.v1.Book"),
            _field("library_id", "libraryId"),
        ],
    )
    method = descriptor_pb2.MethodDescriptorProto(
        name="Move", input_type=".shelf.v1.MoveRequest", output_type=".shelf.v1.Book"
    )
    rule = method.options.Extensions[annotations_pb2.http]
    rule.post = "/v1/libraries/{library_id}/books"
    rule.body = "*"
    rule.additional_bindings.add(put="/v1/shelves/{book.shelf_id=shelves/*}/books/{book.title}")
    service = descriptor_pb2.ServiceDescriptorProto(name="Shelves", method=[method])
    contract = tmp_path / "contract.pb"
    contract.write_bytes(
        descriptor_pb2.FileDescriptorSet(
            file=[
                descriptor_pb2.FileDescriptorProto(
                    name="shelf.proto",
                    package="shelf.v1",
                    message_type=[book, request],
                    service=[service],
                )
            ]
        ).SerializeToString()
    )

    fields = path_fields.from_descriptor(contract)

    assert fields == {
        "/shelf.v1.Shelves/Move": {
            "library_id": "library_id",
            "libraryId": "library_id",
            "book.shelf_id": "book.shelf_id",
            "book.shelfId": "book.shelf_id",
            "book.title": "book.title",
        }
    }


def test_the_gateway_checks_every_rpc_with_a_rest_path() -> None:
    fields = path_fields.from_descriptor(launcher.DESCRIPTOR)

    assert set(fields) == {f"/{SERVICE.full_name}/{method.name}" for method in SERVICE.methods}


def _field(
    name: str, json_name: str, *, type_name: str = ""
) -> descriptor_pb2.FieldDescriptorProto:
    kind = descriptor_pb2.FieldDescriptorProto
    return kind(
        name=name,
        json_name=json_name,
        number=len(name),
        type=kind.TYPE_MESSAGE if type_name else kind.TYPE_STRING,
        type_name=type_name,
    )
