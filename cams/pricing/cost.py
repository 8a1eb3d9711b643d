"""Cost of requests from token counts and resolved rates (SPEC §3).

One formula serves a single request (Decimal, exact, for `cams price`) and a whole column of
requests (numpy arrays, for cost_tracking): the rate lookup happens once per distinct
(price entry, service tier, threshold bucket), never once per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from cams.pricing.rates import Rates

MONEY_PLACES = Decimal("0.0000000001")  # 10 decimal places: the warehouse's NUMERIC(20, 10)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one request with SPEC §2.1 meanings (input includes cached, output reasoning)."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0

    def validate(self) -> None:
        """Raise ValueError when the counts contradict each other (SPEC §2.1 constraints)."""
        for name in (
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_creation_input_tokens",
            "reasoning_tokens",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached_input_tokens must be <= input_tokens")
        if self.cache_creation_input_tokens > self.input_tokens - self.cached_input_tokens:
            raise ValueError("cache_creation_input_tokens must be <= input_tokens - cached_input_tokens")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens must be <= output_tokens")


def token_cost(
    rates: Rates,
    input_tokens: T,
    output_tokens: T,
    cached_input_tokens: T,
    cache_creation_input_tokens: T,
    reasoning_tokens: T,
    to_rate=lambda r: r,
) -> T:
    """uncached×input + cached×cache_read + written×cache_creation + text out×output + reasoning×reasoning.

    Works on ints with Decimal rates, or on numpy arrays with `to_rate=float`.
    """
    uncached = input_tokens - cached_input_tokens - cache_creation_input_tokens  # type: ignore[operator]
    text_out = output_tokens - reasoning_tokens  # type: ignore[operator]
    return (
        uncached * to_rate(rates.input)
        + cached_input_tokens * to_rate(rates.cache_read)  # type: ignore[operator]
        + cache_creation_input_tokens * to_rate(rates.cache_creation)  # type: ignore[operator]
        + text_out * to_rate(rates.output)
        + reasoning_tokens * to_rate(rates.reasoning)  # type: ignore[operator]
    )


def request_cost(rates: Rates, usage: TokenUsage) -> Decimal:
    """Exact cost of one request, rounded to the warehouse's 10 decimal places."""
    cost = token_cost(
        rates,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_creation_input_tokens,
        usage.reasoning_tokens,
    )
    return Decimal(cost).quantize(MONEY_PLACES)
