"""Fills a freshly migrated database with a realistic spread of organizations and experiments.

Organizations, users, goals, rooms and API keys are written by the admin CLI's functions
(server.adapters.admin). Experiments, groups and room links go in with SQLAlchemy Core
executemany, in batches, in one transaction: 100,000 experiments (with ~300,000 groups) take
seconds, where the gRPC API would take many minutes. Their columns come from the
repository's own value builders (experiment_values, group_values), so values are stored
exactly as the server stores them. The read model (experiment_views) is then rendered from
them by the service's own code (server.adapters.views.rebuild).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert

from server.adapters import admin, views
from server.adapters.orm import (
    Base,
    ExperimentGroupRecord,
    ExperimentRecord,
    ExperimentRoomRecord,
)
from server.adapters.repository import experiment_values, group_values
from server.domain.model import ExperimentState, GroupState, GroupType, ResetInterval
from server.entrypoints.translate import RENDERER

ORGANIZATIONS = 100
USERS_PER_ORGANIZATION = 4  # one with the settings permission (holds the key), a bot, two more
GOALS_PER_ORGANIZATION = 6
ROOMS_PER_ORGANIZATION = 5
BATCH = 5_000
_EXPERIMENTS = Base.metadata.tables[ExperimentRecord.__tablename__]
_GROUPS = Base.metadata.tables[ExperimentGroupRecord.__tablename__]
_ROOM_LINKS = Base.metadata.tables[ExperimentRoomRecord.__tablename__]
# Experiments of the largest organization that the REST Get phase reads in turn, with its first.
READ_EXPERIMENTS = 63
# Organizations differ in size: their shares follow a Zipf-like law (the largest has ~9%).
ZIPF_EXPONENT = 0.8
# Far enough ahead that the updated experiment never starts, so no read-only rule applies.
FUTURE_START = datetime(2035, 1, 1, 9, 0, tzinfo=UTC)

GROUP_TYPES = ("control", "user_defined", "target_algorithm", "target_random", None)
RESET_INTERVALS = ("full", "full", "1w", "1d")
SPLITS = {2: (50, 50), 3: (34, 33, 33), 4: (25, 25, 25, 25)}
TOPICS = ("checkout", "banner", "search", "pricing", "onboarding", "newsletter", "cart", "menu")
VARIANTS = ("bold", "minimal", "urgent", "friendly", "dark", "compact", "long", "short")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Linus", "Frances")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Perlman", "Allen")


@dataclass(frozen=True)
class World:
    """What the benchmark needs to know about the seeded data (plaintext keys included)."""

    experiments: int
    organization_id: uuid.UUID  # the largest organization, where every phase runs
    organization_experiments: int
    api_key: str  # plaintext key of a user with the settings permission there
    goal_ids: tuple[uuid.UUID, ...]
    room_ids: tuple[uuid.UUID, ...]
    get_experiment_id: uuid.UUID  # published, started, 3 groups with treatments, 2 rooms
    update_experiment_id: uuid.UUID  # published, starting in 2035
    read_experiment_ids: tuple[uuid.UUID, ...]  # more experiments of the organization
    api_keys: dict[uuid.UUID, str]  # every organization's key, by organization id


def treatment_example(n: int) -> dict[str, Any]:
    """The treatment the seeding gives the n-th group, the same on every call."""
    return treatment(random.Random(n), n)


def treatment(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "name": f"Rule-{n}",
        "actions": [
            {"type": "show_banner", "banner_id": rng.randrange(10_000), "position": "top"},
            {"type": "set_price_badge", "text": rng.choice(VARIANTS)},
        ],
        "conditions": [
            {"field": "country", "operator": "in", "values": ["DE", "AT", "CH"]},
            {"field": "visits", "operator": ">=", "value": rng.randrange(1, 5)},
        ],
    }


def organization_sizes(experiments: int) -> list[int]:
    weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(ORGANIZATIONS)]
    total = sum(weights)
    sizes = [int(experiments * weight / total) for weight in weights]
    for rank in range(experiments - sum(sizes)):
        sizes[rank % ORGANIZATIONS] += 1
    return sizes


def seed(engine: Engine, experiments: int, *, random_seed: int = 5) -> World:
    """Inserts the world into a migrated, empty database and describes it."""
    rng = random.Random(random_seed)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        # Organizations, users, goals, rooms and keys as the admin CLI writes them (a few
        # thousand rows); only the experiments are many enough to need batches.
        organizations: list[uuid.UUID] = []
        users: dict[uuid.UUID, list[uuid.UUID]] = {}
        goals: dict[uuid.UUID, list[uuid.UUID]] = {}
        rooms: dict[uuid.UUID, list[uuid.UUID]] = {}
        keys: dict[uuid.UUID, str] = {}
        for n in range(ORGANIZATIONS):
            organization = admin.create_organization(connection, f"Company {n:03d} Inc.")
            organizations.append(organization)
            users[organization] = [
                admin.create_user(
                    connection,
                    organization,
                    "Integration" if u == 1 else rng.choice(FIRST_NAMES),
                    "Bot" if u == 1 else rng.choice(LAST_NAMES),
                    can_manage_settings=u in (0, 1),
                    is_bot=u == 1,
                )
                for u in range(USERS_PER_ORGANIZATION)
            ]
            goals[organization] = [
                admin.create_goal(connection, organization, f"Reached goal {g}")
                for g in range(GOALS_PER_ORGANIZATION)
            ]
            rooms[organization] = [
                admin.create_room(connection, organization, f"Room {r}")
                for r in range(ROOMS_PER_ORGANIZATION)
            ]
            keys[organization] = admin.create_api_key(connection, users[organization][0])

        writer = _Writer(connection)
        sizes = organization_sizes(experiments)
        largest = organizations[0]
        special: dict[str, uuid.UUID] = {}
        read_ids: list[uuid.UUID] = []
        serial = 0
        for organization, size in zip(organizations, sizes, strict=True):
            for n in range(size):
                serial += 1
                kind = "get" if n == 0 else "update" if n == 1 else "any"
                experiment_id = _uuid(rng)
                if organization == largest:
                    if kind != "any":
                        special[kind] = experiment_id
                    elif len(read_ids) < READ_EXPERIMENTS:
                        read_ids.append(experiment_id)
                for table, row in _experiment_rows(
                    rng,
                    experiment_id,
                    serial,
                    kind,
                    organization,
                    users[organization],
                    goals[organization],
                    rooms[organization],
                    now,
                ):
                    writer.add(table, row)
        writer.flush()
        # The read model, as `experiments-admin migrate` fills it for rows written without it.
        views.rebuild(connection, RENDERER)
    return World(
        experiments=experiments,
        organization_id=largest,
        organization_experiments=sizes[0],
        api_key=keys[largest],
        goal_ids=tuple(goals[largest]),
        room_ids=tuple(rooms[largest]),
        get_experiment_id=special["get"],
        update_experiment_id=special["update"],
        read_experiment_ids=tuple(read_ids),
        api_keys=keys,
    )


def _experiment_rows(
    rng: random.Random,
    experiment_id: uuid.UUID,
    serial: int,
    kind: str,
    organization: uuid.UUID,
    users: list[uuid.UUID],
    goals: list[uuid.UUID],
    rooms: list[uuid.UUID],
    now: datetime,
) -> Iterator[tuple[Table, dict[str, Any]]]:
    """The rows of one experiment, its groups and room links, with the repository's value
    builders for what a client writes."""
    created_at = now - timedelta(seconds=rng.uniform(3600, 2 * 365 * 86400))
    is_draft = kind == "any" and rng.random() < 0.2
    starts_at: datetime | None = created_at + timedelta(days=rng.uniform(0, 30))
    ends_at = None
    if kind == "update":
        starts_at = FUTURE_START
    elif kind == "get":
        starts_at = created_at
    elif is_draft and rng.random() < 0.5:
        starts_at = None
    elif starts_at is not None and rng.random() < 0.4:
        ends_at = starts_at + timedelta(days=rng.uniform(7, 90))
    group_count = 3 if kind != "any" else rng.randint(2, 4)
    room_count = 2 if kind != "any" else rng.choice((0, 0, 1, 2, 3))
    creator = rng.choice(users)
    updated_at = min(now, created_at + timedelta(hours=rng.uniform(0, 240)))
    state = ExperimentState(
        is_draft=is_draft,
        name=f"{rng.choice(TOPICS).title()} test {serial}: {rng.choice(VARIANTS)} variant",
        goal_id=None if is_draft and rng.random() < 0.5 else rng.choice(goals),
        starts_at=starts_at,
        ends_at=ends_at,
        group_reset_interval=ResetInterval(rng.choice(RESET_INTERVALS)),
        room_ids=(),
    )
    yield (
        _EXPERIMENTS,
        {
            "id": experiment_id,
            "organization_id": organization,
            **experiment_values(state),
            "created_at": created_at,
            "created_by_user_id": creator,
            "updated_at": updated_at,
            "updated_by_user_id": rng.choice((creator, *users)),
        },
    )
    for position, percentage in enumerate(SPLITS[group_count]):
        group_type = "control" if position == 0 else rng.choice(GROUP_TYPES)
        group = GroupState(
            name="Control" if position == 0 else f"Variant {chr(64 + position)}",
            percentage=percentage,
            group_type=GroupType(group_type) if group_type else None,
            treatment=treatment(rng, serial * 10 + position),
        )
        yield (
            _GROUPS,
            {
                "id": _uuid(rng),
                "experiment_id": experiment_id,
                "position": position,
                **group_values(group),
                "created_at": created_at,
                "updated_at": updated_at,
            },
        )
    for position, room in enumerate(rng.sample(rooms, room_count)):
        yield (
            _ROOM_LINKS,
            {"experiment_id": experiment_id, "room_id": room, "position": position},
        )


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


class _Writer:
    """Buffers rows per table and inserts them with executemany, BATCH rows at a time.

    Tables are flushed in the order they were first used, so parents go in before children.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: dict[Table, list[dict[str, Any]]] = {}

    def add(self, table: Table, row: dict[str, Any]) -> None:
        rows = self._rows.setdefault(table, [])
        rows.append(row)
        if len(rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        for table, rows in self._rows.items():
            if rows:
                self._connection.execute(insert(table), rows)
                rows.clear()
