"""Forecast a budget's spend at period end from the trailing rate, with a day-of-week pattern.

The trailing rate is the mean of the last 7 complete local days, de-seasonalized by weekday factors
once there are at least two weeks of history (fewer days: a flat rate; no complete day yet: the rate
so far today). Each remaining hour of the period is then expected to spend rate × factor(weekday) / 24.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cams.budgets.periods import local_days

TRAILING_DAYS = 7
PATTERN_MIN_DAYS = 14
HISTORY_DAYS = 28


@dataclass(frozen=True)
class Forecast:
    forecast_usd: float
    daily_rate_usd: float
    weekday_factors: tuple[float, ...]
    projected_exhaustion_at: datetime | None


def weekday_factors(history: Mapping[date, float]) -> tuple[float, ...]:
    """Mean spend per weekday over the mean day; all 1.0 below PATTERN_MIN_DAYS of history."""
    days = sorted(history)[-HISTORY_DAYS:]
    if len(days) < PATTERN_MIN_DAYS:
        return (1.0,) * 7
    overall = sum(history[d] for d in days) / len(days)
    if overall <= 0:
        return (1.0,) * 7
    factors = []
    for w in range(7):
        vals = [history[d] for d in days if d.weekday() == w]
        factors.append(sum(vals) / len(vals) / overall if vals else 1.0)
    return tuple(factors)


def forecast(
    spent: float,
    amount: float,
    history: Mapping[date, float],
    today_spent: float,
    as_of: datetime,
    period_end: datetime,
    tz: str,
) -> Forecast:
    """`history`: spend of complete local days before today (any number, most recent used)."""
    factors = weekday_factors(history)
    recent = sorted(history)[-TRAILING_DAYS:]
    today, today_start, _ = local_days(as_of, as_of + timedelta(seconds=1), tz)[0]
    if recent:
        weight = sum(factors[d.weekday()] for d in recent)
        rate = sum(history[d] for d in recent) / weight if weight > 0 else 0.0
    else:
        elapsed = (as_of - today_start).total_seconds()
        rate = today_spent / elapsed * 86_400 / factors[today.weekday()] if elapsed >= 3600 else 0.0
    remaining = 0.0
    exhaustion: datetime | None = None
    need = amount - spent
    for d, s, e in local_days(as_of, period_end, tz) if as_of < period_end else []:
        hours = (e - s).total_seconds() / 3600
        per_hour = rate * factors[d.weekday()] / 24
        chunk = per_hour * hours
        if exhaustion is None and need > 0 and per_hour > 0 and remaining + chunk >= need:
            exhaustion = s + timedelta(hours=(need - remaining) / per_hour)
        remaining += chunk
    return Forecast(spent + remaining, rate, factors, exhaustion)
