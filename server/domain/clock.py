"""The service's clock: every timestamp it writes is an aware UTC datetime from here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# What the use cases take, so that tests can pass a fixed time.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
