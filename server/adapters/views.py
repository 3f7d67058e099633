"""The read model (server.service_layer.ports.ExperimentViews): the whole read path is here.

Each experiment has one row in `experiment_views` holding its response message, already
serialized, beside what reads need: its organization, its keyset position (created_at,
id) and its version (the etag). Get is one SELECT of a row, List one SELECT of a page of
rows; nothing is decoded, the bytes go to the client as they are (see the servicer).

The write path keeps the rows current: it builds the experiment it writes as a domain
object (domain.model.new_experiment / changed_experiment), renders it with the Renderer
before its transaction and `store`s the view in the same transaction as the experiment;
deleting an experiment deletes its row (the foreign key cascades). It is a projection,
not a source of truth: `rebuild` renders rows again from the experiment tables (and the
integration tests check that every row equals a fresh render, byte for byte).

Rendering needs the protobuf message, which the entrypoints own: this adapter is given a
Renderer when the server is composed (grpc_server.build_server), so adapters stay free of
protobuf and the read model stays free of the message's details.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Dialect,
    LargeBinary,
    Select,
    Uuid,
    bindparam,
    func,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import BindParameter

from server.adapters.database import ends_the_session
from server.adapters.orm import (
    Base,
    ExperimentRecord,
    ExperimentRevisionRecord,
    ExperimentViewRecord,
    RevisionLogRecord,
    UtcDateTime,
)
from server.adapters.repositories.experiments import SqlAlchemyExperimentRepository
from server.domain.model import Experiment
from server.domain.pagination import Position
from server.service_layer.ports import ExperimentView, RunningViews


@dataclass(frozen=True)
class Renderer:
    """How an experiment becomes the bytes reads send."""

    render: Callable[[Experiment], bytes]
    # Stored with each row; change it whenever `render` would produce other bytes, and
    # `experiments-admin migrate` renders the rows of older versions again.
    version: int

    def view(self, experiment: Experiment) -> ExperimentView:
        """The experiment's view: what the write path stores and reads send."""
        return ExperimentView(
            experiment.id,
            experiment.organization.id,
            experiment.created_at,
            experiment.version,
            self.render(experiment),
        )


_views = Base.metadata.tables[ExperimentViewRecord.__tablename__]
_experiments = Base.metadata.tables[ExperimentRecord.__tablename__]
_revisions = Base.metadata.tables[ExperimentRevisionRecord.__tablename__]
_revision_log = Base.metadata.tables[RevisionLogRecord.__tablename__]

# Not organization_id: every read names it already.
_rows = select(_views.c.experiment_id, _views.c.created_at, _views.c.version, _views.c.message)
_in_organization = _views.c.organization_id == bindparam("organization_id")
_GET = _rows.where(_in_organization, _views.c.experiment_id == bindparam("experiment_id"))


