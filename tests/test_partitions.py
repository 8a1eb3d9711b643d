"""Per-request tables partitioned by day on PostgreSQL: replace by TRUNCATE, retention by DROP, the migration
that converts an existing warehouse (and back); SQLite keeps plain tables and deletes by day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from assets.as_of import AS_OF_TAG
from assets.retention import build_retention_asset
from cams.config import RetentionConfig
from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows, make_engine, migrate
from cams.warehouse.partitions import (
    DAY_PARTITIONED,
    DAY_STATISTICS_TARGET,
    analyze_days,
    day_children,
    days_with_rows,
    drop_days_before,
    is_partitioned,
    prepare_days,
    replace_days,
    replacing,
)
from resources.warehouse import WarehouseResource
from tests.conftest import PG_URL, fresh_pg_database

D1, D2, D3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)
PG_ONLY = [b for b in ("postgresql",) if PG_URL]
DUPLICATE = (sa.exc.IntegrityError, psycopg.errors.UniqueViolation)  # COPY raises psycopg's own


def _usage(day: date, n: int, tag: str = "a") -> list[dict]:
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return [
        {
            "day": day,
            "request_id": f"{tag}-{day:%d}-{i}",
            "timestamp": ts,
            "org_id": "acme",
            "task_type": "chat",
            "model": "gpt-4o",
            "provider": "openai",
            "input_tokens": 10,
            "output_tokens": 5,
            "cached_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "reasoning_tokens": 0,
            "service_tier": "standard",
            "status": "success",
            "ingested_at": ts,
        }
        for i in range(n)
    ]


def _selection(sid: str, at: datetime) -> dict:
    return {
        "selection_id": sid,
        "org_id": "acme",
        "task_type": "chat",
        "quality_tier": "standard",
        "served_tier": "standard",
        "model": "gpt-4o",
        "estimated_cost_usd": 0.001,
        "budget_state": "ok",
        "binding_constraint": "cost",
        "table_version": "v",
        "selected_at": at,
    }


def _count(engine: sa.Engine, table: sa.Table) -> dict[date, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.day, sa.func.count()).group_by(table.c.day)).all()
    return {(d if isinstance(d, date) else date.fromisoformat(d)): n for d, n in rows}


def test_replace_and_retention_by_day_on_both_backends(engine) -> None:  # type: ignore[no-untyped-def]
    """The same calls on SQLite (plain tables, DELETE) and PostgreSQL (day partitions, TRUNCATE and DROP)."""
    ru = t.relaycore_usage
    pg = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        assert all(is_partitioned(conn, name) == pg for name in DAY_PARTITIONED)
    for day, n in ((D1, 3), (D2, 4), (D3, 5)):
        prepare_days(engine, ru, [day])
        with engine.begin() as conn:
            assert replace_days(conn, ru, day, day + timedelta(days=1), _usage(day, n)) == (0, n)
    if pg:
        with engine.connect() as conn:
            children = day_children(conn, ru.name)
            assert sorted(children) == [D1, D2, D3]
            before = conn.exec_driver_sql("SELECT pg_relation_filenode(%s)", (children[D2],)).scalar_one()
    # re-running a day replaces only that day
    with engine.begin() as conn:
        assert replace_days(conn, ru, D2, D3, _usage(D2, 2, "b")) == (4, 2)
    assert _count(engine, ru) == {D1: 3, D2: 2, D3: 5}
    if pg:  # the day's child was truncated (a new file), not deleted from row by row
        with engine.connect() as conn:
            after = conn.exec_driver_sql("SELECT pg_relation_filenode(%s)", (children[D2],)).scalar_one()
        assert after != before
    # a replace that fails leaves the day as it was (TRUNCATE is transactional)
    with pytest.raises(DUPLICATE), engine.begin() as conn:
        replace_days(conn, ru, D3, D3 + timedelta(days=1), _usage(D3, 2) * 2)  # duplicate keys
    assert _count(engine, ru)[D3] == 5
    # retention: days before the cutoff leave, whole
    with engine.begin() as conn:
        pruned = drop_days_before(conn, ru, D2)
    assert (pruned.rows, pruned.partitions_dropped) == (3, 1 if pg else 0)
    assert _count(engine, ru) == {D2: 2, D3: 5}
    if pg:
        with engine.connect() as conn:
            assert sorted(day_children(conn, ru.name)) == [D2, D3]


def _replace(engine: sa.Engine, first: date, last: date, rows: list[dict]) -> int:
    ru = t.relaycore_usage
    with engine.begin() as conn, replacing(conn, ru, first, last, {r["day"] for r in rows}, count=True) as target:
        insert_rows(conn, target.into, rows)
    return target.removed


def _leftovers(engine: sa.Engine) -> list[str]:
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        return list(
            conn.exec_driver_sql(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
                "AND relname LIKE 'relaycore_usage%%' AND (relname LIKE '%%loading%%' OR relname LIKE '%%_new')"
            ).scalars()
        )


def test_replacing_loads_new_days_and_readers_see_the_old_ones_until_commit(engine) -> None:  # type: ignore[no-untyped-def]
    """`replacing` (what landing, costing and reconciliation write through): on PostgreSQL the rows go into
    new children without indexes that take their days' places at the end, with every index of the table."""
    ru = t.relaycore_usage
    assert _replace(engine, D1, D3, _usage(D1, 3) + _usage(D2, 4)) == 0
    with engine.begin() as conn, replacing(conn, ru, D2, D3, [D2], count=True) as target:
        insert_rows(conn, target.into, _usage(D2, 2, "b"))
        assert _count(engine, ru) == {D1: 3, D2: 4}  # another connection still reads the old day
    assert target.removed == 4 and _count(engine, ru) == {D1: 3, D2: 2}
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            indexes = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s",
                (f"relaycore_usage_p{D2:%Y%m%d}",),
            ).scalar_one()
            parent = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'relaycore_usage'"
            ).scalar_one()
            assert indexes == parent >= 1  # the primary key (and any other index) built at the swap
            # the day's CHECK that let the attach skip its scan is gone: the partition bounds say it
            checks = conn.exec_driver_sql(
                "SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid = to_regclass(%s)",
                (f"relaycore_usage_p{D2:%Y%m%d}",),
            ).scalars()
            assert list(checks) == []
    # a failed replace (duplicate keys: the primary key is built at the swap) leaves the day as it was
    with pytest.raises(DUPLICATE):
        _replace(engine, D2, D3, _usage(D2, 2, "c") * 2)
    assert _count(engine, ru) == {D1: 3, D2: 2} and _leftovers(engine) == []
    # a window whose day gets no rows is emptied; a day new to the table gets its child
    assert _replace(engine, D1, D3 + timedelta(days=1), _usage(D3, 1)) == 5
    assert _count(engine, ru) == {D3: 1} and _leftovers(engine) == []


