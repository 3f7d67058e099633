"""Fixtures of the use-case tests: an in-memory store, a clock moved by hand, the service."""

from __future__ import annotations

import pytest

from server.service_layer.experiments import ExperimentService
from tests.unit.builders import (
    EDITOR,
    EDITOR_KEY,
    GOAL,
    LAPSED,
    LAPSED_KEY,
    NOW,
    OTHER_ORGANIZATION_GOAL,
    OTHER_ORGANIZATION_ROOM,
    OUTSIDER,
    OUTSIDER_KEY,
    ROOM_A,
    ROOM_B,
    SECOND_GOAL,
    VIEWER,
    VIEWER_KEY,
)
from tests.unit.fakes import FakeStore, ManualClock, record_of, view_of


@pytest.fixture
def store() -> FakeStore:
    """Two subscribed organizations with goals and rooms, and a lapsed one; no experiments."""
    store = FakeStore()
    for key, principal in [
        (EDITOR_KEY, EDITOR),
        (VIEWER_KEY, VIEWER),
        (OUTSIDER_KEY, OUTSIDER),
        (LAPSED_KEY, LAPSED),
    ]:
        store.add_principal(key, principal)
    for goal in (GOAL, SECOND_GOAL, OTHER_ORGANIZATION_GOAL):
        store.add_goal(goal)
    for room in (ROOM_A, ROOM_B, OTHER_ORGANIZATION_ROOM):
        store.add_room(room)
    return store


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def service(store: FakeStore, clock: ManualClock) -> ExperimentService:
    return ExperimentService(
        store.unit_of_work, store.read_unit_of_work, render=view_of, record=record_of, clock=clock
    )
