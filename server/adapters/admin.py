"""Bootstrap storage: organizations, users, API keys, goals, rooms, and a demo world of them.

Each function writes through the given Connection with SQLAlchemy Core, as the repository
does; the caller's transaction (engine.begin()) commits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Self
from uuid import UUID, uuid4

from sqlalchemy import Connection, delete, insert, select

from server.adapters.orm import (
    ApiKeyRecord,
    GoalRecord,
    OrganizationRecord,
    RoomRecord,
    UserRecord,
)
from server.domain.access import hash_api_key, new_api_key

Record = OrganizationRecord | UserRecord | ApiKeyRecord | GoalRecord | RoomRecord


class UnknownRecord(LookupError):
    """A referenced organization, user or API key does not exist."""


@dataclass(frozen=True)
class DemoTokens:
    settings: str
    no_settings: str
    other_organization: str
    inactive_subscription: str


@dataclass(frozen=True)
class DemoWorld:
    """What `create_demo_world` made: `experiments-admin demo` prints it as JSON, and every test
    tier reads it back with `from_json`."""

    organization_id: str
    goal_id: str
    room_ids: list[str]
    other_organization_id: str
    other_organization_goal_id: str
    inactive_organization_id: str
    tokens: DemoTokens

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**{**data, "tokens": DemoTokens(**data["tokens"])})


def any_organization_exists(connection: Connection) -> bool:
    return connection.execute(select(OrganizationRecord.id).limit(1)).first() is not None


def create_organization(connection: Connection, name: str, *, active: bool = True) -> UUID:
    """A new organization; `active` is whether it has an active subscription."""
    return _insert(connection, OrganizationRecord, name=name, has_active_subscription=active)


def create_user(
    connection: Connection,
    organization_id: UUID,
    first_name: str,
    last_name: str,
    *,
    can_manage_settings: bool = True,
    is_bot: bool = False,
) -> UUID:
    _require(connection, OrganizationRecord, organization_id)
    return _insert(
        connection,
        UserRecord,
        organization_id=organization_id,
        first_name=first_name,
        last_name=last_name,
        can_manage_settings=can_manage_settings,
        is_bot=is_bot,
    )


def create_api_key(connection: Connection, user_id: UUID) -> str:
    """A new API key of the user: returned once, stored only as its hash."""
    _require(connection, UserRecord, user_id)
    key = new_api_key()
    _insert(connection, ApiKeyRecord, user_id=user_id, key_hash=hash_api_key(key))
    return key


def revoke_api_key(connection: Connection, key: str) -> UUID:
    """Deletes the API key `key`; returns its user. A server that authenticated the key in the
    last EXPERIMENTS_AUTH_CACHE_SECONDS may still accept it until that time has passed."""
    user_id = connection.execute(
        delete(ApiKeyRecord)
        .where(ApiKeyRecord.key_hash == hash_api_key(key))
        .returning(ApiKeyRecord.user_id)
    ).scalar_one_or_none()
    if user_id is None:
        raise UnknownRecord("no such API key")
    return user_id


def revoke_api_keys_of_user(connection: Connection, user_id: UUID) -> int:
    """Deletes every API key of the user; returns how many there were."""
    _require(connection, UserRecord, user_id)
    result = connection.execute(delete(ApiKeyRecord).where(ApiKeyRecord.user_id == user_id))
    return int(result.rowcount)


def create_goal(connection: Connection, organization_id: UUID, name: str) -> UUID:
    _require(connection, OrganizationRecord, organization_id)
    return _insert(connection, GoalRecord, organization_id=organization_id, name=name)


def create_room(connection: Connection, organization_id: UUID, name: str) -> UUID:
    _require(connection, OrganizationRecord, organization_id)
    return _insert(connection, RoomRecord, organization_id=organization_id, name=name)


def create_demo_world(connection: Connection) -> DemoWorld:
    """A fresh set of organizations, users and keys to try every access rule with.

    - `organization_id`, with `goal_id` and two `room_ids`;
    - tokens `settings` and `no_settings`: users of that organization with and
      without the settings permission;
    - `other_organization`: a user with the permission in `other_organization_id`,
      which owns `other_organization_goal_id`;
    - `inactive_subscription`: a user with the permission in
      `inactive_organization_id`, whose subscription is off.
    """
    organization = create_organization(connection, "Demo Company Inc.")
    goal = create_goal(connection, organization, "Reached checkout page")
    rooms = [create_room(connection, organization, name) for name in ("Web shop", "Mobile app")]
    other = create_organization(connection, "Other Company Ltd.")
    other_goal = create_goal(connection, other, "Signed up for the newsletter")
    inactive = create_organization(connection, "Lapsed Company LLC", active=False)

    def token(organization_id: UUID, first: str, last: str, *, settings: bool = True) -> str:
        user = create_user(connection, organization_id, first, last, can_manage_settings=settings)
        return create_api_key(connection, user)

    return DemoWorld(
        organization_id=str(organization),
        goal_id=str(goal),
        room_ids=[str(room) for room in rooms],
        other_organization_id=str(other),
        other_organization_goal_id=str(other_goal),
        inactive_organization_id=str(inactive),
        tokens=DemoTokens(
            settings=token(organization, "John", "Doe"),
            no_settings=token(organization, "Jane", "Roe", settings=False),
            other_organization=token(other, "Erika", "Mustermann"),
            inactive_subscription=token(inactive, "Juan", "Pérez"),
        ),
    )


def _insert(connection: Connection, record: type[Record], **values: Any) -> UUID:
    """Adds one row of `record`'s table; returns its new id."""
    record_id = uuid4()
    connection.execute(insert(record).values(id=record_id, **values))
    return record_id


def _require(
    connection: Connection, record: type[OrganizationRecord] | type[UserRecord], record_id: UUID
) -> None:
    found = connection.execute(select(record.id).where(record.id == record_id)).first()
    if found is None:
        raise UnknownRecord(f"no {record.__tablename__[:-1]} with id {record_id}")
