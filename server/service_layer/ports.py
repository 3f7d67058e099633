"""What the use cases need from storage; server/adapters implements it with SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from server.domain.concurrency import IdempotentRequest
from server.domain.model import Experiment, Goal, Principal, Room, etag_of
from server.domain.pagination import Position


class ExperimentReader(Protocol):
    """Experiments as the domain sees them, and what they may refer to: what a write reads
    to apply the rules, before (or inside) its transaction."""

    def get(
        self, organization_id: UUID, experiment_id: UUID, *, for_update: bool = False
    ) -> Experiment | None:
        """The experiment as the domain sees it (what the rules and the read model need).

        `for_update` (in a write transaction): no other transaction can write it until this
        one ends (PostgreSQL locks the row; SQLite's writer already excludes every other)."""

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


class ExperimentViews(ExperimentViewReader, Protocol):
    """The read model as the write path sees it: it also stores views."""

    def store(self, view: ExperimentView) -> None:
        """Stores the view (rendered from the experiment as this transaction writes it)."""


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

    def commit(self) -> None: ...
