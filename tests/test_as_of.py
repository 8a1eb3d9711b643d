"""As-of everywhere (SPEC §6, §8): a backfill of past days evaluates as of their end, not the wall clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from cams import config as cams_config
from cams.selection import store
from cams.selection.select import Request, SelectionError, SelectionTable
from cams.selection.table import TIER_ORDER
from cams.simulator.drops import write_drops
from cams.simulator.generate import SimConfig, generate
from pipelines.definitions import build_definitions
from pipelines.runner import run_range

MAY = [date(2026, 5, 1) + timedelta(days=i) for i in range(3)]


def _cfg(root: Path) -> cams_config.CamsConfig:
    return cams_config.parse(
        {
            "sources": {s: {"mode": "files", "drop_dir": str(root / s)} for s in ("relaycore", "auterity")},
            "partitions": {"start_date": "2026-04-01"},
        }
    )


def test_a_may_backfill_run_in_november_publishes_mays_table(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sim = generate(SimConfig(days=MAY, seed=21, requests_per_day=250))
    write_drops(sim, tmp_path / "drop")
    defs = build_definitions(_cfg(tmp_path / "drop"), db_url)
    with dg.instance_for_test() as inst:
        summary = run_range(MAY[0], MAY[-1], inst, defs)  # no --as-of: the end of the range
        runs = {r.job_name: r for r in inst.get_runs()}
        as_of_tags = {name: r.tags.get("cams/as_of") for name, r in runs.items()}
        focus = inst.fetch_materializations(dg.AssetKey("focus_export"), limit=10).records
    end_of_may_3 = datetime(2026, 5, 3, 23, 59, 59, 999999, tzinfo=UTC)
    assert as_of_tags["budget_job"] == as_of_tags["selection_job"] == end_of_may_3.isoformat()
    # `cams run` materializes every partitioned asset, the FOCUS export too
    assert {m.partition_key for m in focus} == {d.isoformat() for d in MAY}
    assert summary["warnings"] == []
    engine = defs.resources["warehouse"].engine()
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
    assert str(recorded).startswith("2026-05-03 23:59:59") or str(recorded).startswith("2026-05-03T23:59:59")
    # the quality stats are May's: every model seen in May, none invented
    assert stats_models == {m for _t, m in seen if m}
    # the served table is the one May's own end would have built (same stats window, same prices)
    from cams import pricebook_store
    from cams.selection.quality import QualitySettings
    from cams.selection.table import SelectionSettings, build_table

    may_stats = store.quality_stats_for(engine, end_of_may_3, QualitySettings.from_config({}))
    expected = build_table(
        may_stats,
        pricebook_store.load(engine),
        SelectionSettings.from_config({}, sorted(set(may_stats["model"]))),
        end_of_may_3,
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
            assert detail["rejected"] and all(r["samples"] > 0 or r["floor"] for r in detail["rejected"])
            assert {r["model"] for r in detail["rejected"]} <= stats_models
    assert answered >= len(tasks)


def test_a_table_that_would_go_dark_is_refused(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A selection run as of a time with no spans would answer no_candidate everywhere: refused by the
    blocking check, the served version stays, `cams run` says so and still succeeds."""
    sim = generate(SimConfig(days=MAY[:1], seed=22, requests_per_day=200))
    write_drops(sim, tmp_path / "drop")
    defs = build_definitions(_cfg(tmp_path / "drop"), db_url)
    engine = defs.resources["warehouse"].engine()
    with dg.instance_for_test() as inst:
        run_range(MAY[0], MAY[0], inst, defs)
        served = store.latest_version(engine)
        # July has no spans at all: as of July 31, the quality window is empty
        later = run_range(MAY[0], MAY[0], inst, defs, as_of=datetime(2026, 7, 31, tzinfo=UTC))
        evals = [
            e
            for r in inst.get_runs(filters=dg.RunsFilter(job_name="selection_job"), limit=1)
            for e in inst.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
    assert store.latest_version(engine) == served
    assert later["warnings"] and "selection table refused" in later["warnings"][0]
    data = evals[0].dagster_event.event_specific_data
    assert data.check_name == "no_task_tier_goes_dark" and not data.passed
    refused = data.metadata["refused_for"].value
    assert refused and all(": no_data" in r or ": no_priced_candidate" in r for r in refused)


PARTITIONED = ("relaycore_usage", "auterity_spans", "cost_tracking", "cost_daily_rollups", "cost_reconciliation")


def _observed(inst: dg.DagsterInstance, asset: str) -> dict[str, dict[str, object]]:
    """The newest observation of each partition: its numeric figures."""
    out: dict[str, dict[str, object]] = {}
    for rec in inst.fetch_observations(dg.AssetKey(asset), limit=1000).records:  # newest first
        obs = rec.asset_observation
        if obs.partition not in out:
            out[obs.partition] = {k: v.value for k, v in obs.metadata.items() if isinstance(v.value, int | float)}
    return out


def test_range_run_records_each_days_own_figures(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A range run's per-partition figures equal those of one run per day; no range total on any day."""
    from pipelines.definitions import DAILY_JOB

    sim = generate(SimConfig(days=MAY, seed=23, requests_per_day=150))
    write_drops(sim, tmp_path / "drop")
    defs = build_definitions(_cfg(tmp_path / "drop"), db_url)
    with dg.instance_for_test() as ranged:
        run_range(MAY[0], MAY[-1], ranged, defs)
        by_range = {a: _observed(ranged, a) for a in PARTITIONED}
        mats = ranged.fetch_materializations(dg.AssetKey("cost_reconciliation"), limit=10).records
    # the range's materializations carry the range and a per-day table, not totals plotted as each day's value
    assert all("count_matched" not in m.asset_materialization.metadata for m in mats)
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
    # a one-day run's materialization holds that day's figures, equal to its observation
    for m in one:
        md = m.asset_materialization.metadata
        assert md["count_matched"].value == by_day["cost_reconciliation"][m.partition_key]["count_matched"]
