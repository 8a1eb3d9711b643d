"""Selection history off the request path: a request appends one line to a spool file, a writer process
copies the lines into the warehouse in batches.

Why a file and a process: the request pays one `write` system call instead of a database round trip on
its own GIL (a history row through SQLAlchemy cost ~100 µs, which capped the service near 10,000
selections a second); a warehouse that is slow or down fills a disk, not memory, and loses nothing (the
lines wait, the request path never blocks on it); lines a crashed server left are written by the next
drain. Rows are inserted by primary key, new ones only, so a batch replayed after a crash lands once.

Layout of the spool directory: one `<pid>-<ns>.spool` segment per writing process at a time (a new one
past `SEGMENT_BYTES`), and beside each a `.off` file holding how many of its bytes are in the warehouse.
Whoever holds `drain.lock` drains: the writer process every `every_s`, or a request that must read its
own history (the explainer) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine
from sqlalchemy import table as sa_table

from cams.warehouse import schema as t

log = logging.getLogger("cams.api")
SEGMENT_BYTES = 64 * 1024 * 1024
BATCH_BYTES = 4 * 1024 * 1024  # one warehouse transaction at most (~6,000 selections)
HISTORY_COLUMNS = (
    "selection_id",
    "request_id",
    "org_id",
    "team_id",
    "user_id",
    "task_type",
    "quality_tier",
    "served_tier",
    "model",
    "estimated_cost_usd",
    "budget_state",
    "binding_constraint",
    "table_version",
    "selected_at",
)
_encode = msgspec.json.Encoder().encode
_clock: list[Any] = [0, b""]


def now_text() -> bytes:
    """The current UTC time as RFC 3339 bytes to the millisecond, formatted once per millisecond
    (formatting a datetime per request cost 4 µs)."""
    ms = time.time_ns() // 1_000_000
    if ms != _clock[0]:
        _clock[0], _clock[1] = ms, datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").encode()
    return _clock[1]


class Spool:
    """The appending side, one per serving process; thread-safe (the event loop and FastAPI's threads)."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._fd = -1
        self._size = 0
        self._pid = -1
        self._open()

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._pid = os.getpid()
        # pid, this spool's own id, time: a segment is superseded only by a newer one of the same spool (two
        # services in one process, as in tests or an embedding app, must not retire each other's segments)
        path = self.directory / f"{self._pid}-{id(self):x}-{time.time_ns()}.spool"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0

    def append(self, row: dict[str, Any]) -> None:
        """One selection (history columns plus its `explanation`), as one line."""
        self.append_line(_encode(row) + b"\n")

    def append_soon(self, line: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """`append_line` from the event loop: the lines of one loop iteration go out in one `write`
        (a system call per request cost a third of the lean path's time); a process killed in
        between loses at most that iteration's lines."""
        self._pending.append(line)
        if len(self._pending) == 1:
            loop.call_soon(self.write_pending)

    def write_pending(self) -> None:
        """Write the lines the event loop has queued (from the loop, or from a flush on another thread)."""
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:
            self.append_line(b"".join(lines))

    def append_line(self, line: bytes) -> None:
        """Selections already encoded, each a JSON object and a newline."""
        with self._lock:
            if self._pid != os.getpid() or self._size >= self.segment_bytes:  # forked, or the segment is full
                self._open()
            os.write(self._fd, line)
            self._size += len(line)

    def close(self) -> None:
        self.write_pending()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class _Row(msgspec.Struct):
    """A spooled line; the explanation stays the JSON text it was written as. Types are loose on
    purpose: what the warehouse refuses (a missing org) is set aside by the warehouse's own rule."""

    selection_id: str
    request_id: str | None = None
    org_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    task_type: str | None = None
    quality_tier: str | None = None
    served_tier: str | None = None
    model: str | None = None
    estimated_cost_usd: float | None = None
    budget_state: str | None = None
    binding_constraint: str | None = None
    table_version: str | None = None
    selected_at: datetime | None = None
    explanation: msgspec.Raw = msgspec.Raw(b"null")


_decode_batch = msgspec.json.Decoder(list[_Row]).decode


def backlog(directory: Path) -> dict[str, Any]:
    """What waits for the warehouse: bytes, segments, and the age of the oldest waiting line's segment."""
    waiting, segments, oldest = 0, 0, None
    for seg in _segments(Path(directory)):
        with contextlib.suppress(FileNotFoundError):
            left = seg.stat().st_size - _offset(seg)
            if left > 0:
                waiting += left
                segments += 1
                mtime = _offset_mtime(seg)
                oldest = mtime if oldest is None else min(oldest, mtime)
    return {
        "waiting_bytes": waiting,
        "waiting_segments": segments,
        "lag_s": round(max(0.0, time.time() - oldest), 3) if oldest is not None else 0.0,
    }


def drain(engine: Engine, directory: Path, wait: bool = True) -> int:
    """Copy every complete spooled line into the warehouse; returns how many rows were written.

    `wait=False` gives up at once when another process is draining. Raises when the warehouse is
    unreachable (the lines stay for the next drain); a row it refuses is set aside in `quarantine`.
    """
    directory = Path(directory)
    if not directory.exists():
        return 0
    with _drain_lock(directory, wait) as held:
        if not held:
            return 0
        written = 0
        for seg in _segments(directory):
            written += _drain_segment(engine, seg)
            _forget_if_done(seg)
        return written


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"), key=lambda p: (p.stat().st_mtime_ns if p.exists() else 0, p.name))


@contextlib.contextmanager
def _drain_lock(directory: Path, wait: bool) -> Iterator[bool]:
    fd = os.open(directory / "drain.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _offset(seg: Path) -> int:
    try:
        return int((seg.with_suffix(".off")).read_text() or 0)
    except FileNotFoundError:
        return 0


def _offset_mtime(seg: Path) -> float:
    off = seg.with_suffix(".off")
    return off.stat().st_mtime if off.exists() else seg.stat().st_ctime


def _save_offset(seg: Path, offset: int) -> None:
    tmp = seg.with_suffix(".off.tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, seg.with_suffix(".off"))


def _drain_segment(engine: Engine, seg: Path) -> int:
    from cams.api.history import refused_apart

    offset, written = _offset(seg), 0
    try:
        fh = seg.open("rb")
    except FileNotFoundError:
        return 0
    with fh:
        fh.seek(offset)
        while chunk := fh.read(BATCH_BYTES):
            end = chunk.rfind(b"\n")
            if end < 0:  # a line still being written (or longer than a batch: read on)
                if len(chunk) < BATCH_BYTES:
                    break
                chunk += fh.readline()
                end = len(chunk) - 1
                if not chunk.endswith(b"\n"):
                    break
            lines = chunk[: end + 1]
            fh.seek(offset + len(lines))
            written += refused_apart(engine, "model_selection_history", _parse(seg, lines), _write)
            offset += len(lines)
            _save_offset(seg, offset)
    return written


def _parse(seg: Path, lines: bytes) -> list[_Row | bytes]:
    """Decoded rows; a line that does not decode (a disk error, a torn write) stays as bytes to set aside."""
    try:
        return list(_decode_batch(b"[" + lines.rstrip(b"\n").replace(b"\n", b",") + b"]"))
    except msgspec.DecodeError:
        out: list[_Row | bytes] = []
        for line in lines.splitlines():
            try:
                out.append(msgspec.json.decode(line, type=_Row))
            except msgspec.DecodeError:
                log.error("spool %s: a line that does not decode is set aside", seg.name)
                out.append(line)
        return out


def _write(engine: Engine, rows: list[_Row | bytes]) -> None:
    bad = [r for r in rows if isinstance(r, bytes)]
    if bad:
        raise ValueError("a spooled line that does not decode as a selection")
    good: list[_Row] = rows  # type: ignore[assignment]
    history = [tuple(getattr(r, c) for c in HISTORY_COLUMNS) for r in good]
    explanations = [
        (
            r.selection_id,
            r.table_version,
            "selection",
            r.org_id,
            r.request_id,
            bytes(r.explanation).decode(),
            r.selected_at,
        )
        for r in good
    ]
    if engine.dialect.name == "postgresql":
        from cams.warehouse.db import copy_text

        try:  # the usual case, new rows: straight COPY
            with engine.begin() as conn:
                copy_text(conn, t.model_selection_history, HISTORY_COLUMNS, history)
                copy_text(conn, t.model_selection_explanations, _EXPLANATION_COLUMNS, explanations)
            return
        except Exception as exc:  # COPY runs on the driver's cursor: psycopg's own error, or SQLAlchemy's
            state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
            if state != "23505":  # not a replay (unique_violation): the warehouse or a row is at fault
                raise
        with engine.begin() as conn:  # a batch replayed after a crash: the rows not there yet
            _copy_new(conn, t.model_selection_history, HISTORY_COLUMNS, history)
            _copy_new(conn, t.model_selection_explanations, _EXPLANATION_COLUMNS, explanations)
        return
    from cams.warehouse.db import insert_new_rows

    with engine.begin() as conn:
        insert_new_rows(conn, t.model_selection_history, [dict(zip(HISTORY_COLUMNS, h, strict=True)) for h in history])
        insert_new_rows(
            conn,
            t.model_selection_explanations,
            [dict(zip(_EXPLANATION_COLUMNS, e, strict=True)) for e in explanations],
        )


_EXPLANATION_COLUMNS = ("id", "table_version", "kind", "org_id", "request_id", "explanation_json", "created_at")


def _copy_new(conn: Any, table: Any, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """COPY into a temporary table, then insert the rows whose key is new: replay-safe, twice the work."""
    from cams.warehouse.db import copy_text

    tmp = f"_spool_{table.name}"
    conn.exec_driver_sql(f'CREATE TEMP TABLE IF NOT EXISTS "{tmp}" (LIKE "{table.name}") ON COMMIT DELETE ROWS')
    copy_text(conn, sa_table(tmp), cols, rows)
    col_sql = ", ".join(f'"{c}"' for c in cols)
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({col_sql}) SELECT {col_sql} FROM "{tmp}" ON CONFLICT DO NOTHING')


def _forget_if_done(seg: Path) -> None:
    """Delete a fully written segment once nothing appends to it (its process moved on or is gone)."""
    try:
        if _offset(seg) < seg.stat().st_size:
            return
    except FileNotFoundError:
        return
    parts = seg.name.split("-")
    pid, owner = int(parts[0]), "-".join(parts[:-1]) + "-"  # pid-spool- (pid- for older segments)
    newer = any(
        p != seg and p.name.startswith(owner) and p.name.count("-") == seg.name.count("-") and p.name > seg.name
        for p in seg.parent.glob("*.spool")
    )
    if newer or not _alive(pid):
        seg.unlink(missing_ok=True)
        seg.with_suffix(".off").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_writer(url: str, directory: str, every_s: float, parent_pid: int) -> None:
    """The writer process: drain every `every_s` until the serving process is gone, then once more."""
    from cams.warehouse.db import make_engine

    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(OSError):  # the requests come first: the writer takes the CPU they leave
        os.nice(10)
    engine = make_engine(url)
    path = Path(directory)
    while True:
        parent_gone = not _alive(parent_pid) or os.getppid() != parent_pid
        try:
            drain(engine, path, wait=parent_gone)
        except Exception as exc:  # the warehouse is down: the lines wait on disk
            log.warning("selection history: the warehouse is unreachable, lines wait in %s: %s", path, exc)
        if parent_gone:
            return
        time.sleep(every_s)


def spool_dir_for(url: str) -> Path:
    """Where a warehouse's spool lives: beside a SQLite file; else under CAMS_SPOOL_DIR (default
    `.cams/spool`), one folder per warehouse so two warehouses never drain each other's lines."""
    import hashlib

    if url.startswith("sqlite") and "/:memory:" not in url and url.count("/") >= 3:
        return Path(url.split(":///", 1)[1].split("?", 1)[0] + ".spool")
    base = Path(os.environ.get("CAMS_SPOOL_DIR") or ".cams/spool")
    return base / hashlib.sha256(url.encode()).hexdigest()[:12]
