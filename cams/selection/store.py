"""Selection data in the warehouse: quality stats, published table versions, explanations, history."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, delete, select, true

from cams.selection.preferences import OwnedByConfig, Preference, parse_preference
from cams.selection.quality import QualitySettings, with_quality
from cams.selection.quality_days import window_groups
from cams.warehouse import schema as t
from cams.warehouse.db import insert_new_rows, insert_rows, replace_rows, sync_config_rows

STATS_WINDOW_DAYS = 30


def quality_stats_for(
    engine: Engine, as_of: datetime, settings: QualitySettings, days: int = STATS_WINDOW_DAYS
) -> tuple[pd.DataFrame, dict[str, int]]:
    """model_quality_stats over the spans of the `days` days before as_of's day, and that day; and how
    many days were read from the kept counts and how many counted now (`quality_days.window_groups`).

    Each day's sums and value counts are kept while its landing stands, so a run counts the days landed
    since the one before, and the percentiles stay exact (PostgreSQL's percentile_cont, to the bit)."""
    groups, reads = window_groups(engine, (as_of - timedelta(days=days)).date(), as_of.date())
    return with_quality(groups, settings), reads


def _stats_window(as_of: datetime, days: int) -> Any:
    """The spans quality stats cover: the `days` days before as_of's day, and that day."""
    sp = t.auterity_spans
    return and_(sp.c.day >= (as_of - timedelta(days=days)).date(), sp.c.day <= as_of.date())


def spans_for_stats(engine: Engine, as_of: datetime, days: int = STATS_WINDOW_DAYS) -> pd.DataFrame:
    """Every span of the window, the columns `quality.quality_stats` reads: the definitions' input (tests, bench)."""
    sp = t.auterity_spans
    cols = [
        "response_model",
        "task_type",
        "status_code",
        "quality_score",
        "duration_ms",
        "input_tokens",
        "output_tokens",
    ]
    with engine.connect() as conn:
        rows = conn.execute(select(*(sp.c[c] for c in cols)).where(_stats_window(as_of, days))).all()
    frame = pd.DataFrame(rows, columns=cols)
    frame["quality_score"] = pd.to_numeric(frame["quality_score"], errors="coerce")
    return frame


def store_stats(engine: Engine, stats: pd.DataFrame) -> int:
    now = datetime.now(UTC)
    rows = [{**r, "computed_at": now} for r in stats.to_dict("records")]
    with engine.begin() as conn:
        replace_rows(conn, t.model_quality_stats, true(), rows)
    return len(rows)


def load_stats(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(select(t.model_quality_stats))
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def publish(engine: Engine, table: dict[str, Any], now: datetime | None = None, as_of: datetime | None = None) -> str:
    """Insert a new version (and its row explanations) in one transaction; readers see all or nothing.

    `now` is when it is published (the newest is served); `as_of` the time it was evaluated for."""
    now = now or datetime.now(UTC)
    body = json.dumps(table, sort_keys=True)
    version = f"{now:%Y%m%dT%H%M%S}-{hashlib.sha256(body.encode()).hexdigest()[:8]}"
    explanations = []
    for r in table["rows"]:
        cands = r["candidates"]
        explanations.append(
            {
                "id": f"{version}:{r['task_type']}:{r['tier']}",
                "table_version": version,
                "kind": "row",
                "org_id": None,
                "request_id": None,
                "created_at": now,
                "explanation_json": json.dumps(
                    {
                        "task_type": r["task_type"],
                        "tier": r["tier"],
                        "min_quality": r["min_quality"],
                        "chosen": cands[0]["model"] if cands else None,
                        "why": (
                            f"cheapest of {len(cands)} models with expected quality >= {r['min_quality']} and success "
                            f"rate >= {table['success_floor']}"
                        )
                        if cands
                        else "no model qualifies",
                        "alternatives": cands[1:6],
                        "rejected": r["rejected"],
                        "budget_states": {
                            "ok": r["tier"],
                            "warning": r["tier"],
                            "critical": r["tier"],
                            "downgrade": "one tier down",
                            "block": "402 refused",
                        },
                    }
                ),
            }
        )
    # The version is the second and the content's hash: two runs publishing the same table in the
    # same second publish one version, not a key collision.
    with engine.begin() as conn:
        published = {"version": version, "created_at": now, "table_json": body, "as_of": as_of or now}
        insert_new_rows(conn, t.model_selection_tables, [published])
        insert_new_rows(conn, t.model_selection_explanations, explanations)
    return version


def latest(engine: Engine) -> tuple[str, dict[str, Any]] | None:
    mst = t.model_selection_tables
    with engine.connect() as conn:
        row = conn.execute(
            select(mst.c.version, mst.c.table_json).order_by(mst.c.created_at.desc(), mst.c.version.desc()).limit(1)
        ).first()
    return (row.version, json.loads(row.table_json)) if row else None


def latest_version(engine: Engine) -> str | None:
    mst = t.model_selection_tables
    with engine.connect() as conn:
        return conn.execute(
            select(mst.c.version).order_by(mst.c.created_at.desc(), mst.c.version.desc()).limit(1)
        ).scalar()


def budget_states(engine: Engine) -> list[dict[str, Any]]:
    bs = t.budget_status
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(bs.c.budget_id, bs.c.scope, bs.c.scope_id, bs.c.org_id, bs.c.state, bs.c.action)
            ).mappings()
        ]


