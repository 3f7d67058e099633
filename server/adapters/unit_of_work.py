"""The unit of work: one Session and one transaction per use case, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from server.adapters.database import READ_ONLY
from server.adapters.repository import SqlAlchemyExperimentRepository, SqlAlchemyPrincipalRepository
from server.service_layer.ports import ExperimentRepository, PrincipalRepository


class SqlAlchemyUnitOfWork:
    """Implements server.service_layer.ports.UnitOfWork.

    `read_only=True` promises the transaction will not write. On SQLite it then does not
    take the write lock up front, so such transactions run alongside each other and a
    writer; left False, any transaction may write, and writers queue (see database.py).
    """

    experiments: ExperimentRepository
    principals: PrincipalRepository

    def __init__(self, session_factory: sessionmaker[Session], *, read_only: bool = False) -> None:
        self._session_factory = session_factory
        self._read_only = read_only
        self._session: Session | None = None

    def __enter__(self) -> Self:
        session = self._session_factory()
        # Begin now, with the options the engine's BEGIN hook reads, not at the first query.
        session.connection(execution_options={READ_ONLY: self._read_only})
        self._session = session
        self.experiments = SqlAlchemyExperimentRepository(session)
        self.principals = SqlAlchemyPrincipalRepository(session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._require_session()
        self._session = None
        try:
            session.rollback()  # a no-op after commit()
        finally:
            session.close()

    def commit(self) -> None:
        self._require_session().commit()

    def _require_session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the unit of work is used outside its `with` block")
        return self._session
