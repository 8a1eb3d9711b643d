"""`cams run` itself on a generated day: the figure a user gets, not a bench that calls the functions.

    .venv/bin/python bench/run_day.py [--sizes 250000,1000000,2000000] [--executors threads,in_process,multiprocess]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--against DIR --repeat N]

For each size the day's drop files are written first (not timed; the same generator as
bench/pipeline_day.py: a simulated 50,000-request day repeated with fresh ids). Then, for each executor,
`cams run --start DAY --end DAY --json` runs as a subprocess on a fresh PostgreSQL warehouse and a fresh
Dagster home, exactly as a user runs it. Printed: wall time, peak memory of the whole process tree (the
run's process and every step process it starts, sampled every 0.1 s from /proc: RSS summed, which
counts the pages forked step processes share once per process, and PSS, which shares them out),
how busy the whole machine's cores were over the run (`/proc/stat`: the run, PostgreSQL and anything
else; what a run at 77 % leaves for overlap to win is the rest), each step's time from the run's own
event log, and a timeline: when each step of the backfill and of the jobs around it started and ended,
beside the machine's busy cores each second (where the idle is). The first line names the machine and
the time: machine kinds here differ 2-3x.

`--history N` times a day the way a warehouse in use runs it: a first run of the day (not timed),
then the day's costed requests, spans, rollups, spend per quarter hour and savings sums copied into the
N days before it (times and days shifted, ids kept: they are unique per day), then `cams run` of the day
again, timed. What reads back over the history (budgets over their period and 28 days of forecast
history, quality stats and savings over 30 days) then shows. `--budgets` puts four budgets in the config
(two orgs monthly, a team weekly, a user daily), as a warehouse in use has: a fresh warehouse with no
budgets evaluates none. `--estimates` (with `--history`) records a token estimate for every request of
the day before the timed run, as `cams serve` does for a selection with a prompt and request id
(`token_estimates`; each within ±20 % of the billed count): token calibration then matches them to the
day's requests and to the copies in the days before, which keep the ids (one match per request per day).

`--against DIR` times another checkout side by side in the same sitting (`git worktree add /tmp/base
REF`; its code on PYTHONPATH ahead of this one, the same venv), alternating with this tree `--repeat`
times: on a shared, noisy machine only such pairs compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the Dagster code location is imported from the project folder
sys.path.insert(0, str(ROOT / "bench"))

from pipeline_day import DAY, write_day  # noqa: E402
from scratch_db import scratch_database  # noqa: E402


def _tree_memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of `pid` and all its descendants, from /proc. RSS counts a page shared by forked step
    processes once per process; PSS divides it among them: what the tree really holds."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, pss, stack = 0, 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total / 2**20, pss / 2**20


def _cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of the whole machine since boot, from /proc/stat's first line."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(v), v[3] + v[4]  # idle and iowait


def machine() -> str:
    """What the figures were measured on: machine kinds differ 2-3x here, so a figure names its machine."""
    import platform

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{when}; {os.cpu_count()} x {cpu}, {mem:.0f} GiB; Python {platform.python_version()}"


BUDGETS = [
    {"id": "acme-monthly", "scope": "org", "scope_id": "acme", "period": "monthly", "amount_usd": 500000},
    {"id": "globex-monthly", "scope": "org", "scope_id": "globex", "period": "monthly", "amount_usd": 300000},
    {
        "id": "acme-search-weekly",
        "scope": "team",
        "scope_id": "search",
        "org_id": "acme",
        "period": "weekly",
        "amount_usd": 50000,
        "timezone": "America/New_York",
    },
    {
        "id": "initech-core-u1-daily",
        "scope": "user",
        "scope_id": "initech-core-u1",
        "org_id": "initech",
        "period": "daily",
        "amount_usd": 500,
        "timezone": "Asia/Kolkata",
    },
]
# the savings report's kept sums too: a warehouse in use priced its earlier days the run before
HISTORY_TABLES = (
    "cost_tracking",
    "auterity_spans",
    "cost_daily_rollups",
    "spend_quarter_hours",
    "savings_day_groups",
    "quality_day_values",
)


def run_cams(
    workdir: Path,
    drop: Path,
    url: str,
    executor: str,
    profile: Path | None = None,
    code: Path | None = None,
    budgets: bool = False,
) -> dict[str, Any]:
    home = workdir / f"home-{executor}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    cfg = workdir / f"cams-{executor}.yaml"
    cfg.write_text(
        json.dumps(
            {
                "sources": {
                    "relaycore": {"mode": "files", "drop_dir": str(drop / "relaycore")},
                    "auterity": {"mode": "files", "drop_dir": str(drop / "auterity")},
                },
                "partitions": {"start_date": "2026-01-01"},
                "execution": {"executor": executor},
                **({"budgets": BUDGETS} if budgets else {}),
            }
        )
    )
    env = {**os.environ, "CAMS_CONFIG": str(cfg), "CAMS_DATABASE_URL": url, "DAGSTER_HOME": str(home)}
    if code is not None:  # another checkout's code, ahead of this tree's editable install
        env["PYTHONPATH"] = str(code)
    cmd = [str(ROOT / ".venv" / "bin" / "cams"), "run", "--start", DAY.isoformat(), "--end", DAY.isoformat(), "--json"]
    if profile is not None:  # py-spy samples the run and every step process; collapsed stacks to `profile`
        spy = str(ROOT / ".venv" / "bin" / "py-spy")
        cmd = [spy, "record", "--subprocesses", "--rate", "40", "--format", "raw", "-o", str(profile), "--", *cmd]
    peak, done, busy = [0.0, 0.0], threading.Event(), []
    ticks0 = _cpu_ticks()
    t0, started_at = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir)

    def sample() -> None:
        last, n = ticks0, 0
        while not done.wait(0.1):
            now = _tree_memory_mib(proc.pid)
            peak[0], peak[1] = max(peak[0], now[0]), max(peak[1], now[1])
            n += 1
            if n % 10 == 0:  # the machine's busy cores over each second
                ticks = _cpu_ticks()
                cores = os.cpu_count() or 1
                busy.append(round(cores * (1 - (ticks[1] - last[1]) / max(1, ticks[0] - last[0])), 1))
                last = ticks

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    ticks1 = _cpu_ticks()
    done.set()
    sampler.join()
    if proc.returncode:
        print(err[-3000:], file=sys.stderr)
        raise SystemExit(f"cams run failed ({executor})")
    summary = json.loads(next(line for line in reversed(out.strip().splitlines()) if line.startswith("{")))
    return {
        "wall_s": round(wall, 1),
        # the whole machine's busy share of its cores over the run (the run, PostgreSQL, anything else):
        # what is left for overlap to win
        "machine_busy": round(1 - (ticks1[1] - ticks0[1]) / max(1, ticks1[0] - ticks0[0]), 2),
        "peak_mib": round(peak[0]),
        "peak_pss_mib": round(peak[1]),
        "steps_s": step_times(home),
        # when each step of the backfill and the jobs around it ran (seconds from the command's start), and
        # how many of the machine's cores were busy each second: where the idle is
        "timeline": timeline(home, started_at),
        "busy_cores_per_s": busy,
        "after_s": job_step_times(home),  # price book, budgets, selection (quality, savings) around the backfill
        "accepted": summary["records"]["relaycore"]["accepted"],
        # what each budget came to: two trees must agree
        "budget_figures": {
            b["budget_id"]: [b["state"], b["spent_usd"], b["forecast_usd"]] for b in summary.get("budgets", [])
        },
        "quality_stats_digest": quality_digest(url),  # the same spans must give the same stats, to the bit
    }


def quality_digest(url: str) -> str:
    """A digest of model_quality_stats as the run left it (every column but when it was computed)."""
    import hashlib

    import sqlalchemy as sa

    from cams.warehouse.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM model_quality_stats ORDER BY model, task_type")).mappings().all()
    finally:
        engine.dispose()
    body = repr([sorted((k, v) for k, v in r.items() if k != "computed_at") for r in rows])
    return f"{len(rows)} rows, sha256 {hashlib.sha256(body.encode()).hexdigest()[:16]}"


def step_times(home: Path) -> dict[str, float]:
    """Each step's seconds in the newest backfill_job run of that Dagster home (its event log)."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    from pipelines.progress import step_seconds_per_day

    with dg.DagsterInstance.get() as instance:
        return {k: round(v, 1) for k, v in step_seconds_per_day(instance, "backfill_job").items()}


