"""Build the model selection table (SPEC §6): for each task × quality tier × budget state, the
candidates that qualify, cheapest first, each with a fallback chain and an explanation.

Expected cost per request uses the task's typical token profile (median input and output tokens of
its spans across all models). A model qualifies when its expected quality ≥ the tier's minimum and
its success rate ≥ the floor; models never seen for a task use their configured prior and a success
rate of 1. `downgrade` moves a scope one tier down; `block` publishes no candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from cams.config import SelectionConfig
from cams.pricing.book import PriceBook
from cams.pricing.cost import TokenUsage, request_cost
from cams.selection.quality import QualitySettings

TIERS = {"economy": 0.60, "standard": 0.75, "premium": 0.85}
TIER_ORDER = ("economy", "standard", "premium")
BUDGET_STATES = ("ok", "warning", "critical", "exceeded")
ACTIONS = ("none", "notify", "downgrade", "block")
DEFAULT_PROFILE = (1500, 400)


@dataclass(frozen=True)
class SelectionSettings:
    candidates: tuple[str, ...]
    tiers: dict[str, float]
    success_floor: float = 0.95
    quality: QualitySettings = field(default_factory=lambda: QualitySettings({}))

    @classmethod
    def from_config(cls, cfg: SelectionConfig, seen_models: list[str]) -> SelectionSettings:
        cands = cfg.candidates or tuple(sorted(set(seen_models)))
        return cls(cands, {**TIERS, **cfg.tiers}, cfg.success_floor, QualitySettings.from_config(cfg))


def effective_tier(tier: str, action: str) -> str | None:
    """The tier a request is served at under a budget action; None when blocked."""
    if action == "block":
        return None
    if action == "downgrade":
        return TIER_ORDER[max(0, TIER_ORDER.index(tier) - 1)]
    return tier


def _capabilities(caps: dict[str, Any]) -> list[str]:
    names = {
        "supports_vision": "vision",
        "supports_function_calling": "function_calling",
        "supports_reasoning": "reasoning",
        "supports_response_schema": "json_schema",
    }
    return sorted(v for k, v in names.items() if caps.get(k))


def build_table(
    stats: pd.DataFrame, book: PriceBook, settings: SelectionSettings, at: datetime, tasks: list[str]
) -> dict[str, Any]:
    """The whole table as plain data (JSON-serializable), ready to publish as one version."""
    by_key = {(r.model, r.task_type): r for r in stats.itertuples()} if len(stats) else {}
    rows: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    for task in sorted(set(tasks)):
        task_stats = stats[stats["task_type"] == task] if len(stats) else stats
        if len(task_stats):
            inp = int(pd.to_numeric(task_stats["median_input_tokens"]).median() or DEFAULT_PROFILE[0])
            out = int(pd.to_numeric(task_stats["median_output_tokens"]).median() or DEFAULT_PROFILE[1])
        else:
            inp, out = DEFAULT_PROFILE
        scored = []
        for model in settings.candidates:
            entry = book.lookup(model, at)
            if entry is None:
                continue
            s = by_key.get((model, task))
            quality = float(s.quality) if s is not None else settings.quality.prior(model)
            success = float(s.success_rate) if s is not None else 1.0
            rates = entry.rates("standard", inp)
            cost = request_cost(rates, TokenUsage(inp, out))
            base = entry.rates("standard", 0)
            models[model] = {
                "provider": entry.provider,
                "max_input_tokens": entry.capabilities.get("max_input_tokens"),
                "capabilities": _capabilities(dict(entry.capabilities)),
                "price_id": entry.price_id,
                # what a request that states its own input size is estimated with (select's input_tokens)
                "rates": {"input": float(base.input), "output": float(base.output)},
            }
            scored.append(
                {
                    "model": model,
                    "provider": entry.provider,
                    "expected_cost_usd": float(cost),
                    "expected_quality": round(quality, 4),
                    "success_rate": round(success, 4),
                    "p95_latency_ms": float(s.p95_latency_ms) if s is not None and s.p95_latency_ms else None,
                    "samples": int(s.spans) if s is not None else 0,
                }
            )
        for tier, minimum in settings.tiers.items():
            candidates, rejected = qualify(scored, minimum, settings.success_floor)
            rows.append(
                {
                    "task_type": task,
                    "tier": tier,
                    "min_quality": minimum,
                    "profile": [inp, out],
                    "candidates": candidates,
                    "rejected": rejected,
                }
            )
    return {"tiers": settings.tiers, "success_floor": settings.success_floor, "models": models, "rows": rows}


def qualify(
    scored: list[dict[str, Any]], minimum: float, success_floor: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A row's (candidates, rejected) from its scored models: cheapest first, the candidates each with
    a fallback chain, the rejected each with the floor that turned it away."""
    ordered = sorted(scored, key=lambda c: (c["expected_cost_usd"], -c["expected_quality"], c["model"]))
    ok = [c for c in ordered if c["expected_quality"] >= minimum and c["success_rate"] >= success_floor]
    candidates = [{**c, "fallback_chain": fallback_chain(ok, i)} for i, c in enumerate(ok)]
    return candidates, [_rejected(c, minimum, success_floor) for c in ordered if c not in ok]


def _rejected(c: dict[str, Any], minimum: float, success_floor: float) -> dict[str, Any]:
    """A model a tier's floors turned away, with the figures that failed, for the explainer and checks."""
    if c["expected_quality"] < minimum:
        reason, floor = "quality", f"tier_min_quality:{minimum}"
    else:
        reason, floor = "success_rate", f"success_rate_floor:{success_floor}"
    return {**c, "reason": reason, "floor": floor}


def unanswered(row: dict[str, Any]) -> dict[str, Any]:
    """Why a row has no candidate: the floor that turned away the cheapest model, and every model's figures.

    `evidence` is True when some rejected model was observed for the task (samples > 0): the data
    says no model qualifies. Without evidence the row is empty for lack of data or prices.
    """
    rejected = row.get("rejected") or []
    return {
        "binding_constraint": rejected[0]["floor"] if rejected else "no_priced_candidate",
        "rejected": [
            {k: r.get(k) for k in ("model", "reason", "floor", "expected_quality", "success_rate", "samples")}
            for r in rejected
        ],
        "evidence": any(r.get("samples", 0) > 0 for r in rejected),
    }


def dark_rows(current: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """Task × tier rows the current version answers and the new one would not, each with why."""
    if current is None:
        return []
    answered = {(r["task_type"], r["tier"]) for r in current["rows"] if r["candidates"]}
    new_rows = {(r["task_type"], r["tier"]): r for r in new["rows"]}
    out = []
    for key in sorted(answered):
        row = new_rows.get(key)
        if row is None:
            out.append({"task_type": key[0], "tier": key[1], "binding_constraint": "no_data", "evidence": False})
        elif not row["candidates"]:
            out.append({"task_type": key[0], "tier": key[1], **unanswered(row)})
    return out


def fallback_chain(candidates: list[dict[str, Any]], index: int, length: int = 3) -> list[str]:
    """After candidate `index`: the next cheapest qualified models, a different provider first each step."""
    chain: list[str] = []
    last_provider = candidates[index]["provider"]
    rest = [c for j, c in enumerate(candidates) if j != index]
    while rest and len(chain) < length:
        pick = next((c for c in rest if c["provider"] != last_provider), rest[0])
        chain.append(pick["model"])
        last_provider = pick["provider"]
        rest.remove(pick)
    return chain
