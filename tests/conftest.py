"""Shared fixtures: loopback-only network, a warehouse per backend, Dagster instances per backend.

Every warehouse test runs on SQLite and, when CAMS_TEST_DATABASE_URL is set (CI sets it), on
PostgreSQL in a schema of its own. With CAMS_TEST_REQUIRE_POSTGRES=1 a missing or unreachable
PostgreSQL fails the run instead of quietly testing SQLite only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests import netguard

# LiteLLM (the parity reference) must read its bundled price map, never fetch one.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("CAMS_EXPORT_DIR", tempfile.mkdtemp(prefix="cams-exports-"))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
netguard.install()

PG_URL = os.environ.get("CAMS_TEST_DATABASE_URL")
REQUIRE_PG = os.environ.get("CAMS_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_PG and not PG_URL:
        raise pytest.UsageError("CAMS_TEST_REQUIRE_POSTGRES=1 but CAMS_TEST_DATABASE_URL is not set")
    if PG_URL:
        import sqlalchemy as sa

        from cams.warehouse.db import normalize_url

        try:
            with sa.create_engine(normalize_url(PG_URL)).connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            raise pytest.UsageError(f"PostgreSQL at CAMS_TEST_DATABASE_URL is unreachable: {exc}") from exc


@pytest.fixture(autouse=True)
def _spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's history spool in the test's own folder, not the checkout's `.cams/`."""
    monkeypatch.setenv("CAMS_SPOOL_DIR", str(tmp_path / "spool"))


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"  # type: ignore[operator]
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty warehouse URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    import sqlalchemy as sa

    from cams.warehouse.db import normalize_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(PG_URL), pool_pre_ping=True)  # type: ignore[arg-type]
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _pg_schema_url(schema)
    finally:
        from resources.warehouse import _migrated_engine

        _migrated_engine.cache_clear()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    from cams.warehouse.db import make_engine, migrate

    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def sim_days() -> list[date]:
    return [date(2026, 3, 2), date(2026, 3, 3)]


@pytest.fixture(scope="session")
def small_sim(sim_days: list[date]):  # type: ignore[no-untyped-def]
    from cams.simulator.generate import SimConfig, generate

    return generate(SimConfig(days=sim_days, seed=11, requests_per_day=300))


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server; yields its `postgresql://` URL."""
    import sqlalchemy as sa

    base = PG_URL.rsplit("/", 1)[0]  # type: ignore[union-attr]
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        f"{base}/postgres".replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def psycopg2_url(url: str) -> str:
    """dagster-postgres's NOTIFY needs client-side binding: the psycopg2 driver (docs/operations.md)."""
    return url.replace("postgresql://", "postgresql+psycopg2://")


def _budget(budget_id: str, org: str, state: str, action: str) -> dict:
    from tests.test_api import NOW

    return {
        "budget_id": budget_id,
        "scope": "org",
        "scope_id": org,
        "org_id": org,
        "period_start": NOW,
        "period_end": NOW,
        "as_of": NOW,
        "amount_usd": 10,
        "spent_usd": 9,
        "forecast_usd": 12,
        "percent_used": 90.0,
        "forecast_percent": 120.0,
        "state": state,
        "action": action,
        "projected_exhaustion_at": None,
        "evaluated_at": NOW,
    }


PREFERENCES = [  # hooli: no gemini; its team search prefers anthropic; its team closed allows gpt-4o-mini only
    {"org_id": "hooli", "excluded_providers": ["gemini"]},
    {"org_id": "hooli", "team_id": "search", "preferred_provider": "anthropic"},
    {"org_id": "hooli", "team_id": "closed", "allowed_models": ["gpt-4o-mini"]},
]


def store_preferences(engine) -> None:  # type: ignore[no-untyped-def]
    from cams.selection.preferences import parse_preference
    from cams.selection.store import put_preference

    for p in PREFERENCES:
        put_preference(engine, parse_preference(p))


@pytest.fixture
def published(engine):  # type: ignore[no-untyped-def]
    """A warehouse with a published selection table, two budgets (globex blocked, initech downgraded),
    the PREFERENCES of hooli and its teams, and API keys by name: admin, acme (read, bound to acme),
    writer (write), none (not a key)."""
    import sqlalchemy as sa

    from cams.api.keys import create_key
    from cams.config import PricingConfig
    from cams.pricing import store as pricebook_store
    from cams.pricing.quote import load_book
    from cams.selection.store import publish
    from cams.warehouse import schema as t
    from tests.test_api import table

    book = load_book(PricingConfig())
    pricebook_store.store(engine, book)
    publish(engine, table(book))
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.budget_status),
            [
                _budget("globex-cap", "globex", "exceeded", "block"),
                _budget("initech-cap", "initech", "critical", "downgrade"),
            ],
        )
    store_preferences(engine)
    return {
        "admin": create_key(engine, ["admin"]),
        "acme": create_key(engine, ["read"], org_id="acme"),
        "writer": create_key(engine, ["write"]),
        "none": "cams_000000000000_not-a-key",
    }
