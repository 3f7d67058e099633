"""Revisions, the change feed and the watch through a real server on port 0, on SQLite and
PostgreSQL: what the history keeps, how the feed pages and resumes, when a cursor is out of
range, and how a watch starts, re-checks its key and ends."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import text, update
from sqlalchemy.engine import make_url

from server.adapters.admin import revoke_api_key
from server.adapters.database import make_engine
from server.adapters.orm import OrganizationRecord
from server.domain import messages
from server.domain.feed import encode_position
from server.domain.pagination import Cursor, encode_revision_cursor
from server.entrypoints import admin
from server.service_layer.experiments import CATCH_UP_PAGE
from server.service_layer.ports import RevisionRecord
from tests.integration.databases import unit_of_work
from tests.integration.grpc_client import (
    PUBLIC_BASE_URL,
    Client,
    field_violations,
    published,
    running_client,
)
from tests.integration.locks import DEADLINE_SECONDS, someone_waits_for, until

# A quiet watch sends a heartbeat this often here (15 s by default): the tests read them.
HEARTBEAT_SECONDS = 0.2


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url, watch_heartbeat_seconds=HEARTBEAT_SECONDS) as running:
        yield running


def _create(client: Client, name: str = "Hello experiment", who: str = "settings") -> pb.Experiment:
    request = pb.CreateExperimentRequest(
        organization_id=client.org, experiment=published(client.world, name=name)
    )
    return client.stub.CreateExperiment(request, metadata=client.metadata(who))


def _update(client: Client, experiment: pb.Experiment) -> pb.Experiment:
    request = pb.UpdateExperimentRequest(
        organization_id=client.org, experiment_id=experiment.id, experiment=experiment
    )
    return client.stub.UpdateExperiment(request, metadata=client.metadata())


def _delete(client: Client, experiment_id: str) -> None:
    request = pb.DeleteExperimentRequest(organization_id=client.org, experiment_id=experiment_id)
    client.stub.DeleteExperiment(request, metadata=client.metadata())


def _revisions(
    client: Client, experiment_id: str, page_size: int = 0, cursor: str = ""
) -> pb.ListExperimentRevisionsResponse:
    request = pb.ListExperimentRevisionsRequest(
        organization_id=client.org, experiment_id=experiment_id, page_size=page_size, cursor=cursor
    )
    return client.stub.ListExperimentRevisions(request, metadata=client.metadata("no_settings"))


def _changes(
    client: Client, after: str = "", page_size: int = 0, organization: str | None = None
) -> pb.ListExperimentChangesResponse:
    request = pb.ListExperimentChangesRequest(
        organization_id=organization or client.org, after=after, page_size=page_size
    )
    who = "settings" if organization is None else "other_organization"
    return client.stub.ListExperimentChanges(request, metadata=client.metadata(who))


def _watch(
    client: Client, after: str = "", who: str = "settings"
) -> Iterator[pb.WatchExperimentChangesResponse]:
    request = pb.WatchExperimentChangesRequest(organization_id=client.org, after=after)
    stream: Iterator[pb.WatchExperimentChangesResponse] = client.stub.WatchExperimentChanges(
        request, metadata=client.metadata(who), timeout=DEADLINE_SECONDS
    )
    return stream


def _next_change(stream: Iterator[pb.WatchExperimentChangesResponse]) -> pb.ExperimentRevision:
    """The next change of a watch, past any heartbeat."""
    for message in stream:
        if message.WhichOneof("event") == "change":
            return message.change
    raise AssertionError("the watch ended")


def _ending(stream: Iterator[pb.WatchExperimentChangesResponse]) -> grpc.RpcError:
    """How the watch ends, reading (and dropping) what it sends until then."""
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stream:
            pass
    return ended.value


def _head(client: Client) -> str:
    """The feed's position now, as a watch starting now reports it."""
    stream = _watch(client)
    first = next(stream)
    stream.cancel()  # type: ignore[attr-defined]
    return first.heartbeat.cursor


# --- Revisions ---------------------------------------------------------------------------------


