"""The evaluation time of a run ("as-of"), never the wall clock when the run says otherwise (SPEC §6, §8).

Every evaluation (budgets, quality stats, the selection table, savings, calibration, exports) asks
`run_as_of`, so a backfill of last quarter gives last quarter's answers.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from cams.sources.timeutil import parse_rfc3339

AS_OF_TAG = "cams/as_of"
# Dagster's tag on a run a schedule launched (dagster._core.storage.tags.SCHEDULED_EXECUTION_TIME_TAG)
SCHEDULED_TAG = ".dagster/scheduled_execution_time"


def end_of_days(last_day: date, now: datetime | None = None) -> datetime:
    """The last instant of `last_day` (UTC), or now when that is still to come."""
    end = datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC) + timedelta(days=1, microseconds=-1)
    return min(end, now or datetime.now(UTC))


def run_as_of(context: dg.AssetExecutionContext) -> datetime:
    """The run's `cams/as_of` tag; else the end of its partition range (capped at now); else the tick
    of the schedule that launched it; else now (a sensor or a person asking about the present)."""
    tags = context.run.tags
    if tag := tags.get(AS_OF_TAG):
        return parse_rfc3339(tag, AS_OF_TAG)
    if context.has_partition_key_range:
        return end_of_days(context.partition_time_window.end.date() - timedelta(days=1))
    if tick := tags.get(SCHEDULED_TAG):
        return parse_rfc3339(tick, SCHEDULED_TAG)
    return datetime.now(UTC)
