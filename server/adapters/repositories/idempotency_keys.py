"""The idempotency keys of Creates (server.service_layer.ports.IdempotencyKeyRepository),
recorded in the transaction that creates."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from server.adapters.repositories.tables import idempotency_keys
from server.domain.concurrency import IdempotentRequest

_key_of_user = (
    idempotency_keys.c.organization_id == bindparam("organization_id"),
    idempotency_keys.c.user_id == bindparam("user_id"),
)
_FORGET_EXPIRED_KEYS = delete(idempotency_keys).where(
    *_key_of_user, idempotency_keys.c.created_at < bindparam("expired_before")
)
_EARLIER_REQUEST = select(idempotency_keys.c.fingerprint, idempotency_keys.c.experiment_id).where(
    *_key_of_user, idempotency_keys.c.key == bindparam("key")
)


@cache
def _claim_key(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: on PostgreSQL it waits for a concurrent
    insert of the same key to commit (then inserts nothing) or roll back (then inserts).
    RETURNING says whether a row went in (psycopg's rowcount is -1 for this statement)."""
    insert_of = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert_of(idempotency_keys)
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.experiment_id)
    )


class SqlAlchemyIdempotencyKeyRepository:
    """The idempotency keys of Creates, recorded in the transaction that creates."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._claim = _claim_key(connection.dialect.name)

    def claim(
        self,
        organization_id: UUID,
        user_id: UUID,
        key: str,
        request: IdempotentRequest,
        now: datetime,
        expired_before: datetime,
    ) -> IdempotentRequest | None:
        connection = self._connection
        of_user = {"organization_id": organization_id, "user_id": user_id}
        # Expired keys of this user go on each keyed Create: the table stays small.
        connection.execute(_FORGET_EXPIRED_KEYS, {**of_user, "expired_before": expired_before})
        row = {
            **of_user,
            "key": key,
            "fingerprint": request.fingerprint,
            "experiment_id": request.experiment_id,
            "created_at": now,
        }
        for _ in range(_CLAIM_ATTEMPTS):
            if connection.execute(self._claim, row).first() is not None:
                return None
            earlier = connection.execute(_EARLIER_REQUEST, {**of_user, "key": key}).first()
            if earlier is not None:
                return IdempotentRequest(earlier.fingerprint, earlier.experiment_id)
            # Its experiment was deleted in between, taking the key along: claim it again.
        raise RuntimeError(f"idempotency key not claimed after {_CLAIM_ATTEMPTS} attempts")


_CLAIM_ATTEMPTS = 3
