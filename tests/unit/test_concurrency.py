"""Etags, If-Match / If-None-Match and idempotency keys: the rules and the use cases, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from server.domain import messages
from server.domain.concurrency import (
    IDEMPOTENCY_KEY_LIFETIME,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    check_if_match,
    checked_idempotency_key,
    not_modified,
    parse_entity_tags,
    request_fingerprint,
)
from server.domain.errors import InvalidArgument, NotFound, PreconditionFailed
from server.service_layer.experiments import ExperimentService
from tests.unit.builders import (
    EDITOR_KEY,
    NOW,
    ORGANIZATION,
    SECOND,
    published_input,
    rejected_fields,
    scheduled_experiment,
)
from tests.unit.fakes import FakeStore, FakeUnitOfWork, ManualClock, record_of, view_of

ORG = str(ORGANIZATION.id)
NOW_CLOCK = ManualClock(NOW)


def test_entity_tags_are_a_star_or_a_list_of_quoted_weak_or_bare_tags() -> None:
    tags = parse_entity_tags(' "1", W/"2" ,3, *', "if-match")

    assert tags.any
    assert tags.strong == {"1", "3"}
    assert tags.weak == {"2"}


@pytest.mark.parametrize("value", ["", " , ", '"', '"unterminated', 'W/""', 'a"b'])
def test_unreadable_entity_tags_are_rejected_naming_the_header(value: str) -> None:
    assert rejected_fields(parse_entity_tags, value, "if-match") == {"if-match"}


def test_if_match_accepts_the_current_etag_quoted_or_bare_or_any() -> None:
    experiment = scheduled_experiment(version=7)

    for header in (None, '"7"', "7", '"6", "7"', "*"):
        check_if_match(header, experiment)


@pytest.mark.parametrize("header", ['"6"', 'W/"7"', '"8", "9"'])
def test_if_match_refuses_another_version_and_weak_tags(header: str) -> None:
    with pytest.raises(PreconditionFailed):
        check_if_match(header, scheduled_experiment(version=7))


def test_if_none_match_compares_weakly_and_ignores_what_it_cannot_read() -> None:
    experiment = scheduled_experiment(version=7)

    assert not_modified('"7"', experiment)
    assert not_modified('W/"7"', experiment)
    assert not_modified("*", experiment)
    assert not not_modified('"6"', experiment)
    assert not not_modified('"unterminated', experiment)
    assert not not_modified(None, experiment)


def test_idempotency_keys_have_a_documented_length() -> None:
    longest = "k" * IDEMPOTENCY_KEY_MAX_LENGTH

    assert checked_idempotency_key(longest) == longest
    assert rejected_fields(checked_idempotency_key, longest + "k") == {"idempotency-key"}
    assert rejected_fields(checked_idempotency_key, "") == {"idempotency-key"}


def test_the_same_body_has_the_same_fingerprint_and_another_body_another() -> None:
    assert request_fingerprint(published_input()) == request_fingerprint(published_input())
    assert request_fingerprint(published_input()) != request_fingerprint(
        published_input(name="Other")
    )


def test_an_update_with_a_stale_etag_writes_nothing(
    service: ExperimentService, store: FakeStore
) -> None:
    stored = store.put(scheduled_experiment(version=3))

    with pytest.raises(PreconditionFailed) as refused:
        service.update(EDITOR_KEY, ORG, str(stored.id), published_input(name="New"), if_match='"2"')

    assert refused.value.message == messages.ETAG_MISMATCH
    assert store.writes == [] and store.commits == 0


def test_an_update_with_the_current_etag_writes_a_new_version(
    service: ExperimentService, store: FakeStore
) -> None:
    stored = store.put(scheduled_experiment(version=3))

    updated = service.update(EDITOR_KEY, ORG, str(stored.id), published_input(), if_match='"3"')

    assert updated.etag == "4"


def _written_in_between(store: FakeStore, write: Callable[[], object]) -> ExperimentService:
    """A service whose write transactions each begin right after `write` ran: another
    client's write landing after the request arrived, just before its transaction (an
    update that read the experiment before its transaction would miss it)."""

    def unit_of_work() -> FakeUnitOfWork:
        write()
        return store.unit_of_work()

    return ExperimentService(
        unit_of_work, store.read_unit_of_work, render=view_of, record=record_of, clock=NOW_CLOCK
    )


def test_an_update_without_if_match_overwrites_a_write_that_came_in_between(
    store: FakeStore,
) -> None:
    stored = store.put(scheduled_experiment(version=3))
    other = replace(stored, name="Theirs", version=4)
    service = _written_in_between(store, lambda: store.put(other))

    updated = service.update(EDITOR_KEY, ORG, str(stored.id), published_input(name="Mine"))

    # Applied to version 4: the last write wins as a whole, and moves the version on from it.
    assert (store.experiments[stored.id].name, updated.etag) == ("Mine", "5")
    assert store.views[stored.id] == updated == view_of(store.experiments[stored.id])
    assert store.writes == [("update", stored.id), ("view", stored.id), ("revision", stored.id)]


def test_an_update_with_if_match_refuses_a_write_that_came_in_between(store: FakeStore) -> None:
    stored = store.put(scheduled_experiment(version=3))
    service = _written_in_between(store, lambda: store.put(replace(stored, version=4)))

    with pytest.raises(PreconditionFailed):
        service.update(EDITOR_KEY, ORG, str(stored.id), published_input(), if_match='"3"')

    assert store.experiments[stored.id].version == 4
    assert store.writes == [] and store.commits == 0


def test_an_update_of_an_experiment_deleted_in_between_is_not_found(store: FakeStore) -> None:
    stored = store.put(scheduled_experiment(version=3))

    def delete() -> None:
        store.experiments.pop(stored.id, None)
        store.views.pop(stored.id, None)

    service = _written_in_between(store, delete)

    with pytest.raises(NotFound):
        service.update(EDITOR_KEY, ORG, str(stored.id), published_input())

    assert store.writes == [] and store.commits == 0


def test_a_delete_with_a_stale_etag_deletes_nothing_and_a_missing_one_is_not_found(
    service: ExperimentService, store: FakeStore
) -> None:
    stored = store.put(scheduled_experiment(version=3))

    with pytest.raises(PreconditionFailed):
        service.delete(EDITOR_KEY, ORG, str(stored.id), if_match='"2"')
    service.delete(EDITOR_KEY, ORG, str(stored.id), if_match='"3"')
    with pytest.raises(NotFound):
        service.delete(EDITOR_KEY, ORG, str(stored.id), if_match="*")

    assert store.writes == [("delete", stored.id), ("revision", stored.id)]


def test_a_keyed_create_retried_returns_the_first_experiment_until_the_key_expires(
    service: ExperimentService, store: FakeStore, clock: ManualClock
) -> None:
    first = service.create(EDITOR_KEY, ORG, published_input(), "key")
    clock.now += IDEMPOTENCY_KEY_LIFETIME - SECOND
    retried = service.create(EDITOR_KEY, ORG, published_input(), "key")
    clock.now += 2 * SECOND
    after_expiry = service.create(EDITOR_KEY, ORG, published_input(), "key")

    assert retried.id == first.id
    assert after_expiry.id != first.id
    assert len(store.experiments) == 2


def test_a_key_reused_for_another_body_is_refused_and_creates_nothing(
    service: ExperimentService, store: FakeStore
) -> None:
    service.create(EDITOR_KEY, ORG, published_input(), "key")

    with pytest.raises(InvalidArgument) as refused:
        service.create(EDITOR_KEY, ORG, published_input(name="Other"), "key")

    assert [v.field for v in refused.value.violations] == ["idempotency-key"]
    assert len(store.experiments) == 1
