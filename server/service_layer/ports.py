"""What the use cases need from storage; server/adapters implements it with SQLAlchemy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from server.domain.concurrency import IdempotentRequest
from server.domain.model import Experiment, Goal, Principal, Room, etag_of
from server.domain.pagination import Position
from server.domain.rules import References


class ExperimentReader(Protocol):
    """Experiments as the domain sees them, and what they may refer to: what a write reads
    to apply the rules, before (or inside) its transaction."""

    def get(
        self, organization_id: UUID, experiment_id: UUID, *, for_update: bool = False
    ) -> Experiment | None:
        """The experiment as the domain sees it (what the rules and the read model need).

        `for_update` (in a write transaction): no other transaction can write it until this
        one ends (PostgreSQL locks the row; SQLite's writer already excludes every other)."""

    def references(
        self, organization_id: UUID, goal_ids: set[UUID], room_ids: set[UUID]
    ) -> References:
        """Those of `goal_ids` that are goals of the organization and those of `room_ids` that
        are its rooms (one round trip)."""

    def goals(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Goal]:
        """Those of `ids` that are goals of the organization."""

    def rooms(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Room]:
        """Those of `ids` that are rooms of the organization."""


class ExperimentRepository(ExperimentReader, Protocol):
    def add(self, experiment: Experiment) -> None:
        """Stores a new experiment (domain.model.new_experiment) as it is."""

    def update(self, current: Experiment, new: Experiment) -> bool:
        """Stores `new` (domain.model.changed_experiment of `current`) if the stored
        experiment is still at `current`'s version: a compare-and-set, so of racing writers
        that read the same version exactly one stores. Only what differs from `current` is
        written. False, with nothing written, when it is gone or at another version."""

    def delete(
        self, organization_id: UUID, experiment_id: UUID, expected_version: int | None = None
    ) -> bool:
        """Deletes the experiment with its groups and room links; False if there was none
        (or, given `expected_version`, it is at another version: then nothing is deleted)."""


@dataclass(frozen=True)
class ExperimentView:
    """An experiment as reads send it: its response message, already serialized.

    What the read model stores for each experiment; `message` is opaque here (the
    entrypoint's renderer made it), the rest is what reads need beside it.
    """

    id: UUID
    organization_id: UUID
    created_at: datetime
    version: int
    message: bytes

    @property
    def etag(self) -> str:
        return etag_of(self.version)


class ExperimentViewReader(Protocol):
    """The read model (CQRS): one stored view per experiment, written by the write path in
    the transaction that writes the experiment, read by Get and List without building
    domain objects. A deleted experiment's view goes with it. This is its reading half."""

    def get(self, organization_id: UUID, experiment_id: UUID) -> ExperimentView | None:
        """The stored view of the organization's experiment."""

    def list_page(
        self, organization_id: UUID, limit: int, start: Position | None, backwards: bool
    ) -> tuple[list[ExperimentView], bool]:
        """Up to `limit` views of the organization, newest first (by created_at, id).

        Forwards: those strictly older than `start` (all when None). Backwards: the
        `limit` ones strictly newer than `start`, still returned newest first. The
        bool says whether more exist beyond the page in the direction fetched.
        """

    def running(self, organization_id: UUID, not_ended_at: datetime) -> RunningViews:
        """The views of the organization's published experiments that have no end or end
        after `not_ended_at` (those that can assign a visitor then or later), and the feed
        position they are as of (see RunningViews)."""


@dataclass(frozen=True)
class RunningViews:
    """Stored views and the feed position they are as of, read in one statement (one
    snapshot): they show every change up to `position` and none after it."""

    position: int
    messages: tuple[bytes, ...]


class ExperimentViews(ExperimentViewReader, Protocol):
    """The read model as the write path sees it: it also stores views."""

    def store(self, view: ExperimentView) -> None:
        """Stores the view (rendered from the experiment as this transaction writes it)."""


@dataclass(frozen=True)
class RevisionRecord:
    """A revision as the write path stores it: `message` is opaque here (the entrypoint
    rendered it from a domain.revisions.Revision), the rest is what reads select by."""

    organization_id: UUID
    experiment_id: UUID
    number: int
    action: str
    user_id: UUID
    created_at: datetime
    message: bytes


@dataclass(frozen=True)
class Change:
    """A stored revision as the feed reads it, at its position (its `seq`) in the feed."""

    position: int
    organization_id: UUID
    experiment_id: UUID
    message: bytes


@dataclass(frozen=True)
class FeedBounds:
    """Where the feed stands: `horizon`, the last position pruning deleted (0 if none: a cursor
    below it is out of range), and `head`, the last position ever written (or pruned)."""

    horizon: int
    head: int


class RevisionReader(Protocol):
    """The history and the change feed: revisions in their feed order (commit order)."""

    def of_experiment(
        self,
        organization_id: UUID,
        experiment_id: UUID,
        limit: int,
        start: int | None,
        backwards: bool,
    ) -> tuple[list[Change], bool]:
        """Up to `limit` revisions of the experiment, newest first: those before `start` (all
        when None), or, backwards, the `limit` ones just after it, still newest first. The
        bool says whether more exist beyond the page in the direction fetched."""

    def after(self, organization_id: UUID, position: int, limit: int) -> list[Change]:
        """Up to `limit` of the organization's changes after `position`, oldest first."""

    def all_after(self, position: int, limit: int) -> list[Change]:
        """Up to `limit` changes of every organization after `position`, oldest first."""

    def bounds(self) -> FeedBounds:
        """The horizon and the head, read in one statement."""


class Revisions(RevisionReader, Protocol):
    """The history as the write path sees it: it also appends."""

    def append(self, revisions: Sequence[RevisionRecord]) -> int:
        """Appends revisions at the next feed positions, in this transaction: the last
        statement of a write before its commit (see server/adapters/revisions.py for why).
        Returns the last position drawn (0 when there were none)."""


class IdempotencyKeyRepository(Protocol):
    def claim(
        self,
        organization_id: UUID,
        user_id: UUID,
        key: str,
        request: IdempotentRequest,
        now: datetime,
        expired_before: datetime,
    ) -> IdempotentRequest | None:
        """Records `key` for `request` in this transaction, or returns the earlier request
        recorded under it (keys recorded before `expired_before` are forgotten).

        A concurrent transaction that recorded the key first is waited for: its request is
        returned once it commits, and if it rolls back the key is claimed here instead.
        """


class PrincipalRepository(Protocol):
    def by_key_hash(self, key_hash: str) -> Principal | None:
        """The user owning the API key with this hash, with its organization."""

    def trusted_for(self, key_hash: str) -> float:
        """For how many more seconds a principal just returned for this key may be used
        without asking again (how long a worker remembers it; 0: ask every time)."""


class ReadUnitOfWork(Protocol):
    """What reads may touch (Get, List, and a write's preparation before its transaction):
    no write method and no commit, so a write added to a read path is a type error; the
    adapter also refuses it at run time."""

    @property
    def experiments(self) -> ExperimentReader: ...

    @property
    def views(self) -> ExperimentViewReader: ...

    @property
    def principals(self) -> PrincipalRepository: ...

    @property
    def revisions(self) -> RevisionReader: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UnitOfWork(ReadUnitOfWork, Protocol):
    """One transaction that may write: rolled back on exit unless committed."""

    experiments: ExperimentRepository
    views: ExperimentViews
    idempotency_keys: IdempotencyKeyRepository
    principals: PrincipalRepository
    revisions: Revisions

    def commit(self) -> None: ...
