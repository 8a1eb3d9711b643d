"""Cost tracking as FinOps FOCUS 1.2 rows, so FinOps tools ingest LLM spend beside cloud spend.

One row per day × org × team × user × task × model × token kind (uncached input, cache read, cache
write, output, reasoning), from `cost_daily_rollups` and the price book in force that day:

* PricingUnit / ConsumedUnit are `Tokens`, PricingQuantity = ConsumedQuantity = that kind's tokens.
* ListUnitPrice is the price book's rate for the kind (standard tier); ListCost = ListUnitPrice ×
  PricingQuantity exactly, as FOCUS requires.
* EffectiveCost is the price book's cost of the group (with service tiers, above-200k tiers and
  discounts), split across its kinds in proportion to their list cost, so the kinds of a group add up
  to what `cost_tracking` holds; BilledCost is RelayCore's charge, split the same way.
* A model with no price has one row per group: ListUnitPrice null, and List/Effective cost equal to
  RelayCore's charge (`x_Unpriced` true) — never a silent 0.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from cams.pricing.book import PriceBook

SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
# token kinds, each its own row (its own unit price); quantities come from _quantities
KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")
MANDATORY = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
]
COLUMNS = [*MANDATORY, "x_TokenKind", "x_Requests", "x_Unpriced", "x_PriceId"]
# FOCUS columns that must never be null in CAMS's rows
NOT_NULL = [
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
    "SubAccountId",
]
Q = Decimal("0.0000000001")
MONEY = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ListUnitPrice", "ContractedUnitPrice")


def _quantities(r: Any, reasoning_priced: bool) -> dict[str, int]:
    uncached = int(r.input_tokens) - int(r.cached_input_tokens) - int(r.cache_creation_input_tokens)
    reasoning = int(r.reasoning_tokens) if reasoning_priced else 0
    return {
        "input": uncached,
        "cache_read": int(r.cached_input_tokens),
        "cache_write": int(r.cache_creation_input_tokens),
        "output": int(r.output_tokens) - reasoning,
        "reasoning": reasoning,
    }


def _split(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`total` in proportion to `weights`, rounded to 1e-10, the remainder on the largest share."""
    whole = sum(weights)
    if whole == 0:
        return [total] + [Decimal(0)] * (len(weights) - 1)
    parts = [(total * w / whole).quantize(Q) for w in weights]
    parts[weights.index(max(weights))] += total.quantize(Q) - sum(parts)
    return parts


def focus_rows(
    rollups: pd.DataFrame, book: PriceBook, billing_account: str = "relaycore", issuer: str = "RelayCore"
) -> pd.DataFrame:
    """FOCUS 1.2 rows for the rollup rows (one per day × scope × model × task)."""
    out: list[dict[str, Any]] = []
    for r in rollups.itertuples(index=False):
        day: date = r.day if isinstance(r.day, date) else date.fromisoformat(str(r.day)[:10])
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        month = start.replace(day=1)
        next_month = (month + timedelta(days=32)).replace(day=1)
        cost, charged = Decimal(str(r.cost_usd or 0)), Decimal(str(r.charged_usd or 0))
        tags = {"org": r.org_id, "team": r.team_id, "user": r.user_id, "task": r.task_type}
        base = {
            "BillingAccountId": billing_account,
            "BillingAccountName": billing_account,
            "BillingAccountType": "LLM gateway",
            "BillingCurrency": "USD",
            "PricingCurrency": "USD",
            "BillingPeriodStart": month,
            "BillingPeriodEnd": next_month,
            "ChargeCategory": "Usage",
            "ChargeClass": None,
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodStart": start,
            "ChargePeriodEnd": start + timedelta(days=1),
            "ConsumedUnit": "Tokens",
            "InvoiceIssuerName": issuer,
            "PricingCategory": "Standard",
            "PricingUnit": "Tokens",
            "ProviderName": r.provider,
            "PublisherName": r.provider,
            "RegionId": None,
            "RegionName": None,
            "ResourceId": None,
            "ResourceName": None,
            "ResourceType": None,
            "ServiceCategory": SERVICE_CATEGORY,
            "ServiceSubcategory": SERVICE_SUBCATEGORY,
            "ServiceName": r.model,
            "SkuId": r.model,
            "SubAccountId": r.org_id,
            "SubAccountName": r.org_id,
            "SubAccountType": "Organization",
            "Tags": json.dumps({k: v for k, v in tags.items() if v is not None}, sort_keys=True),
            "x_Requests": int(r.requests),
        }
        entry = book.lookup(r.model, start + timedelta(hours=12))
        if entry is None or int(r.unpriced_requests) == int(r.requests):
            tokens = int(r.input_tokens) + int(r.output_tokens)
            out.append(
                {
                    **base,
                    "BilledCost": charged,
                    "EffectiveCost": charged,
                    "ListCost": charged,
                    "ContractedCost": charged,
                    "ContractedUnitPrice": None,
                    "ListUnitPrice": None,
                    "PricingQuantity": tokens,
                    "ConsumedQuantity": tokens,
                    "ChargeDescription": f"{r.model}: tokens of {r.task_type} for {r.org_id} (no price in the book)",
                    "SkuPriceId": f"{r.model}:unpriced",
                    "x_TokenKind": "all",
                    "x_Unpriced": True,
                    "x_PriceId": None,
                }
            )
            continue
        rates = entry.rates("standard", 0)
        unit = {
            "input": rates.input,
            "cache_read": rates.cache_read,
            "cache_write": rates.cache_creation,
            "output": rates.output,
            "reasoning": rates.reasoning,
        }
        qty = _quantities(r, rates.reasoning != rates.output)
        kinds = [k for k in KINDS if qty[k] > 0] or ["input"]
        lists = [unit[k] * qty[k] for k in kinds]
        effective = _split(cost, lists)
        billed = _split(charged, lists)
        for k, lst, eff, bill in zip(kinds, lists, effective, billed, strict=True):
            out.append(
                {
                    **base,
                    "BilledCost": bill,
                    "EffectiveCost": eff,
                    "ListCost": lst,
                    "ContractedCost": eff,
                    "ContractedUnitPrice": (eff / qty[k]) if qty[k] else None,
                    "ListUnitPrice": unit[k],
                    "PricingQuantity": qty[k],
                    "ConsumedQuantity": qty[k],
                    "ChargeDescription": f"{r.model}: {k.replace('_', ' ')} tokens of {r.task_type} for {r.org_id}",
                    "SkuPriceId": f"{entry.price_id}:{k}",
                    "x_TokenKind": k,
                    "x_Unpriced": False,
                    "x_PriceId": entry.price_id,
                }
            )
    return pd.DataFrame(out, columns=COLUMNS)


