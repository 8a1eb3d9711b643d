"""The per-request tables as one PostgreSQL partition per UTC day (issue 15; docs/operations.md).

Replacing days of `relaycore_usage`, `auterity_spans`, `cost_tracking` or `cost_reconciliation` on
PostgreSQL (`replacing`) loads each day into a new child table without indexes and swaps it in for the
old child at the end of the writer's transaction, where it gets its indexes in one sort: no million rows
deleted one by one (no dead tuples, no bloat, no VACUUM debt), no million index insertions, and readers
see the old day until the writer commits. Retention drops whole children. SQLite keeps plain tables:
there, and on a table someone left unpartitioned, the same calls delete by `day`.

Children are named `<table>_pYYYYMMDD`; `<table>_pdefault` catches rows of a day no child exists for
(a hand-written insert), so nothing is refused; a replace of that day removes them with the rest of the
day. `prepare_days` creates children ahead (moving such rows in) for writers that insert into the table
itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, and_, delete, func, select

from cams.warehouse.db import insert_rows, lock_for_replace

DAY_PARTITIONED = ("relaycore_usage", "auterity_spans", "cost_tracking", "cost_reconciliation")
_CHILD = re.compile(r"^(?P<table>.+)_p(?P<day>\d{8})$")


def child_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_pdefault"


def is_partitioned(conn: Connection, table: str) -> bool:
    """Whether `table` is a partitioned table here (PostgreSQL, after migration 0012)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.exec_driver_sql("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (table,)).scalar()
    return kind == "p"


def day_children(conn: Connection, table: str) -> dict[date, str]:
    """The day children of a partitioned table, by day (the default child and foreign names left out)."""
    names = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
        (table,),
    ).scalars()
    out: dict[date, str] = {}
    for name in names:
        m = _CHILD.match(name)
        if m and m.group("table") == table:
            d = m.group("day")
            out[date(int(d[:4]), int(d[4:6]), int(d[6:]))] = name
    return out


def _days(first: date, last_exclusive: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last_exclusive - first).days)]


def _create_children(conn: Connection, table: Table, days: Iterable[date]) -> list[date]:
    """Create the missing children of `days`; rows of those days in the default child move into them."""
    have = day_children(conn, table.name)
    missing = [d for d in days if d not in have]
    if not missing:
        return []
    dflt = default_name(table.name)
    for d in missing:
        held = conn.exec_driver_sql(f'SELECT count(*) FROM "{dflt}" WHERE day = %s', (d,)).scalar_one()
        if held:  # PostgreSQL refuses a child whose rows sit in the default: take them out and back in
            conn.exec_driver_sql(
                f'CREATE TEMPORARY TABLE cams_moving ON COMMIT DROP AS SELECT * FROM "{dflt}" WHERE day = %s', (d,)
            )
            conn.exec_driver_sql(f'DELETE FROM "{dflt}" WHERE day = %s', (d,))
        conn.exec_driver_sql(
            f'CREATE TABLE IF NOT EXISTS "{child_name(table.name, d)}" PARTITION OF "{table.name}" '
            f"FOR VALUES FROM ('{d.isoformat()}') TO ('{(d + timedelta(days=1)).isoformat()}')"
        )
        if held:
            conn.exec_driver_sql(f'INSERT INTO "{table.name}" SELECT * FROM cams_moving')
            conn.exec_driver_sql("DROP TABLE cams_moving")
    return missing


def prepare_days(engine: Engine | Connection, table: Table, days: Iterable[date]) -> None:
    """Create the children for `days` (the days about to get rows), in a short transaction of its own.

    Creating a partition locks the whole table; done inside the long replace it would keep every
    reader of every day waiting for the run. Only days with rows get a child: a year's range with one
    busy week creates seven. `engine` may be an idle connection (no transaction open).
    """
    days = sorted(set(days))
    if not days:
        return
    if isinstance(engine, Connection):
        with engine.begin():
            if is_partitioned(engine, table.name):
                # one creator (or replacer) of the table's children at a time: two runs of the same days
                # creating the same child otherwise deadlock on the parent and its default child
                lock_for_replace(engine, table)
                _create_children(engine, table, days)
        return
    with engine.connect() as conn:
        prepare_days(conn, table, days)


def days_with_rows(conn: Connection, table: Table, first: date, last_exclusive: date) -> list[date]:
    """The days of [first, last_exclusive) that hold rows of `table`: on a partitioned table, its non-empty
    children (and the default child's days), without reading a day's rows; elsewhere from the primary key."""
    if not is_partitioned(conn, table.name):
        found = conn.execute(
            select(table.c.day).where(table.c.day >= first, table.c.day < last_exclusive).distinct()
        ).scalars()
        return sorted(d if isinstance(d, date) else date.fromisoformat(str(d)) for d in found)
    days = [
        d
        for d, name in sorted(day_children(conn, table.name).items())
        if first <= d < last_exclusive and conn.exec_driver_sql(f'SELECT EXISTS (SELECT 1 FROM "{name}")').scalar()
    ]
    stray = conn.exec_driver_sql(
        f'SELECT DISTINCT day FROM "{default_name(table.name)}" WHERE day >= %s AND day < %s', (first, last_exclusive)
    ).scalars()
    return sorted({*days, *stray})


