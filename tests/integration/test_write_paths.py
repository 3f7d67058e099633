"""One write path: every writer of experiments leaves the revisions that account for them, so
the history agrees with the experiments (the API, the bench's seeding, `experiments-admin
migrate` for experiments older than revisions; `demo` writes none), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import Engine, func, select

from bench import seed
from server.adapters import admin as admin_records
from server.adapters import schema
from server.adapters.database import make_engine
from server.adapters.orm import (
    ExperimentRecord,
    ExperimentRevisionRecord,
    ExperimentViewRecord,
)
from server.adapters.repositories.experiments import SqlAlchemyExperimentRepository
from server.domain.model import (
    DEFAULT_RESET_INTERVAL,
    ExperimentState,
    Organization,
    User,
    new_experiment,
)
from server.entrypoints import admin
from tests.integration.grpc_client import published, running_client


def assert_history_accounts_for_every_experiment(engine: Engine) -> int:
    """Each experiment's newest revision shows it exactly as reads show it (its view), and each
    deleted one's newest revision is its delete. Returns how many experiments there are."""
    with engine.connect() as connection:
        stored = {
            row.experiment_id: row.message
            for row in connection.execute(
                select(ExperimentViewRecord.experiment_id, ExperimentViewRecord.message)
            )
        }
        newest = select(func.max(ExperimentRevisionRecord.seq)).group_by(
            ExperimentRevisionRecord.experiment_id
        )
        revisions = {
            row.experiment_id: row
            for row in connection.execute(
                select(
                    ExperimentRevisionRecord.experiment_id,
                    ExperimentRevisionRecord.revision,
                    ExperimentRevisionRecord.action,
                    ExperimentRevisionRecord.message,
                ).where(ExperimentRevisionRecord.seq.in_(newest))
            )
        }
    for experiment_id, view in stored.items():
        revision = revisions.get(experiment_id)
        assert revision is not None, f"experiment {experiment_id} has no revision"
        shown = pb.Experiment.FromString(view)
        assert revision.action in ("created", "updated")
        assert str(revision.revision) == shown.etag
        assert pb.ExperimentRevision.FromString(revision.message).experiment == shown
    gone = {experiment_id for experiment_id in revisions if experiment_id not in stored}
    assert all(revisions[experiment_id].action == "deleted" for experiment_id in gone)
    return len(stored)


def test_the_apis_creates_updates_and_deletes_leave_their_revisions(migrated_url: str) -> None:
    with running_client(migrated_url) as client:
        requests = [
            pb.CreateExperimentRequest(
                organization_id=client.org, experiment=published(client.world)
            )
            for _ in range(3)
        ]
        made = [client.stub.CreateExperiment(r, metadata=client.metadata()) for r in requests]
        made[0].name = "Renamed"
        client.stub.UpdateExperiment(
            pb.UpdateExperimentRequest(
                organization_id=client.org, experiment_id=made[0].id, experiment=made[0]
            ),
            metadata=client.metadata(),
        )
        client.stub.DeleteExperiment(
            pb.DeleteExperimentRequest(organization_id=client.org, experiment_id=made[1].id),
            metadata=client.metadata(),
        )
    engine = make_engine(migrated_url)
    try:
        assert assert_history_accounts_for_every_experiment(engine) == 2
    finally:
        engine.dispose()


def test_the_benchs_seeding_leaves_a_created_revision_per_experiment(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        seed.seed(engine, 120)
        assigning = seed.ASSIGNING_EXPERIMENTS + seed.NOT_ASSIGNING  # the assignment phases'
        assert assert_history_accounts_for_every_experiment(engine) == 120 + assigning
    finally:
        engine.dispose()


def test_migrate_records_a_first_revision_for_older_experiments_once(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database of the release before revisions, with an experiment written then.
    schema.upgrade(database_url, "0003")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            organization_id = admin_records.create_organization(connection, "Older Inc.")
            user_id = admin_records.create_user(connection, organization_id, "Ada", "Lovelace")
            older = new_experiment(
                uuid4(),
                Organization(organization_id, "Older Inc."),
                ExperimentState(True, "Older", None, None, None, DEFAULT_RESET_INTERVAL, ()),
                None,
                (),
                User(user_id, "Ada", "Lovelace", organization_id),
                datetime.now(UTC),
            )
            # Without groups, whose columns have changed since (0005); its view is missing,
            # which `migrate` renders as it renders those of an older render version.
            SqlAlchemyExperimentRepository(connection).add(older)
        monkeypatch.setenv("EXPERIMENTS_DATABASE_URL", database_url)

        assert admin.main(["migrate"]) == 0
        first = capsys.readouterr().out
        assert assert_history_accounts_for_every_experiment(engine) == 1
        # Pruned away, it is not recorded again: "first" means once per database.
        assert admin.main(["prune-history", "--before", "9000-01-01T00:00:00Z"]) == 0
        assert admin.main(["migrate"]) == 0
        again = capsys.readouterr().out
        with engine.connect() as connection:
            kept = connection.execute(select(func.count(ExperimentRevisionRecord.seq))).scalar()
            experiments = connection.execute(select(func.count(ExperimentRecord.id))).scalar()
    finally:
        engine.dispose()

    assert '"first_revisions_recorded": 1' in first
    assert '"first_revisions_recorded": 0' in again
    assert (kept, experiments) == (0, 1)


def test_the_demo_world_writes_no_experiment_and_so_no_revision(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as connection:
            admin_records.create_demo_world(connection)
        with engine.connect() as connection:
            revisions = connection.execute(
                select(func.count(ExperimentRevisionRecord.seq))
            ).scalar()
        assert revisions == 0
        assert assert_history_accounts_for_every_experiment(engine) == 0
    finally:
        engine.dispose()