def test_a_deleted_experiment_keeps_its_revisions_newest_first_with_who_what_and_when(
    client: Client,
) -> None:
    created = _create(client)
    created.name = "Renamed"
    created.groups[0].percentage, created.groups[1].percentage = 80, 20
    updated = _update(client, created)
    _delete(client, created.id)

    deleted, changed, made = _revisions(client, created.id).results

    assert [(r.action, r.revision) for r in (deleted, changed, made)] == [
        ("deleted", 3),
        ("updated", 2),
        ("created", 1),
    ]
    assert [c.field for c in changed.changes] == [
        "name",
        "groups[0].percentage",
        "groups[1].percentage",
    ]
    name = changed.changes[0]
    assert (name.before.string_value, name.after.string_value) == ("Hello experiment", "Renamed")
    # Each shows the experiment after the change (a delete: as it was), as Get showed it.
    assert changed.experiment == updated and deleted.experiment == updated
    assert made.experiment.etag == "1" and made.experiment.name == "Hello experiment"
    users = {r.user_id for r in (deleted, changed, made)}
    assert users == {made.user.id} == {updated.updated_by_user_id}
    assert made.created_at == created.created_at
    assert deleted.organization_id == client.org and deleted.experiment_id == created.id


def test_putting_back_what_was_got_leaves_no_revision(client: Client) -> None:
    created = _create(client)

    again = _update(client, created)

    assert again.etag == created.etag and again.updated_at == created.updated_at
    assert [r.action for r in _revisions(client, created.id).results] == ["created"]


@pytest.mark.parametrize("who", ["other_organization_experiment", "never"])
def test_revisions_of_an_experiment_the_organization_never_had_are_not_found(
    client: Client, who: str
) -> None:
    experiment_id = "e0000000-0000-4000-8000-00000000dead"
    if who == "other_organization_experiment":
        theirs = pb.Experiment(is_draft=True)
        request = pb.CreateExperimentRequest(
            organization_id=client.world.other_organization_id, experiment=theirs
        )
        experiment_id = client.stub.CreateExperiment(
            request, metadata=client.metadata("other_organization")
        ).id

    with pytest.raises(grpc.RpcError) as missing:
        _revisions(client, experiment_id)

    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == messages.EXPERIMENT_NOT_FOUND


def test_revisions_are_paged_like_the_list(client: Client) -> None:
    created = _create(client)
    for n in range(4):
        created.name = f"Name {n}"
        created = _update(client, created)

    first = _revisions(client, created.id, page_size=2)
    second = _revisions(client, created.id, page_size=2, cursor=first.next_cursor)
    last = _revisions(client, created.id, page_size=2, cursor=second.next_cursor)
    back = _revisions(client, created.id, page_size=2, cursor=last.previous_cursor)

    pages = [[r.revision for r in page.results] for page in (first, second, last, back)]
    assert pages == [[5, 4], [3, 2], [1], [3, 2]]
    assert (first.previous, last.next, last.next_cursor) == ("", "", "")
    link = urlparse(first.next)
    assert f"{link.scheme}://{link.netloc}" == PUBLIC_BASE_URL
    assert link.path == f"/api/v5/orgs/{client.org}/experiments/{created.id}/revisions"
    assert parse_qs(link.query) == {"cursor": [first.next_cursor], "page_size": ["2"]}


# --- The feed ----------------------------------------------------------------------------------


def test_the_feed_pages_through_exactly_the_organizations_changes_in_order(client: Client) -> None:
    start = _head(client)
    ours = [_create(client, f"Ours {n}") for n in range(5)]
    theirs = pb.CreateExperimentRequest(
        organization_id=client.world.other_organization_id, experiment=pb.Experiment(is_draft=True)
    )
    client.stub.CreateExperiment(theirs, metadata=client.metadata("other_organization"))
    _delete(client, ours[0].id)

    seen: list[pb.ExperimentRevision] = []
    cursor, pages = start, 0
    while True:
        page = _changes(client, after=cursor, page_size=2)
        assert page.next_cursor, "a page always says where to continue"
        if not page.results:
            break
        seen += page.results
        cursor, pages = page.next_cursor, pages + 1

    assert pages == 3
    assert [(r.experiment_id, r.action) for r in seen] == [
        *((e.id, "created") for e in ours),
        (ours[0].id, "deleted"),
    ]
    # Each change's cursor resumes right after it.
    assert [r.experiment_id for r in _changes(client, after=seen[2].cursor).results] == [
        ours[3].id,
        ours[4].id,
        ours[0].id,
    ]
    # The other organization sees its own change only, from the same cursor.
    other = client.world.other_organization_id
    assert [
        r.organization_id for r in _changes(client, after=start, organization=other).results
    ] == [other]


