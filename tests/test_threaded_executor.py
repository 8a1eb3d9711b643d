"""The threads executor (pipelines/threaded.py) for real: Dagster runs through `execute_job`, whose
steps must meet at a barrier (only possible side by side), fail without stopping their neighbours, take
turns when tagged as Python's work, and stop starting steps on an interrupt. `cams run` on it is held to
the in-process and Celery totals in tests/test_distributed.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import dagster as dg

from assets.ingestion.assets import PARSE_TAG
from pipelines.threaded import threaded_executor

BARRIER = threading.Barrier(2)
WAIT_S = {"meet": 20.0}  # how long a step waits for the other at the barrier
SPANS: dict[str, tuple[float, float]] = {}


def _meet() -> str:
    BARRIER.wait(timeout=WAIT_S["meet"])  # raises BrokenBarrierError unless the other step is running at the same time
    return threading.current_thread().name


@dg.op
def left() -> str:
    return _meet()


@dg.op
def right() -> str:
    return _meet()


@dg.op
def boom() -> None:
    raise ValueError("boom")


@dg.op(ins={"upstream": dg.In(dg.Nothing)})
def after_boom() -> None:
    pass


@dg.op
def fine() -> int:
    return 1


def _timed(name: str, tags: dict[str, str]) -> dg.OpDefinition:
    @dg.op(name=name, tags=tags)
    def _op() -> None:
        t0 = time.monotonic()
        time.sleep(0.3)
        SPANS[name] = (t0, time.monotonic())

    return _op


parse_first = _timed("parse_first", {**PARSE_TAG, "dagster/priority": "1"})
parse_second = _timed("parse_second", PARSE_TAG)
in_database = _timed("in_database", {})


@dg.op
def interrupts() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C on `cams run` would
    time.sleep(1)


@dg.op(ins={"upstream": dg.In(dg.Nothing)})
def after_interrupt() -> None:
    SPANS["after_interrupt"] = (0.0, 0.0)


def meeting_job() -> dg.JobDefinition:
    @dg.job(executor_def=threaded_executor)
    def meeting():
        left()
        right()

    return meeting


def meeting_job_in_process() -> dg.JobDefinition:
    @dg.job(executor_def=dg.in_process_executor)
    def meeting_in_process():
        left()
        right()

    return meeting_in_process


def _failing(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    @dg.job(executor_def=executor)
    def failing():
        after_boom(boom())
        fine()

    return failing


def failing_job() -> dg.JobDefinition:
    return _failing(threaded_executor)


def failing_job_in_process() -> dg.JobDefinition:
    return _failing(dg.in_process_executor)


def turns_job() -> dg.JobDefinition:
    @dg.job(executor_def=threaded_executor)
    def turns():
        parse_second()
        parse_first()
        in_database()

    return turns


def interrupted_job() -> dg.JobDefinition:
    @dg.job(executor_def=threaded_executor)
    def interrupted():
        after_interrupt(interrupts())

    return interrupted


def _statuses(result: dg.ExecutionResult) -> dict[str, str]:
    out = {}
    for event in result.all_events:
        if event.step_key and event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            out[event.step_key] = event.event_type_value
    return out


def test_independent_steps_run_side_by_side_in_threads() -> None:
    with dg.instance_for_test() as instance:
        BARRIER.reset()
        with dg.execute_job(dg.reconstructable(meeting_job), instance=instance) as result:
            assert result.success
            names = {result.output_for_node("left"), result.output_for_node("right")}
        assert names == {"step-left", "step-right"}
        # the same job one step at a time cannot meet: the barrier is what proves the overlap
        BARRIER.reset()
        WAIT_S["meet"] = 1.0
        try:
            with dg.execute_job(dg.reconstructable(meeting_job_in_process), instance=instance) as result:
                assert not result.success
        finally:
            WAIT_S["meet"] = 20.0
            BARRIER.reset()


def test_a_failing_step_fails_the_run_but_not_its_neighbours() -> None:
    with dg.instance_for_test() as instance:
        with dg.execute_job(dg.reconstructable(failing_job_in_process), instance=instance) as result:
            in_process = _statuses(result)
        with dg.execute_job(dg.reconstructable(failing_job), instance=instance, raise_on_error=False) as result:
            assert not result.success
            assert _statuses(result) == in_process
            assert in_process["boom"] == "STEP_FAILURE" and in_process["fine"] == "STEP_SUCCESS"
            assert "after_boom" not in in_process  # not started: its input never came
            failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
            assert "boom" in failure.step_failure_data.error.to_string()
            run = instance.get_run_by_id(result.run_id)
            assert run.status == dg.DagsterRunStatus.FAILURE


def test_parsing_steps_take_turns_in_priority_order_beside_the_others() -> None:
    SPANS.clear()
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(dg.reconstructable(turns_job), instance=instance) as result,
    ):
        assert result.success
    (a0, a1), (b0, _), (c0, c1) = SPANS["parse_first"], SPANS["parse_second"], SPANS["in_database"]
    assert a1 <= b0  # one GIL-bound step at a time, the prioritised one first
    assert c0 < a1 and a0 < c1  # the untagged step ran beside the first


def test_an_interrupt_starts_no_more_steps() -> None:
    SPANS.clear()
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(dg.reconstructable(interrupted_job), instance=instance, raise_on_error=False) as result,
    ):
        assert not result.success
        assert "after_interrupt" not in SPANS
        messages = [e.message or "" for e in result.all_events]
        assert any("Interrupted: starting no more steps" in m for m in messages), messages
        assert instance.get_run_by_id(result.run_id).status in (
            dg.DagsterRunStatus.CANCELED,
            dg.DagsterRunStatus.FAILURE,
        )


@dg.op
def slow_fine() -> int:
    time.sleep(0.5)
    SPANS["slow_fine"] = (0.0, 0.0)
    return 2


def two_job() -> dg.JobDefinition:
    @dg.job(executor_def=threaded_executor)
    def two():
        fine()
        slow_fine()

    return two


def test_an_error_outside_the_step_fails_the_run_after_its_neighbours(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pipelines.threaded

    real = pipelines.threaded.dagster_event_sequence_for_step

    def broken(step_context):  # type: ignore[no-untyped-def]
        if step_context.step.key == "fine":
            raise RuntimeError("the framework broke")
        return real(step_context)

    monkeypatch.setattr(pipelines.threaded, "dagster_event_sequence_for_step", broken)
    SPANS.clear()
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(dg.reconstructable(two_job), instance=instance, raise_on_error=False) as result,
    ):
        assert not result.success
        assert "slow_fine" in SPANS  # the neighbour finished before the run stopped
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        assert "the framework broke" in str(failure.event_specific_data)
