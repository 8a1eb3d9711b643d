"""Landing assets: RelayCore usage and Auterity spans, one UTC day per partition (SPEC §2)."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import func

from assets.gx_checks import Expect, check_result, expect, import_in_background
from assets.per_partition import day_progress, report
from assets.table_meta import table_metadata
from cams.sources.http_client import SourceApiError
from cams.sources.landing import LandingSummary, Stage, land, landed_rows, landing_table, record_failed_sync
from cams.sources.landing_process import land_apart
from cams.warehouse import schema as t
from cams.warehouse.per_day import per_day
from resources.sources import UsageSource
from resources.warehouse import WarehouseResource

OWNERS = ["team:platform-data"]
QUARANTINE_WARN_SHARE = 0.05

RELAYCORE_EXPECTATIONS = [
    expect("ExpectColumnValuesToBeUnique", "request_id"),
    expect("ExpectColumnValuesToNotBeNull", "model"),
    expect("ExpectColumnValuesToBeBetween", "input_tokens", min_value=0),
    expect("ExpectColumnValuesToBeBetween", "output_tokens", min_value=0),
    expect("ExpectColumnValuesToBeBetween", "cost_usd", min_value=0, max_value=1_000_000),
    expect("ExpectColumnValuesToBeInSet", "service_tier", value_set=["standard", "batch", "flex", "priority"]),
    expect("ExpectColumnValuesToBeInSet", "status", value_set=["success", "error"]),
]
AUTERITY_EXPECTATIONS = [
    expect("ExpectColumnValuesToBeUnique", "span_id"),
    expect("ExpectColumnValuesToBeBetween", "quality_score", min_value=0, max_value=1),
    expect("ExpectColumnValuesToBeBetween", "duration_ms", min_value=0),
]

RELAYCORE_NOTES = {
    "day": "UTC day of timestamp (partition)",
    "request_id": "unique per request (deduplicated)",
    "timestamp": "request start, UTC",
    "model": "model served",
    "cost_usd": "what RelayCore charged",
}


def _held_by_key(source: str, window: dg.TimeWindow, checks: list) -> dict[Expect, str]:
    """The uniqueness of a one-day window's ids, which the table's primary key (day, id) already holds:
    not scanned again (1.4-2 s a million rows). A window of several days is checked: there the ids are
    unique because the landing kept the latest copy across days, which is code, not a constraint."""
    if window.end - window.start > timedelta(days=1):
        return {}
    key = {c.name for c in landing_table(source).primary_key.columns} - {"day"}
    why = f"one day: the primary key (day, {', '.join(sorted(key))}) holds it"
    return {e: why for e in checks if e.kind == "ExpectColumnValuesToBeUnique" and e.column in key}


def _land(
    context: dg.AssetExecutionContext, source: UsageSource, warehouse: WarehouseResource, apart: bool
) -> tuple[LandingSummary, dict]:
    """The window landed, here or (`apart`) in a process of its own (cams.sources.landing_process): its
    summary and how the source was read. A source API error records a failed sync and fails the step."""
    window = context.partition_time_window
    started = datetime.now(UTC)
    engine = warehouse.engine()
    try:
        if apart:
            url = engine.url.render_as_string(hide_password=False)
            return land_apart(source, url, window.start, window.end, context.run_id, started, context.log.info)
        with Stage(engine, source.name, window.start, window.end) as stage:  # rows go in while they are read
            result, detail = source.collect(window.start, window.end, stage, day_progress(context))
            import_in_background()  # the checks' library loads while the day is swapped in
            return land(engine, result, source.mode, context.run_id, started, detail, stage), detail
    except SourceApiError as exc:
        where = (engine, source.name, window.start, window.end, source.mode)
        record_failed_sync(*where, str(exc), context.run_id, started)
        raise dg.Failure(description=f"{source.name}: {exc}") from exc


def _ingest(
    context: dg.AssetExecutionContext,
    source: dg.ResourceParam[UsageSource],
    warehouse: WarehouseResource,
    checks: list,
    apart: bool = False,
) -> dg.MaterializeResult:
    window = context.partition_time_window
    engine = warehouse.engine()
    summary, detail = _land(context, source, warehouse, apart)
    counts = summary.counts
    # the checks validate what landed, only the columns they test, in the database
    rows = landed_rows(source.name, window.start, window.end, sorted({e.column for e in checks}))
    share = counts["quarantined"] / counts["read"] if counts["read"] else 0.0
    context.log.info(f"{source.name} {window.start.date()}..{window.end.date()}: {counts}")
    nothing: dict[str, str] = {}
    if counts["read"] == 0:  # a wrong folder or URL looks exactly like a quiet day: say so
        where = source.drop_dir if source.mode == "files" else source.base_url or source.mode
        nothing["warning"] = (
            f"{source.name} read nothing for {window.start.date()}..{window.end.date()} "
            f"({source.mode}: {where}); check sources.{source.name} in cams.yaml"
        )
        context.log.warning(nothing["warning"])
    check_results = [
        check_result(f"{source.name}_valid", engine, rows, checks, held=_held_by_key(source.name, window, checks)),
        dg.AssetCheckResult(
            check_name=f"{source.name}_quarantine_share",
            passed=share <= QUARANTINE_WARN_SHARE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"quarantined": counts["quarantined"], "share": round(share, 4)},
        ),
    ]
    first, last = window.start.date(), window.end.date()
    days = per_day(engine, landing_table(source.name), first, last, {"accepted": func.count()})
    bad = per_day(
        engine, t.quarantine, first, last, {"quarantined": func.count()}, where=t.quarantine.c.source == source.name
    )
    for key, figures in days.items():
        figures["quarantined"] = bad[key]["quarantined"]
        figures["dagster/row_count"] = figures["accepted"]
    # read and duplicates are counted per run (a line is read before its day is known): exact on a
    # one-day run, labelled as the range's on a range run
    run_counts = counts if len(context.partition_keys) == 1 else {"counts": dg.MetadataValue.json(counts)}
    return dg.MaterializeResult(
        metadata=report(
            context,
            days,
            {
                "mode": source.mode,
                **nothing,
                **{f"source_{k}": dg.MetadataValue.text(str(v)) for k, v in detail.items()},
            },
            totals={
                **run_counts,
                "rows_replaced": summary.replaced,
                "quarantine_reasons": dg.MetadataValue.json(summary.quarantine_reasons),
            },
        ),
        check_results=check_results,
    )


AUTERITY_NOTES = {
    "day": "UTC day of start_time (partition)",
    "span_id": "unique per span (deduplicated)",
    "relaycore_request_id": "join key to relaycore_usage",
    "response_model": "gen_ai.response.model",
    "quality_score": "auterity.quality.score, 0..1",
    "feedback": "auterity.feedback, +1 / -1",
}


# Landing is Python's work (decoding and checking lines): two landings in threads of one process share one
# GIL, so they take turns (pipelines/threaded.py), RelayCore first, since costing waits for it. A landing
# in a process of its own (`apart`: Auterity's, on the threads executor) runs beside the other instead.
PARSE_TAG = {"cams/work": "parse"}
LANDING_TAGS = {"relaycore": {**PARSE_TAG, "dagster/priority": "1"}, "auterity": PARSE_TAG}


def _landing_asset(
    partitions: dg.PartitionsDefinition,
    source: str,
    table: str,
    description: str,
    notes: dict[str, str],
    valid: str,
    expectations: list,
    apart: bool,
) -> dg.AssetsDefinition:
    """One landing asset per source: same shape, its own resource, table, checks and expectations."""

    @dg.asset(
        name=table,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ingestion",
        kinds={"python", "sql"},
        owners=OWNERS,
        description=description,
        metadata=table_metadata(t.metadata.tables[table], notes),
        required_resource_keys={source, "warehouse"},
        op_tags={k: v for k, v in LANDING_TAGS[source].items() if not (apart and k in PARSE_TAG)},
        check_specs=[
            dg.AssetCheckSpec(f"{source}_valid", asset=table, blocking=True, description=f"GX: {valid}"),
            dg.AssetCheckSpec(
                f"{source}_quarantine_share",
                asset=table,
                description=f"warns when over {QUARANTINE_WARN_SHARE:.0%} of lines are quarantined",
            ),
        ],
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return _ingest(context, getattr(context.resources, source), context.resources.warehouse, expectations, apart)

    return _asset


def build_ingestion_assets(
    partitions: dg.PartitionsDefinition, apart: frozenset[str] = frozenset()
) -> list[dg.AssetsDefinition]:
    """The two landing assets; the sources in `apart` land in a process of their own."""
    return [
        _landing_asset(
            partitions,
            "relaycore",
            "relaycore_usage",
            "RelayCore usage records (SPEC §2.1) landed per UTC day: validated, deduplicated on request_id "
            "(latest copy wins), bad lines quarantined with their reason. Table `relaycore_usage`; "
            "read = accepted + duplicates + quarantined.",
            RELAYCORE_NOTES,
            "unique request ids, tokens >= 0, known tiers and statuses",
            RELAYCORE_EXPECTATIONS,
            "relaycore" in apart,
        ),
        _landing_asset(
            partitions,
            "auterity",
            "auterity_spans",
            "Auterity OpenTelemetry GenAI spans (SPEC §2.2) landed per UTC day of start_time: tokens, latency, "
            "quality score and feedback, joined to RelayCore by relaycore.request_id.",
            AUTERITY_NOTES,
            "unique span ids, quality in [0, 1], durations >= 0",
            AUTERITY_EXPECTATIONS,
            "auterity" in apart,
        ),
    ]
