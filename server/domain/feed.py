"""Positions in the change feed: the opaque cursors clients hold, and which ones can be served.

A position is the feed's sequence number of a revision, global to the service (every
organization's revisions share one sequence): a change at position p is listed to a reader
whose cursor is below p, and only if it is of the reader's organization. A cursor says
nothing about other organizations beyond how far the sequence has gone.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from server.domain import messages
from server.domain.errors import FieldViolation, InvalidArgument, OutOfRange

# The first byte of a cursor's bytes: its format, so that a later one can be told apart.
_FORMAT: Final = 1
_POSITION_BYTES: Final = 8
MAX_POSITION: Final = 2**63 - 1


def encode_position(position: int) -> str:
    """The opaque cursor of a feed position (base64url of a format byte and 8 bytes)."""
    raw = bytes([_FORMAT]) + position.to_bytes(_POSITION_BYTES, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(value: str, field: str = "after") -> int | None:
    """The position a cursor names, None for an empty one; InvalidArgument naming `field` if it
    is not a feed cursor (a list page's cursor is not)."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 1 + _POSITION_BYTES or raw[0] != _FORMAT:
        raise InvalidArgument([FieldViolation(field, messages.INVALID_FEED_CURSOR)])
    position = int.from_bytes(raw[1:], "big")
    if position > MAX_POSITION:
        raise InvalidArgument([FieldViolation(field, messages.INVALID_FEED_CURSOR)])
    return position


def check_kept(position: int, horizon: int) -> None:
    """OutOfRange unless every change after `position` is still kept: `horizon` is the last
    position that pruning deleted (0 if none), and changes after a position below it may be
    gone."""
    if position < horizon:
        raise OutOfRange(messages.CURSOR_TOO_OLD)


def check_reached(position: int, head: int) -> None:
    """OutOfRange for a position beyond the last one ever written (`head`): no cursor this
    database gave out can be there (it may have been restored from a backup)."""
    if position > head:
        raise OutOfRange(messages.CURSOR_AHEAD)
