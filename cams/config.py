"""`cams.yaml`: the one configuration file (SPEC §8). Secrets appear only as env var names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

DEFAULT_HOME = Path(".cams")
DEFAULT_PARTITIONS_START = "2026-01-01"


class ConfigError(ValueError):
    """cams.yaml is missing something or holds a value that cannot work."""


@dataclass(frozen=True)
class SourceConfig:
    """Where one usage source is read from: a drop directory of JSONL files or an HTTP API."""

    name: str
    mode: str = "files"
    drop_dir: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    page_size: int = 500
    timeout_s: float = 10.0
    max_retries: int = 5
    poll_lag_s: int = 30  # api mode: the poll sensor looks at records older than this
    dsn_env: str | None = None  # litellm mode: env var holding the LiteLLM proxy's database URL
    default_org: str = "default"  # litellm mode: org of spend rows with no organization_id
    default_task: str = "chat"  # litellm mode: task of spend rows with no task:<name> tag
    # where pushed records wait to be landed (cost-data webhooks, OTLP exports): the drop_dir in files
    # mode; in api and litellm mode a folder the landing reads beside the API or database
    inbox_dir: str | None = None

    def dsn(self) -> str:
        if not self.dsn_env or not os.environ.get(self.dsn_env):
            raise ConfigError(f"sources.{self.name}.dsn_env must name a set env var holding the LiteLLM database URL")
        return os.environ[self.dsn_env]

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"sources.{self.name}.api_key_env names {self.api_key_env}, which is not set")
        return key


@dataclass(frozen=True)
class RateLimits:
    """`api.rate_limits`: requests a key may make per window; shared through Redis when `redis_url` is set."""

    per_second: float = 0.0  # every key's limit (0: none), scaled to the window
    keys: dict[str, float] = field(default_factory=dict)  # per key id (`cams keys list`)
    window_s: float = 1.0
    redis_url: str | None = None

    def limit(self, key_id: str) -> int:
        """Requests allowed to `key_id` in one window; 0 means no limit."""
        rate = self.keys.get(key_id, self.per_second)
        return max(1, round(rate * self.window_s)) if rate > 0 else 0

    @property
    def active(self) -> bool:
        return self.per_second > 0 or any(v > 0 for v in self.keys.values())


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping")
    return value


def _rate_limits(raw: Any) -> RateLimits:
    where = "api.rate_limits"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")

    def rate(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}.{name} must be a number of requests a second >= 0, not {value!r}")
        return float(value)

    keys = raw.get("keys") or {}
    if not isinstance(keys, dict):
        raise ConfigError(f"{where}.keys must map key ids to requests a second")
    window = raw.get("window_s", 1.0)
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0.1 <= window <= 3600:
        raise ConfigError(f"{where}.window_s must be a number of seconds from 0.1 to 3600, not {window!r}")
    url = raw.get("redis_url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://"))):
        raise ConfigError(f"{where}.redis_url must be a redis:// URL, not {url!r}")
    return RateLimits(
        per_second=rate(raw.get("per_second", 0), "per_second"),
        keys={str(k): rate(v, f"keys.{k}") for k, v in keys.items()},
        window_s=float(window),
        redis_url=url,
    )


@dataclass(frozen=True)
class CamsConfig:
    """The parsed configuration with defaults filled in."""

    sources: dict[str, SourceConfig]
    pricing: dict[str, Any] = field(default_factory=dict)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    alerts: dict[str, Any] = field(default_factory=dict)
    reconciliation: dict[str, Any] = field(default_factory=dict)
    partitions_start: str = DEFAULT_PARTITIONS_START
    path: str | None = None
    rate_limits: RateLimits = field(default_factory=RateLimits)

    @property
    def overrides(self) -> list[dict[str, Any]]:
        return list(self.pricing.get("overrides") or [])

    @property
    def discounts(self) -> list[dict[str, Any]]:
        return list(self.pricing.get("discounts") or [])


def _reject_inline_secrets(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if str(k).lower() in {"api_key", "secret", "password", "token"} and v:
                raise ConfigError(f"{where}.{k}: secrets go in env vars; name one with {k}_env")
            _reject_inline_secrets(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _reject_inline_secrets(v, f"{where}[{i}]")


def parse(data: dict[str, Any] | None, path: str | None = None) -> CamsConfig:
    """Validate a loaded cams.yaml mapping."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError("cams.yaml must be a mapping at the top level")
    _reject_inline_secrets(data, "cams.yaml")
    from cams.config_keys import check_keys

    unknown = check_keys(data)
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ConfigError(f"{unknown[0]}{more}")
    sources: dict[str, SourceConfig] = {}
    raw_sources = data.get("sources") or {}
    for name in ("relaycore", "auterity"):
        raw = dict(raw_sources.get(name) or {})
        mode = raw.get("mode", "files")
        if mode not in ("files", "api", "litellm") or (mode == "litellm" and name != "relaycore"):
            raise ConfigError(f"sources.{name}.mode must be files or api (or litellm, for relaycore), not {mode!r}")
        if mode == "files":
            raw.setdefault("drop_dir", str(DEFAULT_HOME / "drop" / name))
        elif mode == "litellm":
            if not raw.get("dsn_env"):
                raise ConfigError(f"sources.{name}: mode litellm needs dsn_env (the env var with the database URL)")
        elif not raw.get("base_url"):
            raise ConfigError(f"sources.{name}: mode api needs base_url")
        raw.setdefault("inbox_dir", raw.get("drop_dir") if mode == "files" else str(DEFAULT_HOME / "inbox" / name))
        known = {f for f in SourceConfig.__dataclass_fields__ if f != "name"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"sources.{name}: unknown keys {sorted(unknown)}")
        sources[name] = SourceConfig(name=name, **raw)
    start = str(data.get("partitions", {}).get("start_date", DEFAULT_PARTITIONS_START))
    try:
        date.fromisoformat(start)
    except ValueError as exc:
        raise ConfigError(f"partitions.start_date must be YYYY-MM-DD, not {start!r}") from exc
    from cams.budgets.model import BudgetError, parse_budgets

    try:
        parse_budgets(list(data.get("budgets") or []))
    except BudgetError as exc:
        raise ConfigError(str(exc)) from None
    return CamsConfig(
        sources=sources,
        pricing=dict(data.get("pricing") or {}),
        budgets=list(data.get("budgets") or []),
        selection=dict(data.get("selection") or {}),
        alerts=dict(data.get("alerts") or {}),
        reconciliation=_reconciliation(data.get("reconciliation") or {}),
        partitions_start=start,
        path=path,
        rate_limits=_rate_limits(_section(data, "api").get("rate_limits") or {}),
    )


