"""Revisions and the change feed: experiment_revisions, and revision_log (what pruning removed).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

The revisions table starts empty: a revision's message is rendered by the service's code, not
SQL. `experiments-admin migrate` then records one `created` revision for every experiment that
existed before (server.adapters.revisions.record_first_revisions), once, so that a consumer
reading the feed from the start meets every experiment.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT on PostgreSQL; on SQLite the INTEGER PRIMARY KEY (the rowid, 64 bits).
_POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiment_revisions",
        # An identity (a sequence with cache 1) on PostgreSQL; AUTOINCREMENT on SQLite, so that
        # a position is never given out twice, even after the newest rows are deleted.
        sa.Column("seq", _POSITION, sa.Identity(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_experiment_revisions")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_experiment_revisions_organization_id_seq",
        "experiment_revisions",
        ["organization_id", "seq"],
    )
    op.create_index(
        "ix_experiment_revisions_experiment_id_seq",
        "experiment_revisions",
        ["experiment_id", "seq"],
    )
    log = op.create_table(
        "revision_log",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pruned_through", _POSITION, nullable=False),
        sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_revisions_recorded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revision_log")),
    )
    op.bulk_insert(
        log,
        [{"id": 1, "pruned_through": 0, "pruned_before": None, "first_revisions_recorded": False}],
    )


def downgrade() -> None:
    op.drop_table("revision_log")
    op.drop_table("experiment_revisions")
