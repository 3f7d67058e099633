"""Random REST requests through the real Envoy gateway, on SQLite and PostgreSQL.

Methods, paths (with percent-encoded garbage and invalid UTF-8), query strings and JSON bodies
(valid, hostile, or not JSON at all). The answer is never a 5xx, and a refused write changes
nothing in the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.payloads import upcoming
from tests.e2e.rest import HTTP_1_1, RestClient
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
            + [("random", "random")] * 4
        )
    )
    if method == "random":
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
        shape = draw(st.sampled_from(["collection", "item", "other"]))
    organization = world.organization_id if draw(st.integers(0, 7)) else draw(SEGMENT)
    collection = f"/api/v5/orgs/{organization}/experiments"
    if shape == "collection":
        path = collection
    elif shape == "item":
        experiment = draw(st.sampled_from(known)) if draw(st.integers(0, 5)) else draw(SEGMENT)
        path = f"{collection}/{experiment}"
    else:
        path = "/" + "/".join(draw(st.lists(SEGMENT, max_size=5)))
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
        response = rest.request(
            method,
            target,
            token=getattr(world.tokens, who),
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
