"""`cams demo`: simulate 14 days, serve them over loopback HTTP, run the whole graph, summarize."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from cams import config as cams_config
from cams import report
from cams.money import usd
from cams.simulator.drops import write_drops
from cams.simulator.scenario import serve, simulate, write_manifest

DEMO_BUDGETS = [
    {
        "id": "acme-monthly",
        "name": "ACME monthly",
        "scope": "org",
        "scope_id": "acme",
        "period": "monthly",
        "amount_usd": 100,
        "thresholds": [
            {"level": "warning", "percent": 80, "basis": "actual", "action": "notify"},
            {"level": "warning", "percent": 100, "basis": "forecast", "action": "notify"},
            {"level": "critical", "percent": 100, "basis": "actual", "action": "downgrade"},
        ],
    },
    {
        "id": "globex-weekly",
        "name": "Globex weekly",
        "scope": "org",
        "scope_id": "globex",
        "period": "weekly",
        "amount_usd": 10,
        "timezone": "America/New_York",
        "thresholds": [{"level": "warning", "percent": 75, "basis": "forecast", "action": "notify"}],
    },
    {
        "id": "acme-search-daily",
        "name": "ACME search team daily",
        "scope": "team",
        "scope_id": "search",
        "org_id": "acme",
        "period": "daily",
        "amount_usd": 2,
        "thresholds": [{"level": "critical", "percent": 100, "basis": "actual", "action": "block"}],
    },
]


def _say(msg: str) -> None:
    print(msg, flush=True)


def main(args: Any) -> int:
    from pipelines.definitions import build_definitions
    from pipelines.runner import RunError, instance_for, run_range

    began = time.monotonic()
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    _say(f"[1/4] simulating {args.days} days of usage (seed {args.seed}) ...")
    sim = simulate(args.days, args.seed, 2000)
    first, last = sim.config.days[0], sim.config.days[-1]
    write_drops(sim, home / "drop")
    write_manifest(sim, home / "faults.json")
    _say(f"      {len(sim.relaycore):,} requests, {len(sim.auterity):,} spans, {first} .. {last}")

    os.environ.setdefault("CAMS_DEMO_RELAYCORE_KEY", "demo-relaycore-key")
    os.environ.setdefault("CAMS_DEMO_AUTERITY_KEY", "demo-auterity-key")
    served = serve(sim, os.environ["CAMS_DEMO_RELAYCORE_KEY"], os.environ["CAMS_DEMO_AUTERITY_KEY"])
    _say(
        f"[2/4] serving them on loopback: RelayCore {served.relaycore.base_url}, "
        f"Auterity {served.auterity.base_url} (with injected 429s, 503s and repeated pages)"
    )
    db_url = f"sqlite:///{home / 'warehouse.db'}"
    api_cfg = cams_config.parse(
        {
            "sources": {
                "relaycore": {
                    "mode": "api",
                    "base_url": served.relaycore.base_url,
                    "api_key_env": "CAMS_DEMO_RELAYCORE_KEY",
                    "page_size": 1000,
                },
                "auterity": {
                    "mode": "api",
                    "base_url": served.auterity.base_url,
                    "api_key_env": "CAMS_DEMO_AUTERITY_KEY",
                    "page_size": 1000,
                },
            },
            "partitions": {"start_date": first.isoformat()},
            "budgets": DEMO_BUDGETS,
        }
    )
    browse_cfg = {
        "sources": {
            name: {"mode": "files", "drop_dir": str(home / "drop" / name)} for name in ("relaycore", "auterity")
        },
        "partitions": {"start_date": first.isoformat()},
        "budgets": DEMO_BUDGETS,
    }
    (home / "cams.yaml").write_text(yaml.safe_dump(browse_cfg, sort_keys=False))
    try:
        defs = build_definitions(api_cfg, db_url)
        instance = instance_for(home / "dagster_home")
        _say(
            "[3/4] materializing price_book, then relaycore_usage, auterity_spans, cost_tracking, "
            f"cost_daily_rollups, cost_reconciliation and focus_export for {first} .. {last} ..."
        )
        summary = run_range(first, last, instance, defs, progress=lambda m: _say(f"      {m}"))
    except RunError as exc:
        print(f"cams demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        served.stop()
    _say("[4/4] summary")
    engine = defs.resources["warehouse"].engine()
    _print_summary(engine, summary, first, last + timedelta(days=1))
    _say(f"\nfinished in {time.monotonic() - began:.0f} s. Browse the lineage and runs:")
    _say(
        f"  DAGSTER_HOME={home / 'dagster_home'} CAMS_CONFIG={home / 'cams.yaml'} \\\n"
        f"  CAMS_DATABASE_URL={db_url} .venv/bin/dagster dev -w workspace.yaml"
    )
    _say("  then open http://127.0.0.1:3000 (Assets -> View lineage).")
    return 0


def _print_summary(engine: Engine, summary: dict[str, Any], first: Any, last: Any) -> None:
    tables = report.breakdowns(engine, first, last)
    by_org, by_model, recon, reasons = (
        tables["by_org"],
        tables["by_model"],
        tables["reconciliation"],
        tables["quarantine"],
    )
    recs = summary["records"]
    for source in ("relaycore", "auterity"):
        c = recs[source]
        _say(
            f"  {source:9s}: read {c['read']:,} = accepted {c['accepted']:,} + duplicates {c['duplicates']:,}"
            f" + quarantined {c['quarantined']:,}"
        )
    _say(
        f"\n  price-book cost {usd(summary['cost_usd'])}   RelayCore charged "
        f"{usd(summary['relaycore_charged_usd'])}   unpriced requests {summary['unpriced_requests']:,}"
    )
    _say("\n  spend by org                 requests        cost USD")
    for org, n, cost in by_org:
        _say(f"    {org:26s} {int(n):>8,}  {float(cost):>14,.2f}")
    _say("\n  spend by model                       requests    cost USD   charged USD   drift")
    for model, n, cost, charged, unpriced in by_model:
        cost_f, charged_f = float(cost or 0), float(charged or 0)
        if unpriced and int(unpriced) == int(n):
            drift = "UNPRICED (add a pricing override)"
        else:
            drift = f"{(charged_f - cost_f) / cost_f:+.1%}" if cost_f else "n/a"
        _say(f"    {model:32s} {int(n):>8,}  {cost_f:>10,.2f}  {charged_f:>12,.2f}   {drift}")
    _say("\n  reconciliation (RelayCore vs Auterity vs the price book)    requests   at risk USD")
    for category, n, at_risk in recon:
        _say(f"    {category:56s} {int(n):>8,}  {float(at_risk or 0):>11,.2f}")
    _say(
        f"\n  budgets as of the end of {summary['end']} "
        f"({summary['alerts_fired']} alerts fired, delivered to the log channel)"
    )
    for b in summary["budgets"]:
        _say(
            f"    {b['budget_id']:24s} {b['state']:9s} spent {usd(b['spent_usd']):>9}  "
            f"forecast {usd(b['forecast_usd']):>9}"
        )
    if tables["savings"]:
        _say("\n  savings over the 30 days to the as-of        requests   spent USD  instead USD   saved USD")
        for cf, n, actual, alt in tables["savings"]:
            name = {"requested": "against the models asked for"}.get(cf, cf.replace("_", " "))
            saved = float(alt) - float(actual)
            _say(f"    {name:40s} {int(n):>8,}  {float(actual):>10,.2f}  {float(alt):>11,.2f}  {saved:>+10,.2f}")
        for org, team, task, old, new, monthly in tables["recommendations"]:
            _say(f"    recommended: {org}/{team or '-'} {task}: {old} -> {new}, saves ${float(monthly):,.2f} a month")
    _say("\n  quarantined lines by reason")
    for source, reason, n in reasons[:8]:
        _say(f"    {source:9s} {n:>4}  {reason[:80]}")