def _preference_row(p: Preference, source: str, now: datetime) -> dict[str, Any]:
    return {
        "id": p.key,
        "org_id": p.org_id,
        "team_id": p.team_id,
        "preference_json": json.dumps(p.as_dict(), sort_keys=True),
        "source": source,
        "created_at": now,
        "updated_at": now,
    }


def sync_yaml_preferences(engine: Engine, prefs: Sequence[Preference]) -> dict[str, int]:
    """cams.yaml is the truth for its preferences (as for its budgets): upsert them, drop YAML ones no
    longer listed, leave those written through the API alone; a scope in both is owned by YAML."""
    now = datetime.now(UTC)
    rows = [_preference_row(p, "yaml", now) for p in prefs]
    return {"preferences": len(prefs), **sync_config_rows(engine, t.selection_preferences, rows, "preference_json")}


def preference_rows(engine: Engine, org_id: str | None = None) -> list[dict[str, Any]]:
    """Stored preferences (one org's, or all) with their source and times, in scope order."""
    sp = t.selection_preferences
    query = select(sp).order_by(sp.c.id)
    if org_id is not None:
        query = query.where(sp.c.org_id == org_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def load_preferences(engine: Engine) -> list[Preference]:
    """Every stored preference, parsed: what selection applies."""
    return [parse_preference(json.loads(r["preference_json"])) for r in preference_rows(engine)]


def put_preference(engine: Engine, p: Preference) -> dict[str, Any]:
    """Write a preference through the API; the row written. One of cams.yaml's is refused (OwnedByConfig)."""
    sp = t.selection_preferences
    now = datetime.now(UTC)
    row = _preference_row(p, "api", now)
    with engine.begin() as conn:
        old = conn.execute(select(sp.c.source, sp.c.created_at).where(sp.c.id == p.key)).first()
        if old is not None and old.source == "yaml":
            raise OwnedByConfig(f"the preference of {p.key} is managed in cams.yaml; change it there")
        if old is not None:
            row["created_at"] = old.created_at
            conn.execute(delete(sp).where(sp.c.id == p.key))
        insert_rows(conn, sp, [row])
    return row


def delete_preference(engine: Engine, key: str) -> bool | None:
    """Delete an API preference: True when deleted, False when none, None when cams.yaml owns it."""
    sp = t.selection_preferences
    with engine.begin() as conn:
        old = conn.execute(select(sp.c.source).where(sp.c.id == key)).first()
        if old is None:
            return False
        if old.source == "yaml":
            return None
        conn.execute(delete(sp).where(sp.c.id == key))
    return True
