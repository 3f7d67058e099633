"""The unit of work: one connection and transaction per use case, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine

from server.adapters.database import WriterLock, read_only_options, writer_lock_for
from server.adapters.principal_cache import CachingPrincipalRepository, PrincipalCache
from server.adapters.repository import (
    SqlAlchemyExperimentRepository,
    SqlAlchemyIdempotencyKeyRepository,
    SqlAlchemyPrincipalRepository,
)
from server.adapters.views import Renderer, SqlAlchemyExperimentViews
from server.service_layer.ports import (
    ExperimentRepository,
    ExperimentViews,
    IdempotencyKeyRepository,
    PrincipalRepository,
)


class SqlAlchemyUnitOfWork:
    """Implements server.service_layer.ports.UnitOfWork on a pooled Core connection.

    The repositories speak SQLAlchemy Core, so no ORM Session is needed: that keeps
    per-request overhead low on the hot read path. `read_only=True` promises the
    work will not write; each of its statements then runs on its own without an
    enclosing transaction (see database.read_only_options), which is consistent
    because every read of the repositories is a single statement.
    """

    experiments: ExperimentRepository
    views: ExperimentViews
    idempotency_keys: IdempotencyKeyRepository
    principals: PrincipalRepository

    def __init__(
        self,
        engine: Engine,
        *,
        renderer: Renderer | None = None,
        read_only: bool = False,
        principal_cache: PrincipalCache | None = None,
    ) -> None:
        """`renderer` makes the read model's views; without it, the work cannot write them."""
        self._engine = engine
        self._renderer = renderer
        self._read_only = read_only
        self._principal_cache = principal_cache
        self._connection: Connection | None = None
        self._writer_lock: WriterLock | None = None

    def __enter__(self) -> Self:
        writer_lock = None if self._read_only else writer_lock_for(self._engine)
        if writer_lock is not None:
            writer_lock.acquire()
        self._writer_lock = writer_lock
        try:
            connection = self._engine.connect()
            if self._read_only:
                connection.execution_options(**read_only_options(connection.dialect.name))
            else:
                connection.begin()  # now, so that SQLite takes the write lock up front
        except BaseException:
            self._release_writer_lock()
            raise
        self._connection = connection
        self.experiments = SqlAlchemyExperimentRepository(connection)
        self.views = SqlAlchemyExperimentViews(connection, self._renderer)
        self.idempotency_keys = SqlAlchemyIdempotencyKeyRepository(connection)
        principals = SqlAlchemyPrincipalRepository(connection)
        self.principals = (
            CachingPrincipalRepository(principals, self._principal_cache)
            if self._principal_cache is not None
            else principals
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._require_connection()
        self._connection = None
        try:
            connection.rollback()  # a no-op after commit()
        finally:
            connection.close()
            self._release_writer_lock()

    def _release_writer_lock(self) -> None:
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def commit(self) -> None:
        self._require_connection().commit()

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("the unit of work is used outside its `with` block")
        return self._connection
