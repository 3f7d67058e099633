"""Visitor assignment served from memory: each worker keeps, per organization, the experiments
that can assign a visitor (published, not ended), ready for domain.assignment.assign_all, and
keeps them fresh from the change feed.

How it stays exact (README, "Visitor assignment: the call"):

- An organization is loaded on its first call: its published, unended experiments' views and
  the feed position they are as of, in one statement (ExperimentViewReader.running). Then, under
  the cache's lock, the changes after that position that the worker's FeedFollower has read
  already are applied (`changes_after`), and the organization is marked complete up to the
  follower's head (`through`).
- The cache subscribes to the follower once: every later batch of changes comes, in commit
  order, exactly once; a change of a loaded organization past its `through` is applied. So a
  loaded organization always shows every change up to the last batch applied, and a write of
  another worker or instance shows within one poll of the follower (0.1 s) plus its read.
- A write made by this worker tells the cache its feed position (`written`) before the client
  hears of it; the worker's next assignment in that organization waits (milliseconds: the
  write nudged the follower) until the cache has applied that position. So its own writes show
  at once.
- When the follower's window no longer reaches back to a load's position (more than its 4,096
  changes came meanwhile), the load is read again; when a change cannot be applied (a bug),
  the organization is dropped, and loaded again on its next call.

Memory is bounded: at most `max_bytes` of experiments (their groups' answers, treatments
included, and a fixed overhead each); beyond it the organizations asked least recently are
dropped. An organization larger than the bound alone is not kept: each of its calls reads the
database. Experiments that end are dropped from memory once a minute (`PRUNE_SECONDS`); a call
for a time before what memory still covers (`since`: the past) reads the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from uuid import UUID

from server.domain import messages
from server.domain.assignment import RunningExperiment, micros, moment_of
from server.domain.errors import Unavailable
from server.service_layer.feed import FeedFollower
from server.service_layer.ports import Change, RunningViews

log = logging.getLogger("experiments.assignments")

# An experiment ready to assign, each group's answer kept as the entrypoint serialized it.
Running = RunningExperiment[bytes]

# What memory the cache may hold per worker, by default: about 64 MiB of experiments.
MAX_BYTES: Final = 64 * 1024 * 1024
# What one experiment costs beyond its groups' answers: the object, its table, rooms, key.
EXPERIMENT_OVERHEAD_BYTES: Final = 1024
# How often an organization's ended experiments are dropped from memory.
PRUNE_SECONDS: Final = 60.0
# How long a call waits for this worker's own write to reach the cache before it gives up
# (UNAVAILABLE); it normally takes one read of the feed, milliseconds.
OWN_WRITE_WAIT_SECONDS: Final = 2.0
# How long a first call waits for the worker's follower to have read where the feed stands.
FOLLOWER_START_SECONDS: Final = 5.0
# Loads read again when the follower's window no longer reached back to them.
LOAD_ATTEMPTS: Final = 3


@dataclass(frozen=True)
class Reading:
    """How the cache reads stored experiments (the entrypoint's messages): a view's message as
    what the cache keeps of it (None for a draft), and a change of the feed as its
    experiment's id and what the cache keeps of it now (None once deleted, or while a draft)."""

    view: Callable[[bytes], Running | None]
    change: Callable[[Change], tuple[UUID, Running | None]]


@dataclass
class _Organization:
    """One organization in memory: `experiments` by id, and `running`, the same as a tuple
    that calls iterate without a lock (replaced whole on every change)."""

    experiments: dict[UUID, Running]
    through: int  # every change up to this feed position is applied
    since: int  # microseconds: exact for times from here on (ended experiments left out)
    running: tuple[Running, ...] = ()
    size: int = 0
    last_used: float = 0.0
    pruned_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._refresh()

    def put(self, experiment_id: UUID, experiment: Running | None) -> None:
        if experiment is None or (
            experiment.ends_at is not None and experiment.ends_at <= self.since
        ):
            self.experiments.pop(experiment_id, None)
        else:
            self.experiments[experiment_id] = experiment
        self._refresh()

    def prune(self, now: int) -> None:
        """Drops the experiments ended by `now`: times from `now` on stay exact."""
        self.since = max(self.since, now)
        self.experiments = {
            key: experiment
            for key, experiment in self.experiments.items()
            if experiment.ends_at is None or experiment.ends_at > self.since
        }
        self.pruned_at = time.monotonic()
        self._refresh()

    def _refresh(self) -> None:
        self.running = tuple(self.experiments.values())
        self.size = sum(_size(experiment) for experiment in self.running)


def _size(experiment: Running) -> int:
    return EXPERIMENT_OVERHEAD_BYTES + sum(len(group) for group in experiment.groups)


class AssignmentCache:
    """The experiments that can assign, per organization, in one worker; see the module."""

    def __init__(
        self,
        follower: FeedFollower,
        load: Callable[[UUID, datetime], RunningViews],
        reading: Reading,
        *,
        max_bytes: int = MAX_BYTES,
        own_write_wait_seconds: float = OWN_WRITE_WAIT_SECONDS,
    ) -> None:
        """`load` reads an organization's running views (ExperimentViewReader.running) on a
        connection of its own."""
        self._follower = follower
        self._load = load
        self._reading = reading
        self._max_bytes = max_bytes
        self._own_write_wait = own_write_wait_seconds
        self._organizations: dict[UUID, _Organization] = {}
        # Guards the organizations' contents, `_applied` and `_written`; calls read without it.
        self._lock = threading.Lock()
        self._caught_up = threading.Condition(self._lock)
        self._applied = 0  # the last feed position of the last batch applied
        # Per organization, the feed position of this worker's last write not yet seen applied.
        self._written: dict[UUID, int] = {}
        self._loading: dict[UUID, threading.Lock] = {}
        follower.subscribe(self._apply)

    def experiments(self, organization_id: UUID, at: int, now: datetime) -> Sequence[Running]:
        """The organization's experiments that may apply at `at` (microseconds; a time
        before what memory covers reads the database), with every write this worker
        acknowledged applied. Unavailable when the database cannot be read (a first load)
        or this worker's own last write does not reach the cache in time."""
        organization = self._organizations.get(organization_id)
        if organization is None:
            organization = self._loaded(organization_id, now)
        if organization_id in self._written:
            self._wait_for_own_write(organization_id, organization)
        organization.last_used = time.monotonic()
        if organization.pruned_at + PRUNE_SECONDS < organization.last_used:
            with self._lock:
                organization.prune(micros(now))
        if at < organization.since:
            return self._read(organization_id, moment_of(at))
        return organization.running

    def written(self, organization_id: UUID, position: int) -> None:
        """This worker committed a write of the organization at `position` (before answering
        its client): the organization's next assignment here waits until it is applied."""
        with self._lock:
            if position > self._written.get(organization_id, 0):
                self._written[organization_id] = position

    # --- loading -------------------------------------------------------------------------

    def _loaded(self, organization_id: UUID, now: datetime) -> _Organization:
        """The organization, loaded if no other call has loaded it meanwhile (one load per
        organization at a time)."""
        with self._lock:
            loading = self._loading.setdefault(organization_id, threading.Lock())
        with loading:
            organization = self._organizations.get(organization_id)
            if organization is not None:
                return organization
            if not self._follower.wait_started(FOLLOWER_START_SECONDS):
                raise Unavailable(messages.UNAVAILABLE)
            for _ in range(LOAD_ATTEMPTS):
                organization = self._load_once(organization_id, now)
                if organization is not None:
                    return organization
            raise Unavailable(messages.UNAVAILABLE)

    def _load_once(self, organization_id: UUID, now: datetime) -> _Organization | None:
        views = self._load(organization_id, now)
        experiments = self._from_views(views.messages)
        with self._lock:
            caught = self._follower.changes_after(organization_id, views.position)
            if caught is None:
                return None  # the window moved past the load: read it again
            changes, through = caught
            organization = _Organization(experiments, max(through, views.position), micros(now))
            for change in changes:
                organization.put(*self._reading.change(change))
            self._organizations[organization_id] = organization
            self._keep_within_budget(keep=organization_id)
            self._loading.pop(organization_id, None)
            return organization

    def _from_views(self, views: Sequence[bytes]) -> dict[UUID, Running]:
        found = {}
        for view in views:
            experiment = self._reading.view(view)
            if experiment is not None:
                found[experiment.experiment_id] = experiment
        return found

    def _read(self, organization_id: UUID, at: datetime) -> Sequence[Running]:
        """The experiments that may apply at `at` (in the past), from the database."""
        return tuple(self._from_views(self._load(organization_id, at).messages).values())

    def _keep_within_budget(self, keep: UUID | None = None) -> None:
        """Drops an organization that alone is over the budget (its calls read the database),
        then the organizations asked least recently (not `keep`) while over it."""
        organizations = self._organizations
        for organization_id, organization in list(organizations.items()):
            if organization.size > self._max_bytes:
                log.warning(
                    "organization %s has %d bytes of running experiments, more than the cache "
                    "holds (%d): its assignments read the database",
                    organization_id,
                    organization.size,
                    self._max_bytes,
                )
                del organizations[organization_id]
        total = sum(o.size for o in organizations.values())
        for organization_id, organization in sorted(
            organizations.items(), key=lambda item: item[1].last_used
        ):
            if total <= self._max_bytes:
                break
            if organization_id != keep:
                del organizations[organization_id]
                total -= organization.size

    # --- following the feed --------------------------------------------------------------

    def _apply(self, batch: Sequence[Change]) -> None:
        """A batch of changes from the follower, in order (its thread)."""
        with self._lock:
            grew = False
            for change in batch:
                organization = self._organizations.get(change.organization_id)
                if organization is None or change.position <= organization.through:
                    continue
                try:
                    organization.put(*self._reading.change(change))
                except Exception:  # a bug: forget the organization, load it again when asked
                    log.exception(
                        "cannot apply change %d; dropping its organization", change.position
                    )
                    del self._organizations[change.organization_id]
                    continue
                grew = True
            self._applied = batch[-1].position
            if self._written:  # what is applied is no longer waited for
                self._written = {k: p for k, p in self._written.items() if p > self._applied}
            if grew:
                self._keep_within_budget()
            self._caught_up.notify_all()

    def _wait_for_own_write(self, organization_id: UUID, organization: _Organization) -> None:
        deadline = time.monotonic() + self._own_write_wait
        with self._lock:
            written = self._written.get(organization_id, 0)
            while max(self._applied, organization.through) < written:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "this worker's write at %d did not reach the cache in time", written
                    )
                    raise Unavailable(messages.UNAVAILABLE)
                self._caught_up.wait(remaining)
            if self._written.get(organization_id) == written:
                del self._written[organization_id]
