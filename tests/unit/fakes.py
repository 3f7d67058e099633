"""In-memory stand-ins for the storage ports (server/service_layer/ports.py), for the use cases.

They keep the contract of the real adapters that a use case relies on: reads see the
transaction's own writes, nothing survives a unit of work that was not committed, and
rows are scoped to their organization. They also record what was written and committed,
so a test can tell "rejected before writing" from "written, then rolled back".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar
from uuid import UUID

from server.domain.access import hash_api_key
from server.domain.concurrency import IdempotentRequest
from server.domain.model import (
    Experiment,
    Goal,
    Organization,
    Principal,
    Room,
    User,
)
from server.domain.pagination import Position
from server.domain.revisions import Revision
from server.domain.rules import References
from server.service_layer.ports import (
    Change,
    ExperimentReader,
    ExperimentRepository,
    ExperimentView,
    ExperimentViewReader,
    ExperimentViews,
    FeedBounds,
    IdempotencyKeyRepository,
    PrincipalRepository,
    RevisionReader,
    RevisionRecord,
    Revisions,
    RunningViews,
)

_Row = TypeVar("_Row")


def keyset_page(
    rows: Sequence[_Row],
    position: Callable[[_Row], Position],
    limit: int,
    start: Position | None,
    backwards: bool,
) -> tuple[list[_Row], bool]:
    """The ExperimentRepository.list_page contract over rows in any order."""
    newest_first = sorted(rows, key=position, reverse=True)
    if start is None:
        beyond = newest_first
    elif backwards:
        # The `limit` rows just newer than start, still shown newest first.
        newer = [row for row in newest_first if position(row) > start]
        return newer[-limit:], len(newer) > limit
    else:
        beyond = [row for row in newest_first if position(row) < start]
    return beyond[:limit], len(beyond) > limit


def view_of(experiment: Experiment) -> ExperimentView:
    """The read model's view of an experiment, rendered by the fakes' stand-in renderer."""
    return ExperimentView(
        experiment.id,
        experiment.organization.id,
        experiment.created_at,
        experiment.version,
        repr(experiment).encode(),
    )


def record_of(revision: Revision, experiment: bytes) -> RevisionRecord:
    """A revision as the history stores it, rendered by the fakes' stand-in renderer."""
    return RevisionRecord(
        revision.experiment.organization.id,
        revision.experiment.id,
        revision.number,
        revision.action.value,
        revision.author.id,
        revision.made_at,
        repr((revision.changes, experiment)).encode(),
    )


