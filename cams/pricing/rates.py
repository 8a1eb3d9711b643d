"""Resolve the per-token rates one request is billed at, from a LiteLLM-style price entry.

The resolution follows LiteLLM's `generic_cost_per_token` / `batch_cost_calculator` so that a
price book entry costs a request exactly as LiteLLM would: service-tier keys fall back to the
standard key, above-threshold tiers replace every rate of the request once its input exceeds the
threshold, absent cache rates fall back to the input rate, and the batch tier uses `*_batches`
prices or half the standard price.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

SERVICE_TIERS = ("standard", "batch", "flex", "priority")
_TIER_SUFFIX = {"flex": "_flex", "priority": "_priority"}
_ALL_TIER_SUFFIXES = ("_flex", "_priority", "_batches", "_balanced", "_ultrafast", "_fast")
RATE_PREFIXES = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
)
_THRESHOLD = re.compile(r"_above_(\d+)(k?)_tokens")
ZERO = Decimal(0)
HALF = Decimal("0.5")

Prices = Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for each kind of token of one request."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_creation: Decimal
    reasoning: Decimal


def threshold_of(key: str) -> int | None:
    """Token threshold named by an `*_above_<N>[k]_tokens` key, or None."""
    m = _THRESHOLD.search(key)
    if not m:
        return None
    return int(m.group(1)) * (1000 if m.group(2) else 1)


def thresholds(prices: Prices) -> list[int]:
    """Distinct above-thresholds this entry prices, ascending (used to bucket requests)."""
    found = {threshold_of(k) for k in prices if k.startswith(RATE_PREFIXES) and "_above_" in k}
    return sorted(t for t in found if t is not None)


def _get(prices: Prices, key: str, default: Decimal | None) -> Decimal | None:
    """LiteLLM's get_cost_per_unit: a missing tier-suffixed key falls back to its base key."""
    value = prices.get(key)
    if value is not None:
        return value
    for suffix in _ALL_TIER_SUFFIXES:
        if suffix in key:
            base = prices.get(key.replace(suffix, ""))
            return default if base is None else base
    return default


def _tier_key(base: str, tier: str) -> str:
    return base + _TIER_SUFFIX.get(tier, "")


def resolve_rates(prices: Prices, service_tier: str, input_tokens: int) -> Rates:
    """The rates a request with `input_tokens` input on `service_tier` is billed at."""
    if service_tier == "batch":
        return _batch_rates(prices, input_tokens)
    suffix = _TIER_SUFFIX.get(service_tier, "")
    inp = _get(prices, _tier_key("input_cost_per_token", service_tier), ZERO)
    out = _get(prices, _tier_key("output_cost_per_token", service_tier), ZERO)
    creation = _get(prices, _tier_key("cache_creation_input_token_cost", service_tier), None)
    read = _get(prices, _tier_key("cache_read_input_token_cost", service_tier), None)

    keys = [
        k
        for k in prices
        if k.startswith(tuple(p + "_above_" for p in RATE_PREFIXES))
        and "_tokens" in k
        and (not k.endswith(_ALL_TIER_SUFFIXES) or (suffix and k.endswith(suffix)))
    ]
    for key in sorted(keys, key=lambda k: threshold_of(k) or 0):
        limit = threshold_of(key)
        if limit is None or input_tokens <= limit:
            continue
        tag = key[key.rindex("_above_") : key.index("_tokens", key.rindex("_above_")) + len("_tokens")]
        inp = _get(prices, _tier_key(f"input_cost_per_token{tag}", service_tier), inp)
        out = _get(prices, _tier_key(f"output_cost_per_token{tag}", service_tier), out)
        creation = _get(prices, _tier_key(f"cache_creation_input_token_cost{tag}", service_tier), creation)
        read = _get(prices, _tier_key(f"cache_read_input_token_cost{tag}", service_tier), read)

    assert inp is not None and out is not None
    return Rates(
        input=inp,
        output=out,
        cache_read=inp if read is None else read,
        cache_creation=inp if creation is None else creation,
        reasoning=_reasoning_rate(prices, service_tier, out),
    )


def _reasoning_rate(prices: Prices, service_tier: str, output_rate: Decimal) -> Decimal:
    tier_key = _tier_key("output_cost_per_reasoning_token", service_tier)
    if prices.get(tier_key) is not None:
        return prices[tier_key]
    if (
        tier_key != "output_cost_per_reasoning_token"
        and prices.get(_tier_key("output_cost_per_token", service_tier)) is not None
    ):
        return output_rate
    standard = prices.get("output_cost_per_reasoning_token")
    return output_rate if standard is None else standard


def _batch_rate(prices: Prices, prefix: str, input_tokens: int) -> Decimal | None:
    flat = prices.get(f"{prefix}_batches")
    crossed = sorted(
        (
            t
            for k, v in prices.items()
            if v is not None
            and k.startswith(prefix + "_above_")
            and k.endswith("_batches")
            and (t := threshold_of(k)) is not None
        ),
        reverse=True,
    )
    for limit in crossed:
        if input_tokens > limit:
            for key in (f"{prefix}_above_{limit // 1000}k_tokens_batches", f"{prefix}_above_{limit}_tokens_batches"):
                if prices.get(key) is not None:
                    return prices[key]
            return flat
    return flat


def _standard_threshold_rate(prices: Prices, key: str, input_tokens: int) -> Decimal | None:
    """The standard-tier price of `key` at the highest above-threshold tier the input crosses."""
    crossed = [
        (t, k)
        for k, v in prices.items()
        if v is not None
        and k.startswith(key + "_above_")
        and k.endswith("_tokens")
        and (t := threshold_of(k)) is not None
        and input_tokens > t
    ]
    return prices[max(crossed)[1]] if crossed else prices.get(key)


def _batch_rates(prices: Prices, input_tokens: int) -> Rates:
    """LiteLLM's batch_cost_calculator: `*_batches` prices, else half the standard price."""
    base_in = prices.get("input_cost_per_token", ZERO)
    base_out = prices.get("output_cost_per_token", ZERO)
    b_in = _batch_rate(prices, "input_cost_per_token", input_tokens)
    b_out = _batch_rate(prices, "output_cost_per_token", input_tokens)
    if b_in is not None:
        b_read = _batch_rate(prices, "cache_read_input_token_cost", input_tokens)
        b_create = _batch_rate(prices, "cache_creation_input_token_cost", input_tokens)
        # A cached or written token with no batch price: cache reads fall back to the standard
        # cache-read price, writes to the batch input price (LiteLLM's _batch_prompt_cost).
        std_read = _standard_threshold_rate(prices, "cache_read_input_token_cost", input_tokens)
        read = (b_in if std_read is None else std_read) if b_read is None else b_read
        create = b_in if b_create is None else b_create
        inp = b_in
    else:
        inp = base_in * HALF
        read = prices.get("cache_read_input_token_cost", ZERO) * HALF
        create = prices.get("cache_creation_input_token_cost", base_in) * HALF
    out = base_out * HALF if b_out is None else b_out
    return Rates(input=inp, output=out, cache_read=read, cache_creation=create, reasoning=out)
