"""The price book asset: LiteLLM snapshot + cams.yaml overrides into `model_cost_profiles` (SPEC §3)."""

import dagster as dg

from assets.table_meta import table_metadata
from cams.pricing import store as pricebook_store
from cams.warehouse import schema as t
from resources.pricing import PricingSource
from resources.warehouse import WarehouseResource


@dg.asset(
    group_name="pricing",
    # nightly, whatever changed: dated prices that take effect today enter the book at midnight
    automation_condition=dg.AutomationCondition.cron_tick_passed("0 0 * * *") & ~dg.AutomationCondition.in_progress(),
    kinds={"python", "sql"},
    owners=["team:finops"],
    description="Effective-dated price book: the dated versions of the LiteLLM price snapshot (the committed "
    "one from 1970, each `cams pricing refresh` or price-update webhook from its effective time; "
    "`price_versions`) with cams.yaml overrides, custom models and discounts, one row per model per "
    "validity window in `model_cost_profiles`, plus prices written through the Models API "
    "(`model_price_overrides`). Costs already computed keep their price_id; "
    "recompute a past range by backfilling cost_tracking.",
    metadata=table_metadata(t.model_cost_profiles),
)
def price_book(
    context: dg.AssetExecutionContext, pricing: dg.ResourceParam[PricingSource], warehouse: WarehouseResource
) -> dg.MaterializeResult:
    engine = warehouse.engine()
    book = pricing.build(engine)
    stored = pricebook_store.store(engine, book)
    sources: dict[str, int] = {}
    for e in book.entries():
        kind = e.source.split("+")[0]
        sources[kind] = sources.get(kind, 0) + 1
    context.log.info(f"price book: {stored} entries for {len(book.models)} models")
    return dg.MaterializeResult(
        metadata={
            "entries": stored,
            "models": len(book.models),
            "snapshot_version": str(book.meta.get("version")),
            "price_versions": dg.MetadataValue.json(list(book.meta.get("versions", []))),
            "snapshot_date": str(book.meta.get("date")),
            "snapshot_source": str(book.meta.get("source")),
            "entries_by_source": dg.MetadataValue.json(sources),
            "dagster/row_count": stored,
        }
    )


PRICE_BOOK_JOB = "price_book_job"


def definitions() -> dg.Definitions:
    """The pricing domain: the price book (reloaded at 00:00 UTC by its automation condition) and its job."""
    job = dg.define_asset_job(
        PRICE_BOOK_JOB, selection=[price_book.key], description="Reload the price book from the snapshot and cams.yaml."
    )
    return dg.Definitions(assets=[price_book], jobs=[job])
