"""Storage: SQLAlchemy models, Alembic migrations and repositories."""