@pytest.mark.parametrize("db_url", PG_ONLY, indirect=True)
def test_a_row_of_a_day_without_partition_is_kept_and_moves_into_its_own(engine) -> None:  # type: ignore[no-untyped-def]
    """A hand-written insert for a day with no child lands in the default child; the day's child is then
    created around it, and a replace of that day removes it like any other row of the day."""
    ct_day = D1
    with engine.begin() as conn:
        insert_rows(conn, t.relaycore_usage, _usage(ct_day, 2, "hand"))
        assert conn.exec_driver_sql("SELECT count(*) FROM relaycore_usage_pdefault").scalar_one() == 2
    prepare_days(engine, t.relaycore_usage, [D1, D2])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM relaycore_usage_pdefault").scalar_one() == 0
        assert conn.exec_driver_sql(f"SELECT count(*) FROM relaycore_usage_p{D1:%Y%m%d}").scalar_one() == 2
    with engine.begin() as conn:
        assert replace_days(conn, t.relaycore_usage, D1, D2, _usage(D1, 1)) == (2, 1)
    assert _count(engine, t.relaycore_usage) == {D1: 1}
    # only days that get rows get a child: D2 was prepared, D3 never was; days_with_rows reads children
    with engine.connect() as conn:
        assert sorted(day_children(conn, "relaycore_usage")) == [D1, D2]
        assert days_with_rows(conn, t.relaycore_usage, D1, D3 + timedelta(days=1)) == [D1]
    with engine.begin() as conn:  # a replace of a day with no child: its rows wait in the default child, kept
        assert replace_days(conn, t.relaycore_usage, D3, D3 + timedelta(days=1), _usage(D3, 2)) == (0, 2)
    with engine.connect() as conn:
        assert days_with_rows(conn, t.relaycore_usage, D1, D3 + timedelta(days=1)) == [D1, D3]
        assert conn.exec_driver_sql("SELECT count(*) FROM relaycore_usage_pdefault").scalar_one() == 2


