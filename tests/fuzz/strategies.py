"""Hypothesis strategies for what a client can send: well-formed, malformed and hostile values."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from hypothesis import strategies as st

# Text a client might send: any code point a protobuf string holds (no lone surrogates), with
# the troublemakers (NUL, controls, astral characters) made likely.
TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from("\x00\x01\n\t\"\\'é€😀 ab"), max_size=10),
    st.sampled_from(["", " ", "control", "user_defined", "full", "1w", "1d", "x" * 256]),
)
UUIDISH = st.one_of(st.uuids().map(str), TEXT)
NUMBERS = st.one_of(
    st.integers(-(2**53), 2**53).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308]),
)
# JSON-ish values for treatments: nested objects and arrays, non-finite numbers, NUL keys.
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=25,
)
TREATMENTS = st.dictionaries(TEXT, JSON_VALUES, max_size=5)
SECONDS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-62_135_596_801, 253_402_300_800),
    st.sampled_from([0, -1, 253_370_764_800, 253_402_300_799]),
)
NANOS = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(0, 999_999_999))
INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-5, 120))


def forged_cursors() -> st.SearchStrategy[str]:
    """Cursors as a client might forge them: base64 JSON with odd times, ids and directions."""
    payload = st.fixed_dictionaries(
        {},
        optional={
            "t": st.one_of(
                TEXT,
                st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
                st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]),
            ),
            "i": UUIDISH,
            "b": st.one_of(st.booleans(), TEXT, st.none()),
        },
    )
    encoded = payload.map(
        lambda p: base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=")
    )
    return st.one_of(encoded, TEXT, st.binary(max_size=30).map(lambda b: b.hex()))


def feed_positions() -> st.SearchStrategy[str]:
    """Feed cursors (`after`) as a client might forge them: the cursor format (base64url of a
    format byte and 8 bytes) naming positions at and beyond the edges of the server's signed
    64-bit sequence, base64url of any bytes, a list page's cursor, and text."""
    position = st.one_of(
        st.sampled_from([0, 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1)
    )
    cursor_format = position.map(lambda n: _base64url(bytes([1]) + n.to_bytes(8, "big")))
    return st.one_of(
        cursor_format,
        cursor_format.map(lambda text: text + "=="),
        st.binary(max_size=12).map(_base64url),
        forged_cursors(),
    )


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def experiment_dicts(goal_ids: list[str], room_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """An experiment as JSON, each attribute present or not, valid or not."""
    group = st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(TEXT, st.none()),
            "percentage": st.one_of(INT32, st.none()),
            "group_type": st.one_of(
                st.sampled_from(["control", "user_defined", "target_algorithm", "target_random"]),
                st.none(),
                TEXT,
            ),
            "treatment": st.one_of(TREATMENTS, st.none()),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "is_draft": st.one_of(st.booleans(), st.none()),
            "name": st.one_of(TEXT, st.none()),
            "goal_id": st.one_of(st.sampled_from(goal_ids), UUIDISH, st.none()),
            "starts_at": st.sampled_from(
                ["2030-05-08T13:02:35.123Z", "2019-05-08T13:02:35Z", "1969-12-31T23:59:59Z"]
            ),
            "ends_at": st.one_of(
                st.sampled_from(["2031-05-08T13:02:35Z", "2019-05-22T00:00:00Z"]), st.none()
            ),
            "group_reset_interval": st.one_of(st.sampled_from(["full", "1w", "1d"]), TEXT),
            "room_ids": st.lists(st.one_of(st.sampled_from(room_ids), UUIDISH), max_size=4),
            "groups": st.lists(group, max_size=4),
        },
    )
