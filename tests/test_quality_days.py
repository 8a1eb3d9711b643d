"""model_quality_stats from each day's kept sums and value counts (`cams.selection.quality_days`): the same
figures as from every span, on both backends; a day counted again only when it is landed again; kept
counts leave with retention; two runs at once keep each day once."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from assets.as_of import AS_OF_TAG
from assets.retention import build_retention_asset
from cams.config import RetentionConfig
from cams.selection.quality import QualitySettings, quality_stats
from cams.selection.quality_days import count_day
from cams.selection.store import quality_stats_for, spans_for_stats
from cams.sources.batch import Collector
from cams.sources.landing import land
from cams.sources.timeutil import day_window
from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows
from cams.warehouse.partitions import prepare_days
from resources.warehouse import WarehouseResource
from tests.conftest import PG_URL

DAYS = [date(2026, 6, d) for d in (1, 2, 3)]
AS_OF = datetime(2026, 6, 3, 23, 59, 59, 999999, tzinfo=UTC)
SETTINGS = QualitySettings({"gpt-4o-mini": 0.6})
FIGURES = ["spans", "scored", "mean_score", "quality", "success_rate"]
PERCENTILES = ["p50_latency_ms", "p95_latency_ms", "median_input_tokens", "median_output_tokens"]


def _spans(day: date, n: int, seed: int) -> list[dict[str, Any]]:
    """Flat Auterity spans of a day: three models × two tasks, some errors, scores on some, token counts
    missing on some (and on every span of one group), repeated durations (so values carry counts > 1)."""
    rng = random.Random(seed)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    out = []
    for i in range(n):
        model = rng.choice(["gpt-4o-mini", "claude-haiku-4-5", "gemini/gemini-2.5-flash"])
        task = rng.choice(["chat", "code"])
        at = start + timedelta(seconds=rng.randrange(86_000))
        attrs: dict[str, Any] = {"gen_ai.response.model": model, "cams.task_type": task}
        if not (model == "gemini/gemini-2.5-flash" and task == "code") and rng.random() < 0.9:
            attrs["gen_ai.usage.input_tokens"] = rng.randrange(1, 6000)
            attrs["gen_ai.usage.output_tokens"] = rng.choice([5, 50, rng.randrange(1, 900)])
        if rng.random() < 0.4:
            attrs["auterity.quality.score"] = round(rng.random(), 3)
        out.append(
            {
                "span_id": f"{day}-{seed}-{i}",
                "trace_id": f"t{i}",
                "start_time": at.isoformat(),
                "end_time": (at + timedelta(milliseconds=rng.choice([120, 450, rng.randrange(50, 9000)]))).isoformat(),
                "status": {"code": "ERROR" if rng.random() < 0.08 else rng.choice(["OK", "UNSET"])},
                "attributes": attrs,
            }
        )
    return out


def _land(engine: sa.Engine, day: date, spans: list[dict[str, Any]]) -> None:
    """The day's spans landed as a run lands them: the day replaced, a cost_sync_history row written."""
    start, end = day_window(day)
    collector = Collector("auterity", start, end)
    for i, span in enumerate(spans):
        collector.add_record(f"p:{i}", span, "")
    land(engine, collector.result, "api")


def _by_group(frame: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["model"], r["task_type"]): r for r in frame.to_dict("records")}


def _same(got: dict, want: dict, exact: bool) -> None:
    assert set(got) == set(want)
    for key, w in want.items():
        for col in FIGURES + PERCENTILES:
            g, x = got[key][col], w[col]
            if x is None or (isinstance(x, float) and np.isnan(x)):
                assert g is None, (key, col, g)
            elif exact and col in PERCENTILES:
                assert g == x, (key, col, g, x)
            else:
                assert g == pytest.approx(x, rel=1e-12), (key, col, g, x)


