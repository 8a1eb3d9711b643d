"""Land one source's window: deduped rows, quarantined lines and a sync-history row, atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Engine, and_, insert

from cams.sources.batch import IngestResult
from cams.sources.contracts import RELAYCORE
from cams.warehouse import schema as t
from cams.warehouse.db import insert_frame, insert_rows, replace_rows


@dataclass(frozen=True)
class LandingSummary:
    source: str
    counts: dict[str, int]
    replaced: int
    quarantine_reasons: dict[str, int]


def landing_table(source: str):  # type: ignore[no-untyped-def]
    return t.relaycore_usage if source == RELAYCORE else t.auterity_spans


def land(
    engine: Engine,
    result: IngestResult,
    mode: str,
    run_id: str | None = None,
    started_at: datetime | None = None,
    detail: dict | None = None,
) -> LandingSummary:
    """Replace the window's landing rows and quarantine rows; record the sync. One transaction."""
    result.check_balance()
    now = datetime.now(UTC)
    table = landing_table(result.source)
    time_col = "timestamp" if result.source == RELAYCORE else "start_time"
    frame = pd.DataFrame(list(result.rows.values()))
    if len(frame):
        frame["day"] = pd.to_datetime(frame[time_col], utc=True).dt.date
        frame["ingested_at"] = now
        frame = frame[[c.name for c in table.columns if c.name in frame.columns]]
    first, last = result.start.date(), result.end.date()
    reasons: dict[str, int] = {}
    for q in result.quarantined:
        key = q.reason.split(":")[0][:80]
        reasons[key] = reasons.get(key, 0) + 1
    with engine.begin() as conn:
        replaced, _ = replace_rows(conn, table, and_(table.c.day >= first, table.c.day < last), [])
        insert_frame(conn, table, frame)
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
