"""A budget as configured (YAML or the Budget API), validated into typed, immutable values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SCOPES = ("org", "team", "user")
PERIODS = ("daily", "weekly", "monthly", "quarterly", "yearly")
LEVELS = ("warning", "critical")
BASES = ("actual", "forecast")
ACTIONS = ("notify", "downgrade", "block")
CHANNEL_TYPES = ("webhook", "slack", "email", "log")
ACTION_RANK = {"none": 0, "notify": 1, "downgrade": 2, "block": 3}


class BudgetError(ValueError):
    """A budget definition that cannot work, with the field at fault."""


@dataclass(frozen=True)
class Threshold:
    level: str
    percent: Decimal
    basis: str = "actual"
    action: str = "notify"

    @property
    def key(self) -> str:
        return f"{self.level}:{self.basis}:{self.percent.normalize():f}"


@dataclass(frozen=True)
class Channel:
    type: str
    url: str | None = None
    secret_env: str | None = None
    to: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.url or ",".join(self.to) or self.type


@dataclass(frozen=True)
class Budget:
    id: str
    name: str
    scope: str
    scope_id: str
    org_id: str
    period: str
    amount_usd: Decimal
    timezone: str = "UTC"
    thresholds: tuple[Threshold, ...] = ()
    channels: tuple[Channel, ...] = field(default_factory=lambda: (Channel("log"),))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["amount_usd"] = f"{self.amount_usd:f}"
        d["thresholds"] = [{**asdict(t), "percent": float(t.percent)} for t in self.thresholds]
        d["channels"] = [
            {k: (list(v) if k == "to" else v) for k, v in asdict(c).items() if v not in (None, ())}
            for c in self.channels
        ]
        return d


def _need(raw: Mapping[str, Any], name: str, where: str) -> Any:
    value = raw.get(name)
    if value is None or value == "":
        raise BudgetError(f"{where}: {name} is required")
    return value


def _choice(value: Any, allowed: tuple[str, ...], name: str, where: str) -> str:
    if value not in allowed:
        raise BudgetError(f"{where}: {name} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _decimal(value: Any, name: str, where: str) -> Decimal:
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BudgetError(f"{where}: {name} must be a number, not {value!r}") from None
    if not out.is_finite() or out <= 0:
        raise BudgetError(f"{where}: {name} must be greater than 0")
    return out


def parse_budget(raw: Mapping[str, Any], where: str = "budget") -> Budget:
    """Validate one budget mapping (cams.yaml `budgets[i]` or a Budget API body)."""
    if not isinstance(raw, Mapping):
        raise BudgetError(f"{where}: must be a mapping")
    known = {"id", "name", "scope", "scope_id", "org_id", "period", "amount_usd", "timezone", "thresholds", "channels"}
    unknown = set(raw) - known
    if unknown:
        raise BudgetError(f"{where}: unknown fields {sorted(unknown)}")
    bid = str(_need(raw, "id", where))
    where = f"budget {bid}"
    scope = _choice(_need(raw, "scope", where), SCOPES, "scope", where)
    scope_id = str(_need(raw, "scope_id", where))
    org_id = str(raw.get("org_id") or (scope_id if scope == "org" else ""))
    if scope != "org" and not org_id:
        raise BudgetError(f"{where}: a {scope} budget needs org_id")
    if scope == "org" and org_id != scope_id:
        raise BudgetError(f"{where}: an org budget's org_id must equal its scope_id")
    tz = str(raw.get("timezone") or "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BudgetError(f"{where}: unknown timezone {tz!r}") from None
    thresholds = []
    for i, t in enumerate(raw.get("thresholds") or []):
        w = f"{where}: thresholds[{i}]"
        if not isinstance(t, Mapping):
            raise BudgetError(f"{w} must be a mapping")
        pct = _decimal(_need(t, "percent", w), "percent", w)
        if pct > 1000:
            raise BudgetError(f"{w}: percent must be at most 1000")
        thresholds.append(
            Threshold(
                level=_choice(t.get("level", "warning"), LEVELS, "level", w),
                percent=pct,
                basis=_choice(t.get("basis", "actual"), BASES, "basis", w),
                action=_choice(t.get("action", "notify"), ACTIONS, "action", w),
            )
        )
    if len({t.key for t in thresholds}) != len(thresholds):
        raise BudgetError(f"{where}: two thresholds with the same level, basis and percent")
    channels = []
    for i, c in enumerate(raw.get("channels") or [{"type": "log"}]):
        w = f"{where}: channels[{i}]"
        if not isinstance(c, Mapping):
            raise BudgetError(f"{w} must be a mapping")
        ctype = _choice(c.get("type"), CHANNEL_TYPES, "type", w)
        if ctype in ("webhook", "slack") and not str(c.get("url", "")).startswith(("http://", "https://")):
            raise BudgetError(f"{w}: a {ctype} channel needs an http(s) url")
        to = c.get("to") or ()
        to = (to,) if isinstance(to, str) else tuple(str(x) for x in to)
        if ctype == "email" and not to:
            raise BudgetError(f"{w}: an email channel needs `to`")
        if c.get("secret"):
            raise BudgetError(f"{w}: secrets go in env vars; name one with secret_env")
        channels.append(Channel(ctype, c.get("url"), c.get("secret_env"), to))
    return Budget(
        id=bid,
        name=str(raw.get("name") or bid),
        scope=scope,
        scope_id=scope_id,
        org_id=org_id,
        period=_choice(_need(raw, "period", where), PERIODS, "period", where),
        amount_usd=_decimal(_need(raw, "amount_usd", where), "amount_usd", where),
        timezone=tz,
        thresholds=tuple(sorted(thresholds, key=lambda t: (t.basis, t.percent))),
        channels=tuple(channels),
    )


def parse_budgets(raw: list[Mapping[str, Any]]) -> list[Budget]:
    budgets = [parse_budget(b, f"budgets[{i}]") for i, b in enumerate(raw)]
    ids = [b.id for b in budgets]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise BudgetError(f"budget ids must be unique: {sorted(dup)}")
    return budgets
