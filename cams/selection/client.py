"""Selection inside a Python gateway's own process: the published table, the service's answers.

A gateway that cannot afford a network hop per LLM call loads the table once (from the warehouse, a
file exported with `cams export-table`, or the service's `GET /api/v1/models/table`, which answers 304
while nothing changed) and asks `Client.select` in process. Answers are the service's: the same model,
provider, cost, fallback chain and budget state for the same request, and `explanation_id` names the
table row's published explanation (`GET /api/v1/explainer/{id}`). Decisions made here are not recorded
in the warehouse's selection history: the gateway's own usage records (RelayCore) carry them.

A request without per-request constraints (latency, capabilities, input size) is answered from a memo
of the scope's answer, so a decision costs a dictionary lookup (~0.3 µs here).

The document (`schema: cams.selection-table`, `schema_version: 1`) is described in
docs/selection-table.md for gateways written in other languages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cams.selection.preferences import Preference, parse_preference
from cams.selection.select import Request, SelectionError, SelectionTable

SCHEMA = "cams.selection-table"
SCHEMA_VERSION = 1
MEMO_LIMIT = 200_000  # answers kept per table version; cleared (not evicted one by one) past it


def document(
    version: str, table: dict[str, Any], budgets: list[dict[str, Any]], preferences: Sequence[Preference] = ()
) -> dict[str, Any]:
    """The exported table: what a client needs to answer as the service does."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "version": version,
        "table": table,
        "budgets": [
            {k: b[k] for k in ("budget_id", "scope", "scope_id", "org_id", "state", "action")}
            for b in sorted(budgets, key=lambda b: b["budget_id"])
        ],
        "preferences": [p.as_dict() for p in sorted(preferences, key=lambda p: p.key)],
    }


def etag(doc: dict[str, Any]) -> str:
    """Changes when the table version, a budget state or a preference does (what changes answers)."""
    changing = [doc["budgets"], doc.get("preferences", [])]
    digest = hashlib.sha256(json.dumps(changing, sort_keys=True).encode()).hexdigest()[:12]
    return f'"{doc["version"]}.{digest}"'


def from_warehouse_document(engine: Any) -> dict[str, Any] | None:
    from cams.selection import store

    found = store.latest(engine)
    if found is None:
        return None
    return document(found[0], found[1], store.budget_states(engine), store.load_preferences(engine))


@dataclass(frozen=True, slots=True)
class Choice:
    """One answer; the fields of the service's `select` response (less the per-call selection id)."""

    model: str
    provider: str
    estimated_cost_usd: str
    fallback_chain: tuple[str, ...]
    budget_state: str
    table_version: str
    tier: str
    explanation_id: str


class Client:
    """`Client.from_file(p)`, `Client.from_warehouse(url)` or `Client.from_service(url, key)`; then `select`."""

    def __init__(self, doc: dict[str, Any], tag: str | None = None, loader: Any = None) -> None:
        self._loader = loader
        self._install(doc, tag)

    def _install(self, doc: dict[str, Any], tag: str | None) -> None:
        if doc.get("schema") != SCHEMA or doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"not a {SCHEMA} document of schema_version {SCHEMA_VERSION}: "
                f"{doc.get('schema')!r} {doc.get('schema_version')!r}"
            )
        prefs = [parse_preference(p, f"preferences[{i}]") for i, p in enumerate(doc.get("preferences", []))]
        self.table = SelectionTable(doc["version"], doc["table"], doc["budgets"], prefs)
        self.version: str = doc["version"]
        self.etag = tag or etag(doc)
        self._memo: dict[tuple[Any, ...], Choice | SelectionError] = {}

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Client:
        return cls(doc)

    @classmethod
    def from_file(cls, path: str | Path) -> Client:
        p = Path(path)
        return cls(json.loads(p.read_text()), loader=lambda tag: _file(p, tag))

    @classmethod
    def from_warehouse(cls, engine_or_url: Any) -> Client:
        from cams.warehouse.db import make_engine

        engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url

        def load(tag: str | None) -> tuple[dict[str, Any], str] | None:
            doc = from_warehouse_document(engine)
            if doc is None:
                raise LookupError("no selection table has been published yet (run `cams run`)")
            return None if etag(doc) == tag else (doc, etag(doc))

        found = load(None)
        assert found is not None
        return cls(found[0], found[1], loader=load)

    @classmethod
    def from_service(cls, base_url: str, api_key: str, http: Any = None) -> Client:
        """`http`: an `httpx.Client` of the caller's (timeouts, proxies); one is made when omitted."""
        import httpx

        http = http or httpx.Client(timeout=10)
        url = base_url.rstrip("/") + "/api/v1/models/table"

        def load(tag: str | None) -> tuple[dict[str, Any], str] | None:
            headers = {"Authorization": f"Bearer {api_key}", **({"If-None-Match": tag} if tag else {})}
            r = http.get(url, headers=headers)
            if r.status_code == 304:
                return None
            r.raise_for_status()
            return r.json(), r.headers["etag"]

        found = load(None)
        assert found is not None
        return cls(found[0], found[1], loader=load)

    def refresh(self) -> bool:
        """Fetch again (the service answers 304 while nothing changed); True when answers may differ."""
        if self._loader is None:
            return False
        found = self._loader(self.etag)
        if found is None:
            return False
        self._install(*found)
        return True

    # ---- deciding --------------------------------------------------------------------------------
    def select(
        self,
        org_id: str,
        task_type: str,
        quality_tier: str = "standard",
        team_id: str | None = None,
        user_id: str | None = None,
        max_latency_ms: float | None = None,
        required_capabilities: tuple[str, ...] = (),
        input_tokens: int | None = None,
    ) -> Choice:
        """The service's answer for this request; raises `SelectionError` (status, code) as it refuses."""
        plain = max_latency_ms is None and not required_capabilities and input_tokens is None
        if plain:
            hit = self._memo.get((org_id, task_type, quality_tier, team_id, user_id))
            if hit is not None:
                if type(hit) is Choice:
                    return hit
                raise hit  # type: ignore[misc]
        try:
            d = self.table.select(
                Request(
                    org_id=org_id,
                    task_type=task_type,
                    quality_tier=quality_tier,
                    team_id=team_id,
                    user_id=user_id,
                    max_latency_ms=max_latency_ms,
                    required_capabilities=tuple(required_capabilities),
                    input_tokens=input_tokens,
                )
            )
        except SelectionError as exc:
            if plain:
                self._remember((org_id, task_type, quality_tier, team_id, user_id), exc)
            raise
        choice = Choice(
            model=d.model,
            provider=d.provider,
            estimated_cost_usd=f"{d.estimated_cost_usd:.10f}",
            fallback_chain=tuple(d.fallback_chain),
            budget_state=d.budget_state,
            table_version=d.table_version,
            tier=d.tier,
            explanation_id=f"{d.table_version}:{task_type}:{d.tier}",
        )
        if plain:
            self._remember((org_id, task_type, quality_tier, team_id, user_id), choice)
        return choice

    def _remember(self, key: tuple[Any, ...], answer: Choice | SelectionError) -> None:
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = answer


def _file(path: Path, tag: str | None) -> tuple[dict[str, Any], str] | None:
    doc = json.loads(path.read_text())
    return None if etag(doc) == tag else (doc, etag(doc))


def export(engine: Any, out: Path) -> dict[str, Any]:
    """Write the published table's document to `out`; returns it (with when it was exported)."""
    doc = from_warehouse_document(engine)
    if doc is None:
        raise LookupError("no selection table has been published yet (run `cams run`)")
    doc["exported_at"] = datetime.now(UTC).isoformat()
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc
