"""The sensor-triggered path for real: dagster-daemon on a PostgreSQL-backed instance, usage dropped
into a drop dir, and the budget alert awaited at a local HTTP receiver (SPEC §5: no schedule involved)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cams import signing
from tests.conftest import PG_URL, fresh_pg_database, psycopg2_url
from tests.receiver import Receiver

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("backend", [b for b in ("postgresql",) if PG_URL])
def test_dropped_usage_crossing_a_threshold_alerts_through_the_daemon(backend: str, tmp_path: Path) -> None:
    with fresh_pg_database("cams_e2e") as url:
        _run(tmp_path, url)


def _far_from_midnight() -> str:
    """A fixed-offset zone whose local time is 4 to 20 hours past midnight, so the daily budget's period
    cannot roll over while the test runs (run at 00:00 UTC, the usage fell in the day that had just ended)."""
    hour = datetime.now(UTC).hour
    return "Etc/GMT-6" if 4 <= (hour + 6) % 24 <= 20 else "Etc/GMT+6"  # UTC+6, else UTC-6


def _run(tmp_path: Path, db_url: str) -> None:
    receiver = Receiver()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    drop = tmp_path / "drop"
    for s in ("relaycore", "auterity"):
        (drop / s).mkdir(parents=True)
    today = datetime.now(UTC).date()
    (tmp_path / "cams.yaml").write_text(
        json.dumps(
            {
                "sources": {s: {"mode": "files", "drop_dir": str(drop / s)} for s in ("relaycore", "auterity")},
                "partitions": {"start_date": (today - timedelta(days=2)).isoformat()},
                "alerts": {"sensor_interval_s": 5},
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
                "budgets": [
                    {
                        "id": "acme-daily",
                        "scope": "org",
                        "scope_id": "acme",
                        "period": "daily",
                        "timezone": _far_from_midnight(),
                        "amount_usd": 1,
                        "thresholds": [{"level": "critical", "percent": 100, "basis": "actual", "action": "block"}],
                        "channels": [
                            {"type": "webhook", "url": f"{receiver.url}/alerts", "secret_env": "CAMS_E2E_SECRET"}
                        ],
                    }
                ],
            }
        )
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CAMS_CONFIG": str(tmp_path / "cams.yaml"),
        "DAGSTER_PG_URL": psycopg2_url(db_url),
        "CAMS_DATABASE_URL": db_url,
        "CAMS_E2E_SECRET": "e2e-secret",
    }
    daemon = None
    try:
        start = subprocess.run(
            [str(BIN / "dagster"), "sensor", "start", "--start-all", "-w", str(REPO / "workspace.yaml")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert start.returncode == 0, start.stderr[-2000:]
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "daemon.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        time.sleep(8)  # let the daemon's loops start
        # $1.20 of usage today, before now: crosses the $1 daily budget
        now = datetime.now(UTC)
        lines = [
            json.dumps(
                {
                    "request_id": f"e2e-{i}",
                    "timestamp": (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
                    "org_id": "acme",
                    "task_type": "chat",
                    "model": "flat-model",
                    "provider": "custom",
                    "input_tokens": 1000,
                    "output_tokens": 0,
                    "status": "success",
                    "cost_usd": "0.1",
                }
            )
            for i in range(12)
        ]
        dropped = time.monotonic()
        (drop / "relaycore" / "usage.jsonl").write_text("\n".join(lines) + "\n")
        deadline = dropped + 240
        while time.monotonic() < deadline and not receiver.at("/alerts"):
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(0.5)
        latency = time.monotonic() - dropped
        got = receiver.at("/alerts")
        assert got, f"no alert after {latency:.0f} s; daemon log:\n{(tmp_path / 'daemon.log').read_text()[-4000:]}"
        signing.verify("e2e-secret", got[0].body, got[0].headers.get("X-CAMS-Signature"))
        body = got[0].json()
        assert body["budget_id"] == "acme-daily" and body["state"] == "exceeded" and body["spent_usd"] == "1.2000000000"
        print(f"\nsensor-triggered alert latency (drop -> delivery): {latency:.1f} s")
        (tmp_path.parent / "alert_latency_s.txt").write_text(f"{latency:.1f}\n")
        time.sleep(6)  # later sensor ticks must not fire it again
        assert len(receiver.at("/alerts")) == 1
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        receiver.stop()
