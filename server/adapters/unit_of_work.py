"""The unit of work: one connection and transaction per use case, rolled back unless committed."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar, cast

from sqlalchemy import Connection, Engine

from server.adapters.database import (
    WriterLock,
    WriteTimedOut,
    begin_write,
    write_deadline,
    writer_lock_for,
)
from server.adapters.repositories.experiments import SqlAlchemyExperimentRepository
from server.adapters.repositories.idempotency_keys import SqlAlchemyIdempotencyKeyRepository
from server.adapters.repositories.principal_cache import CachingPrincipalRepository, PrincipalCache
from server.adapters.repositories.principals import SqlAlchemyPrincipalRepository
from server.adapters.revisions import SqlAlchemyRevisions
from server.adapters.views import Renderer, SqlAlchemyExperimentViews
from server.domain.model import Principal
from server.service_layer.ports import (
    ExperimentReader,
    ExperimentRepository,
    ExperimentViewReader,
    ExperimentViews,
    IdempotencyKeyRepository,
    PrincipalRepository,
    RevisionReader,
    Revisions,
)


def _principals(connection: Connection, cache: PrincipalCache | None) -> PrincipalRepository:
    principals = SqlAlchemyPrincipalRepository(connection)
    return principals if cache is None else CachingPrincipalRepository(principals, cache)


_R = TypeVar("_R")


class SqlAlchemyReadUnitOfWork:
    """Implements server.service_layer.ports.ReadUnitOfWork on a connection of a read-only
    engine (database.make_engine(read_only=True)).

    That engine's connections refuse writes (PostgreSQL: default_transaction_read_only;
    SQLite: query_only) and run each statement on its own, with no BEGIN or ROLLBACK: that
    is consistent because every read of the repositories is a single statement, and it
    keeps the hot read path at one round trip. The repositories speak SQLAlchemy Core, so
    no ORM Session is needed. A write prepares here (loads, checks, renders) before its
    transaction: reading the experiment twice in separate statements is fine there, since
    the write that follows is a compare-and-set on the version read.

    The connection is taken from the pool when a repository first reads, not on entering:
    a call whose API key the principal cache knows and that reads nothing else (an
    assignment, served from memory) takes none: one worker under load served assignments
    about 15% faster without that checkout and its return (bench/README.md).
    """

    def __init__(self, engine: Engine, *, principal_cache: PrincipalCache | None = None) -> None:
        self._engine = engine
        self._principal_cache = principal_cache
        self._connection: Connection | None = None
        self._repositories: dict[str, object] = {}

    @property
    def experiments(self) -> ExperimentReader:
        return self._repository("experiments", SqlAlchemyExperimentRepository)

    @property
    def views(self) -> ExperimentViewReader:
        return self._repository(
            "views", lambda connection: SqlAlchemyExperimentViews(connection, None)
        )

    @property
    def revisions(self) -> RevisionReader:
        return self._repository("revisions", SqlAlchemyRevisions)

    @property
    def principals(self) -> PrincipalRepository:
        principals = self._repositories.get("principals")
        if principals is None:
            database = _PrincipalsOnFirstRead(self)
            principals = self._repositories["principals"] = (
                database
                if self._principal_cache is None
                else CachingPrincipalRepository(database, self._principal_cache)
            )
        return cast(PrincipalRepository, principals)

    def connection(self) -> Connection:
        """The unit's connection, taken from the pool on first use."""
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def _repository(self, name: str, make: Callable[[Connection], _R]) -> _R:
        repository = self._repositories.get(name)
        if repository is None:
            repository = self._repositories[name] = make(self.connection())
        return cast(_R, repository)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._repositories.clear()
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _PrincipalsOnFirstRead:
    """The database's principals, read on the unit's connection, taken only when asked."""

    def __init__(self, unit: SqlAlchemyReadUnitOfWork) -> None:
        self._unit = unit

    def by_key_hash(self, key_hash: str) -> Principal | None:
        return SqlAlchemyPrincipalRepository(self._unit.connection()).by_key_hash(key_hash)

    def trusted_for(self, key_hash: str) -> float:
        return 0.0  # as SqlAlchemyPrincipalRepository: read from the database every time


class SqlAlchemyUnitOfWork:
    """Implements server.service_layer.ports.UnitOfWork: one transaction on a pooled Core
    connection, begun at once (so that SQLite takes the write lock up front).

    A write either commits before its deadline (the call's, see database.write_deadline) or
    not at all: every wait for the database ends by then (WriterLock, database.begin_write),
    and a commit that would come after it is not made. Either way the client is answered
    before its deadline, and a write it was told had failed never appears later.
    """

    experiments: ExperimentRepository
    views: ExperimentViews
    idempotency_keys: IdempotencyKeyRepository
    principals: PrincipalRepository
    revisions: Revisions

    def __init__(
        self,
        engine: Engine,
        *,
        renderer: Renderer | None = None,
        principal_cache: PrincipalCache | None = None,
    ) -> None:
        """`renderer` makes the read model's views; without it, the work cannot write them."""
        self._engine = engine
        self._renderer = renderer
        self._principal_cache = principal_cache
        self._connection: Connection | None = None
        self._writer_lock: WriterLock | None = None
        self._deadline = 0.0

    def __enter__(self) -> Self:
        self._deadline = deadline = write_deadline()
        if deadline <= time.monotonic():
            raise WriteTimedOut("before the write began")
        writer_lock = writer_lock_for(self._engine)
        if writer_lock is not None and not writer_lock.acquire(deadline):
            raise WriteTimedOut("waiting for the SQLite writer")
        self._writer_lock = writer_lock
        try:
            connection = self._engine.connect()
            begin_write(connection, deadline)  # now, so that SQLite takes the write lock up front
        except BaseException:
            self._release_writer_lock()
            raise
        self._connection = connection
        self.experiments = SqlAlchemyExperimentRepository(connection)
        self.views = SqlAlchemyExperimentViews(connection, self._renderer)
        self.idempotency_keys = SqlAlchemyIdempotencyKeyRepository(connection)
        self.principals = _principals(connection, self._principal_cache)
        self.revisions = SqlAlchemyRevisions(connection)
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
        connection = self._require_connection()
        if time.monotonic() >= self._deadline:
            raise WriteTimedOut("before its commit")  # rolled back on exit
        connection.commit()
        # The transaction is over: the next writer goes now, not once this one has also told
        # its follower and answered (a woken thread may take the GIL for a while first).
        self._release_writer_lock()

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("the unit of work is used outside its `with` block")
        return self._connection
