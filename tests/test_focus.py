"""FOCUS 1.2 export: mandatory columns non-null, ListCost = ListUnitPrice × PricingQuantity, costs that
add up to cost tracking, CSV and Parquet that read back exactly, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from cams import focus
from cams.config import PricingConfig
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.warehouse import schema as t

DAY = date(2026, 3, 2)


def _rollup(**kw):  # type: ignore[no-untyped-def]
    base = {
        "day": DAY,
        "org_id": "acme",
        "team_id": "search",
        "user_id": "u1",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "task_type": "chat",
        "requests": 10,
        "errors": 0,
        "unpriced_requests": 0,
        "input_tokens": 10_000,
        "output_tokens": 2_000,
        "cached_input_tokens": 4_000,
        "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": Decimal("0.0024"),  # 6000×1.5e-7 + 4000×7.5e-8 + 2000×6e-7
        "charged_usd": Decimal("0.0030"),
    }
    return {**base, **kw}


def test_rows_follow_the_focus_rules_and_add_up() -> None:
    book = load_book(PricingConfig())
    rollups = pd.DataFrame(
        [
            _rollup(),
            _rollup(
                model="acme-finetune-v2",
                provider="custom",
                unpriced_requests=3,
                requests=3,
                cost_usd=0,
                charged_usd=Decimal("0.5"),
            ),
        ]
    )
    rows = focus.focus_rows(rollups, book)
    assert focus.violations(rows) == []
    priced = rows[~rows["x_Unpriced"]]
    assert list(priced["x_TokenKind"]) == ["input", "cache_read", "output"]
    assert list(priced["PricingQuantity"]) == [6_000, 4_000, 2_000]
    assert list(priced["ListCost"]) == [Decimal("0.0009"), Decimal("0.0003"), Decimal("0.0012")]
    assert sum(priced["EffectiveCost"]) == Decimal("0.0024") and sum(priced["BilledCost"]) == Decimal("0.0030")
    assert set(priced["PricingUnit"]) == {"Tokens"} == set(priced["ConsumedUnit"])
    assert set(rows["ServiceCategory"]) == {"AI and Machine Learning"}
    assert json.loads(priced["Tags"].iloc[0]) == {"org": "acme", "team": "search", "user": "u1", "task": "chat"}
    assert (
        str(priced["ChargePeriodStart"].iloc[0])[:10] == "2026-03-02"
        and str(priced["BillingPeriodStart"].iloc[0])[:10] == "2026-03-01"
    )
    unpriced = rows[rows["x_Unpriced"]].iloc[0]
    assert unpriced["ListUnitPrice"] is None and unpriced["BilledCost"] == unpriced["EffectiveCost"] == Decimal("0.5")
    broken = rows.copy()
    broken.loc[0, "ListCost"] = Decimal("1")
    broken.loc[1, "ServiceName"] = None
    assert len(focus.violations(broken)) == 2


def test_files_read_back_and_the_command_writes_them(engine, db_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pricebook_store.store(engine, load_book(PricingConfig()))
    with engine.begin() as conn:
        conn.execute(sa.insert(t.cost_daily_rollups), [_rollup(), _rollup(org_id="globex", requests=1)])
    env = {**os.environ, "CAMS_DATABASE_URL": db_url}
    cams = str(Path(sys.executable).with_name("cams"))
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"focus.{fmt}"
        done = subprocess.run(
            [cams, "export-focus", "--start", str(DAY), "--end", str(DAY), "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rows"] == 6
    csv = pd.read_csv(tmp_path / "focus.csv", dtype=str)
    assert list(csv.columns[: len(focus.MANDATORY)]) == focus.MANDATORY
    assert csv[focus.NOT_NULL].notna().all().all()
    assert all(
        Decimal(a) == Decimal(b) * Decimal(c)
        for a, b, c in zip(csv["ListCost"], csv["ListUnitPrice"], csv["PricingQuantity"], strict=True)
    )
    assert csv["ChargePeriodStart"].iloc[0] == "2026-03-02T00:00:00Z"
    table = pq.read_table(tmp_path / "focus.parquet")
    assert str(table.schema.field("BilledCost").type) == "decimal128(38, 18)"
    assert sum(table.column("BilledCost").to_pylist()) == Decimal("0.0060")
    bad = subprocess.run(
        [cams, "export-focus", "--start", "2026-03-05", "--end", "2026-03-01", "--out", "x.csv"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "before" in bad.stderr and "Traceback" not in bad.stderr


def test_the_asset_writes_a_day_of_files_through_dagster(engine, db_url, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dagster as dg

    from pipelines.definitions import EXPORT_JOB, build_definitions
    from tests.test_dagster import files_cfg

    pricebook_store.store(engine, load_book(PricingConfig()))
    with engine.begin() as conn:
        conn.execute(sa.insert(t.cost_daily_rollups), [_rollup(), _rollup(day=DAY.replace(day=3))])
    monkeypatch.setenv("CAMS_EXPORT_DIR", str(tmp_path / "exports"))
    defs = build_definitions(files_cfg(tmp_path / "drop"), db_url)
    with dg.instance_for_test() as inst:
        result = defs.resolve_job_def(EXPORT_JOB).execute_in_process(instance=inst, partition_key=str(DAY))
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert [(c.check_name, c.passed) for c in checks] == [("focus_rules", True)]
    out = tmp_path / "exports" / "focus"
    assert sorted(p.name for p in out.iterdir()) == [f"focus-{DAY}.csv", f"focus-{DAY}.parquet"]  # its day only
    assert len(pd.read_csv(out / f"focus-{DAY}.csv")) == 3 == pq.read_table(out / f"focus-{DAY}.parquet").num_rows
