"""Reconciliation, recomputation after a price change, and idempotent backfills (issue: SPEC §2–4, §8)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from cams import config as cams_config
from cams.config import PricingConfig, parse
from cams.costing import cost_partition
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.reconcile import CATEGORIES, Tolerances, reconcile_partition
from cams.simulator.drops import write_drops
from cams.simulator.generate import SimConfig, generate
from cams.sources.batch import Collector
from cams.sources.files import collect_files, list_drop_files
from cams.sources.landing import land
from cams.sources.timeutil import day_window
from pipelines.definitions import build_definitions
from pipelines.runner import run_range

DAY = date(2026, 6, 10)


def rc(rid: str, model: str = "gpt-4o-mini", charged: str | None = None, **over: object) -> dict:
    rec = {
        "request_id": rid,
        "timestamp": "2026-06-10T12:00:00Z",
        "org_id": "acme",
        "task_type": "chat",
        "model": model,
        "provider": "openai",
        "input_tokens": 10_000,
        "output_tokens": 1_000,
        "status": "success",
    }
    rec.update(over)
    # gpt-4o-mini: 10000 * 1.5e-7 + 1000 * 6e-7 = 0.0021
    rec["cost_usd"] = charged if charged is not None else "0.0021"
    return rec


def span(sid: str, rid: str | None, model: str = "gpt-4o-mini", inp: int = 10_000, out: int = 1_000) -> dict:
    attrs = {
        "gen_ai.response.model": model,
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": inp,
        "gen_ai.usage.output_tokens": out,
        "cams.org_id": "acme",
    }
    if rid:
        attrs["relaycore.request_id"] = rid
    return {
        "trace_id": "t",
        "span_id": sid,
        "start_time": "2026-06-10T12:00:00Z",
        "end_time": "2026-06-10T12:00:01Z",
        "status": {"code": "OK"},
        "attributes": attrs,
    }


def _write(path: Path, rows: list[dict]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_hand_made_mismatches_are_classified_exactly(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _write(
        tmp_path / "relaycore",
        [
            rc("ok"),
            rc("small-drift", charged="0.00215"),  # 2.4 % but only $0.00005 over: inside the absolute tolerance
            rc("over", charged="0.0031"),  # $0.001 over: cost_mismatch
            rc("nospan"),
            rc("wrongmodel"),
            rc("tokens"),
            rc("mystery", model="in-house-llm", provider="internal", charged="0.9"),
            rc("both", charged="0.05"),  # token mismatch wins over cost mismatch
        ],
    )
    _write(
        tmp_path / "auterity",
        [
            span("s1", "ok"),
            span("s2", "small-drift"),
            span("s3", "over"),
            span("s4", "wrongmodel", model="gpt-4o"),
            span("s5", "tokens", inp=10_500),
            span("s6", "mystery", model="in-house-llm"),
            span("s7", "both", out=999),
            span("s8", "ghost"),  # RelayCore never billed it
            span("s9", "ok"),  # a second span of the same request: one request, still matched
        ],
    )
    pricebook_store.store(engine, load_book(PricingConfig()))
    book = pricebook_store.load(engine)
    start, end = day_window(DAY)
    for source in ("relaycore", "auterity"):
        c = Collector(source, start, end)
        collect_files(c, list_drop_files(tmp_path / source))
        land(engine, c.result, "files")
    cost_partition(engine, DAY, DAY + timedelta(days=1), book)
    summary = reconcile_partition(engine, DAY, DAY + timedelta(days=1), book, Tolerances())
    with engine.connect() as conn:
        got = {
            r.request_id: (r.category, Decimal(str(r.at_risk_usd)))
            for r in conn.execute(sa.text("select request_id, category, at_risk_usd from cost_reconciliation"))
        }
    assert {k: v[0] for k, v in got.items()} == {
        "ok": "matched",
        "small-drift": "matched",
        "over": "cost_mismatch",
        "nospan": "missing_in_auterity",
        "wrongmodel": "model_mismatch",
        "tokens": "token_mismatch",
        "mystery": "unpriced",
        "both": "token_mismatch",
        "ghost": "missing_in_relaycore",
    }
    assert got["over"][1] == Decimal("0.001")
    assert got["nospan"][1] == Decimal("0.0021")  # unverifiable charge
    assert got["mystery"][1] == Decimal("0.9")
    assert got["tokens"][1] == Decimal("0.000075")  # 500 input tokens * 1.5e-7
    assert got["wrongmodel"][1] == Decimal("0.0329")  # gpt-4o at 2.5e-6 / 1e-5 = 0.035, minus 0.0021
    assert got["ghost"][1] == Decimal("0.0021")  # unbilled usage at the book's price
    assert summary.counts["matched"] == 2 and sum(summary.counts.values()) == 9
    with engine.connect() as conn:
        sync = conn.execute(sa.text("select detail from cost_sync_history where source='reconciliation'")).scalar_one()
        per_cat = conn.execute(
            sa.text("select category, sum(requests) from cost_reconciliation_summary group by category")
        ).all()
    assert json.loads(sync)["counts"] == summary.counts
    assert {c: int(n) for c, n in per_cat} == {c: n for c, n in summary.counts.items() if n}


def _dump(engine) -> dict:  # type: ignore[no-untyped-def]
    out = {}
    with engine.connect() as conn:
        for table, cols, order in [
            ("cost_tracking", "day, request_id, cost_usd, charged_usd, unpriced, price_id", "day, request_id"),
            (
                "cost_daily_rollups",
                "day, org_id, team_id, user_id, model, task_type, requests, cost_usd",
                "day, org_id, team_id, user_id, model, task_type",
            ),
            ("cost_reconciliation", "day, request_id, category, at_risk_usd", "day, request_id"),
            ("relaycore_usage", "day, request_id, input_tokens, cost_usd", "day, request_id"),
            ("quarantine", "source, day, ref, reason", "source, day, ref"),
        ]:
            out[table] = conn.execute(sa.text(f"select {cols} from {table} order by {order}")).all()
    return out


def _priced_as_costed(engine: sa.Engine) -> None:
    """Reconciliation prices the landed requests itself (beside costing, not after it): every request's
    book cost and charge are cost_tracking's, to the last decimal, and `unpriced` is cost_tracking's flag."""
    with engine.connect() as conn:
        pairs = conn.execute(
            sa.text(
                "select ct.cost_usd, cr.cost_usd, ct.charged_usd, cr.charged_usd, ct.unpriced, cr.category "
                "from cost_tracking ct left join cost_reconciliation cr "
                "on cr.day = ct.day and cr.request_id = ct.request_id"
            )
        ).all()
        orphans = conn.execute(
            sa.text("select count(*) from cost_reconciliation where category <> 'missing_in_relaycore'")
        ).scalar_one()
    assert pairs and orphans == len(pairs)
    for ct_cost, cr_cost, ct_charged, cr_charged, unpriced, category in pairs:
        assert category is not None and (ct_cost, ct_charged) == (cr_cost, cr_charged)
        assert bool(unpriced) == (category == "unpriced")


def _files_cfg(root: Path, start: str, extra: dict | None = None) -> cams_config.CamsConfig:
    return cams_config.parse(
        {
            "sources": {s: {"mode": "files", "drop_dir": str(root / s)} for s in ("relaycore", "auterity")},
            "partitions": {"start_date": start},
            **(extra or {}),
        }
    )


def test_backfill_of_30_days_twice_is_identical_and_exact(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    days = [date(2026, 5, 1) + timedelta(days=i) for i in range(30)]
    sim = generate(SimConfig(days=days, seed=3, requests_per_day=40, malformed_per_day=1))
    write_drops(sim, tmp_path / "drop")
    defs = build_definitions(_files_cfg(tmp_path / "drop", "2026-05-01"), db_url)
    with dg.instance_for_test() as inst:
        first = run_range(days[0], days[-1], inst, defs)
        tables = _dump(defs.resources["warehouse"].engine())
        second = run_range(days[0], days[-1], inst, defs)
    assert first == second
    assert _dump(defs.resources["warehouse"].engine()) == tables
    _priced_as_costed(defs.resources["warehouse"].engine())
    expected = {c: sum(sim.faults.day(d)[f"expect_{c}"] for d in days) for c in CATEGORIES}
    assert first["reconciliation"] == expected
    assert expected["cost_mismatch"] > 0 and expected["missing_in_relaycore"] > 0 and expected["unpriced"] > 0


def test_past_price_change_backfilled_moves_costs_exactly(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    days = [date(2026, 5, 1), date(2026, 5, 2), date(2026, 5, 3)]
    sim = generate(SimConfig(days=days, seed=5, requests_per_day=200))
    write_drops(sim, tmp_path / "drop")
    with dg.instance_for_test() as inst:
        defs = build_definitions(_files_cfg(tmp_path / "drop", "2026-05-01"), db_url)
        before = run_range(days[0], days[-1], inst, defs)
        engine = defs.resources["warehouse"].engine()
        with engine.connect() as conn:
            old_ids = set(
                conn.execute(
                    sa.text("select distinct price_id from cost_tracking where model = 'gpt-4o-mini'")
                ).scalars()
            )
            # uncached input tokens of gpt-4o-mini requests on standard tier from 2026-05-02 on
            tokens = conn.execute(
                sa.text(
                    "select coalesce(sum(input_tokens - cached_input_tokens - cache_creation_input_tokens), 0) "
                    "from cost_tracking where model = 'gpt-4o-mini' and service_tier = 'standard' "
                    "and day >= '2026-05-02'"
                )
            ).scalar_one()
        # the input price rises from 1.5e-7 to 2.5e-7 for standard-tier requests from May 2 on
        override = {
            "pricing": {
                "overrides": [
                    {"model": "gpt-4o-mini", "valid_from": "2026-05-02T00:00:00Z", "input_cost_per_token": 2.5e-7}
                ]
            }
        }
        defs2 = build_definitions(_files_cfg(tmp_path / "drop", "2026-05-01", override), db_url)
        after = run_range(days[0], days[-1], inst, defs2)
    _priced_as_costed(engine)  # at the new price, as cost_tracking
    delta = Decimal(after["cost_usd"]) - Decimal(before["cost_usd"])
    with engine.connect() as conn:
        flexprio_tokens = conn.execute(
            sa.text(
                "select coalesce(sum(input_tokens - cached_input_tokens - cache_creation_input_tokens), 0) "
                "from cost_tracking where model = 'gpt-4o-mini' and service_tier = 'flex' "
                "and day >= '2026-05-02'"
            )
        ).scalar_one()
        recomputed = conn.execute(
            sa.text(
                "select day, cost_before_usd, cost_after_usd, price_ids_after from cost_recomputations order by day"
            )
        ).all()
        all_ids = set(conn.execute(sa.text("select price_id from model_cost_profiles")).scalars())
        new_ids = set(
            conn.execute(
                sa.text(
                    "select distinct price_id from cost_tracking where model = 'gpt-4o-mini' and day >= '2026-05-02'"
                )
            ).scalars()
        )
    # standard and flex (no flex price: falls back to the standard input price) move by 1e-7 per token;
    # the batch tier has its own *_batches price, which the override did not touch: had it moved,
    # the delta would not equal this exactly
    expected = Decimal(int(tokens) + int(flexprio_tokens)) * Decimal("1e-7")
    assert abs(delta - expected) < Decimal("1e-8"), (delta, expected)
    assert delta > 0
    # days after the change were recomputed and logged; the day before was not touched
    assert [str(r.day)[:10] for r in recomputed] == ["2026-05-02", "2026-05-03"]
    assert all(Decimal(str(r.cost_after_usd)) > Decimal(str(r.cost_before_usd)) for r in recomputed)
    # previous figures stay traceable: every old price id still resolves in model_cost_profiles
    assert old_ids <= all_ids and new_ids.isdisjoint(old_ids)


@pytest.mark.parametrize("bad", [{"trailing_days": 0}, {"rel_tolerance": -1}, {"nope": 1}])
def test_bad_reconciliation_config_is_named(bad: dict) -> None:
    with pytest.raises(cams_config.ConfigError, match="reconciliation"):
        cams_config.parse({"reconciliation": bad})


def test_late_records_change_their_own_day_and_reruns_replace(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    drop = tmp_path / "drop"
    _write(drop / "relaycore", [rc("a"), rc("b", timestamp="2026-06-11T08:00:00Z")])
    _write(drop / "auterity", [span("s1", "a")])
    defs = build_definitions(_files_cfg(drop, "2026-06-01"), db_url)
    with dg.instance_for_test() as inst:
        first = run_range(DAY, DAY + timedelta(days=1), inst, defs)
        # a late file arrives for the 10th: its record lands on the 10th, once, however often we re-run
        (drop / "relaycore" / "late.jsonl").write_text(json.dumps(rc("late")) + "\n" + json.dumps(rc("a")) + "\n")
        again = run_range(DAY, DAY, inst, defs)
        again2 = run_range(DAY, DAY, inst, defs)
    assert first["records"]["relaycore"]["accepted"] == 2
    assert again["records"]["relaycore"] == {"read": 3, "accepted": 2, "duplicates": 1, "quarantined": 0}
    assert again2 == again
    with defs.resources["warehouse"].engine().connect() as conn:
        per_day = dict(conn.execute(sa.text("select day, count(*) from cost_tracking group by day")).all())
        recon = dict(
            conn.execute(sa.text("select request_id, category from cost_reconciliation where day = '2026-06-10'")).all()
        )
    assert sorted(int(n) for n in per_day.values()) == [1, 2]
    assert recon == {"a": "matched", "late": "missing_in_auterity"}


def _day_costs(engine: sa.Engine) -> dict[str, tuple[str, str]]:
    """Per day: the summed cost and the set of price ids, as text (exact)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select day, sum(cost_usd), count(distinct price_id) from cost_tracking group by day order by day")
        ).all()
    return {str(d)[:10]: (f"{Decimal(str(c)):f}", str(n)) for d, c, n in rows}


