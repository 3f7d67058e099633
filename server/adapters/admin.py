"""Bootstrap storage: organizations, users, API keys, goals, rooms, and a demo world of them.

Each function adds rows through the given Session and flushes; the caller commits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Self
from uuid import UUID

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.adapters.orm import (
    ApiKeyRecord,
    GoalRecord,
    OrganizationRecord,
    RoomRecord,
    UserRecord,
)
from server.domain.access import hash_api_key, new_api_key


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


def any_organization_exists(session: Session) -> bool:
    return session.execute(select(OrganizationRecord.id).limit(1)).first() is not None


def create_organization(session: Session, name: str, *, active: bool = True) -> UUID:
    """A new organization; `active` is whether it has an active subscription."""
    organization = OrganizationRecord(name=name, has_active_subscription=active)
    session.add(organization)
    session.flush()
    return organization.id


def create_user(
    session: Session,
    organization_id: UUID,
    first_name: str,
    last_name: str,
    *,
    can_manage_settings: bool = True,
    is_bot: bool = False,
) -> UUID:
    _require(session, OrganizationRecord, organization_id)
    user = UserRecord(
        organization_id=organization_id,
        first_name=first_name,
        last_name=last_name,
        can_manage_settings=can_manage_settings,
        is_bot=is_bot,
    )
    session.add(user)
    session.flush()
    return user.id


def create_api_key(session: Session, user_id: UUID) -> str:
    """A new API key of the user: returned once, stored only as its hash."""
    _require(session, UserRecord, user_id)
    key = new_api_key()
    session.add(ApiKeyRecord(user_id=user_id, key_hash=hash_api_key(key)))
    session.flush()
    return key


def revoke_api_key(session: Session, key: str) -> UUID:
    """Deletes the API key `key`; returns its user. A server that authenticated the key in the
    last EXPERIMENTS_AUTH_CACHE_SECONDS may still accept it until that time has passed."""
    user_id = session.execute(
        delete(ApiKeyRecord)
        .where(ApiKeyRecord.key_hash == hash_api_key(key))
        .returning(ApiKeyRecord.user_id)
    ).scalar_one_or_none()
    if user_id is None:
        raise UnknownRecord("no such API key")
    return user_id


def revoke_api_keys_of_user(session: Session, user_id: UUID) -> int:
    """Deletes every API key of the user; returns how many there were."""
    _require(session, UserRecord, user_id)
    result = session.execute(delete(ApiKeyRecord).where(ApiKeyRecord.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def create_goal(session: Session, organization_id: UUID, name: str) -> UUID:
    _require(session, OrganizationRecord, organization_id)
    goal = GoalRecord(organization_id=organization_id, name=name)
    session.add(goal)
    session.flush()
    return goal.id


def create_room(session: Session, organization_id: UUID, name: str) -> UUID:
    _require(session, OrganizationRecord, organization_id)
    room = RoomRecord(organization_id=organization_id, name=name)
    session.add(room)
    session.flush()
    return room.id


def create_demo_world(session: Session) -> DemoWorld:
    """A fresh set of organizations, users and keys to try every access rule with.

    - `organization_id`, with `goal_id` and two `room_ids`;
    - tokens `settings` and `no_settings`: users of that organization with and
      without the settings permission;
    - `other_organization`: a user with the permission in `other_organization_id`,
      which owns `other_organization_goal_id`;
    - `inactive_subscription`: a user with the permission in
      `inactive_organization_id`, whose subscription is off.
    """
    organization = create_organization(session, "Demo Company Inc.")
    goal = create_goal(session, organization, "Reached checkout page")
    rooms = [create_room(session, organization, name) for name in ("Web shop", "Mobile app")]
    other = create_organization(session, "Other Company Ltd.")
    other_goal = create_goal(session, other, "Signed up for the newsletter")
    inactive = create_organization(session, "Lapsed Company LLC", active=False)

    def token(organization_id: UUID, first: str, last: str, *, settings: bool = True) -> str:
        user = create_user(session, organization_id, first, last, can_manage_settings=settings)
        return create_api_key(session, user)

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


def _require(
    session: Session, record: type[OrganizationRecord] | type[UserRecord], record_id: UUID
) -> None:
    if session.get(record, record_id) is None:
        raise UnknownRecord(f"no {record.__tablename__[:-1]} with id {record_id}")
