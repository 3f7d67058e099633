"""What the gateway lets into the REST API: path fields only from the path, headers within the
API's limit, and no gRPC-looking request on a REST path (issue 20, items 1, 4 and 5)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from experiments.v5 import experiments_pb2
from google.api import annotations_pb2

from server.domain import limits, messages
from tests.e2e.payloads import upcoming
from tests.e2e.rest import (
    HTTP_1_1,
    HTTP_2,
    Response,
    RestClient,
    assert_error,
    field_violations,
    raw_http1,
    raw_http2,
)
from tests.e2e.stack import Stack, World

INVALID_ARGUMENT = 3
SERVICE = experiments_pb2.DESCRIPTOR.services_by_name["ExperimentService"]


def rest_bindings() -> list[tuple[str, str, str, str, str]]:
    """(RPC, HTTP method, path template, body, path field) for each field each REST binding of
    each RPC takes from its path: read from the google.api.http rules, so that an RPC added to
    the proto is covered here without a change."""
    found = []
    for method in SERVICE.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            assert verb in ("get", "put", "post", "delete", "patch"), (method.name, verb)
            template = getattr(binding, verb)
            for field in re.findall(r"{([^}=]+)", template):
                found.append((method.name, verb.upper(), template, binding.body, field))
    return found


def _create(client: RestClient, world: World) -> dict[str, Any]:
    response = client.post(
        world.experiments, token=world.tokens.settings, json_body=upcoming(world)
    )
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json()
    return created


def _assert_path_field_refused(response: Response, *fields: str) -> None:
    body = assert_error(response, 400, INVALID_ARGUMENT)
    assert body["message"] == messages.INVALID_REQUEST
    assert field_violations(body) == dict.fromkeys(fields, messages.PATH_FIELD_IN_QUERY)


@pytest.mark.parametrize(
    ("rpc", "verb", "template", "body", "field"),
    rest_bindings(),
    ids=[f"{rpc}-{field}" for rpc, _, _, _, field in rest_bindings()],
)
def test_a_query_parameter_naming_a_path_field_is_400_naming_it(
    http1: RestClient,
    world: World,
    other_world: World,
    rpc: str,
    verb: str,
    template: str,
    body: str,
    field: str,
) -> None:
    mine, theirs = _create(http1, world), _create(http1, other_world)
    values = {"organization_id": world.organization_id, "experiment_id": mine["id"]}
    other_values = {"organization_id": other_world.organization_id, "experiment_id": theirs["id"]}
    path = re.sub(r"{([^}=]+)[^}]*}", lambda m: values.get(m.group(1), "x1"), template)

    response = http1.request(
        verb,
        f"{path}?{field}={other_values.get(field, 'x2')}",
        token=world.tokens.settings,
        json_body={} if body else None,
    )

    _assert_path_field_refused(response, field)


def test_a_delete_whose_query_names_another_experiment_deletes_neither(
    client: RestClient, world: World
) -> None:
    x, y = _create(client, world), _create(client, world)

    response = client.delete(
        f"{world.experiments}/{x['id']}?experiment_id={y['id']}", token=world.tokens.settings
    )

    _assert_path_field_refused(response, "experiment_id")
    for experiment in (x, y):
        kept = client.get(f"{world.experiments}/{experiment['id']}", token=world.tokens.settings)
        assert kept.status == 200, kept.body


def test_a_create_whose_query_names_another_organization_creates_nowhere(
    http1: RestClient, world: World, other_world: World
) -> None:
    def listed() -> int:
        page = http1.get(f"{world.experiments}?page_size=100", token=world.tokens.settings)
        return len(page.json()["results"])

    before = listed()

    response = http1.post(
        f"{other_world.experiments}?organization_id={world.organization_id}",
        token=world.tokens.settings,
        json_body=upcoming(world),
    )

    _assert_path_field_refused(response, "organization_id")
    assert listed() == before


def test_every_path_field_in_the_query_is_named_also_percent_encoded(
    http1: RestClient, world: World
) -> None:
    experiment = _create(http1, world)

    response = http1.get(
        f"{world.experiments}/{experiment['id']}?organization%5Fid=a&experiment_id=b",
        token=world.tokens.settings,
    )

    _assert_path_field_refused(response, "organization_id", "experiment_id")


# --- Headers: one limit, counted alike by the gateway and the gRPC server --------------------


def _filled_to(size: int, token: str) -> list[tuple[bytes, bytes]]:
    """Headers that count exactly `size` bytes (README, "Limits": names and values, neither
    pseudo-headers such as Host nor headers proxies add)."""
    authorization = (b"authorization", f"Token {token}".encode())
    name = b"x-filler"
    used = len(authorization[0]) + len(authorization[1]) + len(name)
    return [authorization, (name, b"f" * (size - used))]


# The count does not depend on the database; it is the gateway's and the server's part.
@pytest.mark.one_database
@pytest.mark.parametrize("version", [HTTP_1_1, HTTP_2])
def test_headers_at_the_limit_are_served(stack: Stack, world: World, version: str) -> None:
    headers = _filled_to(limits.MAX_HEADER_BYTES, world.tokens.settings)

    for _ in range(5):  # grpcio used to refuse such requests at random
        response = _get(stack, world.experiments, headers, version)

        assert response.status == 200, response.body[:300]


@pytest.mark.one_database
@pytest.mark.parametrize("version", [HTTP_1_1, HTTP_2])
def test_headers_one_byte_over_the_limit_are_431_in_our_words(
    stack: Stack, world: World, version: str
) -> None:
    headers = _filled_to(limits.MAX_HEADER_BYTES + 1, world.tokens.settings)

    response = _get(stack, world.experiments, headers, version)

    body = assert_error(response, 431, INVALID_ARGUMENT)
    assert body["message"] == messages.HEADERS_TOO_LARGE.format(limit=limits.MAX_HEADER_BYTES)


@pytest.mark.one_database
def test_headers_beyond_what_the_gateway_decodes_are_still_431_over_http_1_1(
    stack: Stack, world: World
) -> None:
    headers = _filled_to(100 * limits.KIB, world.tokens.settings)

    response = _get(stack, world.experiments, headers, HTTP_1_1)

    body = assert_error(response, 431, INVALID_ARGUMENT)
    assert body["message"] == messages.HEADERS_TOO_LARGE.format(limit=limits.MAX_HEADER_BYTES)


def _get(stack: Stack, path: str, headers: list[tuple[bytes, bytes]], version: str) -> Response:
    if version == HTTP_2:
        return raw_http2(stack.base_url, "GET", path, headers=headers)
    return raw_http1(stack.base_url, "GET", path, headers)


# --- gRPC-looking requests on REST paths ------------------------------------------------------

GRPC_CONTENT_TYPES = [
    "application/grpc",
    "application/grpc+proto",
    "application/grpc+json",
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "Application/GRPC",
]
# Each of these turned a request into a 500 when the gateway skipped its header filter.
MALFORMED_HEADERS = {"x-bin": "!", "grpc-encoding": "br", "x-a!b": "1"}


@pytest.mark.parametrize("content_type", GRPC_CONTENT_TYPES)
def test_a_grpc_content_type_on_a_rest_path_is_415_and_creates_nothing(
    client: RestClient, world: World, content_type: str
) -> None:
    before = client.get(f"{world.experiments}?page_size=100", token=world.tokens.settings)

    for token in (world.tokens.settings, None):
        response = client.post(
            world.experiments,
            token=token,
            content=b'{"is_draft": true}',
            headers={"Content-Type": content_type, **MALFORMED_HEADERS},
        )

        assert_error(response, 415, INVALID_ARGUMENT)
    after = client.get(f"{world.experiments}?page_size=100", token=world.tokens.settings)
    assert after.json()["results"] == before.json()["results"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_malformed_headers_are_dropped_whatever_the_content_type(
    http1: RestClient, world: World, content_type: str | None
) -> None:
    headers = dict(MALFORMED_HEADERS)
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = http1.post(
        world.experiments,
        token=world.tokens.settings,
        content=b'{"is_draft": true}',
        headers=headers,
    )

    assert response.status == 201, response.body
