"""Deliver alerts to their channels: signed webhook, Slack-compatible webhook, SMTP email, log.

Each (alert, channel) delivery is tried up to `max_attempts` times with exponential backoff; every
attempt is recorded. One failing channel never blocks another, and a failed delivery keeps its alert.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import Engine, select, update

from cams import signing
from cams.budgets.model import Budget, Channel, parse_budget
from cams.config import AlertsConfig
from cams.money import usd
from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows

log = logging.getLogger("cams.alerts")


class DeliveryError(RuntimeError):
    """A channel did not take the alert."""


def _text(body: dict[str, Any]) -> str:
    return (
        f"CAMS budget {body['budget_id']}: {body['level']} ({body['basis']} {body['threshold_percent']:g}%) — "
        f"{body['percent_used']:.1f}% used, {usd(body['spent_usd'])} of {usd(body['amount_usd'])}, "
        f"forecast {usd(body['forecast_usd'])}, state {body['state']}"
    )


def send(channel: Channel, body: dict[str, Any], settings: AlertsConfig) -> str:
    """Deliver one alert body to one channel; returns a short receipt, raises DeliveryError."""
    raw = json.dumps(body, sort_keys=True).encode()
    try:
        if channel.type == "webhook":
            headers = {"Content-Type": "application/json"}
            if channel.secret_env:
                secret = os.environ.get(channel.secret_env)
                if not secret:
                    raise DeliveryError(f"{channel.secret_env} is not set: cannot sign the webhook")
                headers[signing.HEADER] = signing.sign(secret, raw)
            r = httpx.post(channel.url or "", content=raw, headers=headers, timeout=settings.timeout_s)
        elif channel.type == "slack":
            r = httpx.post(channel.url or "", json={"text": _text(body)}, timeout=settings.timeout_s)
        elif channel.type == "email":
            _email(channel, body, settings)
            return "sent by SMTP"
        else:
            log.warning(_text(body))
            return "logged"
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"HTTP {r.status_code}: {r.text[:200]}")
    return f"HTTP {r.status_code}"


def _email(channel: Channel, body: dict[str, Any], settings: AlertsConfig) -> None:
    smtp = settings.smtp
    if not smtp.get("host"):
        raise DeliveryError("alerts.smtp.host is not configured")
    msg = EmailMessage()
    msg["Subject"] = f"[CAMS] budget {body['budget_id']} {body['level']}: {body['percent_used']:.0f}% used"
    msg["From"] = smtp.get("from", "cams@localhost")
    msg["To"] = ", ".join(channel.to)
    msg.set_content(_text(body) + "\n\n" + json.dumps(body, indent=2))
    try:
        # the EHLO name is the host name as it is: smtplib's default looks up a fully qualified one (DNS)
        helo = socket.gethostname()
        with smtplib.SMTP(smtp["host"], int(smtp.get("port", 25)), helo, timeout=settings.timeout_s) as server:
            if smtp.get("starttls"):
                server.starttls()
            user, password = os.environ.get(smtp.get("username_env", "")), os.environ.get(smtp.get("password_env", ""))
            if user and password:
                server.login(user, password)
            server.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP: {exc}") from None


def deliver_pending(
    engine: Engine, settings: AlertsConfig, sleep: Callable[[float], None] = time.sleep
) -> dict[str, int]:
    """Try every pending delivery; returns counts of sent and failed deliveries."""
    ba, bd, bc = t.budget_alerts, t.budget_alert_deliveries, t.budget_configs
    with engine.connect() as conn:
        pending = conn.execute(
            select(bd.c.id, bd.c.channel_index, bd.c.attempts, ba.c.payload_json, ba.c.budget_id)
            .join(ba, ba.c.id == bd.c.alert_id)
            .where(bd.c.status == "pending")
            .order_by(bd.c.id)
        ).all()
        configs = {r.id: r.config_json for r in conn.execute(select(bc.c.id, bc.c.config_json))}
    counts = {"sent": 0, "failed": 0}
    for d in pending:
        budget: Budget | None = parse_budget(json.loads(configs[d.budget_id])) if d.budget_id in configs else None
        channel = budget.channels[d.channel_index] if budget and d.channel_index < len(budget.channels) else None
        body = json.loads(d.payload_json)
        status, detail, attempt = "failed", "the budget or channel no longer exists", d.attempts
        while channel is not None and attempt < settings.max_attempts:
            attempt += 1
            try:
                detail = send(channel, body, settings)
                status = "sent"
            except DeliveryError as exc:
                detail, status = str(exc), "failed"
            with engine.begin() as conn:
                insert_rows(
                    conn,
                    t.budget_alert_attempts,
                    [
                        {
                            "delivery_id": d.id,
                            "attempt": attempt,
                            "status": status,
                            "detail": detail[:2000],
                            "attempted_at": datetime.now(UTC),
                        }
                    ],
                )
            if status == "sent":
                break
            if attempt < settings.max_attempts:
                sleep(settings.backoff_s * 2 ** (attempt - 1))
        with engine.begin() as conn:
            conn.execute(
                update(bd)
                .where(bd.c.id == d.id)
                .values(
                    status=status,
                    attempts=attempt,
                    last_error=None if status == "sent" else detail[:2000],
                    updated_at=datetime.now(UTC),
                )
            )
        counts[status] += 1
    return counts
