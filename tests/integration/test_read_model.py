"""The read model (experiment_views) agrees with the tables it projects, on SQLite and PostgreSQL.

Every write keeps it current; what the write path cannot see (a name changed in the
database by hand, a new rendering of the message) `experiments-admin rebuild-read-model`
and `experiments-admin migrate` repair.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import select, text, update

from server.adapters import database
from server.adapters.orm import ExperimentRecord, ExperimentViewRecord, GoalRecord, UserRecord
from server.adapters.repositories.experiments import SqlAlchemyExperimentRepository
from server.entrypoints import admin
from server.entrypoints.translate import RENDERER
from tests.integration.grpc_client import Client, published, running_client


@pytest.fixture
def client(migrated_url: str) -> Iterator[Client]:
    with running_client(migrated_url) as running:
        yield running


def _seed(client: Client) -> list[str]:
    """Experiments written every way the API writes: created, updated, deleted, drafts."""
    metadata = client.metadata()
    created = [
        client.stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=client.org, experiment=published(client.world, name=f"E{n}")
            ),
            metadata=metadata,
        )
        for n in range(6)
    ]
    draft = client.stub.CreateExperiment(
        pb.CreateExperimentRequest(
            organization_id=client.org, experiment=pb.Experiment(is_draft=True)
        ),
        metadata=metadata,
    )
    renamed = published(client.world, name="Renamed", room_ids=client.world.room_ids[:1])
    regrouped = published(client.world, groups=[pb.Group(name="All", percentage=100)])
    keyed = (*metadata, ("idempotency-key", "read-model"))
    draft_keyed = pb.CreateExperimentRequest(
        organization_id=client.org, experiment=pb.Experiment(is_draft=True, name="Keyed")
    )
    created.append(client.stub.CreateExperiment(draft_keyed, metadata=keyed))
    # One update per way a write changes groups and rooms; the second and third with If-Match.
    for experiment, body, if_match in (
        (created[0], renamed, ()),
        (created[2], regrouped, (("if-match", f'"{created[2].etag}"'),)),
        (created[-1], published(client.world, name="Grown"), (("if-match", "*"),)),
    ):
        client.stub.UpdateExperiment(
            pb.UpdateExperimentRequest(
                organization_id=client.org, experiment_id=experiment.id, experiment=body
            ),
            metadata=(*metadata, *if_match),
        )
    client.stub.DeleteExperiment(
        pb.DeleteExperimentRequest(organization_id=client.org, experiment_id=created[1].id),
        metadata=metadata,
    )
    return [e.id for e in created if e.id != created[1].id] + [draft.id]


def _stale(url: str) -> list[uuid.UUID]:
    """The experiments whose stored view is missing, of another render version or not byte
    for byte a fresh render of the experiment as loaded: none when the read model agrees with
    the tables it projects (rendering is deterministic, so a render by another process, such
    as the server that wrote the view, gives the same bytes)."""
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            stored = {
                row.experiment_id: row
                for row in connection.execute(select(ExperimentViewRecord.__table__))
            }
            repository = SqlAlchemyExperimentRepository(connection)
            keys = connection.execute(select(ExperimentRecord.organization_id, ExperimentRecord.id))
            experiments = [repository.get(org, id_) for org, id_ in keys.all()]
    finally:
        engine.dispose()
    return [
        experiment.id
        for experiment in experiments
        if experiment is not None
        and _row_of(stored.get(experiment.id))
        != (
            experiment.organization.id,
            experiment.created_at,
            experiment.version,
            RENDERER.version,
            RENDERER.render(experiment),
        )
    ]


def _row_of(row: Any) -> tuple[Any, ...] | None:
    if row is None:
        return None
    return (row.organization_id, row.created_at, row.version, row.render_version, row.message)


def _execute(url: str, statement: object) -> None:
    engine = database.make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(statement)  # type: ignore[call-overload]
    finally:
        engine.dispose()


def _admin(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> dict[str, object]:
    monkeypatch.setenv("EXPERIMENTS_DATABASE_URL", url)
    assert admin.main([command]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result, dict)
    return result


def _get(client: Client, experiment_id: str) -> pb.Experiment:
    request = pb.GetExperimentRequest(organization_id=client.org, experiment_id=experiment_id)
    return client.stub.GetExperiment(request, metadata=client.metadata())


def test_every_stored_view_equals_a_fresh_render_of_its_experiment(
    client: Client, migrated_url: str
) -> None:
    ids = _seed(client)

    assert _stale(migrated_url) == []
    listed = client.stub.ListExperiments(
        pb.ListExperimentsRequest(organization_id=client.org, page_size=100),
        metadata=client.metadata(),
    )
    assert sorted(e.id for e in listed.results) == sorted(ids)


def test_rebuild_command_renders_names_changed_behind_the_write_path(
    client: Client,
    migrated_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = _seed(client)
    goal_id = uuid.UUID(client.world.goal_id)
    _execute(migrated_url, update(GoalRecord).where(GoalRecord.id == goal_id).values(name="Paid"))
    _execute(migrated_url, update(UserRecord).values(first_name="Renamed"))
    assert _get(client, ids[0]).goal.name != "Paid"  # the view still shows the old name
    assert len(_stale(migrated_url)) == len(ids)

    result = _admin(migrated_url, capsys, monkeypatch, "rebuild-read-model")

    assert result == {"views_rendered": len(ids)}
    assert _stale(migrated_url) == []
    read = _get(client, ids[0])
    assert (read.goal.name, read.created_by_user.first_name) == ("Paid", "Renamed")


def test_migrate_renders_views_of_another_render_version_and_missing_ones(
    client: Client,
    migrated_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = _seed(client)
    # As if an older release had rendered two of them, and none of the others yet.
    _execute(migrated_url, update(ExperimentViewRecord).values(render_version=0))
    _execute(
        migrated_url,
        text("DELETE FROM experiment_views WHERE experiment_id NOT IN (:a, :b)").bindparams(
            a=_stored_id(migrated_url, ids[0]), b=_stored_id(migrated_url, ids[1])
        ),
    )
    assert len(_stale(migrated_url)) == len(ids)

    result = _admin(migrated_url, capsys, monkeypatch, "migrate")
    again = _admin(migrated_url, capsys, monkeypatch, "migrate")

    assert (result["views_rendered"], again["views_rendered"]) == (len(ids), 0)
    assert _stale(migrated_url) == []
    assert _get(client, ids[2]).id == ids[2]


def _stored_id(url: str, experiment_id: str) -> object:
    """The experiment id as the database stores it (hex text on SQLite, uuid on PostgreSQL)."""
    value = uuid.UUID(experiment_id)
    return value.hex if url.startswith("sqlite") else value
