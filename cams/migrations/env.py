"""Alembic environment: runs on the connection CAMS hands it (see cams.warehouse.db.migrate)."""

from __future__ import annotations

from alembic import context

from cams.warehouse.schema import metadata

VERSION_TABLE = "cams_alembic_version"  # Dagster's own storage uses alembic_version


def run_migrations_online() -> None:
    connectable = context.config.attributes.get("connection")
    if connectable is None:
        from sqlalchemy import create_engine

        connectable = create_engine(context.config.get_main_option("sqlalchemy.url"))
        with connectable.connect() as connection:
            _run(connection)
            connection.commit()
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