def _percentile_cont(engine: sa.Engine) -> dict[tuple[str, str], dict[str, Any]]:
    """PostgreSQL's own percentile_cont over every span of the window: what the kept counts must give, to the bit."""
    sql = """
        SELECT response_model, task_type,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms::float8),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms::float8),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY input_tokens::float8),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY output_tokens::float8)
        FROM auterity_spans WHERE day BETWEEN :a AND :b AND response_model IS NOT NULL AND task_type IS NOT NULL
        GROUP BY 1, 2"""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"a": AS_OF.date() - timedelta(days=30), "b": AS_OF.date()}).all()
    return {(r[0], r[1]): dict(zip(PERCENTILES, r[2:], strict=True)) for r in rows}


def _check_against_every_span(engine: sa.Engine, stats: Any) -> None:
    got = _by_group(stats)
    # the definitions (pandas over every span of the window)
    _same(got, _by_group(quality_stats(spans_for_stats(engine, AS_OF), SETTINGS)), exact=False)
    if engine.dialect.name == "postgresql":
        for key, want in _percentile_cont(engine).items():
            assert {c: got[key][c] for c in PERCENTILES} == want, key


def test_kept_day_counts_give_the_figures_of_every_span_and_only_new_landings_are_counted(engine) -> None:  # type: ignore[no-untyped-def]
    prepare_days(engine, t.auterity_spans, DAYS)
    for k, day in enumerate(DAYS):
        _land(engine, day, _spans(day, 400, k))
    first, reads = quality_stats_for(engine, AS_OF, SETTINGS)
    assert reads == {"days_read_kept": 0, "days_counted": 3, "days_counted_unkept": 0}
    _check_against_every_span(engine, first)
    with engine.connect() as conn:
        kept = conn.execute(sa.select(t.quality_day_values.c.day, t.quality_day_values.c.landing)).all()
        landings = conn.execute(sa.select(t.cost_sync_history.c.id).order_by(t.cost_sync_history.c.id)).scalars().all()
    assert {d for d, _ in kept} == set(DAYS) and {n for _, n in kept} == set(landings)

    # the next run reads what it kept: the same figures, nothing counted (a kept row altered shows)
    again, reads = quality_stats_for(engine, AS_OF, SETTINGS)
    assert reads == {"days_read_kept": 3, "days_counted": 0, "days_counted_unkept": 0}
    assert again.to_dict("records") == first.to_dict("records")
    q = t.quality_day_values
    with engine.begin() as conn:
        conn.execute(sa.update(q).where(q.c.day == DAYS[1]).values(spans=q.c.spans + 1000))
    tampered, _ = quality_stats_for(engine, AS_OF, SETTINGS)
    assert tampered["spans"].sum() == first["spans"].sum() + 1000 * len(_by_group(first))

    # landing a day again (late spans) counts that day again, and only it
    _land(engine, DAYS[1], _spans(DAYS[1], 400, 1) + _spans(DAYS[1], 150, 99))
    late, reads = quality_stats_for(engine, AS_OF, SETTINGS)
    assert reads == {"days_read_kept": 2, "days_counted": 1, "days_counted_unkept": 0}
    assert late["spans"].sum() == 1350
    _check_against_every_span(engine, late)

    # spans written without a landing (no cost_sync_history row) are counted on every run, never kept
    extra = date(2026, 5, 30)
    prepare_days(engine, t.auterity_spans, [extra])
    with engine.begin() as conn:
        insert_rows(
            conn,
            t.auterity_spans,
            [
                {
                    "day": extra,
                    "span_id": f"direct-{i}",
                    "trace_id": "t",
                    "start_time": datetime(2026, 5, 30, 8, tzinfo=UTC),
                    "end_time": datetime(2026, 5, 30, 8, tzinfo=UTC),
                    "duration_ms": 7 * i,
                    "status_code": "OK",
                    "response_model": "gpt-4o-mini",
                    "task_type": "chat",
                    "input_tokens": i,
                    "output_tokens": None,
                    "ingested_at": AS_OF,
                }
                for i in range(5)
            ],
        )
    for _ in range(2):
        direct, reads = quality_stats_for(engine, AS_OF, SETTINGS)
        assert reads == {"days_read_kept": 3, "days_counted": 0, "days_counted_unkept": 1}
        _check_against_every_span(engine, direct)
    with engine.connect() as conn:
        assert extra not in set(conn.execute(sa.select(q.c.day)).scalars())

    # a window that starts after a kept day leaves it out, and the kept counts before the window go
    later = AS_OF + timedelta(days=29)  # the window starts on June 2
    moved, reads = quality_stats_for(engine, later, SETTINGS)
    assert reads["days_read_kept"] == 2 and moved["spans"].sum() == 1350 - 400
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(q.c.day)).scalars()) == set(DAYS[1:])


