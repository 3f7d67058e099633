"""AssignVisitor's use case over in-memory storage and a real feed follower: what it answers,
and how the worker's cache stays exact (its own writes at once, others' once the follower
reads them, a load the window moved past read again, the past read from storage, memory
bounded). The experiments are rendered as the server renders them (real messages, no I/O).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import pytest
from experiments.v5 import experiments_pb2 as pb

from server.domain import messages
from server.domain.assignment import assign, micros
from server.domain.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from server.domain.model import ResetInterval
from server.domain.rules import ExperimentInput
from server.entrypoints.assignments import READING
from server.entrypoints.translate import RENDERER, revision_record
from server.service_layer.assignments import AssignmentCache
from server.service_layer.experiments import ExperimentService
from server.service_layer.feed import FeedFollower
from server.service_layer.ports import ExperimentView, RunningViews
from tests.integration.locks import until
from tests.unit.builders import (
    DAY,
    EDITOR_KEY,
    LAPSED_KEY,
    NOW,
    ORGANIZATION,
    OTHER_ORGANIZATION,
    OTHER_ORGANIZATION_GOAL,
    OUTSIDER_KEY,
    ROOM_A,
    ROOM_B,
    VIEWER_KEY,
    draft_input,
    group_input,
    published_input,
)
from tests.unit.fakes import FakeReadUnitOfWork, FakeStore, ManualClock

ORG = str(ORGANIZATION.id)
# Long enough that only nudges make the follower read during a test.
POLL_SECONDS = 3600.0


@dataclass
class World:
    """A worker: its service, cache and follower; `other` writes as another worker would
    (same storage, without telling this worker's cache or follower)."""

    service: ExperimentService
    cache: AssignmentCache
    follower: FeedFollower
    other: ExperimentService
    loads: list[UUID]


def _service(store: FakeStore, clock: ManualClock, **extra: object) -> ExperimentService:
    return ExperimentService(
        store.unit_of_work,
        store.read_unit_of_work,
        render=RENDERER.view,
        record=revision_record,
        clock=clock,
        **extra,  # type: ignore[arg-type]
    )


def _world(store: FakeStore, clock: ManualClock, **cache_options: object) -> Iterator[World]:
    follower = FeedFollower(store.read_unit_of_work, poll_seconds=POLL_SECONDS, window_changes=4)
    loads: list[UUID] = []

    def load(organization_id: UUID, not_ended_at: datetime) -> RunningViews:
        loads.append(organization_id)
        with store.read_unit_of_work() as uow:
            return uow.views.running(organization_id, not_ended_at)

    cache = AssignmentCache(follower, load, READING, **cache_options)  # type: ignore[arg-type]
    follower.start()
    service = _service(store, clock, follower=follower, assignments=cache)
    yield World(service, cache, follower, _service(store, clock), loads)
    follower.close()


@pytest.fixture
def world(store: FakeStore, clock: ManualClock) -> Iterator[World]:
    yield from _world(store, clock)


def running(**changes: object) -> ExperimentInput:
    """Published, started yesterday, in every room, 50/50."""
    defaults: dict[str, object] = {
        "starts_at": NOW - DAY,
        "ends_at": None,
        "room_ids": (),
        "groups": (group_input("A", 50, "control"), group_input("B", 50, None)),
    }
    return published_input(**{**defaults, **changes})


def assigned(
    world: World, visitor: str = "visitor-1", room: str = "", at: tuple[int, int] | None = None
) -> dict[str, tuple[str, int]]:
    """Experiment id -> (group name, bucket) of the visitor's assignments."""
    found = world.service.assign(VIEWER_KEY, ORG, visitor, room, at)
    return {
        str(experiment.experiment_id): (_group_name(answer), chosen)
        for experiment, answer, chosen, _, _ in found
    }


def _group_name(answer: bytes) -> str:
    return pb.Assignment.FromString(answer).group_name


def create(
    world: World, data: ExperimentInput, writer: Callable[[World], ExperimentService] | None = None
) -> ExperimentView:
    """Created by this worker, or by `writer`."""
    service = world.service if writer is None else writer(world)
    return service.create(EDITOR_KEY, ORG, data)


def test_a_visitor_is_assigned_in_each_experiment_that_applies_and_no_other(
    world: World,
) -> None:
    every_room = create(world, running(name="Every room"))
    in_room = create(world, running(name="Room A", room_ids=(str(ROOM_A.id),)))
    create(world, running(name="Room B", room_ids=(str(ROOM_B.id),)))
    create(world, running(name="Not yet", starts_at=NOW + DAY))
    create(world, running(name="Ended", ends_at=NOW - DAY / 2))
    create(world, draft_input(name="Draft"))

    assert assigned(world).keys() == {str(every_room.id)}
    assert assigned(world, room=str(ROOM_A.id)).keys() == {str(every_room.id), str(in_room.id)}


def test_the_group_is_the_one_the_algorithm_gives_from_the_stored_buckets(
    world: World, store: FakeStore
) -> None:
    view = create(world, running(group_reset_interval="1d"))
    experiment = store.experiments[view.id]

    for visitor in ("visitor-1", "visitor-2", "Zoë", "🙂" * 255):
        expected = assign(
            experiment_id=experiment.id,
            interval=ResetInterval.DAY,
            starts_at=experiment.starts_at or NOW,
            ends_at=None,
            ranges=[group.buckets for group in experiment.groups],
            visitor_id=visitor,
            at=NOW,
        )
        group = experiment.groups[expected.group_index].name or ""
        assert assigned(world, visitor) == {str(view.id): (group, expected.bucket)}


def test_access_is_as_for_get_and_checked_before_the_request(world: World) -> None:
    with pytest.raises(Unauthenticated):
        world.service.assign("no such key", ORG, "", "", None)
    for key in (OUTSIDER_KEY, LAPSED_KEY):
        with pytest.raises(PermissionDenied):
            world.service.assign(key, ORG, "", "", None)
    assert world.service.assign(VIEWER_KEY, ORG, "v", "", None) == []


def test_a_bad_request_names_each_offending_field(world: World) -> None:
    with pytest.raises(InvalidArgument) as refused:
        world.service.assign(VIEWER_KEY, ORG, "x" * 256, "room", (-1, 0))
    assert [v.field for v in refused.value.violations] == ["visitor_id", "room_id", "at"]


def test_this_workers_writes_show_in_its_next_assignment(world: World) -> None:
    assert assigned(world) == {}  # the organization is in memory from here on
    view = create(world, running())
    assert assigned(world).keys() == {str(view.id)}

    world.service.update(
        EDITOR_KEY,
        ORG,
        str(view.id),
        running(
            groups=(
                group_input("A", 0, "control"),
                group_input("B", 100, None),
            )
        ),
    )
    assert assigned(world)[str(view.id)][0] == "B"

    world.service.delete(EDITOR_KEY, ORG, str(view.id))
    assert assigned(world) == {}


def test_an_assignment_never_shows_less_than_this_workers_last_write(
    store: FakeStore, clock: ManualClock
) -> None:
    # The follower cannot read (the database is away, say): the write has committed, the
    # cache cannot know it, so the assignment is refused rather than answered without it.
    worker = next(_world(store, clock, own_write_wait_seconds=0.2))
    try:
        assert assigned(worker) == {}
        blocked = threading.Event()
        reading = store.read_unit_of_work

        def held() -> FakeReadUnitOfWork:
            blocked.wait()
            return reading()

        worker.follower._read_unit_of_work = held
        view = create(worker, running())
        with pytest.raises(Unavailable) as refused:
            assigned(worker)
        assert refused.value.message == messages.UNAVAILABLE

        blocked.set()
        assert assigned(worker).keys() == {str(view.id)}
    finally:
        worker.follower.close()


def test_another_workers_writes_show_once_the_follower_reads_them(world: World) -> None:
    assert assigned(world) == {}
    view = create(world, running(), writer=lambda w: w.other)

    world.follower.nudge()  # its poll
    until(lambda: str(view.id) in assigned(world), "the other worker's create to show")


def test_a_load_the_followers_window_moved_past_is_read_again(
    store: FakeStore, clock: ManualClock
) -> None:
    worker = next(_world(store, clock))
    try:
        first = create(worker, running(name="Before the load"), writer=lambda w: w.other)
        load = worker.cache._load
        late: list[ExperimentView] = []

        def slow_load(organization_id: UUID, not_ended_at: datetime) -> RunningViews:
            views = load(organization_id, not_ended_at)
            if not late:  # while the first load was on its way, five writes went by
                late.extend(
                    create(worker, running(name=f"During {n}"), writer=lambda w: w.other)
                    for n in range(5)
                )
                worker.follower.nudge()
                until(lambda: worker.follower.head == 6, "the follower to read them")
            return views

        worker.cache._load = slow_load

        assert assigned(worker).keys() == {str(v.id) for v in [first, *late]}
        assert worker.loads == [ORGANIZATION.id, ORGANIZATION.id]
    finally:
        worker.follower.close()


def test_times_before_the_organization_was_loaded_are_read_from_storage(
    world: World, clock: ManualClock
) -> None:
    ended = create(world, running(ends_at=NOW - DAY / 2))
    before_its_end = micros(NOW - DAY * 3 / 4)

    assert assigned(world) == {}
    at = divmod(before_its_end, 1_000_000)
    assert assigned(world, at=(at[0], at[1] * 1000)).keys() == {str(ended.id)}


def test_memory_is_bounded_by_dropping_the_organizations_asked_least_recently(
    store: FakeStore, clock: ManualClock
) -> None:
    # Room for one experiment (its groups' answers and EXPERIMENT_OVERHEAD_BYTES), not two.
    worker = next(_world(store, clock, max_bytes=2000))
    ours, theirs = ORGANIZATION.id, OTHER_ORGANIZATION.id
    try:
        mine = create(worker, running())
        their = worker.service.create(
            OUTSIDER_KEY, str(theirs), running(goal_id=str(OTHER_ORGANIZATION_GOAL.id))
        )

        assert assigned(worker).keys() == {str(mine.id)}
        assert assigned(worker).keys() == {str(mine.id)}
        assert _theirs(worker).keys() == {str(their.id)}  # ours is dropped to make room
        assert assigned(worker).keys() == {str(mine.id)}
        assert worker.loads == [ours, theirs, ours]

        second = create(worker, running(name="Second"))  # ours no longer fits at all
        assert assigned(worker).keys() == {str(mine.id), str(second.id)}
        loads = len(worker.loads)
        assert assigned(worker).keys() == {str(mine.id), str(second.id)}
        assert worker.loads[loads:] == [ours]  # not kept: read again
    finally:
        worker.follower.close()


def _theirs(world: World) -> dict[str, int]:
    found = world.service.assign(OUTSIDER_KEY, str(OTHER_ORGANIZATION.id), "v", "", None)
    return {str(experiment.experiment_id): chosen for experiment, _, chosen, _, _ in found}
