"""Forecast accuracy on simulated months: error of the period-end forecast by day of the period.

Each simulated month has weekday/weekend spend with noise, a trend, and an occasional spike day.
For every day d of the month we forecast the month's total as of d's midnight and compare with the
actual total, with the day-of-week pattern (CAMS) and with a flat trailing rate (the usual gateway
approach), side by side.

    .venv/bin/python bench/forecast_accuracy.py [--months 24] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
from datetime import UTC, date, datetime, timedelta

from cams.budgets import forecast as fc


def simulate(rng: random.Random, start: date, days: int) -> dict[date, float]:
    base = rng.uniform(50, 500)
    trend = rng.uniform(-0.01, 0.02)
    out = {}
    for i in range(days):
        d = start + timedelta(days=i)
        weekend = 0.35 if d.weekday() >= 5 else 1.0
        spike = rng.uniform(2, 4) if rng.random() < 0.03 else 1.0
        out[d] = base * (1 + trend) ** i * weekend * spike * rng.lognormvariate(0, 0.15)
    return out


def run(months: int, seed: int) -> None:
    rng = random.Random(seed)
    errors: dict[str, dict[int, list[float]]] = {"pattern": {}, "flat": {}}
    for m in range(months):
        month_start = date(2025, 1, 1) + timedelta(days=31 * m)
        month_start = month_start.replace(day=1)
        nxt = (month_start + timedelta(days=32)).replace(day=1)
        history_start = month_start - timedelta(days=28)
        spend = simulate(rng, history_start, (nxt - history_start).days)
        actual = sum(v for d, v in spend.items() if d >= month_start)
        for k in range(1, (nxt - month_start).days):
            as_of_day = month_start + timedelta(days=k)
            hist = {d: v for d, v in spend.items() if d < as_of_day}
            spent = sum(v for d, v in hist.items() if d >= month_start)
            as_of = datetime(as_of_day.year, as_of_day.month, as_of_day.day, tzinfo=UTC)
            end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)
            with_pattern = fc.forecast(spent, 1e12, hist, 0.0, as_of, end, "UTC").forecast_usd
            flat_hist = dict(sorted(hist.items())[-7:])  # < 14 days: the pattern is off, a flat 7-day rate
            flat = fc.forecast(spent, 1e12, flat_hist, 0.0, as_of, end, "UTC").forecast_usd
            errors["pattern"].setdefault(k, []).append(abs(with_pattern - actual) / actual)
            errors["flat"].setdefault(k, []).append(abs(flat - actual) / actual)
    print(f"forecast of the month's total, {months} simulated months (seed {seed}): mean absolute % error")
    print(f"{'as of day':>10} {'day-of-week pattern':>20} {'flat 7-day rate':>16}")
    for k in (1, 3, 7, 10, 14, 21, 25, 28):
        if k in errors["pattern"]:
            p, f = statistics.mean(errors["pattern"][k]), statistics.mean(errors["flat"][k])
            print(f"{k:>10} {p:>19.1%} {f:>16.1%}")
    allp = statistics.mean(e for v in errors["pattern"].values() for e in v)
    allf = statistics.mean(e for v in errors["flat"].values() for e in v)
    print(f"{'all days':>10} {allp:>19.1%} {allf:>16.1%}")
    weekly(rng, months * 4)


def weekly(rng: random.Random, weeks: int) -> None:
    """Weekly budgets: forecast the week's total as of each weekday's midnight."""
    errs: dict[str, dict[int, list[float]]] = {"pattern": {}, "flat": {}}
    for w in range(weeks):
        monday = date(2025, 1, 6) + timedelta(days=7 * w)
        spend = simulate(rng, monday - timedelta(days=28), 35)
        actual = sum(v for d, v in spend.items() if d >= monday)
        end = datetime(monday.year, monday.month, monday.day, tzinfo=UTC) + timedelta(days=7)
        for k in range(1, 7):
            day = monday + timedelta(days=k)
            hist = {d: v for d, v in spend.items() if d < day}
            spent = sum(v for d, v in hist.items() if d >= monday)
            as_of = datetime(day.year, day.month, day.day, tzinfo=UTC)
            p = fc.forecast(spent, 1e12, hist, 0.0, as_of, end, "UTC").forecast_usd
            f = fc.forecast(spent, 1e12, dict(sorted(hist.items())[-7:]), 0.0, as_of, end, "UTC").forecast_usd
            errs["pattern"].setdefault(k, []).append(abs(p - actual) / actual)
            errs["flat"].setdefault(k, []).append(abs(f - actual) / actual)
    print(f"\nforecast of the week's total, {weeks} simulated weeks: mean absolute % error")
    print(f"{'as of':>10} {'day-of-week pattern':>20} {'flat 7-day rate':>16}")
    for k, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")):
        if k in errs["pattern"]:
            print(f"{name:>10} {statistics.mean(errs['pattern'][k]):>19.1%} {statistics.mean(errs['flat'][k]):>16.1%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    run(a.months, a.seed)
