"""Writing what the service queued without losing any of it (SPEC §2.4 "never costs another tenant")."""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
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
    try:  # COPY runs on the driver's own cursor: its errors arrive unwrapped
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            return True
    except ImportError:
        pass
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class Unreachable(Exception):
    """The warehouse, not a row, failed: the whole batch waits for the next write."""


def write_or_set_aside(
    engine: Engine,
    what: str,
    rows: Sequence[Any],
    write: Callable[[Engine, Sequence[Any]], Any],
    retry: queue.Queue[Any],
) -> int:
    """Write `rows`; returns how many were written. The database unreachable: every row goes back on
    `retry` for the next flush."""
    try:
        return refused_apart(engine, what, rows, write)
    except Unreachable as exc:
        log.warning("%s: the database is unreachable, %d rows kept for the next flush: %s", what, len(rows), exc)
        for row in rows:
            retry.put(row)
        return 0


def refused_apart(engine: Engine, what: str, rows: Sequence[Any], write: Callable[[Engine, Sequence[Any]], Any]) -> int:
    """Write `rows`; returns how many were written; raises `Unreachable` when the database is.

    A batch refused for its content: halves are written apart until the refused rows stand alone;
    those go to `quarantine` with the reason, and every other row is written.
    """
    if not rows:
        return 0
    try:
        write(engine, rows)
        return len(rows)
    except Exception as exc:
        if _unreachable(exc):
            raise Unreachable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        if len(rows) == 1:
            _set_aside(engine, what, rows[0], exc)
            return 0
    half = len(rows) // 2
    return refused_apart(engine, what, rows[:half], write) + refused_apart(engine, what, rows[half:], write)


def _set_aside(engine: Engine, what: str, row: Any, exc: Exception) -> None:
    reason = storable_text(
        str(getattr(exc, "orig", exc) or exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
    )
    log.error("%s: a row the database refused was set aside in quarantine: %s", what, reason)
    if isinstance(row, bytes):  # a line that did not decode
        ref, raw = "", row.decode("utf-8", "replace")
    else:
        fields = row if isinstance(row, dict) else msgspec.structs.asdict(row)
        ref = str(fields.get("selection_id") or fields.get("request_id") or "")[:512]
        raw = json.dumps(fields, default=_text, ensure_ascii=False)
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
                        "raw": storable_text(raw),
                        "reason": f"refused by the warehouse: {reason}",
                        "run_id": None,
                        "quarantined_at": datetime.now(UTC),
                    }
                ],
            )
    except Exception as again:  # the log line above still says what was lost, and why
        log.error("%s: could not set the row aside either: %s", what, again)


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, msgspec.Raw) else str(value)
