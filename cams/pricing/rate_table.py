"""The price book's rates as a small table the warehouse joins, so a day's requests are costed in SQL.

`compute_costs` (numpy) and this module give the same dollars to the last bit: the rate rows carry the
same float rates, and `cost_expression` evaluates SPEC §3's formula in the same order and rounds the
way `numpy.round(cost, 10)` does (`rint(cost × 1e10) / 1e10`). On PostgreSQL the double is then
stored through its shortest exact text, as the COPY of a numpy float was, so moving costing from
Python into the database rewrote no money (tests/test_rate_table.py compares both on random days).

One rate row per (model, provider, service tier as the requests name them) × price entry × input
bucket, with the half-open time window in which that entry is the one in force and the input-token
range of the bucket: a few hundred rows for a day, not one per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import GenericFunction

from cams.pricing.book import PriceBook
from cams.warehouse import schema as t
from cams.warehouse.db import temporary

RATES = ("input", "cache_read", "cache_creation", "output", "reasoning")
NO_LIMIT = 2**62  # past any token count or bucket edge
NEVER = datetime(9999, 1, 1, tzinfo=UTC)

_meta = MetaData()
rates = Table(
    "cams_rates",
    _meta,
    Column("model", String(512), nullable=False),
    Column("provider", String(512), nullable=False),
    Column("service_tier", String(100), nullable=False),
    Column("valid_from", t.Ts, nullable=False),
    Column("valid_to", t.Ts, nullable=False),
    Column("input_above", BigInteger, nullable=False),  # the bucket: input_above < input_tokens <= input_upto
    Column("input_upto", BigInteger, nullable=False),
    Column("price_id", String(700), nullable=False),
    *(Column(f"rate_{r}", Double, nullable=False) for r in RATES),
    Index("ix_cams_rates_names", "model", "provider", "service_tier"),  # for lookups of a few requests
    prefixes=["TEMPORARY"],
)


class rint(GenericFunction[float]):
    """Round half to even, as numpy's rint: PostgreSQL's round(double precision) is rint(); SQLite gets
    a `rint` function registered on each connection (cams.warehouse.db)."""

    type = Double()
    inherit_cache = True


@compiles(rint, "postgresql")
def _rint_pg(element: rint, compiler: Any, **kw: Any) -> str:
    return f"round({compiler.process(element.clauses, **kw)})"


def rate_rows(book: PriceBook, names: Iterable[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """The rate rows for each (model, provider, service tier) as requests name them; a model the book
    cannot resolve gets none (its requests stay unpriced, never costed as 0)."""
    rows: list[dict[str, Any]] = []
    for model, provider, tier in names:
        key = book.resolve_model(model, provider)
        if key is None:
            continue
        entries = book.entries(key)
        for i, entry in enumerate(entries):
            # in force from its start until the next entry starts (or its own end, if sooner)
            ends = [e for e in (entries[i + 1].valid_from if i + 1 < len(entries) else None, entry.valid_to) if e]
            end = min(ends) if ends else NEVER
            if end <= entry.valid_from:
                continue
            limits = entry.thresholds
            for b in range(len(limits) + 1):
                probe = 0 if b == 0 else int(limits[b - 1]) + 1
                r = entry.rates(str(tier), probe)
                rows.append(
                    {
                        "model": model,
                        "provider": provider,
                        "service_tier": tier,
                        "valid_from": entry.valid_from,
                        "valid_to": end,
                        "input_above": -NO_LIMIT if b == 0 else int(limits[b - 1]),
                        "input_upto": int(limits[b]) if b < len(limits) else NO_LIMIT,
                        "price_id": entry.price_id,
                        **{f"rate_{k}": float(getattr(r, k)) for k in RATES},
                    }
                )
    return rows


@contextmanager
def rate_table(conn: Connection, book: PriceBook, names: Iterable[tuple[str, str, str]]) -> Iterator[Table]:
    """`cams_rates` filled for `names` on the caller's connection (and transaction), dropped after."""
    with temporary(conn, rates, rate_rows(book, names)) as table:
        if conn.dialect.name == "postgresql":  # not ANALYZEd: told it holds 36 rows, the planner hashes the
            # million requests instead of the rates (a Hash Right Join, 2× slower on a day: EXPLAIN ANALYZE)
            conn.exec_driver_sql("SET LOCAL extra_float_digits = 1")  # a double's text: its shortest exact form
        yield table


def rate_match(r: Any, model: Any, provider: Any, tier: Any, at: Any, input_tokens: Any) -> ColumnElement[bool]:
    """The join condition: the rate row of these names in force at `at` for this many input tokens."""
    return and_(
        r.c.model == model,
        r.c.provider == provider,
        r.c.service_tier == tier,
        at >= r.c.valid_from,
        at < r.c.valid_to,
        input_tokens > r.c.input_above,
        input_tokens <= r.c.input_upto,
    )


def cost_expression(
    r: Any,
    input_tokens: Any,
    output_tokens: Any,
    cached: Any,
    cache_creation: Any,
    reasoning: Any,
    dialect: str,
    money: bool = True,
) -> ColumnElement[Any]:
    """SPEC §3's cost, evaluated as cams.pricing.cost.token_cost over numpy columns, rounded as numpy
    rounds to 10 places; NULL where no rate row joined. With `money`, PostgreSQL gets NUMERIC through the
    shortest text (what a column of money stores); without, the double (what a sum of estimates needs)."""
    cost = (
        (input_tokens - cached - cache_creation) * r.c.rate_input
        + cached * r.c.rate_cache_read
        + cache_creation * r.c.rate_cache_creation
        + (output_tokens - reasoning) * r.c.rate_output
        + reasoning * r.c.rate_reasoning
    )
    return rounded_usd(cost, dialect, money)


# |x| below this many dollars has its whole number of 1e-10 USD inside a bigint (2**63 - 1 ≈ 9.2e18)
_UNITS_BELOW = 9e8


def usd_sum(x: Any, dialect: str) -> ColumnElement[Any]:
    """SUM of costs rounded to 10 places (`cost_expression(..., money=False)`), the same whatever order the
    rows come in: on PostgreSQL each cost as a whole number of 1e-10 USD summed as bigint (exact; NUMERIC
    out), so a scan that starts mid-table (`synchronize_seqscans`, when another statement is reading the day)
    or a parallel plan cannot move the last bit of a sum of doubles, and a re-run gives the same dollars. A
    cost too large for a bigint of units (a billion dollars and up) is summed as NUMERIC beside. NULL when
    every cost is NULL, as SUM. SQLite scans in rowid order and sums its doubles."""
    if dialect != "postgresql":
        return func.sum(x)
    small = func.abs(x) < _UNITS_BELOW
    units = func.sum(case((small, cast(rint(x * literal(1e10, Double)), BigInteger))))
    large = func.sum(case((~small, cast(x, Numeric))))
    total = func.coalesce(units, 0) / literal(10**10, Numeric) + func.coalesce(large, 0)
    return case((func.count(x) > 0, total))


def rounded_usd(x: Any, dialect: str, money: bool = True) -> ColumnElement[Any]:
    """A double rounded as `numpy.round(x, 10)` rounds it; with `money`, on PostgreSQL the NUMERIC of its
    shortest exact text (what the COPY of a numpy float stored)."""
    scale = literal(1e10, Double)
    rounded = rint(x * scale) / scale
    if money and dialect == "postgresql":
        return cast(cast(rounded, Text), t.Money)
    return rounded
