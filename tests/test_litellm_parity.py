"""CAMS's price math equals LiteLLM's cost_per_token / batch_cost_calculator on the same prices."""

from __future__ import annotations

from decimal import Decimal

import litellm
from litellm import Usage
from litellm.cost_calculator import batch_cost_calculator

from cams.pricing.book import MIN_TIME, PriceBook
from cams.pricing.cost import TokenUsage, request_cost
from cams.pricing.snapshot import load_default

# Providers LiteLLM prices through its generic token path. Left out on purpose: fireworks_ai (LiteLLM
# invents a default cache-read discount no price row states) and perplexity (per-query fees).
PROVIDERS = {
    "openai",
    "anthropic",
    "gemini",
    "azure",
    "azure_ai",
    "xai",
    "mistral",
    "groq",
    "deepseek",
    "vertex_ai-language-models",
    "vertex_ai-anthropic_models",
    "bedrock",
    "bedrock_converse",
    "cohere_chat",
    "together_ai",
    "cerebras",
    "deepinfra",
}
# Where LiteLLM itself departs from its own price rows; CAMS bills the rows as written.
LITELLM_QUIRKS = {
    "azure/mistral-large-latest": "LiteLLM's batch calculator finds no model info and returns 0",
    "gemini-exp-1206": "LiteLLM resolves the name to a free preview entry and returns 0",
    "deepseek-chat": "LiteLLM's deepseek calculator ignores cache-creation tokens' rate",
}
MIXES = [
    TokenUsage(1_000, 500),
    TokenUsage(5_000, 800, cached_input_tokens=3_000),
    TokenUsage(4_000, 300, cached_input_tokens=1_000, cache_creation_input_tokens=2_000),
    TokenUsage(2_000, 1_500, reasoning_tokens=900),
    TokenUsage(250_000, 1_000, cached_input_tokens=10_000, cache_creation_input_tokens=5_000, reasoning_tokens=300),
    TokenUsage(300_000, 2_000, cached_input_tokens=50_000, reasoning_tokens=1_000),
]
TIERS = ("standard", "batch", "flex", "priority")


def _litellm_cost(model: str, provider: str, tier: str, u: TokenUsage) -> float:
    usage = Usage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        total_tokens=u.input_tokens + u.output_tokens,
        prompt_tokens_details={
            "cached_tokens": u.cached_input_tokens,
            "cache_creation_tokens": u.cache_creation_input_tokens,
        },
        completion_tokens_details={"reasoning_tokens": u.reasoning_tokens} if u.reasoning_tokens else None,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        cache_read_input_tokens=u.cached_input_tokens,
    )
    if tier == "batch":
        p, c = batch_cost_calculator(usage, model=model, custom_llm_provider=provider)
    else:
        p, c = litellm.cost_per_token(
            model=model,
            usage_object=usage,
            custom_llm_provider=provider,
            service_tier=None if tier == "standard" else tier,
        )
    return p + c


def test_cost_matches_litellm_on_hundreds_of_models() -> None:
    book = PriceBook.build(load_default())
    compared_models: set[str] = set()
    features = {
        "cache_read": 0,
        "cache_write": 0,
        "above_200k": 0,
        "above_272k": 0,
        "reasoning_rate": 0,
        "batch_price": 0,
    }
    mismatches: dict[str, list[tuple[str, TokenUsage, Decimal, float]]] = {}
    for model in book.models:
        entry = book.lookup(model, MIN_TIME)
        assert entry is not None
        if (
            entry.provider not in PROVIDERS
            or not entry.supported
            or entry.mode == "embedding"
            or "input_cost_per_token" not in entry.prices
        ):
            continue
        compared_models.add(model)
        keys = entry.prices.keys()
        features["cache_read"] += "cache_read_input_token_cost" in keys
        features["cache_write"] += "cache_creation_input_token_cost" in keys
        features["above_200k"] += "input_cost_per_token_above_200k_tokens" in keys
        features["above_272k"] += "input_cost_per_token_above_272k_tokens" in keys
        features["reasoning_rate"] += "output_cost_per_reasoning_token" in keys
        features["batch_price"] += "input_cost_per_token_batches" in keys
        for tier in TIERS:
            for usage in MIXES:
                ours = request_cost(entry.rates(tier, usage.input_tokens), usage)
                theirs = _litellm_cost(model, entry.provider, tier, usage)
                if abs(float(ours) - theirs) > 1e-9 + 1e-9 * abs(theirs):
                    mismatches.setdefault(model, []).append((tier, usage, ours, theirs))

    assert len(compared_models) >= 200
    # The comparison exercised every pricing feature SPEC §3 names, on many models each.
    assert all(count >= 5 for count in features.values()), features
    unexplained = {m: v[:2] for m, v in mismatches.items() if m not in LITELLM_QUIRKS}
    assert not unexplained, unexplained


def test_every_litellm_alias_prices_as_litellm_does() -> None:
    """LiteLLM's `alias_of` names (e.g. claude-opus-latest) price as their targets in both."""
    import json
    from pathlib import Path

    raw = json.loads(Path(litellm.__file__).with_name("model_prices_and_context_window_backup.json").read_text())
    aliases = {k: v["alias_of"] for k, v in raw.items() if isinstance(v, dict) and "alias_of" in v}
    assert len(aliases) >= 90  # litellm 1.110.2 has 98
    book = PriceBook.build(load_default())
    usage = TokenUsage(12_000, 700, cached_input_tokens=2_000)
    compared = 0
    for alias, target in sorted(aliases.items()):
        entry = book.lookup(alias, MIN_TIME)
        assert entry is not None, f"{alias} (alias of {target}) is unknown to CAMS"
        assert entry.capabilities.get("alias_of") == target
        assert entry.prices == book.lookup(target, MIN_TIME).prices
        if entry.mode == "embedding" or not entry.supported:
            continue
        ours = request_cost(entry.rates("standard", usage.input_tokens), usage)
        theirs = _litellm_cost(alias, entry.provider, "standard", usage)
        assert abs(float(ours) - theirs) <= 1e-9 + 1e-9 * abs(theirs), (alias, target, ours, theirs)
        compared += 1
    assert compared >= 90
