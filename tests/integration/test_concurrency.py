"""Concurrent edits and retried creates over gRPC, on SQLite and PostgreSQL: etags with
if-match, and idempotency keys, raced by real threads against a real server."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import func, select

from server.adapters.database import make_engine
from server.adapters.orm import ExperimentRecord
from server.adapters.unit_of_work import SqlAlchemyReadUnitOfWork, SqlAlchemyUnitOfWork
from server.domain import messages
from server.domain.concurrency import IDEMPOTENCY_KEY_LIFETIME, IDEMPOTENCY_KEY_MAX_LENGTH
from server.entrypoints.translate import RENDERER, experiment_input, revision_record
from server.service_layer.experiments import ExperimentService
from tests.integration.grpc_client import Client, field_violations, published, running_client

RACERS = 16
_T = TypeVar("_T")


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url) as running:
        yield running


def _race(count: int, call: Callable[[int], _T]) -> list[_T | grpc.RpcError]:
    """Runs call(0..count-1) at once, released together by a barrier; results in order."""
    barrier = threading.Barrier(count)

    def racer(n: int) -> _T | grpc.RpcError:
        barrier.wait()
        try:
            return call(n)
        except grpc.RpcError as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(racer, range(count)))


def _outcomes(results: Sequence[object]) -> Counter[str]:
    return Counter(r.code().name if isinstance(r, grpc.RpcError) else "OK" for r in results)


def _create(
    client: Client, experiment: pb.Experiment, key: str | None = None, who: str = "settings"
) -> pb.Experiment:
    metadata = client.metadata(who)
    if key is not None:
        metadata += (("idempotency-key", key),)
    organization = client.org if who == "settings" else client.world.other_organization_id
    request = pb.CreateExperimentRequest(organization_id=organization, experiment=experiment)
    return client.stub.CreateExperiment(request, metadata=metadata)


def _update(client: Client, experiment: pb.Experiment, if_match: str | None) -> pb.Experiment:
    metadata = client.metadata()
    if if_match is not None:
        metadata += (("if-match", if_match),)
    request = pb.UpdateExperimentRequest(
        organization_id=client.org, experiment_id=experiment.id, experiment=experiment
    )
    return client.stub.UpdateExperiment(request, metadata=metadata)


def _delete(client: Client, experiment_id: str, if_match: str) -> None:
    request = pb.DeleteExperimentRequest(organization_id=client.org, experiment_id=experiment_id)
    client.stub.DeleteExperiment(request, metadata=(*client.metadata(), ("if-match", if_match)))


def _get(client: Client, experiment_id: str) -> pb.Experiment:
    request = pb.GetExperimentRequest(organization_id=client.org, experiment_id=experiment_id)
    return client.stub.GetExperiment(request, metadata=client.metadata())


def _renamed(experiment: pb.Experiment, name: str) -> pb.Experiment:
    copy = pb.Experiment()
    copy.CopyFrom(experiment)
    copy.name = name
    return copy


def _experiments_stored(url: str, organization_id: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return (
                connection.scalar(
                    select(func.count())
                    .select_from(ExperimentRecord)
                    .where(ExperimentRecord.organization_id == uuid.UUID(organization_id))
                )
                or 0
            )
    finally:
        engine.dispose()


def test_of_racing_updates_with_the_same_etag_exactly_one_wins(client: Client) -> None:
    created = _create(client, published(client.world))

    results = _race(
        RACERS, lambda n: _update(client, _renamed(created, f"Racer {n}"), created.etag)
    )

    assert _outcomes(results) == Counter(OK=1, ABORTED=RACERS - 1)
    winner = next(r for r in results if isinstance(r, pb.Experiment))
    stored = _get(client, created.id)
    assert stored.name == winner.name
    assert stored.etag == winner.etag != created.etag
    refused = next(r for r in results if isinstance(r, grpc.RpcError))
    assert refused.details() == messages.ETAG_MISMATCH


def test_of_racing_deletes_with_the_same_etag_exactly_one_deletes(client: Client) -> None:
    created = _create(client, published(client.world))

    results = _race(RACERS, lambda n: _delete(client, created.id, created.etag))

    # The others find it gone: NOT_FOUND, as for any delete of a deleted experiment.
    assert _outcomes(results) == Counter(OK=1, NOT_FOUND=RACERS - 1)


def test_a_stale_etag_refuses_update_and_delete_and_writes_nothing(client: Client) -> None:
    created = _create(client, published(client.world))
    current = _update(client, _renamed(created, "Second"), created.etag)

    for attempt in (
        lambda: _update(client, _renamed(created, "Third"), created.etag),
        lambda: _delete(client, created.id, f'"{created.etag}"'),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            attempt()
        assert refused.value.code() == grpc.StatusCode.ABORTED
        # The REST 412 is the gateway's (rest_statuses.py): nothing of it reaches gRPC.
        trailers = refused.value.trailing_metadata() or ()
        assert "x-http-code" not in {item.key for item in trailers}
    assert _get(client, created.id) == current


def test_if_match_takes_quoted_tags_lists_and_a_star(client: Client) -> None:
    created = _create(client, published(client.world))

    second = _update(client, _renamed(created, "Quoted"), f'"{created.etag}"')
    third = _update(client, _renamed(created, "Listed"), f'"0", W/"{second.etag}", "{second.etag}"')
    fourth = _update(client, _renamed(created, "Any"), "*")

    assert [second.name, third.name, fourth.name] == ["Quoted", "Listed", "Any"]


def test_a_weak_etag_never_satisfies_if_match(client: Client) -> None:
    created = _create(client, published(client.world))

    with pytest.raises(grpc.RpcError) as refused:
        _update(client, _renamed(created, "Weak"), f'W/"{created.etag}"')

    assert refused.value.code() == grpc.StatusCode.ABORTED


def test_a_malformed_if_match_is_invalid_argument_naming_it(client: Client) -> None:
    created = _create(client, published(client.world))

    for value in ('"unterminated', " , "):
        with pytest.raises(grpc.RpcError) as refused:
            _update(client, _renamed(created, "Never"), value)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(refused.value)) == {"if-match"}
    assert _get(client, created.id).name == created.name


def test_racing_updates_without_if_match_all_land_one_after_another(client: Client) -> None:
    # Each prepares on what it read; those that find it written meanwhile are done again on
    # the experiment as it is then: none is lost, none is answered twice for one version.
    created = _create(client, published(client.world))

    results = _race(RACERS, lambda n: _update(client, _renamed(created, f"Racer {n}"), None))

    assert _outcomes(results) == Counter(OK=RACERS)
    answers = [r for r in results if isinstance(r, pb.Experiment)]
    assert len({answer.etag for answer in answers}) == RACERS
    request = pb.ListExperimentRevisionsRequest(
        organization_id=client.org, experiment_id=created.id, page_size=RACERS + 1
    )
    revisions = client.stub.ListExperimentRevisions(request, metadata=client.metadata())
    assert sorted(r.revision for r in revisions.results) == list(range(1, RACERS + 2))
    named = {r.experiment.name for r in revisions.results if r.action == "updated"}
    assert named == {f"Racer {n}" for n in range(RACERS)}
    newest = max(revisions.results, key=lambda r: r.revision)
    assert _get(client, created.id).name == newest.experiment.name


def test_without_if_match_the_last_write_wins_as_before(client: Client) -> None:
    created = _create(client, published(client.world))

    _update(client, _renamed(created, "First"), None)
    last = _update(client, _renamed(created, "Last"), None)

    assert _get(client, created.id).name == last.name == "Last"


def test_an_etag_sent_in_the_body_is_ignored(client: Client) -> None:
    created = _create(client, published(client.world))
    _update(client, _renamed(created, "Moved on"), None)

    stale_body = _renamed(created, "Stale body")  # carries the old etag
    assert _update(client, stale_body, None).name == "Stale body"


def test_if_match_on_a_missing_experiment_is_not_found(client: Client) -> None:
    missing = published(client.world, id=str(uuid.uuid4()))

    with pytest.raises(grpc.RpcError) as refused:
        _update(client, missing, "*")

    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_ignores_if_none_match_and_returns_the_experiment(client: Client) -> None:
    created = _create(client, published(client.world))
    request = pb.GetExperimentRequest(organization_id=client.org, experiment_id=created.id)

    got, call = client.stub.GetExperiment.with_call(
        request, metadata=(*client.metadata(), ("if-none-match", f'"{created.etag}"'))
    )

    assert got == created
    assert (("etag", f'"{created.etag}"')) in call.initial_metadata()


def test_racing_creates_with_one_idempotency_key_create_one_experiment(
    client: Client, migrated_url: str
) -> None:
    experiment, key = published(client.world), str(uuid.uuid4())
    before = _experiments_stored(migrated_url, client.org)

    results = _race(RACERS, lambda _: _create(client, experiment, key))

    assert _outcomes(results) == Counter(OK=RACERS)
    assert len({r.id for r in results if isinstance(r, pb.Experiment)}) == 1
    assert _experiments_stored(migrated_url, client.org) == before + 1


def test_a_retried_create_returns_the_experiment_as_it_is_now(client: Client) -> None:
    experiment, key = published(client.world), str(uuid.uuid4())
    first = _create(client, experiment, key)
    updated = _update(client, _renamed(first, "Changed since"), None)

    assert _create(client, experiment, key) == updated


def test_an_idempotency_key_reused_for_another_body_is_invalid_argument(
    client: Client, migrated_url: str
) -> None:
    key = str(uuid.uuid4())
    _create(client, published(client.world), key)
    before = _experiments_stored(migrated_url, client.org)

    with pytest.raises(grpc.RpcError) as refused:
        _create(client, published(client.world, name="Another"), key)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused.value) == {"idempotency-key": messages.IDEMPOTENCY_KEY_REUSED}
    assert _experiments_stored(migrated_url, client.org) == before


def test_idempotency_keys_are_at_most_their_documented_length(client: Client) -> None:
    longest = "k" * IDEMPOTENCY_KEY_MAX_LENGTH

    assert _create(client, published(client.world), longest).id
    for refused_key in (longest + "k", ""):
        with pytest.raises(grpc.RpcError) as refused:
            _create(client, published(client.world), refused_key)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(refused.value)) == {"idempotency-key"}


def test_idempotency_keys_belong_to_their_user(client: Client) -> None:
    key = str(uuid.uuid4())
    mine = _create(client, published(client.world), key)

    theirs = _create(client, pb.Experiment(is_draft=True), key, who="other_organization")

    assert theirs.id != mine.id


def test_a_create_that_failed_leaves_its_key_free(client: Client) -> None:
    key = str(uuid.uuid4())
    with pytest.raises(grpc.RpcError):
        _create(client, published(client.world, name=""), key)

    assert _create(client, published(client.world), key).id


def test_an_expired_idempotency_key_creates_anew(migrated_url: str) -> None:
    with running_client(migrated_url) as client:  # creates the demo world, then stops
        world, api_key = client.world, client.world.tokens.settings
    engine = make_engine(migrated_url)
    read_engine = make_engine(migrated_url, read_only=True)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    service = ExperimentService(
        lambda: SqlAlchemyUnitOfWork(engine, renderer=RENDERER),
        lambda: SqlAlchemyReadUnitOfWork(read_engine),
        render=RENDERER.view,
        record=revision_record,
        clock=lambda: now,
    )
    data = experiment_input(published(world))
    organization = world.organization_id
    try:
        first = service.create(api_key, organization, data, "key")
        now += IDEMPOTENCY_KEY_LIFETIME - timedelta(seconds=1)
        retried = service.create(api_key, organization, data, "key")
        now += timedelta(seconds=2)
        after_expiry = service.create(api_key, organization, data, "key")
    finally:
        engine.dispose()
        read_engine.dispose()

    assert retried.id == first.id
    assert after_expiry.id != first.id
