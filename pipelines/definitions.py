"""Definitions: the asset graph, jobs, schedules and sensors, built from cams.yaml (SPEC §9)."""

from __future__ import annotations

import dagster as dg

from assets.budgets import build_budget_assets
from assets.costs import build_cost_assets
from assets.exports import build_export_assets
from assets.ingestion import build_ingestion_assets
from assets.pricing import price_book
from assets.reconciliation import build_reconciliation_assets
from assets.selection import build_selection_assets
from cams import config as cams_config
from pipelines.schedules import build_daily_schedule, build_export_schedule
from pipelines.sensors import (
    build_budget_after_usage_sensor,
    build_drop_files_sensor,
    build_otlp_traces_sensor,
    build_relaycore_api_sensor,
    build_webhook_events_sensor,
)
from resources import build_resources

DAILY_JOB = "daily_usage_job"
PRICE_BOOK_JOB = "price_book_job"
BUDGET_JOB = "budget_job"
SELECTION_JOB = "selection_job"
EXPORT_JOB = "focus_export_job"
BACKFILL_JOB = "backfill_job"


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """Complete days plus today (end_offset=1), so same-day usage can be ingested as it arrives."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)


def build_definitions(cfg: cams_config.CamsConfig | None = None, database_url: str | None = None) -> dg.Definitions:
    cfg = cfg or cams_config.load()
    partitions = daily_partitions(cfg.partitions_start)
    ingestion = build_ingestion_assets(partitions)
    costs = build_cost_assets(partitions)
    recon = build_reconciliation_assets(partitions, cfg.reconciliation)
    exports = build_export_assets(partitions)
    budgets = build_budget_assets(cfg.budgets, cfg.alerts)
    selection = build_selection_assets(cfg.selection)
    interval = cfg.alerts.sensor_interval_s
    daily_job = dg.define_asset_job(
        DAILY_JOB,
        selection=[a.key for a in (*ingestion, *costs, *recon)],
        partitions_def=partitions,
        description="Land both sources for the partition's days, cost every request, roll up, reconcile.",
    )
    budget_job = dg.define_asset_job(
        BUDGET_JOB,
        selection=[a.key for a in budgets],
        description="Sync budgets, evaluate them as of now (or the cams/as_of tag), fire and deliver alerts.",
    )
    selection_job = dg.define_asset_job(
        SELECTION_JOB,
        selection=[a.key for a in selection],
        description="Recompute model quality and publish a new selection table version.",
    )
    export_job = dg.define_asset_job(
        EXPORT_JOB,
        selection=[a.key for a in exports],
        partitions_def=partitions,
        description="Write the day's FinOps FOCUS 1.2 files from the rollups (after daily_usage_job).",
    )
    backfill_job = dg.define_asset_job(
        BACKFILL_JOB,
        selection=[a.key for a in (*ingestion, *costs, *recon, *exports)],
        partitions_def=partitions,
        description="Every partitioned asset for a range of days in one run (what `cams run` launches): "
        "the daily usage assets and the FOCUS export.",
    )
    price_job = dg.define_asset_job(
        PRICE_BOOK_JOB, selection=[price_book.key], description="Reload the price book from the snapshot and cams.yaml."
    )
    return dg.Definitions(
        assets=[price_book, *ingestion, *costs, *recon, *exports, *budgets, *selection],
        jobs=[daily_job, price_job, budget_job, selection_job, export_job, backfill_job],
        schedules=[
            build_daily_schedule(daily_job, partitions, cfg.reconciliation.trailing_days),
            dg.ScheduleDefinition(
                name="selection_schedule",
                job=selection_job,
                cron_schedule="30 1 * * *",
                description="Nightly: new quality stats and a new selection table version.",
            ),
            dg.ScheduleDefinition(
                name="budget_schedule",
                job=budget_job,
                cron_schedule="5 * * * *",
                description="Hourly: forecasts move with the clock even when no usage arrives.",
            ),
            build_export_schedule(export_job),
            dg.ScheduleDefinition(
                name="price_book_schedule",
                job=price_job,
                cron_schedule="0 0 * * *",
                description="Nightly reload of the price book.",
            ),
        ],
        sensors=[
            build_drop_files_sensor(daily_job, partitions, interval),
            build_budget_after_usage_sensor(daily_job, budget_job, interval),
            build_relaycore_api_sensor(daily_job, partitions, interval),
            build_webhook_events_sensor(daily_job, partitions, interval),
            build_otlp_traces_sensor(daily_job, partitions, interval),
        ],
        resources=build_resources(cfg, database_url),
        executor=dg.in_process_executor,
    )


defs = build_definitions()
