"""How much the history grows per write: bytes of the revisions table and its indexes per
revision, for the bench's typical experiments, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.revision_storage [--experiments 2000] [--database-url URL]

Seeds a fresh database (each experiment gets its `created` revision), measures, then
updates each experiment of the largest organization once through the service (a rename:
an `updated` revision, which shows the whole experiment and its one change) and measures
again. Sizes are the database's own accounting of pages
in use (SQLite: the dbstat table; PostgreSQL: pg_total_relation_size, after VACUUM), so
they include page slack and the indexes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import Connection, Engine, func, select, text

from bench import seed, stack
from bench.run import prepare
from server.adapters.database import make_engine
from server.adapters.orm import ExperimentRevisionRecord
from server.adapters.unit_of_work import SqlAlchemyReadUnitOfWork, SqlAlchemyUnitOfWork
from server.domain.errors import InvalidArgument
from server.domain.pagination import encode_cursor
from server.entrypoints.translate import RENDERER, experiment_input, revision_record
from server.service_layer.experiments import ExperimentService

TABLE = ExperimentRevisionRecord.__tablename__


def _bytes(connection: Connection) -> int:
    """Bytes of the revisions table and its indexes."""
    if connection.dialect.name == "postgresql":
        return int(
            connection.execute(text(f"SELECT pg_total_relation_size('{TABLE}')")).scalar_one()
        )
    # Every b-tree of the table: its rows and each index.
    return int(
        connection.execute(
            text(
                "SELECT sum(pgsize) FROM dbstat WHERE name = :table"
                " OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = :table)"
            ),
            {"table": TABLE},
        ).scalar_one()
    )


@dataclass(frozen=True)
class Size:
    bytes: int  # the table's and its indexes' pages
    rows: int
    message_bytes: int  # of the stored messages alone

    def line(self, what: str) -> str:
        return (
            f"{self.rows:,} {what}: {self.bytes:,} bytes, {self.bytes / self.rows:,.0f} per "
            f"revision (its message alone: {self.message_bytes / self.rows:,.0f} bytes)"
        )


def _measure(engine: Engine) -> Size:
    """The revisions' size, after VACUUM on PostgreSQL (so that sizes are settled)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"VACUUM ANALYZE {TABLE}"))
    with engine.connect() as connection:
        rows, message_bytes = connection.execute(
            select(
                func.count(ExperimentRevisionRecord.seq),
                func.sum(func.length(ExperimentRevisionRecord.message)),
            )
        ).one()
        return Size(_bytes(connection), int(rows), int(message_bytes or 0))


def _update_each(engine: Engine, world: seed.World) -> None:
    """One update through the service per experiment of the measured organization that may
    still change (an ended one may not): a rename, as a client PUTs back what it got."""
    service = ExperimentService(
        lambda: SqlAlchemyUnitOfWork(engine, renderer=RENDERER),
        lambda: SqlAlchemyReadUnitOfWork(engine),
        render=RENDERER.view,
        record=revision_record,
    )
    organization = str(world.organization_id)
    cursor = ""
    while True:
        page = service.list(world.api_key, organization, 100, cursor)
        for view in page.items:
            shown = pb.Experiment.FromString(view.message)
            shown.name = f"{shown.name} (renamed)"
            with contextlib.suppress(InvalidArgument):  # ended: read-only for good
                service.update(world.api_key, organization, shown.id, experiment_input(shown))
        if page.next is None:
            return
        cursor = encode_cursor(page.next)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    options = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-storage-") as folder,
        stack.fresh_database(options.database_url, Path(folder), "db", False) as url,
    ):
        world = prepare(url, options.experiments)
        engine = make_engine(url)
        try:
            created = _measure(engine)
            _update_each(engine, world)
            both = _measure(engine)
        finally:
            engine.dispose()
    name = engine.dialect.name
    print(f"{name}: {created.line('created revisions')}")
    updated = Size(
        both.bytes - created.bytes,
        both.rows - created.rows,
        both.message_bytes - created.message_bytes,
    )
    if updated.rows:
        print(f"{name}: {updated.line('updated revisions')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
