"""Selection on the hot path: a dictionary lookup in the published table, no database, no I/O.

The cheapest candidate of (task, effective tier) that honours the request's constraints wins;
every decision names its binding constraint (what stopped a cheaper model) and the alternatives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cams.selection.preferences import Effective, Preference, effective
from cams.selection.table import TIER_ORDER, effective_tier, unanswered

MAX_ALTERNATIVES = 10
SHOWN = ("model", "provider", "expected_cost_usd", "expected_quality", "success_rate", "p95_latency_ms")


class SelectionError(ValueError):
    """A request selection cannot serve; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.detail = status, code, detail or {}


@dataclass(frozen=True)
class Request:
    org_id: str
    task_type: str
    quality_tier: str = "standard"
    team_id: str | None = None
    user_id: str | None = None
    max_latency_ms: float | None = None
    required_capabilities: tuple[str, ...] = ()
    input_tokens: int | None = None
    request_id: str | None = None


@dataclass
class Decision:
    selection_id: str
    model: str
    provider: str
    estimated_cost_usd: float
    fallback_chain: list[str]
    budget_state: str
    budget_action: str
    table_version: str
    tier: str
    binding_constraint: str
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    preference: dict[str, Any] | None = None  # the scopes and rules that applied, when a preference did

    def response(self) -> dict[str, Any]:
        return {
            "selection_id": self.selection_id,
            "model": self.model,
            "provider": self.provider,
            "estimated_cost_usd": f"{self.estimated_cost_usd:.10f}",
            "fallback_chain": self.fallback_chain,
            "budget_state": self.budget_state,
            "table_version": self.table_version,
            "explanation_id": self.selection_id,
        }


