"""Budgets end to end: hand-made usage with known spend, a budget file, alerts at a local receiver."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from cams import config as cams_config
from cams import signing
from cams.budgets.evaluate import evaluate
from cams.budgets.forecast import forecast, weekday_factors
from cams.budgets.model import BudgetError, parse_budget
from cams.budgets.periods import period_window
from pipelines.definitions import build_definitions
from pipelines.runner import run_range
from tests.receiver import Receiver

AS_OF = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)


def _usage(day: date, hour: int, rid: str, team: str = "search") -> dict:
    # flat-model costs 1e-4 per input token: 1000 input tokens = $0.10
    return {
        "request_id": rid,
        "timestamp": f"{day.isoformat()}T{hour:02d}:00:00Z",
        "org_id": "acme",
        "team_id": team,
        "user_id": "u1",
        "task_type": "chat",
        "model": "flat-model",
        "provider": "custom",
        "input_tokens": 1000,
        "output_tokens": 0,
        "status": "success",
        "cost_usd": "0.1",
    }


def _write_usage(root: Path) -> None:
    (root / "relaycore").mkdir(parents=True)
    (root / "auterity").mkdir(parents=True)
    lines = []
    for i in range(14):  # April 1..14: four requests a day, $0.40
        day = date(2026, 4, 1) + timedelta(days=i)
        lines += [json.dumps(_usage(day, h, f"r{i}-{h}", team="core")) for h in (3, 9, 15, 21)]
    lines += [json.dumps(_usage(date(2026, 4, 15), h, f"today-{h}")) for h in (2, 8)]  # $0.20 before 12:00
    lines.append(json.dumps(_usage(date(2026, 4, 15), 13, "after-as-of")))  # after as_of: not spent yet
    (root / "relaycore" / "usage.jsonl").write_text("\n".join(lines) + "\n")


def _config(root: Path, receiver: Receiver) -> cams_config.CamsConfig:
    return cams_config.parse(
        {
            "sources": {s: {"mode": "files", "drop_dir": str(root / s)} for s in ("relaycore", "auterity")},
            "partitions": {"start_date": "2026-03-01"},
            "pricing": {
                "overrides": [
                    {
                        "model": "flat-model",
                        "provider": "custom",
                        "input_cost_per_token": 1e-4,
                        "output_cost_per_token": 0,
                    }
                ]
            },
            "alerts": {"max_attempts": 3, "backoff_s": 0.01},
            "budgets": [
                {
                    "id": "acme-monthly",
                    "name": "ACME monthly",
                    "scope": "org",
                    "scope_id": "acme",
                    "period": "monthly",
                    "amount_usd": 10,
                    "thresholds": [
                        {"level": "warning", "percent": 50, "basis": "actual", "action": "notify"},
                        {"level": "critical", "percent": 90, "basis": "actual", "action": "downgrade"},
                        {"level": "warning", "percent": 100, "basis": "forecast", "action": "notify"},
                    ],
                    "channels": [
                        {"type": "webhook", "url": f"{receiver.url}/alerts", "secret_env": "T_ALERT_SECRET"},
                        {"type": "webhook", "url": f"{receiver.url}/broken"},
                        {"type": "log"},
                    ],
                },
                {
                    "id": "search-daily",
                    "name": "Search team daily",
                    "scope": "team",
                    "scope_id": "search",
                    "org_id": "acme",
                    "period": "daily",
                    "amount_usd": 0.15,
                    "thresholds": [{"level": "critical", "percent": 100, "basis": "actual", "action": "block"}],
                    "channels": [{"type": "slack", "url": f"{receiver.url}/slack"}],
                },
                {
                    "id": "quiet",
                    "scope": "user",
                    "scope_id": "nobody",
                    "org_id": "acme",
                    "period": "weekly",
                    "amount_usd": 5,
                    "timezone": "Europe/Paris",
                    "thresholds": [{"level": "warning", "percent": 80}],
                },
            ],
        }
    )


def test_alerts_arrive_once_with_correct_figures_and_signatures(db_url, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("T_ALERT_SECRET", "s3cret")
    receiver = Receiver(status={"/broken": 500})
    try:
        _write_usage(tmp_path / "drop")
        defs = build_definitions(_config(tmp_path / "drop", receiver), db_url)
        with dg.instance_for_test() as inst:
            first = run_range(date(2026, 4, 1), date(2026, 4, 15), inst, defs, as_of=AS_OF)
            again = run_range(date(2026, 4, 1), date(2026, 4, 15), inst, defs, as_of=AS_OF)  # re-run
            backfill = run_range(date(2026, 4, 10), date(2026, 4, 15), inst, defs, as_of=AS_OF + timedelta(minutes=5))
    finally:
        receiver.stop()
    assert first["alerts_fired"] == 3 and again["alerts_fired"] == 0 and backfill["alerts_fired"] == 0
    states = {b["budget_id"]: b for b in first["budgets"]}
    assert states["acme-monthly"] == {
        "budget_id": "acme-monthly",
        "state": "warning",
        "spent_usd": "5.8000000000",
        "forecast_usd": "12.0000000000",
    }
    assert states["search-daily"]["state"] == "exceeded" and states["quiet"]["state"] == "ok"

    signed = receiver.at("/alerts")
    assert len(signed) == 2  # two acme thresholds crossed, each delivered once
    for r in signed:
        signing.verify("s3cret", r.body, r.headers.get("X-CAMS-Signature"))  # raises when invalid
    bodies = {(b["level"], b["basis"], b["threshold_percent"]): b for b in (r.json() for r in signed)}
    assert set(bodies) == {("warning", "actual", 50.0), ("warning", "forecast", 100.0)}
    actual = bodies[("warning", "actual", 50.0)]
    assert actual["spent_usd"] == "5.8000000000" and actual["amount_usd"] == "10"
    assert actual["forecast_usd"] == "12.0000000000" and actual["percent_used"] == 58.0
    assert actual["period_start"] == "2026-04-01T00:00:00+00:00" and actual["period_end"] == "2026-05-01T00:00:00+00:00"
    assert set(actual) == {
        "event_id",
        "budget_id",
        "level",
        "basis",
        "threshold_percent",
        "percent_used",
        "period_start",
        "period_end",
        "spent_usd",
        "forecast_usd",
        "amount_usd",
        "state",
        "fired_at",
    }
    assert len(receiver.at("/slack")) == 1 and "search-daily" in receiver.at("/slack")[0].json()["text"]
    assert len(receiver.at("/broken")) == 2 * 3  # each alert retried max_attempts times

    engine = defs.resources["warehouse"].engine()
    with engine.connect() as conn:
        deliveries = conn.execute(
            sa.text("select channel_type, target, status, attempts from budget_alert_deliveries order by id")
        ).all()
        attempts = conn.execute(
            sa.text("select count(*) from budget_alert_attempts where status='failed'")
        ).scalar_one()
        status = conn.execute(
            sa.text(
                "select action, projected_exhaustion_at, percent_used from budget_status where budget_id='acme-monthly'"
            )
        ).one()
        block = conn.execute(sa.text("select action from budget_status where budget_id='search-daily'")).scalar_one()
    failed = [d for d in deliveries if d.status == "failed"]
    assert len(deliveries) == 7 and len(failed) == 2
    assert all(d.target.endswith("/broken") and d.attempts == 3 for d in failed)
    assert attempts == 6
    assert status.action == "notify" and block == "block"
    # the last evaluation was at 12:05: $4.20 more is needed at $0.40/day; $0.1986 comes by midnight
    # (11 h 55 min), the other $4.0014 takes 10 days and 5 minutes -> April 26, 00:05 UTC
    assert str(status.projected_exhaustion_at)[:16].replace("T", " ") == "2026-04-26 00:05"


def test_periods_timezones_and_weeks() -> None:
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # Sunday; 01:30 in Paris, the night DST starts
    assert period_window("weekly", "UTC", at) == (datetime(2026, 3, 23, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC))
    start, end = period_window("daily", "Europe/Paris", at)
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC) and end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    assert period_window("quarterly", "UTC", at)[0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert period_window("yearly", "America/New_York", at)[0] == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert period_window("monthly", "UTC", datetime(2026, 12, 31, 23, tzinfo=UTC))[1] == datetime(
        2027, 1, 1, tzinfo=UTC
    )


def test_forecast_learns_the_weekday_pattern() -> None:
    # four weeks: weekdays $10, weekends $2
    start = date(2026, 3, 2)  # a Monday
    history = {
        start + timedelta(days=i): (2.0 if (start + timedelta(days=i)).weekday() >= 5 else 10.0) for i in range(28)
    }
    f = weekday_factors(history)
    assert f[0] == pytest.approx(10 / (54 / 7)) and f[6] == pytest.approx(2 / (54 / 7))
    as_of = datetime(2026, 3, 30, 0, 0, tzinfo=UTC)  # Monday 00:00: the whole week ahead
    fc = forecast(0.0, 1000.0, history, 0.0, as_of, datetime(2026, 4, 6, tzinfo=UTC), "UTC")
    assert fc.forecast_usd == pytest.approx(54.0)
    flat = forecast(0.0, 1000.0, dict(list(history.items())[-7:]), 0.0, as_of, datetime(2026, 4, 6, tzinfo=UTC), "UTC")
    assert flat.forecast_usd == pytest.approx(54.0)  # a flat rate also gets a whole week right
    midweek = forecast(
        0.0,
        1000.0,
        history,
        0.0,
        datetime(2026, 4, 3, tzinfo=UTC),  # Friday: 1 weekday + weekend
        datetime(2026, 4, 6, tzinfo=UTC),
        "UTC",
    )
    assert midweek.forecast_usd == pytest.approx(14.0)


def test_state_rules_by_hand() -> None:
    b = parse_budget(
        {
            "id": "b",
            "scope": "org",
            "scope_id": "o",
            "period": "monthly",
            "amount_usd": 100,
            "thresholds": [
                {"level": "warning", "percent": 80},
                {"level": "critical", "percent": 95, "action": "downgrade"},
                {"level": "critical", "percent": 110, "basis": "forecast", "action": "block"},
            ],
        }
    )
    period = period_window("monthly", "UTC", AS_OF)
    hist = {date(2026, 4, d): 2.0 for d in range(1, 15)}
    s = evaluate(b, period, AS_OF, 81.0, hist, 1.0)
    assert (s.state, s.action) == ("warning", "block")  # forecast 81 + 1 + 15*2 = 112 -> block
    assert Decimal(s.forecast_usd) == Decimal("112.0000000000")
    assert evaluate(b, period, AS_OF, 96.0, hist, 1.0).state == "critical"
    assert evaluate(b, period, AS_OF, 100.0, hist, 1.0).state == "exceeded"
    assert evaluate(b, period, AS_OF, 10.0, {}, 0.0).state == "ok"


@pytest.mark.parametrize(
    ("change", "msg"),
    [
        ({"scope": "galaxy"}, "scope"),
        ({"period": "hourly"}, "period"),
        ({"amount_usd": -5}, "greater than 0"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"scope": "team"}, "org_id"),
        ({"thresholds": [{"level": "warning", "percent": 80}, {"level": "warning", "percent": 80}]}, "same level"),
        ({"channels": [{"type": "webhook", "url": "ftp://x"}]}, "http"),
        ({"channels": [{"type": "email"}]}, "to"),
        ({"channels": [{"type": "webhook", "url": "http://x", "secret": "inline"}]}, "secret_env"),
        ({"colour": "red"}, "unknown"),
    ],
)
def test_bad_budgets_are_named(change: dict, msg: str) -> None:
    base = {"id": "b", "scope": "org", "scope_id": "o", "period": "monthly", "amount_usd": 100}
    with pytest.raises(BudgetError, match=msg):
        parse_budget({**base, **change})
    with pytest.raises(cams_config.ConfigError, match=msg):
        cams_config.parse({"budgets": [{**base, **change}]})


def test_money_reads_one_way_everywhere() -> None:
    """Totals in cents, unit costs with enough digits, never an exponent; alert texts use the same."""
    from decimal import Decimal

    from cams.budgets.delivery import _text
    from cams.money import unit_usd, usd

    assert [usd(Decimal("88.6866109925")), usd(100), usd(-3.2), usd(Decimal("0E-10"))] == [
        "$88.69",
        "$100.00",
        "-$3.20",
        "$0.00",
    ]
    assert [unit_usd(0.000312345), unit_usd(1.5e-7), unit_usd(2.5)] == ["$0.000312", "$0.00000015", "$2.50"]
    text = _text(
        {
            "budget_id": "acme-monthly",
            "level": "warning",
            "basis": "actual",
            "threshold_percent": 80.0,
            "percent_used": 88.69,
            "spent_usd": "88.6866109925",
            "amount_usd": "100.0000000000",
            "forecast_usd": "128.0000000000",
            "state": "warning",
        }
    )
    assert "$88.69 of $100.00, forecast $128.00" in text and "E-" not in text


def test_email_alerts_reach_a_real_smtp_server(monkeypatch) -> None:
    """The email channel end to end: smtplib talks to an SMTP server on loopback, with login; a relay
    that is down is a DeliveryError (retried by the delivery loop), never a crash."""
    import pytest as _pytest

    from cams.budgets.delivery import DeliveryError, send
    from cams.budgets.model import Channel
    from cams.config import AlertsConfig
    from tests.receiver import SmtpReceiver

    smtp = SmtpReceiver()
    monkeypatch.setenv("T_SMTP_USER", "cams")
    monkeypatch.setenv("T_SMTP_PASSWORD", "pw")
    body = {
        "budget_id": "acme-monthly",
        "level": "warning",
        "basis": "actual",
        "threshold_percent": 80.0,
        "percent_used": 88.69,
        "spent_usd": "88.6866109925",
        "amount_usd": "100.0000000000",
        "forecast_usd": "128.0000000000",
        "state": "warning",
    }
    settings = AlertsConfig(
        timeout_s=5,
        smtp={
            "host": "127.0.0.1",
            "port": smtp.port,
            "from": "cams@acme.example",
            "username_env": "T_SMTP_USER",
            "password_env": "T_SMTP_PASSWORD",
        },
    )
    try:
        receipt = send(Channel("email", to=("finops@acme.example", "cto@acme.example")), body, settings)
    finally:
        smtp.close()
    assert receipt == "sent by SMTP" and len(smtp.messages) == 1 and smtp.logins
    msg = smtp.messages[0]
    assert msg["To"] == "finops@acme.example, cto@acme.example" and msg["From"] == "cams@acme.example"
    assert msg["Subject"] == "[CAMS] budget acme-monthly warning: 89% used"
    text = msg.get_payload(decode=True).decode()
    assert "$88.69 of $100.00" in text and '"budget_id": "acme-monthly"' in text
    with _pytest.raises(DeliveryError, match="SMTP"):
        send(
            Channel("email", to=("x@acme.example",)),
            body,
            AlertsConfig(timeout_s=2, smtp={"host": "127.0.0.1", "port": 1}),
        )


def test_budget_alerts_posted_by_another_system_are_recorded_and_delivered_once(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """POST /api/v1/webhooks/budget-alert: recorded beside CAMS's alerts (basis external, its source) and
    delivered once through the budget's channels; an unknown budget is recorded with nothing to send."""
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from cams import signing
    from cams.api.app import create_app
    from cams.budgets.alerts import record_external
    from cams.budgets.delivery import deliver_pending
    from cams.budgets.model import parse_budget
    from cams.budgets.store import _row
    from cams.config import AlertsConfig
    from cams.warehouse import schema as t
    from tests.receiver import Receiver

    monkeypatch.setenv("CAMS_WEBHOOK_SECRET", "whsec")
    receiver = Receiver()
    now = datetime.now(UTC)
    budget = parse_budget(
        {
            "id": "acme-monthly",
            "scope": "org",
            "scope_id": "acme",
            "period": "monthly",
            "amount_usd": 100,
            "channels": [{"type": "webhook", "url": f"{receiver.url}/alerts"}],
        }
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(t.budget_configs), [_row(budget, "yaml", now)])
    try:
        with TestClient(create_app(engine, refresh_s=60)) as client:
            for event in (
                {
                    "event_id": "fin-1",
                    "budget_id": "acme-monthly",
                    "level": "critical",
                    "source": "finops-tool",
                    "percent_used": 97.5,
                    "spent_usd": "97.50",
                    "message": "cloud invoice says 97.5 %",
                },
                {"event_id": "fin-1", "budget_id": "acme-monthly", "level": "critical"},  # a retry: same event id
                {"event_id": "fin-2", "budget_id": "no-such-budget", "percent_used": "NaN"},
            ):
                raw = json.dumps(event).encode()
                r = client.post(
                    "/api/v1/webhooks/budget-alert",
                    content=raw,
                    headers={"X-CAMS-Signature": signing.sign("whsec", raw)},
                )
                assert r.status_code == 200, r.text
        recorded = record_external(engine)
        assert [(b["budget_id"], b["source"], b["level"]) for b in recorded] == [
            ("acme-monthly", "finops-tool", "critical"),
            ("no-such-budget", "webhook", "warning"),
        ]
        assert record_external(engine) == []  # each stored event once
        sent = deliver_pending(engine, AlertsConfig(max_attempts=1))
        assert sent == {"sent": 1, "failed": 0}
        assert deliver_pending(engine, AlertsConfig(max_attempts=1)) == {"sent": 0, "failed": 0}
    finally:
        receiver.stop()
    (posted,) = receiver.at("/alerts")
    body = posted.json()
    assert (body["basis"], body["source"], body["spent_usd"], body["percent_used"]) == (
        "external",
        "finops-tool",
        "97.50",
        97.5,
    )
    assert body["message"] == "cloud invoice says 97.5 %" and body["external_event_id"] == "fin-1"
    with engine.connect() as conn:
        kept = conn.execute(
            sa.text("select budget_id, basis, percent_used from budget_alerts order by budget_id")
        ).all()
    assert [tuple(k) for k in kept] == [("acme-monthly", "external", 97.5), ("no-such-budget", "external", 0.0)]


