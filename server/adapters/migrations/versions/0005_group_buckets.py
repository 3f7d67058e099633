"""Visitor assignment: each group's bucket ranges, experiment_groups.buckets.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-13

Existing experiments get the ranges of a fresh split, computed here (no service code, so
that this migration means the same whatever the code becomes): each group of p percent
takes the next p * 100 buckets in group order from 0 ([0, 5000), [5000, 8000), ... for
50/30/...), exactly server.domain.assignment.initial_ranges. Nothing was ever assigned
before this column existed, so no visitor moves. Groups whose experiment's percentages do
not add up to 100 (unfinished drafts) get none ([]). The stored views and revisions do not
show the ranges until `experiments-admin migrate` renders the views again (a new render
version); revisions keep the experiment as it was shown when they were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUCKETS_PER_POINT = 100
_groups = sa.table(
    "experiment_groups",
    sa.column("id", sa.Uuid()),
    sa.column("experiment_id", sa.Uuid()),
    sa.column("position", sa.Integer()),
    sa.column("percentage", sa.Integer()),
    sa.column("buckets", sa.JSON()),
)


def upgrade() -> None:
    op.add_column(
        "experiment_groups",
        sa.Column("buckets", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_groups.c.id, _groups.c.experiment_id, _groups.c.percentage).order_by(
            _groups.c.experiment_id, _groups.c.position
        )
    ).all()
    updates: list[dict[str, Any]] = []
    for _, groups in groupby(rows, key=lambda row: row.experiment_id):
        split = list(groups)
        percentages = [row.percentage for row in split]
        if any(p is None or not 0 <= p <= 100 for p in percentages) or sum(percentages) != 100:
            continue  # not a split: no ranges, as the column's default says
        start = 0
        for row in split:
            end = start + row.percentage * _BUCKETS_PER_POINT
            if end > start:
                updates.append({"group_id": row.id, "ranges": [[start, end]]})
            start = end
    if updates:
        connection.execute(
            sa.update(_groups)
            .where(_groups.c.id == sa.bindparam("group_id"))
            .values(buckets=sa.bindparam("ranges", type_=sa.JSON())),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("experiment_groups") as batch:
        batch.drop_column("buckets")