def replace_days(
    conn: Connection,
    table: Table,
    first: date,
    last_exclusive: date,
    rows: Iterable[Mapping[str, Any]] = (),
) -> tuple[int, int]:
    """Empty the days [first, last_exclusive) of `table` and insert `rows`, on the caller's transaction.

    A day partition is truncated (TRUNCATE is transactional: a failed run leaves the old rows); a plain
    table is deleted from. Returns (rows removed, rows inserted). The table is locked first so two runs
    of the same days serialize (`lock_for_replace`).
    """
    window = and_(table.c.day >= first, table.c.day < last_exclusive)
    lock_for_replace(conn, table)
    if not is_partitioned(conn, table.name):
        deleted = conn.execute(delete(table).where(window)).rowcount
        return deleted, insert_rows(conn, table, rows)
    removed = conn.execute(select(func.count()).select_from(table).where(window)).scalar_one()
    children = [name for d, name in day_children(conn, table.name).items() if first <= d < last_exclusive]
    if children:
        conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{name}"' for name in children))
    conn.exec_driver_sql(  # rows of days without a child (a hand-written insert) sit in the default child
        f'DELETE FROM "{default_name(table.name)}" WHERE day >= %s AND day < %s', (first, last_exclusive)
    )
    return removed, insert_rows(conn, table, rows)


@dataclass
class Replacement:
    """What `replacing` yields: the table to insert the window's rows into, and how many rows the window
    held before. With day partitions `into` routes a row only to a day it has a new child for: `include`
    adds days, for a writer that learns them while it reads."""

    into: Table
    removed: int | None  # counted when asked for (`replacing(count=True)`), else None
    days: set[date] = field(default_factory=set)  # the days with a new child (partitioned only)
    _conn: Connection | None = None  # set when `into` is a loading table of new day children
    _table: str = ""
    _window: tuple[date, date] = (date.min, date.max)

    def include(self, days: Iterable[date]) -> None:
        """Make room in `into` for rows of `days`; a no-op where `into` is the table itself."""
        if self._conn is None:
            return
        for d in sorted(set(days) - self.days):
            if not self._window[0] <= d < self._window[1]:  # its swap would replace a day not asked for
                raise ValueError(f"{self._table}: a row of {d} is outside the days being replaced {self._window}")
            name = child_name(self._table, d)
            # the day as a CHECK of its own, true of the empty table: the attach at the swap then trusts it
            # instead of reading the whole day again to prove every row belongs there
            within = f"day >= '{d.isoformat()}' AND day < '{(d + timedelta(days=1)).isoformat()}'"
            self._conn.exec_driver_sql(
                f'CREATE TABLE "{name}_new" PARTITION OF "{self.into.name}" '
                f'(CONSTRAINT "{name}_day" CHECK ({within})) {_bounds(d)}'
            )
            self.days.add(d)