class ManualClock:
    """The service's clock: it reads `now`, which only the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeStore:
    """What the database would hold: shared by every unit of work of one test."""

    organizations: dict[UUID, Organization] = field(default_factory=dict)
    goals: dict[UUID, Goal] = field(default_factory=dict)
    rooms: dict[UUID, Room] = field(default_factory=dict)
    users: dict[UUID, User] = field(default_factory=dict)
    principals: dict[str, Principal] = field(default_factory=dict)
    experiments: dict[UUID, Experiment] = field(default_factory=dict)
    views: dict[UUID, ExperimentView] = field(default_factory=dict)
    # (organization, user, key) -> the request and when it was recorded
    idempotency_keys: dict[tuple[UUID, UUID, str], tuple[IdempotentRequest, datetime]] = field(
        default_factory=dict
    )
    # The history, in feed order: each revision at its position (1, 2, ...).
    revisions: list[tuple[int, RevisionRecord]] = field(default_factory=list)
    writes: list[tuple[str, UUID]] = field(default_factory=list)
    commits: int = 0

    def add_principal(self, key: str, principal: Principal) -> None:
        self.organizations[principal.organization.id] = principal.organization
        self.users[principal.user.id] = principal.user
        self.principals[hash_api_key(key)] = principal

    def add_goal(self, goal: Goal) -> None:
        self.goals[goal.id] = goal

    def add_room(self, room: Room) -> None:
        self.rooms[room.id] = room

    def put(self, experiment: Experiment) -> Experiment:
        """Stores an experiment as if a previous, committed request had created it."""
        self.organizations[experiment.organization.id] = experiment.organization
        self.experiments[experiment.id] = experiment
        self.views[experiment.id] = view_of(experiment)
        return experiment

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    def read_unit_of_work(self) -> FakeReadUnitOfWork:
        return FakeReadUnitOfWork(self)


class FakeExperimentRepository:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def get(
        self, organization_id: UUID, experiment_id: UUID, *, for_update: bool = False
    ) -> Experiment | None:
        experiment = self._store.experiments.get(experiment_id)
        if experiment is None or experiment.organization.id != organization_id:
            return None
        return experiment

    def add(self, experiment: Experiment) -> None:
        self._check_references(experiment)
        self._store.writes.append(("add", experiment.id))
        self._store.experiments[experiment.id] = experiment

    def update(self, current: Experiment, new: Experiment) -> bool:
        stored = self.get(current.organization.id, current.id)
        if stored is None or stored.version != current.version:
            return False
        self._check_references(new)
        assert new.version == current.version + 1, "an update moves the version on by one"
        self._store.writes.append(("update", current.id))
        self._store.experiments[current.id] = new
        return True

    def delete(
        self, organization_id: UUID, experiment_id: UUID, expected_version: int | None = None
    ) -> bool:
        stored = self.get(organization_id, experiment_id)
        if stored is None or expected_version not in (None, stored.version):
            return False
        self._store.writes.append(("delete", experiment_id))
        del self._store.experiments[experiment_id]
        self._store.views.pop(experiment_id, None)  # as the foreign key cascades
        return True

    def references(
        self, organization_id: UUID, goal_ids: set[UUID], room_ids: set[UUID]
    ) -> References:
        return References(
            self.goals(organization_id, goal_ids), self.rooms(organization_id, room_ids)
        )

    def goals(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Goal]:
        goals = self._store.goals
        return {
            i: goals[i] for i in ids if i in goals and goals[i].organization.id == organization_id
        }

    def rooms(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Room]:
        rooms = self._store.rooms
        return {
            i: rooms[i] for i in ids if i in rooms and rooms[i].organization_id == organization_id
        }

    def _check_references(self, experiment: Experiment) -> None:
        """A foreign key would refuse a goal, room or user that is not stored, or of another
        organization: so does the fake."""
        organization_id = experiment.organization.id
        goal = experiment.goal
        assert goal is None or self._store.goals.get(goal.id) == goal, "an unknown goal"
        assert goal is None or goal.organization.id == organization_id, "a foreign goal"
        for room in experiment.rooms:
            assert self._store.rooms.get(room.id) == room, "an unknown room"
            assert room.organization_id == organization_id, "a foreign room"
        assert experiment.updated_by.id in self._store.users, "an unknown user"


class FakeExperimentViews:
    """The read model: only what `store` put there, so a write that forgets it shows."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def get(self, organization_id: UUID, experiment_id: UUID) -> ExperimentView | None:
        view = self._store.views.get(experiment_id)
        return view if view is not None and view.organization_id == organization_id else None

    def list_page(
        self, organization_id: UUID, limit: int, start: Position | None, backwards: bool
    ) -> tuple[list[ExperimentView], bool]:
        rows = [v for v in self._store.views.values() if v.organization_id == organization_id]
        return keyset_page(rows, lambda v: Position(v.created_at, v.id), limit, start, backwards)

    def running(self, organization_id: UUID, not_ended_at: datetime) -> RunningViews:
        revisions = self._store.revisions
        return RunningViews(
            revisions[-1][0] if revisions else 0,
            tuple(
                self._store.views[e.id].message
                for e in self._store.experiments.values()
                if e.organization.id == organization_id
                and not e.is_draft
                and (e.ends_at is None or e.ends_at > not_ended_at)
            ),
        )

    def store(self, view: ExperimentView) -> None:
        self._store.writes.append(("view", view.id))
        self._store.views[view.id] = view


class FakeIdempotencyKeyRepository:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def claim(
        self,
        organization_id: UUID,
        user_id: UUID,
        key: str,
        request: IdempotentRequest,
        now: datetime,
        expired_before: datetime,
    ) -> IdempotentRequest | None:
        known = self._store.idempotency_keys.get((organization_id, user_id, key))
        if known is not None and known[1] >= expired_before:
            return known[0]
        self._store.idempotency_keys[(organization_id, user_id, key)] = (request, now)
        return None


