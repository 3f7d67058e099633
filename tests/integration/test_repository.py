"""The SQLAlchemy repositories and unit of work, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute

from server.adapters import admin
from server.adapters.orm import (
    ExperimentGroupRecord,
    ExperimentRecord,
    ExperimentRoomRecord,
    OrganizationRecord,
)
from server.adapters.repositories.experiments import SqlAlchemyExperimentRepository
from server.adapters.repositories.principal_cache import PrincipalCache
from server.adapters.unit_of_work import SqlAlchemyReadUnitOfWork
from server.domain.access import hash_api_key
from server.domain.model import (
    Experiment,
    ExperimentState,
    GroupState,
    GroupType,
    Organization,
    ResetInterval,
    User,
    changed_experiment,
    new_experiment,
)
from server.domain.pagination import Position
from server.domain.rules import References
from server.entrypoints.translate import RENDERER
from server.service_layer.ports import UnitOfWork
from tests.integration.databases import read_unit_of_work, unit_of_work

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    organization_id: UUID
    user_id: UUID
    editor_id: UUID
    goal_id: UUID
    room_ids: tuple[UUID, UUID, UUID]
    other_organization_id: UUID
    other_goal_id: UUID
    other_room_id: UUID
    other_user_id: UUID


@pytest.fixture
def world(engine: Engine) -> World:
    with engine.begin() as connection:
        organization = admin.create_organization(connection, "Company Inc.")
        other = admin.create_organization(connection, "Other Ltd.")
        return World(
            organization_id=organization,
            user_id=admin.create_user(connection, organization, "John", "Doe"),
            editor_id=admin.create_user(connection, organization, "Ada", "Bot", is_bot=True),
            goal_id=admin.create_goal(connection, organization, "Reached checkout page"),
            room_ids=(
                admin.create_room(connection, organization, "Room A"),
                admin.create_room(connection, organization, "Room B"),
                admin.create_room(connection, organization, "Room C"),
            ),
            other_organization_id=other,
            other_goal_id=admin.create_goal(connection, other, "Other goal"),
            other_room_id=admin.create_room(connection, other, "Other room"),
            other_user_id=admin.create_user(connection, other, "Erika", "Mustermann"),
        )


def _group(name: str, percentage: int, group_type: GroupType | None = None) -> GroupState:
    treatment = {"name": f"Rule-{name}", "actions": [{"type": "show"}], "conditions": []}
    return GroupState(name, percentage, group_type, treatment)


def _published(world: World, **changes: object) -> ExperimentState:
    state = ExperimentState(
        is_draft=False,
        name="Hello experiment",
        goal_id=world.goal_id,
        starts_at=T0 + timedelta(days=7),
        ends_at=T0 + timedelta(days=21),
        group_reset_interval=ResetInterval.WEEK,
        # Not in id order: the client's order must survive.
        room_ids=(world.room_ids[2], world.room_ids[0]),
        groups=(_group("A", 90, GroupType.CONTROL), _group("B", 10, GroupType.USER_DEFINED)),
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def _draft() -> ExperimentState:
    return ExperimentState(
        is_draft=True,
        name=None,
        goal_id=None,
        starts_at=None,
        ends_at=None,
        group_reset_interval=ResetInterval.FULL,
        room_ids=(),
    )


def _author(user_id: UUID, organization_id: UUID) -> User:
    # The repository stores references by id: the names here are never written.
    return User(user_id, "", "", organization_id)


def _references(uow: UnitOfWork, organization_id: UUID, state: ExperimentState) -> References:
    goal_ids = {state.goal_id} if state.goal_id else set()
    return References(
        uow.experiments.goals(organization_id, goal_ids),
        uow.experiments.rooms(organization_id, set(state.room_ids)),
    )


def _new(
    uow: UnitOfWork,
    organization_id: UUID,
    state: ExperimentState,
    user_id: UUID,
    now: datetime = T0,
) -> Experiment:
    """The experiment a create would store (domain.model.new_experiment)."""
    goal, rooms = _references(uow, organization_id, state).goal_and_rooms(state)
    organization = Organization(organization_id, "")
    author = _author(user_id, organization_id)
    return new_experiment(uuid4(), organization, state, goal, rooms, author, now)


def _add(
    engine: Engine,
    world: World,
    state: ExperimentState,
    now: datetime = T0,
    organization_id: UUID | None = None,
) -> UUID:
    organization_id = organization_id or world.organization_id
    with unit_of_work(engine) as uow:
        experiment = _new(uow, organization_id, state, world.user_id, now)
        uow.experiments.add(experiment)
        _store_view(uow, organization_id, experiment.id)
        uow.commit()
    return experiment.id


def _store_view(uow: UnitOfWork, organization_id: UUID, experiment_id: UUID) -> None:
    """Renders the experiment as stored into the read model."""
    experiment = uow.experiments.get(organization_id, experiment_id)
    assert experiment is not None
    uow.views.store(RENDERER.view(experiment))


def _get(engine: Engine, organization_id: UUID, experiment_id: UUID) -> Experiment:
    with unit_of_work(engine) as uow:
        experiment = uow.experiments.get(organization_id, experiment_id)
    assert experiment is not None
    return experiment


def _changed(
    uow: UnitOfWork, current: Experiment, state: ExperimentState, user_id: UUID, now: datetime
) -> Experiment:
    """The experiment an update would store (domain.model.changed_experiment)."""
    organization_id = current.organization.id
    goal, rooms = _references(uow, organization_id, state).goal_and_rooms(state)
    author = _author(user_id, organization_id)
    return changed_experiment(current, state, goal, rooms, author, now)


def _update(
    engine: Engine,
    current: Experiment,
    state: ExperimentState,
    user_id: UUID,
    now: datetime,
) -> Experiment:
    with unit_of_work(engine) as uow:
        assert uow.experiments.update(current, _changed(uow, current, state, user_id, now))
        uow.commit()
    return _get(engine, current.organization.id, current.id)


def _count(engine: Engine, column: InstrumentedAttribute[UUID], experiment_id: UUID) -> int:
    with engine.connect() as connection:
        statement = select(func.count()).where(column == experiment_id)
        return int(connection.execute(statement).scalar_one())


@contextmanager
def _queries(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on `engine` meanwhile, transaction control left out (BEGIN, and
    the bounds on a write transaction's waits, database.begin_write)."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        control = statement.lstrip().upper().startswith("BEGIN") or "lock_timeout" in statement
        if not control:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_added_experiment_reads_back_with_everything_a_response_shows(
    engine: Engine, world: World
) -> None:
    experiment_id = _add(engine, world, _published(world))

    experiment = _get(engine, world.organization_id, experiment_id)

    assert experiment.id == experiment_id
    assert experiment.organization.id == world.organization_id
    assert experiment.organization.name == "Company Inc."
    assert experiment.organization.has_active_subscription
    assert experiment.is_draft is False
    assert experiment.name == "Hello experiment"
    assert experiment.goal is not None
    assert experiment.goal.id == world.goal_id
    assert experiment.goal.name == "Reached checkout page"
    assert experiment.goal.organization == experiment.organization
    assert experiment.starts_at == T0 + timedelta(days=7)
    assert experiment.ends_at == T0 + timedelta(days=21)
    assert experiment.group_reset_interval is ResetInterval.WEEK
    assert experiment.room_ids == (world.room_ids[2], world.room_ids[0])
    assert [room.name for room in experiment.rooms] == ["Room C", "Room A"]
    assert {room.organization_id for room in experiment.rooms} == {world.organization_id}
    assert [(g.order, g.name, g.percentage, g.group_type) for g in experiment.groups] == [
        (0, "A", 90, GroupType.CONTROL),
        (1, "B", 10, GroupType.USER_DEFINED),
    ]
    assert experiment.groups[0].treatment == _group("A", 90).treatment
    assert {g.created_at for g in experiment.groups} == {T0}
    assert experiment.created_at == experiment.updated_at == T0
    assert experiment.created_by == experiment.updated_by
    assert experiment.created_by.id == world.user_id
    assert experiment.created_by.full_name == "John Doe"
    assert experiment.created_by.organization_id == world.organization_id


def test_draft_without_goal_rooms_or_groups_reads_back_empty(engine: Engine, world: World) -> None:
    experiment_id = _add(engine, world, _draft())

    experiment = _get(engine, world.organization_id, experiment_id)

    assert experiment.is_draft
    assert (experiment.name, experiment.goal, experiment.starts_at, experiment.ends_at) == (
        None,
        None,
        None,
        None,
    )
    assert experiment.group_reset_interval is ResetInterval.FULL
    assert experiment.rooms == ()
    assert experiment.groups == ()


def test_group_without_type_or_treatment_reads_back_as_null(engine: Engine, world: World) -> None:
    state = replace(_draft(), groups=(GroupState(None, None, None, None),))

    experiment = _get(engine, world.organization_id, _add(engine, world, state))

    group = experiment.groups[0]
    assert (group.name, group.percentage, group.group_type, group.treatment) == (
        None,
        None,
        None,
        None,
    )


def test_times_given_in_any_time_zone_read_back_as_the_same_instant_in_utc(
    engine: Engine, world: World
) -> None:
    tokyo = timezone(timedelta(hours=9))
    starts_at = datetime(2030, 1, 2, 9, 30, 0, 500, tzinfo=tokyo)
    now = datetime(2025, 6, 1, 8, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5)))
    state = _published(world, starts_at=starts_at, ends_at=None)

    experiment = _get(engine, world.organization_id, _add(engine, world, state, now=now))

    assert experiment.starts_at == starts_at
    assert experiment.starts_at is not None
    assert experiment.starts_at.utcoffset() == timedelta(0)
    assert experiment.starts_at.hour == 0
    assert experiment.created_at == now
    assert experiment.created_at.tzinfo is UTC
    assert experiment.ends_at is None


def test_experiment_is_not_found_through_another_organization(engine: Engine, world: World) -> None:
    experiment_id = _add(engine, world, _published(world))

    with unit_of_work(engine) as uow:
        assert uow.experiments.get(world.other_organization_id, experiment_id) is None
        assert uow.experiments.get(world.organization_id, uuid4()) is None


def test_update_matches_groups_by_position_keeping_their_ids_and_creation_time(
    engine: Engine, world: World
) -> None:
    current = _get(engine, world.organization_id, _add(engine, world, _published(world)))
    later = T0 + timedelta(hours=1)
    renamed = (
        replace(_group("A", 80, GroupType.CONTROL), name="A2"),
        _group("B", 20, GroupType.USER_DEFINED),
    )

    updated = _update(engine, current, _published(world, groups=renamed), world.editor_id, later)

    assert [g.id for g in updated.groups] == [g.id for g in current.groups]
    assert [(g.order, g.name, g.percentage) for g in updated.groups] == [
        (0, "A2", 80),
        (1, "B", 20),
    ]
    assert [g.created_at for g in updated.groups] == [T0, T0]
    assert [g.updated_at for g in updated.groups] == [later, later]
    assert (updated.created_at, updated.created_by.id) == (T0, world.user_id)
    assert (updated.updated_at, updated.updated_by.id) == (later, world.editor_id)
    assert updated.updated_by.is_bot


def test_update_leaves_the_update_time_of_unchanged_groups_alone(
    engine: Engine, world: World
) -> None:
    current = _get(engine, world.organization_id, _add(engine, world, _published(world)))
    state = _published(
        world, groups=(_group("A", 90, GroupType.CONTROL), _group("B2", 10, GroupType.USER_DEFINED))
    )

    updated = _update(engine, current, state, world.user_id, T0 + timedelta(hours=1))

    assert [g.updated_at for g in updated.groups] == [T0, T0 + timedelta(hours=1)]


def test_update_creates_groups_past_the_current_ones_and_deletes_those_past_the_new_count(
    engine: Engine, world: World
) -> None:
    current = _get(engine, world.organization_id, _add(engine, world, _published(world)))
    three = (_group("A", 50), _group("B", 30), _group("C", 20, GroupType.TARGET_RANDOM))

    grown = _update(
        engine,
        current,
        _published(world, groups=three),
        world.user_id,
        T0 + timedelta(hours=1),
    )
    shrunk = _update(
        engine,
        grown,
        _published(world, groups=(_group("A", 100),)),
        world.user_id,
        T0 + timedelta(hours=2),
    )

    assert [g.order for g in grown.groups] == [0, 1, 2]
    assert [(g.id, g.created_at) for g in grown.groups[:2]] == [
        (g.id, g.created_at) for g in current.groups
    ]
    assert grown.groups[2].id not in {g.id for g in current.groups}
    assert grown.groups[2].created_at == T0 + timedelta(hours=1)
    assert grown.groups[2].group_type is GroupType.TARGET_RANDOM
    assert [(g.id, g.order, g.percentage) for g in shrunk.groups] == [
        (current.groups[0].id, 0, 100)
    ]
    assert _count(engine, ExperimentGroupRecord.experiment_id, current.id) == 1


def test_update_replaces_the_attributes_and_rooms_in_the_clients_order(
    engine: Engine, world: World
) -> None:
    current = _get(engine, world.organization_id, _add(engine, world, _draft()))
    state = _published(world, room_ids=(world.room_ids[1], world.room_ids[2], world.room_ids[0]))

    updated = _update(engine, current, state, world.user_id, T0 + timedelta(minutes=5))
    emptied = _update(
        engine,
        updated,
        replace(_draft(), room_ids=()),
        world.user_id,
        T0 + timedelta(minutes=6),
    )

    assert updated.is_draft is False
    assert updated.name == "Hello experiment"
    assert updated.goal_id == world.goal_id
    assert updated.group_reset_interval is ResetInterval.WEEK
    assert updated.room_ids == (world.room_ids[1], world.room_ids[2], world.room_ids[0])
    assert emptied.room_ids == ()
    assert emptied.groups == ()


def test_updating_an_experiment_deleted_meanwhile_reports_nothing_written(
    engine: Engine, world: World
) -> None:
    current = _get(engine, world.organization_id, _add(engine, world, _published(world)))
    with unit_of_work(engine) as uow:
        uow.experiments.delete(world.organization_id, current.id)
        uow.commit()

    with unit_of_work(engine) as uow:
        changed = _changed(uow, current, _published(world), world.user_id, T0)
        assert not uow.experiments.update(current, changed)


def test_update_of_a_version_written_since_it_was_read_writes_nothing(
    engine: Engine, world: World
) -> None:
    current = _get(engine, world.organization_id, _add(engine, world, _published(world)))
    later = T0 + timedelta(hours=1)
    moved_on = _update(engine, current, _published(world, name="Moved on"), world.user_id, later)

    with unit_of_work(engine) as uow:
        stale = _changed(uow, current, _published(world, name="Stale"), world.editor_id, later)
        written = uow.experiments.update(current, stale)
        uow.commit()

    assert written is False
    assert _get(engine, world.organization_id, current.id) == moved_on


def test_an_experiment_read_for_update_is_the_one_stored(engine: Engine, world: World) -> None:
    # FOR UPDATE OF experiments on PostgreSQL (the row stays locked until the transaction
    # ends); nothing on SQLite, whose writer excludes every other.
    stored = _get(engine, world.organization_id, _add(engine, world, _published(world)))

    with unit_of_work(engine) as uow:
        locked = uow.experiments.get(world.organization_id, stored.id, for_update=True)

    assert locked == stored


def test_delete_removes_the_experiment_with_its_groups_and_room_links(
    engine: Engine, world: World
) -> None:
    experiment_id = _add(engine, world, _published(world))
    kept_id = _add(engine, world, _published(world))

    with unit_of_work(engine) as uow:
        deleted = uow.experiments.delete(world.organization_id, experiment_id)
        deleted_again = uow.experiments.delete(world.organization_id, experiment_id)
        uow.commit()

    assert (deleted, deleted_again) == (True, False)
    with unit_of_work(engine) as uow:
        assert uow.experiments.get(world.organization_id, experiment_id) is None
    assert _count(engine, ExperimentRecord.id, experiment_id) == 0
    assert _count(engine, ExperimentGroupRecord.experiment_id, experiment_id) == 0
    assert _count(engine, ExperimentRoomRecord.experiment_id, experiment_id) == 0
    assert len(_get(engine, world.organization_id, kept_id).groups) == 2


def test_delete_through_another_organization_deletes_nothing(engine: Engine, world: World) -> None:
    experiment_id = _add(engine, world, _published(world))

    with unit_of_work(engine) as uow:
        assert uow.experiments.delete(world.other_organization_id, experiment_id) is False
        uow.commit()

    assert _get(engine, world.organization_id, experiment_id).id == experiment_id


def test_goals_and_rooms_are_only_those_of_the_organization(engine: Engine, world: World) -> None:
    unknown = uuid4()

    with unit_of_work(engine) as uow:
        goals = uow.experiments.goals(
            world.organization_id, {world.goal_id, world.other_goal_id, unknown}
        )
        rooms = uow.experiments.rooms(
            world.organization_id, {*world.room_ids, world.other_room_id, unknown}
        )
        nothing = uow.experiments.rooms(world.organization_id, set())

    assert goals.keys() == {world.goal_id}
    assert goals[world.goal_id].name == "Reached checkout page"
    assert goals[world.goal_id].organization == Organization(world.organization_id, "Company Inc.")
    assert rooms.keys() == set(world.room_ids)
    assert [rooms[room_id].name for room_id in world.room_ids] == ["Room A", "Room B", "Room C"]
    assert {room.organization_id for room in rooms.values()} == {world.organization_id}
    assert nothing == {}


def _page(
    read_engine: Engine,
    organization_id: UUID,
    limit: int,
    start: Experiment | None = None,
    backwards: bool = False,
) -> tuple[list[UUID], bool]:
    position = Position(start.created_at, start.id) if start else None
    with read_unit_of_work(read_engine) as uow:
        items, more = uow.views.list_page(organization_id, limit, position, backwards)
    return [item.id for item in items], more


def test_list_pages_forwards_and_backwards_show_each_experiment_once_newest_first(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    # Three experiments share a creation time: their ids break the tie.
    times = [T0 + timedelta(seconds=s) for s in (0, 1, 1, 1, 2, 3, 4)]
    ids = [_add(engine, world, _draft(), now=t) for t in times]
    _add(engine, world, _draft(), organization_id=world.other_organization_id)
    newest_first = [i for _, i in sorted(zip(times, ids, strict=True), reverse=True)]
    experiments = {i: _get(engine, world.organization_id, i) for i in ids}

    first, more_after_first = _page(read_engine, world.organization_id, 3)
    second, more_after_second = _page(read_engine, world.organization_id, 3, experiments[first[-1]])
    third, more_after_third = _page(read_engine, world.organization_id, 3, experiments[second[-1]])
    back, more_before = _page(
        engine, world.organization_id, 3, experiments[third[0]], backwards=True
    )
    front, more_before_front = _page(
        engine, world.organization_id, 3, experiments[back[0]], backwards=True
    )

    assert first + second + third == newest_first
    assert (more_after_first, more_after_second, more_after_third) == (True, True, False)
    assert back == second
    assert more_before is True
    assert front == first
    assert more_before_front is False


def test_list_page_past_the_end_is_empty(engine: Engine, read_engine: Engine, world: World) -> None:
    only = _get(engine, world.organization_id, _add(engine, world, _draft()))

    assert _page(read_engine, world.organization_id, 25, only) == ([], False)
    assert _page(read_engine, world.organization_id, 25, only, backwards=True) == ([], False)
    assert _page(read_engine, world.other_organization_id, 25) == ([], False)


def test_page_items_are_the_stored_messages_with_their_own_groups_and_rooms(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    one = _add(engine, world, _published(world, room_ids=(world.room_ids[0],)), now=T0)
    two = _add(
        engine,
        world,
        _published(world, groups=(_group("Solo", 100),)),
        now=T0 + timedelta(seconds=1),
    )

    with read_unit_of_work(read_engine) as uow:
        views, _ = uow.views.list_page(world.organization_id, 10, None, False)
    items = [pb.Experiment.FromString(view.message) for view in views]

    assert [view.id for view in views] == [two, one]
    assert [item.id for item in items] == [str(two), str(one)]
    assert [g.name for g in items[0].groups] == ["Solo"]
    assert [g.name for g in items[1].groups] == ["A", "B"]
    assert list(items[0].room_ids) == [str(world.room_ids[2]), str(world.room_ids[0])]
    assert list(items[1].room_ids) == [str(world.room_ids[0])]


def test_get_takes_the_same_number_of_queries_however_many_groups_and_rooms(
    engine: Engine, world: World
) -> None:
    small = _add(engine, world, _published(world, room_ids=(), groups=(_group("A", 100),)))
    large_groups = tuple(_group(f"G{i}", 5) for i in range(20))
    large = _add(engine, world, _published(world, room_ids=world.room_ids, groups=large_groups))

    with _queries(engine) as small_queries:
        _get(engine, world.organization_id, small)
    with _queries(engine) as large_queries:
        experiment = _get(engine, world.organization_id, large)

    assert len(experiment.groups) == 20 and len(experiment.rooms) == 3
    assert len(large_queries) == len(small_queries) == 1


def test_list_page_takes_the_same_number_of_queries_however_many_experiments(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    _add(engine, world, _published(world))
    with _queries(read_engine) as one_experiment:
        assert len(_page(read_engine, world.organization_id, 100)[0]) == 1
    for second in range(1, 30):
        _add(engine, world, _published(world), now=T0 + timedelta(seconds=second))
    with _queries(read_engine) as thirty_experiments:
        assert len(_page(read_engine, world.organization_id, 100)[0]) == 30

    assert len(thirty_experiments) == len(one_experiment) == 1


def test_principal_is_found_by_the_hash_of_its_key_with_its_organization(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    with engine.begin() as connection:
        key = admin.create_api_key(connection, world.editor_id)

    with read_unit_of_work(read_engine) as uow:
        principal = uow.principals.by_key_hash(hash_api_key(key))
        by_key_itself = uow.principals.by_key_hash(key)

    assert principal is not None
    assert principal.user.id == world.editor_id
    assert principal.user.full_name == "Ada Bot"
    assert principal.user.is_bot
    assert principal.organization.id == world.organization_id
    assert principal.organization.name == "Company Inc."
    assert principal.can_manage_settings
    assert by_key_itself is None  # only the hash is stored


def test_a_read_whose_key_the_cache_knows_takes_no_connection(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    """The read unit of work takes its connection when a repository first reads: an
    assignment (served from memory) with a remembered key never touches the pool."""
    with engine.begin() as connection:
        key_hash = hash_api_key(admin.create_api_key(connection, world.editor_id))
    checkouts: list[object] = []
    event.listen(read_engine, "checkout", lambda *args: checkouts.append(args))
    cache = PrincipalCache(ttl_seconds=60)

    with SqlAlchemyReadUnitOfWork(read_engine, principal_cache=cache) as uow:
        first = uow.principals.by_key_hash(key_hash)
    assert first is not None and len(checkouts) == 1  # not remembered yet: read

    with SqlAlchemyReadUnitOfWork(read_engine, principal_cache=cache) as uow:
        again = uow.principals.by_key_hash(key_hash)
    assert again == first and len(checkouts) == 1  # remembered: no connection taken

    with SqlAlchemyReadUnitOfWork(read_engine, principal_cache=cache) as uow:
        uow.principals.by_key_hash(key_hash)
        assert uow.views.get(world.organization_id, uuid4()) is None
        uow.experiments.get(world.organization_id, uuid4())
    assert len(checkouts) == 2  # the views and experiments share one


def test_demo_world_keys_authenticate_the_documented_principals(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        demo = admin.create_demo_world(connection).to_json()  # as `experiments-admin demo` prints
    with engine.begin() as connection:
        second = admin.create_demo_world(connection).to_json()

    with unit_of_work(engine) as uow:
        principals = {
            who: uow.principals.by_key_hash(hash_api_key(str(key)))
            for who, key in demo["tokens"].items()
        }
        organization = UUID(demo["organization_id"])
        other_goal = UUID(demo["other_organization_goal_id"])
        goals = uow.experiments.goals(organization, {UUID(demo["goal_id"]), other_goal}).keys()
        rooms = uow.experiments.rooms(organization, {UUID(r) for r in demo["room_ids"]})
        other_goals = uow.experiments.goals(
            principals["other_organization"].organization.id,  # type: ignore[union-attr]
            {other_goal},
        ).keys()

    facts = {
        who: (p.organization.id, p.organization.has_active_subscription, p.can_manage_settings)
        for who, p in principals.items()
        if p is not None
    }
    inactive = UUID(demo["inactive_organization_id"])
    other = facts["other_organization"][0]
    assert UUID(demo["other_organization_id"]) == other
    assert facts == {
        "settings": (organization, True, True),
        "no_settings": (organization, True, False),
        "other_organization": (other, True, True),
        "inactive_subscription": (inactive, False, True),
    }
    assert len({organization, other, inactive}) == 3
    assert goals == {UUID(demo["goal_id"])}
    assert len(rooms) == 2
    assert other_goals == {other_goal}
    assert second["organization_id"] != demo["organization_id"]
    assert set(second["tokens"].values()).isdisjoint(demo["tokens"].values())


def test_unit_of_work_rolls_back_what_was_not_committed(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    with pytest.raises(RuntimeError), unit_of_work(engine) as uow:
        experiment = _new(uow, world.organization_id, _draft(), world.user_id)
        uow.experiments.add(experiment)
        _store_view(uow, world.organization_id, experiment.id)
        raise RuntimeError("the use case failed")
    with unit_of_work(engine) as uow:
        uncommitted = _new(uow, world.organization_id, _draft(), world.user_id)
        uow.experiments.add(uncommitted)
        _store_view(uow, world.organization_id, uncommitted.id)

    assert _page(read_engine, world.organization_id, 10) == ([], False)


def test_concurrent_writers_each_read_then_write_and_all_commit(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    # Each transaction reads before it writes, like the create use case; on SQLite a
    # stale read snapshot would make the write fail instead of waiting for its turn.
    errors: list[BaseException] = []
    added: list[UUID] = []

    def writer() -> None:
        try:
            for _ in range(5):
                with unit_of_work(engine) as uow:
                    uow.views.list_page(world.organization_id, 1, None, False)
                    # _new reads the goal and rooms
                    experiment = _new(uow, world.organization_id, _published(world), world.user_id)
                    uow.experiments.add(experiment)
                    _store_view(uow, world.organization_id, experiment.id)
                    uow.commit()
                added.append(experiment.id)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(added) == 40
    assert len(_page(read_engine, world.organization_id, 100)[0]) == 40


def test_read_only_unit_of_work_reads_while_a_writer_holds_its_transaction(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    committed = _add(engine, world, _draft())
    seen: list[list[UUID]] = []

    with unit_of_work(engine) as writer:
        writer.experiments.add(_new(writer, world.organization_id, _draft(), world.user_id))
        reader = threading.Thread(
            target=lambda: seen.append(_page(read_engine, world.organization_id, 10)[0])
        )
        reader.start()
        reader.join(timeout=10)
        writer.commit()

    assert seen == [[committed]]  # not kept waiting, and without the uncommitted row


def test_a_write_on_a_read_connection_fails_and_writes_nothing(
    engine: Engine, read_engine: Engine, world: World
) -> None:
    # The read unit of work's type has no write method; this is the net below it, should a
    # write reach a read connection anyway (PostgreSQL runs reads in autocommit).
    with unit_of_work(engine) as uow:
        experiment = _new(uow, world.organization_id, _draft(), world.user_id)
    with read_engine.connect() as connection, pytest.raises(DBAPIError):
        SqlAlchemyExperimentRepository(connection).add(experiment)

    assert _count(engine, ExperimentRecord.id, experiment.id) == 0


def test_an_organization_exists_once_one_is_created(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        assert admin.any_organization_exists(connection) is False
        admin.create_organization(connection, "First")
        assert admin.any_organization_exists(connection) is True
        assert connection.execute(select(func.count(OrganizationRecord.id))).scalar_one() == 1


def test_the_next_writer_may_begin_as_soon_as_a_write_has_committed(
    engine: Engine, world: World
) -> None:
    # What a write does after its commit (telling the feed follower, answering) must not keep
    # the other writers waiting: SQLite's one writer is let go at the commit.
    began: list[bool] = []

    def next_writer() -> None:
        with unit_of_work(engine) as uow:
            began.append(True)
            uow.commit()

    with unit_of_work(engine) as uow:
        uow.experiments.add(_new(uow, world.organization_id, _draft(), world.user_id))
        uow.commit()
        other = threading.Thread(target=next_writer)
        other.start()
        other.join(timeout=10)
        assert began == [True]  # before this block ends
