"""The read model: experiment_views holds each experiment's serialized response message.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

The table starts empty here: rendering needs the service's code, not SQL. `experiments-admin
migrate` fills it after upgrading (server.adapters.views.rebuild, for every experiment without
a view of the current render version).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiment_views",
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("render_version", sa.Integer(), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_views_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", name=op.f("pk_experiment_views")),
    )
    op.create_index(
        "ix_experiment_views_organization_id_created_at_experiment_id",
        "experiment_views",
        ["organization_id", "created_at", "experiment_id"],
    )


def downgrade() -> None:
    op.drop_table("experiment_views")
