"""The price book in the warehouse: its dated snapshot versions (`price_versions`), the built book
(`model_cost_profiles`) and the Models API's prices (`model_price_overrides`).

Everything that builds a book for costing goes through `current_book`, so the asset, the API, the
webhook and `cams pricing refresh` agree on which version prices which instant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, delete, select, update

from cams.config import PricingConfig
from cams.pricing import snapshot as snapshots
from cams.pricing.book import PriceBook, PriceEntry, to_utc
from cams.pricing.versions import MIN_TIME, PriceVersion, content_digest
from cams.warehouse import schema as t
from cams.warehouse.db import chunks, insert_new_rows, insert_rows, lock_for_replace

_RATE_COLUMNS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
)


class PriceBookMissing(RuntimeError):
    """cost_tracking ran before the price_book asset loaded model_cost_profiles."""


def store(engine: Engine, book: PriceBook) -> int:
    """Load the book into model_cost_profiles.

    Rows of this book are replaced by id; a row the book no longer has is kept with `retired_at`
    set, so every price_id a cost row ever recorded still resolves to the prices it used.
    """
    now = datetime.now(UTC)
    version = book.meta.get("version")
    rows: list[dict[str, Any]] = []
    for e in book.entries():
        row = {
            "price_id": e.price_id,
            "model": e.model,
            "provider": e.provider,
            "mode": e.mode,
            "valid_from": e.valid_from,
            "valid_to": e.valid_to,
            "prices_json": json.dumps({k: f"{v:f}" for k, v in sorted(e.prices.items())}),
            "capabilities_json": json.dumps(dict(e.capabilities), sort_keys=True, default=str),
            "source": e.source,
            "snapshot_version": e.version or version,
            "loaded_at": now,
        }
        row.update({c: e.prices.get(c) for c in _RATE_COLUMNS})
        rows.append(row)
    mcp = t.model_cost_profiles
    ids = [r["price_id"] for r in rows]
    with engine.begin() as conn:
        lock_for_replace(conn, mcp)
        conn.execute(update(mcp).where(mcp.c.retired_at.is_(None)).values(retired_at=now))
        for batch in chunks(ids, 5_000):
            conn.execute(delete(mcp).where(mcp.c.price_id.in_(batch)))
        insert_rows(conn, mcp, ({**r, "retired_at": None} for r in rows))
    return len(rows)


def load(engine: Engine) -> PriceBook:
    """The book as stored; raises PriceBookMissing when none was loaded yet."""
    with engine.connect() as conn:
        mcp = t.model_cost_profiles
        rows = conn.execute(select(mcp).where(mcp.c.retired_at.is_(None))).mappings().all()
    if not rows:
        raise PriceBookMissing("model_cost_profiles is empty: materialize the price_book asset first")
    entries = [
        PriceEntry(
            model=r["model"],
            provider=r["provider"],
            mode=r["mode"],
            valid_from=to_utc(r["valid_from"]),  # type: ignore[arg-type]
            valid_to=to_utc(r["valid_to"]),
            prices={k: Decimal(v) for k, v in json.loads(r["prices_json"]).items()},
            capabilities=json.loads(r["capabilities_json"]),
            source=r["source"],
            version=r["snapshot_version"],
        )
        for r in rows
    ]
    return PriceBook(entries, meta={"version": rows[0]["snapshot_version"]})


def api_overrides(engine: Engine) -> list[dict[str, Any]]:
    """Overrides written through the Models API (not deleted), oldest first, as cams.yaml would hold them."""
    mpo = t.model_price_overrides
    with engine.connect() as conn:
        rows = conn.execute(
            select(mpo.c.override_json).where(mpo.c.deleted_at.is_(None)).order_by(mpo.c.created_at, mpo.c.id)
        ).scalars()
        return [json.loads(r) for r in rows]


def add_override(engine: Engine, override: dict[str, Any], created_by: str | None) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            t.model_price_overrides.insert().values(
                model=override["model"],
                override_json=json.dumps(override, sort_keys=True, default=str),
                valid_from=to_utc(override.get("valid_from")) or now,
                created_by=created_by,
                created_at=now,
            )
        )


def delete_overrides(engine: Engine, model: str) -> int:
    """Mark the model's API overrides deleted; returns how many there were."""
    mpo = t.model_price_overrides
    with engine.begin() as conn:
        return conn.execute(
            update(mpo).where(mpo.c.model == model, mpo.c.deleted_at.is_(None)).values(deleted_at=datetime.now(UTC))
        ).rowcount


def versions(engine: Engine, committed: Mapping[str, Any], now: datetime | None = None) -> list[PriceVersion]:
    """The price book's snapshot versions, oldest first, recording the committed snapshot as needed.

    The first load records the committed snapshot as the version in force from 1970. A committed
    snapshot the warehouse has not seen (CAMS upgraded with newer prices) becomes a version from
    now, so an upgrade never reprices days already costed.
    """
    pv = t.price_versions
    with engine.connect() as conn:
        digests = set(conn.execute(select(pv.c.digest)).scalars())
    if content_digest(committed) not in digests:
        start = MIN_TIME if not digests else (now or datetime.now(UTC))
        add_version(engine, committed, start, "committed snapshot" if not digests else "committed snapshot (upgrade)")
    with engine.connect() as conn:
        rows = conn.execute(select(pv.c.effective_from, pv.c.snapshot_json).order_by(pv.c.effective_from)).all()
    return [PriceVersion(to_utc(r.effective_from), json.loads(r.snapshot_json)) for r in rows]  # type: ignore[arg-type]


def add_version(
    engine: Engine, snapshot: Mapping[str, Any], effective_from: datetime, created_by: str
) -> PriceVersion | None:
    """Record a dated snapshot version; None when the version in force then already has these prices."""
    pv = t.price_versions
    version = PriceVersion(effective_from, snapshot)
    with engine.begin() as conn:
        lock_for_replace(conn, pv)
        in_force = conn.execute(
            select(pv.c.digest)
            .where(pv.c.effective_from <= effective_from)
            .order_by(pv.c.effective_from.desc())
            .limit(1)
        ).scalar()
        if in_force == version.digest:
            return None
        row = {
            "version_id": version.version_id,
            "effective_from": effective_from,
            "digest": version.digest,
            "source": str(snapshot.get("_meta", {}).get("source", ""))[:2000],
            "snapshot_json": json.dumps(snapshot, sort_keys=True),
            "created_at": datetime.now(UTC),
            "created_by": created_by[:200],
        }
        insert_new_rows(conn, pv, [row])
    return version


def current_book(
    engine: Engine, pricing: PricingConfig, extra_overrides: Sequence[Mapping[str, Any]] = ()
) -> PriceBook:
    """The book as the next price_book run builds it: every snapshot version, cams.yaml's overrides and
    discounts, the Models API's prices, and `extra_overrides` (a price about to be written)."""
    history = versions(engine, snapshots.load(pricing.snapshot))
    return PriceBook.build(
        history[0].snapshot,
        [*pricing.overrides, *api_overrides(engine), *extra_overrides],
        pricing.discounts,
        later=history[1:],
    )
