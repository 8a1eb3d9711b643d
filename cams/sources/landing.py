"""Land one source's window: deduped rows, quarantined lines and a sync-history row, atomically.

Rows reach the warehouse through a `Stage` while they are read, chunk by chunk (binary COPY on
PostgreSQL, executemany on SQLite), so landing a day holds a chunk or two in memory, not the day. With
day partitions (PostgreSQL) a chunk goes straight into the new child of its day (`partitions.replacing`),
swapped in for the old day when `land` commits: no second copy of the day. Elsewhere chunks go into a
temporary table, and `land` replaces the window from it. Either way the latest copy of a key wins and
the earlier ones are counted as duplicates: a copy whose key was handed over before waits in a small
table of re-sent copies (its own earlier copy there deleted at once), and when the window is replaced
the earlier copies of those keys leave the day in one statement, before the re-sent copies join it.
Deleting them chunk by chunk scanned the whole index-free day each time: 18 scans growing to 0.4 s
each for a million-row day, quadratic in the day's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Column, Engine, MetaData, Select, Table, and_, delete, insert, select

from cams.sources.batch import IngestResult
from cams.sources.registry import describe
from cams.warehouse import schema as t
from cams.warehouse.db import WriteBehind, copy_binary, insert_rows, replace_rows
from cams.warehouse.partitions import Replacement, analyze_days, is_partitioned, replacing

KEYS_PER_DELETE = 5_000  # keys in one DELETE … IN (…): SQLite takes at most 32,766 bound values


@dataclass(frozen=True)
class LandingSummary:
    source: str
    counts: dict[str, int]
    replaced: int
    quarantine_reasons: dict[str, int]


def landing_table(source: str) -> Table:
    return describe(source).table


class Stage:
    """Where a window's accepted rows go while they are read; call it with each chunk of row tuples and
    the chunk's keys whose earlier copy was handed over before.

    With day partitions the stage is the window's replacement itself (new day children under a loading
    table, on this connection's one transaction, which `land` commits); otherwise a temporary table.
    """

    def __init__(self, engine: Engine, source: str, start: datetime, end: datetime) -> None:
        described = describe(source)
        self.source = source
        self.target = described.table
        self.first, self.last = start.date(), end.date()
        self.columns = [*described.fields, "day", "ingested_at"]
        self._time_at = described.time_at
        self._key = described.key
        self.ingested_at = datetime.now(UTC)
        self.rows = 0  # rows handed over
        self.crossed = 0  # earlier copies deleted when a later one came (duplicates across chunks)
        self.days: set[date] = set()
        self.conn = engine.connect()
        self._replacing: AbstractContextManager[Replacement] | None = None
        self._replacement: Replacement | None = None
        self._temporary: Table | None = None
        if is_partitioned(self.conn, self.target.name):
            self._replacing = replacing(self.conn, self.target, self.first, self.last, (), count=True)
            self._replacement = self._replacing.__enter__()
            self.into = self._replacement.into
        else:
            self._temporary = self.into = Table(
                f"cams_stage_{source}",
                MetaData(),
                *(Column(c, self.target.c[c].type) for c in self.columns),
                prefixes=["TEMPORARY"],
            )
            self.into.drop(self.conn, checkfirst=True)  # left by a connection that died mid-run
            self.into.create(self.conn)
            self.conn.commit()
        self._resent: Table | None = None  # re-sent copies, made at the first one (`_hold_resent`)
        self._writes = WriteBehind(self.conn)  # a chunk goes in while the next one is parsed

    def __call__(self, rows: list[tuple[Any, ...]], repeated: set[str]) -> None:
        self._writes.submit(self._write, rows, repeated)
        self.rows += len(rows)

    def _write(self, rows: list[tuple[Any, ...]], repeated: set[str]) -> None:
        """One chunk, each row with its UTC day: copies of keys handed over before to the re-sent table
        (their own earlier copy there out first), the rest into the stage."""
        conn, at, now = self.conn, self._time_at, self.ingested_at
        days = {r[at].date() for r in rows}  # timestamps are aware UTC: .date() is the UTC day
        outside = sorted(d for d in days if not self.first <= d < self.last)
        if outside:  # a collector keeps its window's rows only: this is a bug, never bad input
            raise ValueError(f"{self.source}: a row of {outside[0]} is outside the window {self.first}..{self.last}")
        self.days |= days
        if self._replacement is not None:
            self._replacement.include(days)
        if repeated:
            resent = self._hold_resent(repeated)
            self._put(resent, ((*r, r[at].date(), now) for r in rows if r[0] in repeated))
            rows = [r for r in rows if r[0] not in repeated]
        self._put(self.into, ((*r, r[at].date(), now) for r in rows))  # made as written: no second list
        if self._replacement is None:
            conn.commit()  # a temporary stage; with day partitions the transaction stays open for `land`

    def _put(self, table: Table, full: Iterable[tuple[Any, ...]]) -> None:
        if self.conn.dialect.name == "postgresql":
            copy_binary(self.conn, table, self.columns, full)
        else:
            params = [dict(zip(self.columns, r, strict=True)) for r in full]
            if params:  # an empty list would insert one row of defaults
                self.conn.execute(insert(table), params)

    def _hold_resent(self, repeated: set[str]) -> Table:
        """The re-sent copies' table (made at the first), without the earlier copies of `repeated` it holds:
        they count as duplicates now. An index on the key keeps this a lookup however many there are."""
        conn = self.conn
        if self._resent is None:
            self._resent = Table(
                f"cams_resent_{self.source}",
                MetaData(),
                *(Column(c, self.target.c[c].type) for c in self.columns),
                prefixes=["TEMPORARY"],
            )
            self._resent.drop(conn, checkfirst=True)  # left by a connection that died mid-run
            self._resent.create(conn)
            conn.exec_driver_sql(f'CREATE INDEX "{self._resent.name}_key" ON "{self._resent.name}" ("{self._key}")')
            return self._resent
        key, ordered = self._resent.c[self._key], sorted(repeated)
        for i in range(0, len(ordered), KEYS_PER_DELETE):
            self.crossed += conn.execute(delete(self._resent).where(key.in_(ordered[i : i + KEYS_PER_DELETE]))).rowcount
        return self._resent

    def _merge_resent(self) -> None:
        """The re-sent copies take their keys' place in the stage: one pass deletes the earlier copies
        (duplicates), then they go in (routed to their days' new children)."""
        resent, conn = self._resent, self.conn
        if resent is None:
            return
        key = self.into.c[self._key]
        self.crossed += conn.execute(delete(self.into).where(key.in_(select(resent.c[self._key])))).rowcount
        conn.execute(insert(self.into).from_select(self.columns, select(*(resent.c[c] for c in self.columns))))
        resent.drop(conn)
        self._resent = None  # only now: after an error `close` still drops it (SQLite keeps temporary tables)

    def wait(self) -> None:
        """Every chunk handed over is written (or its error raised)."""
        self._writes.wait()

    def replace(self) -> int:
        """Put the staged rows in place of the window's (on the open transaction); the rows it held."""
        self.wait()
        self._merge_resent()
        if self._replacing is not None and self._replacement is not None:
            self._replacing.__exit__(None, None, None)
            self._replacing = None
            return self._replacement.removed or 0
        assert self._temporary is not None
        s = self._temporary
        with replacing(self.conn, self.target, self.first, self.last, self.days, count=True) as target:
            self.conn.execute(insert(target.into).from_select(self.columns, select(*(s.c[c] for c in self.columns))))
        return target.removed or 0

    def close(self) -> None:
        """Roll back what `land` did not commit (on an error: the loading tables go with it)."""
        # let the writes finish without raising: land() already raised a write's error through wait()
        self._writes.__exit__(Exception)
        try:
            self.conn.rollback()
            for table in (self._temporary, self._resent):  # SQLite's: PostgreSQL's went with the rollback
                if table is not None:
                    table.drop(self.conn, checkfirst=True)
                    self.conn.commit()
        finally:
            self.conn.close()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def land(
    engine: Engine,
    result: IngestResult,
    mode: str,
    run_id: str | None = None,
    started_at: datetime | None = None,
    detail: dict | None = None,
    stage: Stage | None = None,
) -> LandingSummary:
    """Replace the window's landing rows and quarantine rows; record the sync. One transaction.

    `stage` holds the rows a collector already handed over; the result's pending rows are staged
    last (they are the latest copies). Without one, a stage lives for this call.
    """
    if stage is None:
        with Stage(engine, result.source, result.start, result.end) as own:
            return land(engine, result, mode, run_id, started_at, detail, own)
    if stage.rows != result.staged:
        raise AssertionError(f"{result.source}: the stage holds {stage.rows} rows, the result says {result.staged}")
    if result.rows:
        stage(*result.take_chunk())
    first, last = result.start.date(), result.end.date()
    reasons: dict[str, int] = {}
    for q in result.quarantined:
        key = q.reason.split(":")[0][:80]
        reasons[key] = reasons.get(key, 0) + 1
    conn = stage.conn
    replaced = stage.replace()
    table = landing_table(result.source)
    analyze_days(conn, table, first, last)
    crossed = stage.crossed  # copies that met across chunks
    if not 0 <= crossed <= result.staged:
        raise AssertionError(f"{result.source}: {crossed} earlier copies deleted of {result.staged} staged")
    result.duplicates += crossed
    result.staged -= crossed
    result.check_balance()
    now = datetime.now(UTC)
    q = t.quarantine
    replace_rows(
        conn,
        q,
        and_(q.c.source == result.source, q.c.day >= first, q.c.day < last),
        (
            {
                "source": x.source,
                "day": x.day or first,
                "ref": x.ref,
                "raw": x.raw,
                "reason": x.reason,
                "run_id": run_id,
                "quarantined_at": now,
            }
            for x in result.quarantined
        ),
    )
    counts = result.counts()
    insert_rows(
        conn,
        t.cost_sync_history,
        [
            {
                "source": result.source,
                "window_start": result.start,
                "window_end": result.end,
                "mode": mode,
                **counts,
                "status": "success",
                "detail": json.dumps(detail or {}, default=str),
                "run_id": run_id,
                "started_at": started_at or now,
                "finished_at": datetime.now(UTC),
            }
        ],
    )
    conn.commit()
    return LandingSummary(result.source, counts, replaced, reasons)


def landed_rows(source: str, start: datetime, end: datetime, columns: list[str]) -> Select:
    """The landed rows of a window, these columns only: what the data checks validate, in the database."""
    table = landing_table(source)
    return select(*(table.c[c] for c in columns)).where(and_(table.c.day >= start.date(), table.c.day < end.date()))


def record_failed_sync(
    engine: Engine,
    source: str,
    start: datetime,
    end: datetime,
    mode: str,
    error: str,
    run_id: str | None,
    started_at: datetime,
) -> None:
    """A sync that failed still leaves a row saying so (and what went wrong)."""
    with engine.begin() as conn:
        conn.execute(
            insert(t.cost_sync_history).values(
                source=source,
                window_start=start,
                window_end=end,
                mode=mode,
                read=0,
                accepted=0,
                duplicates=0,
                quarantined=0,
                status="failed",
                detail=json.dumps({"error": error[:2000]}),
                run_id=run_id,
                started_at=started_at,
                finished_at=datetime.now(UTC),
            )
        )
