"""Selection assets: model quality from Auterity, and the published model selection table (SPEC §6)."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from cams import pricebook_store
from cams.selection.quality import QualitySettings, quality_stats
from cams.selection.store import load_stats, publish, spans_for_stats, store_stats
from cams.selection.table import SelectionSettings, build_table
from resources.warehouse import WarehouseResource


def build_selection_assets(selection: dict[str, Any]) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="model_quality_stats",
        deps=["auterity_spans"],
        group_name="selection",
        kinds={"python", "pandas", "sql"},
        owners=["team:platform-ml"],
        description="Per model and task type over the last 30 days of Auterity spans: mean quality score shrunk "
        "toward the configured prior, success rate, p50/p95 latency, typical token profile, sample size.",
        metadata={"table": "model_quality_stats"},
    )
    def model_quality_stats(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        engine = warehouse.engine()
        stats = quality_stats(spans_for_stats(engine, datetime.now(UTC)), QualitySettings.from_config(selection))
        n = store_stats(engine, stats)
        return dg.MaterializeResult(
            metadata={"dagster/row_count": n, "models": int(stats["model"].nunique()) if n else 0}
        )

    @dg.asset(
        name="model_selection_table",
        deps=["model_quality_stats", "price_book"],
        group_name="selection",
        kinds={"python", "sql"},
        owners=["team:platform-ml"],
        description="The versioned selection table: per task type × quality tier (economy, standard, premium), the "
        "qualifying models cheapest first with expected cost, quality, success rate, p95 latency and a fallback "
        "chain (another provider first). Budget states map onto tiers at lookup: downgrade = one tier down, "
        "block = 402. A new version is one insert; `cams serve` picks it up without restart.",
        metadata={"table": "model_selection_tables"},
    )
    def model_selection_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        engine = warehouse.engine()
        stats = load_stats(engine)
        seen = sorted(set(stats["model"])) if len(stats) else []
        settings = SelectionSettings.from_config(selection, seen)
        tasks = sorted(set(stats["task_type"])) if len(stats) else list(selection.get("task_types") or ["chat"])
        table = build_table(stats, pricebook_store.load(engine), settings, datetime.now(UTC), tasks)
        version = publish(engine, table)
        preview = "| task | tier | chosen | next |\n|---|---|---|---|\n" + "\n".join(
            f"| {r['task_type']} | {r['tier']} | {r['candidates'][0]['model'] if r['candidates'] else '—'} | "
            f"{', '.join(r['candidates'][0]['fallback_chain']) if r['candidates'] else ''} |"
            for r in table["rows"]
        )
        return dg.MaterializeResult(
            metadata={
                "version": version,
                "rows": len(table["rows"]),
                "models": len(table["models"]),
                "table": dg.MetadataValue.md(preview),
            }
        )

    return [model_quality_stats, model_selection_table]
