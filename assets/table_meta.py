"""Asset metadata that describes the warehouse table an asset writes, read off the table itself.

The column schema in the Dagster UI comes from `cams.warehouse.schema`, the same definition the
migrations are generated from, so the UI cannot drift from the tables; `notes` add a word where a
column's own comment says too little.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql


def column_schema(table: Table, notes: Mapping[str, str] | None = None) -> dg.TableSchema:
    notes = notes or {}
    pk = {c.name for c in table.primary_key.columns}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                c.type.compile(dialect=postgresql.dialect()).lower(),
                description=notes.get(c.name) or c.comment,
                constraints=dg.TableColumnConstraints(nullable=bool(c.nullable), unique=pk == {c.name}),
            )
            for c in table.columns
        ],
        constraints=dg.TableConstraints(other=[f"primary key ({', '.join(sorted(pk))})"] if pk else []),
    )


def table_metadata(table: Table, notes: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "table": table.name,
        "dagster/table_name": table.name,
        "dagster/column_schema": column_schema(table, notes),
        "about": table.comment or "",
    }
