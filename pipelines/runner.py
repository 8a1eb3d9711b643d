"""`cams run`: materialize the price book, then every partitioned asset for a range of days in one
single-run backfill (usage, costs, reconciliation, the FOCUS export), headless, in a Dagster instance;
then budgets and selection as of the run's as-of; then summarize from the warehouse (cams/report.py).

The command itself (arguments, errors, printing) is `cams.cli`; this module only runs."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.execution.execution_result import ExecutionResult
from dagster._core.utils import make_new_run_id
from dagster._serdes import ConfigurableClassData

from assets.as_of import AS_OF_TAG, end_of_days
from assets.ingestion.schedules import RANGE_END_TAG, RANGE_START_TAG
from cams import report
from pipelines.definitions import BACKFILL_JOB, BUDGET_JOB, PRICE_BOOK_JOB, SELECTION_JOB
from pipelines.progress import StageWatcher, step_seconds_per_day

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class RunError(RuntimeError):
    """A run that could not start (a usage or setup mistake), with what to fix: exit status 2."""


class RunFailed(RunError):
    """A run that started and failed, with the step and its root cause: exit status 1."""


def instance_for(home: str | Path | None = None) -> dg.DagsterInstance:
    """DAGSTER_HOME if set, else .cams/dagster_home (created), so `dagster dev` can browse the runs."""
    if home is None and os.environ.get("DAGSTER_HOME"):
        given = Path(os.environ["DAGSTER_HOME"])
        if not given.is_dir():
            raise RunError(f"DAGSTER_HOME {given} is not a folder: create it (mkdir -p) or unset DAGSTER_HOME")
        return dg.DagsterInstance.get()
    path = Path(home or ".cams/dagster_home").resolve()
    path.mkdir(parents=True, exist_ok=True)
    settings = path / "dagster.yaml"
    if not settings.exists():  # a local home: no telemetry, nothing leaves the machine
        settings.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(path)
    return dg.DagsterInstance.get()


PID_TAG, HOST_TAG = "cams/pid", "cams/host"


def _process_tags() -> dict[str, str]:
    """Who runs this `cams run`: so the next one can tell a run whose process died from a live one."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs an earlier `cams run` on this host left STARTED when it was killed.

    `execute_in_process` runs have no run worker for Dagster's run monitoring to watch, so a killed
    `cams run` left them STARTED for ever: the UI showed them running and sensors waited on them.
    """
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    ):
        pid = run.tags.get(PID_TAG)
        if run.tags.get(HOST_TAG) != host or not (pid or "").isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, f"the cams run process ({pid} on {host}) ended before this run finished")
        failed.append(run.run_id)
    return failed


def run_range(
    start: date,
    end: date,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    progress: Callable[[str], None] = lambda _m: None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Materialize [start, end] (inclusive days); returns the SPEC §8 `--json` summary.

    Budgets and selection are evaluated as of `as_of`, default the end of the range (now when the
    range reaches today), so a backfill of May gives May's answers whenever it runs."""
    if end < start:
        raise RunError(f"--end {end} is before --start {start}")
    for run_id in fail_abandoned_runs(instance):
        progress(f"marked run {run_id} failed: the cams run that started it was killed")
    progress("loading the price book")
    price_job = defs.resolve_job_def(PRICE_BOOK_JOB)
    result = price_job.execute_in_process(
        instance=instance, run_config=QUIET, tags={"cams/trigger": "cams run", **_process_tags()}, raise_on_error=False
    )
    if not result.success:
        raise RunFailed(f"price_book failed: {_failure(result)}")
    as_of = as_of or end_of_days(end)
    range_tags = {
        RANGE_START_TAG: start.isoformat(),
        RANGE_END_TAG: end.isoformat(),
        "cams/trigger": "cams run",
        **_process_tags(),
    }
    as_of_tags = {AS_OF_TAG: as_of.isoformat(), "cams/trigger": "cams run", **_process_tags()}

    def evaluate(on: dg.DagsterInstance) -> Evaluated:
        progress(f"evaluating budgets as of {as_of.isoformat()} and delivering alerts")
        budgets = defs.resolve_job_def(BUDGET_JOB).execute_in_process(
            instance=on, run_config=QUIET, tags=as_of_tags, raise_on_error=False
        )
        if not budgets.success:
            return budgets, None
        progress(f"publishing model quality and a new selection table version as of {as_of.isoformat()}")
        return budgets, _execute(defs.resolve_job_def(SELECTION_JOB), on, as_of_tags)

    progress(f"ingesting, costing, rolling up, reconciling and exporting {start} .. {end}")
    job = defs.resolve_job_def(BACKFILL_JOB)
    steps = [n.name for n in job.graph.nodes_in_topological_order]
    per_day = step_seconds_per_day(instance, BACKFILL_JOB)
    days = (end - start).days + 1
    if job.executor_def.name == "in_process":
        run_id = make_new_run_id()
        with StageWatcher(instance, run_id, steps, days, progress, per_day):
            result = job.execute_in_process(
                instance=instance, run_config=QUIET, tags=range_tags, raise_on_error=False, run_id=run_id
            )
        if not result.success:
            raise RunFailed(f"{BACKFILL_JOB} failed: {_failure(result)}")
        usage_run, (result, sel) = result.run_id, evaluate(instance)
    else:
        usage_run, (result, sel) = _run_on_executor(instance, job, range_tags, steps, days, progress, per_day, evaluate)
    if not result.success:
        raise RunFailed(f"{BUDGET_JOB} failed: {_failure(result)}")
    assert sel is not None
    warnings: list[str] = []
    if not sel.success:
        refused = [
            e for e in sel.get_asset_check_evaluations() if e.check_name == "no_task_tier_goes_dark" and not e.passed
        ]
        if not refused:
            raise RunFailed(f"{SELECTION_JOB} failed: {_failure(sel)}")
        rows = refused[0].metadata["refused_for"].value
        warnings.append(f"selection table refused, the served version stays: would go dark for {rows}")
        progress(f"warning: {warnings[-1]}")
    fired = 0
    for mat in result.asset_materializations_for_node("budget_alerts"):
        fired += int(mat.metadata["alerts_fired"].value)
    engine = defs.resources["warehouse"].engine()
    summary = report.summarize(engine, start, end, usage_run, alerts_fired=fired)
    for warning in report.empty_sources(summary):
        warnings.append(warning)
        progress(f"warning: {warning}")
    return {**summary, "warnings": warnings}


