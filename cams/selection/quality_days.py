"""model_quality_stats' inputs per day, kept: sums and value counts, exact over any window of days.

Why: the stats cover 30 days of spans, and every run used to sort all of them again (PostgreSQL's
`percentile_cont`): 18 s with eight days of a million spans a day behind the as-of, about 70 s at thirty,
on a warehouse where 29 of those days had not changed since the run before. A day's spans change only
when the day is landed again, and each landing leaves a `cost_sync_history` row in its own transaction.
So each day's counts, score sum and, per column, its distinct values with their counts are kept in
`quality_day_values` beside the id of the landing they were counted from; a run counts again only the
days whose latest landing is another (or that no landing recorded: spans written some other way are
counted every time, never kept). Value counts, not a sketch: the percentiles stay exact, computed as
`percentile_cont` computes them (`percentile`), and a day's counts are much smaller than its spans (a
million spans held 37k distinct durations per model and task in the bench's day).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, and_, case, delete, func, select, text

from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows, lock_for_replace, tune_for_a_day

VALUE_COLUMNS = ("duration_ms", "input_tokens", "output_tokens")
# the figures model_quality_stats takes from each column's values: (name, column, fraction)
PERCENTILES = (
    ("p50_latency_ms", "duration_ms", 0.5),
    ("p95_latency_ms", "duration_ms", 0.95),
    ("median_input_tokens", "input_tokens", 0.5),
    ("median_output_tokens", "output_tokens", 0.5),
)
SUMS = ("spans", "scored", "score_sum", "succeeded")
VALUES_DTYPE, COUNTS_DTYPE = np.dtype(">f8"), np.dtype(">i8")  # what PostgreSQL's float8send/int8send write

# One statement per day on PostgreSQL: one scan of its spans, every column's values counted
# (GROUPING SETS) and packed into bytes in the database, so no span travels to Python. The scores are
# summed as NUMERIC: a sum of doubles depends on the order the rows come in, and a scan of the day that
# starts where a concurrent one is (reconciliation reads the spans beside this; `synchronize_seqscans`)
# moved the mean's last bit from one run of the same spans to the next.
_PG_COUNT = """
WITH s AS (
    SELECT day, response_model AS model, task_type, duration_ms, input_tokens, output_tokens, quality_score,
           status_code
    FROM auterity_spans
    WHERE day = :day AND response_model IS NOT NULL AND task_type IS NOT NULL
),
base AS (
    SELECT day, model, task_type, count(*) AS spans, count(quality_score) AS scored,
           sum(quality_score::numeric)::float8 AS score_sum,
           count(*) FILTER (WHERE status_code IS DISTINCT FROM 'ERROR') AS succeeded
    FROM s GROUP BY day, model, task_type
),
counted AS (
    SELECT day, model, task_type, grouping(duration_ms, input_tokens, output_tokens) AS g,
           CASE grouping(duration_ms, input_tokens, output_tokens)
               WHEN 3 THEN duration_ms WHEN 5 THEN input_tokens ELSE output_tokens END AS v,
           count(*) AS n
    FROM s
    GROUP BY GROUPING SETS ((day, model, task_type, duration_ms), (day, model, task_type, input_tokens),
                            (day, model, task_type, output_tokens))
),
packed AS (
    SELECT day, model, task_type, g, string_agg(float8send(v::float8), ''::bytea ORDER BY v) AS vs,
           string_agg(int8send(n), ''::bytea ORDER BY v) AS ns
    FROM counted WHERE v IS NOT NULL GROUP BY day, model, task_type, g
)
SELECT b.day, b.model, b.task_type, b.spans, b.scored, b.score_sum, b.succeeded,
       d.vs, d.ns, i.vs, i.ns, o.vs, o.ns