def test_retention_takes_a_days_kept_counts_with_its_spans(db_url: str, engine) -> None:  # type: ignore[no-untyped-def]
    prepare_days(engine, t.auterity_spans, DAYS)
    for k, day in enumerate(DAYS):
        _land(engine, day, _spans(day, 60, k))
    quality_stats_for(engine, AS_OF, SETTINGS)
    asset = build_retention_asset(RetentionConfig(days=1))
    with dg.instance_for_test() as instance:  # as of June 3: June 1's spans leave
        result = dg.materialize(
            [asset],
            resources={"warehouse": WarehouseResource(database_url=db_url)},
            tags={AS_OF_TAG: AS_OF.isoformat()},
            instance=instance,
        )
        assert result.success
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(t.quality_day_values.c.day)).scalars()) == set(DAYS[1:])
    stats, reads = quality_stats_for(engine, AS_OF, SETTINGS)
    assert reads == {"days_read_kept": 2, "days_counted": 0, "days_counted_unkept": 0}
    _check_against_every_span(engine, stats)


def test_two_quality_runs_at_once_keep_each_day_once(engine) -> None:  # type: ignore[no-untyped-def]
    prepare_days(engine, t.auterity_spans, DAYS)
    for k, day in enumerate(DAYS):
        _land(engine, day, _spans(day, 200, k))
    with ThreadPoolExecutor(2) as pool:  # both find the three days not counted yet
        both = list(pool.map(lambda _: quality_stats_for(engine, AS_OF, SETTINGS)[0].to_dict("records"), range(2)))
    q = t.quality_day_values
    with engine.connect() as conn:
        rows = conn.execute(sa.select(q.c.day, q.c.model, q.c.task_type)).all()
    assert len(rows) == len(set(rows)) and {r[0] for r in rows} == set(DAYS)
    assert both[0] == both[1] == quality_stats_for(engine, AS_OF, SETTINGS)[0].to_dict("records")


@pytest.mark.parametrize("db_url", [b for b in ("postgresql",) if PG_URL], indirect=True)
def test_a_days_figures_do_not_depend_on_the_order_its_spans_are_read_in(engine) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL may read a day's spans from the middle (a scan that joins a concurrent one: reconciliation
    reads the spans beside the selection job) or in parallel: a sum of doubles in another order moved the
    mean score's last bit between two runs of the same day (seen in bench/run_day.py's digest). The same
    spans landed in two orders must give the same figures, to the bit."""
    day = DAYS[0]
    spans = _spans(day, 3000, 5)
    for span in spans:  # scores with every digit a double has
        if "auterity.quality.score" in span["attributes"]:
            span["attributes"]["auterity.quality.score"] = random.Random(span["span_id"]).random()
    prepare_days(engine, t.auterity_spans, [day])
    got = []
    for order in (spans, spans[::-1]):
        _land(engine, day, order)
        with engine.connect() as conn:
            got.append({(r["model"], r["task_type"]): r for r in count_day(conn, day)})
    assert got[0] == got[1] and sum(r["scored"] for r in got[0].values()) > 1000
