"""Land one source's window: deduped rows, quarantined lines and a sync-history row, atomically.

Rows reach the warehouse through a `Stage`: a temporary table on one connection that takes the
window's accepted rows chunk by chunk while they are read (binary COPY on PostgreSQL, executemany
on SQLite), so landing a day holds one chunk in memory, not the day. `land` then replaces the
window from the stage in one transaction, keeping the latest copy of each key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Engine,
    Identity,
    Integer,
    MetaData,
    Select,
    Table,
    and_,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)

from cams.sources.batch import IngestResult
from cams.sources.registry import describe
from cams.warehouse import schema as t
from cams.warehouse.db import (
    COUNTED,
    WriteBehind,
    copy_binary,
    insert_rows,
    replace_rows,
    tune_for_a_day,
)
from cams.warehouse.partitions import analyze_days, replacing


@dataclass(frozen=True)
class LandingSummary:
    source: str
    counts: dict[str, int]
    replaced: int
    quarantine_reasons: dict[str, int]


def landing_table(source: str) -> Table:
    return describe(source).table


class Stage:
    """A window's accepted rows, staged in a temporary table; call it with each chunk of row tuples."""

    def __init__(self, engine: Engine, source: str) -> None:
        self.source = source
        self.target = landing_table(source)
        self.fields = describe(source).fields
        self._time_at = describe(source).time_at
        self.conn = engine.connect()
        pg = self.conn.dialect.name == "postgresql"
        seq = Column("seq", BigInteger, Identity()) if pg else Column("seq", Integer, primary_key=True)
        self.table = Table(
            f"cams_stage_{source}",
            MetaData(),
            seq,
            *(Column(f, self.target.c[f].type) for f in self.fields),
            prefixes=["TEMPORARY"],
        )
        self.table.drop(self.conn, checkfirst=True)  # left by a connection that died mid-run
        self.table.create(self.conn)
        self.conn.commit()
        self.rows = 0
        self._temporary = [self.table]  # dropped at close: the connection goes back to the pool
        self._writes = WriteBehind(self.conn)  # a chunk goes in while the next one is parsed

    def __call__(self, rows: list[tuple[Any, ...]]) -> None:
        self._writes.submit(self._write, rows)
        self.rows += len(rows)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if self.conn.dialect.name == "postgresql":
            copy_binary(self.conn, self.table, self.fields, rows)
        else:
            self.conn.execute(insert(self.table), [dict(zip(self.fields, r, strict=True)) for r in rows])
        self.conn.commit()

    def latest_copies(self, repeated: set[str]) -> Any:
        """The condition keeping the latest staged copy of each key. Only the keys the collector saw
        again after an earlier copy was staged can have two copies here: the stage dedupes those alone
        (a day without such repeats is inserted as staged, no hash of a million keys)."""
        if not repeated:
            return true()
        keys = Table(
            f"cams_repeated_{self.source}",
            MetaData(),
            Column("key", self.table.c[describe(self.source).key].type, primary_key=True),
            prefixes=["TEMPORARY"],
        )
        keys.drop(self.conn, checkfirst=True)
        keys.create(self.conn)
        self._temporary.append(keys)
        insert_rows(self.conn, keys, ({"key": k} for k in repeated))
        self.conn.commit()
        key = self.table.c[describe(self.source).key]
        once = select(keys.c.key)
        latest = select(func.max(self.table.c.seq)).where(key.in_(once)).group_by(key)
        return or_(key.not_in(once), self.table.c.seq.in_(latest))

    def day(self) -> Any:
        """The UTC day of each staged row, computed by the database (rows travel without it)."""
        ts = self.table.c[self.fields[self._time_at]]
        if self.conn.dialect.name == "postgresql":
            return cast(func.timezone("UTC", ts), Date)
        return func.date(ts)  # SQLite keeps the UTC wall time as text

    def wait(self) -> None:
        """Every chunk handed over is in the table (or its error raised)."""
        self._writes.wait()

    def close(self) -> None:
        # let the writes finish without raising: land() already raised a write's error through wait()
        self._writes.__exit__(Exception)
        try:
            self.conn.rollback()
            for table in self._temporary:
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
        with Stage(engine, result.source) as own:
            return land(engine, result, mode, run_id, started_at, detail, own)
    if stage.rows != result.staged:
        raise AssertionError(f"{result.source}: the stage holds {stage.rows} rows, the result says {result.staged}")
    if result.rows:
        stage(list(result.rows.values()))
    stage.wait()
    now = datetime.now(UTC)
    table, s = landing_table(result.source), stage.table
    first, last = result.start.date(), result.end.date()
    reasons: dict[str, int] = {}
    for q in result.quarantined:
        key = q.reason.split(":")[0][:80]
        reasons[key] = reasons.get(key, 0) + 1
    cols = ["day", *stage.fields]
    values = [stage.day(), *(s.c[c] for c in stage.fields), literal(now, table.c.ingested_at.type)]
    rows = select(*values).where(stage.latest_copies(result.repeated))
    conn = stage.conn
    staged = {
        d if isinstance(d, date) else date.fromisoformat(d)
        for d in conn.execute(select(stage.day()).distinct()).scalars()
    }
    conn.commit()
    with conn.begin():
        tune_for_a_day(conn)  # the dedupe's hash stays in memory
        with replacing(conn, table, first, last, staged) as target:
            inserted = conn.execute(
                insert(target.into).from_select([*cols, "ingested_at"], rows), execution_options=COUNTED
            ).rowcount
        replaced = target.removed
        analyze_days(conn, table, first, last)
        crossed = result.staged + len(result.rows) - inserted  # copies that met across chunks
        if not 0 <= crossed <= result.staged:
            raise AssertionError(f"{result.source}: {inserted} rows landed from {stage.rows} staged")
        result.duplicates += crossed
        result.staged -= crossed
        result.check_balance()
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
