"""The warehouse as a Dagster resource: one engine per process, schema migrated on first use."""

from __future__ import annotations

import functools
import os
import threading

import dagster as dg
from sqlalchemy import Engine

from cams.config import database_url
from cams.warehouse.db import make_engine, migrate

_FIRST_USE = threading.Lock()


def _engine(url: str) -> Engine:
    with _FIRST_USE:  # steps in threads (pipelines/threaded.py) may ask at once: one engine, one migration
        return _migrated_engine(url)


@functools.cache
def _migrated_engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


class WarehouseResource(dg.ConfigurableResource):
    """SQLite file by default, PostgreSQL in production. In a deployment the URL (which may hold a
    password) is `dg.EnvVar("CAMS_DATABASE_URL")`: Dagster shows the variable's name, never its value."""

    database_url: str

    @classmethod
    def from_env(cls, url: str | None = None) -> WarehouseResource:
        """`url` when given (tests, tools); else CAMS_DATABASE_URL as an EnvVar; else the local SQLite file."""
        if url:
            return cls(database_url=url)
        if os.environ.get("CAMS_DATABASE_URL"):
            return cls(database_url=dg.EnvVar("CAMS_DATABASE_URL"))
        return cls(database_url=database_url())

    def engine(self) -> Engine:
        url = self.database_url
        if isinstance(url, dg.EnvVar):  # outside a run (`cams run`'s summary): Dagster has not resolved it
            url = url.get_value() or database_url()
        return _engine(url)
