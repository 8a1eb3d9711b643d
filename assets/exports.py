"""Exports other tools read: cost tracking as FinOps FOCUS 1.2 files, one per day."""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from assets.per_partition import report
from cams import focus
from cams.pricing import store as pricebook_store
from resources.warehouse import WarehouseResource

FOCUS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            c,
            "decimal"
            if c in focus.MONEY or c.endswith("Quantity")
            else "timestamp"
            if c.endswith(("PeriodStart", "PeriodEnd"))
            else "string",
            description="FOCUS 1.2" if not c.startswith("x_") else "CAMS extension",
        )
        for c in focus.COLUMNS
    ]
)


def export_dir() -> Path:
    return Path(os.environ.get("CAMS_EXPORT_DIR", ".cams/exports")) / "focus"


def build_export_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="focus_export",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["cost_daily_rollups", "price_book"],
        group_name="exports",
        kinds={"python", "csv", "parquet"},
        owners=["team:finops"],
        description="Each day's spend as FinOps FOCUS 1.2 rows (CSV and Parquet in $CAMS_EXPORT_DIR/focus, "
        "default .cams/exports/focus): one row per day × org × team × user × task × model × token kind, "
        "BilledCost from RelayCore's charge, EffectiveCost and ListCost from the price book, tokens as the "
        "pricing unit, org/team/user/task as Tags — for FinOps tools beside cloud spend (docs/focus.md).",
        metadata={"dagster/column_schema": FOCUS_SCHEMA, "format": "FOCUS 1.2"},
        check_specs=[
            dg.AssetCheckSpec(
                "focus_rules",
                asset="focus_export",
                blocking=True,
                description="mandatory columns non-null; ListCost = ListUnitPrice × PricingQuantity",
            )
        ],
    )
    def focus_export(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        window = context.partition_time_window
        engine = warehouse.engine()
        book = pricebook_store.load(engine)
        out = export_dir()
        out.mkdir(parents=True, exist_ok=True)
        first, last = window.start.date(), window.end.date() - timedelta(days=1)
        rows = focus.export(engine, first, last, book)
        problems = focus.violations(rows)
        files = []
        days: dict[str, dict[str, float | int]] = {}
        on_day = rows["ChargePeriodStart"].map(lambda s: s.date()) if len(rows) else rows["ChargePeriodStart"]
        day = first
        while day <= last:
            part = rows[on_day == day]
            days[day.isoformat()] = {
                "dagster/row_count": len(part),
                "billed_usd": round(float(sum(part["BilledCost"], 0)), 10),
                "effective_usd": round(float(sum(part["EffectiveCost"], 0)), 10),
            }
            for fmt in ("csv", "parquet"):
                path = out / f"focus-{day}.{fmt}"
                focus.write(part, str(path), fmt)
                files.append(str(path))
            day += timedelta(days=1)
        return dg.MaterializeResult(
            metadata=report(
                context,
                days,
                {"files": dg.MetadataValue.json(files[-6:]), "path": dg.MetadataValue.path(str(out))},
                observe=False,
            ),
            check_results=[
                dg.AssetCheckResult(
                    check_name="focus_rules",
                    passed=not problems,
                    metadata={"problems": dg.MetadataValue.json(problems)},
                )
            ],
        )

    return [focus_export]


EXPORT_JOB = "focus_export_job"


def build_export_schedule(job: Any) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="focus_export_schedule",
        job=job,
        cron_schedule="0 1 * * *",
        execution_timezone="UTC",
        description="01:00 UTC: FOCUS files for yesterday, after the 00:15 usage run settled it.",
    )
    def focus_export_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
        return dg.RunRequest(run_key=f"focus:{day}", partition_key=day)

    return focus_export_schedule


def definitions(partitions: dg.PartitionsDefinition) -> dg.Definitions:
    """The exports domain: the day's FOCUS files, their job and the schedule that writes yesterday's."""
    assets = build_export_assets(partitions)
    job = dg.define_asset_job(
        EXPORT_JOB,
        selection=[a.key for a in assets],
        partitions_def=partitions,
        description="Write the day's FinOps FOCUS 1.2 files from the rollups (after daily_usage_job).",
    )
    return dg.Definitions(assets=assets, jobs=[job], schedules=[build_export_schedule(job)])
