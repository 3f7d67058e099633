"""Fills a freshly migrated database with a realistic spread of organizations and experiments.

Organizations, users, goals, rooms and API keys are written by the admin CLI's functions
(server.adapters.admin). Experiments are built here as domain objects (with creation times
spread over two years) and stored by the service's own write path,
ExperimentService.import_experiments: each as a create stores it, with its view (the read
model) and its `created` revision (the history and the change feed), in transactions of a
few hundred. That skips only the API's checks and round trips: 100,000 experiments take
about a minute rather than many.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from server.adapters import admin
from server.adapters.unit_of_work import SqlAlchemyReadUnitOfWork, SqlAlchemyUnitOfWork
from server.domain.assignment import initial_ranges
from server.domain.model import (
    Experiment,
    Goal,
    Group,
    GroupType,
    Organization,
    ResetInterval,
    Room,
    User,
)
from server.entrypoints.translate import RENDERER, revision_record
from server.service_layer.experiments import ExperimentService

ORGANIZATIONS = 100
USERS_PER_ORGANIZATION = 4  # one with the settings permission (holds the key), a bot, two more
GOALS_PER_ORGANIZATION = 6
ROOMS_PER_ORGANIZATION = 5
# Experiments of the largest organization that the REST Get phase reads in turn, with its first.
READ_EXPERIMENTS = 63
# Organizations differ in size: their shares follow a Zipf-like law (the largest has ~9%).
ZIPF_EXPONENT = 0.8
# Far enough ahead that the updated experiment never starts, so no read-only rule applies.
FUTURE_START = datetime(2035, 1, 1, 9, 0, tzinfo=UTC)
# The organization of the assignment phases: this many experiments assign a visitor in its
# first room now, beside NOT_ASSIGNING that do not (drafts, ended, in another room only).
ASSIGNING_EXPERIMENTS = 50
ASSIGNING_IN_ROOM = 15
NOT_ASSIGNING = 12

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
    # The assignment phases' organization, its key and the room its visitors are in.
    assigning_organization_id: uuid.UUID
    assigning_api_key: str
    assigning_room_id: uuid.UUID


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


@dataclass(frozen=True)
class _Organization:
    """What an organization's experiments refer to."""

    organization: Organization
    users: list[User]
    goals: list[Goal]
    rooms: list[Room]


def seed(engine: Engine, experiments: int, *, random_seed: int = 5) -> World:
    """Inserts the world into a migrated, empty database and describes it."""
    rng = random.Random(random_seed)
    now = datetime.now(UTC)
    organizations: list[_Organization] = []
    keys: dict[uuid.UUID, str] = {}
    with engine.begin() as connection:
        # Organizations, users, goals, rooms and keys as the admin CLI writes them (a few
        # thousand rows).
        for n in range(ORGANIZATIONS):
            owner, key = _new_organization(connection, rng, f"Company {n:03d} Inc.")
            keys[owner.organization.id] = key
            organizations.append(owner)
        assigning, assigning_key = _new_organization(
            connection, random.Random(random_seed + 2), "Assignment Co."
        )

    sizes = organization_sizes(experiments)
    largest = organizations[0]
    special: dict[str, uuid.UUID] = {}
    read_ids: list[uuid.UUID] = []

    def made() -> Iterator[Experiment]:
        serial = 0
        for owner, size in zip(organizations, sizes, strict=True):
            for n in range(size):
                serial += 1
                kind = "get" if n == 0 else "update" if n == 1 else "any"
                experiment = _experiment(rng, _uuid(rng), serial, kind, owner, now)
                if owner is largest:
                    if kind != "any":
                        special[kind] = experiment.id
                    elif len(read_ids) < READ_EXPERIMENTS:
                        read_ids.append(experiment.id)
                yield experiment

    # The service's write path: each experiment with its view and its `created` revision.
    service = ExperimentService(
        lambda: SqlAlchemyUnitOfWork(engine, renderer=RENDERER),
        lambda: SqlAlchemyReadUnitOfWork(engine),
        render=RENDERER.view,
        record=revision_record,
    )
    service.import_experiments(made())
    # Random numbers of their own, so that the other organizations' stay as they were.
    other_rng = random.Random(random_seed + 1)
    service.import_experiments(_assigning_experiments(other_rng, assigning, now))
    return World(
        experiments=experiments,
        organization_id=largest.organization.id,
        organization_experiments=sizes[0],
        api_key=keys[largest.organization.id],
        goal_ids=tuple(goal.id for goal in largest.goals),
        room_ids=tuple(room.id for room in largest.rooms),
        get_experiment_id=special["get"],
        update_experiment_id=special["update"],
        read_experiment_ids=tuple(read_ids),
        api_keys=keys,
        assigning_organization_id=assigning.organization.id,
        assigning_api_key=assigning_key,
        assigning_room_id=assigning.rooms[0].id,
    )