class _RawSelect:
    """A prebuilt SELECT run on the DBAPI cursor of a Connection, without SQLAlchemy's
    execution layer: for Get, the hottest statement, that layer cost ~50 us of ~57 us
    (bench/README.md). The SQL, the bound values and the columns are SQLAlchemy's own
    (compiled once per dialect, converted by the columns' types), and an error is raised as
    SQLAlchemy raises it (DBAPIError; a lost connection invalidates the pool), so it is
    answered like any other. SQLAlchemy's events do not see these statements.
    """

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self._sql = compiled.string
        self._positional = compiled.positiontup  # None for named parameter styles
        self._to_database = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self._from_database = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]

    def first(self, connection: Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        values = {name: self._to_database_value(name, value) for name, value in params.items()}
        parameters = values if self._positional is None else [values[n] for n in self._positional]
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None, "an open Connection has its DBAPI connection"
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(self._sql, parameters)
            row = cursor.fetchone()
        except connection.dialect.loaded_dbapi.Error as error:
            # Closed before the connection may be invalidated (closed): sqlite3 refuses to
            # close a cursor of a closed connection, which would hide this error.
            with contextlib.suppress(connection.dialect.loaded_dbapi.Error):
                cursor.close()
            raise _as_sqlalchemy_error(connection, error, cursor, self._sql) from error
        cursor.close()
        if row is None:
            return None
        return tuple(
            value if convert is None else convert(value)
            for convert, value in zip(self._from_database, row, strict=True)
        )

    def _to_database_value(self, name: str, value: Any) -> Any:
        convert = self._to_database[name]
        return value if convert is None else convert(value)


def _as_sqlalchemy_error(connection: Connection, error: Any, cursor: Any, sql: str) -> Exception:
    dialect = connection.dialect
    lost = ends_the_session(error) or dialect.is_disconnect(
        error, connection.connection.dbapi_connection, cursor
    )
    if lost:
        # What SQLAlchemy does for its own statements (Connection._handle_dbapi_exception):
        # the pool drops every connection made before this one was lost, not only this one.
        # After a failover they are all dead, and each would fail one more call.
        connection.engine.pool._invalidate(connection.connection, error)
        connection.invalidate(error)
    wrapped: Exception = DBAPIError.instance(
        sql,
        None,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return wrapped


_raw_gets: dict[tuple[str, str], _RawSelect] = {}


def _raw_get(dialect: Dialect) -> _RawSelect:
    """_GET for the dialect, compiled once (per database and driver, not per engine)."""
    key = (dialect.name, dialect.driver)
    raw = _raw_gets.get(key)
    if raw is None:
        raw = _raw_gets[key] = _RawSelect(_GET, dialect)
    return raw


# Keyset pagination over (created_at, id), newest first. The comparison of the pair is spelled
# out (SQLite and PostgreSQL alike), with a plain bound on created_at that an index range uses.
_start_at = bindparam("start_at", type_=UtcDateTime())
_start_id = bindparam("start_id", type_=Uuid())
_limit: BindParameter[int] = bindparam("limit")
_FIRST_PAGE = (
    _rows.where(_in_organization)
    .order_by(_views.c.created_at.desc(), _views.c.experiment_id.desc())
    .limit(_limit)
)
_OLDER_PAGE = (
    _rows.where(
        _in_organization,
        _views.c.created_at <= _start_at,
        or_(_views.c.created_at < _start_at, _views.c.experiment_id < _start_id),
    )
    .order_by(_views.c.created_at.desc(), _views.c.experiment_id.desc())
    .limit(_limit)
)
_NEWER_PAGE = (
    _rows.where(
        _in_organization,
        _views.c.created_at >= _start_at,
        or_(_views.c.created_at > _start_at, _views.c.experiment_id > _start_id),
    )
    .order_by(_views.c.created_at.asc(), _views.c.experiment_id.asc())
    .limit(_limit)
)


# The views of an organization's published experiments not ended at a time, beside the feed's
# head (FeedBounds.head: the newest position, or the pruned one), in ONE statement: one snapshot,
# so the views are exactly as of that position (positions become visible in commit order,
# server/adapters/revisions.py). Driven by the one-row revision_log, so that the head comes back
# even without any view. The organization's keyset index finds its experiments.
_head = (
    select(
        _revision_log.c.pruned_through,
        select(func.max(_revisions.c.seq)).scalar_subquery().label("newest"),
    )
    .where(_revision_log.c.id == 1)
    .subquery()
)
_not_ended_at = bindparam("not_ended_at", type_=UtcDateTime())
_running = (
    select(_views.c.message)
    .join_from(_experiments, _views, _views.c.experiment_id == _experiments.c.id)
    .where(
        _experiments.c.organization_id == bindparam("organization_id"),
        _experiments.c.is_draft.is_(False),
        or_(_experiments.c.ends_at.is_(None), _experiments.c.ends_at > _not_ended_at),
    )
    .subquery()
)
_RUNNING = select(_head.c.pruned_through, _head.c.newest, _running.c.message).select_from(
    _head.outerjoin(_running, true())
)


# INSERT ... ON CONFLICT DO UPDATE: one statement whether the view exists or not, spelled the
# same on SQLite and PostgreSQL. Text rather than the dialects' insert().on_conflict_do_update(),
# which SQLAlchemy compiles again on every execution (it is not in its statement cache).
_UPSERT = text(
    "INSERT INTO experiment_views"
    " (experiment_id, organization_id, created_at, version, render_version, message)"
    " VALUES (:experiment_id, :organization_id, :created_at, :version, :render_version, :message)"
    " ON CONFLICT (experiment_id) DO UPDATE SET version = excluded.version,"
    " render_version = excluded.render_version, message = excluded.message"
).bindparams(
    bindparam("experiment_id", type_=Uuid()),
    bindparam("organization_id", type_=Uuid()),
    bindparam("created_at", type_=UtcDateTime()),
    bindparam("message", type_=LargeBinary()),
)


class SqlAlchemyExperimentViews:
    """The read model on the unit of work's connection."""

    def __init__(self, connection: Connection, renderer: Renderer | None) -> None:
        self._connection = connection
        self._renderer = renderer

    def get(self, organization_id: UUID, experiment_id: UUID) -> ExperimentView | None:
        params = {"organization_id": organization_id, "experiment_id": experiment_id}
        row = _raw_get(self._connection.dialect).first(self._connection, params)
        if row is None:
            return None
        return ExperimentView(row[0], organization_id, row[1], row[2], row[3])

    def list_page(
        self, organization_id: UUID, limit: int, start: Position | None, backwards: bool
    ) -> tuple[list[ExperimentView], bool]:
        # One row beyond the page tells whether there is more in that direction.
        params: dict[str, Any] = {"organization_id": organization_id, "limit": limit + 1}
        statement: Select[Any] = _FIRST_PAGE
        if start is not None:
            statement = _NEWER_PAGE if backwards else _OLDER_PAGE
            params.update(start_at=start.created_at, start_id=start.id)
        views = [
            ExperimentView(id_, organization_id, created_at, version, message)
            for id_, created_at, version, message in self._connection.execute(statement, params)
        ]
        has_more = len(views) > limit
        del views[limit:]
        if backwards:
            views.reverse()  # fetched oldest first, shown newest first
        return views, has_more

    def running(self, organization_id: UUID, not_ended_at: datetime) -> RunningViews:
        params = {"organization_id": organization_id, "not_ended_at": not_ended_at}
        rows = self._connection.execute(_RUNNING, params).all()
        horizon, newest = rows[0].pruned_through, rows[0].newest
        return RunningViews(
            max(int(horizon), int(newest or 0)),
            tuple(row.message for row in rows if row.message is not None),
        )

    def store(self, view: ExperimentView) -> None:
        self._connection.execute(_UPSERT, self._row(view))

    def store_all(self, experiments: list[Experiment]) -> None:
        """Renders and stores the views of many experiments, in one statement."""
        if experiments:
            renderer = self._require_renderer()
            self._connection.execute(
                _UPSERT, [self._row(renderer.view(experiment)) for experiment in experiments]
            )

    def _row(self, view: ExperimentView) -> dict[str, Any]:
        return {
            "experiment_id": view.id,
            "organization_id": view.organization_id,
            "created_at": view.created_at,
            "version": view.version,
            "render_version": self._require_renderer().version,
            "message": view.message,
        }

    def _require_renderer(self) -> Renderer:
        if self._renderer is None:
            raise RuntimeError("this unit of work was made without a renderer: it cannot write")
        return self._renderer


_BATCH = 500


def _experiments_to_render(
    connection: Connection, renderer: Renderer, everything: bool
) -> Iterator[list[Experiment]]:
    """The experiments, in batches, whose view is missing or of another render version
    (every experiment with `everything`)."""
    candidates = select(_experiments.c.organization_id, _experiments.c.id)
    if not everything:
        candidates = candidates.outerjoin(
            _views, _views.c.experiment_id == _experiments.c.id
        ).where(
            or_(
                _views.c.experiment_id.is_(None),
                _views.c.render_version != renderer.version,
            )
        )
    keys = connection.execute(candidates.order_by(_experiments.c.id)).all()
    repository = SqlAlchemyExperimentRepository(connection)
    for first in range(0, len(keys), _BATCH):
        loaded = (repository.get(org, id_) for org, id_ in keys[first : first + _BATCH])
        yield [experiment for experiment in loaded if experiment is not None]


def rebuild(connection: Connection, renderer: Renderer, *, everything: bool = False) -> int:
    """Renders the views again from the experiment tables, on the caller's transaction: the
    missing and those of another render version, or every one with `everything` (after a
    change the write path did not re-render, such as a name changed in the database by
    hand). Returns how many were rendered."""
    views = SqlAlchemyExperimentViews(connection, renderer)
    rendered = 0
    for batch in _experiments_to_render(connection, renderer, everything):
        views.store_all(batch)
        rendered += len(batch)
    return rendered
