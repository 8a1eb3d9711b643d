"""File drops (SPEC §8): every *.jsonl / *.jsonl.gz in a source's drop_dir, read defensively.

A line is never trusted: bytes that are not UTF-8, lines over MAX_LINE_BYTES and truncated gzip
streams come back as errors with the position, to be quarantined, never raised.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO

from cams.sources.batch import Collector
from cams.sources.contracts import RecordError, decode_line
from cams.sources.otlp import flatten, is_otlp
from cams.sources.registry import describe
from cams.sources.timeutil import parse_rfc3339

MAX_LINE_BYTES = 1024 * 1024
BLOCK_BYTES = 1024 * 1024
# A gzip stream may expand to this many times its size, and always to this floor; past that it is
# read no further (a gzip bomb would otherwise fill memory with quarantined lines or take hours).
GZIP_MAX_RATIO = 200
GZIP_FLOOR_BYTES = 512 * 1024 * 1024


class GzipBombError(OSError):
    """A gzip stream that expands past what a drop file may."""


PATTERNS = ("*.jsonl", "*.jsonl.gz")


@dataclass(frozen=True)
class DropFile:
    path: Path
    mtime_ns: int
    size: int
    outside: bool = False  # a symlink to a file outside the drop dir: refused, counted as one bad line

    @property
    def mtime_day(self) -> date:
        return datetime.fromtimestamp(self.mtime_ns / 1e9, tz=UTC).date()

    @property
    def fingerprint(self) -> str:
        return f"{self.mtime_ns}:{self.size}"


def list_drop_files(drop_dir: str | Path) -> list[DropFile]:
    """Drop files, oldest first (so a later copy of a record is read later and wins).

    A path that resolves outside the drop dir (a symlink, or a file under a symlinked folder) is
    listed as `outside`: never opened, quarantined as one line so the refusal is counted.
    """
    root = Path(drop_dir)
    if not root.is_dir():
        return []
    real_root = root.resolve()
    found: list[DropFile] = []
    for pattern in PATTERNS:
        for p in root.rglob(pattern):
            if not (p.is_file() or p.is_symlink()):
                continue
            real = p.resolve()
            if real.is_relative_to(real_root) and p.is_file():
                st = p.stat()
                found.append(DropFile(p, st.st_mtime_ns, st.st_size))
            else:
                st = p.lstat()
                found.append(DropFile(p, st.st_mtime_ns, st.st_size, outside=True))
    return sorted(found, key=lambda f: (f.mtime_ns, str(f.path)))


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


@dataclass(frozen=True)
class Line:
    ref: str
    text: str | None
    error: str | None = None


def _block_lines(fh: BinaryIO) -> Iterator[tuple[bytes, int | None]]:
    """Lines of a plain file read a megabyte at a time: (line, None), or (head, size) of an enormous one.

    Splitting blocks in C is several times faster than a readline call per line; an enormous line is
    drained block by block, never held whole.
    """
    carry = b""
    while True:
        block = fh.read(BLOCK_BYTES)
        if not block:
            if carry:
                yield (carry[:4096], len(carry)) if len(carry) > MAX_LINE_BYTES else (carry, None)
            return
        lines = (carry + block if carry else block).split(b"\n")
        carry = lines.pop()
        for line in lines:
            yield (line[:4096], len(line) + 1) if len(line) > MAX_LINE_BYTES else (line, None)
        if len(carry) > MAX_LINE_BYTES:
            head, size, carry = carry[:4096], len(carry), b""
            while True:  # drain the rest of the enormous line without holding it
                block = fh.read(BLOCK_BYTES)
                if not block:
                    yield head, size
                    return
                at = block.find(b"\n")
                if at < 0:
                    size += len(block)
                    continue
                yield head, size + at + 1
                carry = block[at + 1 :]
                break


def _gzip_lines(fh: BinaryIO, limit: int) -> Iterator[tuple[bytes, int | None]]:
    """Lines of a gzip stream, one readline at a time: a truncated stream loses only its last line."""
    while True:
        if fh.tell() > limit:  # the uncompressed position
            raise GzipBombError(f"it expands past {limit} bytes (a gzip bomb?); the rest is not read")
        chunk = fh.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            size = len(chunk)
            while True:  # drain the rest of the enormous line without holding it
                if fh.tell() > limit:
                    raise GzipBombError(f"it expands past {limit} bytes (a gzip bomb?); the rest is not read")
                more = fh.readline(MAX_LINE_BYTES)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield chunk[:4096], size
            continue
        yield chunk, None


def raw_lines(path: Path) -> Iterator[tuple[int, bytes, str | None]]:
    """(line number, bytes, error) of each non-blank line; an error line is quarantined, not parsed.

    Bytes, not text: the compiled contract reads them as they are (a line is decoded only when the
    Python contract has to look at it).
    """
    lineno = 0
    gz = path.name.endswith(".gz")
    try:
        with _open(path) as fh:
            limit = max(GZIP_FLOOR_BYTES, GZIP_MAX_RATIO * path.stat().st_size)
            for chunk, oversize in _gzip_lines(fh, limit) if gz else _block_lines(fh):
                lineno += 1
                if oversize is not None:
                    yield lineno, chunk, f"line longer than {MAX_LINE_BYTES} bytes ({oversize} bytes)"
                elif chunk and not chunk.isspace():  # blank lines are not records (no stripped copy made)
                    yield lineno, chunk, None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        yield lineno + 1, b"", f"unreadable file after line {lineno}: {exc}"


def read_lines(path: Path) -> Iterator[Line]:
    """Each line of a drop file as text, or as an error to quarantine."""
    for lineno, chunk, error in raw_lines(path):
        ref = f"{path.name}:{lineno}"
        if error is not None:
            yield Line(ref, chunk.decode("utf-8", "backslashreplace"), error)
            continue
        yield Line(ref, *decode_line(chunk))


def collect_files(collector: Collector, files: list[DropFile]) -> None:
    """Feed every line of `files` into the collector (it keeps the lines of its window)."""
    for f in files:
        fallback, name = f.mtime_day, f.path.name
        if f.outside:
            if collector.day_in_window(fallback):
                collector.quarantine(
                    f"{name}:0", str(f.path), "symlink to a file outside the drop dir: refused, not read", fallback
                )
            continue
        collector.start_file()
        for lineno, chunk, error in raw_lines(f.path):
            if error is not None:
                text = chunk.decode("utf-8", "backslashreplace")
                day = collector.hint_day(text, collector.neighbour_day(fallback))
                if collector.day_in_window(day):
                    collector.quarantine(f"{name}:{lineno}", text, error, day)
                continue
            collector.add_line(lineno, name, chunk, fallback)


def days_touched(f: DropFile, source: str) -> set[date]:
    """The UTC days a drop file holds records for (the sensor's unit of work)."""
    if f.outside:
        return {f.mtime_day}  # its refusal is counted on the day the link appeared
    days: set[date] = set()
    field = describe(source).time
    probe = Collector(source, datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    last: date | None = None  # as the collector does: an unreadable line takes its neighbour's day
    for line in read_lines(f.path):
        text = line.text or ""
        try:
            obj = json.loads(text)
            records = [r for r in flatten(obj) if isinstance(r, dict)] if is_otlp(obj) else [obj]
            found = [parse_rfc3339(r.get(field), field).date() for r in records]
            days.update(found)
            last = found[-1] if found else last
        except (ValueError, AttributeError, TypeError, RecursionError, RecordError):
            days.add(probe.hint_day(text, last or f.mtime_day) or f.mtime_day)
    return days
