"""A short-lived, per-process memory of authenticated API keys, to spare the hot path a query."""

from __future__ import annotations

import time
from collections.abc import Callable

from server.domain.model import Principal
from server.service_layer.ports import PrincipalRepository

DEFAULT_MAX_ENTRIES = 10_000


class PrincipalCache:
    """Principals by key hash for `ttl_seconds`.

    The trade-off, documented in the README: a revoked key, a lapsed subscription
    or a removed permission takes effect within `ttl_seconds` in each worker
    rather than at once. Unknown keys are never remembered, so guessing keys
    cannot fill the memory, and the whole cache is dropped when it is full.
    """

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, principal = entry
        if self._clock() >= expires:
            self._entries.pop(key_hash, None)
            return None
        return principal

    def remaining(self, key_hash: str) -> float:
        """Seconds until the key's entry expires (0 if it has none)."""
        entry = self._entries.get(key_hash)
        return max(0.0, entry[0] - self._clock()) if entry is not None else 0.0

    def put(self, key_hash: str, principal: Principal) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key_hash] = (self._clock() + self._ttl, principal)


class CachingPrincipalRepository:
    """A PrincipalRepository that asks the cache before the database."""

    def __init__(self, inner: PrincipalRepository, cache: PrincipalCache) -> None:
        self._inner = inner
        self._cache = cache

    def by_key_hash(self, key_hash: str) -> Principal | None:
        principal = self._cache.get(key_hash)
        if principal is None:
            principal = self._inner.by_key_hash(key_hash)
            if principal is not None:
                self._cache.put(key_hash, principal)
        return principal

    def trusted_for(self, key_hash: str) -> float:
        return self._cache.remaining(key_hash)
