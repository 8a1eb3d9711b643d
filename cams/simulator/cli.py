"""`cams simulate`: serve simulated usage over loopback HTTP, or write it as drop files."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from cams.simulator.drops import write_drops
from cams.simulator.scenario import serve, simulate, write_manifest
from cams.simulator.servers import serve_forever


def main(args: Any) -> int:
    end = date.fromisoformat(args.end) if args.end else None
    sim = simulate(args.days, args.seed, args.requests_per_day, end)
    days = f"{sim.config.days[0]} .. {sim.config.days[-1]}"
    if args.write_files:
        root = Path(args.write_files)
        dirs = write_drops(sim, root, otlp_spans_per_line=args.otlp_spans_per_line)
        write_manifest(sim, root / "faults.json")
        print(f"wrote {len(sim.relaycore)} requests and {len(sim.auterity)} spans for {days}:")
        for name, d in dirs.items():
            print(f"  {name}: {d}")
        print(f"  injected faults: {root / 'faults.json'}")
        return 0
    rc_key = os.environ.get("RELAYCORE_API_KEY", "relaycore-dev-key")
    au_key = os.environ.get("AUTERITY_API_KEY", "auterity-dev-key")
    served = serve(sim, rc_key, au_key, relaycore_port=args.relaycore_port, auterity_port=args.auterity_port)

    def ready() -> None:
        print(f"simulating {days}: {len(sim.relaycore)} requests, {len(sim.auterity)} spans")
        print(f"RelayCore: {served.relaycore.base_url}/v1/usage  (Authorization: Bearer $RELAYCORE_API_KEY)")
        print(f"Auterity:  {served.auterity.base_url}/api/v1/spans  (X-API-Key: $AUTERITY_API_KEY)")
        print("Ctrl-C to stop.", flush=True)

    serve_forever([served.relaycore, served.auterity], on_ready=ready)
    print("stopped", file=sys.stderr)
    return 0
