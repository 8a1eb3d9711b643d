"""Steps spread over worker processes through a real broker: `cams run` of 7 days with
`execution.executor: celery`, two `dagster-celery` workers on RabbitMQ (127.0.0.1:5672), Dagster's
storage and the warehouse on PostgreSQL, against the same days on the multiprocess executor (whose step
processes land the two sources side by side) and the simulator's truth."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cams.reconcile import CATEGORIES
from cams.simulator.drops import write_drops
from cams.simulator.generate import SimConfig, generate
from tests.conftest import PG_URL, fresh_pg_database, psycopg2_url
from tests.test_faults import totals

DAYS = [date(2026, 4, 6) + timedelta(days=i) for i in range(7)]
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
PG_ONLY = pytest.mark.parametrize("backend", [b for b in ("postgresql",) if PG_URL])


def _config(root: Path, executor: str) -> Path:
    cfg = {
        "sources": {s: {"mode": "files", "drop_dir": str(root / "drop" / s)} for s in ("relaycore", "auterity")},
        "partitions": {"start_date": "2026-04-01"},
        "execution": {"executor": executor, "celery": {"broker": BROKER, "backend": "rpc://"}},
    }
    path = root / f"cams-{executor}.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _home(root: Path, name: str, dagster_pg: str | None) -> Path:
    """A Dagster home: on PostgreSQL when workers must write the run's events from other processes."""
    home = root / name
    home.mkdir()
    storage = "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_PG_URL\n" if dagster_pg else ""
    (home / "dagster.yaml").write_text(storage + "telemetry:\n  enabled: false\n")
    return home