def timeline(home: Path, since: float) -> dict[str, list[float]]:
    """Each step's [start, end] in seconds from `since`, for the runs of that Dagster home since then (its
    event log; the home holds the earlier runs of the same executor too)."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    out: dict[str, list[float]] = {}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id, of_type=kinds):
                event = entry.dagster_event
                if event is not None and event.step_key is not None and entry.timestamp >= since:
                    out.setdefault(event.step_key, []).append(round(entry.timestamp - since, 1))
    return dict(sorted(out.items(), key=lambda kv: kv[1][0]))


def job_step_times(
    home: Path, jobs: tuple[str, ...] = ("price_book_job", "budget_job", "selection_job")
) -> dict[str, float]:
    """Each step's seconds in the newest run of each of `jobs` (the ones `cams run` launches around the
    backfill, as of the range's end: no range tags, so not in step_times)."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    from pipelines.progress import step_seconds

    out: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        for job in jobs:
            for run in instance.get_runs(dg.RunsFilter(job_name=job), limit=1):
                out.update({k: round(v, 1) for k, v in step_seconds(instance, run.run_id).items()})
    return out


def clone_history(url: str, days: int) -> float:
    """Copy DAY's rows of HISTORY_TABLES into each of the `days` days before it (every time and date
    shifted by whole days, a quarter hour number by 96 a day); the seconds it took. The columns are the
    database's own, not this tree's: an --against tree may have an older schema. Not timed as part of a run."""
    from datetime import UTC, datetime, timedelta

    from cams.warehouse import schema as t
    from cams.warehouse.db import make_engine
    from cams.warehouse.partitions import analyze_days, prepare_days

    engine = make_engine(url)
    t0 = time.perf_counter()
    try:
        for name in HISTORY_TABLES:
            with engine.connect() as conn:  # a tree from before the table (--against) has none
                found = conn.exec_driver_sql(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = %s AND table_schema = current_schema() ORDER BY ordinal_position",
                    (name,),
                ).all()
            if not found:
                continue
            table = t.metadata.tables[name]
            prepare_days(engine, table, [DAY - timedelta(days=k) for k in range(1, days + 1)])
            cols = ", ".join(f'"{c}"' for c, _ in found)
            for k in range(1, days + 1):
                exprs = ", ".join(
                    f"\"{c}\" - interval '{k} days'"
                    if kind.startswith("timestamp")
                    else f'"{c}" - {k}'
                    if kind == "date"
                    else f'"{c}" - {k * 96}'  # quarter hours since 1970
                    if c == "quarter"
                    else f'"{c}"'
                    for c, kind in found
                )
                with engine.begin() as conn:
                    conn.exec_driver_sql(
                        f'INSERT INTO "{name}" ({cols}) SELECT {exprs} FROM "{name}" WHERE day = %s', (DAY,)
                    )
            with engine.begin() as conn:
                analyze_days(conn, table, DAY - timedelta(days=days), DAY + timedelta(days=1))
        with engine.begin() as conn:  # each copied day was landed: its own Auterity landing, shifted
            for k in range(1, days + 1):
                landing = conn.exec_driver_sql(
                    "INSERT INTO cost_sync_history (source, window_start, window_end, mode, read, accepted, "
                    "duplicates, quarantined, status, detail, run_id, started_at, finished_at) "
                    f"SELECT source, window_start - interval '{k} days', window_end - interval '{k} days', mode, "
                    "read, accepted, duplicates, quarantined, status, detail, run_id, started_at, finished_at "
                    "FROM cost_sync_history WHERE source = 'auterity' AND status = 'success' AND window_start = %s "
                    "ORDER BY id DESC LIMIT 1 RETURNING id",
                    (datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC),),
                ).scalar_one()
                if _has_table(conn, "quality_day_values"):  # the kept counts of the copied day: of that landing
                    conn.exec_driver_sql(
                        "UPDATE quality_day_values SET landing = %s WHERE day = %s", (landing, DAY - timedelta(days=k))
                    )
    finally:
        engine.dispose()
    return time.perf_counter() - t0


