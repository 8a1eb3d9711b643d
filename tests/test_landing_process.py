"""A landing in a process of its own (`cams.sources.landing_process`, what the threads executor does with
Auterity's): the same rows, counts and sync row as the landing in the run's process, its progress heard,
a source API error and any other failure brought back, on both backends."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cams.config import SourceConfig
from cams.simulator.drops import write_drops
from cams.simulator.servers import FakeApi
from cams.sources.http_client import SourceApiError
from cams.sources.landing import Stage, land
from cams.sources.landing_process import LandingProcessError, land_apart
from cams.sources.reading import read_window
from cams.sources.timeutil import day_window
from cams.warehouse import schema as t
from cams.warehouse.partitions import prepare_days

STARTED = datetime(2026, 3, 4, 1, tzinfo=UTC)


def _landed(engine: sa.Engine, table: sa.Table, key: str) -> list[tuple]:
    cols = [c for c in table.columns if c.name != "ingested_at"]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*cols).order_by(table.c[key])).all()]


def _syncs(engine: sa.Engine) -> list[tuple]:
    h = t.cost_sync_history
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                h.c.source, h.c.mode, h.c.read, h.c.accepted, h.c.duplicates, h.c.quarantined, h.c.status
            ).order_by(h.c.id)
        ).all()


@pytest.mark.parametrize("source", ["auterity", "relaycore"])
def test_a_landing_apart_lands_what_the_run_would(engine, tmp_path, small_sim, sim_days, source) -> None:  # type: ignore[no-untyped-def]
    dirs = write_drops(small_sim, tmp_path)
    cfg = SourceConfig(name=source, drop_dir=str(dirs[source]))
    table, key = (t.auterity_spans, "span_id") if source == "auterity" else (t.relaycore_usage, "request_id")
    start, end = day_window(sim_days[0])
    prepare_days(engine, table, sim_days)
    url = engine.url.render_as_string(hide_password=False)
    heard: list[str] = []

    summary, detail = land_apart(cfg, url, start, end, "run-apart", STARTED, heard.append)
    apart_rows, apart_syncs = _landed(engine, table, key), _syncs(engine)
    with Stage(engine, source, start, end) as stage:  # the same window landed again, in this process
        result, here_detail = read_window(cfg, start, end, stage)
        here = land(engine, result, "files", "run-here", STARTED, here_detail, stage)

    assert dataclasses.asdict(summary) == {**dataclasses.asdict(here), "replaced": 0}
    assert here.replaced == summary.counts["accepted"] > 250  # the second landing replaced the first's rows
    assert summary.counts["quarantined"] > 0 and summary.quarantine_reasons == here.quarantine_reasons
    assert detail == here_detail and detail["files"] > 0
    assert apart_rows == _landed(engine, table, key) and len(apart_rows) == summary.counts["accepted"]
    assert apart_syncs == [(source, "files", *summary.counts.values(), "success")]
    with engine.connect() as conn:
        h = t.cost_sync_history
        assert conn.execute(sa.select(h.c.run_id).order_by(h.c.id)).scalars().all() == ["run-apart", "run-here"]
    assert heard == []  # a day smaller than a chunk says nothing before it is done


def test_the_landing_aparts_progress_is_heard(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The reading's progress (a chunk of 20,000 rows at a time) reaches the run's log from the child, as from
    a landing in the run's process: what `cams run` prints with an ETA."""
    import json

    day = datetime(2026, 3, 2, tzinfo=UTC)
    (tmp_path / "relaycore").mkdir()
    with (tmp_path / "relaycore" / "relaycore-2026-03-02.jsonl").open("w") as f:
        for i in range(45_000):
            record = {
                "request_id": f"r{i}",
                "timestamp": f"2026-03-02T{i % 24:02d}:00:00Z",
                "org_id": "acme",
                "task_type": "chat",
                "model": "gpt-4o-mini",
                "provider": "openai",
                "input_tokens": i % 900,
                "output_tokens": 7,
                "status": "success",
            }
            f.write(json.dumps(record) + "\n")
    prepare_days(engine, t.relaycore_usage, [day.date()])
    cfg = SourceConfig(name="relaycore", drop_dir=str(tmp_path / "relaycore"))
    heard: list[str] = []
    start, end = day_window(day.date())
    summary, _ = land_apart(
        cfg, engine.url.render_as_string(hide_password=False), start, end, None, STARTED, heard.append
    )
    assert summary.counts["accepted"] == 45_000
    # the first chunk's (a day's first) is always said; later ones at most every 2 s
    assert heard[0] == "progress: day 1 of 1 (2026-03-02), 20,000 rows" and len(heard) <= 2


