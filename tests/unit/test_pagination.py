"""Paging experiment lists: page sizes, opaque cursors, and next/previous links."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from server.domain import messages
from server.domain.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Cursor,
    Page,
    Position,
    decode_cursor,
    encode_cursor,
    page_of,
    page_size,
    within_budget,
)
from tests.unit.builders import NOW, violations_of
from tests.unit.fakes import keyset_page

# --- Page size ------------------------------------------------------------------------------


def test_page_size_0_means_the_default_of_25() -> None:
    assert page_size(0) == DEFAULT_PAGE_SIZE == 25


@pytest.mark.parametrize("requested", [1, 25, 99, 100])
def test_page_size_up_to_100_is_served_as_asked(requested: int) -> None:
    assert page_size(requested) == requested


@pytest.mark.parametrize("requested", [101, 1000, 2**31 - 1])
def test_page_size_above_100_is_lowered_to_100(requested: int) -> None:
    assert page_size(requested) == MAX_PAGE_SIZE == 100


@pytest.mark.parametrize("requested", [-1, -25])
def test_negative_page_size_is_rejected_naming_page_size(requested: int) -> None:
    assert violations_of(page_size, requested) == {("page_size", messages.PAGE_SIZE_NEGATIVE)}


# --- Cursors --------------------------------------------------------------------------------

A_POSITION = Position(NOW, UUID("e0000000-0000-4000-8000-000000000001"))


@pytest.mark.parametrize("backwards", [False, True])
def test_cursor_survives_the_round_trip(backwards: bool) -> None:
    cursor = Cursor(A_POSITION, backwards=backwards)

    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_cursor_keeps_microseconds_and_the_instant_of_any_time_zone() -> None:
    paris = timezone(timedelta(hours=2))
    cursor = Cursor(Position(datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=paris), A_POSITION.id))

    decoded = decode_cursor(encode_cursor(cursor))

    assert decoded is not None
    assert decoded.position.created_at == datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_cursor_can_be_put_in_a_url_as_is() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", encode_cursor(Cursor(A_POSITION, backwards=True)))


def test_empty_cursor_means_the_first_page() -> None:
    assert decode_cursor("") is None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _payload(**payload: object) -> str:
    return _b64(json.dumps(payload).encode())


VALID = encode_cursor(Cursor(A_POSITION))


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%%%",
        "é",
        VALID[: len(VALID) // 2],
        VALID[:-3] + "!!!",
        _b64(b"not json"),
        _b64(b"\xff\xfe"),
        _b64(b"[1, 2, 3]"),
        _b64(b"42"),
        _payload(i=str(A_POSITION.id), b=False),
        _payload(t=NOW.isoformat(), b=False),
        _payload(t=NOW.isoformat(), i=str(A_POSITION.id)),
        _payload(t="2030-06-01T12:00:00", i=str(A_POSITION.id), b=False),
        _payload(t="yesterday", i=str(A_POSITION.id), b=False),
        _payload(t=NOW.isoformat(), i="not-a-uuid", b=False),
        _payload(t=12, i=str(A_POSITION.id), b=False),
        _payload(t=NOW.isoformat(), i=7, b=False),
        # Forged times far from any row: out of range, or overflowing once shifted to UTC.
        _payload(t="0001-01-01T00:00:00+14:00", i=str(A_POSITION.id), b=False),
        _payload(t="9999-12-31T23:59:59-14:00", i=str(A_POSITION.id), b=False),
        _payload(t="1969-12-31T23:59:59+00:00", i=str(A_POSITION.id), b=False),
        _payload(t="9999-01-01T00:00:00+00:00", i=str(A_POSITION.id), b=False),
        _payload(t=NOW.isoformat(), i=str(A_POSITION.id) + "\u0000", b=False),
    ],
)
def test_tampered_or_garbage_cursor_is_rejected_naming_cursor(cursor: str) -> None:
    assert violations_of(decode_cursor, cursor) == {("cursor", messages.INVALID_CURSOR)}


# --- page_of: which links a page has --------------------------------------------------------

# Seven experiments, "e7" the newest; positions mirror that order.
NAMES = [f"e{n}" for n in range(1, 8)]
POSITIONS = {
    name: Position(NOW + n * timedelta(minutes=1), UUID(int=n))
    for n, name in enumerate(NAMES, start=1)
}


def fetch(cursor: Cursor[Position] | None, limit: int = 3) -> Page[str, Position]:
    """What the list use case does: fetch in the cursor's direction, then build the page."""
    start = cursor.position if cursor else None
    items, has_more = keyset_page(
        NAMES, POSITIONS.__getitem__, limit, start, bool(cursor and cursor.backwards)
    )
    return page_of(items, [POSITIONS[name] for name in items], has_more, cursor)


