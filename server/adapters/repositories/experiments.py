"""Experiments (server.service_layer.ports.ExperimentRepository), with the goals and rooms
they refer to: the write side. Clients' reads come from the read model
(server/adapters/views.py); the experiment is loaded here as a domain object only for the rules
of a write and to render its view: ONE prebuilt statement whatever its size, the experiment
joined with its organization, goal and users, carrying its groups and rooms as JSON arrays built
by the database (json_group_array on SQLite, json_agg on PostgreSQL).
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
    Label,
    Row,
    RowMapping,
    Select,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.sql.expression import BindParameter, FromClause

from server.adapters.repositories import tables
from server.domain.assignment import BucketRange
from server.domain.model import (
    Experiment,
    ExperimentState,
    Goal,
    Group,
    GroupType,
    Organization,
    ResetInterval,
    Room,
    User,
)
from server.domain.rules import References

# The columns of an organization and of a user, in the order their domain classes take them.
_ORGANIZATION = ("id", "name", "has_active_subscription")
_USER = ("id", "first_name", "last_name", "organization_id", "is_bot")


def _prefixed(table: FromClause, prefix: str, names: Sequence[str]) -> list[Label[Any]]:
    """`table`'s columns `names`, labelled `<prefix>_<name>` (see _organization, _user)."""
    return [table.c[name].label(f"{prefix}_{name}") for name in names]


_organization = tables.organizations.alias("organization")
_goal = tables.goals.alias("goal")
_goal_organization = tables.organizations.alias("goal_organization")
_creator = tables.users.alias("creator")
_updater = tables.users.alias("updater")

_EXPERIMENT_COLUMNS = (
    *(
        tables.experiments.c[name]
        for name in (
            "id",
            "is_draft",
            "name",
            "starts_at",
            "ends_at",
            "group_reset_interval",
            "created_at",
            "updated_at",
            "version",
        )
    ),
    *_prefixed(_organization, "organization", _ORGANIZATION),
    *_prefixed(_goal, "goal", ("id", "name")),
    *_prefixed(_goal_organization, "goal_organization", _ORGANIZATION),
    *_prefixed(_creator, "creator", _USER),
    *_prefixed(_updater, "updater", _USER),
)
_EXPERIMENT_JOINS = (
    tables.experiments.join(
        _organization, _organization.c.id == tables.experiments.c.organization_id
    )
    .join(_creator, _creator.c.id == tables.experiments.c.created_by_user_id)
    .join(_updater, _updater.c.id == tables.experiments.c.updated_by_user_id)
    .outerjoin(_goal, _goal.c.id == tables.experiments.c.goal_id)
    .outerjoin(_goal_organization, _goal_organization.c.id == _goal.c.organization_id)
)


def _json_children(dialect: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The experiment's groups and rooms as JSON arrays, one scalar subquery each."""
    if dialect == "postgresql":
        array, item = func.json_agg, func.json_build_object
        treatment: ColumnElement[Any] = tables.groups.c.treatment
        buckets: ColumnElement[Any] = tables.groups.c.buckets
    else:  # SQLite keeps JSON as text: json() embeds it as JSON rather than as a string.
        array, item = func.json_group_array, func.json_object
        treatment = func.json(tables.groups.c.treatment)
        buckets = func.json(tables.groups.c.buckets)

    def key(name: str) -> ColumnElement[Any]:
        return literal_column(f"'{name}'")  # inlined: no bound parameter per key and row

    groups = (
        select(
            array(
                item(
                    key("id"),
                    tables.groups.c.id,
                    key("position"),
                    tables.groups.c.position,
                    key("name"),
                    tables.groups.c.name,
                    key("percentage"),
                    tables.groups.c.percentage,
                    key("group_type"),
                    tables.groups.c.group_type,
                    key("treatment"),
                    treatment,
                    key("created_at"),
                    tables.groups.c.created_at,
                    key("updated_at"),
                    tables.groups.c.updated_at,
                    key("buckets"),
                    buckets,
                )
            )
        )
        .where(tables.groups.c.experiment_id == tables.experiments.c.id)
        .scalar_subquery()
    )
    rooms = (
        select(
            array(
                item(
                    key("id"),
                    tables.rooms.c.id,
                    key("name"),
                    tables.rooms.c.name,
                    key("organization_id"),
                    tables.rooms.c.organization_id,
                    key("position"),
                    tables.experiment_rooms.c.position,
                )
            )
        )
        .join_from(
            tables.experiment_rooms,
            tables.rooms,
            tables.rooms.c.id == tables.experiment_rooms.c.room_id,
        )
        .where(tables.experiment_rooms.c.experiment_id == tables.experiments.c.id)
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
            tables.experiments.c.organization_id == bindparam("organization_id"),
            tables.experiments.c.id == bindparam("experiment_id"),
        )
    )
    return statement.with_for_update(of=tables.experiments) if for_update else statement