@pytest.mark.parametrize("db_url", PG_ONLY, indirect=True)
def test_the_parent_gets_statistics_once_and_the_new_days_their_own(engine) -> None:  # type: ignore[no-untyped-def]
    """Joins through a partitioned parent take its column statistics, which autovacuum never gathers: the
    first analyze_days gathers them (every child with it); later ones analyze the replaced days alone."""

    def rows_seen() -> dict[str, float]:  # what the last ANALYZE of each table counted (pg_class, transactional)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT relname, reltuples FROM pg_class"
                " WHERE relname LIKE 'relaycore_usage%%' AND relkind IN ('r', 'p')"
            ).all()
        return {name: n for name, n in rows}

    def parent_distinct_ids() -> list[float]:
        with engine.connect() as conn:
            return list(
                conn.exec_driver_sql(
                    "SELECT n_distinct FROM pg_stats WHERE tablename = 'relaycore_usage' AND attname = 'request_id'"
                    " AND inherited"
                ).scalars()
            )

    assert _replace(engine, D1, D3, _usage(D1, 30) + _usage(D2, 40)) == 0
    with engine.begin() as conn:
        analyze_days(conn, t.relaycore_usage, D1, D3)
    assert parent_distinct_ids() == [-1.0]  # all distinct: the planner scales it with the table
    d1, d2 = f"relaycore_usage_p{D1:%Y%m%d}", f"relaycore_usage_p{D2:%Y%m%d}"
    assert {k: rows_seen()[k] for k in ("relaycore_usage", d1, d2)} == {"relaycore_usage": 70, d1: 30, d2: 40}
    assert _replace(engine, D2, D3, _usage(D2, 50, "b")) == 40
    with engine.begin() as conn:
        analyze_days(conn, t.relaycore_usage, D2, D3)
    # the new child of D2 is analyzed; the parent is not sampled again (it would count 80)
    assert {k: rows_seen()[k] for k in ("relaycore_usage", d1, d2)} == {"relaycore_usage": 70, d1: 30, d2: 50}


@pytest.mark.parametrize("db_url", PG_ONLY, indirect=True)
def test_a_days_statistics_come_from_a_smaller_sample_and_still_see_every_id_distinct(engine) -> None:  # type: ignore[no-untyped-def]
    """analyze_days samples a day at DAY_STATISTICS_TARGET (9,000 rows, not 30,000: a sixth of the time): the
    histograms are coarser, the ids still all distinct, and the caller's transaction gets its setting back."""
    rows = [{**r, "input_tokens": i, "model": f"m{i % 7}"} for i, r in enumerate(_usage(D1, 40_000))]
    _replace(engine, D1, D2, rows)
    with engine.begin() as conn:
        analyze_days(conn, t.relaycore_usage, D1, D2)  # the parent's first: every child with it
        analyze_days(conn, t.relaycore_usage, D1, D2)  # the child alone
        restored = conn.exec_driver_sql("SHOW default_statistics_target").scalar_one()
    with engine.connect() as conn:
        stats = {
            r[0]: r[1:]
            for r in conn.exec_driver_sql(
                "SELECT attname, n_distinct, array_length(histogram_bounds::text::text[], 1),"
                " array_length(most_common_vals::text::text[], 1) FROM pg_stats"
                f" WHERE tablename = 'relaycore_usage_p{D1:%Y%m%d}' AND NOT inherited"
            ).all()
        }
    assert restored == "100"
    assert stats["request_id"][0] == -1.0  # what the joins by id need
    assert stats["input_tokens"][1] == DAY_STATISTICS_TARGET + 1  # 30 buckets, not 100
    assert stats["model"][2] == 7  # the few models: an exact list either way