def test_a_malformed_feed_cursor_is_invalid_naming_the_field(client: Client) -> None:
    for after in ("not-a-cursor", encode_revision_cursor(Cursor(1))):
        with pytest.raises(grpc.RpcError) as refused:
            _changes(client, after=after)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(refused.value) == {"after": messages.INVALID_FEED_CURSOR}


def test_a_cursor_beyond_the_feed_is_out_of_range(client: Client) -> None:
    ahead = encode_position(10**12)

    with pytest.raises(grpc.RpcError) as refused:
        _changes(client, after=ahead)
    assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert refused.value.details() == messages.CURSOR_AHEAD
    assert _ending(_watch(client, after=ahead)).code() == grpc.StatusCode.OUT_OF_RANGE


def test_after_pruning_older_cursors_are_out_of_range_and_the_feed_starts_at_what_is_kept(
    client: Client,
    migrated_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before_old = _head(client)
    old = _create(client, "Old")
    after_old = _head(client)
    cutoff = datetime.now(UTC) + timedelta(seconds=1)  # after every revision so far
    monkeypatch.setenv("EXPERIMENTS_DATABASE_URL", migrated_url)
    assert admin.main(["prune-history", "--before", cutoff.isoformat()]) == 0
    pruned = json.loads(capsys.readouterr().out)
    new = _create(client, "New")

    assert pruned == {"revisions_deleted": 1, "oldest_valid_cursor": after_old}
    with pytest.raises(grpc.RpcError) as refused:
        _changes(client, after=before_old)
    assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert refused.value.details() == messages.CURSOR_TOO_OLD
    assert _ending(_watch(client, after=before_old)).code() == grpc.StatusCode.OUT_OF_RANGE
    # The history kept is served: from its start, and from the oldest valid cursor.
    assert [r.experiment_id for r in _changes(client).results] == [new.id]
    assert [r.experiment_id for r in _changes(client, after=after_old).results] == [new.id]
    # The pruned experiment still exists; its history is empty now, not missing.
    assert list(_revisions(client, old.id).results) == []


# --- The watch ---------------------------------------------------------------------------------


def test_a_watch_first_says_where_it_starts_then_sends_what_came_after_in_order(
    client: Client,
) -> None:
    start = _head(client)
    first = _create(client, "First")
    second = _create(client, "Second")

    stream = _watch(client, after=start)
    opening = next(stream)
    changes = [_next_change(stream), _next_change(stream)]
    third = _create(client, "Third")
    changes.append(_next_change(stream))
    stream.cancel()  # type: ignore[attr-defined]

    assert opening.WhichOneof("event") == "heartbeat" and opening.heartbeat.cursor == start
    assert [c.experiment_id for c in changes] == [first.id, second.id, third.id]
    assert [c.cursor for c in changes] == [r.cursor for r in _changes(client, after=start).results]


def test_a_watch_from_now_starts_at_the_last_change_and_heartbeats_while_quiet(
    client: Client,
) -> None:
    made = _create(client)
    last = _changes(client).results[-1]

    stream = _watch(client)
    opening, quiet = next(stream), next(stream)
    stream.cancel()  # type: ignore[attr-defined]

    assert opening.heartbeat.cursor == last.cursor and last.experiment_id == made.id
    assert quiet.WhichOneof("event") == "heartbeat" and quiet.heartbeat.cursor == last.cursor


def test_a_watch_resumed_from_a_cursor_misses_nothing_and_repeats_nothing(client: Client) -> None:
    start = _head(client)
    stream = _watch(client, after=start)
    made = [_create(client, f"E{n}") for n in range(3)]
    got = [_next_change(stream)]
    stream.cancel()  # type: ignore[attr-defined]
    made.append(_create(client, "While away"))

    resumed = _watch(client, after=got[-1].cursor)
    assert next(resumed).heartbeat.cursor == got[-1].cursor
    got += [_next_change(resumed) for _ in range(3)]
    resumed.cancel()  # type: ignore[attr-defined]

    assert [c.experiment_id for c in got] == [e.id for e in made]


def test_a_watch_from_before_the_server_started_catches_up_from_the_database_page_by_page(
    client: Client, migrated_url: str
) -> None:
    start = _head(client)
    made = [_create(client, f"E{n}") for n in range(CATCH_UP_PAGE + 3)]

    # A server started now holds nothing older in memory: all of it comes from the database.
    with running_client(migrated_url) as later:
        request = pb.WatchExperimentChangesRequest(organization_id=client.org, after=start)
        stream = later.stub.WatchExperimentChanges(
            request, metadata=client.metadata(), timeout=DEADLINE_SECONDS
        )
        assert next(stream).heartbeat.cursor == start
        got = [_next_change(stream) for _ in made]
        stream.cancel()

    assert [c.experiment_id for c in got] == [e.id for e in made]


def test_a_watch_of_another_organization_or_with_a_bad_cursor_is_refused_before_it_starts(
    client: Client,
) -> None:
    denied = _ending(_watch(client, who="other_organization"))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = _ending(_watch(client, after="nope"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(bad) == {"after": messages.INVALID_FEED_CURSOR}
    request = pb.WatchExperimentChangesRequest(organization_id=client.org)
    anonymous = client.stub.WatchExperimentChanges(request, timeout=DEADLINE_SECONDS)
    assert _ending(anonymous).code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("lost", ["revoked key", "lapsed subscription"])
def test_a_watch_ends_once_its_key_is_revoked_or_its_access_lost(
    migrated_url: str, lost: str
) -> None:
    with running_client(
        migrated_url, watch_heartbeat_seconds=HEARTBEAT_SECONDS, auth_cache_seconds=0.5
    ) as client:
        stream = _watch(client)
        assert next(stream).WhichOneof("event") == "heartbeat"
        engine = make_engine(migrated_url)
        try:
            with engine.begin() as connection:
                if lost == "revoked key":
                    revoke_api_key(connection, client.world.tokens.settings)
                else:
                    connection.execute(
                        update(OrganizationRecord)
                        .where(OrganizationRecord.id == uuid.UUID(client.org))
                        .values(has_active_subscription=False)
                    )
        finally:
            engine.dispose()

        ended = _ending(stream)

    expected = {
        "revoked key": grpc.StatusCode.UNAUTHENTICATED,
        "lapsed subscription": grpc.StatusCode.PERMISSION_DENIED,
    }
    assert ended.code() == expected[lost]


def test_a_stopping_server_ends_its_watches_at_once_with_unavailable(migrated_url: str) -> None:
    with running_client(migrated_url) as client:  # heartbeats every 15 s: nothing else would end it
        stream = _watch(client)
        assert next(stream).WhichOneof("event") == "heartbeat"
        # A generous grace: the watch must not hold the server for it.
        stopping = threading.Thread(target=client.server.stop, kwargs={"grace": DEADLINE_SECONDS})
        stopping.start()
        ended = _ending(stream)
        stopping.join()

    assert ended.code() == grpc.StatusCode.UNAVAILABLE
    assert ended.details() == messages.STOPPING


# --- Commit order ------------------------------------------------------------------------------


def _someone_waits_for_the_feed(url: str) -> Callable[[], bool]:
    """Whether a writer of the server waits to append its revision: on PostgreSQL for the feed's
    advisory lock, on SQLite for the writer lock."""
    if make_url(url).get_backend_name() == "sqlite":
        lock_file = Path(f"{make_url(url).database}.writer-lock")
        return lambda: someone_waits_for(lock_file)
    observer = make_engine(url, read_only=True)

    def waiting() -> bool:
        with observer.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                )
            ).scalar_one()
        return bool(found)

    return waiting


def test_a_write_draws_its_feed_position_only_once_an_earlier_open_one_has_committed(
    client: Client, migrated_url: str
) -> None:
    start = _head(client)
    engine = make_engine(migrated_url)
    experiment_id = uuid.uuid4()
    earlier = RevisionRecord(
        uuid.UUID(client.org),
        experiment_id,
        1,
        "created",
        uuid.uuid4(),
        datetime.now(UTC),
        pb.ExperimentRevision(
            experiment_id=str(experiment_id), action="created", revision=1
        ).SerializeToString(),
    )
    waits = _someone_waits_for_the_feed(migrated_url)
    try:
        with unit_of_work(engine) as open_write:
            open_write.revisions.append([earlier])  # its position drawn, not committed
            later = threading.Thread(target=_create, args=(client, "Later"))
            later.start()
            until(waits, "the later write to wait for the earlier one")
            assert list(_changes(client, after=start).results) == []  # neither is visible
            open_write.commit()
        later.join()
    finally:
        engine.dispose()

    feed = _changes(client, after=start).results
    assert [r.action for r in feed] == ["created", "created"]
    assert feed[0].experiment_id == str(earlier.experiment_id)
    assert feed[1].experiment.name == "Later"