def _execute(job: dg.JobDefinition, instance: dg.DagsterInstance, tags: dict[str, str]) -> ExecutionResult:
    """`job` in this process, on its own executor where that is threads: the selection job's token calibration
    (which grows with the estimates of 30 days) then runs beside the quality statistics, the table and the
    savings report instead of after them. `execute_in_process` would swap in the in-process executor."""
    if job.executor_def.name != "threads":
        return job.execute_in_process(instance=instance, run_config=QUIET, tags=tags, raise_on_error=False)
    run = instance.create_run_for_job(job_def=job, run_config=QUIET, tags=tags)
    return execute_run(InMemoryJob(job), run, instance, raise_on_error=False)


RUN_TOKEN_TAG = "cams/run_token"
# what the budget and selection jobs read: once a backfill has these, they can run beside its reconciliation
EVALUATION_READS = frozenset({"cost_tracking", "auterity_spans"})
Evaluated = tuple[dg.ExecuteInProcessResult, ExecutionResult | None]


def _run_on_executor(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    tags: dict[str, str],
    steps: list[str],
    days: int,
    progress: Callable[[str], None],
    per_day: dict[str, float],
    evaluate: Callable[[dg.DagsterInstance], Evaluated],
) -> tuple[str, Evaluated]:
    """`backfill_job` through its executor, with budgets and selection evaluated beside it as soon as the
    run has what they read (`EVALUATION_READS`): on two cores they otherwise wait ~5 s for reconciliation,
    which keeps one core busy in PostgreSQL and the other idle. Should the backfill fail after that, the
    command still fails; budgets were evaluated on complete costs.

    The threads executor runs the job as built here; multiprocess and Celery steps run in other
    processes, which rebuild the job from this environment (CAMS_CONFIG, CAMS_DATABASE_URL) through
    `dg.reconstructable`."""
    from pipelines import definitions

    token = make_new_run_id()
    tags = {**tags, RUN_TOKEN_TAG: token}
    executor = job.executor_def.name

    def find() -> str | None:
        runs = instance.get_run_ids(dg.RunsFilter(tags={RUN_TOKEN_TAG: token}), limit=1)
        return runs[0] if runs else None

    def execute() -> ExecutionResult:
        if executor == "threads":  # `execute_in_process` would swap in the in-process executor
            run = instance.create_run_for_job(job_def=job, run_config=QUIET, tags=tags)
            return execute_run(InMemoryJob(job), run, instance, raise_on_error=False)
        return dg.execute_job(
            dg.reconstructable(definitions.backfill_job),
            instance=instance,
            run_config=QUIET,
            tags=tags,
            raise_on_error=False,
        )

    progress(f"steps on the {executor} executor")
    with _log_handlers_read_once(instance) as handlers:
        beside = _Beside(instance, handlers, find, evaluate)
        try:
            with (
                _without_engine_debug_lines(),
                StageWatcher(instance, find, steps, days, progress, per_day),
                execute() as result,
            ):
                if not result.success:
                    raise RunFailed(f"{BACKFILL_JOB} failed: {_failure(result)}")
                usage_run = result.run_id
        except BaseException:
            beside.finish(reraise=False)  # the backfill's failure is the one to report
            raise
        outcome = beside.finish()
    return usage_run, outcome if outcome is not None else evaluate(instance)