FROM base b
LEFT JOIN packed d ON (d.day, d.model, d.task_type, d.g) = (b.day, b.model, b.task_type, 3)
LEFT JOIN packed i ON (i.day, i.model, i.task_type, i.g) = (b.day, b.model, b.task_type, 5)
LEFT JOIN packed o ON (o.day, o.model, o.task_type, o.g) = (b.day, b.model, b.task_type, 6)
"""
_COLUMNS = [
    "day",
    "model",
    "task_type",
    *SUMS,
    *(f"{c}_{part}" for c in VALUE_COLUMNS for part in ("values", "counts")),
]


def window_groups(engine: Engine, first: date, last: date) -> tuple[pd.DataFrame, dict[str, int]]:
    """Per (model, task type) over the spans of days [first, last]: spans, scored, mean_score, success_rate
    and the PERCENTILES (None where a group has no value of the column); and how many days were read kept,
    counted and kept now, or found with spans but no landing to keep them by (counted on every run)."""
    kept_t = t.quality_day_values
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    with engine.begin() as conn:
        # one run at a time keeps days (two would count a day and both keep it); and on SQLite this write
        # takes the database's write lock before anything is read. Days before the window go.
        lock_for_replace(conn, kept_t)
        conn.execute(delete(kept_t).where(kept_t.c.day < first))
        tune_for_a_day(conn)
        # the landings before the spans: a landing committed in between makes the day counted again next
        # time, never kept under a landing whose spans it did not count
        landings = latest_landings(conn, first, last)
        kept_at = dict(
            conn.execute(
                select(kept_t.c.day, func.max(kept_t.c.landing))
                .where(kept_t.c.day >= first, kept_t.c.day <= last)
                .group_by(kept_t.c.day)
            ).all()
        )
        valid = [d for d in days if d in landings and kept_at.get(d) == landings[d]]
        stale = [d for d in days if d not in valid]
        counted = [row for day in stale for row in count_day(conn, day)]
        keep = [d for d in stale if d in landings]
        if keep:
            conn.execute(delete(kept_t).where(kept_t.c.day.in_(keep)))
            insert_rows(conn, kept_t, [{**r, "landing": landings[r["day"]]} for r in counted if r["day"] in landings])
        kept = (
            [
                dict(r._mapping)
                for r in conn.execute(select(*(kept_t.c[c] for c in _COLUMNS)).where(kept_t.c.day.in_(valid)))
            ]
            if valid
            else []
        )
    with_spans = {r["day"] for r in counted}  # a landed day with no spans (emptied, pruned) has nothing to keep
    read = {
        "days_read_kept": len(valid),
        "days_counted": len(with_spans & set(landings)),
        "days_counted_unkept": len(with_spans - set(landings)),
    }
    return merge_days([*kept, *counted]), read


def latest_landings(conn: Connection, first: date, last: date) -> dict[date, int]:
    """Each day's latest successful Auterity landing (its cost_sync_history id) among days [first, last]."""
    h = t.cost_sync_history
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC)
    hi = lo + timedelta(days=(last - first).days + 1)
    found: dict[date, int] = {}
    rows = conn.execute(
        select(h.c.id, h.c.window_start, h.c.window_end).where(
            h.c.source == "auterity", h.c.status == "success", h.c.window_start < hi, h.c.window_end > lo
        )
    ).all()
    for sync_id, start, end in rows:
        start, end = max(_utc(start), lo), min(_utc(end), hi)
        day = start.date()
        while datetime(day.year, day.month, day.day, tzinfo=UTC) < end:
            found[day] = max(found.get(day, sync_id), sync_id)
            day += timedelta(days=1)
    return found


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)  # SQLite gives naive UTC