class SelectionTable:
    """One published version, indexed for O(1) lookups, with the budget states it was loaded with."""

    def __init__(
        self,
        version: str,
        table: dict[str, Any],
        budgets: list[dict[str, Any]],
        preferences: list[Preference] | tuple[Preference, ...] = (),
    ):
        self.version = version
        self.success_floor: float = table.get("success_floor", 0.95)
        self.budget_rows, self.preference_sources = budgets, tuple(preferences)  # what the simulator varies
        self.models: dict[str, dict[str, Any]] = table["models"]
        self.rows = {(r["task_type"], r["tier"]): r for r in table["rows"]}
        self.tasks = sorted({r["task_type"] for r in table["rows"]})
        # answers the service encoded for requests without constraints; this object (one version, one
        # refresh of budget states) is their lifetime, so they are never stale
        self.memo: dict[tuple[Any, ...], Any] = {}
        # per row, what each candidate's checks need, resolved once per version instead of per request
        self._prepared = {
            key: [
                (
                    c,
                    {k: c[k] for k in SHOWN},
                    c["p95_latency_ms"],
                    frozenset(self.models.get(c["model"], {}).get("capabilities", [])),
                    int(self.models.get(c["model"], {}).get("max_input_tokens") or 0),
                )
                for c in r["candidates"]
            ]
            for key, r in self.rows.items()
        }
        # the most restrictive budget covering a scope wins
        self.budgets: dict[tuple[str, str], tuple[str, str, str]] = {}
        rank = {"none": 0, "notify": 1, "downgrade": 2, "block": 3}
        for b in budgets:
            key = (b["scope"], b["scope_id"] if b["scope"] == "org" else f"{b['org_id']}/{b['scope_id']}")
            cur = self.budgets.get(key)
            if cur is None or rank[b["action"]] > rank[cur[1]]:
                self.budgets[key] = (b["state"], b["action"], b["budget_id"])
        self.preferences: dict[tuple[str, str | None], Effective] = effective(preferences)

    def preference_for(self, req: Request) -> Effective | None:
        """The team's preference (with its org's under it), else the org's, else None: two lookups at most."""
        if not self.preferences:
            return None
        found = self.preferences.get((req.org_id, req.team_id)) if req.team_id is not None else None
        return found or self.preferences.get((req.org_id, None))

    def budget_for(self, req: Request) -> tuple[str, str, str | None]:
        found = [self.budgets.get(("org", req.org_id))]
        if req.team_id:
            found.append(self.budgets.get(("team", f"{req.org_id}/{req.team_id}")))
        if req.user_id:
            found.append(self.budgets.get(("user", f"{req.org_id}/{req.user_id}")))
        rank = {"none": 0, "notify": 1, "downgrade": 2, "block": 3}
        hits = [f for f in found if f is not None]
        if not hits:
            return "ok", "none", None
        return max(hits, key=lambda f: rank[f[1]])

    def select(self, req: Request) -> Decision:
        if req.quality_tier not in TIER_ORDER:
            raise SelectionError(422, "invalid_tier", f"quality_tier must be one of {', '.join(TIER_ORDER)}")
        if req.task_type not in self.tasks:
            raise SelectionError(
                404, "unknown_task", f"no selection for task_type {req.task_type!r}", {"known_task_types": self.tasks}
            )
        state, action, budget_id = self.budget_for(req)
        tier = effective_tier(req.quality_tier, action)
        if tier is None:
            raise SelectionError(
                402,
                "budget_blocked",
                f"budget {budget_id} is {state} and blocks new requests for this scope",
                {"budget_id": budget_id, "budget_state": state, "table_version": self.version},
            )
        row = self.rows[(req.task_type, tier)]
        pref = self.preference_for(req)
        binding = "cost"
        chosen = None
        alternatives = []
        reasons: dict[str, str | None] = {}
        for c, shown, p95, caps, limit in self._prepared[(req.task_type, tier)]:
            if pref is not None and (refused := pref.refuses(c["model"], c["provider"])) is not None:
                reason: str | None = refused
            elif req.max_latency_ms is not None and p95 is not None and p95 > req.max_latency_ms:
                reason = "max_latency_ms"
            elif req.required_capabilities and not caps.issuperset(req.required_capabilities):
                reason = "required_capabilities"
            elif req.input_tokens is not None and limit and req.input_tokens > limit:
                reason = "context_size"
            else:
                reason = None
            reasons[c["model"]] = reason
            if len(alternatives) < MAX_ALTERNATIVES:
                alternatives.append({**shown, "rejected": reason})
            if chosen is None:
                if reason is None:
                    chosen = c
                else:
                    binding = reason
        if chosen is None:
            why = unanswered(row)
            if alternatives:  # candidates existed; the request's own constraints turned them all away
                why["binding_constraint"] = binding
            raise SelectionError(
                422,
                "no_candidate",
                f"no model for {req.task_type}/{tier} meets "
                + (
                    ("its scope's preferences" if binding.startswith("preference:") else "the request's constraints")
                    if alternatives
                    else f"the floors ({why['binding_constraint']})"
                ),
                {
                    "binding_constraint": why["binding_constraint"],
                    "tier": tier,
                    "alternatives": alternatives,
                    "rejected": why["rejected"][:MAX_ALTERNATIVES],
                    "table_version": self.version,
                    **({"preference": pref.explained()} if pref is not None else {}),
                },
            )
        if pref is not None and pref.preferred_provider and chosen["provider"] != pref.preferred_provider:
            preferred = next(
                (
                    c
                    for c, *_ in self._prepared[(req.task_type, tier)]
                    if reasons.get(c["model"]) is None and c["provider"] == pref.preferred_provider
                ),
                None,
            )
            if preferred is not None:  # a qualifying model of the preferred provider, though not the cheapest
                chosen, binding = preferred, "preference:preferred_provider"
        if binding == "cost":
            cheaper = [r for r in row["rejected"] if r.get("expected_cost_usd", 0.0) < chosen["expected_cost_usd"]]
            if cheaper:  # a cheaper model exists: the floor that turned it away binds
                binding = cheaper[0].get("floor") or f"tier_min_quality:{row['min_quality']}"
        return Decision(
            selection_id=os.urandom(16).hex(),
            model=chosen["model"],
            provider=chosen["provider"],
            estimated_cost_usd=self._cost(chosen, row, req),
            fallback_chain=[m for m in chosen["fallback_chain"] if reasons.get(m, "absent") is None],
            budget_state=state,
            budget_action=action,
            table_version=self.version,
            tier=tier,
            binding_constraint=binding,
            alternatives=alternatives,
            preference=None if pref is None else pref.explained(),
        )

    def _cost(self, c: dict[str, Any], row: dict[str, Any], req: Request) -> float:
        """The table's expected cost, or with the request's own input size at the model's rates."""
        rates = self.models.get(c["model"], {}).get("rates")
        if req.input_tokens is None or not rates:
            return float(c["expected_cost_usd"])
        return req.input_tokens * rates["input"] + row["profile"][1] * rates["output"]
