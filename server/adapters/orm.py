"""The database tables, as typed SQLAlchemy models; Alembic migrations are written from them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.domain.clock import utc_now
from server.domain.concurrency import IDEMPOTENCY_KEY_MAX_LENGTH

# Named constraints let later migrations drop or alter them by name on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 255
KEY_HASH_LENGTH = 64  # hex SHA-256, see server.domain.access.hash_api_key
RESET_INTERVAL_LENGTH = 8
ACTION_LENGTH = 16
GROUP_TYPE_LENGTH = 32
FINGERPRINT_LENGTH = 64  # hex SHA-256, see server.domain.concurrency.request_fingerprint


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and always read back as an aware UTC datetime.

    PostgreSQL keeps it as timestamptz. SQLite has no time zones and would hand
    back naive values, so they are stored as naive UTC (which also keeps its text
    representation sortable) and marked UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give it a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class OrganizationRecord(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    has_active_subscription: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)


class UserRecord(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id"), nullable=False, index=True
    )
    first_name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    last_name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    is_bot: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    can_manage_settings: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)


class ApiKeyRecord(Base):
    """An API key, known only by its hash: the key itself is shown once, when created."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    key_hash: Mapped[str] = mapped_column(
        String(KEY_HASH_LENGTH), nullable=False, unique=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utc_now)


class GoalRecord(Base):
    __tablename__ = "goals"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)


class RoomRecord(Base):
    __tablename__ = "rooms"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)


class ExperimentRecord(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        # Lists are pages of one organization ordered by (created_at, id): keyset pagination.
        Index(
            "ix_experiments_organization_id_created_at_id", "organization_id", "created_at", "id"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id"), nullable=False
    )
    is_draft: Mapped[bool] = mapped_column(Boolean, nullable=False)
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    goal_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("goals.id"), nullable=True, index=True
    )
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    group_reset_interval: Mapped[str] = mapped_column(String(RESET_INTERVAL_LENGTH), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    created_by_user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id"), nullable=False, index=True
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_by_user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id"), nullable=False, index=True
    )
    # Incremented on every write: the experiment's etag, and the compare-and-set of If-Match.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))


class IdempotencyKeyRecord(Base):
    """A Create's idempotency key: which request it named and the experiment that made.

    The primary key is what serialises concurrent retries: the second insert of a key
    waits for the first transaction and then finds its row.
    """

    __tablename__ = "idempotency_keys"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH), nullable=False)
    # Deferred: the key is recorded first, its experiment later in the same transaction.
    # A deleted experiment takes its key along, so a retry after that creates anew.
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("experiments.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        nullable=False,
        index=True,
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class ExperimentGroupRecord(Base):
    """A group of an experiment; `position` is the group's documented `order`."""

    __tablename__ = "experiment_groups"
    __table_args__ = (UniqueConstraint("experiment_id", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    percentage: Mapped[int | None] = mapped_column(Integer, nullable=True)
    group_type: Mapped[str | None] = mapped_column(String(GROUP_TYPE_LENGTH), nullable=True)
    # none_as_null: a group without a treatment is SQL NULL, not the JSON text 'null'.
    treatment: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    # The group's bucket ranges (domain.model.Group.buckets) as [[start, end], ...]; [] for none.
    buckets: Mapped[list[list[int]]] = mapped_column(
        JSON, nullable=False, server_default=text("'[]'")
    )


class ExperimentRoomRecord(Base):
    """A room an experiment is limited to; `position` keeps the order the client gave."""

    __tablename__ = "experiment_rooms"

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    room_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("rooms.id"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)


class ExperimentViewRecord(Base):
    """The read model: each experiment as reads send it, kept current by every write.

    A projection of the tables above, never a source of truth: `experiments-admin
    rebuild-read-model` (and `migrate`, for rows of an older `render_version`) renders it
    again from them. Deleting the experiment deletes its view (the foreign key cascades).
    """

    __tablename__ = "experiment_views"
    __table_args__ = (
        # List pages read this table alone, in the experiments' keyset order.
        Index(
            "ix_experiment_views_organization_id_created_at_experiment_id",
            "organization_id",
            "created_at",
            "experiment_id",
        ),
    )

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    organization_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    # The experiment's version when rendered: the etag of the message.
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    # Which rendering made `message` (server.entrypoints.translate.RENDER_VERSION).
    render_version: Mapped[int] = mapped_column(Integer, nullable=False)
    # The serialized experiments.v5.Experiment message.
    message: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


# A feed position: BIGINT on PostgreSQL; on SQLite the INTEGER PRIMARY KEY (the rowid, 64 bits).
FeedPosition = BigInteger().with_variant(Integer, "sqlite")


class ExperimentRevisionRecord(Base):
    """The history of experiments and the change feed: one row per create, update and delete,
    written in the transaction of the write (server/adapters/revisions.py says how `seq` is
    made to follow commit order). No foreign keys: history outlives what it describes.
    """

    __tablename__ = "experiment_revisions"
    __table_args__ = (
        # The feed of an organization, in order.
        Index("ix_experiment_revisions_organization_id_seq", "organization_id", "seq"),
        # The revisions of one experiment, newest first.
        Index("ix_experiment_revisions_experiment_id_seq", "experiment_id", "seq"),
        # SQLite: positions are never reused, even after the newest rows are deleted.
        {"sqlite_autoincrement": True},
    )

    # The feed position, drawn from a sequence (cache 1, so drawn in order) as the row goes in.
    seq: Mapped[int] = mapped_column(FeedPosition, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    experiment_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    # The experiment's version after the change (for a delete, the next number).
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(ACTION_LENGTH), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    # The serialized experiments.v5.ExperimentRevision message, without its `cursor` (which
    # is made from `seq` when read).
    message: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class RevisionLogRecord(Base):
    """One row: what became of the revisions as a whole."""

    __tablename__ = "revision_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # The last feed position `experiments-admin prune-history` deleted (0: none): a cursor
    # below it is OUT_OF_RANGE, since changes after it may be gone.
    pruned_through: Mapped[int] = mapped_column(FeedPosition, nullable=False, default=0)
    pruned_before: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Whether `experiments-admin migrate` has recorded a first revision for every experiment
    # made before revisions existed (done once: pruning must not make it happen again).
    first_revisions_recorded: Mapped[bool] = mapped_column(Boolean, nullable=False)
