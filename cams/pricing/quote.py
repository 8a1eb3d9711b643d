"""Price one request against the configured price book: the core of `cams price`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cams.config import PricingConfig
from cams.pricing import snapshot
from cams.pricing.book import PriceBook, to_utc
from cams.pricing.cost import TokenUsage, request_cost
from cams.pricing.rates import SERVICE_TIERS


class QuoteError(ValueError):
    """A request that cannot be priced, with the reason in plain words."""


def load_book(pricing: PricingConfig, api_overrides: Sequence[Mapping[str, Any]] = ()) -> PriceBook:
    """Snapshot (default or `pricing.snapshot`), the config's overrides, then the Models API's, and discounts."""
    return PriceBook.build(snapshot.load(pricing.snapshot), [*pricing.overrides, *api_overrides], pricing.discounts)


def _int(raw: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = raw.get(name, default)
    if value is None:
        raise QuoteError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise ValueError
        except ValueError:
            raise QuoteError(f"{name} must be a whole number, not {value!r}") from None
    return int(value)


def quote(book: PriceBook, request: Mapping[str, Any]) -> dict[str, Any]:
    """Cost of one request given §2.1 field names; raises QuoteError on bad input."""
    model = request.get("model")
    if not model or not isinstance(model, str):
        raise QuoteError("model is required")
    usage = TokenUsage(
        input_tokens=_int(request, "input_tokens"),
        output_tokens=_int(request, "output_tokens"),
        cached_input_tokens=_int(request, "cached_input_tokens", 0),
        cache_creation_input_tokens=_int(request, "cache_creation_input_tokens", 0),
        reasoning_tokens=_int(request, "reasoning_tokens", 0),
    )
    try:
        usage.validate()
    except ValueError as exc:
        raise QuoteError(str(exc)) from None
    tier = request.get("service_tier") or "standard"
    if tier not in SERVICE_TIERS:
        raise QuoteError(f"service_tier must be one of {', '.join(SERVICE_TIERS)}, not {tier!r}")
    at_raw = request.get("at") or request.get("timestamp")
    try:
        at = to_utc(at_raw) or datetime.now(UTC)
    except (TypeError, ValueError):
        raise QuoteError(f"not an RFC 3339 timestamp: {at_raw!r}") from None
    entry = book.lookup(model, at, request.get("provider"))
    if entry is None:
        known = book.resolve_model(model, request.get("provider")) is not None
        reason = f"no price for {model!r} at {at.isoformat()}" if known else f"unknown model {model!r}"
        raise QuoteError(reason)
    rates = entry.rates(tier, usage.input_tokens)
    return {
        "model": entry.model,
        "cost_usd": str(request_cost(rates, usage)),
        "provider": entry.provider,
        "service_tier": tier,
        "at": at.isoformat(),
        "price_id": entry.price_id,
        "price_source": entry.source,
        "price_version": entry.version,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "rates_usd_per_token": {
            "input": f"{rates.input:f}",
            "output": f"{rates.output:f}",
            "cache_read": f"{rates.cache_read:f}",
            "cache_creation": f"{rates.cache_creation:f}",
            "reasoning": f"{rates.reasoning:f}",
        },
    }
