"""The history use cases over in-memory storage: every write leaves one revision, a no-op
none; an experiment's revisions outlive it; the feed continues where a page ended."""

from __future__ import annotations

from uuid import UUID

import pytest

from server.domain import messages
from server.domain.errors import NotFound
from server.domain.feed import decode_position, encode_position
from server.domain.model import Experiment
from server.service_layer.experiments import ExperimentService
from tests.unit.builders import (
    EDITOR_KEY,
    ORGANIZATION,
    OTHER_ORGANIZATION,
    OUTSIDER_KEY,
    VIEWER_KEY,
    draft_input,
    input_from,
    published_input,
    scheduled_experiment,
)
from tests.unit.fakes import FakeStore

ORG = str(ORGANIZATION.id)
OTHER_ORG = str(OTHER_ORGANIZATION.id)


def history(store: FakeStore) -> list[tuple[str, int, UUID]]:
    return [(r.action, r.number, r.experiment_id) for _, r in store.revisions]


def test_each_write_leaves_one_revision_numbered_as_its_version(
    service: ExperimentService, store: FakeStore
) -> None:
    created = service.create(EDITOR_KEY, ORG, published_input())
    identifier = str(created.id)
    updated = service.update(EDITOR_KEY, ORG, identifier, published_input(name="Renamed"))
    service.delete(EDITOR_KEY, ORG, identifier)

    assert updated.etag == "2"
    assert history(store) == [
        ("created", 1, created.id),
        ("updated", 2, created.id),
        ("deleted", 3, created.id),
    ]


def test_an_update_that_changes_nothing_writes_nothing_and_keeps_the_etag(
    service: ExperimentService, store: FakeStore
) -> None:
    stored = store.put(scheduled_experiment(version=3))
    commits = store.commits

    unchanged = service.update(EDITOR_KEY, ORG, str(stored.id), input_from(stored))

    assert unchanged == store.views[stored.id]  # the stored view: same etag, same updated_at
    assert unchanged.etag == "3"
    assert store.experiments[stored.id] == stored
    assert (store.writes, store.revisions, store.commits) == ([], [], commits)


def test_a_deleted_experiments_revisions_are_still_listed_newest_first(
    service: ExperimentService, store: FakeStore
) -> None:
    created = service.create(EDITOR_KEY, ORG, published_input())
    service.update(EDITOR_KEY, ORG, str(created.id), published_input(name="Renamed"))
    service.delete(EDITOR_KEY, ORG, str(created.id))

    page = service.list_revisions(VIEWER_KEY, ORG, str(created.id), 0, "")

    assert [change.position for change in page.items] == [3, 2, 1]
    assert page.next is None and page.previous is None


@pytest.mark.parametrize("experiment_id", ["e0000000-0000-4000-8000-00000000dead", "nope", ""])
def test_revisions_of_an_experiment_never_in_the_organization_are_not_found(
    service: ExperimentService, experiment_id: str
) -> None:
    with pytest.raises(NotFound) as caught:
        service.list_revisions(EDITOR_KEY, ORG, experiment_id, 0, "")
    assert caught.value.message == messages.EXPERIMENT_NOT_FOUND


def test_revisions_of_another_organizations_experiment_are_not_found(
    service: ExperimentService,
) -> None:
    theirs = service.create(OUTSIDER_KEY, OTHER_ORG, draft_input())

    with pytest.raises(NotFound):
        service.list_revisions(EDITOR_KEY, ORG, str(theirs.id), 0, "")


def test_an_experiment_older_than_revisions_has_an_empty_history_not_a_missing_one(
    service: ExperimentService, store: FakeStore
) -> None:
    stored: Experiment = store.put(scheduled_experiment())  # stored without a revision

    assert service.list_revisions(EDITOR_KEY, ORG, str(stored.id), 0, "").items == ()


def test_the_feed_continues_where_a_page_ended_and_says_where_on_an_empty_page(
    service: ExperimentService,
) -> None:
    for n in range(5):
        service.create(EDITOR_KEY, ORG, published_input(name=f"Ours {n}"))
    service.create(OUTSIDER_KEY, OTHER_ORG, draft_input())

    first = service.list_changes(VIEWER_KEY, ORG, "", 2)
    second = service.list_changes(VIEWER_KEY, ORG, encode_position(first.next_position), 2)
    third = service.list_changes(VIEWER_KEY, ORG, encode_position(second.next_position), 2)
    empty = service.list_changes(VIEWER_KEY, ORG, encode_position(third.next_position), 2)

    assert [[c.position for c in page.changes] for page in (first, second, third)] == [
        [1, 2],
        [3, 4],
        [5],
    ]
    # The last page ends where the feed stood (past the other organization's change): an
    # empty page says to continue from there too.
    assert third.next_position == 6
    assert empty.changes == () and empty.next_position == 6
    assert decode_position(encode_position(empty.next_position)) == 6