def record_estimates(url: str) -> int:
    """A token estimate for each of DAY's costed requests, made when it was sent (see the module's doc)."""
    from cams.warehouse.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return conn.exec_driver_sql(
                "INSERT INTO token_estimates (request_id, model, family, encoding, raw_input_tokens, estimated_at) "
                "SELECT request_id, model, split_part(split_part(model, '/', -1), '-', 1), 'cl100k_base', "
                "greatest(1, round(input_tokens * (0.8 + (hashtext(request_id) & 1023) / 2560.0))), timestamp "
                "FROM cost_tracking WHERE day = %s ON CONFLICT DO NOTHING",
                (DAY,),
            ).rowcount
    finally:
        engine.dispose()


def _has_table(conn: Any, name: str) -> bool:
    return conn.exec_driver_sql("SELECT to_regclass(%s) IS NOT NULL", (name,)).scalar_one()


def disk_mib(url: str) -> dict[str, int]:
    """On-disk size (with indexes and TOAST) of each per-request table after the run, and of the database."""
    from cams.warehouse.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            out = {
                name: round(
                    conn.exec_driver_sql(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "WHERE c.relname LIKE %s AND c.relkind = 'r'",
                        (f"{name}%",),
                    ).scalar_one()
                    / 2**20
                )
                for name in ("relaycore_usage", "auterity_spans", "cost_tracking", "cost_reconciliation")
            }
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
            out["database"] = round(size / 2**20)
            return out
    finally:
        engine.dispose()


