"""Where a long step is inside its range of days: a month's backfill handles each stage over every day of
the range at once, so the stage itself says which day its work has reached.

Plain Python: the step hands a `say` callable (a Dagster asset passes its run log); `cams run`'s stage
watcher (pipelines/progress.py) reads the lines back from the run's log and prints them with an ETA.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

PREFIX = "progress: "
_LINE = re.compile(r"^progress: day (\d+) of (\d+)")


@dataclass
class DayProgress:
    """Reports `day N of M (the day), R rows` at most every `every_s` seconds, and always at a new day."""

    say: Callable[[str], None]
    first: date
    last_exclusive: date
    every_s: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _said_at: float = field(default=float("-inf"), init=False)
    _day: date | None = field(default=None, init=False)
    rows: int = field(default=0, init=False)

    @property
    def days(self) -> int:
        return max(1, (self.last_exclusive - self.first).days)

    def reached(self, day: date | None, rows: int, force: bool = False) -> None:
        """The work has got to `day` (None: not known yet) with `rows` rows handled so far."""
        self.rows = rows
        if day is None or not self.first <= day < self.last_exclusive:
            return
        now = self.clock()
        new_day = self._day is None or day > self._day
        if not (force or new_day or now - self._said_at >= self.every_s):
            return
        self._day = max(day, self._day) if self._day is not None else day
        self._said_at = now
        n = min(self.days, max(1, (self._day - self.first).days + 1))
        self.say(f"{PREFIX}day {n} of {self.days} ({self._day.isoformat()}), {rows:,} rows")


def parse_line(message: str) -> tuple[int, int] | None:
    """(day N, of M) from a progress line, else None: how the watcher tells progress from other log lines."""
    m = _LINE.match(message)
    return (int(m.group(1)), int(m.group(2))) if m else None
