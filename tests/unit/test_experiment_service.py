"""The experiment use cases over in-memory storage: error order, transactions, the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from uuid import UUID, uuid4

import pytest

from server.domain import messages
from server.domain.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from server.domain.model import Experiment, GroupType, Principal, ResetInterval, User
from server.domain.pagination import Cursor, Page, Position, encode_cursor
from server.service_layer.experiments import ExperimentService
from server.service_layer.ports import ExperimentView
from tests.unit.builders import (
    DAY,
    EDITOR_KEY,
    GOAL,
    LAPSED_KEY,
    NOW,
    ORGANIZATION,
    OTHER_ORGANIZATION,
    OTHER_ORGANIZATION_GOAL,
    OTHER_ORGANIZATION_ROOM,
    OUTSIDER_KEY,
    ROOM_A,
    SECOND,
    UNSUBSCRIBED_ORGANIZATION,
    USER,
    VIEWER_KEY,
    draft_input,
    input_from,
    published_input,
    rejected_fields,
    started_experiment,
    violations_of,
)
from tests.unit.fakes import FakeStore, ManualClock, view_of

ORG = str(ORGANIZATION.id)
OTHER_ORG = str(OTHER_ORGANIZATION.id)
LAPSED_ORG = str(UNSUBSCRIBED_ORGANIZATION.id)
UNKNOWN_ID = "e0000000-0000-4000-8000-00000000dead"
# Breaks several rules at once: would be INVALID_ARGUMENT if it got that far.
INVALID = published_input(name=None, goal_id="nope", groups=())

# Every RPC as a call taking (service, API key, organization id, experiment id).
Call = Callable[[ExperimentService, str | None, str, str], object]
CALLS: dict[str, Call] = {
    "list": lambda s, auth, org, _: s.list(auth, org, 0, ""),
    "get": lambda s, auth, org, eid: s.get(auth, org, eid),
    "create": lambda s, auth, org, _: s.create(auth, org, published_input()),
    "update": lambda s, auth, org, eid: s.update(auth, org, eid, published_input()),
    "delete": lambda s, auth, org, eid: s.delete(auth, org, eid),
    "revisions": lambda s, auth, org, eid: s.list_revisions(auth, org, eid, 0, ""),
    "changes": lambda s, auth, org, _: s.list_changes(auth, org, "", 0),
}
WRITES = ["create", "update", "delete"]


@pytest.fixture
def existing(store: FakeStore) -> Experiment:
    """A published experiment of ORGANIZATION, started yesterday, ending in two weeks."""
    return store.put(started_experiment())


@pytest.fixture
def theirs(store: FakeStore) -> Experiment:
    """An experiment of OTHER_ORGANIZATION."""
    return store.put(
        started_experiment(
            id=UUID("e0000000-0000-4000-8000-0000000000ff"),
            organization=OTHER_ORGANIZATION,
            goal=OTHER_ORGANIZATION_GOAL,
            rooms=(OTHER_ORGANIZATION_ROOM,),
        )
    )


def assert_nothing_written(store: FakeStore, before: dict[UUID, Experiment]) -> None:
    assert store.writes == []
    assert store.commits == 0
    assert store.experiments == before


# --- 1. Authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("rpc", CALLS)
@pytest.mark.parametrize("key", [None, "", "no-such-key"])
def test_caller_without_a_valid_key_is_unauthenticated(
    service: ExperimentService, existing: Experiment, rpc: str, key: str | None
) -> None:
    with pytest.raises(Unauthenticated):
        CALLS[rpc](service, key, ORG, str(existing.id))


def test_authentication_is_checked_before_anything_else(service: ExperimentService) -> None:
    with pytest.raises(Unauthenticated):
        service.update(None, OTHER_ORG, "not-a-uuid", INVALID)


# --- 2. Organization access, subscription, permission ---------------------------------------


@pytest.mark.parametrize("rpc", CALLS)
def test_user_of_one_organization_cannot_reach_another_organization(
    service: ExperimentService, store: FakeStore, theirs: Experiment, rpc: str
) -> None:
    before = dict(store.experiments)

    with pytest.raises(PermissionDenied) as caught:
        CALLS[rpc](service, EDITOR_KEY, OTHER_ORG, str(theirs.id))

    assert caught.value.message == messages.NO_ORGANIZATION_ACCESS
    assert_nothing_written(store, before)


@pytest.mark.parametrize("rpc", ["get", "update", "delete"])
def test_experiment_of_another_organization_is_not_found_under_ones_own(
    service: ExperimentService, store: FakeStore, theirs: Experiment, rpc: str
) -> None:
    before = dict(store.experiments)

    with pytest.raises(NotFound) as caught:
        CALLS[rpc](service, EDITOR_KEY, ORG, str(theirs.id))

    assert caught.value.message == messages.EXPERIMENT_NOT_FOUND
    assert_nothing_written(store, before)


def test_list_shows_only_the_organizations_own_experiments(
    service: ExperimentService, existing: Experiment, theirs: Experiment
) -> None:
    assert service.list(EDITOR_KEY, ORG, 0, "").items == (view_of(existing),)
    assert service.list(OUTSIDER_KEY, OTHER_ORG, 0, "").items == (view_of(theirs),)


@pytest.mark.parametrize("rpc", CALLS)
def test_organization_without_active_subscription_can_neither_read_nor_write(
    service: ExperimentService, rpc: str
) -> None:
    with pytest.raises(PermissionDenied) as caught:
        CALLS[rpc](service, LAPSED_KEY, LAPSED_ORG, UNKNOWN_ID)

    assert caught.value.message == messages.NO_ACTIVE_SUBSCRIPTION


def test_user_without_settings_permission_can_list_and_get(
    service: ExperimentService, existing: Experiment
) -> None:
    assert service.list(VIEWER_KEY, ORG, 0, "").items == (view_of(existing),)
    assert service.get(VIEWER_KEY, ORG, str(existing.id)) == view_of(existing)


@pytest.mark.parametrize("rpc", WRITES)
def test_user_without_settings_permission_cannot_change_experiments(
    service: ExperimentService, store: FakeStore, existing: Experiment, rpc: str
) -> None:
    before = dict(store.experiments)

    with pytest.raises(PermissionDenied) as caught:
        CALLS[rpc](service, VIEWER_KEY, ORG, str(existing.id))

    assert caught.value.message == messages.NO_SETTINGS_PERMISSION
    assert_nothing_written(store, before)


@pytest.mark.parametrize("rpc", ["update", "delete"])
def test_missing_permission_is_reported_before_an_unknown_experiment(
    service: ExperimentService, rpc: str
) -> None:
    with pytest.raises(PermissionDenied) as caught:
        CALLS[rpc](service, VIEWER_KEY, ORG, UNKNOWN_ID)

    assert caught.value.message == messages.NO_SETTINGS_PERMISSION


def test_missing_permission_is_reported_before_an_invalid_body(service: ExperimentService) -> None:
    with pytest.raises(PermissionDenied) as caught:
        service.create(VIEWER_KEY, ORG, INVALID)

    assert caught.value.message == messages.NO_SETTINGS_PERMISSION


# --- 3. Existence, then 4. validation -------------------------------------------------------


@pytest.mark.parametrize("experiment_id", [UNKNOWN_ID, "not-a-uuid", ""])
def test_unknown_experiment_is_not_found(service: ExperimentService, experiment_id: str) -> None:
    for rpc in ["get", "update", "delete"]:
        with pytest.raises(NotFound) as caught:
            CALLS[rpc](service, EDITOR_KEY, ORG, experiment_id)
        assert caught.value.message == messages.EXPERIMENT_NOT_FOUND


def test_unknown_experiment_with_an_invalid_body_is_not_found(
    service: ExperimentService, store: FakeStore
) -> None:
    with pytest.raises(NotFound):
        service.update(EDITOR_KEY, ORG, UNKNOWN_ID, INVALID)

    assert store.writes == []


def test_invalid_create_lists_every_violation_and_writes_nothing(
    service: ExperimentService, store: FakeStore, existing: Experiment
) -> None:
    before = dict(store.experiments)

    violations = violations_of(service.create, EDITOR_KEY, ORG, INVALID)

    assert violations == {
        ("name", messages.REQUIRED_WHEN_PUBLISHED),
        ("goal_id", messages.NOT_A_UUID),
        ("groups", messages.PERCENTAGES_TOTAL.format(total=0)),
    }
    assert_nothing_written(store, before)


def test_invalid_update_writes_nothing(
    service: ExperimentService, store: FakeStore, existing: Experiment
) -> None:
    before = dict(store.experiments)
    data = replace(input_from(existing), name="Renamed", is_draft=True)

    with pytest.raises(InvalidArgument):
        service.update(EDITOR_KEY, ORG, str(existing.id), data)

    assert_nothing_written(store, before)
    assert service.get(EDITOR_KEY, ORG, str(existing.id)) == view_of(existing)


def test_goal_and_rooms_must_belong_to_the_organization(
    service: ExperimentService, store: FakeStore
) -> None:
    data = published_input(
        goal_id=str(OTHER_ORGANIZATION_GOAL.id),
        room_ids=(str(ROOM_A.id), str(OTHER_ORGANIZATION_ROOM.id), str(uuid4())),
    )

    assert violations_of(service.create, EDITOR_KEY, ORG, data) == {
        ("goal_id", messages.GOAL_NOT_IN_ORGANIZATION),
        ("room_ids[1]", messages.ROOM_NOT_IN_ORGANIZATION),
        ("room_ids[2]", messages.ROOM_NOT_IN_ORGANIZATION),
    }
    assert store.writes == []


# --- Create, update, delete -----------------------------------------------------------------


def test_created_experiment_is_stored_once_and_returned_in_full(
    service: ExperimentService, store: FakeStore
) -> None:
    view = service.create(EDITOR_KEY, ORG, published_input(group_reset_interval=None))

    assert store.commits == 1
    created = store.experiments[view.id]
    # The answer is the read model's view of what was stored, and reads now serve it.
    assert view == view_of(created)
    assert service.get(EDITOR_KEY, ORG, str(created.id)) == view
    assert created.organization == ORGANIZATION
    assert created.goal == GOAL
    assert created.rooms == (ROOM_A,)
    assert created.group_reset_interval is ResetInterval.FULL
    assert [(g.order, g.name, g.percentage, g.group_type) for g in created.groups] == [
        (0, "A", 90, GroupType.CONTROL),
        (1, "B", 10, GroupType.USER_DEFINED),
    ]
    assert (created.created_by, created.updated_by) == (USER, USER)
    assert created.created_at == created.updated_at == NOW


def test_draft_can_be_created_with_nothing_but_is_draft(
    service: ExperimentService, store: FakeStore
) -> None:
    created = store.experiments[service.create(EDITOR_KEY, ORG, draft_input()).id]

    assert created.is_draft is True
    assert (created.name, created.goal, created.groups, created.rooms) == (None, None, (), ())
    assert store.commits == 1


def test_update_records_who_changed_the_experiment_and_when(
    service: ExperimentService, store: FakeStore, clock: ManualClock, existing: Experiment
) -> None:
    colleague = User(uuid4(), "Carla", "Colleague", ORGANIZATION.id)
    store.add_principal(
        "colleague-key", Principal(colleague, ORGANIZATION, can_manage_settings=True)
    )
    clock.now = NOW + 3 * SECOND

    view = service.update(
        "colleague-key", ORG, str(existing.id), replace(input_from(existing), name="New")
    )

    updated = store.experiments[existing.id]
    assert view == view_of(updated)
    assert updated.name == "New"
    assert (updated.updated_by, updated.updated_at) == (colleague, NOW + 3 * SECOND)
    assert (updated.created_by, updated.created_at) == (existing.created_by, existing.created_at)
    assert store.commits == 1
    assert service.get(EDITOR_KEY, ORG, str(existing.id)) == view


def test_started_experiment_sent_back_as_it_was_read_is_accepted(
    service: ExperimentService, store: FakeStore, existing: Experiment
) -> None:
    service.update(EDITOR_KEY, ORG, str(existing.id), input_from(existing))

    assert input_from(store.experiments[existing.id]) == input_from(existing)


def test_deleted_experiment_is_gone(
    service: ExperimentService, store: FakeStore, existing: Experiment
) -> None:
    service.delete(EDITOR_KEY, ORG, str(existing.id))

    assert store.commits == 1
    with pytest.raises(NotFound):
        service.get(EDITOR_KEY, ORG, str(existing.id))
    with pytest.raises(NotFound):
        service.delete(EDITOR_KEY, ORG, str(existing.id))
    assert store.commits == 1


# --- The injected clock decides "started" and "ended" ---------------------------------------


def test_experiment_becomes_read_only_when_the_clock_passes_its_start(
    service: ExperimentService, store: FakeStore, clock: ManualClock
) -> None:
    experiment = store.put(started_experiment(starts_at=NOW + DAY))
    to_daily = replace(input_from(experiment), group_reset_interval="1d")
    back_to_weekly = replace(input_from(experiment), group_reset_interval="1w")

    service.update(EDITOR_KEY, ORG, str(experiment.id), to_daily)
    assert store.experiments[experiment.id].group_reset_interval is ResetInterval.DAY

    clock.now = NOW + DAY + SECOND
    assert violations_of(service.update, EDITOR_KEY, ORG, str(experiment.id), back_to_weekly) == {
        ("group_reset_interval", messages.READ_ONLY_AFTER_START)
    }


def test_experiment_can_no_longer_be_updated_once_the_clock_passes_its_end(
    service: ExperimentService, store: FakeStore, clock: ManualClock
) -> None:
    experiment = store.put(started_experiment(ends_at=NOW + DAY))
    renamed = replace(input_from(experiment), name="Renamed")

    service.update(EDITOR_KEY, ORG, str(experiment.id), renamed)
    assert store.experiments[experiment.id].name == "Renamed"

    clock.now = NOW + DAY + SECOND
    before = dict(store.experiments)
    assert violations_of(service.update, EDITOR_KEY, ORG, str(experiment.id), renamed) == {
        ("ends_at", messages.EXPERIMENT_ENDED)
    }
    assert store.experiments == before


def test_ended_experiment_can_still_be_read_and_deleted(
    service: ExperimentService, store: FakeStore
) -> None:
    experiment = store.put(started_experiment(ends_at=NOW - DAY))

    assert service.get(EDITOR_KEY, ORG, str(experiment.id)) == view_of(experiment)
    service.delete(EDITOR_KEY, ORG, str(experiment.id))
    assert experiment.id not in store.experiments


# --- Listing --------------------------------------------------------------------------------


def put_experiments(store: FakeStore, count: int) -> list[Experiment]:
    """`count` experiments of ORGANIZATION created a minute apart, newest first."""
    return [
        store.put(started_experiment(id=UUID(int=n), created_at=NOW - n * 60 * SECOND))
        for n in range(1, count + 1)
    ]


def test_list_pages_through_experiments_newest_first_and_back(
    service: ExperimentService, store: FakeStore
) -> None:
    experiments = put_experiments(store, 5)
    store.put(started_experiment(id=uuid4(), organization=OTHER_ORGANIZATION, goal=None, rooms=()))

    def page(cursor: Cursor[Position] | None) -> Page[ExperimentView, Position]:
        return service.list(EDITOR_KEY, ORG, 2, encode_cursor(cursor) if cursor else "")

    first = page(None)
    second = page(first.next)
    last = page(second.next)
    back = page(last.previous)

    views = [view_of(experiment) for experiment in experiments]
    assert first.items == tuple(views[0:2])
    assert second.items == tuple(views[2:4])
    assert last.items == tuple(views[4:5])
    assert back.items == second.items
    assert (first.previous, last.next) == (None, None)


def test_list_serves_25_by_default_and_at_most_100(
    service: ExperimentService, store: FakeStore
) -> None:
    put_experiments(store, 101)

    assert len(service.list(EDITOR_KEY, ORG, 0, "").items) == 25
    assert len(service.list(EDITOR_KEY, ORG, 500, "").items) == 100


@pytest.mark.parametrize(
    ("page_size", "cursor", "field"), [(-1, "", "page_size"), (10, "garbage", "cursor")]
)
def test_list_rejects_a_bad_page_size_or_cursor_naming_it(
    service: ExperimentService, page_size: int, cursor: str, field: str
) -> None:
    assert rejected_fields(service.list, EDITOR_KEY, ORG, page_size, cursor) == {field}


def test_list_checks_access_before_the_cursor(service: ExperimentService) -> None:
    with pytest.raises(PermissionDenied):
        service.list(EDITOR_KEY, OTHER_ORG, -1, "garbage")
