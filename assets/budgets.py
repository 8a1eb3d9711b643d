"""Budget assets: configs from cams.yaml, status with forecasts, and alerts with delivery (SPEC §5)."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from assets.as_of import run_as_of
from assets.table_meta import table_metadata
from cams.budgets.alerts import fire, record_external
from cams.budgets.delivery import deliver_pending
from cams.budgets.model import Budget
from cams.budgets.store import evaluate_all, published_statuses, sync_yaml_budgets
from cams.config import AlertsConfig
from cams.warehouse import schema as t
from resources.warehouse import WarehouseResource

OWNERS = ["team:finops"]


def build_budget_assets(budgets: Sequence[Budget], alerts: AlertsConfig) -> list[dg.AssetsDefinition]:

    @dg.asset(
        name="budget_configs",
        group_name="budgets",
        kinds={"python", "sql"},
        owners=OWNERS,
        description="Budgets from cams.yaml (config as code) synced into `budget_configs`; budgets created "
        "through the Budget API live in the same table and are left alone.",
        metadata=table_metadata(t.budget_configs),
    )
    def budget_configs(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        counts = sync_yaml_budgets(warehouse.engine(), budgets)
        return dg.MaterializeResult(metadata={**counts, "dagster/row_count": counts["budgets"]})

    @dg.asset(
        name="budget_status",
        deps=["budget_configs", "cost_tracking"],
        group_name="budgets",
        kinds={"python", "pandas", "sql"},
        owners=OWNERS,
        description="Every budget evaluated as of the run's as-of (tag cams/as_of, the schedule's tick, else "
        "now): spend in its scope and current period, forecast at period end (trailing rate with a day-of-week "
        "pattern), percent used, state (ok, warning, critical, exceeded), the action selection must take, "
        "projected exhaustion time.",
        metadata=table_metadata(t.budget_status),
    )
    def budget_status(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        as_of = run_as_of(context)
        statuses = evaluate_all(warehouse.engine(), as_of)
        by_state: dict[str, int] = {}
        for s in statuses:
            by_state[s.state] = by_state.get(s.state, 0) + 1
        rank = {"exceeded": 0, "critical": 1, "warning": 2, "ok": 3}
        lines = [
            "| budget | state | spent USD | forecast USD | amount USD | used | action |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in sorted(statuses, key=lambda s: (rank[s.state], -s.percent_used)):
            lines.append(
                f"| {s.budget.id} | {s.state} | {s.spent_usd:.2f} | {s.forecast_usd:.2f} | "
                f"{s.budget.amount_usd:.2f} | {s.percent_used:.1f}% | {s.action} |"
            )
        return dg.MaterializeResult(
            metadata={
                "as_of": as_of.isoformat(),
                "dagster/row_count": len(statuses),
                **{f"budgets_{k}": by_state.get(k, 0) for k in ("ok", "warning", "critical", "exceeded")},
                "budgets_by_state": dg.MetadataValue.md("\n".join(lines)),
            }
        )

    @dg.asset(
        name="budget_alerts",
        deps=["budget_status"],
        group_name="budgets",
        kinds={"python", "sql"},
        owners=OWNERS,
        description="Fires each crossed threshold once per budget and period (actual and forecast bases) into "
        "`budget_alerts`, then delivers every pending alert to its channels (signed webhook, Slack webhook, "
        "SMTP, log) with retries and backoff, recording each attempt.",
        metadata=table_metadata(t.budget_alerts),
    )
    def budget_alerts(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        engine = warehouse.engine()
        fired = fire(engine, published_statuses(engine))
        external = record_external(engine)  # alerts other systems posted, through the same channels
        for body in external:
            context.log.warning(f"external budget alert from {body['source']}: {body['budget_id']} {body['level']}")
        for body in fired:
            context.log.warning(
                f"budget alert: {body['budget_id']} {body['level']} {body['basis']} "
                f"{body['threshold_percent']}% ({body['percent_used']:.1f}% used)"
            )
        delivered = deliver_pending(engine, alerts)
        return dg.MaterializeResult(
            metadata={
                "alerts_fired": len(fired),
                "external_alerts": len(external),
                "deliveries_sent": delivered["sent"],
                "deliveries_failed": delivered["failed"],
                "fired": dg.MetadataValue.json(
                    [{k: b[k] for k in ("budget_id", "level", "basis", "threshold_percent")} for b in fired]
                ),
            }
        )

    return [budget_configs, budget_status, budget_alerts]


BUDGET_JOB = "budget_job"


def build_budget_after_usage_sensor(usage_job: Any, budget_job: Any, interval_s: int = 30) -> dg.SensorDefinition:
    """New usage landed (any run of the usage job succeeded): evaluate budgets now, not at the next hour."""

    @dg.run_status_sensor(
        name="budget_after_usage_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[usage_job],
        request_job=budget_job,
        minimum_interval_seconds=interval_s,
        description="After each successful usage run, evaluate budgets and deliver the alerts they fire.",
    )
    def budget_after_usage_sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=f"after:{context.dagster_run.run_id}",
            tags={"cams/trigger": f"usage run {context.dagster_run.run_id[:8]}"},
        )

    return budget_after_usage_sensor


def definitions(budgets: Sequence[Budget], alerts: AlertsConfig, usage_job: Any) -> dg.Definitions:
    """The budgets domain: sync, evaluate and alert; hourly, and right after every usage run."""
    assets = build_budget_assets(budgets, alerts)
    job = dg.define_asset_job(
        BUDGET_JOB,
        selection=[a.key for a in assets],
        description="Sync budgets, evaluate them as of now (or the cams/as_of tag), fire and deliver alerts.",
    )
    schedule = dg.ScheduleDefinition(
        name="budget_schedule",
        job=job,
        cron_schedule="5 * * * *",
        description="Hourly: forecasts move with the clock even when no usage arrives.",
    )
    sensor = build_budget_after_usage_sensor(usage_job, job, alerts.sensor_interval_s)
    return dg.Definitions(assets=assets, jobs=[job], schedules=[schedule], sensors=[sensor])
