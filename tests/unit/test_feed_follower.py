"""A worker's feed follower over in-memory storage: what its window holds, whom it wakes, and
what subscribers get (each change once, in order). Its thread runs; the tests wait for what
it reports, never for time to pass."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from uuid import UUID

import pytest

from server.service_layer.feed import FeedFollower, FellBehind
from server.service_layer.ports import Change, RevisionRecord
from tests.integration.locks import until
from tests.unit.builders import NOW, ORGANIZATION, OTHER_ORGANIZATION, USER
from tests.unit.fakes import FakeRevisions, FakeStore

OURS, THEIRS = ORGANIZATION.id, OTHER_ORGANIZATION.id
# Long enough that only nudges make the follower read during a test.
POLL_SECONDS = 3600.0


def write(store: FakeStore, organization: UUID = OURS, count: int = 1) -> None:
    FakeRevisions(store).append(
        [
            RevisionRecord(organization, UUID(int=n), 1, "created", USER.id, NOW, b"m")
            for n in range(count)
        ]
    )


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def follower(store: FakeStore) -> Iterator[FeedFollower]:
    write(store, count=2)  # written before the worker started: not news
    started = FeedFollower(store.read_unit_of_work, poll_seconds=POLL_SECONDS, window_changes=3)
    started.start()
    until(lambda: started.wait_started(0), "the follower to read where the feed stands")
    yield started
    started.close()


def read(follower: FeedFollower, head: int) -> None:
    follower.nudge()
    until(lambda: follower.head == head, f"the follower to reach position {head}")


def positions(found: tuple[Sequence[Change], int] | None) -> tuple[list[int], int] | None:
    return None if found is None else ([c.position for c in found[0]], found[1])


def test_it_starts_where_the_feed_stands_and_serves_an_organizations_news_from_there(
    store: FakeStore, follower: FeedFollower
) -> None:
    assert follower.head == 2
    write(store)
    write(store, THEIRS)
    write(store)
    read(follower, 5)

    assert positions(follower.changes_after(OURS, 2)) == ([3, 5], 5)
    assert positions(follower.changes_after(OURS, 3)) == ([5], 5)
    assert positions(follower.changes_after(THEIRS, 2)) == ([4], 5)
    # Older than what the window holds: read the database instead.
    assert follower.changes_after(OURS, 1) is None


def test_a_reader_that_fell_out_of_the_window_is_sent_to_the_database(
    store: FakeStore, follower: FeedFollower
) -> None:
    write(store, count=5)  # positions 3..7; the window keeps the last 3
    read(follower, 7)

    assert follower.changes_after(OURS, 3) is None
    assert positions(follower.changes_after(OURS, 4)) == ([5, 6, 7], 7)
    with pytest.raises(FellBehind):
        follower.subscribe(lambda batch: None, after=3)


def test_only_the_listeners_of_the_organization_that_changed_are_woken(
    store: FakeStore, follower: FeedFollower
) -> None:
    ours, theirs = follower.listen(OURS), follower.listen(THEIRS)

    write(store)
    read(follower, 3)

    assert ours.wake.is_set() and not theirs.wake.is_set()
    follower.forget(ours)
    follower.close()
    assert theirs.wake.is_set()  # a closing follower wakes everyone: their watches end


def test_a_subscriber_gets_the_backlog_then_every_batch_once_in_order(
    store: FakeStore, follower: FeedFollower
) -> None:
    write(store, count=2)
    read(follower, 4)
    got: list[int] = []

    unsubscribe = follower.subscribe(lambda batch: got.extend(c.position for c in batch), after=2)
    write(store)
    read(follower, 5)
    unsubscribe()
    write(store)
    read(follower, 6)

    assert got == [3, 4, 5]