def _cost_row(
    request_id: str,
    ts: datetime,
    org: str,
    team: str | None,
    cost: Decimal | None,
    charged: Decimal,
    user: str | None = None,
) -> dict:
    """A costed request as cost_tracking holds it (unpriced when `cost` is None)."""
    return {
        "day": ts.date(),
        "request_id": request_id,
        "timestamp": ts,
        "org_id": org,
        "team_id": team,
        "user_id": user,
        "task_type": "chat",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "service_tier": "standard",
        "status": "success",
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "charged_usd": charged,
        "unpriced": cost is None,
        "computed_at": ts,
    }


ZONES = ["UTC", "Europe/Paris", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"]


def test_spend_summed_in_the_database_equals_every_request_read(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The warehouse sums a scope's spend per quarter hour (`scope_costs`), so a month of an org's
    requests never comes into memory. The evaluation must be the one every request, read one by one,
    gives: in zones a quarter or half hour off UTC, across a DST change (Paris, 29 March), with an
    unpriced request counted at RelayCore's charge, and with requests of another scope left out. Then
    again as a zone off UTC by part of a quarter hour is read: per second from cost_tracking (the statement
    of each bucket size is its own: a cached one must not answer for the other)."""
    import random
    from zoneinfo import ZoneInfo

    from cams.budgets import store
    from cams.budgets.forecast import HISTORY_DAYS
    from cams.budgets.store import _quarter_hours, evaluate_budget
    from cams.costing import write_spend_quarter_hours
    from cams.warehouse import schema as t
    from cams.warehouse.db import insert_rows

    rng = random.Random(11)
    first = datetime(2026, 2, 20, tzinfo=UTC)
    rows = []
    for i in range(4000):
        ts = first + timedelta(seconds=rng.randrange(0, 45 * 86400), microseconds=rng.randrange(10**6))
        priced = rng.random() > 0.1
        cost = Decimal(rng.randrange(1, 10**6)) / 10**7 if priced else None
        org, team = rng.choice(["acme", "acme", "globex"]), rng.choice(["search", "support"])
        charged = Decimal(rng.randrange(1, 10**6)) / 10**7
        rows.append(_cost_row(f"r{i}", ts, org, team, cost, charged, rng.choice(["u1", "u2", None])))
    as_of = datetime(2026, 4, 2, 10, 17, 31, 500000, tzinfo=UTC)  # mid quarter hour, as is 29 days before
    edge = as_of - timedelta(days=HISTORY_DAYS + 1)
    for i, ts in enumerate(
        [as_of - timedelta(seconds=1), as_of, edge - timedelta(seconds=1), edge, edge + timedelta(seconds=1)]
    ):
        rows.append(
            _cost_row(f"edge{i}", ts, "acme", "search", Decimal(i + 1), Decimal(0), "u1")
        )  # both sides of both ends
    with engine.begin() as conn:
        insert_rows(conn, t.cost_tracking, rows)
        write_spend_quarter_hours(conn, first.date(), (first + timedelta(days=46)).date())
    for bucket, zone in [("quarter", z) for z in ZONES] + [("second", z) for z in ZONES]:
        if bucket == "second":
            monkeypatch.setattr(store, "_quarter_hours", lambda *_: False)
        for scope, scope_id in (("org", "acme"), ("team", "search"), ("user", "u1")):
            b = parse_budget(
                {
                    "id": f"b-{scope}",
                    "scope": scope,
                    "scope_id": scope_id,
                    "org_id": "acme",
                    "period": "monthly",
                    "amount_usd": 100,
                    "timezone": zone,
                },
                "budgets[0]",
            )
            got = evaluate_budget(engine, b, as_of)
            # the same evaluation from every request, one by one
            period = period_window("monthly", zone, as_of)
            start = min(period[0], as_of - timedelta(days=HISTORY_DAYS + 1))
            mine = [
                (r["timestamp"], float(r["cost_usd"] if r["cost_usd"] is not None else r["charged_usd"]))
                for r in rows
                if r["org_id"] == "acme"
                and (scope == "org" or r["team_id" if scope == "team" else "user_id"] == scope_id)
                and start <= r["timestamp"] < as_of
            ]
            tz = ZoneInfo(zone)
            today = as_of.astimezone(tz).date()
            by_day: dict[date, float] = {}
            for ts, cost in mine:
                by_day[ts.astimezone(tz).date()] = by_day.get(ts.astimezone(tz).date(), 0.0) + cost
            history = {d: v for d, v in by_day.items() if d < today}
            for i in range((today - min(history)).days):
                history.setdefault(min(history) + timedelta(days=i), 0.0)
            spent = sum(c for ts, c in mine if ts >= period[0])
            want = evaluate(b, period, as_of, spent, history, by_day.get(today, 0.0))
            costs = store.scope_costs(engine, b, start, as_of)
            summed = costs.groupby(costs["timestamp"].dt.tz_convert(zone).dt.date)["cost"].sum()
            assert summed.to_dict() == pytest.approx(by_day), (bucket, zone, scope)
            assert got.spent_usd == want.spent_usd, (bucket, zone, scope)
            assert got.forecast_usd == want.forecast_usd, (bucket, zone, scope)
            assert got.percent_used == pytest.approx(want.percent_used), (bucket, zone, scope)
    monkeypatch.undo()
    assert _quarter_hours("Asia/Kathmandu", first, as_of)
    # Amsterdam's offset in 1900 was 19 min 32 s: such a zone's spend is summed per second instead
    assert not _quarter_hours("Europe/Amsterdam", datetime(1900, 1, 1, tzinfo=UTC), as_of)


def test_migration_fills_spend_quarter_hours_from_costed_days(db_url: str) -> None:
    """A warehouse costed before spend_quarter_hours existed: the migration that makes the table fills it
    from cost_tracking, with the very rows a costing run writes; budgets read it from then on."""
    from alembic import command

    from cams.costing import write_spend_quarter_hours
    from cams.warehouse import schema as t
    from cams.warehouse.db import alembic_config, insert_rows, make_engine

    engine = make_engine(db_url)
    base = datetime(2026, 5, 1, 23, 50, tzinfo=UTC)
    rows = [
        _cost_row(
            f"r{i}",
            base + timedelta(minutes=7 * i),
            "acme",
            "search" if i % 2 else None,
            None if i % 3 == 0 else Decimal("0.25"),
            Decimal("0.5"),
        )
        for i in range(40)
    ]
    try:
        with engine.begin() as conn:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0016")
        with engine.begin() as conn:
            insert_rows(conn, t.cost_tracking, rows)
        with engine.begin() as conn:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

        def table(conn: sa.Connection) -> list[tuple]:
            sq = t.spend_quarter_hours
            order = (sq.c.scope, sq.c.quarter, sq.c.team_id, sq.c.user_id)
            found = conn.execute(sa.select(sq).order_by(*order)).all()
            return [(*r[:-1], float(r[-1])) for r in found]

        with engine.begin() as conn:
            migrated = table(conn)
            write_spend_quarter_hours(conn, date(2026, 5, 1), date(2026, 5, 3))
            written = table(conn)
        assert migrated == written
        for scope in ("org", "team", "user"):  # each scope's rows add up to every request
            mine = [r for r in migrated if r[1] == scope]
            assert sum(r[-2] for r in mine) == 40, scope
            assert sum(r[-1] for r in mine) == pytest.approx(14 * 0.5 + 26 * 0.25), scope
        assert {r[0] for r in migrated} == {date(2026, 5, 1), date(2026, 5, 2)}
    finally:
        engine.dispose()


def test_a_yearly_budget_counts_days_whose_requests_retention_removed(engine) -> None:  # type: ignore[no-untyped-def]
    """Retention removes requests after `retention.days` (90 by default), but a yearly or quarterly budget
    spans more: its spend comes from spend_quarter_hours, which retention keeps."""
    from cams.budgets.store import evaluate_budget
    from cams.costing import write_spend_quarter_hours
    from cams.warehouse import schema as t
    from cams.warehouse.db import insert_rows

    feb, nov = datetime(2026, 2, 3, 9, 30, tzinfo=UTC), datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    rows = [
        _cost_row("feb", feb, "acme", None, Decimal("7.5"), Decimal(0)),
        _cost_row("nov", nov, "acme", None, None, Decimal(2)),
    ]
    with engine.begin() as conn:
        insert_rows(conn, t.cost_tracking, rows)
        write_spend_quarter_hours(conn, date(2026, 1, 1), date(2027, 1, 1))
        conn.execute(sa.delete(t.cost_tracking).where(t.cost_tracking.c.day < date(2026, 8, 1)))  # retention's cut
    b = parse_budget({"id": "y", "scope": "org", "scope_id": "acme", "period": "yearly", "amount_usd": 100}, "b")
    assert evaluate_budget(engine, b, datetime(2026, 11, 30, 12, tzinfo=UTC)).spent_usd == Decimal("9.5")
