"""Following the change feed in a worker process: one thread reads new revisions from the
database, keeps the latest in memory, and hands them to whoever follows.

One FeedFollower per worker process (grpc_server.build_server makes it). Its thread asks
the database for the changes after the last position it has seen, every `poll_seconds`,
and at once when this worker has just committed a write (`nudge`). Because positions are
drawn in commit order (server/adapters/revisions.py), what it reads is always a gap-free
continuation of what it read before: it never has to look back.

It keeps a bounded window of the latest changes, so that many followers cost one query:

- Watches (server/service_layer/watches.py) read the window from their own position and
  wait for news of their organization (`Listener`); a watch whose position is older than the
  window, or falls out of it because its client reads slowly, reads from the database
  instead, a page at a time, until it is back in the window.
- Subscribers (`subscribe`) get every batch of changes, in order, on the follower's
  thread: for a worker-local cache kept fresh from the feed (visitor assignment). See
  `subscribe` for how to start one without missing or repeating a change.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from server.service_layer.ports import Change, ReadUnitOfWork

log = logging.getLogger("experiments.feed")

# The window: the latest changes, at most this many and this many bytes of messages. A watch
# older than the window reads the database instead, so these bound memory, not correctness.
WINDOW_CHANGES: Final = 4096
WINDOW_BYTES: Final = 16 * 1024 * 1024
# Changes read by one poll; a longer backlog is read in several, without waiting between.
POLL_BATCH: Final = 500
# While the database cannot be read, how long to wait between attempts (at least the poll).
RETRY_SECONDS: Final = 1.0
# How long `close` waits for the thread to finish its read.
CLOSE_TIMEOUT_SECONDS: Final = 2.0

Subscriber = Callable[[Sequence[Change]], None]


class FellBehind(Exception):
    """A subscription asked to start from a position older than the window: load the state
    from the database again (at a newer position) and subscribe from there."""


@dataclass(eq=False)
class Listener:
    """A watch waiting for news of its organization: `wake` is set when the follower has read
    changes of it, when the follower stops, or when the watch is cancelled."""

    organization_id: UUID
    wake: threading.Event = field(default_factory=threading.Event)


class FeedFollower:
    """Reads the change feed for a worker; see the module's docstring."""

    def __init__(
        self,
        read_unit_of_work: Callable[[], ReadUnitOfWork],
        *,
        poll_seconds: float,
        window_changes: int = WINDOW_CHANGES,
        window_bytes: int = WINDOW_BYTES,
    ) -> None:
        self._read_unit_of_work = read_unit_of_work
        self._poll_seconds = poll_seconds
        self._window_changes = window_changes
        self._window_bytes = window_bytes
        self._lock = threading.Lock()
        # Held by the thread from reading a batch to handing it to every subscriber, and by
        # `subscribe`: so a new subscriber gets each batch exactly once, backlog or not.
        self._dispatch = threading.Lock()
        # The window holds every change after `_start` up to `_head`, oldest first.
        self._window: list[Change] = []
        self._positions: list[int] = []
        self._bytes = 0
        self._start = 0
        self._head = 0
        self._started = threading.Event()
        self._listeners: dict[UUID, set[Listener]] = {}
        self._subscribers: list[Subscriber] = []
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="feed-follower", daemon=True)

    # --- the follower's life -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stops the thread and wakes every listener, whose watches then end."""
        with self._lock:
            self._closed = True
            listeners = [each for group in self._listeners.values() for each in group]
        for listener in listeners:
            listener.wake.set()
        self._wake.set()
        if self._thread.is_alive():
            # Not forever: a read stuck on an unresponsive database must not hold the stop
            # (the thread is a daemon; it ends with the process).
            self._thread.join(CLOSE_TIMEOUT_SECONDS)

    @property
    def closed(self) -> bool:
        return self._closed

    def nudge(self) -> None:
        """Read now rather than at the next poll: this worker has just committed a write."""
        self._wake.set()

    def wait_started(self, timeout: float) -> bool:
        """Whether the follower has read where the feed stands (within `timeout` seconds)."""
        return self._started.wait(timeout)

    @property
    def head(self) -> int:
        """The last position read: every change up to it has been seen."""
        return self._head

    # --- for watches ---------------------------------------------------------------------

    def listen(self, organization_id: UUID) -> Listener:
        listener = Listener(organization_id)
        with self._lock:
            self._listeners.setdefault(organization_id, set()).add(listener)
            if self._closed:
                listener.wake.set()
        return listener

    def forget(self, listener: Listener) -> None:
        with self._lock:
            group = self._listeners.get(listener.organization_id)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[listener.organization_id]

    def changes_after(
        self, organization_id: UUID, position: int
    ) -> tuple[Sequence[Change], int] | None:
        """The organization's changes in the window after `position`, and the position they
        bring the reader to (every change up to it seen); None when the window does not
        reach back to `position` (read the database instead)."""
        with self._lock:
            if not self._started.is_set() or position < self._start:
                return None
            first = bisect.bisect_right(self._positions, position)
            found = [
                change
                for change in self._window[first:]
                if change.organization_id == organization_id
            ]
            return found, max(position, self._head)

    # --- for subscribers -----------------------------------------------------------------

    def subscribe(self, callback: Subscriber, after: int | None = None) -> Callable[[], None]:
        """Calls `callback` with every batch of changes read from now on, in feed order, on
        the follower's thread (keep it short: it delays every other subscriber). With
        `after`, first (on this thread) with the changes after that position the window
        still holds; FellBehind if it no longer reaches back that far. Returns the function
        that unsubscribes.

        To keep a cache: note `head`, load the state from the database, then subscribe with
        after=that head; a change the load already saw is handed over again (apply changes
        by revision number to make that harmless).
        """
        with self._dispatch:
            if after is not None:
                with self._lock:
                    if after < self._start:
                        raise FellBehind(f"position {after} is older than the window")
                    backlog = self._window[bisect.bisect_right(self._positions, after) :]
                if backlog:
                    callback(backlog)
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._dispatch:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        failing = False
        while not self._closed:
            self._wake.clear()
            try:
                full = self._poll()
            except Exception as error:  # the database is away: try again later
                if not failing:
                    log.warning("feed follower cannot read the feed: %s", type(error).__name__)
                failing = True
                self._wake.wait(max(self._poll_seconds, RETRY_SECONDS))
                continue
            if failing:
                log.info("feed follower reads the feed again")
                failing = False
            if not full:
                self._wake.wait(self._poll_seconds)

    def _poll(self) -> bool:
        """Reads the next batch; whether it was full (more may be waiting)."""
        if not self._started.is_set():
            with self._read_unit_of_work() as uow:
                head = uow.revisions.bounds().head
            with self._lock:
                self._start = self._head = head
            self._started.set()
        with self._dispatch:
            with self._read_unit_of_work() as uow:
                batch = uow.revisions.all_after(self._head, POLL_BATCH)
            if batch:
                self._add(batch)
                for subscriber in list(self._subscribers):
                    try:
                        subscriber(batch)
                    except Exception:  # a bug of the subscriber's: not the feed's
                        log.exception("feed subscriber failed")
        return len(batch) == POLL_BATCH

    def _add(self, batch: list[Change]) -> None:
        with self._lock:
            for change in batch:
                self._window.append(change)
                self._positions.append(change.position)
                self._bytes += len(change.message)
            self._head = batch[-1].position
            dropped = 0
            while len(self._window) - dropped > self._window_changes or (
                self._bytes > self._window_bytes and len(self._window) - dropped > 1
            ):
                self._bytes -= len(self._window[dropped].message)
                dropped += 1
            if dropped:
                self._start = self._positions[dropped - 1]
                del self._window[:dropped]
                del self._positions[:dropped]
            organizations = {change.organization_id for change in batch}
            woken = [
                listener
                for organization in organizations
                for listener in self._listeners.get(organization, ())
            ]
        for listener in woken:
            listener.wake.set()
