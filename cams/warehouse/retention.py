"""Retention for the tables that are not day-partitioned: the lookup service's per-selection rows.

Selection history, its explanations and the token estimates grow with every `select` (at the request
rate, not the gateway's billed day), so they leave by time too. They are keyed by a random id, not a
day, and written by the service's writer while this runs: rows go in batches of primary keys found
through the time index, each batch its own short transaction, so neither the writer nor a reader waits
on a day-sized delete. (Partitioning them by day, like the usage tables, is the next step at rates
where a nightly DELETE's dead rows matter.)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ColumnElement, Engine, Table, and_, delete, select

BATCH_ROWS = 50_000


def delete_before(
    engine: Engine,
    table: Table,
    column: Column,
    cutoff: datetime,
    where: ColumnElement[bool] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Delete the rows of `table` whose `column` is before `cutoff` (and `where`), `batch_rows` at a time;
    the number deleted."""
    (key,) = table.primary_key.columns  # one-column keys: these tables are keyed by an id
    old = and_(column < cutoff, *([where] if where is not None else []))
    total = 0
    while True:
        with engine.begin() as conn:
            batch = select(key).where(old).limit(batch_rows).scalar_subquery()
            n = conn.execute(delete(table).where(key.in_(batch))).rowcount
        total += n
        if n < batch_rows:
            return total
