"""Schedules. The daily schedule settles complete days.

`build_schedule_from_partitioned_job` targets the newest partition; with end_offset=1 (today is a
partition so sensors can ingest same-day usage) that is the day that has just begun. So this
schedule asks for the days that just ended instead: yesterday, plus `trailing_days - 1` before it
to pick up late records (a re-run replaces a day, never duplicates it).
"""

from datetime import timedelta
from typing import Any

import dagster as dg


def build_daily_schedule(
    job: Any, partitions: dg.DailyPartitionsDefinition, trailing_days: int = 1
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_usage_schedule",
        job=job,
        cron_schedule="15 0 * * *",
        execution_timezone="UTC",
        description=f"00:15 UTC: settle the last {trailing_days} complete day(s) of usage, costs and rollups.",
    )
    def daily_usage_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        today = context.scheduled_execution_time.date()
        first = partitions.start.date()
        days = [today - timedelta(days=i) for i in range(1, trailing_days + 1)]
        return [
            dg.RunRequest(partition_key=d.isoformat(), run_key=f"schedule:{d.isoformat()}:{today.isoformat()}")
            for d in sorted(days)
            if d >= first
        ]

    return daily_usage_schedule