@pytest.mark.parametrize("backend", PG_ONLY)
def test_migration_converts_an_existing_warehouse_and_back(backend: str) -> None:
    from alembic import command

    from cams.warehouse.db import alembic_config

    with fresh_pg_database("cams_part") as url:
        engine = make_engine(url)
        with engine.begin() as conn:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0011")  # a warehouse from before partitioning, with data
        with engine.begin() as conn:
            assert not is_partitioned(conn, "relaycore_usage")
            steered = [{**r, "steering_rule": "cheap-first", "model_requested": "gpt-4.1"} for r in _usage(D1, 3)]
            insert_rows(conn, t.relaycore_usage, steered + _usage(D2, 4))
            insert_rows(
                conn,
                _as_of_0011(t.cost_tracking),
                [
                    {**r, "unpriced": False, "cost_usd": 0.5, "computed_at": r["ingested_at"]}
                    for r in _usage(D1, 2) + _usage(D2, 1)
                ],
            )

        def shape(conn: sa.Connection) -> dict:
            return {
                name: (
                    sorted(
                        conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = %s", (name,)).scalars()
                    ),
                    conn.exec_driver_sql("SELECT obj_description(to_regclass(%s), 'pg_class')", (name,)).scalar(),
                    [
                        tuple(r)
                        for r in conn.exec_driver_sql(
                            "SELECT column_name, data_type, is_nullable, column_default "
                            "FROM information_schema.columns WHERE table_name = %s AND table_schema = current_schema() "
                            "ORDER BY ordinal_position",
                            (name,),
                        )
                    ],
                )
                for name in DAY_PARTITIONED
            }

        with engine.connect() as conn:
            plain = shape(conn)
        with engine.begin() as conn:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0012")  # 0012 partitions the four tables
        with engine.connect() as conn:
            assert all(is_partitioned(conn, name) for name in DAY_PARTITIONED)
            assert sorted(day_children(conn, "relaycore_usage")) == [D1, D2]
            assert sorted(day_children(conn, "cost_tracking")) == [D1, D2]
            assert day_children(conn, "auterity_spans") == {}
            assert shape(conn) == plain  # same columns, defaults, comments and index names
        assert _count(engine, t.relaycore_usage) == {D1: 3, D2: 4}
        assert _count(engine, t.cost_tracking) == {D1: 2, D2: 1}
        with pytest.raises(DUPLICATE), engine.begin() as conn:  # the primary key still holds
            insert_rows(conn, t.relaycore_usage, _usage(D1, 1))
        # and back: plain tables with every row
        with engine.begin() as conn:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0011")
        with engine.connect() as conn:
            assert not any(is_partitioned(conn, name) for name in DAY_PARTITIONED)
            assert shape(conn) == plain
        assert _count(engine, t.relaycore_usage) == {D1: 3, D2: 4}
        # to head: 0014 carries the steering fields of rows already costed into cost_tracking
        migrate(engine)
        with engine.connect() as conn:
            carried = conn.execute(
                sa.select(t.cost_tracking.c.day, t.cost_tracking.c.steering_rule, t.cost_tracking.c.model_requested)
            ).all()
        assert sorted(carried) == [(D1, "cheap-first", "gpt-4.1")] * 2 + [(D2, None, None)]
        engine.dispose()


def _as_of_0011(table: sa.Table) -> sa.Table:
    """`table` as it stood before migration 0014 added the steering fields to cost_tracking."""
    later = {"steering_rule", "model_requested", "fallback_from"}
    return sa.Table(table.name, sa.MetaData(), *(c._copy() for c in table.columns if c.name not in later))


