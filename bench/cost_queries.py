"""Cost-analysis queries on a month of a million requests a day (PostgreSQL).

    .venv/bin/python bench/cost_queries.py [--days 30] [--per-day 1000000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Fills `cost_tracking` with `days` × `per-day` synthetic requests in SQL (3 orgs, 12 teams, 48 users,
9 models, 5 providers, 5 task types), builds `cost_daily_rollups` with the pipeline's own
`rollup_partition`, then times the HTTP API's cost-analysis endpoints (in process, through FastAPI)
for one org over the whole month, next to the same aggregate run on the raw per-request table, the
way a gateway's spend-log table is queried. Prints table sizes too. Drops its database at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import date, timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient
from scratch_db import scratch_database

from cams.api.app import create_app
from cams.api.keys import create_key
from cams.costing import rollup_partition
from cams.warehouse.db import make_engine, migrate

START = date(2026, 6, 1)
MODELS = [
    ("gpt-4o-mini", "openai"),
    ("gpt-4.1", "openai"),
    ("claude-haiku-4-5", "anthropic"),
    ("claude-sonnet-4-5", "anthropic"),
    ("gemini/gemini-2.5-flash", "gemini"),
    ("gemini/gemini-2.5-pro", "gemini"),
    ("mistral/mistral-small-latest", "mistral"),
    ("deepseek/deepseek-chat", "deepseek"),
    ("mistral/mistral-large-latest", "mistral"),
]
FILL = """
INSERT INTO cost_tracking (day, request_id, timestamp, org_id, team_id, user_id, task_type, model, provider,
    service_tier, status, input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens,
    reasoning_tokens, cost_usd, charged_usd, unpriced, price_id, computed_at)
SELECT CAST(:day AS date), 'r' || :d || '-' || i, CAST(:day AS timestamptz) + (i % 86400) * interval '1 second',
    (ARRAY['acme','globex','initech'])[1 + i % 3], 'team' || (i % 12), 'user' || (i % 48),
    (ARRAY['chat','summarize','code','extract','classify'])[1 + i % 5],
    (CAST(:models AS text[]))[1 + (i / 7) % 9], (CAST(:providers AS text[]))[1 + (i / 7) % 9], 'standard',
    CASE WHEN i % 50 = 0 THEN 'error' ELSE 'success' END,
    200 + i % 4000, 50 + i % 900, 0, 0, 0, (200 + i % 4000) * 0.0000005 + (50 + i % 900) * 0.000002,
    (200 + i % 4000) * 0.0000005 + (50 + i % 900) * 0.000002, false, 'bench', now()
FROM generate_series(1, :n) AS i
"""


def timed(fn, runs: int = 5) -> float:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--per-day", type=int, default=1_000_000)
    ap.add_argument("--pg", default=os.environ.get("CAMS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    a = ap.parse_args()
    with scratch_database(a.pg, "cams_bench_q") as url:
        run(url, a)


def run(url: str, a: argparse.Namespace) -> None:
    """Fill a month, build its rollups, time the queries."""
    engine = make_engine(url)
    try:
        migrate(engine)
        models = [m for m, _ in MODELS]
        providers = [p for _, p in MODELS]
        t0 = time.perf_counter()
        for d in range(a.days):
            with engine.begin() as conn:
                conn.execute(
                    sa.text(FILL),
                    {
                        "day": START + timedelta(days=d),
                        "d": d,
                        "n": a.per_day,
                        "models": models,
                        "providers": providers,
                    },
                )
        fill_s = time.perf_counter() - t0
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE cost_tracking")
        t0 = time.perf_counter()
        rollup_rows = rollup_partition(engine, START, START + timedelta(days=a.days))
        rollup_s = time.perf_counter() - t0
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE cost_daily_rollups")
            sizes = {
                tbl: conn.exec_driver_sql(f"SELECT pg_size_pretty(pg_total_relation_size('{tbl}'))").scalar_one()
                for tbl in ("cost_tracking", "cost_daily_rollups")
            }
        total = a.days * a.per_day
        print(f"cost_tracking: {total:,} rows ({sizes['cost_tracking']} with indexes), filled in {fill_s:.0f} s")
        print(f"cost_daily_rollups: {rollup_rows:,} rows ({sizes['cost_daily_rollups']}), built in {rollup_s:.1f} s")
        app = create_app(engine, refresh_s=3600, flush_s=3600)
        end = START + timedelta(days=a.days - 1)
        q = f"org_id=acme&start={START}&end={end}"
        with TestClient(app) as c:
            h = {"Authorization": f"Bearer {create_key(engine, ['read'])}"}
            app.state.service.refresh()
            print(f"\n| query, org acme, {a.days} days | API on rollups, ms | same on cost_tracking, ms |")
            print("|---|---|---|")
            raw = {
                "summary": "SELECT count(*), sum(cost_usd), sum(charged_usd) FROM cost_tracking "
                "WHERE org_id = 'acme' AND day BETWEEN :s AND :e",
                "by-model": "SELECT model, count(*), sum(cost_usd) FROM cost_tracking "
                "WHERE org_id = 'acme' AND day BETWEEN :s AND :e GROUP BY model ORDER BY 3 DESC",
                "by-provider": "SELECT provider, count(*), sum(cost_usd) FROM cost_tracking "
                "WHERE org_id = 'acme' AND day BETWEEN :s AND :e GROUP BY provider ORDER BY 3 DESC",
                "trends?granularity=day": "SELECT day, count(*), sum(cost_usd) FROM cost_tracking "
                "WHERE org_id = 'acme' AND day BETWEEN :s AND :e GROUP BY day ORDER BY day",
            }
            for path, sql in raw.items():
                sep = "&" if "?" in path else "?"
                url = f"/api/v1/cost-analysis/{path}{sep}{q}"
                assert c.get(url, headers=h).status_code == 200
                api_ms = timed(lambda url=url: c.get(url, headers=h))
                with engine.connect() as conn:
                    raw_ms = timed(lambda sql=sql: conn.execute(sa.text(sql), {"s": START, "e": end}).all(), runs=3)
                print(f"| {path} | {api_ms:.1f} | {raw_ms:,.0f} |")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
