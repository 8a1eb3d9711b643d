"""Landing, costing and rollups on each backend: idempotent partitions, NUMERIC money, exact costs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from cams.config import PricingConfig, parse
from cams.costing import cost_partition, rollup_partition
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.simulator.drops import write_drops
from cams.sources.batch import Collector
from cams.sources.files import collect_files, list_drop_files
from cams.sources.landing import land
from cams.sources.timeutil import day_window
from cams.warehouse.db import epoch_bucket, migrate


def _money(value) -> Decimal:  # type: ignore[no-untyped-def]
    """SQLite keeps NUMERIC as 8-byte REAL, so SUM order moves the 15th digit: compare at 1e-9."""
    return Decimal(str(value)).quantize(Decimal("1e-9"))


def _totals(engine) -> dict:  # type: ignore[no-untyped-def]
    with engine.connect() as c:
        return {
            "landing": c.execute(sa.text("select count(*) from relaycore_usage")).scalar_one(),
            "spans": c.execute(sa.text("select count(*) from auterity_spans")).scalar_one(),
            "quarantine": c.execute(sa.text("select count(*) from quarantine")).scalar_one(),
            "cost": _money(c.execute(sa.text("select sum(cost_usd) from cost_tracking")).scalar_one()),
            "rows": c.execute(sa.text("select count(*) from cost_tracking")).scalar_one(),
            "rollup_cost": _money(c.execute(sa.text("select sum(cost_usd) from cost_daily_rollups")).scalar_one()),
            "rollup_requests": c.execute(sa.text("select sum(requests) from cost_daily_rollups")).scalar_one(),
        }


def _run_day(engine, dirs, day, book) -> None:  # type: ignore[no-untyped-def]
    start, end = day_window(day)
    for source in ("relaycore", "auterity"):
        c = Collector(source, start, end)
        collect_files(c, list_drop_files(dirs[source]))
        land(engine, c.result, "files")
    cost_partition(engine, day, day + timedelta(days=1), book)
    rollup_partition(engine, day, day + timedelta(days=1))


def test_rematerializing_a_day_changes_no_totals(engine, tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    dirs = write_drops(small_sim, tmp_path)
    pricebook_store.store(engine, load_book(PricingConfig()))
    book = pricebook_store.load(engine)
    for day in sim_days:
        _run_day(engine, dirs, day, book)
    first = _totals(engine)
    assert first["landing"] == sum(small_sim.faults.day(d)["requests"] for d in sim_days)
    assert first["quarantine"] == sum(
        small_sim.faults.day(d)["malformed"] + small_sim.faults.day(d)["malformed_spans"] for d in sim_days
    )
    assert abs(first["rollup_cost"] - first["cost"]) < Decimal("0.000001")
    assert first["rollup_requests"] == first["rows"] == first["landing"]
    _run_day(engine, dirs, sim_days[0], book)
    _run_day(engine, dirs, sim_days[0], book)
    assert _totals(engine) == first
    migrate(engine)  # migrations are idempotent
    assert _totals(engine) == first


def test_costs_equal_the_price_book_and_unpriced_is_null(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from datetime import date

    day = date(2026, 5, 1)
    recs = [
        {
            "request_id": "a",
            "timestamp": "2026-05-01T01:00:00Z",
            "org_id": "o",
            "task_type": "chat",
            "model": "gpt-4o-mini",
            "provider": "openai",
            "input_tokens": 1000,
            "output_tokens": 500,
            "cached_input_tokens": 200,
            "status": "success",
            "cost_usd": "0.001",
        },
        {
            "request_id": "b",
            "timestamp": "2026-05-01T02:00:00Z",
            "org_id": "o",
            "task_type": "chat",
            "model": "claude-sonnet-4-5",
            "provider": "anthropic",
            "input_tokens": 10000,
            "output_tokens": 1000,
            "cached_input_tokens": 4000,
            "cache_creation_input_tokens": 1000,
            "reasoning_tokens": 200,
            "service_tier": "batch",
            "status": "success",
            "cost_usd": "0.02",
        },
        {
            "request_id": "c",
            "timestamp": "2026-05-01T03:00:00Z",
            "org_id": "o",
            "task_type": "chat",
            "model": "mystery-model",
            "provider": "internal",
            "input_tokens": 10,
            "output_tokens": 10,
            "status": "success",
            "cost_usd": "0.5",
        },
        {
            "request_id": "d",
            "timestamp": "2026-05-01T04:00:00Z",
            "org_id": "o",
            "task_type": "chat",
            "model": "gpt-4o-mini",
            "provider": "openai",
            "input_tokens": 1000,
            "output_tokens": 0,
            "status": "success",
            "cost_usd": "0",
        },
    ]
    drop = tmp_path / "relaycore"
    drop.mkdir()
    (drop / "x.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    cfg = parse(
        {
            "pricing": {
                "overrides": [
                    {"model": "gpt-4o-mini", "valid_from": "2026-05-01T03:30:00Z", "input_cost_per_token": 1e-6}
                ]
            }
        }
    )
    pricebook_store.store(engine, load_book(cfg.pricing))
    _run_day(engine, {"relaycore": drop, "auterity": tmp_path / "none"}, day, pricebook_store.load(engine))
    with engine.connect() as c:
        got = {
            r.request_id: r
            for r in c.execute(
                sa.text("select request_id, cost_usd, charged_usd, unpriced, price_id from cost_tracking")
            )
        }
    # a: 800*1.5e-7 + 200*7.5e-8 + 500*6e-7 ; b (batch): 5000*1.5e-6 + 4000*1.5e-7 + 1000*1.875e-6 + 1000*7.5e-6
    assert Decimal(str(got["a"].cost_usd)) == Decimal("0.000435")
    assert Decimal(str(got["b"].cost_usd)) == Decimal("0.017475")
    assert got["c"].cost_usd is None and bool(got["c"].unpriced) and got["c"].price_id is None
    assert Decimal(str(got["c"].charged_usd)) == Decimal("0.5")
    # d is after the override's valid_from: the new price applies, and its price_id says so
    assert Decimal(str(got["d"].cost_usd)) == Decimal("0.001")
    assert got["d"].price_id != got["a"].price_id


def test_quality_stats_from_the_warehouse_match_the_definitions(engine) -> None:  # type: ignore[no-untyped-def]
    """model_quality_stats' aggregates (in SQL on PostgreSQL, pandas on SQLite) against numpy by hand."""
    from datetime import UTC, date, datetime

    import numpy as np

    from cams.selection.quality import QualitySettings
    from cams.selection.store import quality_stats_for
    from cams.warehouse import schema as t
    from cams.warehouse.db import insert_rows

    rng = np.random.default_rng(5)
    rows, expected = [], {}
    for model, task, n in (("gpt-4o-mini", "chat", 97), ("claude-haiku-4-5", "code", 12)):
        dur = rng.integers(50, 9000, n)
        score = np.where(rng.random(n) < 0.4, np.nan, rng.random(n).round(3))
        status = np.where(rng.random(n) < 0.1, "ERROR", np.where(rng.random(n) < 0.5, "OK", "UNSET"))
        tokens_in, tokens_out = rng.integers(1, 5000, n), rng.integers(1, 900, n)
        for i in range(n):
            at = datetime(2026, 6, 1, 10, tzinfo=UTC)
            rows.append(
                {
                    "day": date(2026, 6, 1),
                    "span_id": f"{model}-{i}",
                    "trace_id": "t",
                    "start_time": at,
                    "end_time": at,
                    "duration_ms": int(dur[i]),
                    "status_code": str(status[i]),
                    "response_model": model,
                    "task_type": task,
                    "input_tokens": int(tokens_in[i]),
                    "output_tokens": int(tokens_out[i]),
                    "quality_score": None if np.isnan(score[i]) else float(score[i]),
                    "ingested_at": at,
                }
            )
        scored = score[~np.isnan(score)]
        prior, k = 0.7, 20.0
        expected[(model, task)] = {
            "spans": n,
            "scored": len(scored),
            "mean_score": scored.mean(),
            "quality": (len(scored) * scored.mean() + k * prior) / (len(scored) + k),
            "success_rate": float(np.mean(status != "ERROR")),
            "p50_latency_ms": np.percentile(dur, 50),
            "p95_latency_ms": np.percentile(dur, 95),
            "median_input_tokens": np.median(tokens_in),
            "median_output_tokens": np.median(tokens_out),
        }
    rows.append({**rows[0], "span_id": "no-model", "response_model": None})  # not a model's: left out
    # a group whose spans carry no token counts: its medians are unknown, the rest is known
    rows += [{**rows[0], "span_id": f"blind-{i}", "response_model": "gpt-4.1", "input_tokens": None} for i in range(3)]
    rows[-3:] = [{**r, "output_tokens": None} for r in rows[-3:]]
    rows.append({**rows[0], "span_id": "old", "day": date(2026, 4, 1)})  # outside the 30 days: left out
    with engine.begin() as conn:
        insert_rows(conn, t.auterity_spans, rows)
    stats, _ = quality_stats_for(engine, datetime(2026, 6, 2, tzinfo=UTC), QualitySettings({}))
    got = {(r["model"], r["task_type"]): r for r in stats.to_dict("records")}
    blind = got.pop(("gpt-4.1", "chat"))
    assert blind["spans"] == 3 and blind["p50_latency_ms"] == rows[0]["duration_ms"]
    assert blind["median_input_tokens"] is None and blind["median_output_tokens"] is None
    assert set(got) == set(expected)
    for key, want in expected.items():
        for col, value in want.items():
            assert abs(float(got[key][col]) - float(value)) < 1e-9, (key, col, got[key][col], value)


