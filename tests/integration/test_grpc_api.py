"""The gRPC API through a real server on port 0, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import Engine, event, text

from server.adapters import schema
from server.adapters.database import make_engine
from server.domain import messages
from server.entrypoints.grpc_server import PortInUse, build_server
from tests.integration.grpc_client import (
    PUBLIC_BASE_URL,
    Client,
    field_violations,
    published,
    running_client,
)


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url) as running:
        yield running


def _create(client: Client, experiment: pb.Experiment, who: str = "settings") -> pb.Experiment:
    request = pb.CreateExperimentRequest(organization_id=client.org, experiment=experiment)
    return client.stub.CreateExperiment(request, metadata=client.metadata(who))


def _get(client: Client, experiment_id: str, who: str = "settings") -> pb.Experiment:
    request = pb.GetExperimentRequest(organization_id=client.org, experiment_id=experiment_id)
    return client.stub.GetExperiment(request, metadata=client.metadata(who))


def _update(client: Client, experiment: pb.Experiment, who: str = "settings") -> pb.Experiment:
    request = pb.UpdateExperimentRequest(
        organization_id=client.org, experiment_id=experiment.id, experiment=experiment
    )
    return client.stub.UpdateExperiment(request, metadata=client.metadata(who))


def _list(client: Client, page_size: int = 0, cursor: str = "") -> pb.ListExperimentsResponse:
    request = pb.ListExperimentsRequest(
        organization_id=client.org, page_size=page_size, cursor=cursor
    )
    return client.stub.ListExperiments(request, metadata=client.metadata())


def _fails(call: object, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)  # type: ignore[operator]
    return raised.value


# --- the five RPCs -------------------------------------------------------------------------


def test_created_experiment_is_returned_with_every_documented_attribute(client: Client) -> None:
    created = _create(client, published(client.world))

    assert str(uuid.UUID(created.id)) == created.id  # a canonical UUID
    assert created.is_draft is False
    assert created.name == "Hello experiment"
    assert created.organization_id == client.org
    assert created.organization.id == client.org
    assert created.goal_id == client.world.goal_id
    assert created.goal.id == created.goal_id and created.goal.organization.id == client.org
    assert list(created.room_ids) == [str(r) for r in client.world.room_ids]
    assert [room.id for room in created.rooms] == list(created.room_ids)
    assert created.group_reset_interval == "1w"
    assert created.created_by_user_id == created.created_by_user.id == created.updated_by_user_id
    assert created.created_by_user.full_name
    assert created.HasField("created_at") and created.HasField("updated_at")
    assert created.starts_at.ToJsonString() == "2099-05-08T13:02:35.123Z"
    assert not created.HasField("ends_at")
    assert [(g.order, g.name, g.percentage) for g in created.groups] == [(0, "A", 90), (1, "B", 10)]
    assert created.groups[0].group_type.string_value == "control"
    assert created.groups[0].treatment["name"] == "Rule-A"
    assert [str(uuid.UUID(g.id)) for g in created.groups] == [g.id for g in created.groups]


def test_create_answers_grpc_clients_without_a_rest_status(client: Client) -> None:
    # The gateway knows each RPC's REST status (server/entrypoints/rest_statuses.py): none
    # travels to gRPC clients in the response metadata.
    request = pb.CreateExperimentRequest(
        organization_id=client.org, experiment=published(client.world)
    )
    _, call = client.stub.CreateExperiment.with_call(request, metadata=client.metadata())
    names = {name for name, _ in call.initial_metadata()}
    assert "location" in names and "x-http-code" not in names


def test_get_returns_what_create_stored(client: Client) -> None:
    created = _create(client, published(client.world))
    assert _get(client, created.id) == created


def test_draft_needs_nothing_but_is_draft_and_defaults_the_reset_interval(client: Client) -> None:
    draft = _create(client, pb.Experiment(is_draft=True))
    assert draft.is_draft is True
    assert draft.group_reset_interval == "full"
    assert not draft.HasField("goal_id") and not draft.HasField("name")


def test_update_returns_and_stores_the_change(client: Client) -> None:
    created = _create(client, published(client.world))
    created.name = "Renamed"
    updated = _update(client, created)
    assert updated.name == "Renamed"
    assert _get(client, created.id).name == "Renamed"
    assert updated.groups[0].id == created.groups[0].id


def test_putting_back_what_was_got_changes_nothing_not_even_the_etag_or_updated_at(
    client: Client,
) -> None:
    created = _create(client, published(client.world))
    got = _get(client, created.id)
    updated = _update(client, got)
    assert updated == got  # a no-op: the same etag and updated_at, and no revision (see history)
    assert _get(client, created.id) == got


def test_putting_back_a_started_experiment_is_accepted(client: Client) -> None:
    experiment = published(client.world)
    experiment.starts_at.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    created = _create(client, experiment)
    got = _get(client, created.id)
    got.groups[0].name = "Renamed A"
    got.groups[0].percentage, got.groups[1].percentage = 50, 50
    updated = _update(client, got)
    assert [(g.name, g.percentage) for g in updated.groups] == [("Renamed A", 50), ("B", 50)]


def test_read_only_attributes_of_a_started_experiment_are_rejected_by_name(client: Client) -> None:
    experiment = published(client.world)
    experiment.starts_at.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    created = _create(client, experiment)
    changed = _get(client, created.id)
    changed.goal_id = client.world.goal_id.replace(client.world.goal_id[:8], "0" * 8)
    changed.group_reset_interval = "1d"
    changed.groups[1].group_type.string_value = "target_random"
    error = _fails(_update, client, changed)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(error)
    assert set(violations) >= {"goal_id", "group_reset_interval", "groups[1].group_type"}
    assert violations["goal_id"] == messages.READ_ONLY_AFTER_START


def test_delete_removes_the_experiment(client: Client) -> None:
    created = _create(client, published(client.world))
    request = pb.DeleteExperimentRequest(organization_id=client.org, experiment_id=created.id)
    _, call = client.stub.DeleteExperiment.with_call(request, metadata=client.metadata())
    assert "x-http-code" not in {name for name, _ in call.initial_metadata()}
    error = _fails(_get, client, created.id)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == messages.EXPERIMENT_NOT_FOUND


def test_list_returns_the_organizations_experiments_newest_first(client: Client) -> None:
    ids = [_create(client, published(client.world, name=f"E{n}")).id for n in range(3)]
    page = _list(client)
    assert [e.id for e in page.results] == list(reversed(ids))
    assert page.next == "" and page.previous == ""


# --- pagination ------------------------------------------------------------------------------


def _cursor_of(url: str) -> str:
    query = parse_qs(urlparse(url).query)
    return query["cursor"][0]


def test_pages_follow_next_to_the_end_and_previous_back_without_gaps(client: Client) -> None:
    ids = [_create(client, pb.Experiment(is_draft=True, name=f"E{n}")).id for n in range(7)]
    newest_first = list(reversed(ids))

    pages = [_list(client, page_size=3)]
    while pages[-1].next:
        assert pages[-1].next.startswith(f"{PUBLIC_BASE_URL}/api/v5/orgs/{client.org}/experiments?")
        assert parse_qs(urlparse(pages[-1].next).query)["page_size"] == ["3"]
        pages.append(_list(client, page_size=3, cursor=_cursor_of(pages[-1].next)))

    assert [[e.id for e in p.results] for p in pages] == [
        newest_first[0:3],
        newest_first[3:6],
        newest_first[6:7],
    ]
    assert pages[0].previous == ""
    back = _list(client, page_size=3, cursor=_cursor_of(pages[-1].previous))
    assert [e.id for e in back.results] == newest_first[3:6]
    first = _list(client, page_size=3, cursor=_cursor_of(back.previous))
    assert [e.id for e in first.results] == newest_first[0:3]
    assert first.previous == ""


def test_page_size_is_capped_at_the_documented_maximum(client: Client) -> None:
    for n in range(3):
        _create(client, pb.Experiment(is_draft=True, name=f"E{n}"))
    assert len(_list(client, page_size=10_000).results) == 3


def test_a_tampered_cursor_is_rejected_by_name(client: Client) -> None:
    error = _fails(_list, client, cursor="not-a-cursor")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"cursor": messages.INVALID_CURSOR}


# --- every status code ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Token wrong-key"),), (("authorization", "Bearer x"),)],
    ids=["no key", "unknown key", "other scheme"],
)
def test_requests_without_a_valid_key_are_unauthenticated(
    client: Client, metadata: tuple[tuple[str, str], ...]
) -> None:
    request = pb.ListExperimentsRequest(organization_id=client.org)
    error = _fails(client.stub.ListExperiments, request, metadata=metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == messages.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("who", "organization", "message"),
    [
        ("other_organization", "organization_id", messages.NO_ORGANIZATION_ACCESS),
        ("inactive_subscription", "inactive_organization_id", messages.NO_ACTIVE_SUBSCRIPTION),
    ],
)
def test_reads_need_access_to_the_organization_and_an_active_subscription(
    client: Client, who: str, organization: str, message: str
) -> None:
    request = pb.ListExperimentsRequest(organization_id=getattr(client.world, organization))
    error = _fails(client.stub.ListExperiments, request, metadata=client.metadata(who))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == message


def test_a_user_without_settings_permission_can_read_but_not_change(client: Client) -> None:
    created = _create(client, published(client.world))
    assert _get(client, created.id, who="no_settings").id == created.id

    for error in [
        _fails(_create, client, published(client.world), "no_settings"),
        _fails(_update, client, created, "no_settings"),
        _fails(
            client.stub.DeleteExperiment,
            pb.DeleteExperimentRequest(organization_id=client.org, experiment_id=created.id),
            metadata=client.metadata("no_settings"),
        ),
    ]:
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error.details() == messages.NO_SETTINGS_PERMISSION


def test_permission_is_checked_before_existence(client: Client) -> None:
    request = pb.DeleteExperimentRequest(
        organization_id=client.org, experiment_id=str(uuid.uuid4())
    )
    error = _fails(client.stub.DeleteExperiment, request, metadata=client.metadata("no_settings"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


# Named ids: the random UUID differs between pytest-xdist workers, which must collect alike.
@pytest.mark.parametrize(
    "experiment_id", [str(uuid.uuid4()), "not-a-uuid", ""], ids=["uuid", "not-a-uuid", "empty"]
)
def test_unknown_experiments_are_not_found(client: Client, experiment_id: str) -> None:
    for call in (_get, lambda c, i: _update(c, pb.Experiment(id=i, is_draft=True))):
        error = _fails(call, client, experiment_id)
        assert error.code() == grpc.StatusCode.NOT_FOUND


def test_existence_is_checked_before_validation(client: Client) -> None:
    error = _fails(_update, client, pb.Experiment(id=str(uuid.uuid4())))  # no is_draft either
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_another_organizations_experiment_cannot_be_read_changed_or_listed(client: Client) -> None:
    created = _create(client, published(client.world))
    outsider = client.metadata("other_organization")
    other_org = client.world.other_organization_id

    error = _fails(
        client.stub.GetExperiment,
        pb.GetExperimentRequest(organization_id=client.org, experiment_id=created.id),
        metadata=outsider,
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Through its own organization's path, the outsider cannot even learn that it exists.
    for call, request in [
        (
            client.stub.GetExperiment,
            pb.GetExperimentRequest(organization_id=other_org, experiment_id=created.id),
        ),
        (
            client.stub.DeleteExperiment,
            pb.DeleteExperimentRequest(organization_id=other_org, experiment_id=created.id),
        ),
    ]:
        assert _fails(call, request, metadata=outsider).code() == grpc.StatusCode.NOT_FOUND
    listed = client.stub.ListExperiments(
        pb.ListExperimentsRequest(organization_id=other_org), metadata=outsider
    )
    assert created.id not in [e.id for e in listed.results]
    assert _get(client, created.id).id == created.id


def test_another_organizations_goal_is_rejected(client: Client) -> None:
    experiment = published(client.world, goal_id=client.world.other_organization_goal_id)
    error = _fails(_create, client, experiment)
    assert field_violations(error) == {"goal_id": messages.GOAL_NOT_IN_ORGANIZATION}


def test_every_offending_field_is_named_at_once_and_nothing_is_written(client: Client) -> None:
    experiment = published(client.world, name="", room_ids=["nope", str(uuid.uuid4())])
    experiment.groups[1].percentage = 101
    experiment.groups[0].group_type.string_value = "winner"
    experiment.ends_at.FromJsonString("2000-01-01T00:00:00Z")
    error = _fails(_create, client, experiment)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == messages.INVALID_REQUEST
    assert field_violations(error) == {
        "name": messages.BLANK,
        "room_ids[0]": messages.NOT_A_UUID,
        "room_ids[1]": messages.ROOM_NOT_IN_ORGANIZATION,
        "groups[0].group_type": messages.GROUP_TYPE_CHOICES,
        "groups[1].percentage": messages.PERCENTAGE_RANGE,
        "ends_at": messages.ENDS_BEFORE_START,
    }
    assert list(_list(client).results) == []


def test_missing_required_attributes_are_named(client: Client) -> None:
    error = _fails(_create, client, pb.Experiment(is_draft=False, groups=[pb.Group()]))
    assert set(field_violations(error)) == {
        "name",
        "goal_id",
        "starts_at",
        "groups[0].name",
        "groups[0].percentage",
        "groups[0].group_type",
    }
    assert set(field_violations(_fails(_create, client, pb.Experiment()))) == {"is_draft"}


def test_ended_experiment_can_no_longer_be_updated(client: Client) -> None:
    experiment = published(client.world)
    experiment.starts_at.FromJsonString("2019-05-08T13:02:35.123Z")
    experiment.ends_at.FromJsonString("2019-05-22T13:02:35.123Z")
    created = _create(client, experiment)
    assert field_violations(_fails(_update, client, created)) == {
        "ends_at": messages.EXPERIMENT_ENDED
    }


def test_draft_whose_end_has_passed_can_be_edited_but_not_published(client: Client) -> None:
    draft = pb.Experiment(is_draft=True, name="Old idea")
    draft.ends_at.FromJsonString("2019-05-22T13:02:35.123Z")
    created = _create(client, draft)
    created.name = "Old idea, revisited"

    assert _update(client, created).name == "Old idea, revisited"

    experiment = published(client.world)
    experiment.ends_at.FromJsonString("2019-05-22T13:02:35.123Z")
    experiment.starts_at.FromJsonString("2019-05-08T13:02:35.123Z")
    experiment.id = created.id
    assert field_violations(_fails(_update, client, experiment)) == {
        "ends_at": messages.ENDS_IN_THE_PAST
    }


def test_group_type_may_be_null_but_not_missing_when_published(client: Client) -> None:
    experiment = published(client.world)
    experiment.groups[1].group_type.null_value = struct_pb2.NULL_VALUE
    created = _create(client, experiment)
    assert created.groups[1].group_type.WhichOneof("kind") == "null_value"
    experiment.groups[1].ClearField("group_type")
    assert set(field_violations(_fails(_create, client, experiment))) == {"groups[1].group_type"}


# --- a fixed number of queries ----------------------------------------------------------------
# (A Get runs one fixed statement on the DBAPI cursor, which SQLAlchemy's events do not see:
# server/adapters/views.py, _RawSelect.)


def _queries(call: object) -> list[str]:
    statements: list[str] = []
    background = {"feed-follower", "access-checks"}  # they poll on their own clock

    def record(*args: object) -> None:
        if threading.current_thread().name not in background:
            statements.append(str(args[2]))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        call()  # type: ignore[operator]
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return statements


def _count_queries(call: object) -> int:
    return len(_queries(call))


def test_a_list_page_costs_the_same_queries_whatever_the_table_size(client: Client) -> None:
    for _ in range(2):
        _create(client, published(client.world))
    few = _count_queries(lambda: _list(client))
    for _ in range(28):
        _create(client, published(client.world))
    assert _count_queries(lambda: _list(client)) == few
    cursor = _cursor_of(_list(client, 5).next)
    assert _count_queries(lambda: _list(client, cursor=cursor)) == few


def test_a_create_looks_up_its_goal_and_rooms_in_one_statement(client: Client) -> None:
    statements = _queries(lambda: _create(client, published(client.world)))
    lookups = [s for s in statements if re.search(r"FROM (goals|rooms)\b", s)]
    assert len(lookups) == 1, lookups


# --- server behaviour ---------------------------------------------------------------------------


def test_health_service_reports_serving_and_reflection_lists_the_service(client: Client) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "experiments.v5.ExperimentService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in next(answers).list_services_response.service}
    assert "experiments.v5.ExperimentService" in names


def test_a_database_fault_is_answered_internal_without_its_text(
    client: Client, migrated_url: str
) -> None:
    created = _create(client, published(client.world))
    engine = make_engine(migrated_url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE experiment_views"))  # what reads read
    engine.dispose()
    error = _fails(_get, client, created.id)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == messages.INTERNAL


def test_stopping_reports_not_serving_before_closing(migrated_url: str) -> None:
    with running_client(migrated_url) as running:
        # A watcher, as Envoy's health check or a load balancer keeps one: it must hear
        # NOT_SERVING from our stop() while the server still drains, not just see it close.
        watch = health_pb2_grpc.HealthStub(running.channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopping = threading.Thread(target=running.server.stop, kwargs={"grace": 1})
        stopping.start()
        try:
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            stopping.join()


def test_a_port_held_by_another_program_is_refused_not_shared(tmp_path: Path) -> None:
    # The port is the same whatever the database: SQLite only (each try starts a Python process).
    url = f"sqlite:///{tmp_path / 'experiments.sqlite3'}"
    schema.upgrade(url)
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        for workers in ("1", "2"):
            finished = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "server.entrypoints.grpc_server",
                    "--port",
                    str(port),
                    "--workers",
                    workers,
                ],
                env={"EXPERIMENTS_DATABASE_URL": url, "PATH": ""},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert finished.returncode != 0
            assert f"127.0.0.1:{port} is already in use" in finished.stderr


def test_build_server_refuses_a_port_in_use(migrated_url: str) -> None:
    from server.config import Settings

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        settings = Settings(database_url=migrated_url, grpc_port=other.getsockname()[1], workers=1)
        with pytest.raises(PortInUse):
            build_server(settings)


def test_a_treatment_comes_back_exactly_as_it_was_sent(client: Client) -> None:
    from google.protobuf import json_format

    sent = {
        "name": "Rule-A",
        "actions": [{"type": "show_banner", "delay": 1.5, "flags": [True, None, "x"]}, "plain"],
        "conditions": [{"visits": {"gte": 3}}, 7, False],
        # Keys beyond name/actions/conditions are the client's too.
        "id": 4711,
        "priority": 3,
        "meta": {"owner": None, "tags": []},
    }
    experiment = published(client.world)
    json_format.ParseDict(sent, experiment.groups[0].treatment)
    created = _create(client, experiment)
    got = _get(client, created.id)
    assert json_format.MessageToDict(got.groups[0].treatment) == sent
    assert json_format.MessageToDict(got.groups[1].treatment) == {}
    assert not got.groups[1].HasField("treatment")