def _cams_run(env: dict[str, str], home: Path, days: list[date] = DAYS) -> dict:
    out = subprocess.run(
        [str(BIN / "cams"), "run", "--start", days[0].isoformat(), "--end", days[-1].isoformat(), "--json"],
        env={**env, "DAGSTER_HOME": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "DEBUG" not in out.stderr  # the step processes' own event lines stay out of the terminal
    return json.loads(out.stdout.strip().splitlines()[-1])


def _descendants(pid: int) -> set[int]:
    """`pid` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = set(), [pid]
    while stack:
        p = stack.pop()
        out.add(p)
        stack.extend(children.get(p, []))
    return out


def _step_pids(home: Path, env: dict[str, str]) -> dict[str, int]:
    """The process each step of the newest backfill_job run started in (its STEP_START event)."""
    with _environ({**env, "DAGSTER_HOME": str(home)}), dg.DagsterInstance.get() as instance:
        run = instance.get_runs(dg.RunsFilter(job_name="backfill_job"), limit=1)[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        return {
            e.dagster_event.step_key: e.dagster_event.pid
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if e.dagster_event is not None and e.dagster_event.step_key
        }


# Celery's own line once a worker consumes ("cams-test-1-…@host ready."), not any "ready" in the log: a
# failed start's traceback can say "already exists"
READY = re.compile(r"INFO/MainProcess\] \S+ ready\.$", re.MULTILINE)


def _logs(root: Path) -> str:
    """Both workers' log tails, for a failure's message."""
    return "\n".join(f"--- worker{n}.log\n{(root / f'worker{n}.log').read_text()[-3000:]}" for n in (1, 2))


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """`values` set in this process's environment for the block (Dagster reads its instance config from it)."""
    old = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def _broker_up() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=3).close()
    except OSError as exc:  # the machines run RabbitMQ as a service: its absence is a failure, not a skip
        pytest.fail(f"RabbitMQ is not reachable at 127.0.0.1:5672 ({exc}): start rabbitmq-server")


def _landings_overlap(home: Path) -> bool:
    """Whether the executor ran the two landing steps of the newest backfill_job run in `home` at the same
    time: each step's process launched (STEP_WORKER_STARTING) before the other's step finished. (Their
    STEP_START comes after the process has imported the code location; a small day's landing can finish
    within that time, so STEP_START would say more about import speed than about the executor.)"""
    spans: dict[str, list[float]] = {}
    with _environ({"DAGSTER_HOME": str(home)}), dg.DagsterInstance.get() as instance:
        run = instance.get_runs(dg.RunsFilter(job_name="backfill_job"), limit=1)[0]
        for e in instance.all_logs(run.run_id):
            ev = e.dagster_event
            if ev is None or ev.step_key not in ("relaycore_usage", "auterity_spans"):
                continue
            if ev.event_type in (dg.DagsterEventType.STEP_WORKER_STARTING, dg.DagsterEventType.STEP_SUCCESS):
                spans.setdefault(ev.step_key, []).append(e.timestamp)
    (a0, a1), (b0, b1) = spans["relaycore_usage"], spans["auterity_spans"]
    return a0 < b1 and b0 < a1


@PG_ONLY
def test_a_week_across_celery_workers_and_step_processes_gives_the_true_totals(backend: str, tmp_path: Path) -> None:
    """7 days through `cams run` on Celery (two workers on RabbitMQ, both take steps) and on the
    multiprocess executor (the two landings at once): the same records, dollars and categories, table by
    table, and the simulator's truth, which an in-process run also gives (tests/test_dagster.py)."""
    _broker_up()
    sim = generate(SimConfig(days=DAYS, seed=8, requests_per_day=150))
    write_drops(sim, tmp_path / "drop")
    with (
        fresh_pg_database("cams_cel_wh") as celery_wh,
        fresh_pg_database("cams_cel_dg") as dagster_db,
        fresh_pg_database("cams_mp_wh") as mp_wh,
    ):
        home = _home(tmp_path, "home-celery", dagster_db)
        # Dagster's storage made once, before the workers start: each would create it on the empty database at
        # the same moment, and dagster-postgres's retries on DuplicateTable can run out on a loaded machine
        with _environ({"DAGSTER_PG_URL": psycopg2_url(dagster_db)}):
            dg.DagsterInstance.from_config(str(home)).dispose()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),  # the workers import the code location (pipelines/) from the project
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # dagster-celery starts `celery` from PATH
            "DAGSTER_PG_URL": psycopg2_url(dagster_db),
            "DAGSTER_HOME": str(home),
            "CAMS_CONFIG": str(_config(tmp_path, "celery")),
            "CAMS_DATABASE_URL": celery_wh,
        }
        (tmp_path / "celery.yaml").write_text(
            json.dumps({"execution": {"config": {"broker": BROKER, "backend": "rpc://"}}})
        )
        workers = [
            subprocess.Popen(
                [
                    str(BIN / "dagster-celery"),
                    "worker",
                    "start",
                    "-A",
                    "dagster_celery.app",
                    "-y",
                    str(tmp_path / "celery.yaml"),
                    "-n",
                    f"cams-test-{n}-{os.getpid()}@%h",
                    "--",
                    "--concurrency",
                    "1",
                ],
                env=env,
                cwd=REPO,
                stdout=(tmp_path / f"worker{n}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for n in (1, 2)
        ]
        try:
            # meanwhile, the multiprocess executor on the same days
            mp_env = {**os.environ, "CAMS_CONFIG": str(_config(tmp_path, "multiprocess")), "CAMS_DATABASE_URL": mp_wh}
            mp_home = _home(tmp_path, "home-mp", None)
            multi = _cams_run(mp_env, mp_home)
            deadline = time.monotonic() + 120
            while not all(READY.search((tmp_path / f"worker{n}.log").read_text()) for n in (1, 2)):
                assert time.monotonic() < deadline, _logs(tmp_path)
                assert all(w.poll() is None for w in workers), _logs(tmp_path)
                time.sleep(0.5)
            spread = _cams_run(env, home)
            assert all(w.poll() is None for w in workers), _logs(tmp_path)
            pids = _step_pids(home, env)
            trees = [_descendants(w.pid) for w in workers]
        finally:
            for w in workers:
                os.killpg(w.pid, signal.SIGTERM)
            for w in workers:
                w.wait(timeout=60)
        # every step ran in a worker, and both workers took steps
        assert set(pids) >= {"relaycore_usage", "auterity_spans", "cost_tracking", "cost_reconciliation"}
        assert all(any(p in tree for tree in trees) for p in pids.values()), (pids, trees, _logs(tmp_path))
        assert all(any(p in tree for p in pids.values()) for tree in trees), (pids, trees, _logs(tmp_path))
        assert _landings_overlap(mp_home)  # the multiprocess executor landed both sources at once
        # the two executors agree table by table, and with what the simulator injected: exactly the figures
        # an in-process run gives (tests/test_dagster.py holds an in-process run to the same truth)
        for key in ("records", "cost_usd", "relaycore_charged_usd", "reconciliation", "unpriced_requests"):
            assert spread[key] == multi[key], key
        assert totals(celery_wh) == totals(mp_wh)
        truth = [sim.faults.day(d) for d in DAYS]
        rc = spread["records"]["relaycore"]
        assert rc["accepted"] == sum(t["requests"] for t in truth)
        assert rc["duplicates"] == sum(t["duplicates"] for t in truth)
        assert rc["quarantined"] == sum(t["malformed"] for t in truth)
        assert spread["unpriced_requests"] == sum(t["unpriced"] for t in truth)
        assert spread["reconciliation"] == {c: sum(t[f"expect_{c}"] for t in truth) for c in CATEGORIES}
