"""Selection assets: model quality from Auterity, and the published model selection table (SPEC §6)."""

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg
from sqlalchemy import true

from assets.as_of import run_as_of
from assets.table_meta import table_metadata
from cams.config import SelectionConfig
from cams.estimation.calibration import MIN_SAMPLES
from cams.estimation.store import calibrate
from cams.pricing import store as pricebook_store
from cams.selection.preferences import Preference
from cams.selection.quality import QualitySettings
from cams.selection.savings import COUNTERFACTUALS, savings
from cams.selection.store import (
    STATS_WINDOW_DAYS,
    latest,
    load_stats,
    publish,
    quality_stats_for,
    store_stats,
    sync_yaml_preferences,
)
from cams.selection.table import SelectionSettings, build_table, dark_rows
from cams.warehouse import schema as t
from cams.warehouse.db import replace_rows
from resources.warehouse import WarehouseResource

# Nightly after the 00:15 usage run settled yesterday: a new table version whether or not spans arrived
# (the evaluation moves with the clock); never a second run while one is in flight.
NIGHTLY = dg.AutomationCondition.cron_tick_passed("30 1 * * *") & ~dg.AutomationCondition.in_progress()


def build_selection_assets(
    selection: SelectionConfig, preferences: Sequence[Preference] = ()
) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="model_quality_stats",
        automation_condition=NIGHTLY,
        deps=["auterity_spans"],
        group_name="selection",
        kinds={"python", "pandas", "sql"},
        owners=["team:platform-ml"],
        description="Per model and task type over the last 30 days of Auterity spans: mean quality score shrunk "
        "toward the configured prior, success rate, p50/p95 latency, typical token profile, sample size.",
        metadata=table_metadata(t.model_quality_stats),
    )
    def model_quality_stats(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        engine = warehouse.engine()
        as_of = run_as_of(context)
        stats, reads = quality_stats_for(engine, as_of, QualitySettings.from_config(selection))
        n = store_stats(engine, stats)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": n,
                "models": int(stats["model"].nunique()) if n else 0,
                "as_of": as_of.isoformat(),
                "window": f"{(as_of - timedelta(days=STATS_WINDOW_DAYS)).date()} .. {as_of.date()}",
                # days whose kept counts were read, against days whose spans were counted in this run
                **reads,
            }
        )

    @dg.asset(
        name="model_selection_table",
        automation_condition=NIGHTLY,
        deps=["model_quality_stats", "price_book"],
        group_name="selection",
        kinds={"python", "sql"},
        owners=["team:platform-ml"],
        description="The versioned selection table: per task type × quality tier (economy, standard, premium), the "
        "qualifying models cheapest first with expected cost, quality, success rate, p95 latency and a fallback "
        "chain (another provider first). Budget states map onto tiers at lookup: downgrade = one tier down, "
        "block = 402. A new version is one insert; `cams serve` picks it up without restart. A version that "
        "would stop answering a task × tier the served one answers is refused (the service keeps the last good "
        "version) unless the data says no model qualifies. The preferences in cams.yaml (allowed and excluded "
        "models and providers, a preferred provider, per org and team) are synced beside it; selection applies "
        "them at lookup with those written through the Preferences API.",
        metadata=table_metadata(t.model_selection_tables),
        check_specs=[
            dg.AssetCheckSpec(
                "no_task_tier_goes_dark",
                asset="model_selection_table",
                blocking=True,
                description="every task × tier the served version answers is still answered, unless observed "
                "models all fail a floor (then the metadata says which failed which)",
            )
        ],
    )
    def model_selection_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        engine = warehouse.engine()
        synced = sync_yaml_preferences(engine, preferences)
        stats = load_stats(engine)
        seen = sorted(set(stats["model"])) if len(stats) else []
        settings = SelectionSettings.from_config(selection, seen)
        tasks = sorted(set(stats["task_type"])) if len(stats) else list(selection.task_types)
        as_of = run_as_of(context)
        table = build_table(stats, pricebook_store.load(engine), settings, as_of, tasks)
        current = latest(engine)
        dark = dark_rows(current[1] if current else None, table)
        refused = [d for d in dark if not d["evidence"]]
        check_meta = {
            "dark_rows": dg.MetadataValue.json(dark),
            "refused_for": dg.MetadataValue.json(
                [f"{d['task_type']}/{d['tier']}: {d['binding_constraint']}" for d in refused]
            ),
        }
        if refused and current is not None:
            context.log.error(
                f"selection table refused: {len(refused)} task × tier row(s) would answer no_candidate without "
                f"evidence ({', '.join(d['task_type'] + '/' + d['tier'] for d in refused[:5])}); "
                f"version {current[0]} stays served"
            )
            return dg.MaterializeResult(
                metadata={"published": False, "version": current[0], "as_of": as_of.isoformat(), "preferences": synced},
                check_results=[
                    dg.AssetCheckResult(check_name="no_task_tier_goes_dark", passed=False, metadata=check_meta)
                ],
            )
        version = publish(engine, table, as_of=as_of)
        preview = "| task | tier | chosen | next |\n|---|---|---|---|\n" + "\n".join(
            f"| {r['task_type']} | {r['tier']} | {r['candidates'][0]['model'] if r['candidates'] else '—'} | "
            f"{', '.join(r['candidates'][0]['fallback_chain']) if r['candidates'] else ''} |"
            for r in table["rows"]
        )
        return dg.MaterializeResult(
            metadata={
                "published": True,
                "version": version,
                "as_of": as_of.isoformat(),
                "rows": len(table["rows"]),
                "models": len(table["models"]),
                "table": dg.MetadataValue.md(preview),
                "preferences": synced,
            },
            check_results=[dg.AssetCheckResult(check_name="no_task_tier_goes_dark", passed=True, metadata=check_meta)],
        )

    @dg.asset(
        name="savings_report",
        automation_condition=NIGHTLY,
        deps=["model_selection_table", "cost_tracking"],
        group_name="selection",
        kinds={"python", "pandas", "sql"},
        owners=["team:finops"],
        description="What each org, team and user spent over the 30 days to the as-of against named "
        "counterfactuals on the same requests (same tokens, same price book): the model the gateway asked for, "
        "always the table's standard choice, always its premium choice; savings = counterfactual - actual. "
        "Beside it, `savings_recommendations`: per org, team and task, the table choice that would have cost "
        "less at no lower expected quality, with the requests it rests on and the table row that explains it.",
        metadata=table_metadata(t.savings_report),
    )
    def savings_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        engine = warehouse.engine()
        found = latest(engine)
        if found is None:
            raise dg.Failure(description="no selection table published yet: materialize model_selection_table")
        version, table = found
        as_of = run_as_of(context)
        found_savings = savings(engine, table, pricebook_store.load(engine), as_of)
        rep, rec = found_savings.report, found_savings.recommendations
        stamp = {"table_version": version, "computed_at": as_of}
        rows = [{**r, **stamp} for r in rep.to_dict("records")]
        moves = [
            {**r, **stamp, "explanation_id": f"{version}:{r['task_type']}:{r['tier']}"} for r in rec.to_dict("records")
        ]
        with engine.begin() as conn:
            replace_rows(conn, t.savings_report, true(), rows)
            replace_rows(conn, t.savings_recommendations, true(), moves)
        by = (
            rep.groupby("counterfactual")[["actual_usd", "counterfactual_usd", "savings_usd"]].sum()
            if len(rep)
            else None
        )
        totals = {
            f"{name}_savings_usd": round(float(by.loc[name, "savings_usd"]), 4)
            if by is not None and name in by.index
            else 0.0
            for name in COUNTERFACTUALS
        }
        top = "| scope | task | from | to | saves a month, USD | requests |\n|---|---|---|---|---|---|\n" + "\n".join(
            f"| {m['org_id']}/{m['team_id'] or '—'} | {m['task_type']} | {m['from_model']} | {m['to_model']} | "
            f"{m['monthly_savings_usd']:.2f} | {m['requests']:,} |"
            for m in moves[:10]
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(rows),
                **totals,
                "recommendations": len(moves),
                "top_recommendations": dg.MetadataValue.md(top),
                "table_version": version,
                "as_of": as_of.isoformat(),
            }
        )

    @dg.asset(
        name="token_calibration",
        automation_condition=NIGHTLY,
        deps=["cost_tracking"],
        group_name="selection",
        kinds={"python", "pandas", "sql"},
        owners=["team:platform-ml"],
        description="Per model family and encoding, the median ratio of the input tokens RelayCore billed to the "
        "offline tokenizer's count, learnt from the last 30 days of estimates made for a known request id "
        "(select or estimate with `request_id`). `cams serve` multiplies its counts by it; a family needs "
        f"{MIN_SAMPLES} matched requests before its ratio is used.",
        metadata=table_metadata(t.token_calibration),
    )
    def token_calibration(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        as_of = run_as_of(context)
        ratios, matched = calibrate(warehouse.engine(), as_of)
        preview = "| family | encoding | samples | ratio | p10–p90 |\n|---|---|---|---|---|\n" + "\n".join(
            f"| {r.family} | {r.encoding} | {r.samples} | {r.ratio:.3f} | {r.p10_ratio:.3f}–{r.p90_ratio:.3f} |"
            for r in ratios.itertuples()
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(ratios),
                "matched_requests": matched,
                "as_of": as_of.isoformat(),
                "families": dg.MetadataValue.md(preview),
            }
        )

    return [model_quality_stats, model_selection_table, savings_report, token_calibration]


SELECTION_JOB = "selection_job"


def definitions(selection: SelectionConfig, preferences: Sequence[Preference] = ()) -> dg.Definitions:
    """The selection domain: model quality, the published table, savings and token calibration, refreshed
    at 01:30 UTC by their automation condition (and by `cams run` as of its range)."""
    assets = build_selection_assets(selection, preferences)
    job = dg.define_asset_job(
        SELECTION_JOB,
        selection=[a.key for a in assets],
        description="Recompute model quality and publish a new selection table version.",
    )
    return dg.Definitions(assets=assets, jobs=[job])
