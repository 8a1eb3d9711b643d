"""RFC 3339 parsing that refuses ambiguous (offset-less) times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def parse_rfc3339(value: object, field: str) -> datetime:
    """An aware UTC datetime, or ValueError naming the field."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be an RFC 3339 string")
    try:
        dt = datetime.fromisoformat(value)  # the common case, without copying the text (hot path)
    except ValueError:
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{field} is not RFC 3339: {value[:40]!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"{field} has no UTC offset: {value[:40]!r}")
    return dt if dt.tzinfo is UTC else dt.astimezone(UTC)


def day_window(day: date) -> tuple[datetime, datetime]:
    """[00:00, next 00:00) UTC of a day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def days_between(start: date, end: date) -> list[date]:
    """Every day from start to end, inclusive."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
