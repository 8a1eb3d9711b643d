"""What selection would answer if something were different, beside what it answers today.

The simulator's question ("what if this team excluded a provider, needed vision, sent 150k tokens,
accepted a lower quality floor, or if a model's price dropped by half?") is answered by the same
`SelectionTable.select` on a copy of the served table with the change applied, never by a second
rule: a hypothetical floor re-qualifies the tier's candidates from the figures the table already holds
(qualified and rejected models alike), a hypothetical price scales a model's expected cost and rates
and re-sorts, a hypothetical preference replaces the scope's own.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from cams.selection.preferences import Preference
from cams.selection.select import Decision, Request, SelectionError, SelectionTable
from cams.selection.table import qualify


@dataclass(frozen=True)
class WhatIf:
    """The changes to try; what is left at its default stays as it is today."""

    max_latency_ms: float | None = None
    input_tokens: int | None = None
    required_capabilities: tuple[str, ...] = ()
    quality_floor: float | None = None  # replaces the served tier's minimum quality
    price_factor: dict[str, float] = field(default_factory=dict)  # model -> multiplier of its price
    preference: Preference | None = None  # replaces the request scope's preference

    def changes(self) -> bool:
        return self != WhatIf()


Outcome = Decision | SelectionError


def _answer(table: SelectionTable, req: Request) -> Outcome:
    try:
        return table.select(req)
    except SelectionError as exc:
        return exc


def _requalified(row: dict[str, Any], floor: float, success_floor: float) -> dict[str, Any]:
    """The row re-qualified at `floor` from every model it scored (candidates and rejected alike)."""
    scored = [{k: v for k, v in c.items() if k not in ("fallback_chain", "reason", "floor")} for c in row["candidates"]]
    scored += [{k: v for k, v in r.items() if k not in ("reason", "floor")} for r in row["rejected"]]
    candidates, rejected = qualify(scored, floor, success_floor)
    return {**row, "min_quality": floor, "candidates": candidates, "rejected": rejected}


def hypothetical_table(current: SelectionTable, w: WhatIf, tier: str | None = None) -> dict[str, Any]:
    """The served table's document with the floor (for `tier`, else every tier) and prices changed."""
    models = copy.deepcopy(current.models)
    rows = copy.deepcopy(list(current.rows.values()))
    for model, factor in w.price_factor.items():
        if model in models and models[model].get("rates"):
            models[model]["rates"] = {k: v * factor for k, v in models[model]["rates"].items()}
        for row in rows:
            for c in (*row["candidates"], *row["rejected"]):
                if c["model"] == model:
                    c["expected_cost_usd"] = c["expected_cost_usd"] * factor
    success_floor = float(current.success_floor)
    out = []
    for row in rows:
        if w.quality_floor is not None and (tier is None or row["tier"] == tier):
            row = _requalified(row, w.quality_floor, success_floor)
        elif w.price_factor:  # same floor, new order: the cheapest first again, fallbacks rebuilt
            row = _requalified(row, row["min_quality"], success_floor)
        out.append(row)
    return {"models": models, "rows": out, "success_floor": success_floor}


def what_if(current: SelectionTable, req: Request, w: WhatIf) -> tuple[Outcome, Outcome]:
    """(today's answer, the answer with the changes), both from `SelectionTable.select`."""
    today = _answer(current, req)
    served_tier = today.tier if isinstance(today, Decision) else req.quality_tier
    doc = hypothetical_table(current, w, served_tier)
    prefs = list(current.preference_sources)
    if w.preference is not None:
        prefs = [p for p in prefs if p.key != w.preference.key] + [w.preference]
    table = SelectionTable(current.version, doc, current.budget_rows, prefs)
    asked = replace(
        req,
        max_latency_ms=w.max_latency_ms if w.max_latency_ms is not None else req.max_latency_ms,
        input_tokens=w.input_tokens if w.input_tokens is not None else req.input_tokens,
        required_capabilities=w.required_capabilities or req.required_capabilities,
    )
    return today, _answer(table, asked)
