"""The principals behind API keys (server.service_layer.ports.PrincipalRepository), looked up
by the key's hash: the user, their organization and their permission."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from server.adapters.repositories.tables import api_keys, organizations, users
from server.domain.model import Organization, Principal, User

_PRINCIPAL = (
    select(
        users.c.id,
        users.c.first_name,
        users.c.last_name,
        users.c.is_bot,
        users.c.can_manage_settings,
        organizations.c.id.label("organization_id"),
        organizations.c.name.label("organization_name"),
        organizations.c.has_active_subscription,
    )
    .select_from(
        api_keys.join(users, users.c.id == api_keys.c.user_id).join(
            organizations, organizations.c.id == users.c.organization_id
        )
    )
    .where(api_keys.c.key_hash == bindparam("key_hash"))
)


class SqlAlchemyPrincipalRepository:
    """API keys, looked up by their hash."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def by_key_hash(self, key_hash: str) -> Principal | None:
        row = self._connection.execute(_PRINCIPAL, {"key_hash": key_hash}).first()
        if row is None:
            return None
        user = User(row.id, row.first_name, row.last_name, row.organization_id, row.is_bot)
        organization = Organization(
            row.organization_id, row.organization_name, row.has_active_subscription
        )
        return Principal(user, organization, row.can_manage_settings)

    def trusted_for(self, key_hash: str) -> float:
        return 0.0  # read from the database every time
