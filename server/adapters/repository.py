"""The storage ports (server.service_layer.ports) implemented with SQLAlchemy Core.

This is the write side. Clients' reads come from the read model (server/adapters/views.py);
the experiment is loaded here as a domain object only for the rules of a write and to
render its view: ONE prebuilt statement whatever its size, the experiment joined with its
organization, goal and users, carrying its groups and rooms as JSON arrays built by the
database (json_group_array on SQLite, json_agg on PostgreSQL). Everything runs on the
connection the unit of work hands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Row,
    Select,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import BindParameter

from server.adapters.orm import (
    ApiKeyRecord,
    Base,
    ExperimentGroupRecord,
    ExperimentRecord,
    ExperimentRoomRecord,
    GoalRecord,
    IdempotencyKeyRecord,
    OrganizationRecord,
    RoomRecord,
    UserRecord,
)
from server.domain.assignment import BucketRange
from server.domain.concurrency import IdempotentRequest
from server.domain.model import (
    Experiment,
    ExperimentState,
    Goal,
    Group,
    GroupType,
    Organization,
    Principal,
    ResetInterval,
    Room,
    User,
)

_tables = Base.metadata.tables
_organizations = _tables[OrganizationRecord.__tablename__]
_users = _tables[UserRecord.__tablename__]
_api_keys = _tables[ApiKeyRecord.__tablename__]
_goals = _tables[GoalRecord.__tablename__]
_rooms = _tables[RoomRecord.__tablename__]
_experiments = _tables[ExperimentRecord.__tablename__]
_groups = _tables[ExperimentGroupRecord.__tablename__]
_experiment_rooms = _tables[ExperimentRoomRecord.__tablename__]
_idempotency_keys = _tables[IdempotencyKeyRecord.__tablename__]

_organization = _organizations.alias("organization")
_goal = _goals.alias("goal")
_goal_organization = _organizations.alias("goal_organization")
_creator = _users.alias("creator")
_updater = _users.alias("updater")

_EXPERIMENT_COLUMNS = (
    _experiments.c.id,
    _experiments.c.is_draft,
    _experiments.c.name,
    _experiments.c.starts_at,
    _experiments.c.ends_at,
    _experiments.c.group_reset_interval,
    _experiments.c.created_at,
    _experiments.c.updated_at,
    _experiments.c.version,
    _organization.c.id.label("organization_id"),
    _organization.c.name.label("organization_name"),
    _organization.c.has_active_subscription.label("organization_active"),
    _goal.c.id.label("goal_id"),
    _goal.c.name.label("goal_name"),
    _goal_organization.c.id.label("goal_organization_id"),
    _goal_organization.c.name.label("goal_organization_name"),
    _goal_organization.c.has_active_subscription.label("goal_organization_active"),
    _creator.c.id.label("creator_id"),
    _creator.c.first_name.label("creator_first_name"),
    _creator.c.last_name.label("creator_last_name"),
    _creator.c.organization_id.label("creator_organization_id"),
    _creator.c.is_bot.label("creator_is_bot"),
    _updater.c.id.label("updater_id"),
    _updater.c.first_name.label("updater_first_name"),
    _updater.c.last_name.label("updater_last_name"),
    _updater.c.organization_id.label("updater_organization_id"),
    _updater.c.is_bot.label("updater_is_bot"),
)
_EXPERIMENT_JOINS = (
    _experiments.join(_organization, _organization.c.id == _experiments.c.organization_id)
    .join(_creator, _creator.c.id == _experiments.c.created_by_user_id)
    .join(_updater, _updater.c.id == _experiments.c.updated_by_user_id)
    .outerjoin(_goal, _goal.c.id == _experiments.c.goal_id)
    .outerjoin(_goal_organization, _goal_organization.c.id == _goal.c.organization_id)
)


def _json_children(dialect: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The experiment's groups and rooms as JSON arrays, one scalar subquery each."""
    if dialect == "postgresql":
        array, item = func.json_agg, func.json_build_object
        treatment: ColumnElement[Any] = _groups.c.treatment
        buckets: ColumnElement[Any] = _groups.c.buckets
    else:  # SQLite keeps JSON as text: json() embeds it as JSON rather than as a string.
        array, item = func.json_group_array, func.json_object
        treatment = func.json(_groups.c.treatment)
        buckets = func.json(_groups.c.buckets)

    def key(name: str) -> ColumnElement[Any]:
        return literal_column(f"'{name}'")  # inlined: no bound parameter per key and row

    groups = (
        select(
            array(
                item(
                    key("id"),
                    _groups.c.id,
                    key("position"),
                    _groups.c.position,
                    key("name"),
                    _groups.c.name,
                    key("percentage"),
                    _groups.c.percentage,
                    key("group_type"),
                    _groups.c.group_type,
                    key("treatment"),
                    treatment,
                    key("created_at"),
                    _groups.c.created_at,
                    key("updated_at"),
                    _groups.c.updated_at,
                    key("buckets"),
                    buckets,
                )
            )
        )
        .where(_groups.c.experiment_id == _experiments.c.id)
        .scalar_subquery()
    )
    rooms = (
        select(
            array(
                item(
                    key("id"),
                    _rooms.c.id,
                    key("name"),
                    _rooms.c.name,
                    key("organization_id"),
                    _rooms.c.organization_id,
                    key("position"),
                    _experiment_rooms.c.position,
                )
            )
        )
        .join_from(_experiment_rooms, _rooms, _rooms.c.id == _experiment_rooms.c.room_id)
        .where(_experiment_rooms.c.experiment_id == _experiments.c.id)
        .scalar_subquery()
    )
    return type_coerce(groups, JSON).label("groups"), type_coerce(rooms, JSON).label("rooms")


