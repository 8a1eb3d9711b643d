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
    ba, bd = t.budget_alerts, t.budget_alert_deliveries
    fired: list[dict[str, Any]] = []
    with engine.begin() as conn:
        lock_for_replace(conn, ba)  # two evaluations at once: the second sees the first's alerts
        existing = set(conn.execute(select(ba.c.event_id)).scalars())
        for s in statuses:
            for th in s.crossed:
                body = payload(s, th, now)
                if body["event_id"] in existing:
                    continue
                alert_id = conn.execute(
                    ba.insert().values(
                        event_id=body["event_id"],
                        budget_id=s.budget.id,
                        period_start=s.period_start,
                        period_end=s.period_end,
                        level=th.level,
                        basis=th.basis,
                        threshold_percent=th.percent,
                        percent_used=s.percent_used,
                        spent_usd=s.spent_usd,
                        forecast_usd=s.forecast_usd,
                        amount_usd=s.budget.amount_usd,
                        state=s.state,
                        action=th.action,
                        fired_at=now,
                        payload_json=json.dumps(body),
                    )
                ).inserted_primary_key[0]
                insert_rows(
                    conn,
                    bd,
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
                        for i, ch in enumerate(s.budget.channels)
                    ],
                )
                existing.add(body["event_id"])
                fired.append(body)
    return fired
