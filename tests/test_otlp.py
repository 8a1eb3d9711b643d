"""Auterity spans as OTLP JSON (the OpenTelemetry Collector's file exporter format) land exactly as
their flat twins, and a broken span inside an export request is quarantined alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import sqlalchemy as sa

from cams import pricebook_store
from cams.config import parse
from cams.costing import cost_partition
from cams.landing import land
from cams.pricing.quote import load_book
from cams.reconcile import Tolerances, reconcile_partition
from cams.simulator.drops import write_drops
from cams.sources.batch import Collector
from cams.sources.files import collect_files, days_touched, list_drop_files
from cams.sources.otlp import flatten, to_otlp
from cams.sources.timeutil import day_window
from cams.warehouse.db import make_engine, migrate


def _collect(root: Path, source: str, day):  # type: ignore[no-untyped-def]
    start, end = day_window(day)
    c = Collector(source, start, end)
    collect_files(c, list_drop_files(root / source))
    c.result.check_balance()
    return c.result


def test_otlp_file_lands_the_same_rows_costs_and_reconciliation_as_its_flat_twin(tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    write_drops(small_sim, tmp_path / "flat")
    write_drops(small_sim, tmp_path / "otlp", otlp_spans_per_line=40)
    line = (tmp_path / "otlp" / "auterity" / f"auterity-{sim_days[0]}.jsonl").read_text().splitlines()[0]
    export = json.loads(line)
    span = export["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["startTimeUnixNano"].isdigit() and isinstance(span["attributes"], list)
    assert {"key", "value"} == set(span["attributes"][0]) and isinstance(span["status"]["code"], int)
    book = load_book(parse({}))
    results = {}
    for form in ("flat", "otlp"):
        engine = make_engine(f"sqlite:///{tmp_path / form}.db")
        migrate(engine)
        pricebook_store.store(engine, book)
        day = sim_days[0]
        nxt = sim_days[-1]
        spans = _collect(tmp_path / form, "auterity", day)
        land(engine, _collect(tmp_path / form, "relaycore", day), "files")
        land(engine, spans, "files")
        cost = cost_partition(engine, day, nxt, book)
        recon = reconcile_partition(engine, day, nxt, book, Tolerances.from_config({}))
        with engine.connect() as conn:
            landed = conn.execute(
                sa.text("select count(*), sum(input_tokens), sum(quality_score) from auterity_spans")
            ).one()
        results[form] = (spans.rows, spans.counts(), cost.cost_usd, recon.counts, recon.at_risk_usd, tuple(landed))
        engine.dispose()
    flat, otlp = results["flat"], results["otlp"]
    assert otlp[0] == flat[0]  # every span, field by field
    assert (
        otlp[1]["accepted"]
        == flat[1]["accepted"]
        == small_sim.faults.day(sim_days[0])["requests"]
        - small_sim.faults.day(sim_days[0])["missing_span"]
        + small_sim.faults.day(sim_days[0])["orphan_span"]
    )
    assert otlp[2:] == flat[2:]
    f = list_drop_files(tmp_path / "otlp" / "auterity")[0]
    assert f.path.name == f"auterity-{sim_days[0]}.jsonl"
    assert days_touched(f, "auterity") == {sim_days[0]}  # the sensor reads the days inside OTLP lines


def test_a_broken_span_in_an_export_request_is_quarantined_alone(tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    day = sim_days[0]
    spans = [s for s in small_sim.auterity if s["start_time"].startswith(day.isoformat())][:5]
    export = to_otlp(spans)
    broken = export["resourceSpans"][0]["scopeSpans"][0]["spans"]
    broken[1]["startTimeUnixNano"] = "yesterday"
    broken[3]["attributes"].append({"key": "auterity.quality.score", "value": {"doubleValue": 7.5}})
    (tmp_path / "auterity").mkdir()
    path = tmp_path / "auterity" / "otel.jsonl"
    path.write_text(json.dumps(export) + "\n" + '{"resourceSpans": 3}\n')
    start, end = day_window(day)
    noon = (start + (end - start) / 2).timestamp()
    os.utime(path, (noon, noon))  # a span whose time cannot be read belongs to the file's day
    c = Collector("auterity", start, end)
    collect_files(c, list_drop_files(tmp_path / "auterity"))
    res = c.result
    res.check_balance()
    reasons = sorted(q.reason for q in res.quarantined)
    assert res.accepted == 3 and {q.ref.split("#")[-1] for q in res.quarantined if "#" in q.ref} == {"1", "3"}
    assert any("startTimeUnixNano" in r for r in reasons) and any("quality.score" in r for r in reasons)
    assert any("resourceSpans must be a list" in r for r in reasons)
    assert [s["span_id"] for s in flatten(to_otlp(spans)) if isinstance(s, dict)] == [s["span_id"] for s in spans]
