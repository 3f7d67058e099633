"""What browsers and plain HTTP clients get beyond the JSON: CORS for the allowed front ends
(headers, and a real headless Chromium, which also follows the REST watch), Location on a 201,
WWW-Authenticate on a 401, the client's own method in the access log, and list links that ignore a
forged Host."""

from __future__ import annotations

import re

import pytest

from gateway import launcher
from tests.e2e.front_end import FrontEnd, browser_missing, run_in_browser
from tests.e2e.payloads import upcoming
from tests.e2e.rest import RestClient
from tests.e2e.stack import Stack, World

ORIGIN_HEADERS = ("access-control-allow-origin", "access-control-allow-methods")
REQUESTED_HEADERS = "authorization, content-type, if-match, if-none-match, idempotency-key"


def documented_paths(world: World) -> list[str]:
    return [world.experiments, f"{world.experiments}/00000000-0000-4000-8000-000000000000"]


def preflight(client: RestClient, path: str, origin: str, method: str) -> dict[str, str]:
    response = client.request(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": REQUESTED_HEADERS,
        },
    )
    return {"status": str(response.status), **response.headers}


def test_a_preflight_from_an_allowed_origin_succeeds_on_every_documented_path(
    http1: RestClient, world: World, allowed_front_end: FrontEnd
) -> None:
    for path in documented_paths(world):
        for method in ("GET", "POST", "PUT", "DELETE"):
            answer = preflight(http1, path, allowed_front_end.origin, method)

            assert answer["status"] == "200", (path, method, answer)
            assert answer["access-control-allow-origin"] == allowed_front_end.origin
            allowed_methods = {m.strip() for m in answer["access-control-allow-methods"].split(",")}
            assert {"GET", "POST", "PUT", "DELETE"} <= allowed_methods
            allowed_headers = {h.strip() for h in answer["access-control-allow-headers"].split(",")}
            assert set(REQUESTED_HEADERS.split(", ")) <= allowed_headers


def test_a_preflight_from_another_origin_is_not_allowed(
    http1: RestClient, world: World, other_front_end: FrontEnd
) -> None:
    for path in documented_paths(world):
        answer = preflight(http1, path, other_front_end.origin, "POST")

        assert not any(name.startswith("access-control-") for name in answer), answer


def test_actual_responses_to_an_allowed_origin_allow_it_and_expose_etag_and_location(
    client: RestClient, world: World, allowed_front_end: FrontEnd, other_front_end: FrontEnd
) -> None:
    allowed = {"Origin": allowed_front_end.origin}
    listed = client.get(world.experiments, token=world.tokens.settings, headers=allowed)
    created = client.post(
        world.experiments, token=world.tokens.settings, json_body=upcoming(world), headers=allowed
    )
    refused = client.get(world.experiments, token="not-a-key", headers=allowed)
    other = client.get(
        world.experiments,
        token=world.tokens.settings,
        headers={"Origin": other_front_end.origin},
    )

    for response in (listed, created, refused):
        assert response.headers["access-control-allow-origin"] == allowed_front_end.origin
        exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
        assert {"etag", "location"} <= exposed
    assert (listed.status, created.status, refused.status) == (200, 201, 401)
    assert other.status == 200
    assert "access-control-allow-origin" not in other.headers


