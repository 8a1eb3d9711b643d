"""Auterity spans as OTLP JSON (the OpenTelemetry Collector's file exporter format) land exactly as
their flat twins, and a broken span inside an export request is quarantined alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import sqlalchemy as sa

from cams.config import PricingConfig
from cams.costing import cost_partition
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.reconcile import Tolerances, reconcile_partition
from cams.simulator.drops import write_drops
from cams.sources.batch import Collector
from cams.sources.files import collect_files, days_touched, list_drop_files
from cams.sources.landing import land
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
    book = load_book(PricingConfig())
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
        recon = reconcile_partition(engine, day, nxt, book, Tolerances())
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


def test_spans_pushed_by_the_opentelemetry_sdk_land_exactly_once(engine, tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    """The real OTLP/HTTP exporter (protobuf, gzip) and the JSON form post to POST /v1/traces; stored
    once each; the sensor's conversion lands them through the Auterity contract like the flat file."""
    import threading
    import time

    import httpx
    import uvicorn
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    from cams.api.app import create_app
    from cams.api.keys import create_key
    from cams.sources.contracts import RecordError, parse_auterity
    from cams.sources.timeutil import parse_rfc3339
    from cams.sources.webhooks import webhook_events_to_drops

    day = sim_days[0]
    write_drops(small_sim, tmp_path / "flat")
    flat = []
    for line in (tmp_path / "flat" / "auterity" / f"auterity-{day}.jsonl").read_text().splitlines():
        try:
            span = json.loads(line)
            parse_auterity(span)
        except (ValueError, RecordError):
            continue  # the simulator's malformed lines: not something an SDK would send
        flat.append(span)
    expected = _collect(tmp_path / "flat", "auterity", day)

    key, reader = create_key(engine, ["write"]), create_key(engine, ["read"])
    app = create_app(engine, refresh_s=60)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        # the OpenTelemetry SDK's own exporter, gzip-compressed protobuf, half of the spans
        provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
        exporter = OTLPSpanExporter(
            endpoint=f"{base}/v1/traces", headers={"Authorization": f"Bearer {key}"}, compression=Compression.Gzip
        )
        provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=50))
        tracer = provider.get_tracer("cams-test")
        half = len(flat) // 2

        def nanos(text: str) -> int:
            t = parse_rfc3339(text, "time")
            return int(t.replace(microsecond=0).timestamp()) * 10**9 + t.microsecond * 1000

        for s in flat[:half]:
            attrs = {k: v for k, v in s["attributes"].items() if v is not None}
            sp = tracer.start_span(s["name"], start_time=nanos(s["start_time"]), attributes=attrs)
            code = (s.get("status") or {}).get("code", "UNSET")
            if code != "UNSET":
                sp.set_status(Status(StatusCode[code]))
            sp.end(end_time=nanos(s["end_time"]))
        assert provider.force_flush(30_000)
        provider.shutdown()
        # the other half as OTLP JSON, posted twice: the second is a duplicate, not a second landing
        body = json.dumps(to_otlp(flat[half:]))
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        first = httpx.post(f"{base}/v1/traces", content=body, headers=auth)
        again = httpx.post(f"{base}/v1/traces", content=body, headers=auth)
        assert first.status_code == 200 and first.json()["status"] == "stored", first.text
        assert again.json() == {**first.json(), "status": "duplicate"}
        assert first.json()["spans"] == len(flat) - half
        # wrong key, wrong scope, not OTLP: refused with the reason
        assert (
            httpx.post(f"{base}/v1/traces", content=body, headers={**auth, "Authorization": "Bearer x"}).status_code
            == 401
        )
        assert (
            httpx.post(
                f"{base}/v1/traces", content=body, headers={**auth, "Authorization": f"Bearer {reader}"}
            ).status_code
            == 403
        )
        assert httpx.post(f"{base}/v1/traces", content=b"[1]", headers=auth).status_code == 400
        bad_proto = {**auth, "Content-Type": "application/x-protobuf"}
        assert httpx.post(f"{base}/v1/traces", content=b"\xff\xff\xff", headers=bad_proto).status_code == 400
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    written = webhook_events_to_drops(engine, str(tmp_path / "pushed" / "auterity"), kind="otlp-traces")
    assert written and all(days == {day} for _, days in written)
    assert webhook_events_to_drops(engine, str(tmp_path / "pushed" / "auterity"), kind="otlp-traces") == []
    pushed = _collect(tmp_path / "pushed", "auterity", day)
    assert pushed.counts() == {"read": len(flat), "accepted": len(flat), "duplicates": 0, "quarantined": 0}

    def content(rows):  # type: ignore[no-untyped-def]
        """Every field but the ids, which the SDK makes its own."""
        return sorted(tuple(str(v) for v in r[2:18] + r[19:]) for r in rows.values())

    assert content(pushed.rows) == content(
        {k: v for k, v in expected.rows.items() if k in {s["span_id"] for s in flat}}
    )