@contextmanager
def replacing(
    conn: Connection, table: Table, first: date, last_exclusive: date, days: Iterable[date], count: bool = False
) -> Iterator[Replacement]:
    """Replace the days [first, last_exclusive) of `table` with the rows the caller inserts into
    `Replacement.into`, on the caller's transaction; `days` are the days that will get rows (more may
    be added while the rows go in, `Replacement.include`). With `count`, `Replacement.removed` says how
    many rows the window held (on PostgreSQL a count of the old days: only the landing reports it).

    With day partitions (PostgreSQL) the rows go into a new child per day, without indexes, under a
    loading table that routes them by day; at the end each new child takes its day's place (the old one
    dropped) and gets its indexes when attached, one sort each: a million index insertions cost 2–3×
    more. Readers see the old day until the caller commits, and the whole table is locked only for the
    swap at the end. Elsewhere the window is emptied first and the rows go into `table` itself.
    """
    if not is_partitioned(conn, table.name):
        removed, _ = replace_days(conn, table, first, last_exclusive)
        yield Replacement(table, removed)
        return
    lock_for_replace(conn, table)
    window = and_(table.c.day >= first, table.c.day < last_exclusive)
    removed = conn.execute(select(func.count()).select_from(table).where(window)).scalar_one() if count else None
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    loading = f"{table.name}_loading{pid}"
    conn.exec_driver_sql(f'CREATE TABLE "{loading}" (LIKE "{table.name}" INCLUDING DEFAULTS) PARTITION BY RANGE (day)')
    target = Replacement(
        table.to_metadata(MetaData(), name=loading),
        removed,
        _conn=conn,
        _table=table.name,
        _window=(first, last_exclusive),
    )
    target.include(days)
    yield target
    days = sorted(target.days)
    old = day_children(conn, table.name)
    conn.exec_driver_sql(f'LOCK TABLE "{table.name}" IN ACCESS EXCLUSIVE MODE')
    # a day's rows in the default child would make its new child's attach fail
    conn.exec_driver_sql(
        f'DELETE FROM "{default_name(table.name)}" WHERE day >= %s AND day < %s', (first, last_exclusive)
    )
    for d in days:
        name = child_name(table.name, d)
        conn.exec_driver_sql(f'ALTER TABLE "{loading}" DETACH PARTITION "{name}_new"')
        if d in old:
            conn.exec_driver_sql(f'ALTER TABLE "{table.name}" DETACH PARTITION "{name}"')
            conn.exec_driver_sql(f'DROP TABLE "{name}"')
        conn.exec_driver_sql(f'ALTER TABLE "{name}_new" RENAME TO "{name}"')
        conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ATTACH PARTITION "{name}" {_bounds(d)}')
        conn.exec_driver_sql(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_day"')  # the bounds say it now
    conn.exec_driver_sql(f'DROP TABLE "{loading}"')
    emptied = [name for d, name in old.items() if first <= d < last_exclusive and d not in days]
    if emptied:
        conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{name}"' for name in emptied))


def _bounds(d: date) -> str:
    return f"FOR VALUES FROM ('{d.isoformat()}') TO ('{(d + timedelta(days=1)).isoformat()}')"


@dataclass(frozen=True)
class Pruned:
    """What retention removed from one table."""

    table: str
    rows: int
    partitions_dropped: int


def drop_days_before(conn: Connection, table: Table, cutoff: date) -> Pruned:
    """Remove every row of `table` dated before `cutoff`: whole day children on PostgreSQL, DELETE elsewhere.

    Dropping a child locks the whole table: keep the caller's transaction to this call."""
    if not is_partitioned(conn, table.name):
        lock_for_replace(conn, table)
        return Pruned(table.name, conn.execute(delete(table).where(table.c.day < cutoff)).rowcount, 0)
    conn.exec_driver_sql(f'LOCK TABLE "{table.name}" IN ACCESS EXCLUSIVE MODE')  # taken once, not upgraded
    old = {d: name for d, name in day_children(conn, table.name).items() if d < cutoff}
    rows = conn.execute(select(func.count()).select_from(table).where(table.c.day < cutoff)).scalar_one()
    for name in old.values():
        conn.exec_driver_sql(f'DROP TABLE "{name}"')
    conn.exec_driver_sql(f'DELETE FROM "{default_name(table.name)}" WHERE day < %s', (cutoff,))
    return Pruned(table.name, rows, len(old))


def analyze_days(conn: Connection, table: Table, first: date, last_exclusive: date) -> None:
    """Fresh planner statistics for the days just replaced: the children alone when partitioned (ANALYZE of
    the parent samples, and analyzes, every child of the retention window), the table otherwise.

    The parent itself is analyzed once, when it has no statistics yet. A join through the parent takes its
    column statistics from there, and without them the planner assumes 200 distinct ids in a day of a
    million: it then sorts both sides for a merge join (the orphans' anti-join alone, 1M ids: 1.6 s
    against 0.56 s hashed). Autovacuum never analyzes a partitioned parent. Its ids are recorded as all
    distinct, a fraction that holds as the table grows, so one ANALYZE goes on serving
    (docs/operations.md).

    A day's statistics come from a sample of 9,000 rows (`DAY_STATISTICS_TARGET`), not PostgreSQL's
    default 30,000: 0.15 s instead of 0.98 s for a million requests, and the planner's choices here (hash
    joins and aggregates by id, model and org) need no finer histograms: ids come out all distinct and
    the few models, orgs and tiers as exact lists either way.
    """
    if conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {DAY_STATISTICS_TARGET}")
    try:
        _analyze(conn, table, first, last_exclusive)
    finally:
        conn.exec_driver_sql("SET LOCAL default_statistics_target TO DEFAULT")


DAY_STATISTICS_TARGET = 30  # ANALYZE samples 300 rows per unit of target


def _analyze(conn: Connection, table: Table, first: date, last_exclusive: date) -> None:
    if not is_partitioned(conn, table.name):
        conn.exec_driver_sql(f'ANALYZE "{table.name}"')
        return
    # pg_stats, not pg_statistic: a role that is not a superuser may read the view only
    if not conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = current_schema() AND tablename = %(t)s"
        " AND inherited)",
        {"t": table.name},
    ).scalar_one():
        conn.exec_driver_sql(f'ANALYZE "{table.name}"')  # its children with it
        return
    children = day_children(conn, table.name)
    names = [children[d] for d in _days(first, last_exclusive) if d in children]
    if names:
        conn.exec_driver_sql("ANALYZE " + ", ".join(f'"{n}"' for n in names))
