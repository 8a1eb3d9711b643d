"""Selection preferences per org and team: which models and providers a scope allows or excludes,
and which provider it prefers when one of its models qualifies.

A preference is policy, not quality: it never lets in a model the tier's floors turned away, it only
narrows the candidates (allowed, excluded) or reorders the qualifying ones (preferred provider). A
team's preference is applied on top of its org's: exclusions add up, allowed lists intersect, and the
team's preferred provider, when it names one, replaces the org's. Every decision a preference changed
names it (`preference:<rule>` as the binding constraint or a candidate's rejection, and the scopes
that applied in the explanation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LIST_RULES = ("allowed_models", "excluded_models", "allowed_providers", "excluded_providers")
RULES = (*LIST_RULES, "preferred_provider")
KEYS = ("org_id", "team_id", *RULES)
MAX_NAMES = 200
MAX_LEN = 200


class PreferenceError(ValueError):
    """A preference that cannot be used; the message says which field and what to fix."""


class OwnedByConfig(PreferenceError):
    """A preference cams.yaml manages: it changes in cams.yaml, not through the API."""


@dataclass(frozen=True)
class Preference:
    """One scope's preference as written (cams.yaml or the API)."""

    org_id: str
    team_id: str | None = None
    allowed_models: tuple[str, ...] | None = None  # None: every model; () would allow none and is refused
    excluded_models: tuple[str, ...] = ()
    allowed_providers: tuple[str, ...] | None = None
    excluded_providers: tuple[str, ...] = ()
    preferred_provider: str | None = None

    @property
    def scope(self) -> str:
        return "team" if self.team_id is not None else "org"

    @property
    def key(self) -> str:
        """The warehouse id: `org:<org>` or `team:<org>/<team>`."""
        return f"team:{self.org_id}/{self.team_id}" if self.team_id is not None else f"org:{self.org_id}"

    def as_dict(self) -> dict[str, Any]:
        """The preference as JSON: rules left unset are left out."""
        out: dict[str, Any] = {"org_id": self.org_id}
        if self.team_id is not None:
            out["team_id"] = self.team_id
        for rule in RULES:
            value = getattr(self, rule)
            if value is None or value == ():
                continue
            out[rule] = list(value) if isinstance(value, tuple) else value
        return out


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LEN or "\x00" in value:
        raise PreferenceError(f"{where} must be a non-empty name of at most {MAX_LEN} characters, not {value!r}")
    return value


def _names(value: Any, where: str, allow_none: bool) -> tuple[str, ...] | None:
    if value is None:
        if allow_none:
            return None
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise PreferenceError(f"{where} must be a list of at most {MAX_NAMES} names, not {value!r}")
    names = tuple(dict.fromkeys(_name(v, f"{where}[{i}]") for i, v in enumerate(value)))
    if allow_none and not names:
        raise PreferenceError(f"{where} is empty, which would allow nothing; leave it out to allow every one")
    return names


def parse_preference(raw: Any, where: str = "preference") -> Preference:
    """A preference from its JSON/YAML form; unknown keys and contradictions are errors naming the field."""
    if not isinstance(raw, dict):
        raise PreferenceError(f"{where} must be a mapping with org_id and the rules {', '.join(RULES)}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise PreferenceError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(KEYS)})")
    if "org_id" not in raw:
        raise PreferenceError(f"{where}.org_id is required")
    team = raw.get("team_id")
    pref = Preference(
        org_id=_name(raw["org_id"], f"{where}.org_id"),
        team_id=None if team is None else _name(team, f"{where}.team_id"),
        allowed_models=_names(raw.get("allowed_models"), f"{where}.allowed_models", True),
        excluded_models=_names(raw.get("excluded_models"), f"{where}.excluded_models", False) or (),
        allowed_providers=_names(raw.get("allowed_providers"), f"{where}.allowed_providers", True),
        excluded_providers=_names(raw.get("excluded_providers"), f"{where}.excluded_providers", False) or (),
        preferred_provider=None
        if raw.get("preferred_provider") is None
        else _name(raw["preferred_provider"], f"{where}.preferred_provider"),
    )
    if not any(getattr(pref, r) not in (None, ()) for r in RULES):
        raise PreferenceError(f"{where} sets no rule; give at least one of {', '.join(RULES)}")
    for allowed, excluded in (("allowed_models", "excluded_models"), ("allowed_providers", "excluded_providers")):
        both = set(getattr(pref, allowed) or ()) & set(getattr(pref, excluded))
        if both:
            raise PreferenceError(f"{where}: {sorted(both)[0]!r} is in both {allowed} and {excluded}")
    p = pref.preferred_provider
    if p is not None and (p in pref.excluded_providers or (pref.allowed_providers and p not in pref.allowed_providers)):
        raise PreferenceError(f"{where}.preferred_provider {p!r} is a provider the same preference does not allow")
    return pref