RECONCILIATION_DEFAULTS = {
    "abs_tolerance_usd": 0.0001,
    "rel_tolerance": 0.01,
    "trailing_days": 3,
    "at_risk_warn_share": 0.02,
}


def _reconciliation(raw: dict[str, Any]) -> dict[str, Any]:
    unknown = set(raw) - set(RECONCILIATION_DEFAULTS)
    if unknown:
        raise ConfigError(f"reconciliation: unknown keys {sorted(unknown)}")
    out = {**RECONCILIATION_DEFAULTS, **raw}
    for key in ("abs_tolerance_usd", "rel_tolerance", "at_risk_warn_share"):
        if not isinstance(out[key], int | float) or out[key] < 0:
            raise ConfigError(f"reconciliation.{key} must be a number >= 0")
    if not isinstance(out["trailing_days"], int) or not 1 <= out["trailing_days"] <= 60:
        raise ConfigError("reconciliation.trailing_days must be a whole number from 1 to 60")
    return out


def config_path() -> Path:
    return Path(os.environ.get("CAMS_CONFIG", "cams.yaml"))


def load(path: str | Path | None = None) -> CamsConfig:
    """Read cams.yaml (CAMS_CONFIG, default ./cams.yaml); a missing default file means defaults."""
    explicit = path is not None or "CAMS_CONFIG" in os.environ
    p = Path(path) if path is not None else config_path()
    if not p.exists():
        if explicit:
            raise ConfigError(f"config file {p} does not exist")
        return parse({})
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return parse(data, str(p))


def database_url() -> str:
    """CAMS_DATABASE_URL, default a SQLite file under .cams/."""
    url = os.environ.get("CAMS_DATABASE_URL")
    if url:
        return url
    DEFAULT_HOME.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(DEFAULT_HOME / 'warehouse.db').resolve()}"
