"""Stored events into drop files: cost-data webhooks as RelayCore lines, OTLP trace exports (POST
/v1/traces) as Auterity lines; the same validation, dedupe and quarantine path as any file."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, select, update

from cams.sources.files import DropFile, days_touched
from cams.warehouse import schema as t


def webhook_events_to_drops(engine: Engine, drop_dir: str, kind: str = "cost-data") -> list[tuple[str, set[date]]]:
    """Write each unprocessed event of `kind` as one drop file; mark it processed.

    `cost-data`: the event's `records` as RelayCore lines (a body that is one record, no `records`
    list, is taken as that record). `otlp-traces`: the stored OTLP export request as one Auterity line.
    Whatever they hold, the file reader validates them and quarantines what is bad.
    """
    source, prefix = ("relaycore", "webhook") if kind == "cost-data" else ("auterity", "otlp")
    we = t.webhook_events
    out: list[tuple[str, set[date]]] = []
    with engine.connect() as conn:
        events = conn.execute(
            select(we.c.event_id, we.c.body)
            .where(we.c.kind == kind, we.c.processed_at.is_(None))
            .order_by(we.c.received_at)
        ).all()
    root = Path(drop_dir)
    root.mkdir(parents=True, exist_ok=True)
    for event_id, body in events:
        if kind == "cost-data":
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                payload = {"records": [body]}  # stored as received: the file reader quarantines it, counted
            records = payload.get("records") if isinstance(payload.get("records"), list) else [payload]
            text = "".join(json.dumps(r) + "\n" for r in records)
        else:
            text = body.replace("\n", " ") + "\n"  # one export request, one line (it was stored compact)
        # named by a hash of the whole id: distinct ids never share a file (`evt:1`, `evt_1`, long prefixes)
        path = root / f"{prefix}-{hashlib.sha256(event_id.encode()).hexdigest()[:40]}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # atomic: a reader never sees half a file
        st = path.stat()
        out.append((event_id, days_touched(DropFile(path, st.st_mtime_ns, st.st_size), source)))
        with engine.begin() as conn:
            conn.execute(update(we).where(we.c.event_id == event_id).values(processed_at=datetime.now(UTC)))
    return out
