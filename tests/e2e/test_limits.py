"""Limits and unreadable input through the real gateway: our own 4xx, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.domain import limits, messages
from tests.e2e.payloads import upcoming
from tests.e2e.rest import RestClient, assert_error, field_violations
from tests.e2e.stack import World

INVALID_ARGUMENT = 3
BODY_LIMIT = limits.MAX_REQUEST_BODY_BYTES  # gateway/envoy.yaml, request_body_limit
BODY_TOO_LARGE = f"The request body is larger than the limit of {BODY_LIMIT} bytes."


def _draft_of_size(size: int) -> bytes:
    """A draft's JSON body of exactly `size` bytes, padded with an attribute the API ignores."""
    head = b'{"is_draft": true, "name": "padded", "padding": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_a_body_at_the_limit_is_accepted(client: RestClient, world: World) -> None:
    response = client.post(
        world.experiments,
        token=world.tokens.settings,
        content=_draft_of_size(BODY_LIMIT),
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 201, response.body[:300]


def test_a_body_one_byte_over_the_limit_is_413_in_our_words(
    client: RestClient, world: World
) -> None:
    response = client.post(
        world.experiments,
        token=world.tokens.settings,
        content=_draft_of_size(BODY_LIMIT + 1),
        headers={"Content-Type": "application/json"},
    )

    assert assert_error(response, 413, INVALID_ARGUMENT)["message"] == BODY_TOO_LARGE


# Envoy refuses the body before the server, or a database, sees the request. The client is
# still uploading when the 413 comes, and may wait for Envoy's delayed close (5 s) to end.
@pytest.mark.one_database
def test_a_body_five_times_the_limit_is_413_not_429(http1: RestClient, world: World) -> None:
    response = http1.post(
        world.experiments,
        token=world.tokens.settings,
        content=_draft_of_size(5 * BODY_LIMIT),
        headers={"Content-Type": "application/json"},
    )

    assert assert_error(response, 413, INVALID_ARGUMENT)["message"] == BODY_TOO_LARGE


def test_invalid_utf8_in_the_path_id_is_400(client: RestClient, world: World) -> None:
    response = client.get(f"{world.experiments}/%FF%FE", token=world.tokens.settings)

    body = assert_error(response, 400, INVALID_ARGUMENT)
    assert body["message"] == messages.UNREADABLE_REQUEST.format(
        message="experiments.v5.GetExperimentRequest"
    )


def test_nul_in_a_name_or_treatment_is_400_naming_the_field(
    http1: RestClient, world: World
) -> None:
    payload = upcoming(world, name="nul\u0000name")
    payload["groups"][1]["treatment"] = {"key\u0000": "value"}

    response = http1.post(world.experiments, token=world.tokens.settings, json_body=payload)

    assert field_violations(assert_error(response, 400, INVALID_ARGUMENT)) == {
        "name": messages.UNSTORABLE_TEXT,
        "groups[1].treatment": messages.TREATMENT_UNSTORABLE_TEXT,
    }


def test_a_deeply_nested_treatment_is_400(http1: RestClient, world: World) -> None:
    for depth in (limits.MAX_TREATMENT_DEPTH + 1, 60, 200):
        treatment = "{}"
        for _ in range(depth - 1):
            treatment = '{"a":' + treatment + "}"
        payload = json.dumps(upcoming(world)).replace(
            '"treatment": {"name": "Rule-B", "actions": [], "conditions": []}',
            f'"treatment": {treatment}',
        )
        assert f'"treatment": {treatment}' in payload
        response = http1.post(
            world.experiments,
            token=world.tokens.settings,
            content=payload.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert_error(response, 400, INVALID_ARGUMENT)


def _large_draft(index: int) -> dict[str, Any]:
    """About 120 KiB: ten treatments just under the per-treatment limit."""
    groups = [{"name": f"G{g}", "treatment": {"s": f"{index}" + "x" * 12_000}} for g in range(10)]
    return {"is_draft": True, "name": f"large {index}", "groups": groups}


def test_list_pages_of_large_experiments_fit_through_the_gateway(
    http1: RestClient, fresh_world: World
) -> None:
    created = set()
    for index in range(8):
        response = http1.post(
            fresh_world.experiments,
            token=fresh_world.tokens.settings,
            json_body=_large_draft(index),
        )
        assert response.status == 201, response.body[:300]
        created.add(response.json()["id"])

    seen: list[str] = []
    target = f"{fresh_world.experiments}?page_size=100"
    pages = 0
    while target:
        response = http1.get(target, token=fresh_world.tokens.settings)
        assert response.status == 200, response.body[:300]
        page = response.json()
        seen.extend(e["id"] for e in page["results"])
        target = page["next"]
        pages += 1

    assert pages > 1
    assert sorted(seen) == sorted(created)


def test_put_without_group_type_and_treatment_before_the_start_keeps_both(
    http1: RestClient, world: World
) -> None:
    created = http1.post(
        world.experiments, token=world.tokens.settings, json_body=upcoming(world)
    ).json()
    sent = dict(created, name="Renamed")
    sent["groups"] = [
        {k: v for k, v in g.items() if k not in ("group_type", "treatment")}
        for g in created["groups"]
    ]

    response = http1.put(
        f"{world.experiments}/{created['id']}", token=world.tokens.settings, json_body=sent
    )

    assert response.status == 200, response.body
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert [(g["group_type"], g.get("treatment")) for g in updated["groups"]] == [
        (g["group_type"], g.get("treatment")) for g in created["groups"]
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'{"is_draft": true, "name": "\\ud800"}',  # a lone surrogate
        b'{"is_draft": true, "groups": [{"treatment": {"\\udc00": "x"}}]}',
        b'{"is_draft": true, "name": "\xff\xfe"}',  # invalid UTF-8
        b'{"is_draft": true, "groups": [{"group_type": NaN}]}',
        b'{"is_draft": true, "groups": [{"group_type": 1e999}]}',
        b'{"is_draft": true, "groups": [{"treatment": {"w": Infinity}}]}',
        b'{"is_draft": true, "groups": [{"percentage": 1e10}]}',
        b'{"is_draft": true, "starts_at": "0001-01-01T00:00:00Z"}',
        b'{"is_draft": true, "ends_at": "9999-12-31T23:59:59Z"}',
    ],
)
def test_text_and_numbers_no_database_could_store_are_400(
    http1: RestClient, world: World, body: bytes
) -> None:
    response = http1.post(
        world.experiments,
        token=world.tokens.settings,
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 400, INVALID_ARGUMENT)


@pytest.mark.parametrize(
    # The second is {"t":"0001-01-01T00:00:00+14:00"} in base64: a forged, overflowing time.
    "cursor",
    ["garbage", "eyJ0IjoiMDAwMS0wMS0wMVQwMDowMDowMCsxNDowMCJ9", "%FF"],
)
def test_garbage_cursors_are_400(http1: RestClient, world: World, cursor: str) -> None:
    response = http1.get(f"{world.experiments}?cursor={cursor}", token=world.tokens.settings)

    assert_error(response, 400, INVALID_ARGUMENT)
