"""Warehouse rows as the API answers them: JSON a person reads, or CSV when asked for."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import Response

CSV_TOO = {200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with Accept: text/csv"}}


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A warehouse row as JSON a person reads: exact decimals without exponents ("0.0000000000",
    never "0E-10"), timestamps with their zone (the warehouse keeps UTC; SQLite hands them back naive)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, Decimal):
            out[k] = f"{v:f}"
        elif isinstance(v, datetime):
            out[k] = (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
        elif isinstance(v, date):
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out


def as_csv_if_asked(request: Request, rows: list[dict[str, Any]]) -> Response | None:
    """The rows as CSV when the client sends `Accept: text/csv` (a spreadsheet's import, `curl -H`)."""
    return as_csv(rows) if "text/csv" in request.headers.get("accept", "") else None


def as_csv(rows: list[dict[str, Any]], filename: str | None = None) -> Response:
    """The rows as CSV (a download when `filename` is given: the dashboard's CSV links)."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else None
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