def test_retention_asset_prunes_as_of_the_run_and_keeps_rollups(db_url: str, engine) -> None:  # type: ignore[no-untyped-def]
    """The asset's cutoff is the run's as-of less retention.days, never the wall clock."""
    for table in (t.relaycore_usage,):
        for day in (D1, D2, D3):
            prepare_days(engine, table, [day])
            with engine.begin() as conn:
                replace_days(conn, table, day, day + timedelta(days=1), _usage(day, 2))
    with engine.begin() as conn:
        insert_rows(
            conn,
            t.quarantine,
            [
                {"source": "relaycore", "day": d, "ref": f"f:{d}", "raw": "x", "reason": "bad", "quarantined_at": now}
                for d, now in ((D1, datetime(2026, 11, 1, tzinfo=UTC)), (D3, datetime(2026, 11, 3, tzinfo=UTC)))
            ],
        )
        conn.execute(
            sa.insert(t.cost_daily_rollups),
            [
                {
                    "day": D1,
                    "org_id": "acme",
                    "model": "gpt-4o",
                    "provider": "openai",
                    "task_type": "chat",
                    "requests": 2,
                    "errors": 0,
                    "unpriced_requests": 0,
                    "input_tokens": 20,
                    "output_tokens": 10,
                    "cached_input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "reasoning_tokens": 0,
                    "cost_usd": 1,
                    "charged_usd": 1,
                }
            ],
        )
    # the lookup service's rows: selections and estimates of Nov 1 (before the cutoff) and Nov 2
    nov1, nov2 = datetime(2026, 11, 1, 23, 59, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.model_selection_history), [_selection(f"s{i}", at) for i, at in enumerate([nov1] * 3 + [nov2])]
        )
        conn.execute(
            sa.insert(t.model_selection_explanations),
            [
                {"id": f"s{i}", "table_version": "v", "kind": "selection", "explanation_json": "{}", "created_at": at}
                for i, at in enumerate([nov1] * 3 + [nov2])
            ]
            + [
                {
                    "id": "v:chat:standard",
                    "table_version": "v",
                    "kind": "row",
                    "explanation_json": "{}",
                    "created_at": nov1,
                }
            ],
        )
        conn.execute(
            sa.insert(t.token_estimates),
            [
                {
                    "request_id": f"q{i}",
                    "model": "m",
                    "family": "f",
                    "encoding": "e",
                    "raw_input_tokens": 1,
                    "estimated_at": at,
                }
                for i, at in enumerate([nov1, nov2])
            ],
        )
    asset = build_retention_asset(RetentionConfig(days=31))
    as_of = datetime(2026, 12, 3, 6, tzinfo=UTC)  # cutoff 2026-11-02: D1 leaves, D2 and D3 stay
    with dg.instance_for_test() as instance:  # read the result while its instance lives
        result = dg.materialize(
            [asset],
            resources={"warehouse": WarehouseResource(database_url=db_url)},
            tags={AS_OF_TAG: as_of.isoformat()},
            instance=instance,
        )
        assert result.success
        meta = result.asset_materializations_for_node("warehouse_retention")[0].metadata
    assert meta["kept_from"].value == "2026-11-02"
    # two requests, one quarantined line, three selections, their explanations and one estimate
    assert meta["rows_removed"].value == 3 + 3 + 3 + 1
    with engine.connect() as conn:
        left = {
            name: sorted(conn.execute(sa.text(f"select {key} from {name}")).scalars())
            for name, key in (
                ("model_selection_history", "selection_id"),
                ("model_selection_explanations", "id"),
                ("token_estimates", "request_id"),
            )
        }
    assert left == {
        "model_selection_history": ["s3"],
        "model_selection_explanations": ["s3", "v:chat:standard"],  # a table row's explanation stays
        "token_estimates": ["q1"],
    }
    assert meta["partitions_dropped"].value == (1 if engine.dialect.name == "postgresql" else 0)
    assert _count(engine, t.relaycore_usage) == {D2: 2, D3: 2}
    assert _count(engine, t.quarantine) == {D3: 1}
    assert _count(engine, t.cost_daily_rollups) == {D1: 1}  # rollups are kept


def test_selection_rows_leave_in_batches(engine) -> None:  # type: ignore[no-untyped-def]
    from cams.warehouse.retention import delete_before

    at = [datetime(2026, 11, 1, h, tzinfo=UTC) for h in range(5)]
    with engine.begin() as conn:
        conn.execute(sa.insert(t.model_selection_history), [_selection(f"s{i}", a) for i, a in enumerate(at)])
    mh = t.model_selection_history
    assert delete_before(engine, mh, mh.c.selected_at, at[3], batch_rows=2) == 3  # batches of 2, 1
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(mh.c.selection_id)).scalars()) == ["s3", "s4"]
