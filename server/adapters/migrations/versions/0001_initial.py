"""The initial schema: organizations, users, API keys, goals, rooms and experiments.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    # timestamptz on PostgreSQL; SQLite keeps UTC text (server.adapters.orm.UtcDateTime).
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.Uuid(), nullable=False)


def _organization_id(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f(f"fk_{table}_organization_id_organizations"),
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "organizations",
        _id(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("has_active_subscription", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    for table in ("goals", "rooms"):
        op.create_table(
            table,
            _id(),
            *_organization_id(table),
            sa.Column("name", sa.String(length=255), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        )
        op.create_index(op.f(f"ix_{table}_organization_id"), table, ["organization_id"])
    op.create_table(
        "users",
        _id(),
        *_organization_id("users"),
        sa.Column("first_name", sa.String(length=255), nullable=False),
        sa.Column("last_name", sa.String(length=255), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.Column("can_manage_settings", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_organization_id"), "users", ["organization_id"])
    op.create_table(
        "api_keys",
        _id(),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_key_hash"), "api_keys", ["key_hash"], unique=True)
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"])
    op.create_table(
        "experiments",
        _id(),
        *_organization_id("experiments"),
        sa.Column("is_draft", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("goal_id", sa.Uuid(), nullable=True),
        _timestamp("starts_at", nullable=True),
        _timestamp("ends_at", nullable=True),
        sa.Column("group_reset_interval", sa.String(length=8), nullable=False),
        _timestamp("created_at"),
        sa.Column("created_by_user_id", sa.Uuid(), nullable=False),
        _timestamp("updated_at"),
        sa.Column("updated_by_user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name=op.f("fk_experiments_goal_id_goals")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
            name=op.f("fk_experiments_created_by_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_user_id"],
            ["users.id"],
            name=op.f("fk_experiments_updated_by_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
    )
    # Keyset pagination: an organization's experiments by (created_at, id).
    op.create_index(
        "ix_experiments_organization_id_created_at_id",
        "experiments",
        ["organization_id", "created_at", "id"],
    )
    for column in ("goal_id", "created_by_user_id", "updated_by_user_id"):
        op.create_index(op.f(f"ix_experiments_{column}"), "experiments", [column])
    op.create_table(
        "experiment_groups",
        _id(),
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("percentage", sa.Integer(), nullable=True),
        sa.Column("group_type", sa.String(length=32), nullable=True),
        sa.Column("treatment", sa.JSON(none_as_null=True), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_groups_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_groups")),
        sa.UniqueConstraint(
            "experiment_id", "position", name=op.f("uq_experiment_groups_experiment_id_position")
        ),
    )
    op.create_table(
        "experiment_rooms",
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_rooms_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_experiment_rooms_room_id_rooms")
        ),
        sa.PrimaryKeyConstraint("experiment_id", "room_id", name=op.f("pk_experiment_rooms")),
    )
    op.create_index(op.f("ix_experiment_rooms_room_id"), "experiment_rooms", ["room_id"])


def downgrade() -> None:
    # Dropping a table drops its indexes; children go before the tables they refer to.
    for table in (
        "experiment_rooms",
        "experiment_groups",
        "experiments",
        "api_keys",
        "users",
        "rooms",
        "goals",
        "organizations",
    ):
        op.drop_table(table)
