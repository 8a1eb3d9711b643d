"""Fire alerts: once per budget, period and threshold, whatever re-runs and backfills do (SPEC §5).

An alert's event_id is derived from (budget, period start, threshold), and budget_alerts has a
unique key on the same, so evaluating a period again can never fire a threshold twice.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from cams.budgets.evaluate import BudgetStatus
from cams.budgets.model import Threshold
from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows, lock_for_replace

_NS = uuid.UUID("6f1c2b52-2d0e-4a55-9a55-0c1a3e7d5b11")


def event_id(status: BudgetStatus, threshold: Threshold) -> str:
    return str(uuid.uuid5(_NS, f"{status.budget.id}|{status.period_start.isoformat()}|{threshold.key}"))


def payload(status: BudgetStatus, threshold: Threshold, fired_at: datetime) -> dict[str, Any]:
    """The SPEC §8 webhook body."""
    return {
        "event_id": event_id(status, threshold),
        "budget_id": status.budget.id,
        "level": threshold.level,
        "basis": threshold.basis,
        "threshold_percent": float(threshold.percent),
        "percent_used": status.percent_used,
        "period_start": status.period_start.isoformat(),
        "period_end": status.period_end.isoformat(),
        "spent_usd": f"{status.spent_usd:f}",
        "forecast_usd": f"{status.forecast_usd:f}",
        "amount_usd": f"{status.budget.amount_usd:f}",
        "state": status.state,
        "fired_at": fired_at.isoformat(),
    }


def fire(engine: Engine, statuses: list[BudgetStatus]) -> list[dict[str, Any]]:
    """Record every newly crossed threshold as an alert with a pending delivery per channel."""
    now = datetime.now(UTC)
    ba = t.budget_alerts
    fired: list[dict[str, Any]] = []
    with engine.begin() as conn:
        lock_for_replace(conn, ba)  # two evaluations at once: the second sees the first's alerts
        existing = set(conn.execute(select(ba.c.event_id)).scalars())
        for s in statuses:
            for th in s.crossed:
                body = payload(s, th, now)
                if body["event_id"] in existing:
                    continue
                _insert_alert(
                    conn,
                    {
                        "event_id": body["event_id"],
                        "budget_id": s.budget.id,
                        "period_start": s.period_start,
                        "period_end": s.period_end,
                        "level": th.level,
                        "basis": th.basis,
                        "threshold_percent": th.percent,
                        "percent_used": s.percent_used,
                        "spent_usd": s.spent_usd,
                        "forecast_usd": s.forecast_usd,
                        "amount_usd": s.budget.amount_usd,
                        "state": s.state,
                        "action": th.action,
                        "fired_at": now,
                        "payload_json": json.dumps(body),
                    },
                    s.budget.channels,
                    now,
                )
                existing.add(body["event_id"])
                fired.append(body)
    return fired


def record_external(engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
    """Budget alerts another system posted (`POST /api/v1/webhooks/budget-alert`), recorded beside
    CAMS's own (basis `external`, with their `source`) and queued once for the budget's channels.

    The event names a CAMS budget (`budget_id`); its other figures default to the budget's latest
    status. An event for a budget CAMS does not know is recorded with no delivery (nothing to send
    it through). Each stored event is handled once: its id decides the alert's id.
    """
    from cams.budgets.model import BudgetError, parse_budget

    now = now or datetime.now(UTC)
    we, ba, bs, bc = t.webhook_events, t.budget_alerts, t.budget_status, t.budget_configs
    recorded: list[dict[str, Any]] = []
    with engine.connect() as conn:
        events = conn.execute(
            select(we.c.event_id, we.c.body)
            .where(we.c.kind == "budget-alert", we.c.processed_at.is_(None))
            .order_by(we.c.received_at)
        ).all()
    for source_event, raw in events:
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):
            event = {}
        event = event if isinstance(event, dict) else {}
        budget_id = str(event.get("budget_id") or "")[:200] or "unknown"
        with engine.begin() as conn:
            status = conn.execute(select(bs).where(bs.c.budget_id == budget_id)).mappings().first() or {}
            config = conn.execute(select(bc.c.config_json).where(bc.c.id == budget_id)).scalar()

            body = {
                "event_id": f"ext:{uuid.uuid5(_NS, source_event)}",
                "external_event_id": source_event,
                "source": str(_scalar(event, "source", "webhook"))[:100],
                "budget_id": budget_id,
                "level": str(_scalar(event, "level", "warning"))[:10],
                "basis": "external",
                "threshold_percent": _number(_scalar(event, "threshold_percent", status.get("percent_used"))),
                "percent_used": _number(_scalar(event, "percent_used", status.get("percent_used"))),
                "period_start": str(status.get("period_start") or now.isoformat()),
                "period_end": str(status.get("period_end") or now.isoformat()),
                "spent_usd": str(_scalar(event, "spent_usd", status.get("spent_usd") or 0)),
                "forecast_usd": str(_scalar(event, "forecast_usd", status.get("forecast_usd") or 0)),
                "amount_usd": str(_scalar(event, "amount_usd", status.get("amount_usd") or 0)),
                "state": str(_scalar(event, "state", status.get("state") or "unknown"))[:10],
                "message": str(_scalar(event, "message", ""))[:2000],
                "fired_at": now.isoformat(),
            }
            if not conn.execute(select(ba.c.id).where(ba.c.event_id == body["event_id"])).first():
                try:
                    channels = parse_budget(json.loads(config)).channels if config else ()
                except (BudgetError, ValueError):
                    channels = ()
                _insert_alert(
                    conn,
                    {
                        "event_id": body["event_id"],
                        "budget_id": budget_id,
                        "period_start": status.get("period_start") or now,
                        "period_end": status.get("period_end") or now,
                        "level": body["level"],
                        "basis": "external",
                        "threshold_percent": body["threshold_percent"],
                        "percent_used": body["percent_used"],
                        "spent_usd": _money(body["spent_usd"]),
                        "forecast_usd": _money(body["forecast_usd"]),
                        "amount_usd": _money(body["amount_usd"]),
                        "state": body["state"],
                        "action": "none",
                        "fired_at": now,
                        "payload_json": json.dumps(body),
                    },
                    channels,
                    now,
                )
                recorded.append(body)
            conn.execute(we.update().where(we.c.event_id == source_event).values(processed_at=now))
    return recorded


def _insert_alert(conn: Any, values: dict[str, Any], channels: Any, now: datetime) -> None:
    """One alert row and a pending delivery per channel: CAMS's own alerts and external ones alike."""
    alert_id = conn.execute(t.budget_alerts.insert().values(**values)).inserted_primary_key[0]
    insert_rows(
        conn,
        t.budget_alert_deliveries,
        [
            {
                "alert_id": alert_id,
                "channel_index": i,
                "channel_type": ch.type,
                "target": ch.target,
                "status": "pending",
                "attempts": 0,
                "last_error": None,
                "updated_at": now,
            }
            for i, ch in enumerate(channels)
        ],
    )


def _scalar(event: dict[str, Any], name: str, default: Any) -> Any:
    value = event.get(name)
    return value if isinstance(value, int | float | str) and not isinstance(value, bool) else default


def _number(value: Any) -> float:
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return number if abs(number) < 1e9 else 0.0  # NaN fails the comparison too


def _money(value: str) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        amount = Decimal(value)
    except InvalidOperation:
        return Decimal(0)
    return amount if amount.is_finite() and abs(amount) < Decimal("1e9") else Decimal(0)
