"""The tables the repositories read and write, as SQLAlchemy Core sees them (the ORM classes of
server/adapters/orm.py declare them; Alembic owns the schema)."""

from __future__ import annotations

from server.adapters.orm import (
    ApiKeyRecord,
    Base,
    ExperimentGroupRecord,
    ExperimentRecord,
    ExperimentRoomRecord,
    GoalRecord,
    IdempotencyKeyRecord,
    OrganizationRecord,
    RoomRecord,
    UserRecord,
)

_tables = Base.metadata.tables
organizations = _tables[OrganizationRecord.__tablename__]
users = _tables[UserRecord.__tablename__]
api_keys = _tables[ApiKeyRecord.__tablename__]
goals = _tables[GoalRecord.__tablename__]
rooms = _tables[RoomRecord.__tablename__]
experiments = _tables[ExperimentRecord.__tablename__]
groups = _tables[ExperimentGroupRecord.__tablename__]
experiment_rooms = _tables[ExperimentRoomRecord.__tablename__]
idempotency_keys = _tables[IdempotencyKeyRecord.__tablename__]
