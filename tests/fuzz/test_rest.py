"""Random REST requests through the real Envoy gateway, on SQLite and PostgreSQL.

Methods, paths (with percent-encoded garbage and invalid UTF-8), query strings and JSON bodies
(valid, hostile, or not JSON at all). The answer is never a 5xx, and a refused write changes
nothing in the database.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.payloads import upcoming
from tests.e2e.rest import HTTP_1_1, Response, RestClient
from tests.e2e.stack import Stack, World
from tests.fuzz import strategies as fs
from tests.fuzz.conftest import FUZZ_SETTINGS, engine_for, snapshot
from tests.fuzz.tally import Tally

WRITES = {"POST", "PUT", "DELETE", "PATCH"}


@pytest.fixture
def fuzz_stack(fuzz_database: tuple[str, str], tmp_path: Path) -> Iterator[tuple[str, Stack]]:
    backend, url = fuzz_database
    stack = Stack(tmp_path, database_url=url)  # migrates the database
    try:
        stack.start()
        yield backend, stack
    finally:
        stack.close()


SEGMENT = st.one_of(
    fs.TEXT.map(lambda text: quote(text, safe="")),
    st.binary(min_size=1, max_size=8).map(lambda raw: quote(raw, safe="")),
    st.sampled_from(["%FF%FE", "%00", "..", "%2F", "a%20b", "%C3%28"]),
)


# The read-only paths beside the experiments (templated), and the query parameters each takes.
PATHS = {
    "revisions": "/api/v5/orgs/{organization}/experiments/{experiment}/revisions",
    "changes": "/api/v5/orgs/{organization}/changes",
    "watch": "/api/v5/orgs/{organization}/changes/watch",
    "assignments": "/api/v5/orgs/{organization}/assignments",
}
QUERY_PARAMETERS = {
    "revisions": ["page_size", "cursor"],
    "changes": ["after", "page_size"],
    "watch": ["after"],
    "assignments": ["visitor_id", "room_id", "at"],
}
# Parameters none of them takes (or another one's), which the gateway refuses before the server.
STRAY_PARAMETERS = ["after", "cursor", "page_size", "visitorid", "x"]


def _parameter_values(world: World) -> dict[str, st.SearchStrategy[str]]:
    """What a query parameter of those paths may hold: plausible values and garbage."""
    number = st.one_of(fs.INT32.map(str), fs.TEXT)
    return {
        "after": fs.feed_positions(),
        "cursor": st.one_of(fs.forged_cursors(), fs.feed_positions()),
        "page_size": number,
        "visitor_id": fs.TEXT,
        "visitorid": fs.TEXT,
        "room_id": st.one_of(st.sampled_from(world.room_ids), fs.UUIDISH),
        "at": st.one_of(
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()), fs.TEXT
        ),
        "x": number,
    }


@st.composite
def requests(
    draw: st.DrawFn, world: World, known: tuple[str, ...]
) -> tuple[str, str, bytes | None]:
    """(method, target, body): mostly documented paths of the caller's organization, so that
    requests reach the rules, with every part liable to be garbage."""
    # Mostly a documented method and path pair; sometimes anything.
    method, shape = draw(
        st.sampled_from(
            [("POST", "collection")] * 6
            + [("PUT", "item")] * 6
            + [("GET", "collection"), ("GET", "item"), ("GET", "collection"), ("DELETE", "item")]
            + [("GET", shape) for shape in PATHS] * 2
            + [("random", "random")] * 4
        )
    )
    if method == "random":
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
        shape = draw(st.sampled_from(["collection", "item", *PATHS, "other"]))
    organization = world.organization_id if draw(st.integers(0, 7)) else draw(SEGMENT)
    collection = f"/api/v5/orgs/{organization}/experiments"
    experiment = draw(st.sampled_from(known)) if draw(st.integers(0, 5)) else draw(SEGMENT)
    if shape == "collection":
        path = collection
    elif shape == "item":
        path = f"{collection}/{experiment}"
    elif shape in PATHS:
        path = PATHS[shape].format(organization=organization, experiment=experiment)
    else:
        path = "/" + "/".join(draw(st.lists(SEGMENT, max_size=5)))
    if shape in PATHS:
        # Mostly the path's own parameters, each present or not, so that requests reach the
        # server; sometimes a stray one too, or garbage.
        values = _parameter_values(world)
        own = {name: values[name] for name in QUERY_PARAMETERS[shape]}
        stray = st.sampled_from(STRAY_PARAMETERS).flatmap(
            lambda name: st.fixed_dictionaries({name: values[name]})
        )
        parameters = draw(st.fixed_dictionaries({}, optional=own))
        if draw(st.integers(0, 4)) == 0:
            parameters.update(draw(stray))
        query = urlencode(parameters)
        if draw(st.integers(0, 9)) == 0:
            query = draw(st.sampled_from(["after=%FF", "page_size=99999999999", "at=%ZZ", "&&=="]))
    else:
        query = draw(
            st.one_of(
                st.just(""),
                st.just(""),
                st.dictionaries(
                    st.sampled_from(["page_size", "cursor", "pagesize", "x"]),
                    st.one_of(fs.TEXT, fs.INT32.map(str), fs.forged_cursors()),
                    max_size=3,
                ).map(urlencode),
                st.sampled_from(["page_size=%ZZ", "cursor=%FF", "page_size=99999999999", "&&=="]),
            )
        )
    target = f"{path}?{query}" if query else path
    body: bytes | None = None
    if method in ("POST", "PUT", "PATCH"):
        kinds = ["experiment"] * 3 + ["upcoming"] * 2 + ["hostile"] * 3 + ["json", "bytes"]
        kind = draw(st.sampled_from(kinds))
        if kind == "experiment":
            sent = draw(fs.experiment_dicts([world.goal_id], world.room_ids))
            body = json.dumps(sent, allow_nan=True).encode()
        elif kind == "upcoming":  # the valid payload with one attribute replaced
            sent = upcoming(world)
            sent[draw(st.sampled_from(sorted(sent)))] = draw(fs.JSON_VALUES)
            body = json.dumps(sent, allow_nan=True).encode()
        elif kind == "hostile":  # valid in shape; hostile text, numbers and nesting in it
            sent = upcoming(world)
            sent["is_draft"] = draw(st.booleans())
            where = draw(st.sampled_from(["name", "group name", "treatment"]))
            if where == "name":
                sent["name"] = draw(fs.TEXT)
            elif where == "group name":
                sent["groups"][0]["name"] = draw(fs.TEXT)
            else:
                sent["groups"][1]["treatment"] = draw(fs.TREATMENTS)
            body = json.dumps(sent, allow_nan=True).encode()
        elif kind == "json":
            body = json.dumps(draw(fs.JSON_VALUES), allow_nan=True).encode()
        else:
            body = draw(st.binary(max_size=100))
    return method, target, body


def test_no_rest_request_gets_a_5xx_or_writes_when_refused(
    fuzz_stack: tuple[str, Stack], tally: Tally
) -> None:
    backend, stack = fuzz_stack
    world = stack.new_world()
    engine = engine_for(stack.database_url)
    rest = RestClient(stack.base_url, HTTP_1_1)
    known = ("00000000-0000-4000-8000-000000000000", *_seed(rest, world))

    @FUZZ_SETTINGS
    @given(request=requests(world, known), who=st.sampled_from(["settings"] * 7 + ["no_settings"]))
    def one_request(request: tuple[str, str, bytes | None], who: str) -> None:
        method, target, body = request
        before = snapshot(engine)
        tally.sent("REST", backend)
        token = getattr(world.tokens, who)
        if method == "GET" and urlsplit(target).path.endswith("/changes/watch"):
            response = _first_line(stack.base_url, target, token)
        else:
            response = rest.request(
                method,
                target,
                token=token,
                content=body,
                headers={"Content-Type": "application/json"} if body is not None else None,
            )
        tally.answered("REST", backend, str(response.status), failed=response.status >= 500)
        assert response.status < 500, (method, target, body, response.status, response.body)
        if response.status >= 400 and method in WRITES:
            assert snapshot(engine) == before, f"refused {method} {target} wrote something"

    try:
        one_request()
    finally:
        rest.close()
        engine.dispose()


def _first_line(base_url: str, target: str, token: str) -> Response:
    """A watch's status and its first line (an error's whole body), then the connection closed:
    an accepted watch never ends by itself."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", target, headers={"Authorization": f"Token {token}"})
        response = connection.getresponse()
        body = response.readline() if response.status == 200 else response.read()
        return Response(response.status, dict(response.getheaders()), body, HTTP_1_1)
    finally:
        connection.close()


def _seed(rest: RestClient, world: World) -> list[str]:
    ids = []
    for payload in (
        {"is_draft": True, "name": "draft"},
        upcoming(world),
        dict(upcoming(world), starts_at="2020-01-01T00:00:00Z"),
    ):
        response = rest.post(world.experiments, token=world.tokens.settings, json_body=payload)
        assert response.status == 201, response.body
        ids.append(str(response.json()["id"]))
    return ids