@cache
def _get(dialect: str, for_update: bool = False) -> Select[Any]:
    """The experiment with everything the domain object holds, in one statement; with
    `for_update`, its row locked (PostgreSQL; SQLite has no FOR UPDATE and needs none)."""
    statement = (
        select(*_EXPERIMENT_COLUMNS, *_json_children(dialect))
        .select_from(_EXPERIMENT_JOINS)
        .where(
            _experiments.c.organization_id == bindparam("organization_id"),
            _experiments.c.id == bindparam("experiment_id"),
        )
    )
    return statement.with_for_update(of=_experiments) if for_update else statement


_of_experiment: BindParameter[Any] = bindparam("experiment_id")
_INSERT_EXPERIMENT = insert(_experiments)
_expected_version = _experiments.c.version == bindparam("expected_version")
# A compare-and-set: the version read is compared and moved on in one statement, so of racing
# writers that read the same version exactly one matches (PostgreSQL re-checks the WHERE
# after waiting for the row lock; SQLite's writers run one at a time). Bound parameters of
# an UPDATE must not be named after columns: those name the values to SET.
_UPDATE_EXPERIMENT = (
    update(_experiments)
    .where(
        _experiments.c.organization_id == bindparam("of_organization"),
        _experiments.c.id == _of_experiment,
        _expected_version,
    )
    .values(version=_experiments.c.version + 1)
)
_DELETE_EXPERIMENT = delete(_experiments).where(
    _experiments.c.organization_id == bindparam("organization_id"),
    _experiments.c.id == _of_experiment,
)
_DELETE_EXPERIMENT_IF_VERSION = _DELETE_EXPERIMENT.where(_expected_version)
_INSERT_GROUP = insert(_groups)
# Run with many parameter sets, one per group; the keys besides group_id are the columns to SET.
_UPDATE_GROUP = update(_groups).where(_groups.c.id == bindparam("group_id"))
_DELETE_GROUPS_FROM = delete(_groups).where(
    _groups.c.experiment_id == _of_experiment, _groups.c.position >= bindparam("count")
)
_INSERT_ROOM_LINK = insert(_experiment_rooms)
_DELETE_ROOM_LINKS = delete(_experiment_rooms).where(
    _experiment_rooms.c.experiment_id == _of_experiment
)

_ids: BindParameter[Any] = bindparam("ids", expanding=True)
_GOALS = (
    select(
        _goals.c.id,
        _goals.c.name,
        _organizations.c.id.label("organization_id"),
        _organizations.c.name.label("organization_name"),
        _organizations.c.has_active_subscription,
    )
    .join_from(_goals, _organizations, _organizations.c.id == _goals.c.organization_id)
    .where(_goals.c.organization_id == bindparam("organization_id"), _goals.c.id.in_(_ids))
)
_ROOMS = select(_rooms.c.id, _rooms.c.name, _rooms.c.organization_id).where(
    _rooms.c.organization_id == bindparam("organization_id"), _rooms.c.id.in_(_ids)
)