def test_without_cors_origins_the_gateway_sends_no_cors_headers(
    own_stack: Stack, allowed_front_end: FrontEnd
) -> None:
    world = own_stack.new_world()
    rest = RestClient(own_stack.base_url, "HTTP/1.1")

    answer = preflight(rest, world.experiments, allowed_front_end.origin, "POST")
    listed = rest.get(
        world.experiments,
        token=world.tokens.settings,
        headers={"Origin": allowed_front_end.origin},
    )

    assert answer["status"] == "405"
    for headers in (answer, listed.headers):
        assert not any(name.startswith("access-control-") for name in headers), headers


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_a_page_from_an_allowed_origin_lists_and_creates_in_a_real_browser(
    stack: Stack, fresh_world: World, allowed_front_end: FrontEnd
) -> None:
    world = fresh_world
    seen = run_in_browser(
        allowed_front_end.page, stack.base_url, world.organization_id, world.tokens.settings
    )

    assert seen["origin"] == allowed_front_end.origin
    assert seen["list"]["status"] == 200, seen
    assert seen["list"]["body"]["results"] == []
    assert seen["create"]["status"] == 201, seen
    assert seen["create"]["body"]["name"] == "Made in a browser"
    # Readable only because Location is an exposed header.
    assert seen["create"]["location"].endswith(
        f"{world.experiments}/{seen['create']['body']['id']}"
    )
    assert seen["remove"]["status"] == 204, seen


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_a_page_follows_the_rest_watch_with_a_streaming_fetch_in_a_real_browser(
    stack: Stack, fresh_world: World, allowed_front_end: FrontEnd
) -> None:
    world = fresh_world
    seen = run_in_browser(
        allowed_front_end.page,
        stack.base_url,
        world.organization_id,
        world.tokens.settings,
        scenario="watch",
    )

    assert seen["status"] == 200, seen
    assert seen["timedOut"] is False, seen
    first, *rest = seen["lines"]
    assert set(first) == {"heartbeat"}, seen
    # The page created the experiment only after the first line had arrived, and the stream
    # brought its change while the fetch was still open: nothing buffered it.
    [change] = [line["change"] for line in rest if "change" in line]
    assert change["experiment_id"] == seen["created"]["id"]
    assert change["action"] == "created"
    assert change["experiment"]["name"] == "Watched in a browser"


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_a_page_from_another_origin_is_refused_by_a_real_browser(
    stack: Stack, http1: RestClient, fresh_world: World, other_front_end: FrontEnd
) -> None:
    world = fresh_world
    seen = run_in_browser(
        other_front_end.page, stack.base_url, world.organization_id, world.tokens.settings
    )

    assert "error" in seen["list"], seen
    assert "error" in seen["create"], seen
    assert seen["remove"] is None
    # The refused preflight kept the POST from ever reaching the server.
    assert http1.get(world.experiments, token=world.tokens.settings).json()["results"] == []


def test_a_201_carries_the_location_of_the_new_experiment(
    client: RestClient, stack: Stack, world: World
) -> None:
    response = client.post(
        world.experiments, token=world.tokens.settings, json_body=upcoming(world)
    )

    assert response.status == 201, response.body
    location = response.headers["location"]
    assert location == f"{stack.base_url}{world.experiments}/{response.json()['id']}"
    assert client.get(location, token=world.tokens.settings).json() == response.json()


def test_a_401_names_the_token_scheme(client: RestClient, world: World) -> None:
    for token in (None, "not-a-key"):
        response = client.get(world.experiments, token=token)

        assert response.status == 401
        assert response.headers["www-authenticate"] == "Token"


def test_the_access_log_shows_the_method_the_client_sent(
    http1: RestClient, stack: Stack, world: World
) -> None:
    created = http1.post(world.experiments, token=world.tokens.settings, json_body=upcoming(world))
    one = f"{world.experiments}/{created.json()['id']}"
    http1.put(one, token=world.tokens.settings, json_body=created.json())
    http1.get(one, token=world.tokens.settings)
    http1.delete(one, token=world.tokens.settings)

    def logged() -> list[str] | None:
        lines = [line for line in stack.envoy_log.read_text().splitlines() if f" {one} " in line]
        return lines if len(lines) == 3 else None

    assert stack.envoy is not None
    lines = launcher.poll(logged, what="the access log", process=stack.envoy.process, timeout=10)
    methods = [re.search(r'"(\S+) ', line).group(1) for line in lines]  # type: ignore[union-attr]
    assert methods == ["PUT", "GET", "DELETE"]


def test_list_links_use_the_public_url_whatever_host_the_client_sends(
    client: RestClient, stack: Stack, fresh_world: World
) -> None:
    world = fresh_world
    for n in range(2):
        client.post(
            world.experiments, token=world.tokens.settings, json_body=upcoming(world, f"E{n}")
        )

    forged = client.get(
        f"{world.experiments}?page_size=1",
        token=world.tokens.settings,
        headers={"Host": "evil.example.test", "X-Forwarded-Host": "evil.example.test"},
    ).json()

    assert forged["next"].startswith(f"{stack.base_url}{world.experiments}?")
    page_two = client.get(forged["next"], token=world.tokens.settings).json()
    assert page_two["previous"].startswith(f"{stack.base_url}{world.experiments}?")
