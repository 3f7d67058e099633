"""Creates and upgrades the database schema by running the Alembic migrations, from code."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

logger = logging.getLogger("experiments.schema")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Where migrations/env.py finds the URL; the `alembic` command line leaves it unset.
URL_ATTRIBUTE = "database_url"


def alembic_config(url: str) -> Config:
    """The Alembic configuration for `url`, independent of the working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # An attribute, not the sqlalchemy.url option: ini interpolation would mangle a '%' in it.
    config.attributes[URL_ATTRIBUTE] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    logger.info("Upgrading the database schema to %s", revision)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    logger.info("Downgrading the database schema to %s", revision)
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The revision `upgrade(url)` brings a database to."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head