def test_a_source_api_error_in_the_landing_apart_comes_back_as_one(engine, small_sim, sim_days, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    start, end = day_window(sim_days[0])
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("CAMS_TEST_APART_KEY", "wrong")  # the child reads the key from its environment
    with FakeApi("relaycore", small_sim.relaycore, key="right") as api:
        cfg = SourceConfig(name="relaycore", mode="api", base_url=api.base_url, api_key_env="CAMS_TEST_APART_KEY")
        with pytest.raises(SourceApiError, match="refused the API key"):
            land_apart(cfg, url, start, end, None, STARTED, lambda _m: None)
    assert _syncs(engine) == []  # the caller records the failed sync, as for a landing in its own process


def test_any_other_failure_of_the_landing_apart_names_it_and_lands_nothing(engine, tmp_path, sim_days) -> None:  # type: ignore[no-untyped-def]
    start, end = day_window(sim_days[0])
    url = engine.url.render_as_string(hide_password=False)
    cfg = SourceConfig(name="auterity", mode="litellm", dsn_env="CAMS_TEST_NO_SUCH_VARIABLE")
    with pytest.raises(LandingProcessError, match="dsn_env must name a set env var") as err:
        land_apart(cfg, url, start, end, None, STARTED, lambda _m: None)
    assert "Traceback" in str(err.value)
    assert _syncs(engine) == [] and _landed(engine, t.auterity_spans, "span_id") == []


def test_on_the_threads_executor_auterity_lands_apart_beside_relaycore() -> None:
    """Where the executor is threads (PostgreSQL's default), Auterity's landing is tagged to run beside
    RelayCore's (its own process); in-process (SQLite's) both land in the run's process, one at a time."""
    from assets.ingestion.assets import PARSE_TAG
    from cams import config as cams_config
    from pipelines.definitions import build_definitions

    threads = cams_config.parse({"execution": {"executor": "threads"}})
    cases = (
        (cams_config.parse({}), "postgresql://u@127.0.0.1:5432/w", True),
        (cams_config.parse({}), "sqlite:////tmp/cams-apart-test.db", False),
        (threads, "sqlite:////tmp/cams-apart-test.db", False),  # one writer: never two landings at once
    )
    for cfg, url, apart in cases:
        graph = build_definitions(cfg, url).resolve_job_def("backfill_job").graph
        tags = {n.name: n.definition.tags for n in graph.nodes}
        assert PARSE_TAG.items() <= tags["relaycore_usage"].items()
        assert (PARSE_TAG.items() <= tags["auterity_spans"].items()) is not apart, url


def test_what_else_the_child_writes_to_stdout_is_no_answer(engine, tmp_path, small_sim, sim_days, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Text on the child's stdout that is not an answer (an import that prints, a print at exit) does not
    break the landing: before the child takes its stdout the parent passes such lines on to stderr, and
    after it they go to stderr in the child."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import atexit, sys\nprint('hello from an import')\natexit.register(lambda: print('bye', flush=True))\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    dirs = write_drops(small_sim, tmp_path / "drop")
    start, end = day_window(sim_days[0])
    prepare_days(engine, t.auterity_spans, sim_days)
    cfg = SourceConfig(name="auterity", drop_dir=str(dirs["auterity"]))
    summary, _ = land_apart(
        cfg, engine.url.render_as_string(hide_password=False), start, end, None, STARTED, lambda _m: None
    )
    assert summary.counts["accepted"] == len(_landed(engine, t.auterity_spans, "span_id")) > 250
