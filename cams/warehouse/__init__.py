"""The warehouse: SQLAlchemy Core tables, Alembic migrations, idempotent partition writes."""