def violations(rows: pd.DataFrame) -> list[str]:
    """The FOCUS rules CAMS's rows must keep; empty when they do."""
    problems = [f"{c} has nulls" for c in NOT_NULL if rows[c].isna().any()]
    priced = rows[rows["ListUnitPrice"].notna()]
    off = priced[
        [
            lc != lu * q
            for lc, lu, q in zip(priced["ListCost"], priced["ListUnitPrice"], priced["PricingQuantity"], strict=True)
        ]
    ]
    if len(off):
        problems.append(f"ListCost != ListUnitPrice x PricingQuantity on {len(off)} rows")
    if (rows["ServiceCategory"] != SERVICE_CATEGORY).any():
        problems.append("ServiceCategory must be AI and Machine Learning")
    if (rows["ChargePeriodEnd"] <= rows["ChargePeriodStart"]).any():
        problems.append("ChargePeriodEnd must follow ChargePeriodStart")
    return problems


def write(rows: pd.DataFrame, path: str, fmt: str) -> int:
    """CSV (decimals as exact text, times in ISO 8601 UTC) or Parquet (decimal128(38, 18) money)."""
    frame = rows.copy()
    if fmt == "csv":
        for c in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
            frame[c] = frame[c].map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for c in MONEY:
            frame[c] = frame[c].map(lambda v: None if v is None or v != v else f"{Decimal(v):f}")
        frame.to_csv(path, index=False)
        return len(frame)
    import pyarrow as pa
    import pyarrow.parquet as pq

    money = pa.decimal128(38, 18)
    fields = []
    for c in frame.columns:
        if c in MONEY:
            fields.append(pa.field(c, money))
        elif c in ("PricingQuantity", "ConsumedQuantity"):
            fields.append(pa.field(c, pa.decimal128(38, 0)))
        elif c.endswith(("PeriodStart", "PeriodEnd")):
            fields.append(pa.field(c, pa.timestamp("us", tz="UTC")))
        elif c == "x_Requests":
            fields.append(pa.field(c, pa.int64()))
        elif c == "x_Unpriced":
            fields.append(pa.field(c, pa.bool_()))
        else:
            fields.append(pa.field(c, pa.string()))
    for c in ("PricingQuantity", "ConsumedQuantity"):
        frame[c] = frame[c].map(lambda v: Decimal(int(v)))
    for c in MONEY:
        frame[c] = frame[c].map(lambda v: None if v is None or v != v else Decimal(v).quantize(Decimal("1e-18")))
    table = pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)
    pq.write_table(table, path)
    return len(frame)


def export(engine: Any, first: date, last: date, book: PriceBook, **kw: Any) -> pd.DataFrame:
    """FOCUS rows for the days [first, last] from the warehouse's daily rollups."""
    from sqlalchemy import and_, select

    from cams.warehouse import schema as t
    from cams.warehouse.db import read_frame

    r = t.cost_daily_rollups
    with engine.connect() as conn:
        rollups = read_frame(
            conn, select(r).where(and_(r.c.day >= first, r.c.day <= last)).order_by(r.c.day, r.c.org_id, r.c.model)
        )
    return focus_rows(rollups, book, **kw)
