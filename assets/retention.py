"""Retention: per-request rows older than `retention.days` leave the warehouse; rollups and summaries stay.

On PostgreSQL the per-request tables are partitioned by day (cams.warehouse.partitions), so a day leaves
as one `DROP TABLE` of its child, without dead rows or VACUUM debt; SQLite deletes by day.
"""

from datetime import timedelta

import dagster as dg

from assets.as_of import run_as_of
from cams.config import RetentionConfig
from cams.warehouse import schema as t
from cams.warehouse.partitions import DAY_PARTITIONED, drop_days_before
from resources.warehouse import WarehouseResource

RETENTION_JOB = "retention_job"
# the per-request tables, and the bad lines of those days
PRUNED = (*(t.metadata.tables[name] for name in DAY_PARTITIONED), t.quarantine)


def build_retention_asset(cfg: RetentionConfig) -> dg.AssetsDefinition:
    @dg.asset(
        name="warehouse_retention",
        group_name="operations",
        # nightly, after the 00:00 price book and the daily usage run
        automation_condition=dg.AutomationCondition.cron_tick_passed("0 3 * * *")
        & ~dg.AutomationCondition.in_progress(),
        kinds={"sql"},
        owners=["team:platform-data"],
        description=f"Drops per-request rows older than retention.days ({cfg.days}) as of the run's as-of: "
        "whole day partitions of relaycore_usage, auterity_spans, cost_tracking and cost_reconciliation on "
        "PostgreSQL (DELETE on SQLite), and the quarantined lines of those days. Rollups, reconciliation "
        "summaries, budgets and alerts are kept.",
    )
    def warehouse_retention(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        cutoff = run_as_of(context).date() - timedelta(days=cfg.days)
        engine = warehouse.engine()
        pruned = []
        for table in PRUNED:
            with engine.begin() as conn:  # one short transaction per table: the drop locks it
                pruned.append(drop_days_before(conn, table, cutoff))
        for p in pruned:
            context.log.info(f"{p.table}: {p.rows} rows before {cutoff} removed ({p.partitions_dropped} partitions)")
        return dg.MaterializeResult(
            metadata={
                "retention_days": cfg.days,
                "kept_from": cutoff.isoformat(),
                "rows_removed": sum(p.rows for p in pruned),
                "partitions_dropped": sum(p.partitions_dropped for p in pruned),
                "by_table": dg.MetadataValue.md(
                    "| table | rows removed | partitions dropped |\n|---|---|---|\n"
                    + "\n".join(f"| {p.table} | {p.rows:,} | {p.partitions_dropped} |" for p in pruned)
                ),
            }
        )

    return warehouse_retention


def definitions(cfg: RetentionConfig) -> dg.Definitions:
    """The operations domain: retention (run nightly by its automation condition, or by `retention_job`)."""
    asset = build_retention_asset(cfg)
    job = dg.define_asset_job(
        RETENTION_JOB,
        selection=[asset.key],
        description="Drop per-request rows older than retention.days (tag cams/as_of to prune as of another time).",
    )
    return dg.Definitions(assets=[asset], jobs=[job])