class FakePrincipalRepository:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def by_key_hash(self, key_hash: str) -> Principal | None:
        return self._store.principals.get(key_hash)

    def trusted_for(self, key_hash: str) -> float:
        return 0.0


class FakeRevisions:
    """The history: what `append` put there, in order."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def append(self, revisions: Sequence[RevisionRecord]) -> int:
        position = 0
        for revision in revisions:
            self._store.writes.append(("revision", revision.experiment_id))
            position = self._store.revisions[-1][0] + 1 if self._store.revisions else 1
            self._store.revisions.append((position, revision))
        return position

    def _changes(self, organization_id: UUID | None) -> list[Change]:
        return [
            Change(position, record.organization_id, record.experiment_id, record.message)
            for position, record in self._store.revisions
            if organization_id in (None, record.organization_id)
        ]

    def of_experiment(
        self,
        organization_id: UUID,
        experiment_id: UUID,
        limit: int,
        start: int | None,
        backwards: bool,
    ) -> tuple[list[Change], bool]:
        rows = [c for c in self._changes(organization_id) if c.experiment_id == experiment_id]
        newest_first = sorted(rows, key=lambda c: c.position, reverse=True)
        if start is None:
            return newest_first[:limit], len(newest_first) > limit
        if backwards:
            newer = [c for c in newest_first if c.position > start]
            return newer[-limit:], len(newer) > limit
        older = [c for c in newest_first if c.position < start]
        return older[:limit], len(older) > limit

    def after(self, organization_id: UUID, position: int, limit: int) -> list[Change]:
        return [c for c in self._changes(organization_id) if c.position > position][:limit]

    def all_after(self, position: int, limit: int) -> list[Change]:
        return [c for c in self._changes(None) if c.position > position][:limit]

    def bounds(self) -> FeedBounds:
        revisions = self._store.revisions
        return FeedBounds(0, revisions[-1][0] if revisions else 0)


class FakeReadUnitOfWork:
    """What reads see of the store: no write method, no commit (ports.ReadUnitOfWork)."""

    def __init__(self, store: FakeStore) -> None:
        # Typed as the ports, so that mypy checks the fakes implement them.
        self.experiments: ExperimentReader = FakeExperimentRepository(store)
        self.views: ExperimentViewReader = FakeExperimentViews(store)
        self.principals: PrincipalRepository = FakePrincipalRepository(store)
        self.revisions: RevisionReader = FakeRevisions(store)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


class FakeUnitOfWork:
    """One transaction over the store: rolled back on exit unless committed."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self._last_committed = dict(store.experiments)
        self._last_committed_views = dict(store.views)
        self._last_committed_keys = dict(store.idempotency_keys)
        self._last_committed_revisions = list(store.revisions)
        # Typed as the ports, so that mypy checks the fakes implement them.
        self.experiments: ExperimentRepository = FakeExperimentRepository(store)
        self.views: ExperimentViews = FakeExperimentViews(store)
        self.idempotency_keys: IdempotencyKeyRepository = FakeIdempotencyKeyRepository(store)
        self.principals: PrincipalRepository = FakePrincipalRepository(store)
        self.revisions: Revisions = FakeRevisions(store)

    def __enter__(self) -> Self:
        self._last_committed = dict(self._store.experiments)
        self._last_committed_views = dict(self._store.views)
        self._last_committed_keys = dict(self._store.idempotency_keys)
        self._last_committed_revisions = list(self._store.revisions)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Whatever was written since the last commit is lost, as in a rollback.
        self._store.experiments = self._last_committed
        self._store.views = self._last_committed_views
        self._store.idempotency_keys = self._last_committed_keys
        self._store.revisions = self._last_committed_revisions

    def commit(self) -> None:
        self._last_committed = dict(self._store.experiments)
        self._last_committed_views = dict(self._store.views)
        self._last_committed_keys = dict(self._store.idempotency_keys)
        self._last_committed_revisions = list(self._store.revisions)
        self._store.commits += 1
