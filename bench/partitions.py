"""Day partitions on PostgreSQL, side by side with plain tables: replacing a day, retention, the migration.

    .venv/bin/python bench/partitions.py [--rows 1000000] [--days 3] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Two fresh warehouses: one left at migration 0011 (plain tables), one at head (0012, partitioned).
Each gets `--days` days of `--rows` cost_tracking rows (generated in SQL). Then, on each:
- replace one day (what a re-run does: remove the day's rows in the run's transaction, insert them again),
- remove the oldest day (retention),
and the table's size and dead tuples after. Last, the plain warehouse is migrated to head: the time of
the conversion per million rows (what a maintenance window costs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch_db import scratch_database  # noqa: E402

DAY0 = date(2026, 6, 1)


def fill(engine, days: int, rows: int) -> None:  # type: ignore[no-untyped-def]
    from cams.warehouse import schema as t
    from cams.warehouse.partitions import prepare_days

    for i in range(days):
        day = DAY0 + timedelta(days=i)
        prepare_days(engine, t.cost_tracking, [day])
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO cost_tracking (day, request_id, timestamp, org_id, team_id, user_id, task_type, "
                "model, provider, service_tier, status, input_tokens, output_tokens, cached_input_tokens, "
                "cache_creation_input_tokens, reasoning_tokens, cost_usd, charged_usd, unpriced, price_id, "
                "computed_at) "
                f"SELECT '{day}', 'r{i}-' || g, '{day}T12:00:00Z', 'org' || (g %% 50), 'team' || (g %% 300), "
                "'user' || (g %% 5000), 'chat', 'gpt-4o', 'openai', 'standard', 'success', 1000, 200, 0, 0, 0, "
                "0.004, 0.004, false, 'gpt-4o@1970', now() FROM generate_series(1, %s) g",
                (rows,),
            )
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE cost_tracking")


def measure(engine, rows: int, days: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from cams.warehouse import schema as t
    from cams.warehouse.partitions import drop_days_before, prepare_days, replace_days

    out: dict[str, float] = {}
    day = DAY0 + timedelta(days=days - 1)
    prepare_days(engine, t.cost_tracking, [day])
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TEMP TABLE again ON COMMIT DROP AS SELECT * FROM cost_tracking WHERE day = %s", (day,)
        )
        removed, _ = replace_days(conn, t.cost_tracking, day, day + timedelta(days=1))
        conn.exec_driver_sql("INSERT INTO cost_tracking SELECT * FROM again")
    out["replace_day_s"] = time.perf_counter() - t0
    assert removed == rows, removed
    with engine.connect() as conn:
        out["dead_tuples"] = conn.exec_driver_sql(
            "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname LIKE 'cost_tracking%%'"
        ).scalar_one()
    t0 = time.perf_counter()
    with engine.begin() as conn:
        pruned = drop_days_before(conn, t.cost_tracking, DAY0 + timedelta(days=1))
    out["retention_s"] = time.perf_counter() - t0
    assert pruned.rows == rows
    with engine.connect() as conn:
        out["size_mib"] = (
            conn.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relname LIKE 'cost_tracking%%' AND c.relkind = 'r'"
            ).scalar_one()
            / 2**20
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per day")
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--pg", default=os.environ.get("CAMS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    a = ap.parse_args()
    from alembic import command

    from cams.warehouse.db import alembic_config, make_engine, migrate

    results = {}
    with scratch_database(a.pg, "cams_bpart") as part_url, scratch_database(a.pg, "cams_bplain") as plain_url:
        plain, part = make_engine(plain_url), make_engine(part_url)
        with plain.begin() as conn:
            cfg = alembic_config(plain)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0011")
        migrate(part)
        for name, engine in (("plain (DELETE)", plain), ("partitioned (TRUNCATE, DROP)", part)):
            t0 = time.perf_counter()
            fill(engine, a.days, a.rows)
            print(f"# {name}: {a.days} days x {a.rows:,} rows loaded in {time.perf_counter() - t0:.1f} s", flush=True)
            results[name] = measure(engine, a.rows, a.days)
            print(name, results[name], flush=True)
        # the migration of a warehouse holding (days - 1) days of rows
        held = (a.days - 1) * a.rows
        t0 = time.perf_counter()
        migrate(plain)
        took = time.perf_counter() - t0
        plain.dispose()
        part.dispose()
    p, q = results["plain (DELETE)"], results["partitioned (TRUNCATE, DROP)"]
    print(f"\n| cost_tracking, {a.rows:,} rows a day | plain table | day partitions | ratio |")
    print("|---|---|---|---|")
    r = p["replace_day_s"] / q["replace_day_s"]
    print(f"| replace a day | {p['replace_day_s']:.2f} s | {q['replace_day_s']:.2f} s | {r:.1f}x |")
    print(f"| dead tuples after | {p['dead_tuples']:,} | {q['dead_tuples']:,} | |")
    r = p["retention_s"] / q["retention_s"]
    print(f"| retention of a day | {p['retention_s']:.2f} s | {q['retention_s']:.2f} s | {r:.0f}x |")
    print(f"| size after (dead rows not vacuumed) | {p['size_mib']:,.0f} MiB | {q['size_mib']:,.0f} MiB | |")
    print(f"\nmigration 0012 of {held:,} cost_tracking rows: {took:.1f} s ({took / held * 1e6:.1f} s per million rows)")


if __name__ == "__main__":
    main()
