"""The revisions table (server.service_layer.ports.Revisions): experiments' history and the
change feed, appended by every write in its own transaction and read in feed order.

Feed order is commit order. A revision's position (`seq`) is drawn from a sequence as its
row goes in, and a reader that has seen position p must never later find a new row below p.

- PostgreSQL: sequence order alone is not commit order (a transaction that drew a later
  number can commit first). So a writer takes a transaction-scoped advisory lock on one
  constant key as the last thing before its revision goes in, draws the position under the
  lock, and commits at once. The lock is released only after the commit is visible:
  CommitTransaction (src/backend/access/transam/xact.c) calls RecordTransactionCommit, then
  ProcArrayEndTransaction (from then on new snapshots see the transaction committed), and
  only then releases its locks (ResourceOwnerRelease, RESOURCE_RELEASE_LOCKS). The next
  writer draws its position after acquiring the lock, so after every earlier position is
  visible or rolled back for good. Hence a snapshot that sees position n sees every
  committed position below n; a rolled-back draw leaves a gap that stays a gap. The
  sequence has CACHE 1 (an identity's default): with a cache per session, numbers would
  not be drawn in order. Writers queue only from the lock to the commit: one INSERT and
  the COMMIT (its WAL flush).
- SQLite: one writer at a time already (database.WriterLock and BEGIN IMMEDIATE), so
  positions are drawn in commit order. AUTOINCREMENT never gives a position out twice,
  even after pruning deleted the newest rows.

Readers read `seq > cursor` in order, each read one statement (one snapshot).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, bindparam, delete, func, insert, select, text, update
from sqlalchemy.sql.expression import BindParameter

from server.adapters.orm import (
    Base,
    ExperimentRecord,
    ExperimentRevisionRecord,
    RevisionLogRecord,
)
from server.adapters.repositories.experiments import SqlAlchemyExperimentRepository
from server.domain.model import Experiment
from server.service_layer.ports import Change, FeedBounds, RevisionRecord

# The advisory lock every writer of revisions takes on PostgreSQL: b"exp-feed" as a number.
FEED_LOCK_KEY = int.from_bytes(b"exp-feed", "big")
_LOCK_FEED = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=FEED_LOCK_KEY)

_revisions = Base.metadata.tables[ExperimentRevisionRecord.__tablename__]
_log = Base.metadata.tables[RevisionLogRecord.__tablename__]
_experiments = Base.metadata.tables[ExperimentRecord.__tablename__]

_INSERT = insert(_revisions).returning(_revisions.c.seq)
_changes = select(
    _revisions.c.seq,
    _revisions.c.organization_id,
    _revisions.c.experiment_id,
    _revisions.c.message,
)
_limit: BindParameter[int] = bindparam("limit")
_position: BindParameter[int] = bindparam("position")
_ALL_AFTER = _changes.where(_revisions.c.seq > _position).order_by(_revisions.c.seq).limit(_limit)
_of_organization = _revisions.c.organization_id == bindparam("organization_id")
_AFTER = _ALL_AFTER.where(_of_organization)
_of_experiment = (_revisions.c.experiment_id == bindparam("experiment_id"), _of_organization)
_OLDER = (
    _changes.where(*_of_experiment, _revisions.c.seq < _position)
    .order_by(_revisions.c.seq.desc())
    .limit(_limit)
)
_NEWEST = _changes.where(*_of_experiment).order_by(_revisions.c.seq.desc()).limit(_limit)
_NEWER = (
    _changes.where(*_of_experiment, _revisions.c.seq > _position)
    .order_by(_revisions.c.seq)
    .limit(_limit)
)
# The horizon and the highest position in one statement: one snapshot for both.
_BOUNDS = select(
    _log.c.pruned_through,
    select(func.max(_revisions.c.seq)).scalar_subquery().label("newest"),
).where(_log.c.id == 1)


def _change(row: Any) -> Change:
    return Change(row.seq, row.organization_id, row.experiment_id, row.message)


class SqlAlchemyRevisions:
    """The revisions on the unit of work's connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._serialize_writers = connection.dialect.name == "postgresql"

    def append(self, revisions: Sequence[RevisionRecord]) -> int:
        if not revisions:
            return 0
        if self._serialize_writers:
            self._connection.execute(_LOCK_FEED)  # held until this transaction ends
        positions = self._connection.execute(
            _INSERT,
            [
                {
                    "organization_id": revision.organization_id,
                    "experiment_id": revision.experiment_id,
                    "revision": revision.number,
                    "action": revision.action,
                    "user_id": revision.user_id,
                    "created_at": revision.created_at,
                    "message": revision.message,
                }
                for revision in revisions
            ],
        )
        return int(max(positions.scalars()))

    def of_experiment(
        self,
        organization_id: UUID,
        experiment_id: UUID,
        limit: int,
        start: int | None,
        backwards: bool,
    ) -> tuple[list[Change], bool]:
        # One row beyond the page tells whether there is more in that direction.
        params: dict[str, Any] = {
            "organization_id": organization_id,
            "experiment_id": experiment_id,
            "limit": limit + 1,
        }
        statement = _NEWEST
        if start is not None:
            statement = _NEWER if backwards else _OLDER
            params["position"] = start
        changes = [_change(row) for row in self._connection.execute(statement, params)]
        has_more = len(changes) > limit
        del changes[limit:]
        if backwards:
            changes.reverse()  # fetched oldest first, shown newest first
        return changes, has_more

    def after(self, organization_id: UUID, position: int, limit: int) -> list[Change]:
        params = {"organization_id": organization_id, "position": position, "limit": limit}
        return [_change(row) for row in self._connection.execute(_AFTER, params)]

    def all_after(self, position: int, limit: int) -> list[Change]:
        params = {"position": position, "limit": limit}
        return [_change(row) for row in self._connection.execute(_ALL_AFTER, params)]

    def bounds(self) -> FeedBounds:
        row = self._connection.execute(_BOUNDS).one()
        horizon = int(row.pruned_through)
        return FeedBounds(horizon, max(horizon, int(row.newest or 0)))


