"""Great Expectations 1.x, called directly (dagster-ge does not support GX 1.x), for asset checks.

The expectations run where the rows are: GX's SQL execution engine turns each one into aggregate
queries over a view of the rows a check covers, so a day of any size is checked without being
read into the run's memory (reading a 2M-request day's columns into pandas for GX peaked at
2.4 GiB; in SQL the run's memory does not move, and it took less time — measured).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from sqlalchemy import Engine
from sqlalchemy.sql import Select

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class Expect:
    """An expectation named by its GX class and arguments, built only when a check runs: importing Great
    Expectations takes ~2 s, which every `cams run`, code server and step process paid at import."""

    kind: str  # the class in great_expectations.expectations, e.g. ExpectColumnValuesToBeBetween
    column: str
    args: tuple[tuple[str, Any], ...] = ()

    def build(self) -> Any:
        import great_expectations as gx

        args = {k: list(v) if isinstance(v, tuple) else v for k, v in self.args}  # value sets are lists to GX
        return getattr(gx.expectations, self.kind)(column=self.column, **args)

    @property
    def label(self) -> str:
        """How a result names it: `expect_column_values_to_be_unique(request_id)`."""
        return f"{re.sub(r'(?<!^)(?=[A-Z])', '_', self.kind).lower()}({self.column})"


def expect(kind: str, column: str, **args: Any) -> Expect:
    """`expect("ExpectColumnValuesToBeBetween", "cost_usd", min_value=0)`."""
    return Expect(kind, column, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in args.items())))


def import_in_background() -> None:
    """Start importing Great Expectations on a thread, for a caller about to wait on the database (a
    landing's swap): the ~2 s import then overlaps that wait instead of delaying the first check. A
    check that comes before it is done waits for it (Python's import lock)."""
    if "great_expectations" not in sys.modules:
        threading.Thread(target=_import_gx, name="cams-gx-import", daemon=True).start()


def _import_gx() -> None:
    import great_expectations  # noqa: F401


_ONE_AT_A_TIME = threading.Lock()


@functools.cache
def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


def validate(
    engine: Engine, rows: Select, expectations: Sequence[Any], held: Mapping[Expect, str] | None = None
) -> tuple[bool, dict[str, Any]]:
    """Run expectations on the rows a SELECT returns; (success, per-expectation unexpected counts).

    `held` names expectations the caller knows hold whatever the rows, with why (a day's primary key makes
    its ids unique): they are reported as passed with that reason instead of costing a scan (1.4-2 s for
    a million-row uniqueness check).

    The rows are put behind a view of their own (dropped afterwards) rather than handed to GX as a
    query asset: GX learns a query asset's columns by running the query unbounded and fetching every
    row into the client, which is the very cost this avoids. A view's columns it reflects.
    """
    import great_expectations as gx

    held = held or {}
    expectations = [e for e in expectations if e not in held]
    name = f"cams_check_{uuid.uuid4().hex[:12]}"
    sql = str(rows.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE VIEW "{name}" AS {sql}')
    with _ONE_AT_A_TIME:  # one ephemeral GX context per process; steps in threads share it
        ctx = _context()
        source = None
        try:
            url = engine.url.render_as_string(hide_password=False)
            add = {"postgresql": ctx.data_sources.add_postgres, "sqlite": ctx.data_sources.add_sqlite}
            source = add.get(engine.dialect.name, ctx.data_sources.add_sql)(name=name, connection_string=url)
            batch = source.add_table_asset(name="rows", table_name=name).add_batch_definition_whole_table("all")
            built = [e.build() if isinstance(e, Expect) else e for e in expectations]
            suite = gx.ExpectationSuite(name=name, expectations=built)
            # pass or fail first: each failing value list is another scan (0.9 s for a 1M-row uniqueness check)
            result = batch.get_batch().validate(suite, result_format="BOOLEAN_ONLY")
            if not result.success:  # then the counts and samples a person needs, for the failing run only
                result = batch.get_batch().validate(suite)
            with engine.connect() as conn:
                checked = conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar_one()
        finally:
            if source is not None:
                source.get_execution_engine().close()  # its connections, not the warehouse's
                ctx.data_sources.delete(name)
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}"')
    detail: dict[str, Any] = {"rows": checked}
    detail.update({e.label: f"ok ({why})" for e, why in held.items()})
    for r in result.results:
        cfg = r.expectation_config
        label = f"{cfg.type}({cfg.kwargs.get('column', cfg.kwargs.get('column_list', ''))})"
        detail[label] = "ok" if r.success else f"{(r.result or {}).get('unexpected_count', '?')} unexpected"
    return bool(result.success), detail


def check_result(
    name: str,
    engine: Engine,
    rows: Select,
    expectations: Sequence[Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    held: Mapping[Expect, str] | None = None,
) -> dg.AssetCheckResult:
    ok, detail = validate(engine, rows, expectations, held)
    return dg.AssetCheckResult(
        check_name=name,
        passed=ok,
        severity=severity,
        metadata={k: dg.MetadataValue.text(str(v)) for k, v in detail.items()},
    )
