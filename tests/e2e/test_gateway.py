"""What Envoy itself owes REST clients: both HTTP versions, JSON errors of its own, no gRPC
internals in responses, and a 503 while the gRPC server is down that heals by itself."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import launcher
from tests.e2e.payloads import upcoming
from tests.e2e.rest import (
    HTTP_1_1,
    HTTP_2,
    Response,
    RestClient,
    assert_error,
    field_violations,
    raw_http2,
)
from tests.e2e.stack import Stack, World

INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, UNAVAILABLE = 3, 5, 12, 14
INTERNAL_HEADER_PREFIXES = ("grpc-", "x-envoy-", "x-http-code")


def assert_no_internal_headers(response: Response) -> None:
    for name in [*response.headers, *response.trailers]:
        assert not name.startswith(INTERNAL_HEADER_PREFIXES), (name, response.headers)
    assert "server" not in response.headers


def test_the_rendered_config_passes_envoys_validation(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(
        launcher.render_config(
            http_host="0.0.0.0", http_port=8080, grpc_host="localhost", grpc_port=50051
        )
    )

    result = subprocess.run(
        [
            str(launcher.envoy_binary()),
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_http_1_1_and_http_2_are_both_served(stack: Stack, world: World) -> None:
    for protocol in (HTTP_1_1, HTTP_2):
        rest = RestClient(stack.base_url, protocol)
        try:
            response = rest.get(world.experiments, token=world.tokens.settings)
        finally:
            rest.close()

        assert (response.status, response.protocol) == (200, protocol)


def test_a_malformed_json_body_is_400_json_saying_so(client: RestClient, world: World) -> None:
    response = client.post(
        world.experiments,
        token=world.tokens.settings,
        content=b'{"is_draft": ',
        headers={"Content-Type": "application/json"},
    )

    # No attribute to name, as for an unreadable gRPC message: no field violations.
    body = assert_error(response, 400, INVALID_ARGUMENT)
    assert body["message"].startswith("The request body is not valid JSON: "), body
    assert body["details"] == []


def test_an_unknown_path_is_404_json(client: RestClient, world: World) -> None:
    for path in ("/", "/api/v4/experiments", f"{world.experiments}/some-id/groups"):
        response = client.get(path, token=world.tokens.settings)

        assert_error(response, 404, NOT_FOUND)


@pytest.mark.parametrize(
    ("method", "one", "allowed"),
    [
        ("PATCH", True, "GET, PUT, DELETE"),
        ("POST", True, "GET, PUT, DELETE"),
        ("PUT", False, "GET, POST"),
        ("DELETE", False, "GET, POST"),
    ],
)
def test_a_method_the_path_does_not_have_is_405_json_naming_the_allowed_ones(
    client: RestClient, world: World, method: str, one: bool, allowed: str
) -> None:
    path = f"{world.experiments}/{'some-id' if one else ''}".rstrip("/")

    response = client.request(method, path, token=world.tokens.settings, json_body={})

    assert_error(response, 405, UNIMPLEMENTED)
    assert response.headers["allow"] == allowed


@pytest.mark.parametrize(("one", "allowed"), [(False, "GET, POST"), (True, "GET, PUT, DELETE")])
def test_a_query_without_content_type_is_the_same_405_naming_the_allowed_ones(
    client: RestClient, world: World, one: bool, allowed: str
) -> None:
    # Envoy refuses a QUERY (RFC 10008) without Content-Type itself, before any route is chosen.
    path = f"{world.experiments}/{'some-id' if one else ''}".rstrip("/")

    response = client.request("QUERY", f"{path}?page_size=1", token=world.tokens.settings)

    assert_error(response, 405, UNIMPLEMENTED)
    assert response.headers["allow"] == allowed


def test_a_query_without_content_type_elsewhere_is_400_saying_why(
    client: RestClient, world: World
) -> None:
    response = client.request("QUERY", "/nowhere", token=world.tokens.settings)

    assert "Content-Type" in assert_error(response, 400, INVALID_ARGUMENT)["message"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Legal in HTTP, not as a gRPC metadata key.
        ("a!b", "1"),
        # gRPC decodes a -bin value as base64, and reads its own headers.
        ("x-note-bin", "not base64!"),
        ("grpc-timeout", "soon"),
        ("grpc-encoding", "zip"),
    ],
)
def test_a_request_header_grpc_cannot_carry_is_ignored_not_a_500(
    client: RestClient, world: World, name: str, value: str
) -> None:
    response = client.get(world.experiments, token=world.tokens.settings, headers={name: value})

    assert response.status == 200, response.body


def test_an_unknown_query_parameter_is_400_json(http1: RestClient, world: World) -> None:
    response = http1.get(f"{world.experiments}?page_sise=2", token=world.tokens.settings)

    assert set(field_violations(assert_error(response, 400, INVALID_ARGUMENT))) == {"page_sise"}


def test_unknown_body_attributes_are_ignored(http1: RestClient, world: World) -> None:
    payload = dict(upcoming(world), colour="blue", flags={"beta": True})

    response = http1.post(world.experiments, token=world.tokens.settings, json_body=payload)

    assert response.status == 201, response.body
    assert "colour" not in response.json()


def test_no_grpc_or_envoy_header_reaches_a_client(stack: Stack, world: World) -> None:
    token = world.tokens.settings
    http1 = RestClient(stack.base_url, HTTP_1_1)
    senders: dict[str, Callable[[str, str, Any], Response]] = {
        HTTP_1_1: lambda method, path, body: http1.request(
            method, path, token=token, json_body=body
        ),
        # Raw HTTP/2, to see the trailers as well.
        HTTP_2: lambda method, path, body: raw_http2(
            stack.base_url, method, path, token=token, json_body=body
        ),
    }
    for protocol, send in senders.items():
        created = send("POST", world.experiments, upcoming(world)).json()
        one = f"{world.experiments}/{created['id']}"
        exchanges: list[tuple[str, str, Any, int]] = [
            ("POST", world.experiments, upcoming(world), 201),
            ("GET", world.experiments, None, 200),
            ("GET", one, None, 200),
            ("PUT", one, created, 200),
            ("PUT", one, dict(created, is_draft=True), 400),
            ("GET", f"{world.experiments}/00000000-0000-4000-8000-000000000000", None, 404),
            ("GET", "/nowhere", None, 404),
            ("DELETE", one, None, 204),
        ]
        for method, path, body, status in exchanges:
            response = send(method, path, body)

            assert response.status == status, (protocol, method, path, response.body)
            assert_no_internal_headers(response)


def test_the_gateway_answers_503_json_while_the_server_is_down_and_recovers(
    own_stack: Stack,
) -> None:
    world = own_stack.new_world()
    rest = RestClient(own_stack.base_url, HTTP_1_1)
    assert rest.get(world.experiments, token=world.tokens.settings).status == 200

    own_stack.stop_server()
    down = rest.get(world.experiments, token=world.tokens.settings)
    assert_error(down, 503, UNAVAILABLE)
    assert_no_internal_headers(down)

    own_stack.start_server()
    assert own_stack.envoy is not None

    def served() -> Response | None:
        response = rest.get(world.experiments, token=world.tokens.settings)
        return None if response.status == 503 else response

    # Envoy's active health check finds the server again within about a second.
    recovered = launcher.poll(
        served, what="the gateway's recovery", process=own_stack.envoy.process, timeout=15
    )
    assert recovered.status == 200, recovered.body
