"""Open watches of the change feed: what each one sends, and the one thread per worker that
checks their keys again.

A watch (ExperimentService.watch opens it) reads the worker's FeedFollower from its own
position and sleeps until the follower has news of its organization, a heartbeat is due,
or its access is lost. Keys are not checked by the watches themselves: AccessChecks checks
each (key, organization) of the open watches once, when the worker's key cache would forget
the key, and ends the watches of a key that lost its access. A thousand watches of one key
cost one check per cache period, and no watch wakes up for it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from server.domain import messages
from server.domain.access import Action, authorize, hash_api_key
from server.domain.errors import DomainError, Unauthenticated, Unavailable
from server.service_layer.feed import FeedFollower, Listener
from server.service_layer.ports import Change, ReadUnitOfWork

log = logging.getLogger("experiments.feed")

# How often a watch's key is checked again when the worker's key cache is off.
MIN_RECHECK_SECONDS: Final = 1.0
# A watch that read the database and found nothing new, while the follower is not reading
# (the database is away), tries again after this long.
CATCH_UP_RETRY_SECONDS: Final = 1.0
# While a key cannot be checked (the database is away), how long until the next attempt.
CHECK_RETRY_SECONDS: Final = 1.0
# How long `close` waits for the checking thread to finish a check.
CLOSE_TIMEOUT_SECONDS: Final = 2.0

# A page of the organization's changes after a position from the database, and the position
# it brings the reader to (ExperimentService.catch_up).
CatchUp = Callable[[UUID, int], tuple[Sequence[Change], int]]


@dataclass(frozen=True)
class Heartbeat:
    """A watch's progress: every change up to `position` has been sent."""

    position: int


def check_access(
    read_unit_of_work: Callable[[], ReadUnitOfWork], api_key: str, organization_id: str
) -> float:
    """Whether `api_key` may still read the organization, through the worker's key cache:
    Unauthenticated or PermissionDenied if not. Returns in how many seconds to check again:
    when the cache forgets the key (a revoked key then ends a watch when a new call would be
    refused), or MIN_RECHECK_SECONDS with the cache off."""
    key_hash = hash_api_key(api_key)
    with read_unit_of_work() as uow:
        principal = uow.principals.by_key_hash(key_hash)
        if principal is None:
            raise Unauthenticated()
        authorize(principal, organization_id, Action.READ)
        trusted = uow.principals.trusted_for(key_hash)
    return trusted if trusted > 0 else MIN_RECHECK_SECONDS


class Watch:
    """An open watch of an organization's changes: iterating it yields a Heartbeat with the
    starting position first, then every change after it (ports.Change) in feed order, and a
    Heartbeat whenever nothing was sent for `heartbeat_seconds`. It never ends by itself: it
    raises when its access is lost (AccessChecks), when a prune overtakes it (OutOfRange),
    or when the server stops (Unavailable). `cancel` (from any thread) stops it at once."""

    def __init__(
        self,
        follower: FeedFollower,
        checks: AccessChecks,
        catch_up: CatchUp,
        heartbeat_seconds: float,
        *,
        api_key: str,
        organization_id: str,
        organization: UUID,
        position: int,
        check_in: float,
    ) -> None:
        self._follower = follower
        self._checks = checks
        self._catch_up = catch_up
        self._heartbeat_seconds = heartbeat_seconds
        self.api_key = api_key
        self.organization_id = organization_id
        self._organization = organization
        self.position = position
        self._check_in = check_in
        self._listener: Listener | None = None
        self._cancelled = threading.Event()
        self._lost: DomainError | None = None

    def cancel(self) -> None:
        self._cancelled.set()
        self._wake()

    def lose_access(self, error: DomainError) -> None:
        """Ends the watch with `error` (its key is revoked, its access lost)."""
        self._lost = error
        self._wake()

    def _wake(self) -> None:
        if self._listener is not None:
            self._listener.wake.set()

    def __iter__(self) -> Iterator[Heartbeat | Change]:
        listener = self._listener = self._follower.listen(self._organization)
        self._checks.add(self, self._check_in)
        try:
            yield from self._follow(listener)
        finally:
            self._checks.remove(self)
            self._follower.forget(listener)

    def _follow(self, listener: Listener) -> Iterator[Heartbeat | Change]:
        heartbeat_seconds = self._heartbeat_seconds
        yield Heartbeat(self.position)
        quiet_since = time.monotonic()
        while not self._cancelled.is_set():
            if self._lost is not None:
                raise self._lost
            if self._follower.closed:
                raise Unavailable(messages.STOPPING)
            listener.wake.clear()  # before reading: news arriving after the read wakes us
            found = self._follower.changes_after(self._organization, self.position)
            if found is None:  # older than the follower's window: from the database
                changes, position = self._catch_up(self._organization, self.position)
            else:
                changes, position = found
            for change in changes:
                yield change
                self.position = change.position
            self.position = max(self.position, position)
            now = time.monotonic()
            if changes:
                quiet_since = now
                if found is None:
                    continue  # more may be waiting in the database
            elif now - quiet_since >= heartbeat_seconds:
                yield Heartbeat(self.position)
                quiet_since = now = time.monotonic()
            timeout = quiet_since + heartbeat_seconds - now
            if found is None:  # the follower is not reading yet (the database is away)
                timeout = min(timeout, CATCH_UP_RETRY_SECONDS)
            listener.wake.wait(timeout)


