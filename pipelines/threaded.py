"""A Dagster executor that runs a run's ready steps side by side in threads of the run's own process.

Why: on PostgreSQL most of a day's step time is the database working (COPY, `INSERT … SELECT`, joins),
while the step's Python thread waits on the socket with the GIL released. Threads overlap those waits
with the next step's Python (Auterity's parsing beside RelayCore's costing) without paying what the
multiprocess executor pays per step: a child process that rebuilds the instance, the plan and the
resources, measured slower than in-process on two cores (docs/benchmarks.md). Dagster has no threaded
executor of its own (dagster-io/dagster#4041).

It is Dagster's in-process executor with the step loop widened: one execution context (one set of
resources, one log manager, one compute-log capture for the process, as in-process has), and up to
`max_concurrent` steps whose inputs are ready, each in a thread that runs Dagster's own step sequence
and hands its events to this loop through a queue. `ActiveExecution` decides what runs next and hooks
run here, as they do in-process. The warehouse resource's engine is shared: SQLAlchemy engines are
thread-safe, and each step checks out its own connections. Steps tagged as Python's work (the landings,
`PARSE_TAG`) run one at a time: two of them would only take turns at the GIL.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
from collections.abc import Iterator

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import (
    PlanExecutionContext,
    PlanOrchestrationContext,
    StepExecutionContext,
)
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.execute_plan import _trigger_hook, dagster_event_sequence_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor

from assets.ingestion.assets import PARSE_TAG

_DONE = object()


class ThreadedExecutor(Executor):
    def __init__(self, retries: RetryMode, max_concurrent: int):
        self._retries = retries
        self._max_concurrent = max_concurrent

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        keys = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in up to {self._max_concurrent} threads (pid: {os.getpid()})",
            EngineEventData.in_process(os.getpid(), keys),
        )
        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=functools.partial(_threaded_plan_iterator, max_concurrent=self._max_concurrent),
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
            ),
        )


def _threaded_plan_iterator(
    job_context: PlanExecutionContext, execution_plan: ExecutionPlan, max_concurrent: int
) -> Iterator[DagsterEvent]:
    """`inner_plan_execution_iterator` with up to `max_concurrent` steps in flight."""
    compute_logs = job_context.instance.compute_log_manager
    events: queue.Queue = queue.Queue()
    running: dict[str, tuple[threading.Thread, StepExecutionContext, list[DagsterEvent]]] = {}
    with contextlib.ExitStack() as stack:
        concurrency = stack.enter_context(InstanceConcurrencyContext(job_context.instance, job_context.dagster_run))
        active = stack.enter_context(
            ActiveExecution(
                execution_plan,
                retry_mode=job_context.retry_mode,
                max_concurrent=max_concurrent,
                tag_concurrency_limits=[{"key": key, "value": value, "limit": 1} for key, value in PARSE_TAG.items()],
                instance_concurrency_context=concurrency,
            )
        )
        log_key = compute_logs.build_log_key_for_run(job_context.run_id, create_compute_log_file_key())
        log_context = stack.enter_context(compute_logs.capture_logs(log_key))
        steps = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
        yield DagsterEvent.capture_logs(job_context, steps, log_key, log_context)
        stopping, failure = False, None
        while (not stopping and not active.is_complete) or running:
            if not stopping and active.check_for_interrupts():
                # a thread cannot be killed: start nothing more, let the running steps finish, then stop
                stopping = True
                active.mark_interrupted()
                yield DagsterEvent.engine_event(
                    job_context,
                    f"Interrupted: starting no more steps, waiting for {', '.join(running) or 'none'} to finish",
                    EngineEventData.interrupted(list(running)),
                )
            if not stopping:
                for step in active.get_steps_to_execute(limit=max_concurrent - len(running)):
                    step_context = job_context.for_step(step, active.get_known_state())
                    thread = threading.Thread(
                        target=_run_step, args=(events, step.key, step_context), name=f"step-{step.key}", daemon=True
                    )
                    running[step.key] = (thread, step_context, [])
                    thread.start()
                yield from active.concurrency_event_iterator(job_context)
            if not running:
                if not stopping:
                    active.sleep_til_ready()
                continue
            try:
                key, item = events.get(timeout=0.5)  # a timeout, so an interrupt is seen while steps run
            except queue.Empty:
                continue
            thread, step_context, step_events = running[key]
            if isinstance(item, BaseException):
                # escaped Dagster's own step handling: the run's error, as in-process, raised once the
                # other running steps are done with the resources
                failure = failure or item
                stopping = True
                continue
            if item is not _DONE:
                step_events.append(item)
                yield item
                active.handle_event(item)
                continue
            thread.join()
            del running[key]
            active.verify_complete(job_context, key)
            for event in active.plan_events_iterator(job_context):
                step_events.append(event)
                yield event
            yield from _trigger_hook(step_context, step_events)
        if failure is not None:
            raise failure
        if stopping:
            raise DagsterExecutionInterruptedError()


def _run_step(events: queue.Queue, key: str, step_context: StepExecutionContext) -> None:
    """Dagster's own step sequence (it turns the step's errors into failure events), in this thread."""
    try:
        for event in dagster_event_sequence_for_step(step_context):
            events.put((key, event))
    except BaseException as exc:  # handed to the run's thread, which raises it
        events.put((key, exc))
    finally:
        events.put((key, _DONE))


@dg.executor(
    name="threads",
    config_schema={"max_concurrent": dg.Field(int, default_value=2), "retries": get_retries_config()},
)
def threaded_executor(init_context: dg.InitExecutorContext) -> ThreadedExecutor:
    config = init_context.executor_config
    return ThreadedExecutor(RetryMode.from_config(config["retries"]), config["max_concurrent"])
