"""Faults with real processes: a `cams run` killed mid-run, PostgreSQL restarted under a run, two runs
of the same days at once. Each ends with the same totals as an undisturbed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cams.simulator.drops import write_drops
from cams.simulator.generate import SimConfig, generate
from cams.warehouse.db import make_engine
from tests.conftest import PG_URL, fresh_pg_database

DAYS = [date(2026, 5, 4), date(2026, 5, 5)]
CAMS = str(Path(sys.executable).with_name("cams"))
PG_ONLY = pytest.mark.parametrize("backend", [b for b in ("postgresql",) if PG_URL])


def _setup(root: Path, url: str, requests_per_day: int) -> dict[str, str]:
    sim = generate(SimConfig(days=DAYS, seed=5, requests_per_day=requests_per_day))
    write_drops(sim, root / "drop")
    cfg = {
        "sources": {s: {"mode": "files", "drop_dir": str(root / "drop" / s)} for s in ("relaycore", "auterity")},
        "partitions": {"start_date": "2026-05-01"},
    }
    (root / "cams.yaml").write_text(json.dumps(cfg))
    return {**os.environ, "CAMS_CONFIG": str(root / "cams.yaml"), "CAMS_DATABASE_URL": url}


def _start(env: dict[str, str], home: Path) -> subprocess.Popen[str]:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [CAMS, "run", "--start", DAYS[0].isoformat(), "--end", DAYS[-1].isoformat(), "--json"],
        env={**env, "DAGSTER_HOME": str(home)},
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def totals(url: str) -> dict[str, Any]:
    """What a run leaves behind, per table: rows and money, so double counting cannot hide."""
    engine = make_engine(url)
    q = {
        "relaycore_usage": "select count(*), sum(cost_usd) from relaycore_usage",
        "auterity_spans": "select count(*), 0 from auterity_spans",
        "cost_tracking": "select count(*), sum(cost_usd) from cost_tracking",
        "cost_daily_rollups": "select sum(requests), sum(cost_usd) from cost_daily_rollups",
        "cost_reconciliation": "select count(*), sum(at_risk_usd) from cost_reconciliation",
    }
    try:
        with engine.connect() as conn:
            out = {}
            for name, sql in q.items():
                n, money = conn.execute(sa.text(sql)).one()
                out[name] = (int(n or 0), Decimal(str(money or 0)).quantize(Decimal("1e-9")))
            return out
    finally:
        engine.dispose()


def _wait_for_a_started_run(home: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the run's backfill job is STARTED in its Dagster home, plus a moment: the kill lands mid-job.

    Read-only SQL on the home's run storage: opening a second DagsterInstance while the run creates its
    storage races its schema migration."""
    import sqlite3

    db = home / "history" / "runs.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be interrupted"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                started = conn.execute(
                    "select count(*) from runs where pipeline_name = 'backfill_job' and status = 'STARTED'"
                ).fetchone()[0]
        except sqlite3.Error:  # not created yet
            started = 0
        if started:
            time.sleep(1.0)
            return
        time.sleep(0.1)
    raise AssertionError(f"no backfill_job run started after {timeout} s")


@pytest.fixture(scope="module")
def pg_reference(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, str], dict[str, Any], dict]]:
    """A PostgreSQL warehouse with 2 days of 3,000 requests run once, undisturbed: the reference."""
    if not PG_URL:
        pytest.fail("the fault tests need CAMS_TEST_DATABASE_URL")
    root = tmp_path_factory.mktemp("faults")
    with fresh_pg_database("cams_faults") as url:
        env = _setup(root, url, 3000)
        summary = _finish(_start(env, root / "dh-ref"))
        yield url, env, summary, totals(url)


KEYS = ("records", "cost_usd", "relaycore_charged_usd", "unpriced_requests", "reconciliation")


@PG_ONLY
def test_a_run_killed_mid_run_then_rerun_gives_identical_totals(backend, pg_reference, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, env, ref_summary, ref_totals = pg_reference
    proc = _start(env, tmp_path / "dh-killed")
    _wait_for_a_started_run(tmp_path / "dh-killed", proc)  # the warehouse already has rows: wait on the run
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up, no atexit: like an OOM kill or a lost node
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # the next `cams run` on the same Dagster home marks the killed run failed, then does the work
    again = _finish(_start(env, tmp_path / "dh-killed"))
    assert {k: again[k] for k in KEYS} == {k: ref_summary[k] for k in KEYS}
    assert totals(url) == ref_totals
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "dh-killed")) as inst:
        runs = inst.get_runs()
        assert not [r for r in runs if r.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING)]
        killed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        assert len(killed) == 1 and killed[0].tags["cams/pid"] == str(proc.pid)


@PG_ONLY
@pytest.mark.serial  # restarting PostgreSQL would break every test running beside it
def test_postgresql_restarted_during_a_run_then_rerun_gives_identical_totals(backend, pg_reference, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, env, ref_summary, ref_totals = pg_reference
    proc = _start(env, tmp_path / "dh-restart")
    _wait_for_a_started_run(tmp_path / "dh-restart", proc)  # the reference left rows: wait on the run itself
    cluster = os.listdir("/etc/postgresql")[0]
    restart = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart", "-m", "fast"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restart.returncode == 0, restart.stderr
    for _ in range(60):
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0:
            break
        time.sleep(0.5)
    _out, err = proc.communicate(timeout=600)
    # the interrupted run either failed with one clear line or recovered through pre-ping reconnects
    assert proc.returncode in (0, 1), err[-2000:]
    assert proc.returncode == 0 or "terminat" in err.lower() or "connection" in err.lower(), err[-2000:]
    again = _finish(_start(env, tmp_path / "dh-after"))
    assert {k: again[k] for k in KEYS} == {k: ref_summary[k] for k in KEYS}
    assert totals(url) == ref_totals


@PG_ONLY
def test_two_runs_of_the_same_days_at_once_do_not_double_count(backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL, where writers really run at once (SQLite serializes them by itself)."""
    with fresh_pg_database("cams_concurrent") as url:
        env = _setup(tmp_path, url, 600)
        first, second = _start(env, tmp_path / "dh-a"), _start(env, tmp_path / "dh-b")
        a, b = _finish(first), _finish(second)
        assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}
        after_both = totals(url)
    assert after_both["relaycore_usage"][0] == a["records"]["relaycore"]["accepted"]
    assert after_both["cost_tracking"][0] == a["records"]["relaycore"]["accepted"]
    assert after_both["cost_daily_rollups"][0] == after_both["cost_tracking"][0]
    assert after_both["cost_tracking"][1] == Decimal(a["cost_usd"]).quantize(Decimal("1e-9"))