def hot_spots(collapsed: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, share of samples inside it, share in it itself) from py-spy's collapsed stacks, for
    the project's and its libraries' frames: where a run's time goes."""
    inside: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        frames = stack.split(";")
        for f in set(frames):
            inside[f] = inside.get(f, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    ranked = sorted(inside.items(), key=lambda kv: -kv[1])
    wanted = [(f, n) for f, n in ranked if "/cams/" in f or "/assets/" in f or "site-packages" in f][:top]
    return [(f, n / total, own.get(f, 0) / total) for f, n in wanted]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="250000,1000000,2000000")
    ap.add_argument("--executors", default="threads,in_process")
    ap.add_argument("--pg", default=os.environ.get("CAMS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--data", help="folder for the drop files (default: a temporary one)")
    ap.add_argument("--profile", help="folder for py-spy's collapsed stacks of each run (needs py-spy)")
    ap.add_argument("--against", type=Path, help="another checkout to time side by side, alternating with this one")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tree per size and executor")
    ap.add_argument("--history", type=int, default=0, help="days of history before the timed run (see above)")
    ap.add_argument("--budgets", action="store_true", help="four budgets in the config (see above)")
    ap.add_argument("--estimates", action="store_true", help="a token estimate for every request (see above)")
    a = ap.parse_args()
    results = []
    print(f"# {machine()}", flush=True)
    if a.data:
        Path(a.data).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=a.data) as tmp:
        for size in (int(s) for s in a.sizes.split(",")):
            drop = Path(tmp) / f"day-{size}"
            t0 = time.perf_counter()
            write_day(drop, size, Path(tmp) / "base")
            print(f"# {size:,} records written in {time.perf_counter() - t0:.0f} s (not timed)", flush=True)
            trees = [("this", None)] + ([(str(a.against), a.against.resolve())] if a.against else [])
            runs = [(e, tree) for e in a.executors.split(",") for _ in range(a.repeat) for tree in trees]
            for executor, (label, code) in runs:
                profile = Path(a.profile) / f"run-{size}-{executor}.txt" if a.profile else None
                with scratch_database(a.pg, "cams_runday") as url:
                    if a.history:
                        run_cams(Path(tmp), drop, url, executor, None, code, a.budgets)
                        took = clone_history(url, a.history)
                        print(f"# {a.history} days of history copied in {took:.0f} s (not timed)", flush=True)
                        if a.estimates:
                            print(f"# {record_estimates(url):,} token estimates recorded (not timed)", flush=True)
                    r = run_cams(Path(tmp), drop, url, executor, profile, code, a.budgets)
                    r["disk_mib"] = disk_mib(url)
                r.update(size=size, executor=executor, code=label, history=a.history, budgets=a.budgets)
                r["estimates"] = a.estimates
                results.append(r)
                print(json.dumps(r), flush=True)
                if profile is not None:
                    for f, inside, itself in hot_spots(profile):
                        print(f"  {inside:6.1%} {itself:6.1%}  {f}")
    print(
        "\n| size | executor | code | cams run wall | machine busy | peak RSS / PSS (tree) | steps | around them "
        "| warehouse on disk |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["steps_s"].items(), key=lambda kv: -kv[1]))
        disk = f"{r['disk_mib']['database']:,} MiB"
        peak = f"{r['peak_mib']:,} / {r['peak_pss_mib']:,} MiB"
        around = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["after_s"].items(), key=lambda kv: -kv[1]) if v >= 0.1)
        busy = f"{r['machine_busy']:.0%}"
        row = f"| {r['size']:,} | {r['executor']} | {r['code']} | {r['wall_s']:.1f} s | {busy} | {peak} | {steps} |"
        row += f" {around} |"
        print(f"{row} {disk} |")


if __name__ == "__main__":
    main()
