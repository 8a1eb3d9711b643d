"""As-of everywhere (SPEC §6, §8), a selection table that never goes dark, and each partition's own truth
on range runs. One backfill per backend serves all three (a `cams run` is the expensive part)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from cams import config as cams_config
from cams.config import SelectionConfig
from cams.pricing import store as pricebook_store
from cams.selection import store
from cams.selection.quality import QualitySettings
from cams.selection.select import Request, SelectionError, SelectionTable
from cams.selection.table import TIER_ORDER, SelectionSettings, build_table
from cams.simulator.drops import write_drops
from cams.simulator.generate import SimConfig, generate
from pipelines.definitions import DAILY_JOB, SELECTION_JOB, build_definitions
from pipelines.runner import run_range

MAY = [date(2026, 5, 1), date(2026, 5, 2), date(2026, 5, 3)]
END_OF_MAY_3 = datetime(2026, 5, 3, 23, 59, 59, 999999, tzinfo=UTC)
PARTITIONED = ("relaycore_usage", "auterity_spans", "cost_tracking", "cost_reconciliation")


def _cfg(root: Path) -> cams_config.CamsConfig:
    return cams_config.parse(
        {
            "sources": {s: {"mode": "files", "drop_dir": str(root / s)} for s in ("relaycore", "auterity")},
            "partitions": {"start_date": "2026-04-01"},
            "preferences": [{"org_id": "acme", "excluded_providers": ["mistral"]}],
        }
    )


def _observed(inst: dg.DagsterInstance, asset: str) -> dict[str, dict[str, object]]:
    """The newest observation of each partition: its numeric figures."""
    out: dict[str, dict[str, object]] = {}
    for rec in inst.fetch_observations(dg.AssetKey(asset), limit=1000).records:  # newest first
        obs = rec.asset_observation
        if obs.partition not in out:
            out[obs.partition] = {k: v.value for k, v in obs.metadata.items() if isinstance(v.value, int | float)}
    return out


def test_a_may_backfill_in_november(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sim = generate(SimConfig(days=MAY, seed=21, requests_per_day=200))
    write_drops(sim, tmp_path / "drop")
    defs = build_definitions(_cfg(tmp_path / "drop"), db_url)
    engine = defs.resources["warehouse"].engine()
    with dg.instance_for_test() as ranged:
        summary = run_range(MAY[0], MAY[-1], ranged, defs)  # no --as-of: the end of the range
        _publishes_mays_table(ranged, engine, summary)
        by_range = {a: _observed(ranged, a) for a in PARTITIONED}
        mats = ranged.fetch_materializations(dg.AssetKey("cost_reconciliation"), limit=10).records
        _a_table_that_would_go_dark_is_refused(ranged, defs, engine)
    # each partition's own figures: a range run's observations equal one run per day's
    for m in mats:  # no range figure under a day's name: run-wide tables are labelled range_
        md = m.asset_materialization.metadata
        assert "count_matched" not in md and "by_category" not in md and "range_by_category" in md
    assert {m.asset_materialization.metadata["range"].value for m in mats} == {f"{MAY[0]} .. {MAY[-1]}"}
    with dg.instance_for_test() as single:
        job = defs.resolve_job_def(DAILY_JOB)
        for day in MAY:
            assert job.execute_in_process(instance=single, partition_key=day.isoformat()).success
        by_day = {a: _observed(single, a) for a in PARTITIONED}
        one = single.fetch_materializations(dg.AssetKey("cost_reconciliation"), limit=10).records
    assert by_range == by_day
    matched = [by_range["cost_reconciliation"][d.isoformat()]["count_matched"] for d in MAY]
    assert len(set(matched)) > 1 and all(n > 0 for n in matched)  # each day its own, not one flat line
    for m in one:  # a one-day run's materialization holds that day's figures
        md = m.asset_materialization.metadata
        assert md["count_matched"].value == by_day["cost_reconciliation"][m.partition_key]["count_matched"]


def _publishes_mays_table(inst: dg.DagsterInstance, engine: sa.Engine, summary: dict) -> None:
    """Budgets and selection evaluated as of May 3's end; the served table is the one May would have had."""
    runs = {r.job_name: r for r in inst.get_runs()}
    assert runs["budget_job"].tags["cams/as_of"] == runs["selection_job"].tags["cams/as_of"] == END_OF_MAY_3.isoformat()
    focus = inst.fetch_materializations(dg.AssetKey("focus_export"), limit=10).records
    assert {m.partition_key for m in focus} == {d.isoformat() for d in MAY}  # `cams run` writes FOCUS too
    assert summary["warnings"] == []
    # cams.yaml's preferences synced beside the table, and the materialization says so
    assert [(r["id"], r["source"]) for r in store.preference_rows(engine)] == [("org:acme", "yaml")]
    table_mat = inst.fetch_materializations(dg.AssetKey("model_selection_table"), limit=1).records[0]
    assert table_mat.asset_materialization.metadata["preferences"].value["preferences"] == 1
    found = store.latest(engine)
    assert found is not None
    version, table = found
    with engine.connect() as conn:
        recorded = conn.execute(
            sa.text("select as_of from model_selection_tables where version = :v"), {"v": version}
        ).scalar_one()
        seen = conn.execute(
            sa.text("select distinct task_type, response_model from auterity_spans where task_type is not null")
        ).all()
        stats_models = set(conn.execute(sa.text("select distinct model from model_quality_stats")).scalars())
    assert str(recorded).replace("T", " ").startswith("2026-05-03 23:59:59")
    assert stats_models == {m for _t, m in seen if m}  # May's models, none invented
    may_stats, _ = store.quality_stats_for(engine, END_OF_MAY_3, QualitySettings.from_config(SelectionConfig()))
    expected = build_table(
        may_stats,
        pricebook_store.load(engine),
        SelectionSettings.from_config(SelectionConfig(), sorted(set(may_stats["model"]))),
        END_OF_MAY_3,
        sorted(set(may_stats["task_type"])),
    )
    assert table["rows"] == expected["rows"]
    sel = SelectionTable(version, table, [])
    tasks = sorted({t for t, _m in seen})
    assert tasks and set(tasks) <= set(sel.tasks)
    answered = 0
    for task in tasks:
        for tier in TIER_ORDER:
            row = sel.rows[(task, tier)]
            if row["candidates"]:
                decision = sel.select(Request(org_id="acme", task_type=task, quality_tier=tier))
                assert decision.model == row["candidates"][0]["model"] and decision.model in stats_models
                answered += 1
                continue
            # the data says no model qualifies: the answer names the floor and every model's figures
            with pytest.raises(SelectionError) as err:
                sel.select(Request(org_id="acme", task_type=task, quality_tier=tier))
            detail = err.value.detail
            assert detail["binding_constraint"].startswith(("tier_min_quality:", "success_rate_floor:"))
            assert detail["rejected"] and {r["model"] for r in detail["rejected"]} <= stats_models
    assert answered >= len(tasks)


def _a_table_that_would_go_dark_is_refused(inst: dg.DagsterInstance, defs: dg.Definitions, engine: sa.Engine) -> None:
    """As of July (no spans in its window) every row would answer no_candidate: refused by the blocking
    check, the served version stays, and the check says which rows and why."""
    served = store.latest_version(engine)
    later = run_range(MAY[0], MAY[0], inst, defs, as_of=datetime(2026, 7, 31, tzinfo=UTC))
    assert store.latest_version(engine) == served
    assert later["warnings"] and "selection table refused" in later["warnings"][0]  # `cams run` says so, exit 0
    run = inst.get_runs(filters=dg.RunsFilter(job_name=SELECTION_JOB), limit=1)[0]
    assert run.status == dg.DagsterRunStatus.FAILURE  # the blocking check stopped savings_report after it
    evals = [
        e.dagster_event.event_specific_data
        for e in inst.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert len(evals) == 1 and evals[0].check_name == "no_task_tier_goes_dark" and not evals[0].passed
    refused = evals[0].metadata["refused_for"].value
    assert refused and all(": no_data" in r or ": no_priced_candidate" in r for r in refused)
