"""Keyset pagination of lists: page sizes and opaque cursors.

Experiment lists are ordered newest first by (created_at, id), a total order, so pages
are stable while rows are added, and a page costs the same wherever it starts. An
experiment's revisions are ordered newest first by their position in the change feed
(an integer), the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Generic, TypeVar
from uuid import UUID

from server.domain import limits, messages
from server.domain.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE: Final = 25
MAX_PAGE_SIZE: Final = 100

_Item = TypeVar("_Item")


@dataclass(frozen=True, order=True)
class Position:
    """Where an item sits in the newest-first order."""

    created_at: datetime
    id: UUID


# Where an item sits: a Position (experiments) or its position in the feed (revisions).
_At = TypeVar("_At", Position, int)


@dataclass(frozen=True)
class Cursor(Generic[_At]):
    """A page boundary: the items after `position` (older), or before it (newer) if backwards."""

    position: _At
    backwards: bool = False


@dataclass(frozen=True)
class Page(Generic[_Item, _At]):
    items: tuple[_Item, ...]
    next: Cursor[_At] | None
    previous: Cursor[_At] | None
    # Where each item sits, and whether the page was read toward newer items (a `previous`
    # cursor): what within_budget needs to shorten the page on the side away from the cursor.
    positions: tuple[_At, ...] = ()
    backwards: bool = False


def page_size(requested: int) -> int:
    """The page size to serve: the default for 0, lowered to the maximum, never negative."""
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", messages.PAGE_SIZE_NEGATIVE)])
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_cursor(cursor: Cursor[Position]) -> str:
    payload = {
        "t": cursor.position.created_at.isoformat(),
        "i": str(cursor.position.id),
        "b": cursor.backwards,
    }
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor[Position] | None:
    """The cursor a client sent back, None for the first page; InvalidArgument if tampered with."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        payload = json.loads(raw)
        created_at = datetime.fromisoformat(payload["t"])
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        # A forged time far from any row's could overflow once shifted to UTC or bound.
        created_at = created_at.astimezone(UTC)
        if not limits.EARLIEST_TIME <= created_at < limits.LATEST_TIME:
            raise ValueError("time out of range")
        return Cursor(Position(created_at, UUID(payload["i"])), bool(payload["b"]))
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        raise InvalidArgument([FieldViolation("cursor", messages.INVALID_CURSOR)]) from e


def encode_revision_cursor(cursor: Cursor[int]) -> str:
    """A page boundary of an experiment's revisions (its position in the feed), opaque."""
    raw = json.dumps({"s": cursor.position, "b": cursor.backwards}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_revision_cursor(value: str) -> Cursor[int] | None:
    """The revisions cursor a client sent back, None for the first page; InvalidArgument if it
    is not one (an experiments list cursor, or a feed position, is not)."""
    if not value:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        position = payload["s"]
        if type(position) is not int or not 0 <= position < 2**63:
            raise ValueError("not a feed position")
        return Cursor(position, bool(payload["b"]))
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument([FieldViolation("cursor", messages.INVALID_CURSOR)]) from error


def page_of(
    items: list[_Item],
    positions: list[_At],
    has_more: bool,
    cursor: Cursor[_At] | None,
) -> Page[_Item, _At]:
    """Builds a page from the items fetched in the cursor's direction (in display order).

    `has_more` says whether more items lie beyond them in the direction fetched.
    The other direction has items whenever the client came from there (a cursor).
    """
    if not items:
        # An empty page past the end: point back to where the client came from.
        back = Cursor(cursor.position, backwards=not cursor.backwards) if cursor else None
        return Page(
            (),
            next=back if cursor and cursor.backwards else None,
            previous=back if cursor and not cursor.backwards else None,
        )
    newer = Cursor(positions[0], backwards=True)
    older = Cursor(positions[-1], backwards=False)
    if cursor is not None and cursor.backwards:
        return Page(
            tuple(items),
            next=older,
            previous=newer if has_more else None,
            positions=tuple(positions),
            backwards=True,
        )
    return Page(
        tuple(items),
        next=older if has_more else None,
        previous=newer if cursor else None,
        positions=tuple(positions),
    )


def within_budget(
    page: Page[_Item, _At], sizes: list[int], budget: int = limits.PAGE_BUDGET_BYTES
) -> tuple[Page[_Item, _At], slice]:
    """The page shortened to items whose sizes add up to at most `budget` (always one item at
    least), and the slice of its items kept. The items dropped are those farthest from where
    the client came from, and the new cursor on that side continues with them."""
    count = len(page.items)
    order = range(count - 1, -1, -1) if page.backwards else range(count)
    kept = used = 0
    for index in order:
        if kept and used + sizes[index] > budget:
            break
        used += sizes[index]
        kept += 1
    if kept == count:
        return page, slice(0, count)
    if page.backwards:
        first = count - kept
        return Page(
            page.items[first:],
            next=page.next,
            previous=Cursor(page.positions[first], backwards=True),
            positions=page.positions[first:],
            backwards=True,
        ), slice(first, count)
    return Page(
        page.items[:kept],
        next=Cursor(page.positions[kept - 1], backwards=False),
        previous=page.previous,
        positions=page.positions[:kept],
    ), slice(0, kept)
