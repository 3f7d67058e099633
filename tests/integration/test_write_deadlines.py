"""A write either commits within its call's deadline or never: a client told that its write
failed never finds it done later, and reads go on while writes wait for the database.

Each test stalls the database's writes from outside (SQLite: our writer lock, or SQLite's own
lock as another program in a write holds it; PostgreSQL: the organization's row, which every
new experiment's foreign key check waits for), sends creates with a short deadline and reads
with a long one, lets every create fail, then lets the database go, and counts the creates
that failed for their client but are in the database afterwards: the target is none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import text

from server.adapters.database import make_engine
from tests.integration.databases import (
    POSTGRESQL,
    SQLITE,
    postgres_server_url,
    temporary_database,
)
from tests.integration.grpc_client import Client, published, running_client
from tests.integration.locks import (
    DEADLINE_SECONDS,
    postgres_row_held,
    sqlite_database_locked,
    sqlite_writer_held,
    until,
)

# More creates than a worker has threads (8 by default): waiting writers must hold none of
# the threads reads need.
CREATES = 16
WRITE_DEADLINE_SECONDS = 2.0
READS = 8

Stall = Callable[[str, Client], AbstractContextManager[Any]]

STALLS: dict[str, tuple[str, Stall]] = {
    "sqlite-writer-lock": (SQLITE, lambda url, _client: sqlite_writer_held(url)),
    "sqlite-database-lock": (SQLITE, lambda url, _client: sqlite_database_locked(url)),
    "postgresql-organization-row": (
        POSTGRESQL,
        lambda url, client: postgres_row_held(url, client.org, table="organizations"),
    ),
}


def _stalls() -> list[Any]:
    have_postgres = postgres_server_url() is not None
    return [
        pytest.param(name, id=name, marks=[pytest.mark.postgres] if backend == POSTGRESQL else [])
        for name, (backend, _) in STALLS.items()
        if backend == SQLITE or have_postgres
    ]


@pytest.fixture(params=_stalls())
def stall(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(
    stall: str, tmp_path: Path, migrated_template_of: Callable[[str], str]
) -> Iterator[str]:
    backend = STALLS[stall][0]
    with temporary_database(backend, tmp_path, template=migrated_template_of(backend)) as url:
        yield url


def _in_flight(client: Client) -> int:
    """Calls the server's worker holds, running or queued, in any of its pools."""
    return sum(getattr(pool, "admitted", 0) for pool in vars(client.server.pools).values())


def _names_stored(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT name FROM experiments"))
            return {str(name) for (name,) in rows}
    finally:
        engine.dispose()


def _outcome(call: grpc.Future[Any]) -> str:
    try:
        call.result()
    except grpc.RpcError as error:
        return error.code().name
    return "OK"


def test_writes_stalled_past_their_deadline_never_commit_and_reads_go_on(
    stall: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_client(database_url) as client:
        existing = client.stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=client.org, experiment=published(client.world)
            ),
            metadata=client.metadata(),
        )
        get = pb.GetExperimentRequest(organization_id=client.org, experiment_id=existing.id)
        with STALLS[stall][1](database_url, client) or nullcontext():
            creates = {
                f"stalled {n}": client.stub.CreateExperiment.future(
                    pb.CreateExperimentRequest(
                        organization_id=client.org,
                        experiment=published(client.world, name=f"stalled {n}"),
                    ),
                    metadata=client.metadata(),
                    timeout=WRITE_DEADLINE_SECONDS,
                )
                for n in range(CREATES)
            }
            until(lambda: _in_flight(client) >= CREATES, "every create to reach the server")
            reads = [
                client.stub.GetExperiment.future(
                    get, metadata=client.metadata(), timeout=DEADLINE_SECONDS
                )
                for _ in range(READS)
            ]
            read_outcomes = Counter(_outcome(read) for read in reads)
            # Every create fails while the database is held: none can commit.
            create_outcomes = {name: _outcome(call) for name, call in creates.items()}
        # The database is free again: whatever the server still had in hand ends now.
        until(lambda: _in_flight(client) == 0, "the server to finish every call")
        stored = _names_stored(database_url)

    failed = {name for name, outcome in create_outcomes.items() if outcome != "OK"}
    ghosts = sorted(failed & stored)
    with capsys.disabled():
        print(
            f"\n{stall}: creates {dict(Counter(create_outcomes.values()))}, "
            f"written after failing: {len(ghosts)}; reads during the stall {dict(read_outcomes)}"
        )
    assert failed == set(creates), create_outcomes
    assert set(create_outcomes.values()) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert ghosts == []
    assert read_outcomes == Counter(OK=READS)