_Key = tuple[str, str]  # (API key, organization id)


class AccessChecks:
    """One thread per worker that checks again the key of every open watch: each distinct
    (key, organization) once, when the worker's key cache would forget the key, and ends the
    watches of one that lost its access. While the database cannot be read, watches go on
    and the check is tried again every CHECK_RETRY_SECONDS."""

    def __init__(self, read_unit_of_work: Callable[[], ReadUnitOfWork]) -> None:
        self._read_unit_of_work = read_unit_of_work
        self._lock = threading.Lock()
        self._watches: dict[_Key, set[Watch]] = {}
        # When each key is next checked; a heap entry whose time is not this one is stale.
        self._scheduled: dict[_Key, float] = {}
        self._heap: list[tuple[float, int, _Key]] = []
        self._order = itertools.count()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="access-checks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(CLOSE_TIMEOUT_SECONDS)

    def add(self, watch: Watch, check_in: float) -> None:
        """Follows `watch`'s access from now on; its key was checked `check_in` seconds ago
        less than it may be trusted (the first check is due then, unless its key is followed
        already)."""
        key = (watch.api_key, watch.organization_id)
        with self._lock:
            self._watches.setdefault(key, set()).add(watch)
            if key not in self._scheduled:
                self._schedule(key, time.monotonic() + check_in)
        self._wake.set()

    def remove(self, watch: Watch) -> None:
        key = (watch.api_key, watch.organization_id)
        with self._lock:
            group = self._watches.get(key)
            if group is not None:
                group.discard(watch)
                if not group:
                    del self._watches[key]
                    self._scheduled.pop(key, None)

    def _schedule(self, key: _Key, due: float) -> None:
        self._scheduled[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))

    def _next_due(self) -> tuple[_Key | None, float | None]:
        """The key whose check is due now, or else how long until the next one is."""
        with self._lock:
            while self._heap:
                due, _, key = self._heap[0]
                if self._scheduled.get(key) != due:
                    heapq.heappop(self._heap)  # stale: rescheduled or no longer followed
                    continue
                wait = due - time.monotonic()
                if wait > 0:
                    return None, wait
                heapq.heappop(self._heap)
                del self._scheduled[key]
                return key, None
        return None, None

    def _run(self) -> None:
        failing = False
        while not self._closed:
            self._wake.clear()  # before looking: a watch added after the look wakes us
            key, wait = self._next_due()
            if key is None:
                self._wake.wait(wait)
                continue
            try:
                delay = check_access(self._read_unit_of_work, *key)
            except DomainError as lost:
                with self._lock:
                    watches = self._watches.pop(key, set())
                for watch in watches:
                    watch.lose_access(lost)
                continue
            except Exception as error:  # the database is away: the watches go on meanwhile
                if not failing:
                    log.warning("cannot check the keys of watches: %s", type(error).__name__)
                failing, delay = True, CHECK_RETRY_SECONDS
            else:
                failing = False
            with self._lock:
                if key in self._watches and key not in self._scheduled:
                    self._schedule(key, time.monotonic() + delay)
