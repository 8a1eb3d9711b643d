"""Writing what the service queued without losing any of it (SPEC §2.4 "never costs another tenant")."""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from cams.sources.contracts import storable_text
from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows

log = logging.getLogger("cams.api")


def _unreachable(exc: Exception) -> bool:
    """The database, not the row, failed: retry the whole batch later."""
    if isinstance(exc, DisconnectionError):
        return True
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def write_or_set_aside(
    engine: Engine,
    what: str,
    rows: Sequence[dict[str, Any]],
    write: Callable[[Engine, Sequence[dict[str, Any]]], Any],
    retry: queue.Queue[dict[str, Any]],
) -> int:
    """Write `rows`; returns how many were written.

    The database unreachable: every row goes back on `retry`. A batch refused for its content: halves
    are written apart until the refused rows stand alone; those go to `quarantine` with the reason.
    """
    if not rows:
        return 0
    try:
        write(engine, rows)
        return len(rows)
    except Exception as exc:
        if _unreachable(exc):
            log.warning("%s: the database is unreachable, %d rows kept for the next flush: %s", what, len(rows), exc)
            for row in rows:
                retry.put(row)
            return 0
        if len(rows) == 1:
            _set_aside(engine, what, rows[0], exc)
            return 0
    half = len(rows) // 2
    return write_or_set_aside(engine, what, rows[:half], write, retry) + write_or_set_aside(
        engine, what, rows[half:], write, retry
    )


def _set_aside(engine: Engine, what: str, row: dict[str, Any], exc: Exception) -> None:
    reason = storable_text(
        str(getattr(exc, "orig", exc) or exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
    )
    log.error("%s: a row the database refused was set aside in quarantine: %s", what, reason)
    ref = str(row.get("selection_id") or row.get("request_id") or "")[:512]
    try:
        with engine.begin() as conn:
            insert_rows(
                conn,
                t.quarantine,
                [
                    {
                        "source": what,
                        "day": None,
                        "ref": storable_text(ref),
                        "raw": storable_text(json.dumps(row, default=str, ensure_ascii=False)),
                        "reason": f"refused by the warehouse: {reason}",
                        "run_id": None,
                        "quarantined_at": datetime.now(UTC),
                    }
                ],
            )
    except Exception as again:  # the log line above still says what was lost, and why
        log.error("%s: could not set the row aside either: %s", what, again)
