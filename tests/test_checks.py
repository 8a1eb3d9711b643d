"""The GX data checks run in the database: they catch bad rows in their window, and leave nothing behind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from assets.gx_checks import check_result, validate
from assets.ingestion.assets import AUTERITY_EXPECTATIONS, RELAYCORE_EXPECTATIONS, _held_by_key
from cams.sources.landing import landed_rows
from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows


def _row(day: date, request_id: str, **changes: object) -> dict[str, object]:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    row: dict[str, object] = {
        "day": day,
        "request_id": request_id,
        "timestamp": at,
        "org_id": "acme",
        "task_type": "chat",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 100,
        "output_tokens": 20,
        "cached_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0,
        "service_tier": "standard",
        "status": "success",
        "cost_usd": 0.001,
        "ingested_at": at,
    }
    return row | changes


def _views(engine: sa.Engine) -> list[str]:
    return [v for v in sa.inspect(engine).get_view_names() if v.startswith("cams_check_")]


def test_landing_checks_find_bad_rows_in_their_window_only(engine) -> None:  # type: ignore[no-untyped-def]
    d1, d2, d3 = date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)
    rows = [_row(d1, f"r{i}") for i in range(50)]
    rows += [_row(d2, "r0"), _row(d2, "bad-tier", service_tier="turbo"), _row(d2, "bad-cost", cost_usd=-1)]
    rows += [_row(d3, f"s{i}", input_tokens=i) for i in range(10)]
    with engine.begin() as conn:
        insert_rows(conn, t.relaycore_usage, rows)
    cols = sorted({e.column for e in RELAYCORE_EXPECTATIONS})

    def window(first: date, last: date) -> sa.Select:
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        return landed_rows("relaycore", start, start + timedelta(days=(last - first).days), cols)

    ok, detail = validate(engine, window(d1, d2), RELAYCORE_EXPECTATIONS)
    assert ok and detail["rows"] == 50
    ok, detail = validate(engine, window(d1, d3), RELAYCORE_EXPECTATIONS)  # r0 on two days, a bad tier, a bad cost
    assert not ok and detail["rows"] == 53
    assert detail["expect_column_values_to_be_unique(request_id)"] == "2 unexpected"
    assert detail["expect_column_values_to_be_in_set(service_tier)"] == "1 unexpected"
    assert detail["expect_column_values_to_be_between(cost_usd)"] == "1 unexpected"
    assert detail["expect_column_values_to_be_in_set(status)"] == "ok"
    result = check_result("relaycore_valid", engine, window(d3, d3 + timedelta(days=1)), RELAYCORE_EXPECTATIONS)
    assert result.passed and result.metadata["rows"].value == "10"
    assert _views(engine) == []  # each check's view is dropped


def test_a_days_id_uniqueness_is_held_by_its_key_and_a_longer_window_is_still_scanned(engine) -> None:  # type: ignore[no-untyped-def]
    d1, d2 = date(2026, 6, 1), date(2026, 6, 2)
    one_day = dg.TimeWindow(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
    two_days = dg.TimeWindow(one_day.start, datetime(2026, 6, 3, tzinfo=UTC))
    held = _held_by_key("relaycore", one_day, RELAYCORE_EXPECTATIONS)
    assert [e.column for e in held] == ["request_id"] and "primary key (day, request_id)" in next(iter(held.values()))
    assert [e.column for e in _held_by_key("auterity", one_day, AUTERITY_EXPECTATIONS)] == ["span_id"]
    assert _held_by_key("relaycore", two_days, RELAYCORE_EXPECTATIONS) == {}
    with engine.begin() as conn:  # r0 on both days: unique per day (the key), not over the two
        insert_rows(conn, t.relaycore_usage, [_row(d1, "r0"), _row(d1, "r1"), _row(d2, "r0")])
    cols = sorted({e.column for e in RELAYCORE_EXPECTATIONS})
    rows = landed_rows("relaycore", two_days.start, two_days.end, cols)
    ok, detail = validate(engine, rows, RELAYCORE_EXPECTATIONS)
    assert not ok and detail["expect_column_values_to_be_unique(request_id)"] == "2 unexpected"
    # what `held` names is reported with its reason and not run: here, wrongly told, it would pass
    ok, detail = validate(engine, rows, RELAYCORE_EXPECTATIONS, held)
    assert ok and detail["expect_column_values_to_be_unique(request_id)"].startswith("ok (one day: the primary key")
    assert detail["expect_column_values_to_be_in_set(status)"] == "ok" and detail["rows"] == 3


def test_a_check_on_a_missing_column_fails_and_an_error_leaves_no_view(engine) -> None:  # type: ignore[no-untyped-def]
    import great_expectations as gx
    import pytest

    rows = landed_rows("relaycore", datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC), ["model"])
    with engine.begin() as conn:
        insert_rows(conn, t.relaycore_usage, [_row(date(2026, 6, 1), "r1")])
    ok, detail = validate(engine, rows, [gx.expectations.ExpectColumnValuesToNotBeNull(column="no_such_column")])
    assert not ok and detail["expect_column_values_to_not_be_null(no_such_column)"] != "ok"
    with pytest.raises(Exception):  # noqa: B017 — not an expectation: GX refuses the suite
        validate(engine, rows, ["not an expectation"])
    assert _views(engine) == []
