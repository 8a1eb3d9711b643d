"""per-request tables partitioned by day on PostgreSQL

Converts relaycore_usage, auterity_spans, cost_tracking and cost_reconciliation into declaratively
partitioned tables (RANGE on day), one child per day already held plus a default child, keeping every
row, column, default, comment, primary key and index name. SQLite keeps plain tables (nothing to do).
The copy runs in the migration's transaction: on a big warehouse, plan a maintenance window (about the
time of one `INSERT … SELECT` of the tables; see docs/operations.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 01:10:00
"""

from __future__ import annotations

from datetime import timedelta

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("relaycore_usage", "auterity_spans", "cost_tracking", "cost_reconciliation")


def _rebuild(conn, table: str, partitioned: bool) -> None:  # type: ignore[no-untyped-def]
    """Rebuild `table` as a partitioned (or, going down, a plain) table with the same shape and rows."""
    kind = conn.exec_driver_sql("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (table,)).scalar()
    if kind != ("r" if partitioned else "p"):  # already in that form (or absent): nothing to do
        return
    old = f"{table}_{'un' if partitioned else ''}partitioned"
    pkey = conn.exec_driver_sql(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = to_regclass(%s) AND contype = 'p'",
        (table,),
    ).one()
    indexes = conn.exec_driver_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
        "AND indexname <> %s",
        (table, pkey[0]),
    ).all()
    comment = conn.exec_driver_sql("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)).scalar()
    # the old table and its index names step aside (index names are unique per schema)
    conn.exec_driver_sql(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    for name in (pkey[0], *(n for n, _ in indexes)):
        conn.exec_driver_sql(f'ALTER INDEX "{name}" RENAME TO "{name}{old[len(table) :]}"')
    conn.exec_driver_sql(
        f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS '
        "INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE)"
        + (" PARTITION BY RANGE (day)" if partitioned else "")
    )
    conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD CONSTRAINT "{pkey[0]}" {pkey[1]}')
    for _, definition in indexes:  # read before the renames: the original name, on `table` (now the new one)
        conn.exec_driver_sql(definition.replace(" ON ONLY ", " ON ", 1))
    if comment is not None:
        # a utility statement takes no bound parameters: let the server quote the text
        sql = conn.exec_driver_sql(
            "SELECT format('COMMENT ON TABLE %%I IS %%L', %s::text, %s::text)", (table, comment)
        ).scalar_one()
        conn.exec_driver_sql(sql)
    if partitioned:
        conn.exec_driver_sql(f'CREATE TABLE "{table}_pdefault" PARTITION OF "{table}" DEFAULT')
        for (day,) in conn.exec_driver_sql(f'SELECT DISTINCT day FROM "{old}" ORDER BY day').all():
            conn.exec_driver_sql(
                f'CREATE TABLE "{table}_p{day:%Y%m%d}" PARTITION OF "{table}" '
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
            )
    conn.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM "{old}"')
    conn.exec_driver_sql(f'DROP TABLE "{old}"')  # a partitioned one with its children
    conn.exec_driver_sql(f'ANALYZE "{table}"')


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for table in TABLES:
            _rebuild(conn, table, partitioned=True)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for table in TABLES:
            _rebuild(conn, table, partitioned=False)