_PRINCIPAL = (
    select(
        _users.c.id,
        _users.c.first_name,
        _users.c.last_name,
        _users.c.is_bot,
        _users.c.can_manage_settings,
        _organizations.c.id.label("organization_id"),
        _organizations.c.name.label("organization_name"),
        _organizations.c.has_active_subscription,
    )
    .select_from(
        _api_keys.join(_users, _users.c.id == _api_keys.c.user_id).join(
            _organizations, _organizations.c.id == _users.c.organization_id
        )
    )
    .where(_api_keys.c.key_hash == bindparam("key_hash"))
)


class SqlAlchemyExperimentRepository:
    """Experiments of organizations, read and written on the unit of work's connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._dialect = connection.dialect.name
        self._get = _get(self._dialect)

    def get(
        self, organization_id: UUID, experiment_id: UUID, *, for_update: bool = False
    ) -> Experiment | None:
        statement = _get(self._dialect, True) if for_update else self._get
        params = {"organization_id": organization_id, "experiment_id": experiment_id}
        row = self._connection.execute(statement, params).first()
        return _experiment(row) if row is not None else None

    def add(self, experiment: Experiment) -> None:
        connection = self._connection
        connection.execute(
            _INSERT_EXPERIMENT,
            {
                "id": experiment.id,
                "organization_id": experiment.organization.id,
                **experiment_values(experiment),
                "created_at": experiment.created_at,
                "created_by_user_id": experiment.created_by.id,
                "updated_at": experiment.updated_at,
                "updated_by_user_id": experiment.updated_by.id,
            },
        )
        _insert_groups(connection, experiment.id, experiment.groups)
        _insert_room_links(connection, experiment.id, experiment.room_ids)

    def update(self, current: Experiment, new: Experiment) -> bool:
        connection = self._connection
        # The experiment row first: on PostgreSQL that locks it, so a racing writer waits
        # here and then finds the version moved on.
        params = {
            "of_organization": current.organization.id,
            "experiment_id": current.id,
            "expected_version": current.version,
            **experiment_values(new),
            "updated_at": new.updated_at,
            "updated_by_user_id": new.updated_by.id,
        }
        if connection.execute(_UPDATE_EXPERIMENT, params).rowcount == 0:
            return False  # deleted, or written by another, since `current` was read
        # The version matched, so the stored groups and rooms are `current`'s: write only
        # what changed (changed_experiment keeps the id of group i and the group itself when
        # its values do not change).
        count = len(new.groups)
        if len(current.groups) > count:
            connection.execute(_DELETE_GROUPS_FROM, {"experiment_id": current.id, "count": count})
        kept = {group.id: group for group in current.groups}
        changed = [
            {"group_id": group.id, **group_values(group), "updated_at": group.updated_at}
            for group in new.groups
            if group.id in kept and group != kept[group.id]
        ]
        if changed:
            connection.execute(_UPDATE_GROUP, changed)
        _insert_groups(connection, current.id, [g for g in new.groups if g.id not in kept])
        if new.room_ids != current.room_ids:
            connection.execute(_DELETE_ROOM_LINKS, {"experiment_id": current.id})
            _insert_room_links(connection, current.id, new.room_ids)
        return True

    def delete(
        self, organization_id: UUID, experiment_id: UUID, expected_version: int | None = None
    ) -> bool:
        # Groups, room links and idempotency keys go with it: their foreign keys cascade.
        params: dict[str, Any] = {
            "organization_id": organization_id,
            "experiment_id": experiment_id,
        }
        if expected_version is None:
            result = self._connection.execute(_DELETE_EXPERIMENT, params)
        else:
            params["expected_version"] = expected_version
            result = self._connection.execute(_DELETE_EXPERIMENT_IF_VERSION, params)
        return result.rowcount > 0

    def goals(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Goal]:
        return {
            row.id: Goal(
                row.id,
                row.name,
                Organization(
                    row.organization_id, row.organization_name, row.has_active_subscription
                ),
            )
            for row in self._matching(_GOALS, organization_id, ids)
        }

    def rooms(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Room]:
        return {
            row.id: Room(row.id, row.name, row.organization_id)
            for row in self._matching(_ROOMS, organization_id, ids)
        }

    def _matching(
        self, statement: Select[Any], organization_id: UUID, ids: set[UUID]
    ) -> Sequence[Row[Any]]:
        if not ids:
            return ()
        params = {"organization_id": organization_id, "ids": list(ids)}
        return self._connection.execute(statement, params).all()


def _insert_groups(connection: Connection, experiment_id: UUID, groups: Sequence[Group]) -> None:
    if groups:
        connection.execute(
            _INSERT_GROUP,
            [
                {
                    "id": group.id,
                    "experiment_id": experiment_id,
                    "position": group.order,
                    **group_values(group),
                    "created_at": group.created_at,
                    "updated_at": group.updated_at,
                }
                for group in groups
            ],
        )


def _insert_room_links(
    connection: Connection, experiment_id: UUID, room_ids: Sequence[UUID]
) -> None:
    if room_ids:
        connection.execute(
            _INSERT_ROOM_LINK,
            [
                {"experiment_id": experiment_id, "room_id": room_id, "position": position}
                for position, room_id in enumerate(room_ids)
            ],
        )


_key_of_user = (
    _idempotency_keys.c.organization_id == bindparam("organization_id"),
    _idempotency_keys.c.user_id == bindparam("user_id"),
)
_FORGET_EXPIRED_KEYS = delete(_idempotency_keys).where(
    *_key_of_user, _idempotency_keys.c.created_at < bindparam("expired_before")
)
_EARLIER_REQUEST = select(_idempotency_keys.c.fingerprint, _idempotency_keys.c.experiment_id).where(
    *_key_of_user, _idempotency_keys.c.key == bindparam("key")
)


@cache
def _claim_key(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: on PostgreSQL it waits for a concurrent
    insert of the same key to commit (then inserts nothing) or roll back (then inserts).
    RETURNING says whether a row went in (psycopg's rowcount is -1 for this statement)."""
    insert_of = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert_of(_idempotency_keys)
        .on_conflict_do_nothing()
        .returning(_idempotency_keys.c.experiment_id)
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


