"""Collect one partition's records: validate, keep the day's, dedupe (latest copy wins), quarantine.

Invariant (SPEC §2.4): read = accepted + duplicates + quarantined, for the partition's window.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cams.sources.contracts import AUTERITY, KEY_FIELD, PARSERS, TIME_FIELD, RecordError, loads
from cams.sources.otlp import flatten, is_otlp
from cams.sources.timeutil import parse_rfc3339

MAX_RAW_KEPT = 64 * 1024  # quarantine keeps at most this much of an enormous line
DAY_HINT = {
    "relaycore": re.compile(r'"timestamp"\s*:\s*"(\d{4}-\d{2}-\d{2})T'),
    "auterity": re.compile(r'"start_time"\s*:\s*"(\d{4}-\d{2}-\d{2})T'),
}


@dataclass(frozen=True)
class Quarantined:
    source: str
    ref: str
    raw: str
    reason: str
    day: date | None


@dataclass
class IngestResult:
    """Accepted rows (deduped) and quarantined lines of one source over one window."""

    source: str
    start: datetime
    end: datetime
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)
    read: int = 0
    duplicates: int = 0

    @property
    def accepted(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": len(self.quarantined),
        }

    def check_balance(self) -> None:
        """The accounting identity; a violation is a bug in CAMS, never bad input."""
        if self.read != self.accepted + self.duplicates + len(self.quarantined):
            raise AssertionError(f"{self.source}: read {self.read} != {self.counts()}")


class Collector:
    """Feeds lines or decoded records of one source into an IngestResult for [start, end)."""

    def __init__(self, source: str, start: datetime, end: datetime) -> None:
        self.source = source
        self.result = IngestResult(source, start, end)
        self._parse = PARSERS[source]
        self._key = KEY_FIELD[source]
        self._time = TIME_FIELD[source]

    def _in_window(self, ts: datetime) -> bool:
        return self.result.start <= ts < self.result.end

    def day_in_window(self, day: date | None) -> bool:
        return day is not None and self.result.start.date() <= day < self.result.end.date()

    def quarantine(self, ref: str, raw: str, reason: str, day: date | None = None) -> None:
        kept = raw if len(raw) <= MAX_RAW_KEPT else raw[:MAX_RAW_KEPT] + f"…[{len(raw)} chars in all]"
        self.result.read += 1
        self.result.quarantined.append(Quarantined(self.source, ref, kept, reason, day))

    def _accept(self, row: dict[str, Any]) -> None:
        self.result.read += 1
        key = row[self._key]
        if key in self.result.rows:
            self.result.duplicates += 1
            del self.result.rows[key]  # re-insert so dict order is the order of the latest copy
        self.result.rows[key] = row

    def hint_day(self, raw: str, fallback: date | None) -> date | None:
        m = DAY_HINT[self.source].search(raw[:4096])
        if m:
            try:
                return date.fromisoformat(m.group(1))
            except ValueError:
                pass
        return fallback

    def add_text(self, ref: str, raw: str, fallback_day: date | None) -> None:
        """One line of a drop file. Lines of other days are not this partition's and are skipped.

        A line whose day cannot be read belongs to `fallback_day` (the file's modification day),
        so every line is counted in exactly one partition.
        """
        try:
            obj = loads(raw)
        except RecordError as exc:
            day = self.hint_day(raw, fallback_day)
            if self.day_in_window(day):
                self.quarantine(ref, raw, str(exc), day)
            return
        if self.source == AUTERITY and is_otlp(obj):
            self._add_otlp(ref, obj, raw, fallback_day)
            return
        self._add(ref, obj, raw, fallback_day)

    def _add_otlp(self, ref: str, obj: dict[str, Any], raw: str, fallback_day: date | None) -> None:
        """An OTLP export request: every span is a record of its own (read, accepted or quarantined)."""
        try:
            items = list(flatten(obj))
        except RecordError as exc:  # not even the outer structure is readable: one bad line
            day = fallback_day
            if self.day_in_window(day):
                self.quarantine(ref, raw, str(exc), day)
            return
        for i, item in enumerate(items):
            span_ref = f"{ref}#{i}"
            if isinstance(item, RecordError):
                if self.day_in_window(fallback_day):
                    self.quarantine(span_ref, raw[:4096], str(item), fallback_day)
                continue
            self._add(span_ref, item, "", fallback_day)

    def add_record(self, ref: str, obj: Any, raw: str) -> None:
        """One record already decoded (an API page); it was asked for this window."""
        if not isinstance(obj, Mapping):
            self.quarantine(ref, raw, "a record must be a JSON object", self.result.start.date())
            return
        try:
            row = self._parse(obj)
        except RecordError as exc:
            self.quarantine(ref, raw, str(exc), self.result.start.date())
            return
        if not self._in_window(row[self._time]):
            self.quarantine(ref, raw, f"{self._time} outside the requested window", self.result.start.date())
            return
        self._accept(row)

    def _add(self, ref: str, obj: dict[str, Any], raw: str, fallback_day: date | None) -> None:
        """One decoded record of a drop file; `raw` may be empty when the record came out of a
        larger line (OTLP), in which case the record itself is what a quarantine row keeps."""
        try:
            ts = parse_rfc3339(obj.get(self._time), self._time)
        except ValueError as exc:
            day = self.hint_day(raw, fallback_day)
            if self.day_in_window(day):
                self.quarantine(ref, raw or json.dumps(obj, default=str), str(exc), day)
            return
        if not self._in_window(ts):
            return
        try:
            row = self._parse(obj)
        except RecordError as exc:
            self.quarantine(ref, raw or json.dumps(obj, default=str), str(exc), ts.date())
            return
        self._accept(row)