@contextlib.contextmanager
def _log_handlers_read_once(instance: dg.DagsterInstance) -> Iterator[Sequence[logging.Handler]]:
    """dagster.yaml's Python log handlers, read once while two runs share this process.

    Dagster reads them for every log manager it makes (a run's, a result's) through
    `logging.config.dictConfig`, which closes every handler in the process while holding logging's lock:
    against a thread emitting an event at that moment it deadlocks (seen: a run's result opened while the
    budget run logged). Until the block ends, the instance hands out the handlers read here."""
    handlers = instance.get_yaml_python_handlers()
    instance.get_yaml_python_handlers = lambda: handlers  # type: ignore[method-assign]
    try:
        yield handlers
    finally:
        del instance.get_yaml_python_handlers


class _Beside(threading.Thread):
    """Runs `evaluate` once the backfill run has succeeded at every step in `EVALUATION_READS`, on an
    instance of its own whose runs keep no compute logs: Dagster captures a run's stdout and stderr by
    redirecting the process's file descriptors, which two runs in one process would undo out of order."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        handlers: Sequence[logging.Handler],
        find: Callable[[], str | None],
        evaluate: Callable[[dg.DagsterInstance], Evaluated],
    ) -> None:
        super().__init__(name="cams-evaluate", daemon=True)
        self.find, self.evaluate, self.done = find, evaluate, threading.Event()
        self.instance, self.outcome, self.error = _without_compute_logs(instance, handlers), None, None
        if self.instance is not None:
            self.start()

    def run(self) -> None:
        assert self.instance is not None
        try:
            while not self.done.wait(0.5):
                run_id = self.find()
                if run_id is not None and _succeeded(self.instance, run_id) >= EVALUATION_READS:
                    self.outcome = self.evaluate(self.instance)
                    return
        except BaseException as exc:  # re-raised in the command's thread
            self.error = exc

    def finish(self, reraise: bool = True) -> Evaluated | None:
        """Wait for an evaluation under way; None when none started (do it now, after the backfill)."""
        self.done.set()
        if self.instance is None:
            return None
        self.join()
        self.instance.dispose()
        if self.error is not None and reraise:
            raise self.error
        return self.outcome


def _succeeded(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    return {r.step_key for r in records if r.step_key}


def _without_compute_logs(
    instance: dg.DagsterInstance, handlers: Sequence[logging.Handler]
) -> dg.DagsterInstance | None:
    """The same instance (storage, settings, Python log handlers) with compute logs off; None for an
    in-memory instance."""
    if instance.is_ephemeral:
        return None
    ref = instance.get_ref()._replace(
        compute_logs_data=ConfigurableClassData(
            "dagster._core.storage.noop_compute_log_manager", "NoOpComputeLogManager", "{}"
        )
    )
    twin = dg.DagsterInstance.from_ref(ref)
    twin.get_yaml_python_handlers = lambda: handlers  # type: ignore[method-assign]
    return twin


@contextlib.contextmanager
def _without_engine_debug_lines() -> Iterator[None]:
    """Keep the step processes' DEBUG lines off the terminal (they are in the run's log already).

    A step process announces itself (STEP_WORKER_STARTED) through Dagster's default console logger at
    DEBUG before the run's quiet logger config reaches it, on the stderr it inherits from this process.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as lines, os.fdopen(os.dup(saved), "wb", buffering=0) as out:
            for line in lines:
                if b" - dagster - DEBUG - " not in line:
                    out.write(line)

    thread = threading.Thread(target=pump, name="cams-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer here closes: the pump drains and ends
        os.close(saved)
        thread.join(timeout=0.5)  # a step process still alive (the forkserver) keeps the pipe open: no wait


def _failure(result: Any) -> str:
    """The failed step and the first line of its root cause (Dagster wraps it), and the run to look at."""
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            while err is not None and err.cause is not None:
                err = err.cause
            lines = err.message.strip().splitlines() if err is not None else []
            return f"{event.step_key}: {lines[0] if lines else 'failed'} (Dagster run {result.run_id})"
    return f"failed (Dagster run {result.run_id})"
