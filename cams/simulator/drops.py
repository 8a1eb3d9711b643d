"""Write simulated usage as drop files, the way a gateway's exporter would leave them."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cams.simulator.generate import SimData
from cams.sources.otlp import to_otlp


def _write(path: Path, lines: list[str], mtime: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        with gzip.GzipFile(path, "wb", mtime=0) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    ts = mtime.timestamp()
    os.utime(path, (ts, ts))


def _day(rec: dict[str, Any], field: str) -> date:
    return date.fromisoformat(rec[field][:10])


def write_drops(sim: SimData, root: str | Path, otlp_spans_per_line: int | None = None) -> dict[str, Path]:
    """root/relaycore and root/auterity, one file per day (every third gzipped), late records in a
    `-late` file that lands a day later, duplicates and malformed lines inside the day's file.

    With `otlp_spans_per_line`, Auterity's files are written as the OpenTelemetry Collector's file
    exporter writes them: one OTLP JSON export request per line holding that many spans.
    """
    root = Path(root)
    dirs = {"relaycore": root / "relaycore", "auterity": root / "auterity"}
    by_day: dict[date, list[str]] = {}
    late_by_day: dict[date, list[str]] = {}
    for rec in sim.relaycore:
        target = late_by_day if rec["request_id"] in sim.late else by_day
        target.setdefault(_day(rec, "timestamp"), []).append(json.dumps(rec))
    for rec in sim.duplicates:
        by_day.setdefault(_day(rec, "timestamp"), []).append(json.dumps(rec))
    spans_by_day: dict[date, list[str]] = {}
    if otlp_spans_per_line:
        grouped: dict[date, list[dict[str, Any]]] = {}
        for span in sim.auterity:
            grouped.setdefault(_day(span, "start_time"), []).append(span)
        for day, spans in grouped.items():
            n = otlp_spans_per_line
            spans_by_day[day] = [json.dumps(to_otlp(spans[i : i + n])) for i in range(0, len(spans), n)]
    else:
        for span in sim.auterity:
            spans_by_day.setdefault(_day(span, "start_time"), []).append(json.dumps(span))
    for i, day in enumerate(sim.config.days):
        end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, hours=1)
        suffix = ".jsonl.gz" if i % 3 == 2 else ".jsonl"
        lines = by_day.get(day, [])
        bad = sim.malformed.get(day.isoformat(), [])
        # malformed lines sit among good ones, not only at the end
        mixed = lines[: len(lines) // 2] + bad + lines[len(lines) // 2 :]
        _write(dirs["relaycore"] / f"relaycore-{day.isoformat()}{suffix}", mixed, end_of_day)
        if day in late_by_day:
            _write(
                dirs["relaycore"] / f"relaycore-{day.isoformat()}-late.jsonl",
                late_by_day[day],
                end_of_day + timedelta(days=1),
            )
        spans = spans_by_day.get(day, []) + sim.malformed_spans.get(day.isoformat(), [])
        _write(dirs["auterity"] / f"auterity-{day.isoformat()}{suffix}", spans, end_of_day)
    return dirs
