"""Keyset pagination of experiment lists: page sizes and opaque cursors.

Lists are ordered newest first by (created_at, id), a total order, so pages are
stable while rows are added, and a page costs the same wherever it starts.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, TypeVar
from uuid import UUID

from server.domain import messages
from server.domain.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE: Final = 25
MAX_PAGE_SIZE: Final = 100

_Item = TypeVar("_Item")


@dataclass(frozen=True, order=True)
class Position:
    """Where an item sits in the newest-first order."""

    created_at: datetime
    id: UUID


@dataclass(frozen=True)
class Cursor:
    """A page boundary: the items after `position` (older), or before it (newer) if backwards."""

    position: Position
    backwards: bool = False


@dataclass(frozen=True)
class Page(Generic[_Item]):
    items: tuple[_Item, ...]
    next: Cursor | None
    previous: Cursor | None


def page_size(requested: int) -> int:
    """The page size to serve: the default for 0, lowered to the maximum, never negative."""
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", messages.PAGE_SIZE_NEGATIVE)])
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_cursor(cursor: Cursor) -> str:
    payload = {
        "t": cursor.position.created_at.isoformat(),
        "i": str(cursor.position.id),
        "b": cursor.backwards,
    }
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor | None:
    """The cursor a client sent back, None for the first page; InvalidArgument if tampered with."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        payload = json.loads(raw)
        created_at = datetime.fromisoformat(payload["t"])
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return Cursor(Position(created_at, UUID(payload["i"])), bool(payload["b"]))
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InvalidArgument([FieldViolation("cursor", messages.INVALID_CURSOR)]) from error


def page_of(
    items: list[_Item],
    positions: list[Position],
    has_more: bool,
    cursor: Cursor | None,
) -> Page[_Item]:
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
        return Page(tuple(items), next=older, previous=newer if has_more else None)
    return Page(tuple(items), next=older if has_more else None, previous=newer if cursor else None)