_of_experiment: BindParameter[Any] = bindparam("experiment_id")
_INSERT_EXPERIMENT = insert(tables.experiments)
_expected_version = tables.experiments.c.version == bindparam("expected_version")
# A compare-and-set: the version read is compared and moved on in one statement, so of racing
# writers that read the same version exactly one matches (PostgreSQL re-checks the WHERE
# after waiting for the row lock; SQLite's writers run one at a time). Bound parameters of
# an UPDATE must not be named after columns: those name the values to SET.
_UPDATE_EXPERIMENT = (
    update(tables.experiments)
    .where(
        tables.experiments.c.organization_id == bindparam("of_organization"),
        tables.experiments.c.id == _of_experiment,
        _expected_version,
    )
    .values(version=tables.experiments.c.version + 1)
)
_DELETE_EXPERIMENT = delete(tables.experiments).where(
    tables.experiments.c.organization_id == bindparam("organization_id"),
    tables.experiments.c.id == _of_experiment,
)
_DELETE_EXPERIMENT_IF_VERSION = _DELETE_EXPERIMENT.where(_expected_version)
_INSERT_GROUP = insert(tables.groups)
# Run with many parameter sets, one per group; the keys besides group_id are the columns to SET.
_UPDATE_GROUP = update(tables.groups).where(tables.groups.c.id == bindparam("group_id"))
_DELETE_GROUPS_FROM = delete(tables.groups).where(
    tables.groups.c.experiment_id == _of_experiment, tables.groups.c.position >= bindparam("count")
)
_INSERT_ROOM_LINK = insert(tables.experiment_rooms)
_DELETE_ROOM_LINKS = delete(tables.experiment_rooms).where(
    tables.experiment_rooms.c.experiment_id == _of_experiment
)

_of_organization: BindParameter[Any] = bindparam("organization_id")
# The goals and rooms a write refers to, in one statement: a row per goal (with its
# organization) and per room (whose organization columns but the id are NULL).
_REFERENCES = union_all(
    select(
        literal_column("1").label("is_goal"),
        tables.goals.c.id,
        tables.goals.c.name,
        *_prefixed(tables.organizations, "organization", _ORGANIZATION),
    )
    .join_from(
        tables.goals,
        tables.organizations,
        tables.organizations.c.id == tables.goals.c.organization_id,
    )
    .where(
        tables.goals.c.organization_id == _of_organization,
        tables.goals.c.id.in_(bindparam("goal_ids", expanding=True)),
    ),
    select(
        literal_column("0"),
        tables.rooms.c.id,
        tables.rooms.c.name,
        tables.rooms.c.organization_id,
        null(),
        null(),
    ).where(
        tables.rooms.c.organization_id == _of_organization,
        tables.rooms.c.id.in_(bindparam("room_ids", expanding=True)),
    ),
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

    def references(
        self, organization_id: UUID, goal_ids: set[UUID], room_ids: set[UUID]
    ) -> References:
        if not goal_ids and not room_ids:
            return References()
        params = {
            "organization_id": organization_id,
            "goal_ids": list(goal_ids),
            "room_ids": list(room_ids),
        }
        goals: dict[UUID, Goal] = {}
        rooms: dict[UUID, Room] = {}
        for row in self._connection.execute(_REFERENCES, params):
            if row.is_goal:
                goals[row.id] = Goal(
                    row.id, row.name, _organization_of(row._mapping, "organization")
                )
            else:
                rooms[row.id] = Room(row.id, row.name, row.organization_id)
        return References(goals, rooms)

    def goals(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Goal]:
        return dict(self.references(organization_id, ids, set()).goals)

    def rooms(self, organization_id: UUID, ids: set[UUID]) -> dict[UUID, Room]:
        return dict(self.references(organization_id, set(), ids).rooms)


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
    columns = row._mapping
    goal = None
    if columns["goal_id"] is not None:
        goal = Goal(
            columns["goal_id"], columns["goal_name"], _organization_of(columns, "goal_organization")
        )
    return Experiment(
        id=row.id,
        organization=_organization_of(columns, "organization"),
        is_draft=row.is_draft,
        name=row.name,
        goal=goal,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        group_reset_interval=ResetInterval(row.group_reset_interval),
        rooms=_rooms_of(row.rooms),
        groups=_groups_of(row.groups),
        created_at=row.created_at,
        created_by=_user_of(columns, "creator"),
        updated_at=row.updated_at,
        updated_by=_user_of(columns, "updater"),
        version=row.version,
    )


def _organization_of(columns: RowMapping, prefix: str) -> Organization:
    return Organization(*(columns[f"{prefix}_{name}"] for name in _ORGANIZATION))


def _user_of(columns: RowMapping, prefix: str) -> User:
    return User(*(columns[f"{prefix}_{name}"] for name in _USER))