def test_epoch_buckets_are_exact_at_the_microsecond_either_side_of_an_edge(engine) -> None:  # type: ignore[no-untyped-def]
    """epoch_bucket (spend_quarter_hours' quarter, a budget's per-second sums) floors a time's epoch seconds
    over the stretch: on PostgreSQL from date_part's double, which must land a request a microsecond before
    an edge in the bucket before it and one on the edge in its own, as integer arithmetic does."""
    import random
    from datetime import UTC, datetime

    rng = random.Random(3)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    times = []
    for year in (2001, 2026, 2027, 2038, 2099, 2111):
        for _ in range(12):
            edge = datetime(
                year, rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24), 15 * rng.randrange(4), tzinfo=UTC
            )
            times += [edge, edge - timedelta(microseconds=1), edge + timedelta(microseconds=1)]
            times.append(edge + timedelta(microseconds=rng.randrange(900_000_000)))
    times = sorted(set(times))
    points = sa.union_all(*(sa.select(sa.literal(x, sa.DateTime(timezone=True)).label("ts")) for x in times)).subquery()
    for seconds in (900, 1):
        with engine.connect() as conn:
            got = conn.execute(sa.select(epoch_bucket(points.c.ts, seconds)).order_by(points.c.ts)).all()
        micros = [(x - epoch) // timedelta(microseconds=1) for x in times]
        assert [b for (b,) in got] == [m // (seconds * 1_000_000) for m in micros], seconds
