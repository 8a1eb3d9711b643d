"""Dagster for real: the definitions graph, materialization on each backend (with a dagster-postgres
instance on PostgreSQL), the drop-files sensor with cursors, and the daily schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from cams import config as cams_config
from cams.reconcile import CATEGORIES
from cams.simulator.drops import write_drops
from cams.simulator.scenario import serve
from cams.warehouse import schema as sa_schema
from pipelines.definitions import BACKFILL_JOB, DAILY_JOB, build_definitions
from pipelines.runner import run_range
from tests.conftest import fresh_pg_database, psycopg2_url

REPO = Path(__file__).resolve().parent.parent


def files_cfg(root: Path, start: str = "2026-03-01") -> cams_config.CamsConfig:
    return cams_config.parse(
        {
            "sources": {s: {"mode": "files", "drop_dir": str(root / s)} for s in ("relaycore", "auterity")},
            "partitions": {"start_date": start},
        }
    )


@pytest.fixture
def instance(db_url: str, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """Ephemeral instance beside a SQLite warehouse; a dagster-postgres instance beside PostgreSQL."""
    if not db_url.startswith("postgresql"):
        with dg.instance_for_test() as inst:
            yield inst
        return
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())  # the committed production file
    with fresh_pg_database("cams_dagster") as url:
        os.environ["DAGSTER_PG_URL"] = psycopg2_url(url)
        inst = dg.DagsterInstance.from_config(str(home))
        try:
            assert type(inst.run_storage).__name__ == "PostgresRunStorage"
            assert type(inst.run_coordinator).__name__ == "QueuedRunCoordinator"
            yield inst
        finally:
            inst.dispose()
            os.environ.pop("DAGSTER_PG_URL", None)


def test_definitions_graph_is_the_map(tmp_path: Path) -> None:
    defs = build_definitions(files_cfg(tmp_path), f"sqlite:///{tmp_path / 'w.db'}")
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "price_book",
        "relaycore_usage",
        "auterity_spans",
        "cost_tracking",
        "cost_daily_rollups",
        "cost_reconciliation",
        "budget_configs",
        "budget_status",
        "budget_alerts",
        "model_quality_stats",
        "model_selection_table",
        "savings_report",
        "token_calibration",
        "focus_export",
        "warehouse_retention",
    }
    deps = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert deps["cost_tracking"] == {"relaycore_usage", "price_book"}
    assert deps["cost_daily_rollups"] == {"cost_tracking"}
    # priced as costing prices them, from the landing: beside costing, not after it
    assert deps["cost_reconciliation"] == {"relaycore_usage", "auterity_spans", "price_book"}
    assert deps["budget_status"] == {"budget_configs", "cost_tracking"}
    assert deps["budget_alerts"] == {"budget_status"}
    assert deps["model_selection_table"] == {"model_quality_stats", "price_book"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 40, key
        assert node.owners and node.kinds, key
        assert node.group_name in {
            "pricing",
            "ingestion",
            "costs",
            "reconciliation",
            "budgets",
            "selection",
            "exports",
            "operations",
        }
        if node.group_name == "operations":  # maintenance (retention): it writes no table of its own
            continue
        schema = node.metadata["dagster/column_schema"]
        if "table" in node.metadata:  # a warehouse table: the UI's schema is the table's
            table = sa_schema.metadata.tables[node.metadata["table"]]
            assert [c.name for c in schema.columns] == [c.name for c in table.columns], key
        else:
            assert len(schema.columns) > 10, key
    checks = {c.name for c in graph.asset_check_keys}
    assert {
        "relaycore_valid",
        "auterity_valid",
        "cost_non_negative",
        "unpriced_share",
        "dollars_at_risk_share",
    } <= checks
    assert defs.resolve_job_def(DAILY_JOB).partitions_def is not None
    assert defs.resolve_schedule_def("daily_usage_schedule") and defs.resolve_sensor_def("drop_files_sensor")


def test_dagster_definitions_validate_cli(tmp_path: Path) -> None:
    env = {**os.environ, "CAMS_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "DAGSTER_HOME": str(tmp_path)}
    env.pop("CAMS_CONFIG", None)
    out = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Validation successful" in out.stderr + out.stdout


def test_stage_watcher_prints_a_stage_s_day_with_its_time_left() -> None:
    """A stage's `progress: day N of M` log line, printed with the stage's time left (from its pace so far)."""
    from types import SimpleNamespace

    from pipelines.progress import StageWatcher

    said: list[str] = []
    watcher = StageWatcher(None, "run", ["relaycore_usage", "cost_tracking"], 30, said.append)  # type: ignore[arg-type]
    watcher.started["cost_tracking"] = 100.0
    for day, at in ((10, 110.0), (30, 131.0)):
        entry = SimpleNamespace(
            step_key="cost_tracking", user_message=f"progress: day {day} of 30 (x), 5 rows", timestamp=at
        )
        watcher._within_stage(entry)
    assert said == [
        "[2/2] cost_tracking: day 10 of 30 (x), 5 rows, about 20 s left in this stage",
        "[2/2] cost_tracking: day 30 of 30 (x), 5 rows",
    ]
    watcher._within_stage(SimpleNamespace(step_key="cost_tracking", user_message="landed 5 rows", timestamp=132.0))
    assert len(said) == 2  # other log lines are not progress


def test_materialize_range_files_twice_same_totals(db_url, instance, tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    write_drops(small_sim, tmp_path / "drop")
    defs = build_definitions(files_cfg(tmp_path / "drop"), db_url)
    said: list[str] = []
    summary = run_range(sim_days[0], sim_days[-1], instance, defs, progress=said.append)
    truth = [small_sim.faults.day(d) for d in sim_days]
    rc = summary["records"]["relaycore"]
    assert rc["accepted"] == sum(t["requests"] for t in truth)
    assert rc["duplicates"] == sum(t["duplicates"] for t in truth)
    assert rc["quarantined"] == sum(t["malformed"] for t in truth)
    assert rc["read"] == rc["accepted"] + rc["duplicates"] + rc["quarantined"]
    assert summary["unpriced_requests"] == sum(t["unpriced"] for t in truth)
    assert summary["reconciliation"] == {c: sum(t[f"expect_{c}"] for t in truth) for c in CATEGORIES}
    assert Decimal(summary["cost_usd"]) > 0
    # RelayCore's charge equals the book except the injected drift and the unpriced model's guess
    assert Decimal(summary["relaycore_charged_usd"]) > Decimal(summary["cost_usd"])
    # A single-run backfill: one run covered both partitions
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=BACKFILL_JOB))
    assert len(runs) == 1 and runs[0].tags["dagster/asset_partition_range_end"] == sim_days[-1].isoformat()
    mats = instance.fetch_materializations(dg.AssetKey("cost_tracking"), limit=10).records
    assert {m.partition_key for m in mats} == {d.isoformat() for d in sim_days}
    # the GX checks ran in the database over the whole range and passed, on every landed row
    evals = {
        e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
        for e in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    assert all(evals[c].passed for c in ("relaycore_valid", "auterity_valid", "cost_non_negative"))
    assert evals["relaycore_valid"].metadata["rows"].value == str(rc["accepted"])
    # two days in one run: their ids' uniqueness was scanned (one day's is held by the key, test_checks)
    assert evals["relaycore_valid"].metadata["expect_column_values_to_be_unique(request_id)"].value == "ok"
    # progress per stage, on the terminal and in the run's own log; the second run's ETA from the first
    stages = [line for line in said if line.startswith("[") and ": day " not in line]
    # inside the long stages, the day each has reached (the stage's own log lines); one chunk here, so the last
    within = [line for line in said if ": day " in line]
    n_days, last = len(sim_days), sim_days[-1].isoformat()
    for n, step in ((4, "cost_tracking"), (3, "cost_reconciliation")):
        assert any(line.startswith(f"[{n}/6] {step}: day {n_days} of {n_days} ({last}), ") for line in within), within
    steps = ["auterity_spans", "relaycore_usage", "cost_reconciliation", "cost_tracking", "cost_daily_rollups"]
    for n, step in enumerate([*steps, "focus_export"], start=1):
        assert any(line.startswith(f"[{n}/6] {step}: started on {len(sim_days)} day(s)") for line in stages), stages
        assert any(line.startswith(f"[{n}/6] {step}: done in") for line in stages), stages
    logged = [
        e.dagster_event.message or ""
        for e in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if e.dagster_event is not None
    ]
    assert sum("cams run progress: [" in m for m in logged) == len(stages)
    own = [e.user_message for e in instance.all_logs(runs[0].run_id) if e.user_message.startswith("progress: day ")]
    assert len(own) >= len(within) and all(any(o[len("progress: ") :] in line for line in within) for o in own)
    said.clear()
    again = run_range(sim_days[0], sim_days[-1], instance, defs, progress=said.append)
    assert all("left" in line for line in said if line.startswith("[") and ": started" in line), said
    engine = defs.resources["warehouse"].engine()
    assert again["cost_usd"] == summary["cost_usd"] and again["records"] == summary["records"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from cost_tracking")).scalar_one() == rc["accepted"]
        # steering rollups: every costed request once (after the re-run too), its rule and fallback kept
        steering = conn.execute(
            sa.text(
                "select sum(requests), sum(case when fallback then requests else 0 end), sum(cost_usd)"
                " from steering_daily_rollups"
            )
        ).one()
        truth_fb = conn.execute(
            sa.text(
                "select count(*) from cost_tracking c join relaycore_usage u"
                " on u.day = c.day and u.request_id = c.request_id where u.fallback_from is not null"
            )
        ).scalar_one()
        rules = set(conn.execute(sa.text("select distinct steering_rule from steering_daily_rollups")).scalars())
    assert steering[0] == rc["accepted"] and steering[1] == truth_fb > 0
    assert Decimal(str(steering[2])).quantize(Decimal("1e-6")) == Decimal(summary["cost_usd"]).quantize(Decimal("1e-6"))
    assert None in rules and "cheapest-ok" in rules  # the simulator's rules, and requests without one


def _run_times(instance: dg.DagsterInstance, job: str) -> tuple[float, float]:
    (record,) = instance.get_run_records(filters=dg.RunsFilter(job_name=job))
    return record.start_time, record.end_time


def test_budgets_and_selection_run_beside_reconciliation(
    db_url, instance, tmp_path, small_sim, sim_days, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL (threads executor) budgets and selection start once costs and spans are in, while
    reconciliation (held here for 3 s) still runs; on SQLite (in-process) they wait for the backfill. Either
    way the answers are the same, and a reconciliation that then fails is what the command reports."""
    import assets.reconciliation
    from pipelines.runner import RunFailed

    real = assets.reconciliation.reconcile_partition
    broken = {"now": False}

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(3)
        if broken["now"]:
            raise ValueError("reconciliation broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(assets.reconciliation, "reconcile_partition", slow)
    write_drops(small_sim, tmp_path / "drop")
    defs = build_definitions(files_cfg(tmp_path / "drop"), db_url)
    summary = run_range(sim_days[0], sim_days[-1], instance, defs)
    assert summary["reconciliation"] == {
        c: sum(small_sim.faults.day(d)[f"expect_{c}"] for d in sim_days) for c in CATEGORIES
    }
    _, backfill_end = _run_times(instance, BACKFILL_JOB)
    budgets_start, _ = _run_times(instance, "budget_job")
    selection_start, selection_end = _run_times(instance, "selection_job")
    if db_url.startswith("postgresql"):
        assert budgets_start < selection_start < backfill_end and selection_end is not None
    else:
        assert backfill_end <= budgets_start
    broken["now"] = True
    with pytest.raises(RunFailed, match="reconciliation broke"):
        run_range(sim_days[0], sim_days[-1], instance, defs)


def test_materialize_from_the_http_apis(db_url, instance, tmp_path, small_sim, sim_days, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("T_RC_KEY", "rk")
    monkeypatch.setenv("T_AU_KEY", "ak")
    served = serve(small_sim, "rk", "ak")
    try:
        cfg = cams_config.parse(
            {
                "sources": {
                    "relaycore": {
                        "mode": "api",
                        "base_url": served.relaycore.base_url,
                        "api_key_env": "T_RC_KEY",
                        "page_size": 100,
                    },
                    "auterity": {
                        "mode": "api",
                        "base_url": served.auterity.base_url,
                        "api_key_env": "T_AU_KEY",
                        "page_size": 100,
                    },
                },
                "partitions": {"start_date": "2026-03-01"},
            }
        )
        defs = build_definitions(cfg, db_url)
        summary = run_range(sim_days[0], sim_days[-1], instance, defs)
    finally:
        served.stop()
    truth = [small_sim.faults.day(d) for d in sim_days]
    assert summary["records"]["relaycore"]["accepted"] == sum(t["requests"] for t in truth)
    spans = summary["records"]["auterity"]
    assert spans["accepted"] == sum(t["requests"] - t["missing_span"] + t["orphan_span"] for t in truth)
    assert summary["reconciliation"] == {c: sum(t[f"expect_{c}"] for t in truth) for c in CATEGORIES}


def test_a_failing_source_fails_the_run_and_is_recorded(db_url, instance, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from pipelines.runner import RunError

    monkeypatch.setenv("T_RC_KEY", "wrong")
    cfg = cams_config.parse(
        {
            "sources": {
                "relaycore": {
                    "mode": "api",
                    "base_url": "http://127.0.0.1:9",
                    "api_key_env": "T_RC_KEY",
                    "max_retries": 1,
                }
            },
            "partitions": {"start_date": "2026-03-01"},
        }
    )
    defs = build_definitions(cfg, db_url)
    with pytest.raises(RunError, match="relaycore"):
        run_range(date(2026, 3, 2), date(2026, 3, 2), instance, defs)
    with defs.resources["warehouse"].engine().connect() as conn:
        status = conn.execute(sa.text("select status from cost_sync_history where source='relaycore'")).scalars().all()
    assert status == ["failed"]


def test_drop_files_sensor_with_cursor(tmp_path: Path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    dirs = write_drops(small_sim, tmp_path / "drop")
    defs = build_definitions(files_cfg(tmp_path / "drop"), f"sqlite:///{tmp_path / 'w.db'}")
    sensor = defs.resolve_sensor_def("drop_files_sensor")
    resources = {k: defs.resources[k] for k in ("relaycore", "auterity")}
    with dg.instance_for_test() as inst:
        first = sensor(dg.build_sensor_context(instance=inst, resources=resources))
        keys = sorted(r.partition_key for r in first.run_requests)
        # the late files of the last day hold that day's records: no day outside the simulation
        assert keys == [d.isoformat() for d in sim_days]
        cursor = first.cursor
        again = sensor(dg.build_sensor_context(instance=inst, cursor=cursor, resources=resources))
        assert isinstance(again, dg.SkipReason)
        # one new file for the second day only
        line = json.dumps({**small_sim.relaycore[-1], "request_id": "late-arrival"})
        (dirs["relaycore"] / "extra.jsonl").write_text(line + "\n")
        third = sensor(dg.build_sensor_context(instance=inst, cursor=cursor, resources=resources))
        assert [r.partition_key for r in third.run_requests] == [sim_days[-1].isoformat()]
        assert third.run_requests[0].run_key not in {r.run_key for r in first.run_requests}


def test_daily_schedule_rechecks_the_trailing_window(tmp_path: Path) -> None:
    cfg = cams_config.parse(
        {**json.loads(json.dumps({"partitions": {"start_date": "2026-04-08"}})), "reconciliation": {"trailing_days": 3}}
    )
    defs = build_definitions(cfg, f"sqlite:///{tmp_path / 'w.db'}")
    schedule = defs.resolve_schedule_def("daily_usage_schedule")
    with dg.instance_for_test() as inst:
        for when, expected in [
            (datetime(2026, 4, 20, 0, 15, tzinfo=UTC), ("2026-04-17", "2026-04-19")),
            (datetime(2026, 4, 10, 0, 15, tzinfo=UTC), ("2026-04-08", "2026-04-09")),
        ]:
            ctx = dg.build_schedule_context(
                instance=inst, repository_def=defs.get_repository_def(), scheduled_execution_time=when
            )
            (req,) = schedule.evaluate_tick(ctx).run_requests
            assert (
                req.tags["dagster/asset_partition_range_start"],
                req.tags["dagster/asset_partition_range_end"],
            ) == expected


def test_cams_run_cli_json(tmp_path: Path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    """The command a cron runs: headless, one JSON object as its last line, errors as one line."""
    write_drops(small_sim, tmp_path / "drop")
    (tmp_path / "cams.yaml").write_text(
        json.dumps(
            {
                "sources": {
                    s: {"mode": "files", "drop_dir": str(tmp_path / "drop" / s)} for s in ("relaycore", "auterity")
                },
                "partitions": {"start_date": "2026-03-01"},
            }
        )
    )
    env = {
        **os.environ,
        "CAMS_CONFIG": str(tmp_path / "cams.yaml"),
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "CAMS_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
    }
    (tmp_path / "dh").mkdir()
    cams = str(Path(sys.executable).with_name("cams"))
    out = subprocess.run(
        [cams, "run", "--start", sim_days[0].isoformat(), "--end", sim_days[-1].isoformat(), "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(summary) >= {
        "start",
        "end",
        "records",
        "cost_usd",
        "relaycore_charged_usd",
        "unpriced_requests",
        "reconciliation",
        "alerts_fired",
        "budgets",
    }
    assert summary["records"]["relaycore"]["accepted"] == sum(small_sim.faults.day(d)["requests"] for d in sim_days)
    assert Decimal(summary["cost_usd"]) > 0 and isinstance(summary["cost_usd"], str)
    bad = subprocess.run(
        [cams, "run", "--start", "2026-03-05", "--end", "2026-03-01"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "before" in bad.stderr and "Traceback" not in bad.stderr


def test_relaycore_api_poll_sensor_with_cursor(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from cams.simulator.generate import SimConfig, generate
    from cams.simulator.servers import FakeApi

    monkeypatch.setenv("T_RC_KEY", "rk")
    today = datetime.now(UTC).date()
    # usage on both days, so the first 24 h window holds records whatever the time of day
    sim = generate(SimConfig(days=[today - timedelta(days=1), today], requests_per_day=50))
    with FakeApi("relaycore", sim.relaycore, key="rk") as api:
        cfg = cams_config.parse(
            {
                "sources": {
                    "relaycore": {"mode": "api", "base_url": api.base_url, "api_key_env": "T_RC_KEY", "poll_lag_s": 0}
                },
                "partitions": {"start_date": (today - timedelta(days=5)).isoformat()},
            }
        )
        defs = build_definitions(cfg, f"sqlite:///{tmp_path / 'w.db'}")
        resources = {"relaycore": defs.resources["relaycore"]}
        with dg.instance_for_test() as inst:  # resolve inside: Dagster keeps a global weakref to the instance
            sensor = defs.resolve_sensor_def("relaycore_api_sensor")
            first = sensor(dg.build_sensor_context(instance=inst, resources=resources))
            assert {r.partition_key for r in first.run_requests} == {
                (today - timedelta(days=1)).isoformat(),
                today.isoformat(),
            }
            quiet = sensor(dg.build_sensor_context(instance=inst, cursor=first.cursor, resources=resources))
            assert quiet.run_requests == [] and quiet.cursor > first.cursor
            api.api.add(
                [
                    {
                        **sim.relaycore[0],
                        "request_id": "fresh",
                        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    }
                ]
            )
            fresh = sensor(dg.build_sensor_context(instance=inst, cursor=quiet.cursor, resources=resources))
            assert [r.partition_key for r in fresh.run_requests] == [today.isoformat()]


@pytest.mark.parametrize("mode", ["files", "api"])
def test_cost_data_webhook_to_ingestion(db_url, tmp_path, monkeypatch, small_sim, mode) -> None:  # type: ignore[no-untyped-def]
    """In files mode the event becomes a drop file; in api mode a file of the inbox the landing reads
    beside the API: either way the event's records land exactly once."""
    from fastapi.testclient import TestClient

    from cams import signing
    from cams.api.app import create_app

    monkeypatch.setenv("CAMS_WEBHOOK_SECRET", "whsec")
    drop = tmp_path / "drop"
    served = None
    if mode == "files":
        defs = build_definitions(files_cfg(drop), db_url)
    else:
        monkeypatch.setenv("T_RC_KEY", "rk")
        served = serve(small_sim, "rk", "ak")
        cfg = cams_config.parse(
            {
                "sources": {
                    "relaycore": {
                        "mode": "api",
                        "base_url": served.relaycore.base_url,
                        "api_key_env": "T_RC_KEY",
                        "inbox_dir": str(tmp_path / "inbox"),
                    },
                    "auterity": {"mode": "files", "drop_dir": str(drop / "auterity")},
                },
                "partitions": {"start_date": "2026-03-01"},
            }
        )
        defs = build_definitions(cfg, db_url)
    engine = defs.resources["warehouse"].engine()
    good = {
        "request_id": "wh-1",
        "timestamp": "2026-03-04T10:00:00Z",
        "org_id": "acme",
        "task_type": "chat",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 1000,
        "output_tokens": 500,
        "status": "success",
        "cost_usd": "0.00045",
    }
    raw = json.dumps({"event_id": "ev-42", "records": [good, {**good, "request_id": "wh-2", "input_tokens": -1}]})
    with TestClient(create_app(engine, refresh_s=60)) as client:
        r = client.post(
            "/api/v1/webhooks/cost-data",
            content=raw.encode(),
            headers={"X-CAMS-Signature": signing.sign("whsec", raw.encode())},
        )
        assert r.json()["status"] == "stored"
    resources = {k: defs.resources[k] for k in ("relaycore", "warehouse")}
    with dg.instance_for_test() as inst:
        sensor = defs.resolve_sensor_def("webhook_events_sensor")
        first = sensor(dg.build_sensor_context(instance=inst, resources=resources))
        assert [r.partition_key for r in first.run_requests] == ["2026-03-04"]
        assert isinstance(sensor(dg.build_sensor_context(instance=inst, resources=resources)), dg.SkipReason)
        summary = run_range(date(2026, 3, 4), date(2026, 3, 4), inst, defs)
        if served is not None:
            served.stop()
            assert list((tmp_path / "inbox").glob("webhook-*.jsonl"))  # the api mode's inbox, not a drop dir
    assert summary["records"]["relaycore"] == {"read": 2, "accepted": 1, "duplicates": 0, "quarantined": 1}
    assert Decimal(summary["cost_usd"]) == Decimal("0.00045")


def test_the_warehouse_url_reaches_dagster_by_name_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment's database URL (with its password) is an EnvVar: the UI and run config show the
    variable's name, and the resource resolves it inside a run."""
    url = f"sqlite:///{tmp_path / 'w.db'}?secret=hunter2"
    monkeypatch.setenv("CAMS_DATABASE_URL", url)
    defs = build_definitions(files_cfg(tmp_path))
    warehouse = defs.resources["warehouse"]
    assert isinstance(warehouse.database_url, dg.EnvVar)
    assert warehouse.database_url.env_var_name == "CAMS_DATABASE_URL"
    with warehouse.engine().connect() as conn:  # resolved outside a run too (the `cams run` summary)
        assert conn.execute(sa.text("select count(*) from price_versions")).scalar_one() >= 0
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("price_book_job").execute_in_process(instance=instance).success
    with sa.create_engine(url.split("?")[0]).connect() as conn:
        assert conn.execute(sa.text("select count(*) from price_versions")).scalar_one() >= 1


def test_automation_conditions_state_the_nightly_chains(tmp_path: Path) -> None:
    """The price book at 00:00 UTC and the selection assets at 01:30, whether or not data arrived;
    nothing in between; evaluated as the daemon's automation_sensor evaluates them."""
    defs = build_definitions(files_cfg(tmp_path), database_url=f"sqlite:///{tmp_path / 'w.db'}")
    selection = {"model_quality_stats", "model_selection_table", "savings_report", "token_calibration"}
    with dg.instance_for_test() as instance:
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        cursor, requested = None, {}
        for hhmm in ("2026-06-01T23:50", "2026-06-02T00:00:30", "2026-06-02T00:40", "2026-06-02T01:30:30"):
            result = dg.evaluate_automation_conditions(
                defs, instance, evaluation_time=datetime.fromisoformat(f"{hhmm}+00:00"), cursor=cursor
            )
            cursor = result.cursor
            requested[hhmm] = {k.to_user_string() for k in keys if result.get_requested_partitions(k)}
    assert requested["2026-06-01T23:50"] == set()
    assert requested["2026-06-02T00:00:30"] == {"price_book"}
    assert requested["2026-06-02T00:40"] == set()
    assert requested["2026-06-02T01:30:30"] == selection
    assert isinstance(defs.resolve_sensor_def("automation_sensor"), dg.AutomationConditionSensorDefinition)


def test_every_schedule_sensor_and_automated_asset_is_documented(tmp_path: Path) -> None:
    """docs/operations.md's table names everything that launches runs on its own."""
    defs = build_definitions(files_cfg(tmp_path), database_url=f"sqlite:///{tmp_path / 'w.db'}")
    with dg.instance_for_test():  # resolve inside: Dagster keeps a global weakref to the instance
        graph = defs.resolve_asset_graph()
        automated = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    names = {s.name for s in defs.schedules or []} | {s.name for s in defs.sensors or []} | automated
    text = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    assert {"automation_sensor", "price_book", "model_selection_table"} <= names
    assert sorted(n for n in names if f"`{n}`" not in text) == []