def recheck(inst: dg.DagsterInstance, defs: dg.Definitions, days: list[date]) -> None:
    """What `daily_usage_schedule` launches: the days as one range run of the daily job."""
    from assets.ingestion.schedules import RANGE_END_TAG, RANGE_START_TAG
    from pipelines.definitions import DAILY_JOB

    tags = {RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()}
    assert defs.resolve_job_def(DAILY_JOB).execute_in_process(instance=inst, tags=tags).success


def _refreshed_snapshot(path: Path, input_price: float) -> Path:
    from cams.pricing.snapshot import load_default

    snap = load_default()
    snap["models"]["gpt-4o-mini"]["input_cost_per_token"] = input_price
    snap["_meta"] = {**snap["_meta"], "version": "test-refresh", "source": str(path)}
    path.write_text(json.dumps(snap))
    return path


def test_a_refresh_never_rewrites_history_a_past_dated_one_is_recorded(db_url, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """SPEC §3 versions: `cams pricing refresh` adds a dated version in the warehouse; re-running earlier
    days keeps their dollars to the digit; a version dated into the past moves them exactly, recorded."""
    import yaml

    from cams import cli
    from cams.pricing.snapshot import load_default

    days = [date(2026, 5, 1), date(2026, 5, 2)]
    sim = generate(SimConfig(days=days, seed=5, requests_per_day=150))
    write_drops(sim, tmp_path / "drop")
    raw_cfg = {
        "sources": {s: {"mode": "files", "drop_dir": str(tmp_path / "drop" / s)} for s in ("relaycore", "auterity")},
        "partitions": {"start_date": "2026-05-01"},
    }
    (tmp_path / "cams.yaml").write_text(yaml.safe_dump(raw_cfg))
    monkeypatch.setenv("CAMS_CONFIG", str(tmp_path / "cams.yaml"))
    monkeypatch.setenv("CAMS_DATABASE_URL", db_url)
    packaged = (Path(cli.__file__).parent.parent / "cams" / "data" / "litellm_prices.json").read_bytes()
    with dg.instance_for_test() as inst:
        defs = build_definitions(parse(raw_cfg), db_url)
        engine = defs.resources["warehouse"].engine()
        run_range(days[0], days[-1], inst, defs)
        before = _day_costs(engine)
        # a refresh with a doubled gpt-4o-mini input price, effective now (the default)
        src = _refreshed_snapshot(tmp_path / "new.json", 3e-7)
        assert cli.main(["pricing", "refresh", "--source", str(src)]) == 0
        assert (Path(cli.__file__).parent.parent / "cams" / "data" / "litellm_prices.json").read_bytes() == packaged
        # the same prices again add nothing
        assert cli.main(["pricing", "refresh", "--source", str(src)]) == 0
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from price_versions")).scalar_one() == 2
        # the nightly trailing re-check of earlier days (the schedule's range run): identical dollars and ids
        recheck(inst, defs, days)
        assert _day_costs(engine) == before
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from cost_recomputations")).scalar_one() == 0
            tokens = conn.execute(
                sa.text(
                    "select coalesce(sum(input_tokens - cached_input_tokens - cache_creation_input_tokens), 0) "
                    "from cost_tracking where model = 'gpt-4o-mini' and service_tier in ('standard', 'flex') "
                    "and day >= '2026-05-02'"
                )
            ).scalar_one()
        # a version explicitly dated into the past (May 2) changes history, exactly, and is recorded
        src2 = _refreshed_snapshot(tmp_path / "past.json", 2.5e-7)
        assert cli.main(["pricing", "refresh", "--source", str(src2), "--effective-from", "2026-05-02T00:00:00Z"]) == 0
        recheck(inst, defs, days)
        after = _day_costs(engine)
    assert after["2026-05-01"] == before["2026-05-01"]
    delta = sum(Decimal(after[d][0]) - Decimal(before[d][0]) for d in after)
    assert abs(delta - Decimal(int(tokens)) * Decimal("1e-7")) < Decimal("1e-8"), (delta, tokens)
    with engine.connect() as conn:
        recomputed = [
            str(d)[:10] for d in conn.execute(sa.text("select day from cost_recomputations order by day")).scalars()
        ]
        used = (
            conn.execute(
                sa.text(
                    "select distinct p.snapshot_version from cost_tracking c join model_cost_profiles p "
                    "on p.price_id = c.price_id where c.model = 'gpt-4o-mini' and c.day = '2026-05-02'"
                )
            )
            .scalars()
            .all()
        )
    assert recomputed == ["2026-05-02"]
    # the cost rows name the version that priced them: the past-dated one on May 2
    assert len(used) == 1 and used[0].startswith("test-refresh@2026-05-02T00:00:00Z#")
    assert load_default()["models"]["gpt-4o-mini"]["input_cost_per_token"] == 1.5e-7
