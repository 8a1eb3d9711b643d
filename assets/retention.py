"""Retention: per-request rows older than `retention.days` leave the warehouse; rollups and summaries stay.

On PostgreSQL the per-request tables are partitioned by day (cams.warehouse.partitions), so a day leaves
as one `DROP TABLE` of its child, without dead rows or VACUUM debt; SQLite deletes by day.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.as_of import run_as_of
from cams.config import RetentionConfig
from cams.warehouse import schema as t
from cams.warehouse.partitions import DAY_PARTITIONED, Pruned, drop_days_before
from cams.warehouse.retention import delete_before
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
        "PostgreSQL (DELETE on SQLite), the quarantined lines and the quality stats' kept counts of those days, "
        "and the lookup service's selection history, selection explanations and token estimates made before "
        "then (in batches). Rollups, "
        "reconciliation summaries, budgets, alerts and the table versions' own explanations are kept.",
    )
    def warehouse_retention(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        cutoff = run_as_of(context).date() - timedelta(days=cfg.days)
        engine = warehouse.engine()
        pruned = []
        for table in PRUNED:
            with engine.begin() as conn:  # one short transaction per table: the drop locks it
                if table is t.auterity_spans:
                    # the quality stats' kept counts of those days leave with their spans (in the order a
                    # quality run takes the two tables: kept counts first)
                    pruned.append(drop_days_before(conn, t.quality_day_values, cutoff))
                pruned.append(drop_days_before(conn, table, cutoff))
        # the lookup service's per-selection rows (not day-partitioned: by time, in batches); the table
        # rows' explanations stay with their versions
        since = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)
        mh, ex, te = t.model_selection_history, t.model_selection_explanations, t.token_estimates
        for table, column, where in (
            (mh, mh.c.selected_at, None),
            (ex, ex.c.created_at, ex.c.kind == "selection"),
            (te, te.c.estimated_at, None),
        ):
            pruned.append(Pruned(table.name, delete_before(engine, table, column, since, where), 0))
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
