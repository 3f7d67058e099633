"""The per-process memory of authenticated keys: how long it trusts them, what it never keeps."""

from __future__ import annotations

import uuid

from server.adapters.repositories.principal_cache import CachingPrincipalRepository, PrincipalCache
from server.domain.model import Organization, Principal, User


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Keys:
    """A PrincipalRepository that counts how often it is asked."""

    def __init__(self, known: dict[str, Principal]) -> None:
        self.known = known
        self.lookups = 0

    def by_key_hash(self, key_hash: str) -> Principal | None:
        self.lookups += 1
        return self.known.get(key_hash)

    def trusted_for(self, key_hash: str) -> float:
        return 0.0


def _principal() -> Principal:
    organization = Organization(uuid.uuid4(), "Company Inc.")
    user = User(uuid.uuid4(), "John", "Doe", organization.id)
    return Principal(user, organization, can_manage_settings=True)


def test_a_known_key_is_looked_up_once_within_the_ttl() -> None:
    clock = _Clock()
    keys = _Keys({"h": _principal()})
    repository = CachingPrincipalRepository(keys, PrincipalCache(5, clock=clock))
    first = repository.by_key_hash("h")
    clock.now += 4.9
    assert repository.by_key_hash("h") == first
    assert keys.lookups == 1


def test_a_revoked_key_stops_working_once_the_ttl_has_passed() -> None:
    clock = _Clock()
    keys = _Keys({"h": _principal()})
    repository = CachingPrincipalRepository(keys, PrincipalCache(5, clock=clock))
    repository.by_key_hash("h")
    del keys.known["h"]
    clock.now += 5
    assert repository.by_key_hash("h") is None


def test_unknown_keys_are_never_remembered() -> None:
    keys = _Keys({})
    repository = CachingPrincipalRepository(keys, PrincipalCache(5, clock=_Clock()))
    repository.by_key_hash("guess")
    repository.by_key_hash("guess")
    assert keys.lookups == 2


def test_a_zero_ttl_disables_the_cache() -> None:
    keys = _Keys({"h": _principal()})
    repository = CachingPrincipalRepository(keys, PrincipalCache(0, clock=_Clock()))
    repository.by_key_hash("h")
    repository.by_key_hash("h")
    assert keys.lookups == 2


def test_a_full_cache_starts_over_instead_of_growing() -> None:
    cache = PrincipalCache(5, max_entries=2, clock=_Clock())
    for key in ("a", "b", "c"):
        cache.put(key, _principal())
    assert cache.get("a") is None and cache.get("b") is None
    assert cache.get("c") is not None
