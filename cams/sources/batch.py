"""Collect one partition's records: validate, keep the day's, dedupe (latest copy wins), quarantine.

Invariant (SPEC §2.4): read = accepted + duplicates + quarantined, for the partition's window.

A landing row travels as a tuple in its source's `fields` order (`cams.sources.registry`). With a
sink (`cams.sources.landing.Stage`), accepted rows leave the collector in chunks of `chunk_rows`, so a
day of any size is held in bounded memory; with each chunk go the keys it holds whose earlier copy left
in an earlier chunk: the sink removes those copies (and counts them) before it writes the chunk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np

from cams.progress import DayProgress
from cams.sources.contracts import (
    AUTERITY,
    RISKY_BYTES,
    RecordError,
    decode_line,
    loads,
    storable_text,
    unstorable,
)
from cams.sources.otlp import flatten, is_otlp
from cams.sources.registry import describe
from cams.sources.timeutil import parse_rfc3339

MAX_RAW_KEPT = 64 * 1024  # quarantine keeps at most this much of an enormous line
# accepted rows held before they go to the sink. Up to three chunks are in memory (one filling, two
# waiting to be written): landing a 1M-span day peaked 259 MiB over the process at 100k, 126 at 25k,
# in the same time (bench: one source landed alone on PostgreSQL)
CHUNK_ROWS = 20_000
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
    """Accepted rows (deduped) and quarantined lines of one source over one window.

    `rows` holds the accepted rows not yet handed to a sink, by key, as tuples; `staged` counts
    those handed over (until the sink's dedupe moves the cross-chunk copies to `duplicates`).
    """

    source: str
    start: datetime
    end: datetime
    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)
    read: int = 0
    duplicates: int = 0
    staged: int = 0
    # the hashes of the keys handed over, sorted: 8 bytes a key (a set of ints took ~60 MB a 1M day)
    _sent: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False, compare=False)

    @property
    def accepted(self) -> int:
        return self.staged + len(self.rows)

    def take_chunk(self) -> tuple[list[tuple[Any, ...]], set[str]]:
        """Hand the pending rows over: them, and the keys among them whose earlier copy was handed over
        before: the only ones the sink must dedupe (a superset: two keys may share a hash; the sink's
        dedupe is exact whatever it is given)."""
        keys = list(self.rows)
        hashes = np.fromiter(map(hash, keys), np.int64, len(keys))
        order = np.argsort(hashes)
        hashes = hashes[order]
        at = np.searchsorted(self._sent, hashes)
        repeated: set[str] = set()
        if self._sent.size:
            seen = self._sent[np.minimum(at, self._sent.size - 1)] == hashes
            repeated = {keys[i] for i in order[seen]}
        self._sent = np.insert(self._sent, at, hashes)  # stays sorted: the hashes go in sorted
        rows = list(self.rows.values())
        self.staged += len(rows)
        self.rows.clear()
        return rows, repeated

    def row(self, key: str) -> dict[str, Any]:
        """One pending row as a dict (for people and tests; the pipeline moves tuples)."""
        return dict(zip(describe(self.source).fields, self.rows[key], strict=True))

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

    def __init__(
        self,
        source: str,
        start: datetime,
        end: datetime,
        sink: Callable[[list[tuple[Any, ...]], set[str]], None] | None = None,
        chunk_rows: int = CHUNK_ROWS,
        progress: DayProgress | None = None,
    ) -> None:
        self.source = source
        self._progress = progress
        self.result = IngestResult(source, start, end)
        self.described = describe(source)
        self._parse = self.described.parse
        self._compiled = self.described.decode
        self._key = self.described.key
        self._time = self.described.time
        self._time_at = self.described.time_at
        self._sink = sink
        self._chunk_rows = chunk_rows
        self._last_ts: datetime | None = None  # the time of the file's latest readable record

    def start_file(self) -> None:
        """A new drop file: its unreadable lines take the day of its own readable ones."""
        self._last_ts = None

    def neighbour_day(self, fallback: date | None) -> date | None:
        """The day an unreadable line belongs to: that of the readable line before it in the same file
        (the run for the data's day then counts it), else `fallback` (the file's modification day)."""
        return self._last_ts.date() if self._last_ts is not None else fallback

    def flush(self) -> None:
        """Hand the pending rows to the sink (if there is one), with their keys sent before."""
        if self._sink is not None and self.result.rows:
            self._sink(*self.result.take_chunk())
            if self._progress is not None and self._last_ts is not None:
                self._progress.reached(self._last_ts.date(), self.result.staged)

    def _in_window(self, ts: datetime) -> bool:
        return self.result.start <= ts < self.result.end

    def day_in_window(self, day: date | None) -> bool:
        return day is not None and self.result.start.date() <= day < self.result.end.date()

    def quarantine(self, ref: str, raw: str, reason: str, day: date | None = None) -> None:
        """Count a line as read and set it aside with its reason; its text is stored safely (NUL escaped)."""
        kept = raw if len(raw) <= MAX_RAW_KEPT else raw[:MAX_RAW_KEPT] + f"…[{len(raw)} chars in all]"
        self.result.read += 1
        self.result.quarantined.append(
            Quarantined(self.source, storable_text(ref), storable_text(kept), storable_text(reason), day)
        )

    def _parse_storable(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The contract's row, refused (RecordError) when a value is text the warehouse cannot store."""
        row = self._parse(obj)
        why = unstorable(row.values(), row.keys())
        if why is not None:
            raise RecordError(why)
        return row

    def _accept(self, row: tuple[Any, ...]) -> None:
        self.result.read += 1
        rows = self.result.rows
        key = row[0]  # a row's fields start with the key
        if key in rows:
            self.result.duplicates += 1
            del rows[key]  # re-insert so dict order is the order of the latest copy
        rows[key] = row
        if len(rows) >= self._chunk_rows and self._sink is not None:
            self.flush()

    def add_line(self, lineno: int, name: str, raw: bytes, fallback_day: date | None) -> None:
        """One line of a drop file as bytes: the compiled contract first, the Python one when it is unsure."""
        # the compiled contract would land a NUL or a lone surrogate: such lines take the Python path
        # (a one-byte search is memchr: most lines hold no backslash and skip the regex)
        row = None if (b"\x00" in raw or (b"\\" in raw and RISKY_BYTES.search(raw))) else self._compiled(raw)
        if row is not None:
            ts = self._last_ts = row[self._time_at]
            if self.result.start <= ts < self.result.end:
                self._accept(row)
            return
        fallback_day = self.neighbour_day(fallback_day)
        ref = f"{name}:{lineno}"
        text, error = decode_line(raw)
        if error is not None:
            day = self.hint_day(text, fallback_day)
            if self.day_in_window(day):
                self.quarantine(ref, text, error, day)
            return
        self.add_text(ref, text, fallback_day)

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

        A line whose day cannot be read belongs to the day of the readable line before it in the same
        file, else to `fallback_day` (the file's modification day), so every line is counted in
        exactly one partition, and mostly in the one whose run reads its neighbours.
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
            row = self._parse_storable(obj)
        except RecordError as exc:
            self.quarantine(ref, raw, str(exc), self.result.start.date())
            return
        if not self._in_window(row[self._time]):
            self.quarantine(ref, raw, f"{self._time} outside the requested window", self.result.start.date())
            return
        self._accept(tuple(row.values()))

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
        self._last_ts = ts
        if not self._in_window(ts):
            return
        try:
            row = self._parse_storable(obj)
        except RecordError as exc:
            self.quarantine(ref, raw or json.dumps(obj, default=str), str(exc), ts.date())
            return
        self._accept(tuple(row.values()))
