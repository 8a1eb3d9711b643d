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


MAX_AMOUNT_USD = Decimal(10) ** 9  # the warehouse keeps money as NUMERIC(20, 10)


def _text(value: Any, name: str, where: str, max_len: int) -> str:
    """A name or id: text (a YAML number is read as its digits) the warehouse can store."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BudgetError(f"{where}: {name} must be text, not {type(value).__name__}")
    text = str(value)
    if len(text) > max_len:
        raise BudgetError(f"{where}: {name} is longer than {max_len} characters")
    if any(ch == "\x00" or "\ud800" <= ch <= "\udfff" for ch in text):
        raise BudgetError(f"{where}: {name} holds a NUL character or a lone surrogate")
    return text


def _list(value: Any, name: str, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise BudgetError(f"{where}: {name} must be a list, not {type(value).__name__}")
    if len(value) > 50:
        raise BudgetError(f"{where}: at most 50 {name}")
    return list(value)


def _decimal(value: Any, name: str, where: str) -> Decimal:
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BudgetError(f"{where}: {name} must be a number, not {value!r}") from None
    if not out.is_finite() or out <= 0:
        raise BudgetError(f"{where}: {name} must be greater than 0")
    if out >= MAX_AMOUNT_USD:
        raise BudgetError(f"{where}: {name} must be less than {MAX_AMOUNT_USD:,}")
    return out


def parse_budget(raw: Mapping[str, Any], where: str = "budget") -> Budget:
    """Validate one budget mapping (cams.yaml `budgets[i]` or a Budget API body)."""
    if not isinstance(raw, Mapping):
        raise BudgetError(f"{where}: must be a mapping")
    known = {"id", "name", "scope", "scope_id", "org_id", "period", "amount_usd", "timezone", "thresholds", "channels"}
    unknown = set(raw) - known
    if unknown:
        raise BudgetError(f"{where}: unknown fields {sorted(unknown)}")
    bid = _text(_need(raw, "id", where), "id", where, 200)
    where = f"budget {bid}"
    scope = _choice(_need(raw, "scope", where), SCOPES, "scope", where)
    scope_id = _text(_need(raw, "scope_id", where), "scope_id", where, 200)
    org_id = _text(raw.get("org_id") or (scope_id if scope == "org" else ""), "org_id", where, 200)
    name = _text(raw.get("name") or bid, "name", where, 512)
    if scope != "org" and not org_id:
        raise BudgetError(f"{where}: a {scope} budget needs org_id")
    if scope == "org" and org_id != scope_id:
        raise BudgetError(f"{where}: an org budget's org_id must equal its scope_id")
    tz = _text(raw.get("timezone") or "UTC", "timezone", where, 64)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BudgetError(f"{where}: unknown timezone {tz!r}") from None
    thresholds = []
    for i, t in enumerate(_list(raw.get("thresholds"), "thresholds", where)):
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
    for i, c in enumerate(_list(raw.get("channels"), "channels", where) or [{"type": "log"}]):
        w = f"{where}: channels[{i}]"
        if not isinstance(c, Mapping):
            raise BudgetError(f"{w} must be a mapping")
        ctype = _choice(c.get("type"), CHANNEL_TYPES, "type", w)
        url = _text(c["url"], "url", w, 2000) if c.get("url") is not None else None
        if ctype in ("webhook", "slack") and not (url or "").startswith(("http://", "https://")):
            raise BudgetError(f"{w}: a {ctype} channel needs an http(s) url")
        to = c.get("to") or ()
        to = (to,) if isinstance(to, str) else tuple(_list(to, "to", w))
        to = tuple(_text(x, "to", w, 320) for x in to)
        secret_env = _text(c["secret_env"], "secret_env", w, 200) if c.get("secret_env") else None
        if ctype == "email" and not to:
            raise BudgetError(f"{w}: an email channel needs `to`")
        if c.get("secret"):
            raise BudgetError(f"{w}: secrets go in env vars; name one with secret_env")
        channels.append(Channel(ctype, url, secret_env, to))
    return Budget(
        id=bid,
        name=name,
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


def allowed_channels(budget: Budget, config: Any) -> None:
    """A budget written through the API may reach only the hosts, and name only the signing secrets,
    that cams.yaml allows: `alerts.allowed_hosts` / `alerts.secret_envs`, plus those its own budgets use.
    (cams.yaml is the operator's; an API key must not point alerts at internal addresses or read
    arbitrary environment variables.)"""
    from urllib.parse import urlsplit

    hosts = set(config.alerts.allowed_hosts)
    secrets = set(config.alerts.secret_envs)
    for yb in config.budgets:
        for c in yb.channels:
            if c.url and urlsplit(c.url).hostname:
                hosts.add(str(urlsplit(c.url).hostname).lower())
            if c.secret_env:
                secrets.add(c.secret_env)
    for i, c in enumerate(budget.channels):
        where = f"budget {budget.id}: channels[{i}]"
        if c.url:
            try:
                host = urlsplit(c.url).hostname
            except ValueError:
                host = None
            if not host or host.lower() not in hosts:
                raise BudgetError(f"{where}: host {host!r} is not allowed; add it to alerts.allowed_hosts in cams.yaml")
        if c.secret_env and c.secret_env not in secrets:
            raise BudgetError(
                f"{where}: secret_env {c.secret_env!r} is not allowed; add it to alerts.secret_envs in cams.yaml"
            )
