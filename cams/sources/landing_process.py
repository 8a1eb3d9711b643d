"""A source's landing in a process of its own, beside the run's: what the threads executor does with
Auterity's landing while RelayCore lands in the run's process.

Why: landing is Python's work (decoding and checking lines, encoding them for COPY), and the threads of
one process share one GIL, so the two landings took turns: while RelayCore landed, one of the two cores
sat mostly idle (1.0-1.4 busy), and Auterity's landing ran after it. A child process decodes on the other
core. It is the whole landing (reading, the COPY into the day's new child, the swap and the commit) on a
connection of its own, so no row crosses between the processes: what comes back is the landing's summary
and the reading's detail, as one JSON line. Progress lines come back the same way, for the run's log.

The child is a plain `python -m cams.sources.landing_process`: it imports the landing and the warehouse
code (no Dagster), about half a second on the idle core. The job (the source's settings, the
warehouse URL, the window) goes through its stdin, never its command line, which other users can read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cams.config import SourceConfig
from cams.sources.http_client import SourceApiError
from cams.sources.landing import LandingSummary

_MARK = "cams-landing: "  # what starts an answer line on the child's stdout


class LandingProcessError(RuntimeError):
    """The landing's process failed on something other than the source's API: its message and traceback."""


def land_apart(
    source: SourceConfig,
    database_url: str,
    start: datetime,
    end: datetime,
    run_id: str | None,
    started: datetime,
    say: Callable[[str], None],
) -> tuple[LandingSummary, dict[str, Any]]:
    """Land [start, end) of `source` in a child process; its summary and the reading's detail, as the
    run's own `land` would give them. `say` hears the child's progress lines. A source API error comes
    back as SourceApiError (the caller records the failed sync, as for one in this process)."""
    job = {
        "source": dataclasses.asdict(source),
        "database_url": database_url,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "run_id": run_id,
        "started": started.isoformat(),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cams.sources.landing_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    outcome: dict[str, Any] | None = None
    try:
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        for line in proc.stdout:  # the GIL is released while this thread waits for a line
            if not line.startswith(_MARK):  # written before the child took its stdout: not an answer
                sys.stderr.write(line)
                continue
            message = json.loads(line[len(_MARK) :])
            if "progress" in message:
                say(message["progress"])
            else:
                outcome = message
    finally:
        if proc.poll() is None and outcome is None:
            proc.kill()
        code = proc.wait()
    if outcome is None:
        raise LandingProcessError(f"{source.name}: the landing's process ended (exit status {code}) without an answer")
    if "error" in outcome:
        if outcome.get("kind") == "SourceApiError":
            raise SourceApiError(outcome["error"])
        raise LandingProcessError(f"{source.name}: {outcome['error']}\n{outcome.get('traceback', '')}")
    s = outcome["summary"]
    return LandingSummary(s["source"], s["counts"], s["replaced"], s["quarantine_reasons"]), outcome["detail"]


_ANSWERS: Any = None  # the child's answer channel: its stdout as it started, before anything else can write


def _say(message: dict[str, Any]) -> None:
    _ANSWERS.write(_MARK + json.dumps(message, default=str) + "\n")
    _ANSWERS.flush()


def _child() -> None:
    """The child's side: read the job, land, answer. The answers keep the stdout it was started with;
    anything else written to its stdout (a library's print, C code writing to fd 1) goes to stderr, so only
    answers reach the parent's reader."""
    global _ANSWERS
    _ANSWERS = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from cams.progress import DayProgress
    from cams.sources.landing import Stage, land
    from cams.sources.reading import read_window
    from cams.warehouse.db import make_engine

    job = json.loads(sys.stdin.read())
    source = SourceConfig(**job["source"])
    start, end = datetime.fromisoformat(job["start"]), datetime.fromisoformat(job["end"])
    engine = make_engine(job["database_url"])
    try:
        progress = DayProgress(lambda m: _say({"progress": m}), start.date(), end.date())
        with Stage(engine, source.name, start, end) as stage:
            result, detail = read_window(source, start, end, stage, progress)
            summary = land(
                engine, result, source.mode, job["run_id"], datetime.fromisoformat(job["started"]), detail, stage
            )
        _say({"summary": dataclasses.asdict(summary), "detail": detail})
    except SourceApiError as exc:
        _say({"error": str(exc), "kind": "SourceApiError"})
    except Exception as exc:  # the run's step fails with it
        _say({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    finally:
        engine.dispose()


if __name__ == "__main__":
    _child()
