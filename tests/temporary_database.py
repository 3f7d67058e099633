"""Throwaway PostgreSQL databases, for the tests and the benchmark: created, then dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from server.adapters.database import engine_url


@contextmanager
def temporary_postgres_database(
    server_url: str,
    *,
    prefix: str = "experiments_test",
    keep: bool = False,
    template: str | None = None,
) -> Iterator[str]:
    """The URL of a new, empty database on the server of `server_url` (whose own database is
    only connected to); dropped afterwards, with any connections left open, unless `keep`.

    With `template` (the name of a database nobody is connected to), the new database is a copy
    of that one instead of an empty one."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}".lower()
    server = engine_url(server_url)  # postgresql:// means psycopg 3, as for the service
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            copied = f' TEMPLATE "{template}"' if template is not None else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{copied}'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            if not keep:
                with admin.connect() as connection:
                    # FORCE: a test that failed may have left a connection open.
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
