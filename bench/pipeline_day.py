"""One simulated day through the pipeline: landing, cost_tracking, data checks, rollups, reconciliation.

    .venv/bin/python bench/pipeline_day.py [--sizes 250000,1000000,2000000] [--backends sqlite,postgresql]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--litellm 1000000]

Each (backend, size) runs in a fresh process, so its peak memory (ru_maxrss) is its own. The day's
drop files are written first and not timed: a 50,000-request simulated day (with its duplicates,
late records, malformed lines, missing and orphan spans) is repeated with fresh request and span
ids until it holds `size` RelayCore records and about as many Auterity spans. Stages call the same
functions the Dagster assets call. With --litellm N, the same day's first N records are also costed
with `litellm.cost_per_token` one by one, next to CAMS's vectorized costing of the same rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

# the Dagster code location (assets/) is not installed: it is imported from the project folder
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from typing import Any

from scratch_db import scratch_database

DAY = date(2026, 6, 1)
BASE_REQUESTS = 50_000


def write_day(root: Path, size: int, base: Path) -> None:
    """Drop files for one day of about `size` records, from copies of one simulated base day."""
    from cams.simulator.drops import write_drops
    from cams.simulator.generate import SimConfig, generate

    if not base.exists():
        write_drops(generate(SimConfig(days=[DAY], requests_per_day=BASE_REQUESTS, seed=3)), base)
    copies = -(-size // BASE_REQUESTS)
    for source in ("relaycore", "auterity"):
        (root / source).mkdir(parents=True, exist_ok=True)
        for f in sorted((base / source).iterdir()):
            lines = f.read_text().splitlines()
            out = root / source / f.name
            with out.open("w") as w:
                for k in range(copies):
                    keep = (
                        lines if k < copies - 1 else lines[: len(lines) * (size - k * BASE_REQUESTS) // BASE_REQUESTS]
                    )
                    for line in keep:
                        if k:
                            line = line.replace('"req-', f'"r{k}-').replace('"span_id": "', f'"span_id": "{k:x}-')
                        w.write(line + "\n")
            st = f.stat()
            os.utime(out, (st.st_atime, st.st_mtime))


def rss_mib() -> float:
    """Peak resident memory of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec
    from the parent that forked us, so a child would report its parent's size as its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start a new VmHWM window, so the next stage's peak is its own (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_one(url: str, root: Path, litellm_n: int) -> dict[str, Any]:
    """All stages of one day on one warehouse, in this process."""
    import assets.gx_checks  # loaded with the code location in a Dagster run: setup, not a stage
    from cams.config import PricingConfig
    from cams.costing import cost_partition, rollup_partition
    from cams.pricing import store as pricebook_store
    from cams.pricing.quote import load_book
    from cams.reconcile import Tolerances, reconcile_partition
    from cams.sources.batch import Collector
    from cams.sources.files import collect_files, list_drop_files
    from cams.sources.landing import Stage, land
    from cams.warehouse.db import make_engine, migrate

    assets.gx_checks._context()
    engine = make_engine(url)
    migrate(engine)
    book = load_book(PricingConfig())
    pricebook_store.store(engine, book)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    end, nxt = start + timedelta(days=1), DAY + timedelta(days=1)
    stages: dict[str, float] = {}
    peak: dict[str, float] = {"setup": rss_mib()}
    own: dict[str, float] = {}  # each stage's own peak, when the kernel lets us reset VmHWM
    out: dict[str, Any] = {}

    def timed(name: str, fn: Any) -> Any:
        before = max(peak.values())
        resettable = reset_peak()
        t0 = time.perf_counter()
        result = fn()
        stages[name] = round(time.perf_counter() - t0, 2)
        if resettable:
            own[name] = round(rss_mib(), 1)
        peak[name] = round(max(before, rss_mib()), 1)
        return result

    for source in ("relaycore", "auterity"):

        def ingest(source: str = source) -> Any:
            with Stage(engine, source, start, end) as stage:  # as the landing asset does: rows leave in chunks
                c = Collector(source, start, end, stage)
                collect_files(c, list_drop_files(root / source))
                return land(engine, c.result, "files", stage=stage).counts

        out[source] = timed(f"land {source}", ingest)
    costs = timed("cost_tracking", lambda: cost_partition(engine, DAY, nxt, book))
    out["cost_usd"] = str(costs.cost_usd)
    out["checks"] = timed("data checks", lambda: data_checks(engine, start, end))
    out["rollup_rows"] = timed("rollups", lambda: rollup_partition(engine, DAY, nxt))
    recon = timed("reconciliation", lambda: reconcile_partition(engine, DAY, nxt, book, Tolerances()))
    out["reconciliation"] = recon.counts
    out["stages_s"] = stages
    out["total_s"] = round(sum(stages.values()), 2)
    out["peak_rss_mib"] = peak
    out["stage_peak_mib"] = own
    if litellm_n:
        out["litellm"] = litellm_ratio(engine, book, litellm_n)
    engine.dispose()
    return out


def data_checks(engine: Any, start: datetime, end: datetime) -> dict[str, bool]:
    """The assets' GX checks (relaycore_valid, auterity_valid, cost_non_negative), run as they run them."""
    from assets.costs import COST_EXPECTATIONS
    from assets.gx_checks import validate
    from assets.ingestion.assets import AUTERITY_EXPECTATIONS, RELAYCORE_EXPECTATIONS
    from cams.costing import priced_rows
    from cams.sources.landing import landed_rows

    def cols(expectations: list[Any]) -> list[str]:
        return sorted({e.column for e in expectations})

    checks = {
        "relaycore_valid": (landed_rows("relaycore", start, end, cols(RELAYCORE_EXPECTATIONS)), RELAYCORE_EXPECTATIONS),
        "auterity_valid": (landed_rows("auterity", start, end, cols(AUTERITY_EXPECTATIONS)), AUTERITY_EXPECTATIONS),
        "cost_non_negative": (priced_rows(start.date(), end.date(), cols(COST_EXPECTATIONS)), COST_EXPECTATIONS),
    }
    return {name: validate(engine, rows, expectations)[0] for name, (rows, expectations) in checks.items()}


def litellm_ratio(engine: Any, book: Any, n: int) -> dict[str, Any]:
    """The same rows costed by CAMS (vectorized) and by litellm.cost_per_token (one call per row)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    import pandas as pd
    from sqlalchemy import select

    from cams.costing import compute_costs
    from cams.warehouse import schema as t

    src = t.relaycore_usage
    cols = ["day", "request_id", "timestamp", "org_id", "team_id", "user_id", "task_type", "model", "provider"]
    cols += ["service_tier", "status", "input_tokens", "output_tokens", "cached_input_tokens"]
    cols += ["cache_creation_input_tokens", "reasoning_tokens"]
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(select(*(src.c[c] for c in cols)).limit(n)).all(), columns=cols)
    frame["charged_usd"] = 0.0
    t0 = time.perf_counter()
    cams = compute_costs(frame, book)
    cams_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    total, failed = 0.0, 0
    for model, inp, outp in zip(frame["model"], frame["input_tokens"], frame["output_tokens"], strict=True):
        try:
            a, b = litellm.cost_per_token(model=model, prompt_tokens=int(inp), completion_tokens=int(outp))
            total += a + b
        except Exception:
            failed += 1
    lite_s = time.perf_counter() - t0
    return {
        "rows": len(frame),
        "cams_s": round(cams_s, 3),
        "litellm_s": round(lite_s, 2),
        "ratio": round(lite_s / cams_s, 1),
        "litellm_unpriced": failed,
        "cams_unpriced": int(cams["unpriced"].sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="250000,1000000,2000000")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg", default=os.environ.get("CAMS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--litellm", type=int, default=1_000_000, help="rows costed by LiteLLM too (0: skip)")
    ap.add_argument("--data", help="folder for the drop files (default: a temporary one)")
    ap.add_argument("--one", nargs=3, metavar=("URL", "ROOT", "LITELLM"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one[0], Path(a.one[1]), int(a.one[2]))))
        return
    with tempfile.TemporaryDirectory(dir=a.data) as tmp:
        results = []
        for size in (int(s) for s in a.sizes.split(",")):
            root = Path(tmp) / f"day-{size}"
            t0 = time.perf_counter()
            write_day(root, size, Path(tmp) / "base")
            print(f"# {size:,} records written in {time.perf_counter() - t0:.0f} s (not timed below)", flush=True)
            for backend in a.backends.split(","):
                lite = a.litellm if size == max(int(s) for s in a.sizes.split(",")) or size == a.litellm else 0
                with contextlib.ExitStack() as stack:
                    if backend == "sqlite":
                        url = f"sqlite:///{root / 'warehouse.db'}"
                    else:
                        url = stack.enter_context(scratch_database(a.pg, "cams_bench"))
                    lite_n = str(lite if backend == "postgresql" else 0)
                    cmd = [sys.executable, __file__, "--one", url, str(root), lite_n]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    print(proc.stderr[-3000:])
                    raise SystemExit(1)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r.update(backend=backend, size=size)
                results.append(r)
                print(json.dumps(r), flush=True)
        print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    stages = list(results[0]["stages_s"])
    print("\n| backend | records | " + " | ".join(stages) + " | total s | peak RSS MiB |")
    print("|---|---|" + "---|" * (len(stages) + 2))
    for r in results:
        print(
            f"| {r['backend']} | {r['size']:,} | "
            + " | ".join(f"{r['stages_s'][s]:.1f}" for s in stages)
            + f" | {r['total_s']:.1f} | {max(r['peak_rss_mib'].values()):,.0f} |"
        )
    for r in results:
        if "litellm" in r:
            lt = r["litellm"]
            print(
                f"\ncosting {lt['rows']:,} records: CAMS vectorized {lt['cams_s']} s, litellm.cost_per_token per row "
                f"{lt['litellm_s']} s = {lt['ratio']}x"
            )


if __name__ == "__main__":
    main()
