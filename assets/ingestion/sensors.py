"""Ingestion's sensors: new usage (drop files, RelayCore's API, pushed webhooks and OTLP exports) launches
the usage run for exactly the days it touches."""

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from cams.sources.files import days_touched, list_drop_files
from cams.sources.http_client import SourceApiError
from cams.sources.timeutil import days_between, parse_rfc3339
from cams.sources.webhooks import webhook_events_to_drops
from resources.sources import UsageSource
from resources.warehouse import WarehouseResource


def build_drop_files_sensor(
    job: Any, partitions: dg.DailyPartitionsDefinition, interval_s: int = 30
) -> dg.SensorDefinition:
    first_day = partitions.start.date()

    @dg.sensor(
        name="drop_files_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        description="Watches each files-mode source's drop_dir; a new or changed *.jsonl(.gz) launches a run "
        "for every UTC day it holds records for. The cursor maps file -> mtime:size.",
    )
    def drop_files_sensor(
        context: dg.SensorEvaluationContext,
        relaycore: dg.ResourceParam[UsageSource],
        auterity: dg.ResourceParam[UsageSource],
    ) -> dg.SensorResult | dg.SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        new_cursor: dict[str, dict[str, str]] = {}
        touched: dict[date, list[str]] = {}
        for source in (relaycore, auterity):
            if source.mode != "files":
                continue
            seen = cursor.get(source.name, {})
            current: dict[str, str] = {}
            for f in list_drop_files(source.drop_dir or ""):
                key = str(f.path)
                current[key] = f.fingerprint
                if seen.get(key) != f.fingerprint:
                    for day in days_touched(f, source.name):
                        touched.setdefault(day, []).append(f"{source.name}:{key}:{f.fingerprint}")
            new_cursor[source.name] = current
        last_day = datetime.now(UTC).date()
        requests, skipped = [], []
        for day in sorted(touched):
            if not first_day <= day <= last_day:
                skipped.append(day.isoformat())
                continue
            digest = hashlib.sha256("\n".join(sorted(touched[day])).encode()).hexdigest()[:16]
            requests.append(
                dg.RunRequest(
                    partition_key=day.isoformat(), run_key=f"drop:{day}:{digest}", tags={"cams/trigger": "drop_files"}
                )
            )
        if skipped:
            context.log.warning(f"files hold days outside the partitions ({first_day}..{last_day}): {skipped}")
        if not requests:
            return (
                dg.SkipReason("no new or changed drop files")
                if not skipped
                else dg.SensorResult(run_requests=[], cursor=json.dumps(new_cursor, sort_keys=True))
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor, sort_keys=True))

    return drop_files_sensor


def build_relaycore_api_sensor(
    job: Any, partitions: dg.DailyPartitionsDefinition, interval_s: int = 30
) -> dg.SensorDefinition:
    """Poll RelayCore's API for records newer than the cursor; launch the days they fall on.

    The cursor is the end of the last window probed (an RFC 3339 instant). Each tick probes
    [cursor, now − poll_lag_s) with a one-record page; records that arrive later than that with older
    timestamps are picked up by the daily schedule's trailing window.
    """
    first_day = partitions.start.date()

    @dg.sensor(
        name="relaycore_api_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        description="In api or litellm mode, polls RelayCore (or a LiteLLM proxy's spend logs) for usage newer "
        "than its cursor and ingests the days it falls on.",
    )
    def relaycore_api_sensor(context: dg.SensorEvaluationContext, relaycore: dg.ResourceParam[UsageSource]) -> Any:
        if relaycore.mode not in ("api", "litellm"):
            return dg.SkipReason("relaycore is not in api or litellm mode")
        end = datetime.now(UTC) - timedelta(seconds=relaycore.poll_lag_s)
        start = parse_rfc3339(context.cursor, "cursor") if context.cursor else end - timedelta(days=1)
        if end <= start:
            return dg.SkipReason("nothing new to probe yet")
        try:
            found = relaycore.has_new_rows(start, end)
        except (SourceApiError, SQLAlchemyError) as exc:
            return dg.SkipReason(f"{relaycore.mode} source not reachable, will retry: {str(exc)[:300]}")
        cursor = end.isoformat()
        if not found:
            return dg.SensorResult(run_requests=[], cursor=cursor)
        days = [d for d in days_between(start.date(), end.date()) if d >= first_day]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    partition_key=d.isoformat(), run_key=f"api:{d}:{cursor}", tags={"cams/trigger": "relaycore_api"}
                )
                for d in days
            ],
            cursor=cursor,
        )

    return relaycore_api_sensor


def build_webhook_events_sensor(
    job: Any, partitions: dg.DailyPartitionsDefinition, interval_s: int = 30
) -> dg.SensorDefinition:
    """cost-data webhook events (stored by the service before it answered 2xx) become drop files."""
    first_day = partitions.start.date()

    @dg.sensor(
        name="webhook_events_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        description="Turns stored POST /api/v1/webhooks/cost-data events into RelayCore drop files "
        "(webhook-<event_id>.jsonl, in its inbox_dir: the drop_dir in files mode) and ingests the days they hold.",
    )
    def webhook_events_sensor(
        context: dg.SensorEvaluationContext, relaycore: dg.ResourceParam[UsageSource], warehouse: WarehouseResource
    ) -> Any:
        return _land_inbox(warehouse, relaycore, "cost-data", "webhook", first_day)

    return webhook_events_sensor


def build_otlp_traces_sensor(
    job: Any, partitions: dg.DailyPartitionsDefinition, interval_s: int = 30
) -> dg.SensorDefinition:
    """Spans pushed to POST /v1/traces (stored by the service before it answered) become Auterity drop files."""
    first_day = partitions.start.date()

    @dg.sensor(
        name="otlp_traces_sensor",
        job=job,
        minimum_interval_seconds=interval_s,
        description="Turns OTLP trace exports pushed to the service (POST /v1/traces) into Auterity drop files "
        "(otlp-<hash>.jsonl) and ingests the days they hold.",
    )
    def otlp_traces_sensor(
        context: dg.SensorEvaluationContext, auterity: dg.ResourceParam[UsageSource], warehouse: WarehouseResource
    ) -> Any:
        return _land_inbox(warehouse, auterity, "otlp-traces", "otlp", first_day)

    return otlp_traces_sensor


def _land_inbox(
    warehouse: WarehouseResource, source: dg.ResourceParam[UsageSource], kind: str, trigger: str, first_day: Any
) -> Any:
    """Stored events of `kind` into the source's inbox_dir; a run for each day they hold."""
    if not source.inbox_dir:
        return dg.SkipReason(f"sources.{source.name}.inbox_dir is not set")
    written = webhook_events_to_drops(warehouse.engine(), source.inbox_dir, kind=kind)
    if not written:
        return dg.SkipReason(f"no new {kind} events")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=day.isoformat(), run_key=f"{trigger}:{event_id}:{day}", tags={"cams/trigger": trigger}
            )
            for event_id, days in written
            for day in sorted(d for d in days if d >= first_day)
        ]
    )
