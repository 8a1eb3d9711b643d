"""A ready-made scenario: simulated days served by both fake APIs, or written as drop files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cams.simulator.generate import SimConfig, SimData, generate
from cams.simulator.servers import FakeApi, FaultPlan

DEMO_FAULTS = FaultPlan(too_many_every=9, retry_after_s=0, server_error_every=13, overlap=2)


def last_days(n: int, end: date | None = None) -> list[date]:
    """n days ending with `end` (default yesterday, UTC)."""
    end = end or (datetime.now(UTC).date() - timedelta(days=1))
    return [end - timedelta(days=n - 1 - i) for i in range(n)]


def api_records(sim: SimData) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What each API serves: every record and duplicate, plus the malformed ones that are still JSON."""

    def parsable(lines: dict[str, list[str]]) -> list[dict[str, Any]]:
        out = []
        for bad in lines.values():
            for line in bad:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                out.append(obj)
        return out

    return sim.relaycore + sim.duplicates + parsable(sim.malformed), sim.auterity + parsable(sim.malformed_spans)


@dataclass
class Served:
    relaycore: FakeApi
    auterity: FakeApi

    def stop(self) -> None:
        self.relaycore.stop()
        self.auterity.stop()


def serve(
    sim: SimData,
    relaycore_key: str,
    auterity_key: str,
    faults: FaultPlan | None = None,
    relaycore_port: int = 0,
    auterity_port: int = 0,
) -> Served:
    rc, spans = api_records(sim)
    return Served(
        FakeApi("relaycore", rc, key=relaycore_key, faults=faults or DEMO_FAULTS, port=relaycore_port),
        FakeApi("auterity", spans, key=auterity_key, faults=faults or DEMO_FAULTS, port=auterity_port),
    )


def simulate(days: int, seed: int, requests_per_day: int, end: date | None = None) -> SimData:
    return generate(SimConfig(days=last_days(days, end), seed=seed, requests_per_day=requests_per_day))


def write_manifest(sim: SimData, path: Path) -> None:
    """The injected faults per day, for checking downstream counts by hand."""
    path.write_text(json.dumps({d: dict(c) for d, c in sim.faults.by_day.items()}, indent=1, sort_keys=True))
