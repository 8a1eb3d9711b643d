"""The ingestion domain: RelayCore usage and Auterity spans landed per UTC day, the usage job that lands,
costs and reconciles a day, the sensors that launch it when usage arrives and the schedule that settles
the last complete days."""

from __future__ import annotations

import dagster as dg

from assets.ingestion.assets import build_ingestion_assets
from assets.ingestion.schedules import build_daily_schedule
from assets.ingestion.sensors import (
    build_drop_files_sensor,
    build_otlp_traces_sensor,
    build_relaycore_api_sensor,
    build_webhook_events_sensor,
)
from cams.config import CamsConfig

DAILY_JOB = "daily_usage_job"
USAGE_GROUPS = ("ingestion", "costs", "reconciliation")  # what a usage day runs: land, cost, reconcile


def usage_job(partitions: dg.PartitionsDefinition) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.groups(*USAGE_GROUPS),
        partitions_def=partitions,
        description="Land both sources for the partition's days, cost every request, roll up, reconcile.",
    )


def definitions(
    cfg: CamsConfig,
    partitions: dg.DailyPartitionsDefinition,
    job: dg.UnresolvedAssetJobDefinition,
    apart: frozenset[str] = frozenset(),
) -> dg.Definitions:
    """`apart`: the sources that land in a process of their own (pipelines.executors.landed_apart)."""
    interval = cfg.alerts.sensor_interval_s
    return dg.Definitions(
        assets=build_ingestion_assets(partitions, apart),
        jobs=[job],
        schedules=[build_daily_schedule(job, partitions, cfg.reconciliation.trailing_days)],
        sensors=[
            build_drop_files_sensor(job, partitions, interval),
            build_relaycore_api_sensor(job, partitions, interval),
            build_webhook_events_sensor(job, partitions, interval),
            build_otlp_traces_sensor(job, partitions, interval),
        ],
    )