def test_first_page_has_a_next_link_and_no_previous() -> None:
    page = fetch(None)

    assert page.items == ("e7", "e6", "e5")
    assert page.next == Cursor(POSITIONS["e5"], backwards=False)
    assert page.previous is None


def test_only_page_has_neither_next_nor_previous() -> None:
    page = fetch(None, limit=7)

    assert len(page.items) == 7
    assert (page.next, page.previous) == (None, None)


def test_empty_list_has_neither_next_nor_previous() -> None:
    assert page_of([], [], False, None) == Page((), next=None, previous=None)


def test_middle_page_has_both_links() -> None:
    page = fetch(fetch(None).next)

    assert page.items == ("e4", "e3", "e2")
    assert page.next == Cursor(POSITIONS["e2"], backwards=False)
    assert page.previous == Cursor(POSITIONS["e4"], backwards=True)


def test_last_page_has_a_previous_link_and_no_next() -> None:
    page = fetch(fetch(fetch(None).next).next)

    assert page.items == ("e1",)
    assert page.next is None
    assert page.previous == Cursor(POSITIONS["e1"], backwards=True)


def test_going_back_from_the_last_page_shows_the_middle_page_with_both_links() -> None:
    last = fetch(fetch(fetch(None).next).next)

    page = fetch(last.previous)

    assert page.items == ("e4", "e3", "e2")
    assert page.next == Cursor(POSITIONS["e2"], backwards=False)
    assert page.previous == Cursor(POSITIONS["e4"], backwards=True)


def test_going_back_to_the_first_page_shows_it_without_a_previous_link() -> None:
    middle = fetch(fetch(None).next)

    page = fetch(middle.previous)

    assert page.items == ("e7", "e6", "e5")
    assert page.next == Cursor(POSITIONS["e5"], backwards=False)
    assert page.previous is None


def test_following_next_then_previous_visits_every_item_once_in_order() -> None:
    forwards: list[str] = []
    page = fetch(None, limit=2)
    pages = [page]
    forwards.extend(page.items)
    while page.next:
        page = fetch(page.next, limit=2)
        pages.append(page)
        forwards.extend(page.items)

    backwards = [page.items]
    while page.previous:
        page = fetch(page.previous, limit=2)
        backwards.append(page.items)

    assert forwards == ["e7", "e6", "e5", "e4", "e3", "e2", "e1"]
    assert backwards == [p.items for p in reversed(pages)]


def test_empty_page_past_the_end_links_back_to_where_the_client_came_from() -> None:
    oldest = Cursor(POSITIONS["e1"], backwards=False)

    page = fetch(oldest)

    assert page.items == ()
    assert page.next is None
    assert page.previous == Cursor(POSITIONS["e1"], backwards=True)
    assert fetch(page.previous).items == ("e4", "e3", "e2")


def test_empty_page_before_the_start_links_forward_to_where_the_client_came_from() -> None:
    newest = Cursor(POSITIONS["e7"], backwards=True)

    page = fetch(newest)

    assert page.items == ()
    assert page.previous is None
    assert page.next == Cursor(POSITIONS["e7"], backwards=False)
    assert fetch(page.next).items == ("e6", "e5", "e4")


# --- within_budget: a page that would be too large stops early ------------------------------


def _walk_with_budget(sizes: dict[str, int], budget: int, backwards: bool = False) -> list[str]:
    """Every item reached by following next (or previous) from one end under the budget."""
    seen: list[str] = []
    cursor: Cursor[Position] | None = None
    if backwards:
        cursor = Cursor(Position(NOW, UUID(int=0)), backwards=True)  # before the oldest
    for _ in range(len(NAMES) + 1):
        page, kept = within_budget(
            fetch(cursor, limit=3), [sizes[n] for n in fetch(cursor, 3).items], budget
        )
        assert len(page.items) == kept.stop - kept.start >= 1
        seen.extend(reversed(page.items) if backwards else page.items)
        cursor = page.previous if backwards else page.next
        if cursor is None:
            break
    return seen


def test_page_within_budget_is_kept_whole() -> None:
    page = fetch(None)

    assert within_budget(page, [10, 10, 10], budget=30) == (page, slice(0, 3))


def test_page_over_budget_stops_early_and_next_continues_with_the_rest() -> None:
    sizes = {name: 10 for name in NAMES}

    assert _walk_with_budget(sizes, budget=25) == list(reversed(NAMES))


def test_page_over_budget_read_backwards_stops_early_and_previous_continues() -> None:
    sizes = {name: 10 for name in NAMES}

    assert _walk_with_budget(sizes, budget=15, backwards=True) == NAMES


def test_one_item_larger_than_the_budget_still_makes_a_page() -> None:
    page, kept = within_budget(fetch(None), [100, 1, 1], budget=10)

    assert page.items == ("e7",)
    assert kept == slice(0, 1)
    assert page.next == Cursor(POSITIONS["e7"])
