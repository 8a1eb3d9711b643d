"""The warehouse as a Dagster resource: one engine per process, schema migrated on first use."""

from __future__ import annotations

import functools

import dagster as dg
from sqlalchemy import Engine

from cams.warehouse.db import make_engine, migrate


@functools.cache
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


class WarehouseResource(dg.ConfigurableResource):
    """SQLite file by default, PostgreSQL in production (CAMS_DATABASE_URL)."""

    database_url: str

    def engine(self) -> Engine:
        return _engine(self.database_url)
