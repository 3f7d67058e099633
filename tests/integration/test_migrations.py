"""The Alembic migrations build and remove the whole schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, select, text

from server.adapters import database, schema
from server.adapters.orm import Base

REPOSITORY = Path(__file__).resolve().parents[2]
TABLES = {
    "organizations",
    "users",
    "api_keys",
    "goals",
    "rooms",
    "experiments",
    "experiment_groups",
    "experiment_rooms",
    "idempotency_keys",
    "experiment_views",
    "experiment_revisions",
    "revision_log",
}


def _tables(url: str) -> set[str]:
    engine = database.make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_upgrade_from_an_empty_database_creates_every_table(database_url: str) -> None:
    assert _tables(database_url) == set()

    schema.upgrade(database_url)

    assert _tables(database_url) == TABLES
    assert _revision(database_url) == schema.head_revision()


def test_upgrading_an_up_to_date_database_changes_nothing(migrated_url: str) -> None:
    schema.upgrade(migrated_url)

    assert _tables(migrated_url) == TABLES
    assert _revision(migrated_url) == schema.head_revision()


def test_downgrade_to_base_removes_every_table(migrated_url: str) -> None:
    schema.downgrade(migrated_url, "base")

    assert _tables(migrated_url) == set()
    assert _revision(migrated_url) is None


def test_upgrade_after_a_downgrade_builds_the_schema_again(migrated_url: str) -> None:
    schema.downgrade(migrated_url, "base")
    schema.upgrade(migrated_url)

    assert _tables(migrated_url) == TABLES


def test_migrated_schema_is_what_the_models_describe(migrated_url: str) -> None:
    engine = database.make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_alembic_command_line_migrates_the_database_named_in_the_environment(
    database_url: str, tmp_path: Path
) -> None:
    # From another folder: alembic.ini must not depend on the working directory.
    environment = {**os.environ, "EXPERIMENTS_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "alembic", "-c", str(REPOSITORY / "alembic.ini")]

    subprocess.run([*command, "upgrade", "head"], env=environment, cwd=tmp_path, check=True)

    assert _tables(database_url) == TABLES


def test_upgrading_to_0002_gives_existing_experiments_version_1(database_url: str) -> None:
    schema.upgrade(database_url, "0001")
    engine = database.make_engine(database_url)
    try:
        with engine.begin() as connection:
            _insert_experiment(connection)
        schema.upgrade(database_url)
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version FROM experiments")).scalars().all()
    finally:
        engine.dispose()

    assert versions == [1]


def test_upgrading_to_0005_gives_existing_groups_the_ranges_of_a_fresh_split(
    database_url: str,
) -> None:
    schema.upgrade(database_url, "0004")
    engine = database.make_engine(database_url)
    groups = Base.metadata.tables["experiment_groups"]
    now = datetime.now(UTC)
    splits: dict[str, list[int | None]] = {
        "published": [50, 30, 0, 20],
        "unfinished draft": [60, None],
    }
    try:
        with engine.begin() as connection:
            for name, percentages in splits.items():
                experiment = _insert_experiment(connection, name)
                connection.execute(
                    insert(groups),
                    [
                        {
                            "id": uuid.uuid4(),
                            "experiment_id": experiment,
                            "position": position,
                            "name": f"{name} {position}",
                            "percentage": percentage,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for position, percentage in enumerate(percentages)
                    ],
                )
        schema.upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                select(groups.c.name, groups.c.buckets).order_by(groups.c.name)
            ).all()
    finally:
        engine.dispose()

    assert {name: buckets for name, buckets in rows} == {
        "published 0": [[0, 5000]],
        "published 1": [[5000, 8000]],
        "published 2": [],
        "published 3": [[8000, 10000]],
        "unfinished draft 0": [],
        "unfinished draft 1": [],
    }


def _insert_experiment(connection: Connection, name: str = "E") -> uuid.UUID:
    """A draft of a new organization and user, written with 0001's columns only (the models'
    tables give the types)."""
    organization, user, experiment = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    tables = Base.metadata.tables
    connection.execute(
        insert(tables["organizations"]),
        {"id": organization, "name": "O", "has_active_subscription": True, "created_at": now},
    )
    connection.execute(
        insert(tables["users"]),
        {
            "id": user,
            "organization_id": organization,
            "first_name": "A",
            "last_name": "B",
            "is_bot": False,
            "can_manage_settings": True,
            "created_at": now,
        },
    )
    connection.execute(
        insert(tables["experiments"]),
        {
            "id": experiment,
            "organization_id": organization,
            "is_draft": True,
            "name": name,
            "group_reset_interval": "full",
            "created_at": now,
            "created_by_user_id": user,
            "updated_at": now,
            "updated_by_user_id": user,
        },
    )
    return experiment