def _new_organization(
    connection: Connection, rng: random.Random, name: str
) -> tuple[_Organization, str]:
    """An organization with its users, goals and rooms, and the plaintext key of its first
    user (who has the settings permission), as the admin CLI writes them."""
    organization = Organization(admin.create_organization(connection, name), name)
    users = []
    for u in range(USERS_PER_ORGANIZATION):
        first = "Integration" if u == 1 else rng.choice(FIRST_NAMES)
        last = "Bot" if u == 1 else rng.choice(LAST_NAMES)
        user_id = admin.create_user(
            connection,
            organization.id,
            first,
            last,
            can_manage_settings=u in (0, 1),
            is_bot=u == 1,
        )
        users.append(User(user_id, first, last, organization.id, is_bot=u == 1))
    goals = [
        Goal(
            admin.create_goal(connection, organization.id, f"Reached goal {g}"),
            f"Reached goal {g}",
            organization,
        )
        for g in range(GOALS_PER_ORGANIZATION)
    ]
    rooms = [
        Room(
            admin.create_room(connection, organization.id, f"Room {r}"),
            f"Room {r}",
            organization.id,
        )
        for r in range(ROOMS_PER_ORGANIZATION)
    ]
    key = admin.create_api_key(connection, users[0].id)
    return _Organization(organization, users, goals, rooms), key


def _assigning_experiments(
    rng: random.Random, owner: _Organization, now: datetime
) -> Iterator[Experiment]:
    """The assignment phases' organization: ASSIGNING_EXPERIMENTS that assign a visitor in its
    first room now (ASSIGNING_IN_ROOM of them only there and in its second, the rest in every
    room; every reset interval, with and without an end), then NOT_ASSIGNING that do not."""
    # Period boundaries (1d, 1w) half a day away from now: a phase's answers do not change.
    start = now - timedelta(days=rng.randint(1, 60), hours=12)
    first_room, second_room = owner.rooms[0], owner.rooms[1]
    for n in range(ASSIGNING_EXPERIMENTS + NOT_ASSIGNING):
        experiment = _experiment(rng, _uuid(rng), n, "assign", owner, now)
        rooms: tuple[Room, ...] = (first_room, second_room) if n < ASSIGNING_IN_ROOM else ()
        ends_at = now + timedelta(days=30) if n % 3 == 0 else None
        is_draft = False
        if n >= ASSIGNING_EXPERIMENTS:  # as many of each kind that does not assign
            kind = (n - ASSIGNING_EXPERIMENTS) % 3
            is_draft = kind == 0
            ends_at = now - timedelta(days=1) if kind == 1 else ends_at
            rooms = (second_room,) if kind == 2 else rooms
        yield replace(
            experiment,
            is_draft=is_draft,
            starts_at=start - timedelta(days=7 * (n % 5)),
            ends_at=ends_at,
            rooms=rooms,
        )


def _experiment(
    rng: random.Random,
    experiment_id: uuid.UUID,
    serial: int,
    kind: str,
    owner: _Organization,
    now: datetime,
) -> Experiment:
    """One experiment with its groups and rooms, created some time in the last two years."""
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
    creator = rng.choice(owner.users)
    updated_at = min(now, created_at + timedelta(hours=rng.uniform(0, 240)))
    name = f"{rng.choice(TOPICS).title()} test {serial}: {rng.choice(VARIANTS)} variant"
    goal = None if is_draft and rng.random() < 0.5 else rng.choice(owner.goals)
    interval = ResetInterval(rng.choice(RESET_INTERVALS))
    updater = rng.choice((creator, *owner.users))
    groups = []
    for position, percentage in enumerate(SPLITS[group_count]):
        group_type = "control" if position == 0 else rng.choice(GROUP_TYPES)
        rule = treatment(rng, serial * 10 + position)
        groups.append(
            Group(
                id=_uuid(rng),
                order=position,
                name="Control" if position == 0 else f"Variant {chr(64 + position)}",
                percentage=percentage,
                group_type=GroupType(group_type) if group_type else None,
                treatment=rule,
                created_at=created_at,
                updated_at=updated_at,
            )
        )
    ranges = initial_ranges(SPLITS[group_count])
    return Experiment(
        id=experiment_id,
        organization=owner.organization,
        is_draft=is_draft,
        name=name,
        goal=goal,
        starts_at=starts_at,
        ends_at=ends_at,
        group_reset_interval=interval,
        rooms=tuple(rng.sample(owner.rooms, room_count)),
        # As a create lays them out (domain.model.bucket_ranges).
        groups=tuple(replace(g, buckets=r) for g, r in zip(groups, ranges, strict=True)),
        created_at=created_at,
        created_by=creator,
        updated_at=updated_at,
        updated_by=updater,
    )


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)
