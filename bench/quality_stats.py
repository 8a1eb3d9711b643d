"""model_quality_stats over 30 days of a million spans a day (PostgreSQL).

    .venv/bin/python bench/quality_stats.py [--days 30] [--per-day 1000000] [--pandas-days 1]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Fills `auterity_spans` with `days` × `per-day` synthetic spans in SQL (9 models, 5 task types,
scores on 40 %, 3 % errors), each day with its landing in `cost_sync_history`, then computes the
selection's quality stats the way the `model_quality_stats` asset does (`quality_stats_for`: each day
counted once in the database and kept, `quality_day_values`) over the whole window, twice: the first
run counts every day, the next reads what the first kept. Next to it the earliest way (every span of
the window read into pandas) over only the last `pandas-days` days — over 30 days that one would need
~20 GiB. Each measurement runs in a fresh process so its peak memory (VmHWM) is its own. Drops its
database at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from scratch_db import scratch_database

from cams.warehouse.db import make_engine, migrate

START = date(2026, 6, 1)
MODELS = [
    "gpt-4o-mini",
    "gpt-4.1",
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
    "gemini/gemini-2.5-flash",
    "gemini/gemini-2.5-pro",
    "mistral/mistral-small-latest",
    "deepseek/deepseek-chat",
    "mistral/mistral-large-latest",
]
FILL = """
INSERT INTO auterity_spans (day, span_id, trace_id, start_time, end_time, duration_ms, status_code,
    response_model, task_type, input_tokens, output_tokens, quality_score, ingested_at)
SELECT CAST(:day AS date), 's' || :d || '-' || i, 't' || i,
    CAST(:day AS timestamptz) + (i % 86400) * interval '1 second',
    CAST(:day AS timestamptz) + (i % 86400) * interval '1 second' + (100 + (i * 7919) % 9000) * interval '1 ms',
    100 + (i * 7919) % 9000, CASE WHEN i % 33 = 0 THEN 'ERROR' ELSE 'OK' END,
    (CAST(:models AS text[]))[1 + (i / 7) % 9], (ARRAY['chat','summarize','code','extract','classify'])[1 + i % 5],
    200 + (i * 31) % 4000, 50 + (i * 17) % 900,
    CASE WHEN i % 5 < 2 THEN ((i * 2654435761) % 1000) / 1000.0 END, now()
FROM generate_series(CAST(1 AS bigint), :n) AS i
"""


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(url: str, how: str, last_day: date, days: int) -> dict[str, float]:
    """One way of computing the stats over `days` days up to `last_day`, in this (fresh) process."""
    from cams.selection.quality import QualitySettings, quality_stats
    from cams.selection.store import quality_stats_for, spans_for_stats

    engine = make_engine(url)
    as_of = datetime.combine(last_day, datetime.min.time(), UTC)
    days -= 1  # the window is [as_of - days, as_of], both ends included
    before = peak_mib()
    t0 = time.perf_counter()
    if how == "sql":
        stats, _ = quality_stats_for(engine, as_of, QualitySettings({}), days=days)
    else:
        stats = quality_stats(spans_for_stats(engine, as_of, days=days), QualitySettings({}))
    return {
        "s": round(time.perf_counter() - t0, 1),
        "peak_mib": round(peak_mib()),
        "before_mib": round(before),
        "groups": len(stats),
        "spans": int(stats["spans"].sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--per-day", type=int, default=1_000_000)
    ap.add_argument("--pandas-days", type=int, default=1)
    ap.add_argument("--pg", default=os.environ.get("CAMS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--one", nargs=4, metavar=("URL", "HOW", "LAST_DAY", "DAYS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], a.one[1], date.fromisoformat(a.one[2]), int(a.one[3]))))
        return
    with scratch_database(a.pg, "cams_bench_qs") as url:
        run(url, a)


def run(url: str, a: argparse.Namespace) -> None:
    """Fill the spans, then measure each way in its own process."""
    engine = make_engine(url)
    try:
        migrate(engine)
        t0 = time.perf_counter()
        for d in range(a.days):
            with engine.begin() as conn:
                day = START + timedelta(days=d)
                conn.execute(sa.text(FILL), {"day": day, "d": d, "n": a.per_day, "models": MODELS})
        with engine.begin() as conn:  # each day landed once, as the pipeline records it (what kept counts key on)
            conn.execute(
                sa.text(
                    "INSERT INTO cost_sync_history (source, window_start, window_end, mode, read, accepted,"
                    " duplicates, quarantined, status, started_at, finished_at) SELECT 'auterity', d,"
                    " d + interval '1 day', 'files', :n, :n, 0, 0, 'success', now(), now()"
                    " FROM generate_series(CAST(:first AS timestamptz),"
                    " CAST(:last AS timestamptz), interval '1 day') AS d"
                ),
                {"n": a.per_day, "first": START, "last": START + timedelta(days=a.days - 1)},
            )
            conn.exec_driver_sql("ANALYZE auterity_spans")
            size = conn.exec_driver_sql("SELECT pg_size_pretty(pg_total_relation_size('auterity_spans'))").scalar_one()
        print(f"auterity_spans: {a.days * a.per_day:,} spans ({size}), filled in {time.perf_counter() - t0:.0f} s")
        print("\n| how | days | spans | s | peak RSS MiB (before) |\n|---|---|---|---|---|")
        ways = (
            ("quality_stats_for, first run: every day counted and kept", a.days),
            ("quality_stats_for, next run: the kept days read", a.days),
            ("rows into pandas", a.pandas_days),
        )
        for how, days in ways:
            key = "sql" if how.startswith("quality_stats_for") else "pandas"
            last = START + timedelta(days=a.days - 1)
            cmd = [sys.executable, __file__, "--one", url, key, last.isoformat(), str(days)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:])
                raise SystemExit(1)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            mem = f"{r['peak_mib']:,} ({r['before_mib']:,})"
            print(f"| {how} | {days} | {r['spans']:,} | {r['s']} | {mem} |", flush=True)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
