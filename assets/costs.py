"""Cost assets: per-request cost_tracking and daily rollups (SPEC §3, §4)."""

import dagster as dg
from sqlalchemy import Integer, func

from assets.gx_checks import check_result, expect
from assets.per_partition import day_progress, report
from assets.table_meta import table_metadata
from cams.costing import cost_partition, priced_rows, rollup_partition
from cams.pricing import store as pricebook_store
from cams.warehouse import schema as t
from cams.warehouse.per_day import per_day
from resources.pricing import PricingSource
from resources.warehouse import WarehouseResource

OWNERS = ["team:finops"]
COST_NOTES = {
    "cost_usd": "price book cost; NULL when unpriced",
    "charged_usd": "RelayCore's charge",
    "unpriced": "no price in force for the model at the request time",
    "price_id": "model_cost_profiles row used",
}

COST_EXPECTATIONS = [
    expect("ExpectColumnValuesToBeBetween", "cost_usd", min_value=0),
    expect("ExpectColumnValuesToBeBetween", "input_tokens", min_value=0),
    expect("ExpectColumnValuesToNotBeNull", "price_id"),
]


def build_cost_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="cost_tracking",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["relaycore_usage", "price_book"],
        group_name="costs",
        kinds={"python", "pandas", "sql"},
        owners=OWNERS,
        description="Per-request cost from the price book entry in force at each request's timestamp "
        "(LiteLLM field semantics: cache reads/writes, reasoning, above-200k/272k tiers, service "
        "tiers), RelayCore's charge beside it, unpriced models flagged (never costed as 0). Each scope's "
        "spend per quarter hour goes to spend_quarter_hours in the same transaction: what budgets read.",
        metadata=table_metadata(t.cost_tracking, COST_NOTES),
        check_specs=[
            dg.AssetCheckSpec(
                "cost_non_negative",
                asset="cost_tracking",
                blocking=True,
                description="GX: costs >= 0, token counts >= 0, every priced row names its price",
            ),
            dg.AssetCheckSpec(
                "unpriced_share",
                asset="cost_tracking",
                description="warns when any request has no price (add an override)",
            ),
        ],
    )
    def cost_tracking(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, pricing: dg.ResourceParam[PricingSource]
    ) -> dg.MaterializeResult:
        window = context.partition_time_window
        engine = warehouse.engine()
        try:
            book = pricebook_store.load(engine)
        except pricebook_store.PriceBookMissing:
            # a fresh warehouse (the first sensor-launched run): load the configured book, as price_book would
            context.log.warning("model_cost_profiles is empty: loading the configured price book first")
            pricebook_store.store(engine, pricing.build(engine))
            book = pricebook_store.load(engine)
        first, last = window.start.date(), window.end.date()
        summary = cost_partition(engine, first, last, book, context.run_id, day_progress(context))
        ct = t.cost_tracking
        days = per_day(
            engine,
            ct,
            first,
            last,
            {
                "dagster/row_count": func.count(),
                "cost_usd": func.coalesce(func.sum(ct.c.cost_usd), 0),
                "relaycore_charged_usd": func.coalesce(func.sum(ct.c.charged_usd), 0),
                "unpriced_requests": func.coalesce(func.sum(func.cast(ct.c.unpriced, Integer)), 0),
            },
        )
        for figures in days.values():
            figures["charge_minus_price_book_usd"] = round(
                float(figures["relaycore_charged_usd"]) - float(figures["cost_usd"]), 10
            )
        return dg.MaterializeResult(
            metadata=report(
                context,
                days,
                {"price_book_version": str(book.meta.get("version"))},
                totals={
                    "unpriced_models": dg.MetadataValue.json(summary.unpriced_models),
                    "top_models_usd": dg.MetadataValue.md(
                        "| model | cost USD |\n|---|---|\n"
                        + "\n".join(f"| {m} | {v:.4f} |" for m, v in summary.top_models)
                    ),
                },
            ),
            check_results=[
                check_result(
                    "cost_non_negative",
                    engine,
                    priced_rows(first, last, sorted({e.column for e in COST_EXPECTATIONS})),
                    COST_EXPECTATIONS,
                ),
                dg.AssetCheckResult(
                    check_name="unpriced_share",
                    passed=summary.unpriced_requests == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "unpriced_requests": summary.unpriced_requests,
                        "models": dg.MetadataValue.json(summary.unpriced_models),
                    },
                ),
            ],
        )

    @dg.asset(
        name="cost_daily_rollups",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["cost_tracking"],
        group_name="costs",
        kinds={"sql"},
        owners=OWNERS,
        description="cost_tracking summed per day × org × team × user × model × provider × task type, in SQL: "
        "requests, errors, unpriced requests, tokens, price-book cost and RelayCore charge.",
        metadata=table_metadata(t.cost_daily_rollups),
    )
    def cost_daily_rollups(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        window = context.partition_time_window
        engine = warehouse.engine()
        first, last = window.start.date(), window.end.date()
        rollup_partition(engine, first, last)
        r = t.cost_daily_rollups
        days = per_day(
            engine,
            r,
            first,
            last,
            {"dagster/row_count": func.count(), "requests": func.coalesce(func.sum(r.c.requests), 0)},
        )
        return dg.MaterializeResult(metadata=report(context, days, observe=False))

    return [cost_tracking, cost_daily_rollups]


def definitions(partitions: dg.PartitionsDefinition) -> dg.Definitions:
    """The costs domain: every request priced, and the daily rollups (run by ingestion's usage job)."""
    return dg.Definitions(assets=build_cost_assets(partitions))
