"""Landing assets: RelayCore usage and Auterity spans, one UTC day per partition (SPEC §2)."""

from datetime import UTC, datetime

import dagster as dg
import great_expectations as gx
import pandas as pd

from assets.gx_checks import check_result
from cams.landing import land, record_failed_sync
from cams.sources.http_client import SourceApiError
from resources.sources import UsageSourceResource
from resources.warehouse import WarehouseResource

OWNERS = ["team:platform-data"]
QUARANTINE_WARN_SHARE = 0.05

RELAYCORE_EXPECTATIONS = [
    gx.expectations.ExpectColumnValuesToBeUnique(column="request_id"),
    gx.expectations.ExpectColumnValuesToNotBeNull(column="model"),
    gx.expectations.ExpectColumnValuesToBeBetween(column="input_tokens", min_value=0),
    gx.expectations.ExpectColumnValuesToBeBetween(column="output_tokens", min_value=0),
    gx.expectations.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0, max_value=1_000_000),
    gx.expectations.ExpectColumnValuesToBeInSet(
        column="service_tier", value_set=["standard", "batch", "flex", "priority"]
    ),
    gx.expectations.ExpectColumnValuesToBeInSet(column="status", value_set=["success", "error"]),
]
AUTERITY_EXPECTATIONS = [
    gx.expectations.ExpectColumnValuesToBeUnique(column="span_id"),
    gx.expectations.ExpectColumnValuesToBeBetween(column="quality_score", min_value=0, max_value=1),
    gx.expectations.ExpectColumnValuesToBeBetween(column="duration_ms", min_value=0),
]

RELAYCORE_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("day", "date", description="UTC day of timestamp (partition)"),
        dg.TableColumn("request_id", "string", description="unique per request (deduplicated)"),
        dg.TableColumn("timestamp", "timestamp", description="request start, UTC"),
        dg.TableColumn("org_id", "string"),
        dg.TableColumn("team_id", "string"),
        dg.TableColumn("user_id", "string"),
        dg.TableColumn("task_type", "string"),
        dg.TableColumn("model", "string", description="model served"),
        dg.TableColumn("provider", "string"),
        dg.TableColumn("input_tokens", "bigint"),
        dg.TableColumn("output_tokens", "bigint"),
        dg.TableColumn("cost_usd", "numeric(20,10)", description="what RelayCore charged"),
    ]
)


def _ingest(
    context: dg.AssetExecutionContext, source: UsageSourceResource, warehouse: WarehouseResource, checks: list
) -> dg.MaterializeResult:
    window = context.partition_time_window
    started = datetime.now(UTC)
    try:
        result, detail = source.collect(window.start, window.end)
    except SourceApiError as exc:
        record_failed_sync(
            warehouse.engine(), source.name, window.start, window.end, source.mode, str(exc), context.run_id, started
        )
        raise dg.Failure(description=f"{source.name}: {exc}") from exc
    summary = land(warehouse.engine(), result, source.mode, context.run_id, started, detail)
    counts = summary.counts
    frame = pd.DataFrame(list(result.rows.values()))
    share = counts["quarantined"] / counts["read"] if counts["read"] else 0.0
    context.log.info(f"{source.name} {window.start.date()}..{window.end.date()}: {counts}")
    check_results = [
        check_result(f"{source.name}_valid", frame, checks),
        dg.AssetCheckResult(
            check_name=f"{source.name}_quarantine_share",
            passed=share <= QUARANTINE_WARN_SHARE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"quarantined": counts["quarantined"], "share": round(share, 4)},
        ),
    ]
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "dagster/row_count": dg.MetadataValue.int(counts["accepted"]),
            "rows_replaced": summary.replaced,
            "quarantine_reasons": dg.MetadataValue.json(summary.quarantine_reasons),
            "mode": source.mode,
            **{f"source_{k}": dg.MetadataValue.text(str(v)) for k, v in detail.items()},
        },
        check_results=check_results,
    )


def build_ingestion_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="relaycore_usage",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ingestion",
        kinds={"python", "sql"},
        owners=OWNERS,
        description="RelayCore usage records (SPEC §2.1) landed per UTC day: validated, deduplicated on "
        "request_id (latest copy wins), bad lines quarantined with their reason. Table "
        "`relaycore_usage`; read = accepted + duplicates + quarantined.",
        metadata={"dagster/column_schema": RELAYCORE_COLUMNS, "table": "relaycore_usage"},
        check_specs=[
            dg.AssetCheckSpec(
                "relaycore_valid",
                asset="relaycore_usage",
                blocking=True,
                description="GX: unique request ids, tokens >= 0, known tiers and statuses",
            ),
            dg.AssetCheckSpec(
                "relaycore_quarantine_share",
                asset="relaycore_usage",
                description=f"warns when over {QUARANTINE_WARN_SHARE:.0%} of lines are quarantined",
            ),
        ],
    )
    def relaycore_usage(
        context: dg.AssetExecutionContext, relaycore: UsageSourceResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        return _ingest(context, relaycore, warehouse, RELAYCORE_EXPECTATIONS)

    @dg.asset(
        name="auterity_spans",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ingestion",
        kinds={"python", "sql"},
        owners=OWNERS,
        description="Auterity OpenTelemetry GenAI spans (SPEC §2.2) landed per UTC day of start_time: tokens, "
        "latency, quality score and feedback, joined to RelayCore by relaycore.request_id.",
        metadata={"table": "auterity_spans"},
        check_specs=[
            dg.AssetCheckSpec(
                "auterity_valid",
                asset="auterity_spans",
                blocking=True,
                description="GX: unique span ids, quality in [0, 1], durations >= 0",
            ),
            dg.AssetCheckSpec(
                "auterity_quarantine_share",
                asset="auterity_spans",
                description=f"warns when over {QUARANTINE_WARN_SHARE:.0%} of lines are quarantined",
            ),
        ],
    )
    def auterity_spans(
        context: dg.AssetExecutionContext, auterity: UsageSourceResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        return _ingest(context, auterity, warehouse, AUTERITY_EXPECTATIONS)

    return [relaycore_usage, auterity_spans]