def experiment_values(state: ExperimentState | Experiment) -> dict[str, Any]:
    """The stored columns of an experiment's writable attributes."""
    return {
        "is_draft": state.is_draft,
        "name": state.name,
        "goal_id": state.goal_id,
        "starts_at": state.starts_at,
        "ends_at": state.ends_at,
        # Plain strings: drivers may adapt enum members by name rather than value.
        "group_reset_interval": str(state.group_reset_interval.value),
    }


def group_values(group: Group) -> dict[str, Any]:
    """The stored columns of a group's attributes that writes change (its buckets included)."""
    return {
        "name": group.name,
        "percentage": group.percentage,
        "group_type": str(group.group_type.value) if group.group_type else None,
        "treatment": group.treatment,
        "buckets": [[r.start, r.end] for r in group.buckets],
    }


def _groups_of(items: list[dict[str, Any]] | None) -> tuple[Group, ...]:
    return tuple(
        Group(
            id=UUID(item["id"]),
            order=item["position"],
            name=item["name"],
            percentage=item["percentage"],
            group_type=GroupType(item["group_type"]) if item["group_type"] is not None else None,
            treatment=item["treatment"],
            created_at=_timestamp(item["created_at"]),
            updated_at=_timestamp(item["updated_at"]),
            buckets=tuple(BucketRange(start, end) for start, end in item["buckets"]),
        )
        for item in sorted(items or (), key=itemgetter("position"))
    )


def _rooms_of(items: list[dict[str, Any]] | None) -> tuple[Room, ...]:
    return tuple(
        Room(UUID(item["id"]), item["name"], UUID(item["organization_id"]))
        for item in sorted(items or (), key=itemgetter("position"))
    )


def _timestamp(value: str) -> datetime:
    """A timestamp inside JSON: ISO text, naive UTC on SQLite, with an offset on PostgreSQL."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _experiment(row: Row[Any]) -> Experiment:
    organization = Organization(row.organization_id, row.organization_name, row.organization_active)
    goal = None
    if row.goal_id is not None:
        goal = Goal(
            row.goal_id,
            row.goal_name,
            Organization(
                row.goal_organization_id,
                row.goal_organization_name,
                row.goal_organization_active,
            ),
        )
    return Experiment(
        id=row.id,
        organization=organization,
        is_draft=row.is_draft,
        name=row.name,
        goal=goal,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        group_reset_interval=ResetInterval(row.group_reset_interval),
        rooms=_rooms_of(row.rooms),
        groups=_groups_of(row.groups),
        created_at=row.created_at,
        created_by=User(
            row.creator_id,
            row.creator_first_name,
            row.creator_last_name,
            row.creator_organization_id,
            row.creator_is_bot,
        ),
        updated_at=row.updated_at,
        updated_by=User(
            row.updater_id,
            row.updater_first_name,
            row.updater_last_name,
            row.updater_organization_id,
            row.updater_is_bot,
        ),
        version=row.version,
    )
