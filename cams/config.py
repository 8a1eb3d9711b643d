"""`cams.yaml`: the one configuration file, parsed once into typed sections that the rest of CAMS takes
as they are (nothing downstream re-reads a section). Unknown keys are errors with their path and a guess
(`cams.config_keys`); secrets appear only as env var names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from cams.budgets.model import Budget, BudgetError, parse_budgets
from cams.selection.preferences import Preference, PreferenceError, parse_preferences

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


@dataclass(frozen=True)
class PricingConfig:
    """`pricing`: the LiteLLM snapshot to start from (default: the packaged one), then overrides and
    discounts as written (their keys are checked here; their values when the book is built from them)."""

    snapshot: str | None = None
    overrides: tuple[dict[str, Any], ...] = ()
    discounts: tuple[dict[str, Any], ...] = ()


DEFAULT_PRIOR = 0.70
DEFAULT_SHRINKAGE = 20.0


@dataclass(frozen=True)
class SelectionConfig:
    """`selection`: which models compete, the quality each tier needs, and how quality is estimated."""

    candidates: tuple[str, ...] = ()  # empty: every model seen in the spans
    task_types: tuple[str, ...] = ("chat",)  # tasks to publish before any span names one
    tiers: dict[str, float] = field(default_factory=dict)  # tier -> quality floor, over the built-in ones
    success_floor: float = 0.95
    default_prior: float = DEFAULT_PRIOR
    priors: dict[str, float] = field(default_factory=dict)  # model -> prior quality
    shrinkage: float = DEFAULT_SHRINKAGE


@dataclass(frozen=True)
class AlertsConfig:
    """`alerts`: delivery retries and timeouts, the SMTP relay, how often the sensors look, and which
    hosts and signing secrets budgets written through the API may use."""

    max_attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 5.0
    sensor_interval_s: int = 30
    allowed_hosts: tuple[str, ...] = ()
    secret_envs: tuple[str, ...] = ()
    smtp: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReconciliationConfig:
    """`reconciliation`: when a charge differs from the price book, and how many days the daily run settles."""

    abs_tolerance_usd: float = 0.0001
    rel_tolerance: float = 0.01
    trailing_days: int = 3
    at_risk_warn_share: float = 0.02


EXECUTORS = ("auto", "in_process", "threads", "multiprocess", "celery")


@dataclass(frozen=True)
class ExecutionConfig:
    """`execution`: where a run's steps execute. `auto` (the default) is in-process on a SQLite warehouse (one
    writer) and threads on PostgreSQL (costing in the database beside Auterity's landing); `multiprocess`
    runs each step in a child process, `celery` on Celery workers through a broker
    (docs/operations.md#scale-out)."""

    executor: str = "auto"
    max_concurrent: int = 2
    celery_broker: str = "pyamqp://guest:guest@127.0.0.1:5672//"
    celery_backend: str = "rpc://"

    def resolved(self, database_url: str) -> str:
        """The executor a run uses with this warehouse."""
        if self.executor != "auto":
            return self.executor
        return "in_process" if database_url.startswith("sqlite") else "threads"


def _execution(raw: dict[str, Any]) -> ExecutionConfig:
    d = ExecutionConfig()
    executor = raw.get("executor", d.executor)
    if executor not in EXECUTORS:
        raise ConfigError(f"execution.executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    celery = raw.get("celery") or {}
    for key in ("broker", "backend"):
        if key in celery and not (isinstance(celery[key], str) and "://" in celery[key]):
            raise ConfigError(f"execution.celery.{key} must be a URL such as pyamqp://guest@host:5672//")
    return ExecutionConfig(
        executor=executor,
        max_concurrent=_number(raw.get("max_concurrent", d.max_concurrent), "execution.max_concurrent", 1, 64, True),
        celery_broker=celery.get("broker", d.celery_broker),
        celery_backend=celery.get("backend", d.celery_backend),
    )


@dataclass(frozen=True)
class RetentionConfig:
    """`retention`: how many days of per-request rows the warehouse keeps (rollups and summaries stay)."""

    days: int = 90


def _number(value: Any, where: str, low: float = 0.0, high: float = float("inf"), whole: bool = False) -> Any:
    ok = isinstance(value, int) if whole else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        span = f"from {low:g} to {high:g}" if high != float("inf") else f">= {low:g}"
        raise ConfigError(f"{where} must be {kind} {span}, not {value!r}")
    return value if whole else float(value)


def _names(value: Any, where: str) -> tuple[str, ...]:
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of names, not {value!r}")
    return tuple(value)


def _weights(value: Any, where: str, high: float = 1.0) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must map names to numbers from 0 to {high:g}")
    return {str(k): _number(v, f"{where}.{k}", 0.0, high) for k, v in value.items()}


def _list_of_mappings(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where} must be a list of mappings")
    return tuple(dict(v) for v in value)


def _pricing(raw: dict[str, Any]) -> PricingConfig:
    snap = raw.get("snapshot")
    if snap is not None and not isinstance(snap, str):
        raise ConfigError(f"pricing.snapshot must be a file path, not {snap!r}")
    return PricingConfig(
        snapshot=snap,
        overrides=_list_of_mappings(raw.get("overrides") or [], "pricing.overrides"),
        discounts=_list_of_mappings(raw.get("discounts") or [], "pricing.discounts"),
    )


def _selection(raw: dict[str, Any]) -> SelectionConfig:
    w = "selection"
    return SelectionConfig(
        candidates=_names(raw.get("candidates") or [], f"{w}.candidates"),
        task_types=_names(raw.get("task_types") or ["chat"], f"{w}.task_types"),
        tiers=_weights(raw.get("tiers") or {}, f"{w}.tiers"),
        success_floor=_number(raw.get("success_floor", 0.95), f"{w}.success_floor", 0.0, 1.0),
        default_prior=_number(raw.get("default_prior", DEFAULT_PRIOR), f"{w}.default_prior", 0.0, 1.0),
        priors=_weights(raw.get("priors") or {}, f"{w}.priors"),
        shrinkage=_number(raw.get("shrinkage", DEFAULT_SHRINKAGE), f"{w}.shrinkage", 0.0, 1e6),
    )


def _alerts(raw: dict[str, Any]) -> AlertsConfig:
    w = "alerts"
    smtp = raw.get("smtp") or {}
    if not isinstance(smtp, dict):
        raise ConfigError(f"{w}.smtp must be a mapping")
    return AlertsConfig(
        max_attempts=_number(raw.get("max_attempts", 4), f"{w}.max_attempts", 1, 100, whole=True),
        backoff_s=_number(raw.get("backoff_s", 0.5), f"{w}.backoff_s", 0.0, 3600),
        timeout_s=_number(raw.get("timeout_s", 5.0), f"{w}.timeout_s", 0.1, 600),
        sensor_interval_s=_number(raw.get("sensor_interval_s", 30), f"{w}.sensor_interval_s", 1, 86400, whole=True),
        allowed_hosts=tuple(h.lower() for h in _names(raw.get("allowed_hosts") or [], f"{w}.allowed_hosts")),
        secret_envs=_names(raw.get("secret_envs") or [], f"{w}.secret_envs"),
        smtp=dict(smtp),
    )


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
    pricing: PricingConfig = field(default_factory=PricingConfig)
    budgets: tuple[Budget, ...] = ()
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    reconciliation: ReconciliationConfig = field(default_factory=ReconciliationConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    partitions_start: str = DEFAULT_PARTITIONS_START
    path: str | None = None
    rate_limits: RateLimits = field(default_factory=RateLimits)
    preferences: tuple[Preference, ...] = ()


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
    raw_budgets = data.get("budgets") or []
    if not isinstance(raw_budgets, list):
        raise ConfigError("budgets must be a list of budgets")
    try:
        budgets = tuple(parse_budgets(raw_budgets))
    except BudgetError as exc:
        raise ConfigError(str(exc)) from None
    return CamsConfig(
        sources=sources,
        pricing=_pricing(_section(data, "pricing")),
        budgets=budgets,
        selection=_selection(_section(data, "selection")),
        alerts=_alerts(_section(data, "alerts")),
        reconciliation=_reconciliation(_section(data, "reconciliation")),
        retention=RetentionConfig(
            days=_number(
                _section(data, "retention").get("days", RetentionConfig.days), "retention.days", 31, 36_500, True
            )
        ),
        execution=_execution(_section(data, "execution")),
        partitions_start=start,
        path=path,
        rate_limits=_rate_limits(_section(data, "api").get("rate_limits") or {}),
        preferences=_preferences(data.get("preferences")),
    )


def _preferences(raw: Any) -> tuple[Preference, ...]:
    try:
        return parse_preferences([] if raw is None else raw, "preferences")
    except PreferenceError as exc:
        raise ConfigError(str(exc)) from None


def _reconciliation(raw: dict[str, Any]) -> ReconciliationConfig:
    w, d = "reconciliation", ReconciliationConfig()
    return ReconciliationConfig(
        abs_tolerance_usd=_number(raw.get("abs_tolerance_usd", d.abs_tolerance_usd), f"{w}.abs_tolerance_usd"),
        rel_tolerance=_number(raw.get("rel_tolerance", d.rel_tolerance), f"{w}.rel_tolerance"),
        trailing_days=_number(raw.get("trailing_days", d.trailing_days), f"{w}.trailing_days", 1, 60, whole=True),
        at_risk_warn_share=_number(raw.get("at_risk_warn_share", d.at_risk_warn_share), f"{w}.at_risk_warn_share"),
    )


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