def parse_preferences(raw: Any, where: str = "preferences") -> tuple[Preference, ...]:
    """A list of preferences, one per scope."""
    if not isinstance(raw, list):
        raise PreferenceError(f"{where} must be a list of preferences (org_id, optional team_id, rules)")
    out = tuple(parse_preference(p, f"{where}[{i}]") for i, p in enumerate(raw))
    seen: set[str] = set()
    for i, p in enumerate(out):
        if p.key in seen:
            raise PreferenceError(f"{where}[{i}]: a second preference for {p.key}; one per org or team")
        seen.add(p.key)
    return out


@dataclass(frozen=True)
class Effective:
    """What applies to a request: its org's preference with its team's on top."""

    allowed_models: frozenset[str] | None
    excluded_models: frozenset[str]
    allowed_providers: frozenset[str] | None
    excluded_providers: frozenset[str]
    preferred_provider: str | None
    scopes: tuple[str, ...]  # the preferences that applied, org first: `org:acme`, `team:acme/search`

    def refuses(self, model: str, provider: str) -> str | None:
        """The rule that turns a candidate away, or None."""
        if model in self.excluded_models:
            return "preference:excluded_models"
        if provider in self.excluded_providers:
            return "preference:excluded_providers"
        if self.allowed_models is not None and model not in self.allowed_models:
            return "preference:allowed_models"
        if self.allowed_providers is not None and provider not in self.allowed_providers:
            return "preference:allowed_providers"
        return None

    def explained(self) -> dict[str, Any]:
        """The explanation's `preference` entry: which scopes applied and the rules in force."""
        out: dict[str, Any] = {"scopes": list(self.scopes)}
        for rule in RULES:
            value = getattr(self, rule)
            if value is not None and value != frozenset():
                out[rule] = sorted(value) if isinstance(value, frozenset) else value
        return out


def _intersect(a: frozenset[str] | None, b: tuple[str, ...] | None) -> frozenset[str] | None:
    if b is None:
        return a
    return frozenset(b) if a is None else a & frozenset(b)


def effective(prefs: list[Preference] | tuple[Preference, ...]) -> dict[tuple[str, str | None], Effective]:
    """Each scope's effective preference, keyed (org_id, None) and (org_id, team_id): one dict lookup
    per request. A team without a preference of its own is served its org's (the (org, None) entry)."""
    orgs = {p.org_id: p for p in prefs if p.team_id is None}
    out: dict[tuple[str, str | None], Effective] = {}
    for p in sorted(prefs, key=lambda p: (p.org_id, p.team_id is not None, p.team_id or "")):
        layers = [p] if p.team_id is None else [q for q in (orgs.get(p.org_id), p) if q is not None]
        allowed_m: frozenset[str] | None = None
        allowed_p: frozenset[str] | None = None
        excluded_m: set[str] = set()
        excluded_p: set[str] = set()
        preferred = None
        for layer in layers:
            allowed_m = _intersect(allowed_m, layer.allowed_models)
            allowed_p = _intersect(allowed_p, layer.allowed_providers)
            excluded_m |= set(layer.excluded_models)
            excluded_p |= set(layer.excluded_providers)
            preferred = layer.preferred_provider or preferred
        out[(p.org_id, p.team_id)] = Effective(
            allowed_m, frozenset(excluded_m), allowed_p, frozenset(excluded_p), preferred, tuple(q.key for q in layers)
        )
    return out