def prune(connection: Connection, before: datetime) -> tuple[int, int]:
    """Deletes every revision up to the last one made before `before` (in feed order, so the
    history kept stays a suffix of the feed), on the caller's transaction, and records that
    position as the horizon. Returns (revisions deleted, the horizon)."""
    through = connection.execute(
        select(func.max(_revisions.c.seq)).where(_revisions.c.created_at < before)
    ).scalar()
    horizon = int(connection.execute(select(_log.c.pruned_through)).scalar_one())
    if through is None or through <= horizon:
        return 0, horizon
    deleted = connection.execute(delete(_revisions).where(_revisions.c.seq <= through)).rowcount
    connection.execute(
        update(_log).where(_log.c.id == 1).values(pruned_through=through, pruned_before=before)
    )
    return int(deleted), int(through)


_BATCH = 500


def record_first_revisions(
    connection: Connection, record: Callable[[Experiment], RevisionRecord]
) -> int:
    """Once per database (`experiments-admin migrate`, on the caller's transaction): a first
    revision (`record`, domain.revisions.first_known) for each experiment that has none, made
    before revisions existed. Returns how many were recorded; 0 once done, even if pruning
    later leaves an experiment without revisions."""
    done = connection.execute(select(_log.c.first_revisions_recorded)).scalar_one()
    if done:
        return 0
    without = (
        select(_experiments.c.organization_id, _experiments.c.id)
        .where(
            ~select(_revisions.c.seq)
            .where(_revisions.c.experiment_id == _experiments.c.id)
            .exists()
        )
        .order_by(_experiments.c.created_at, _experiments.c.id)
    )
    keys = connection.execute(without).all()
    repository = SqlAlchemyExperimentRepository(connection)
    revisions = SqlAlchemyRevisions(connection)
    for first in range(0, len(keys), _BATCH):
        loaded = (repository.get(org, id_) for org, id_ in keys[first : first + _BATCH])
        revisions.append([record(experiment) for experiment in loaded if experiment is not None])
    connection.execute(update(_log).where(_log.c.id == 1).values(first_revisions_recorded=True))
    return len(keys)
