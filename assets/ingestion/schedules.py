"""Schedules. The daily schedule settles the last complete days.

`build_schedule_from_partitioned_job` targets the newest partition; with end_offset=1 (today is a
partition so sensors can ingest same-day usage) that is the day that has just begun. So this
schedule asks for the days that just ended instead: the last `trailing_days` complete days
(cams.yaml `reconciliation.trailing_days`, default 3) as one range run, so records that arrive late
change their own day (a re-run replaces a day, never duplicates it).
"""

from datetime import timedelta
from typing import Any

import dagster as dg

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def build_daily_schedule(
    job: Any, partitions: dg.DailyPartitionsDefinition, trailing_days: int = 3
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_usage_schedule",
        job=job,
        cron_schedule="15 0 * * *",
        execution_timezone="UTC",
        description=f"00:15 UTC: re-materialize the last {trailing_days} complete day(s) in one run: "
        "late records land on their own day, reconciliation is re-checked.",
    )
    def daily_usage_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        today = context.scheduled_execution_time.date()
        first = max(partitions.start.date(), today - timedelta(days=trailing_days))
        last = today - timedelta(days=1)
        if last < first:
            return []
        return [
            dg.RunRequest(
                run_key=f"schedule:{first.isoformat()}..{last.isoformat()}",
                tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
            )
        ]

    return daily_usage_schedule
