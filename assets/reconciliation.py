"""Reconciliation asset: RelayCore against Auterity and the price book, per request, per day (SPEC §4)."""

import dagster as dg
from sqlalchemy import case, func

from assets.per_partition import day_progress, report
from assets.table_meta import table_metadata
from cams.config import ReconciliationConfig
from cams.pricing import store as pricebook_store
from cams.reconcile import CATEGORIES, Tolerances, reconcile_partition
from cams.warehouse import schema as t
from cams.warehouse.per_day import per_day
from resources.warehouse import WarehouseResource


def build_reconciliation_assets(
    partitions: dg.PartitionsDefinition, settings: ReconciliationConfig
) -> list[dg.AssetsDefinition]:
    tol = Tolerances.from_config(settings)
    warn_share = settings.at_risk_warn_share

    @dg.asset(
        name="cost_reconciliation",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        # the landed requests priced as costing prices them (cams.costing.costed_requests): not cost_tracking,
        # so on the threads executor it runs beside costing
        deps=["relaycore_usage", "auterity_spans", "price_book"],
        group_name="reconciliation",
        kinds={"python", "pandas", "sql"},
        owners=["team:finops"],
        description="Every request of a day in exactly one category — matched, missing_in_auterity, "
        "missing_in_relaycore, token_mismatch, model_mismatch, cost_mismatch (RelayCore's charge against the "
        f"price book beyond max(${tol.absolute_usd}, {tol.relative:.0%})) or unpriced — with the dollars at "
        "risk; `cost_reconciliation` per request, `cost_reconciliation_summary` per day × org × model × "
        "category, and a `cost_sync_history` row per run.",
        metadata=table_metadata(t.cost_reconciliation),
        check_specs=[
            dg.AssetCheckSpec(
                "dollars_at_risk_share",
                asset="cost_reconciliation",
                description=f"warns when dollars at risk exceed {warn_share:.0%} of price-book spend",
            )
        ],
    )
    def cost_reconciliation(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        window = context.partition_time_window
        engine = warehouse.engine()
        book = pricebook_store.load(engine)
        s = reconcile_partition(
            engine, window.start.date(), window.end.date(), book, tol, context.run_id, day_progress(context)
        )
        share = s.at_risk_total / s.spend_usd if s.spend_usd else 0.0
        table = "| category | requests | at risk USD |\n|---|---|---|\n" + "\n".join(
            f"| {c} | {s.counts[c]} | {s.at_risk_usd[c]:.4f} |" for c in CATEGORIES
        )
        rs = t.cost_reconciliation_summary
        days = per_day(
            engine,
            rs,
            window.start.date(),
            window.end.date(),
            {
                "dagster/row_count": func.coalesce(func.sum(rs.c.requests), 0),
                **{
                    f"count_{c}": func.coalesce(func.sum(case((rs.c.category == c, rs.c.requests), else_=0)), 0)
                    for c in CATEGORIES
                },
                "dollars_at_risk": func.coalesce(func.sum(rs.c.at_risk_usd), 0),
                "price_book_spend_usd": func.coalesce(func.sum(rs.c.cost_usd), 0),
            },
        )
        for figures in days.values():
            spend = float(figures["price_book_spend_usd"])
            figures["at_risk_share"] = round(float(figures["dollars_at_risk"]) / spend, 6) if spend else 0.0
        return dg.MaterializeResult(
            metadata=report(
                context,
                days,
                totals={"by_category": dg.MetadataValue.md(table), "top_orgs_at_risk": dg.MetadataValue.json(s.by_org)},
            ),
            check_results=[
                dg.AssetCheckResult(
                    check_name="dollars_at_risk_share",
                    passed=share <= warn_share,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "at_risk_usd": round(s.at_risk_total, 6),
                        "share": round(share, 6),
                        "threshold": warn_share,
                    },
                )
            ],
        )

    return [cost_reconciliation]


def definitions(partitions: dg.PartitionsDefinition, settings: ReconciliationConfig) -> dg.Definitions:
    """The reconciliation domain: RelayCore against Auterity and the price book (run by the usage job)."""
    return dg.Definitions(assets=build_reconciliation_assets(partitions, settings))
