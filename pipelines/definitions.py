"""Definitions: every domain's assets, checks, jobs, schedules and sensors, merged, from cams.yaml.

Each domain module in `assets/` owns its part (`definitions()`); this module only adds what spans them:
the resources, the executor, the sensor that evaluates the assets' automation conditions, and
`backfill_job` (every partitioned asset for a range of days in one run,
what `cams run` launches).
"""

from __future__ import annotations

import dagster as dg

from assets import budgets, costs, exports, ingestion, pricing, reconciliation, retention, selection
from assets.budgets import BUDGET_JOB
from assets.exports import EXPORT_JOB
from assets.ingestion import DAILY_JOB
from assets.pricing import PRICE_BOOK_JOB
from assets.retention import RETENTION_JOB
from assets.selection import SELECTION_JOB
from cams import config as cams_config
from pipelines.executors import executor_for, landed_apart
from resources import build_resources

BACKFILL_JOB = "backfill_job"
__all__ = [
    "BACKFILL_JOB",
    "BUDGET_JOB",
    "DAILY_JOB",
    "EXPORT_JOB",
    "PRICE_BOOK_JOB",
    "RETENTION_JOB",
    "SELECTION_JOB",
]


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """Complete days plus today (end_offset=1), so same-day usage can be ingested as it arrives."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)


def build_definitions(cfg: cams_config.CamsConfig | None = None, database_url: str | None = None) -> dg.Definitions:
    cfg = cfg or cams_config.load()
    url = database_url or cams_config.database_url()
    partitions = daily_partitions(cfg.partitions_start)
    usage_job = ingestion.usage_job(partitions)
    backfill_job = dg.define_asset_job(
        BACKFILL_JOB,
        selection=dg.AssetSelection.groups(*ingestion.USAGE_GROUPS, "exports"),
        partitions_def=partitions,
        description="Every partitioned asset for a range of days in one run (what `cams run` launches): "
        "the daily usage assets and the FOCUS export.",
    )
    return dg.Definitions.merge(
        pricing.definitions(),
        ingestion.definitions(cfg, partitions, usage_job, landed_apart(cfg.execution, url)),
        costs.definitions(partitions),
        reconciliation.definitions(partitions, cfg.reconciliation),
        exports.definitions(partitions),
        budgets.definitions(cfg.budgets, cfg.alerts, usage_job),
        selection.definitions(cfg.selection, cfg.preferences),
        retention.definitions(cfg.retention),
        dg.Definitions(
            jobs=[backfill_job],
            sensors=[
                dg.AutomationConditionSensorDefinition(
                    "automation_sensor",
                    target=dg.AssetSelection.all(),
                    minimum_interval_seconds=cfg.alerts.sensor_interval_s,
                    description="Evaluates the assets' automation conditions: the price book at 00:00 UTC, "
                    "model quality, the selection table, savings and calibration at 01:30 UTC, retention at 03:00 UTC.",
                )
            ],
            resources=build_resources(cfg, database_url),
            executor=executor_for(cfg.execution, url),
        ),
    )


defs = build_definitions()


def backfill_job() -> dg.JobDefinition:
    """`backfill_job` of this environment's cams.yaml and warehouse, as a function Dagster can find again in
    another process (`dg.reconstructable`): how `cams run` hands steps to other processes or machines."""
    return defs.resolve_job_def(BACKFILL_JOB)
