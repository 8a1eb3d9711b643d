"""Progress of a `cams run` range, stage by stage, with an ETA: printed on the terminal and written into
the Dagster run's own log (engine events), so a month's backfill says where it is and how long is left.

A range is one run (single-run backfill): each stage (asset step) handles every day of the range in
one step, so progress is per stage (with the range's days and the rate in days a second) and, inside the
long stages (landing, costing, reconciliation), per day: the stage logs the day each chunk of rows has
reached (cams.progress) and the watcher prints it with the stage's time left. The ETA comes
from this instance's last successful run of the same job (its step times per day, scaled to this
range), else from the stages already done in this run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import dagster as dg

from assets.ingestion.schedules import RANGE_END_TAG, RANGE_START_TAG
from cams.progress import PREFIX, parse_line
from cams.sources.timeutil import days_between

STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Each step's seconds, start to success, in the run `run_id` (from its event log)."""
    started: dict[str, float] = {}
    out: dict[str, float] = {}
    for entry in instance.all_logs(run_id, of_type=STEP_EVENTS):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key in started:
            out[event.step_key] = entry.timestamp - started[event.step_key]
    return out


def step_seconds_per_day(instance: dg.DagsterInstance, job_name: str) -> dict[str, float]:
    """Each step's seconds per day of range in the newest successful run of `job_name` (empty if none)."""
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
    if not runs or RANGE_START_TAG not in runs[0].tags:
        return {}
    tags = runs[0].tags
    days = len(days_between(date.fromisoformat(tags[RANGE_START_TAG]), date.fromisoformat(tags[RANGE_END_TAG])))
    return {step: seconds / max(days, 1) for step, seconds in step_seconds(instance, runs[0].run_id).items()}


class StageWatcher:
    """Follows a run's step events from a thread while the run executes in this process."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str | Callable[[], str | None],
        steps: list[str],
        days: int,
        say: Callable[[str], None],
        per_day: dict[str, float] | None = None,
        every_s: float = 1.0,
    ) -> None:
        self.instance, self.steps, self.days, self.say = instance, steps, days, say
        # a run launched through an executor gets its id from Dagster: the caller finds it (by a tag)
        self._find = run_id if callable(run_id) else None
        self.run_id: str | None = None if callable(run_id) else run_id
        self.per_day = per_day or {}
        self.every_s = every_s
        self.began = time.time()
        self.started: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self._cursor: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cams-progress", daemon=True)
        self.lines: list[str] = []

    def __enter__(self) -> StageWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):  # the run is what matters; a progress line is not worth failing it
            self.poll()  # what happened after the last look

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            with contextlib.suppress(Exception):
                self.poll()

    def eta(self, now: float) -> float | None:
        """Seconds left: expected time of the stages not done (from the last run's per-day times, else
        this run's average stage so far), less what the running stage has already taken."""
        average = sum(self.done.values()) / len(self.done) if self.done else None
        left = 0.0
        for step in (s for s in self.steps if s not in self.done):
            expected = self.per_day[step] * self.days if step in self.per_day else None if self.per_day else average
            if expected is None:
                return None
            left += max(0.0, expected - (now - self.started[step])) if step in self.started else expected
        return left

    def poll(self) -> None:
        if self.run_id is None and self._find is not None:
            self.run_id = self._find()
        if self.run_id is None:
            return  # not created yet
        # only the events since the last look (a month's range writes thousands; reading them all every
        # second from the run's own thread slowed the run)
        page = self.instance.get_records_for_run(self.run_id, cursor=self._cursor)
        self._cursor = page.cursor
        for entry in (record.event_log_entry for record in page.records):
            event = entry.dagster_event
            if event is None:
                self._within_stage(entry)
                continue
            if event.event_type not in STEP_EVENTS or event.step_key not in self.steps:
                continue
            step, n = event.step_key, self.steps.index(event.step_key) + 1
            if event.event_type == dg.DagsterEventType.STEP_START:
                self.started[step] = entry.timestamp
                eta = self.eta(entry.timestamp)
                tail = f", about {_duration(eta)} left" if eta is not None else ""
                self._emit(
                    f"[{n}/{len(self.steps)}] {step}: started on {self.days} day(s), "
                    f"{_duration(entry.timestamp - self.began)} in{tail}"
                )
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and step in self.started:
                took = entry.timestamp - self.started[step]
                self.done[step] = took
                rate = f", {self.days / took:,.1f} days/s" if took > 0 else ""
                eta = self.eta(entry.timestamp)
                tail = f"; ETA {_duration(eta)}" if eta is not None and len(self.done) < len(self.steps) else ""
                self._emit(f"[{n}/{len(self.steps)}] {step}: done in {_duration(took)}{rate}{tail}")
            elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                self._emit(f"[{n}/{len(self.steps)}] {step}: failed")

    def _within_stage(self, entry: Any) -> None:
        """A stage's own line about the day it has reached (cams.progress), with the stage's time left."""
        step, message = entry.step_key, entry.user_message or ""
        at = parse_line(message)
        if at is None or step not in self.steps or step not in self.started:
            return
        (day, days), took = at, entry.timestamp - self.started[step]
        left = took * (days - day) / day if day < days and took > 0 else None
        tail = f", about {_duration(left)} left in this stage" if left is not None else ""
        n = self.steps.index(step) + 1
        self._emit(f"[{n}/{len(self.steps)}] {step}: {message[len(PREFIX) :]}{tail}", log=False)

    def _emit(self, line: str, log: bool = True) -> None:
        """Print a line; with `log`, also write it into the run's log (a stage's own lines are there already)."""
        self.lines.append(line)
        self.say(line)
        if not log:
            return
        run = self.instance.get_run_by_id(self.run_id) if self.run_id else None
        if run is not None:  # into the run's own log, beside Dagster's step events
            self.instance.report_engine_event(f"cams run progress: {line}", run)
