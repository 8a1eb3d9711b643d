"""Budget periods: start at local midnight in the budget's time zone; weeks start on Monday."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


def _local_midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def period_window(period: str, tz_name: str, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the period containing `at`."""
    tz = ZoneInfo(tz_name)
    local = at.astimezone(tz).date()
    if period == "daily":
        first, nxt = local, local + timedelta(days=1)
    elif period == "weekly":
        first = local - timedelta(days=local.weekday())
        nxt = first + timedelta(days=7)
    elif period == "monthly":
        first = local.replace(day=1)
        nxt = _add_months(first, 1)
    elif period == "quarterly":
        first = date(local.year, 3 * ((local.month - 1) // 3) + 1, 1)
        nxt = _add_months(first, 3)
    elif period == "yearly":
        first, nxt = date(local.year, 1, 1), date(local.year + 1, 1, 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return _local_midnight(first, tz), _local_midnight(nxt, tz)


def local_days(start: datetime, end: datetime, tz_name: str) -> list[tuple[date, datetime, datetime]]:
    """The local days of [start, end) with their UTC bounds (23 or 25 hours across DST changes)."""
    tz = ZoneInfo(tz_name)
    out = []
    d = start.astimezone(tz).date()
    while True:
        s, e = _local_midnight(d, tz), _local_midnight(d + timedelta(days=1), tz)
        if s >= end:
            return out
        out.append((d, max(s, start), min(e, end)))
        d += timedelta(days=1)
