"""Feed positions as clients hold them (opaque cursors), and which ones can be served."""

from __future__ import annotations

import base64
import re
from uuid import UUID

import pytest

from server.domain import messages
from server.domain.errors import OutOfRange
from server.domain.feed import (
    MAX_POSITION,
    check_kept,
    check_reached,
    decode_position,
    encode_position,
)
from server.domain.pagination import Cursor, Position, encode_cursor, encode_revision_cursor
from tests.unit.builders import NOW, violations_of


@pytest.mark.parametrize("position", [0, 1, 42, 2**32, MAX_POSITION])
def test_a_position_comes_back_from_its_cursor(position: int) -> None:
    cursor = encode_position(position)

    assert decode_position(cursor) == position
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)  # safe in a URL's query as it is


def test_an_empty_cursor_is_no_position() -> None:
    assert decode_position("") is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "AQ",  # too short
        base64.urlsafe_b64encode(b"\x02" + bytes(8)).decode(),  # a format not known
        base64.urlsafe_b64encode(b"\x01" + b"\xff" * 8).decode(),  # beyond a bigint
        encode_cursor(Cursor(Position(NOW, UUID(int=1)))),  # an experiments list cursor
        encode_revision_cursor(Cursor(3)),  # a revisions list cursor
    ],
)
def test_anything_else_is_invalid_naming_the_field(cursor: str) -> None:
    assert violations_of(decode_position, cursor) == {("after", messages.INVALID_FEED_CURSOR)}


def test_a_position_before_the_horizon_is_out_of_range_and_the_horizon_itself_is_kept() -> None:
    check_kept(7, horizon=7)  # nothing after 7 was deleted
    with pytest.raises(OutOfRange) as too_old:
        check_kept(6, horizon=7)
    assert too_old.value.message == messages.CURSOR_TOO_OLD


def test_a_position_beyond_the_head_is_out_of_range() -> None:
    check_reached(9, head=9)
    with pytest.raises(OutOfRange) as ahead:
        check_reached(10, head=9)
    assert ahead.value.message == messages.CURSOR_AHEAD
