"""Figures per UTC day of a table's rows, in one grouped query: what each partition reports.

A range run covers many days at once; Dagster stamps one materialization's metadata on every
partition of the range (Dagster issues #18123, #21072), so each day's own figures are read back
from the warehouse grouped by day and reported per partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, Table, and_, select


def per_day(
    engine: Engine,
    table: Table,
    first: date,
    last_exclusive: date,
    figures: Mapping[str, Any],
    where: Any = None,
) -> dict[str, dict[str, float | int]]:
    """{ISO day: {name: value}} for every day in [first, last_exclusive), zeros where a day has no rows.

    `figures` maps a name to an aggregate over `table` (e.g. `func.count()`); sums of money come
    back as floats rounded to 10 places, counts as ints.
    """
    clause = and_(table.c.day >= first, table.c.day < last_exclusive)
    if where is not None:
        clause = and_(clause, where)
    query = select(table.c.day, *(agg.label(name) for name, agg in figures.items())).where(clause).group_by(table.c.day)
    out: dict[str, dict[str, float | int]] = {}
    day = first
    while day < last_exclusive:
        out[day.isoformat()] = dict.fromkeys(figures, 0)
        day = date.fromordinal(day.toordinal() + 1)
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            key = str(row["day"])[:10]
            out[key] = {name: _number(row[name]) for name in figures}
    return out


def _number(value: Any) -> float | int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value() and "." not in str(value):
        return int(value)
    return round(float(value), 10)