def count_day(conn: Connection, day: date) -> list[dict[str, Any]]:
    """A day's row per (model, task type): SUMS and every VALUE_COLUMNS' distinct values and counts, packed.

    One day per statement: eight days in one took 60 s against 3 s for one (their spans, materialized once
    for the four aggregations, outgrew memory), and a warehouse upgraded with 30 days behind it counts them
    all on its first run."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(_PG_COUNT), {"day": day}).all()
        packed = ((*r[:7], *(bytes(b) if b is not None else None for b in r[7:])) for r in rows)
        return [dict(zip(_COLUMNS, r, strict=True)) for r in packed]
    return _count_day_elsewhere(conn, day)


def _count_day_elsewhere(conn: Connection, day: date) -> list[dict[str, Any]]:
    """count_day where the database cannot pack bytes (SQLite): counted in SQL, packed here per group."""
    sp = t.auterity_spans
    where = and_(sp.c.day == day, sp.c.response_model.is_not(None), sp.c.task_type.is_not(None))
    keys = (sp.c.day, sp.c.response_model, sp.c.task_type)
    base = conn.execute(
        select(
            *keys,
            func.count(),
            func.count(sp.c.quality_score),
            func.sum(sp.c.quality_score),
            func.count(case((sp.c.status_code.is_distinct_from("ERROR"), 1))),
        )
        .where(where)
        .group_by(*keys)
    ).all()
    out = {tuple(r[:3]): dict(zip(_COLUMNS, (*r, *([None] * 6)), strict=True)) for r in base}
    for col in VALUE_COLUMNS:
        v = sp.c[col]
        frame = pd.DataFrame(
            conn.execute(
                select(*keys, v, func.count()).where(where, v.is_not(None)).group_by(*keys, v).order_by(*keys, v)
            ).all(),
            columns=["day", "model", "task_type", "v", "n"],
        )
        for key, part in frame.groupby(["day", "model", "task_type"], sort=False):
            row = out[key]
            row[f"{col}_values"] = part["v"].to_numpy(np.float64).astype(VALUES_DTYPE).tobytes()
            row[f"{col}_counts"] = part["n"].to_numpy(np.int64).astype(COUNTS_DTYPE).tobytes()
    return list(out.values())


def merge_days(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Day rows → one row per (model, task type): the sums added in day order, the value counts merged."""
    columns = ["model", "task_type", "spans", "scored", "mean_score", "success_rate", *(p[0] for p in PERCENTILES)]
    if not rows:
        return pd.DataFrame(columns=columns)
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["model"], r["task_type"], r["day"])):
        by_group.setdefault((r["model"], r["task_type"]), []).append(r)
    out = []
    for (model, task), group in by_group.items():
        spans = sum(int(r["spans"]) for r in group)
        scored = sum(int(r["scored"]) for r in group)
        score_sum = sum(float(r["score_sum"]) for r in group if r["score_sum"] is not None)
        row: dict[str, Any] = {
            "model": model,
            "task_type": task,
            "spans": spans,
            "scored": scored,
            "mean_score": score_sum / scored if scored else None,
            "success_rate": sum(int(r["succeeded"]) for r in group) / spans,
        }
        merged = {c: _merged(group, c) for c in VALUE_COLUMNS}
        for name, col, q in PERCENTILES:
            row[name] = percentile(*merged[col], q)
        out.append(row)
    return pd.DataFrame(out, columns=columns)


def _merged(group: Sequence[dict[str, Any]], col: str) -> tuple[np.ndarray, np.ndarray]:
    """One column's distinct values, ascending, and their counts over a group's days."""
    parts = [(r[f"{col}_values"], r[f"{col}_counts"]) for r in group if r[f"{col}_values"]]
    if not parts:
        return np.empty(0), np.empty(0, np.int64)
    values = np.concatenate([np.frombuffer(v, VALUES_DTYPE) for v, _ in parts]).astype(np.float64)
    counts = np.concatenate([np.frombuffer(n, COUNTS_DTYPE) for _, n in parts]).astype(np.int64)
    distinct, at = np.unique(values, return_inverse=True)
    return distinct, np.bincount(at, weights=counts, minlength=distinct.size).astype(np.int64)


def percentile(values: np.ndarray, counts: np.ndarray, q: float) -> float | None:
    """PostgreSQL's percentile_cont(q) of the values each repeated its count of times: the values at ranks
    floor and ceil of q × (n - 1), interpolated as lo + (hi - lo) × fraction (so the figure is the one the
    database computed from every span, to the last bit)."""
    if values.size == 0:
        return None
    ends = np.cumsum(counts)  # rank r (from 0) holds values[i] for the first i with r < ends[i]
    pos = q * float(ends[-1] - 1)
    lo_rank, hi_rank = int(np.floor(pos)), int(np.ceil(pos))
    lo = float(values[np.searchsorted(ends, lo_rank, side="right")])
    hi = float(values[np.searchsorted(ends, hi_rank, side="right")])
    return lo + (hi - lo) * (pos - lo_rank)
