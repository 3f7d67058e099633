"""Alembic's entry point: runs the migrations against the URL the caller configured."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from server.adapters.database import engine_url, make_engine
from server.adapters.orm import Base
from server.adapters.schema import URL_ATTRIBUTE
from server.config import Settings

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:
    # Only the `alembic` command line has an ini file; never reset an application's logging.
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get(URL_ATTRIBUTE)
    return str(url) if url else Settings.from_env().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later migrations rebuild tables in batches.
        render_as_batch=connection.dialect.name == "sqlite",
        # The engine emits real BEGINs on SQLite too, so a failed migration leaves nothing behind.
        transactional_ddl=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Prints the SQL instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=engine_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
