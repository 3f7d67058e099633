"""Every documented 400, 401, 403 and 404 of the REST API, as JSON google.rpc.Status bodies."""

from __future__ import annotations

from typing import Any

import pytest

from server.domain import messages
from tests.e2e.payloads import upcoming
from tests.e2e.rest import RestClient, assert_error, field_violations
from tests.e2e.stack import World

INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED = 3, 5, 7, 16
UNKNOWN_EXPERIMENT = "00000000-0000-4000-8000-000000000000"


def create(client: RestClient, world: World, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post(world.experiments, token=world.tokens.settings, json_body=payload)
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json()
    return created


def calls(world: World, experiment_id: str) -> list[tuple[str, str, Any]]:
    """Every documented method and path of `world`, with a valid body where one is needed."""
    one = f"{world.experiments}/{experiment_id}"
    return [
        ("GET", world.experiments, None),
        ("POST", world.experiments, upcoming(world)),
        ("GET", one, None),
        ("PUT", one, upcoming(world)),
        ("DELETE", one, None),
    ]


def test_missing_required_attributes_are_400_with_a_field_violation_each(
    client: RestClient, world: World
) -> None:
    payload = upcoming(world)
    del payload["name"], payload["groups"][1]["percentage"], payload["groups"][0]["group_type"]

    response = client.post(world.experiments, token=world.tokens.settings, json_body=payload)

    body = assert_error(response, 400, INVALID_ARGUMENT)
    assert body["message"] == messages.INVALID_REQUEST
    assert set(field_violations(body)) == {"name", "groups[1].percentage", "groups[0].group_type"}


def test_a_missing_is_draft_is_400_naming_is_draft(http1: RestClient, world: World) -> None:
    payload = upcoming(world)
    del payload["is_draft"]

    response = http1.post(world.experiments, token=world.tokens.settings, json_body=payload)

    assert "is_draft" in field_violations(assert_error(response, 400, INVALID_ARGUMENT))


def test_attributes_in_the_wrong_format_are_400(http1: RestClient, world: World) -> None:
    payload = upcoming(world)
    payload["goal_id"] = "not-a-uuid"
    payload["groups"][0]["percentage"] = 101
    payload["group_reset_interval"] = "monthly"

    response = http1.post(world.experiments, token=world.tokens.settings, json_body=payload)

    violations = field_violations(assert_error(response, 400, INVALID_ARGUMENT))
    assert {"goal_id", "groups[0].percentage", "group_reset_interval"} <= set(violations)


RFC_3339 = "Must be an RFC 3339 time with a time zone, e.g. 2019-05-08T13:02:35.123Z."


# The gateway's answer: the server never sees these requests, whatever its database.
@pytest.mark.one_database
@pytest.mark.parametrize(
    ("attribute", "value", "field", "description"),
    [
        ("starts_at", "next tuesday", "starts_at", RFC_3339),
        # The spec's own style, without a time zone.
        ("ends_at", "2019-02-13T11:31:36.042", "ends_at", RFC_3339),
        ("percentage", "ninety", "groups[1].percentage", "Must be an integer."),
        ("percentage", 90.5, "groups[1].percentage", "Must be an integer."),
        ("is_draft", "nope", "is_draft", "Must be true or false."),
        ("name", 5, "name", "Must be a string."),
        ("treatment", 5, "groups[1].treatment", "Must be a JSON object."),
        ("room_ids", [5], "room_ids[0]", "Must be a string."),
    ],
)
def test_a_value_the_gateway_cannot_parse_is_400_naming_its_json_field(
    client: RestClient, world: World, attribute: str, value: Any, field: str, description: str
) -> None:
    payload = upcoming(world)
    if field.startswith("groups[1]."):
        payload["groups"][1][attribute] = value
    else:
        payload[attribute] = value

    response = client.post(world.experiments, token=world.tokens.settings, json_body=payload)

    # The transcoder refuses it before the server sees it; the answer has the server's shape.
    body = assert_error(response, 400, INVALID_ARGUMENT)
    assert body["message"] == messages.INVALID_REQUEST
    assert field_violations(body) == {field: description}


def test_integers_and_booleans_spelled_as_strings_are_read_as_what_they_spell(
    http1: RestClient, world: World
) -> None:
    # The documented choice (README, "REST specifics"): protobuf's JSON mapping reads "90" as 90
    # and "false" as false; anything else that is not the type is refused, as above.
    payload = upcoming(world)
    payload["is_draft"] = "false"
    payload["groups"][0]["percentage"] = "90"
    payload["groups"][1]["percentage"] = "10"

    response = http1.post(world.experiments, token=world.tokens.settings, json_body=payload)

    assert response.status == 201, response.body
    created = response.json()
    assert created["is_draft"] is False
    assert [group["percentage"] for group in created["groups"]] == [90, 10]


@pytest.mark.parametrize(
    "authorization",
    [None, "Token not-a-key", "Bearer some-key", "Token"],
    ids=["no header", "unknown key", "wrong scheme", "no key"],
)
def test_an_unauthenticated_call_is_401(
    http1: RestClient, world: World, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in calls(world, UNKNOWN_EXPERIMENT):
        response = http1.request(method, path, json_body=body, headers=headers)

        assert assert_error(response, 401, UNAUTHENTICATED)["message"] == messages.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("content", "authorization"),
    [
        (b'{"is_draft": ', None),
        (b'{"is_draft": true, "starts_at": "next tuesday"}', "Bearer some-key"),
    ],
    ids=["broken JSON", "a malformed value, wrong scheme"],
)
def test_a_call_without_a_key_is_401_whatever_its_body(
    client: RestClient, world: World, content: bytes, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = client.post(world.experiments, content=content, headers=headers)

    # README, "Errors, in the order they are checked": the key comes first.
    assert assert_error(response, 401, UNAUTHENTICATED)["message"] == messages.UNAUTHENTICATED
    assert response.headers["www-authenticate"] == "Token"


# Over HTTP/2 the answer comes while the client is still sending, and the stream is then reset,
# which HTTP/2 clients report as an error of their own; HTTP/1.1 reads the answer.
@pytest.mark.one_database
def test_a_call_without_a_key_is_401_rather_than_413_for_a_body_over_the_limit(
    http1: RestClient, world: World
) -> None:
    response = http1.post(
        world.experiments,
        content=b"[" + b"1," * 600_000 + b"1]",
        headers={"Content-Type": "application/json"},
    )

    assert assert_error(response, 401, UNAUTHENTICATED)["message"] == messages.UNAUTHENTICATED


def test_another_organizations_path_is_403(client: RestClient, world: World) -> None:
    experiment = create(client, world, upcoming(world))
    for method, path, body in calls(world, experiment["id"]):
        response = client.request(
            method, path, token=world.tokens.other_organization, json_body=body
        )

        body = assert_error(response, 403, PERMISSION_DENIED)
        assert body["message"] == messages.NO_ORGANIZATION_ACCESS, (method, path)


def test_an_organization_without_an_active_subscription_is_403(
    http1: RestClient, world: World
) -> None:
    inactive = World(**{**world.__dict__, "organization_id": world.inactive_organization_id})
    for method, path, body in calls(inactive, UNKNOWN_EXPERIMENT):
        response = http1.request(
            method, path, token=world.tokens.inactive_subscription, json_body=body
        )

        body = assert_error(response, 403, PERMISSION_DENIED)
        assert body["message"] == messages.NO_ACTIVE_SUBSCRIPTION, (method, path)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_changing_without_the_settings_permission_is_403(
    http1: RestClient, world: World, method: str
) -> None:
    experiment = create(http1, world, upcoming(world))
    [(_, path, body)] = [c for c in calls(world, experiment["id"]) if c[0] == method]

    response = http1.request(method, path, token=world.tokens.no_settings, json_body=body)

    body = assert_error(response, 403, PERMISSION_DENIED)
    assert body["message"] == messages.NO_SETTINGS_PERMISSION


def test_reading_needs_no_settings_permission(http1: RestClient, world: World) -> None:
    experiment = create(http1, world, upcoming(world))

    one = http1.get(f"{world.experiments}/{experiment['id']}", token=world.tokens.no_settings)
    listed = http1.get(world.experiments, token=world.tokens.no_settings)

    assert (one.status, listed.status) == (200, 200)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_unknown_experiment_is_404(http1: RestClient, world: World, method: str) -> None:
    body = upcoming(world) if method == "PUT" else None

    response = http1.request(
        method,
        f"{world.experiments}/{UNKNOWN_EXPERIMENT}",
        token=world.tokens.settings,
        json_body=body,
    )

    assert assert_error(response, 404, NOT_FOUND)["message"] == messages.EXPERIMENT_NOT_FOUND


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_experiment_of_another_organization_is_404(
    http1: RestClient, world: World, other_world: World, method: str
) -> None:
    elsewhere = other_world
    theirs = create(http1, elsewhere, upcoming(elsewhere))
    body = upcoming(world) if method == "PUT" else None

    response = http1.request(
        method,
        f"{world.experiments}/{theirs['id']}",
        token=world.tokens.settings,
        json_body=body,
    )

    assert assert_error(response, 404, NOT_FOUND)["message"] == messages.EXPERIMENT_NOT_FOUND
    still_there = http1.get(
        f"{elsewhere.experiments}/{theirs['id']}", token=elsewhere.tokens.settings
    )
    assert still_there.status == 200
