"""The effective-dated price book: snapshot prices, YAML overrides, custom models and discounts.

Every entry covers [valid_from, valid_to) for one model; a request is costed with the entry in
force at its timestamp. Dated snapshot versions (refreshes), overrides and discounts with a
`valid_from` split a model's timeline at that instant, so a price change applies from its date on
and never rewrites earlier periods; only a price dated into the past changes history.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cams.pricing.rates import Rates, resolve_rates, thresholds
from cams.pricing.snapshot import CAPABILITY_KEYS, _is_price_key
from cams.pricing.versions import MIN_TIME, PriceVersion

HUNDRED = Decimal(100)


class PricingConfigError(ValueError):
    """An override or discount that cannot be applied."""


@dataclass(frozen=True)
class PriceEntry:
    """One model's prices over one validity window."""

    model: str
    provider: str
    mode: str
    valid_from: datetime
    valid_to: datetime | None
    prices: Mapping[str, Decimal]
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    source: str = "snapshot"
    version: str | None = None  # the price version (snapshot or refresh) its base prices came from

    @property
    def price_id(self) -> str:
        """Stable id of these exact prices for this model and window: recorded on every cost row."""
        blob = json.dumps({k: str(v) for k, v in sorted(self.prices.items())}, sort_keys=True)
        digest = hashlib.sha256(f"{self.model}|{self.valid_from.isoformat()}|{blob}".encode()).hexdigest()
        return f"{self.model}@{self.valid_from.date().isoformat()}#{digest[:10]}"

    @property
    def thresholds(self) -> list[int]:
        return thresholds(self.prices)

    def rates(self, service_tier: str, input_tokens: int) -> Rates:
        return resolve_rates(self.prices, service_tier, input_tokens)

    @property
    def supported(self) -> bool:
        """False for pricing schemes CAMS does not model (tiered tables, off-peak windows)."""
        return not any(k.startswith("unsupported_") for k in self.capabilities)


def to_utc(value: str | date | datetime | None) -> datetime | None:
    """Parse an RFC 3339 / ISO date(time) into an aware UTC datetime (dates mean 00:00 UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00")
        dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _decimal_prices(raw: Mapping[str, Any]) -> dict[str, Decimal]:
    """Per-token prices of a snapshot row or an override; a price given as text ("2e-7") is read
    exactly, and one that is not a number is an error rather than a silently missing price."""
    out: dict[str, Decimal] = {}
    for k, v in raw.items():
        if _is_price_key(k, v) or isinstance(v, Decimal):
            out[k] = Decimal(str(v))
        elif isinstance(v, str) and _is_price_key(k, 0.0):
            try:
                price = Decimal(v.strip())
            except InvalidOperation:
                raise PricingConfigError(f"{k} must be a number, not {v[:40]!r}") from None
            if not price.is_finite() or price < 0:
                raise PricingConfigError(f"{k} must be a finite number >= 0, not {v[:40]!r}")
            out[k] = price
    return out


class PriceBook:
    """Lookup of the price entry in force for a model at an instant."""

    def __init__(self, entries: Iterable[PriceEntry], meta: Mapping[str, Any] | None = None):
        self.meta = dict(meta or {})
        self._by_model: dict[str, list[PriceEntry]] = {}
        for e in sorted(entries, key=lambda e: (e.model, e.valid_from)):
            self._by_model.setdefault(e.model, []).append(e)
        self._starts = {m: [e.valid_from for e in es] for m, es in self._by_model.items()}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_model.values())

    def __contains__(self, model: str) -> bool:
        return self.resolve_model(model) is not None

    @property
    def models(self) -> list[str]:
        return sorted(self._by_model)

    def entries(self, model: str | None = None) -> list[PriceEntry]:
        if model is not None:
            return list(self._by_model.get(model, []))
        return [e for es in self._by_model.values() for e in es]

    def resolve_model(self, model: str, provider: str | None = None) -> str | None:
        """The book's key for `model`: exact, else `provider/model` (LiteLLM naming)."""
        if model in self._by_model:
            return model
        if provider and f"{provider}/{model}" in self._by_model:
            return f"{provider}/{model}"
        return None

    def lookup(self, model: str, at: datetime, provider: str | None = None) -> PriceEntry | None:
        """The entry in force for `model` at `at`, or None when the model has no price then."""
        key = self.resolve_model(model, provider)
        if key is None:
            return None
        i = bisect.bisect_right(self._starts[key], at) - 1
        if i < 0:
            return None
        entry = self._by_model[key][i]
        if entry.valid_to is not None and at >= entry.valid_to:
            return None
        return entry

    @classmethod
    def build(
        cls,
        snapshot: Mapping[str, Any],
        overrides: Iterable[Mapping[str, Any]] = (),
        discounts: Iterable[Mapping[str, Any]] = (),
        later: Sequence[PriceVersion] = (),
    ) -> PriceBook:
        """The snapshot (the first version) and `later` dated versions, then overrides and discounts.

        A model's timeline splits where a version changes its prices, where an override starts,
        and where a discount starts or ends; nowhere else, so an unchanged price keeps its price_id.
        A model a later version drops keeps its last price (LiteLLM prunes old names; their
        requests still cost what they cost).
        """
        history = [PriceVersion(MIN_TIME, snapshot), *sorted(later, key=lambda v: v.effective_from)]
        if any(v.effective_from <= MIN_TIME for v in history[1:]):
            raise PricingConfigError("a later price version must take effect after 1970-01-01")
        # per model: [(start, provider, mode, prices, caps, version_id)], a new item only where prices change
        timeline: dict[str, list[_Base]] = {}
        for v in history:
            vid = v.version_id
            for name, raw in v.aliased_models().items():
                prices = _decimal_prices(raw)
                steps = timeline.setdefault(name, [])
                if steps and steps[-1].prices == prices:
                    continue
                caps = {k: val for k, val in raw.items() if k in CAPABILITY_KEYS or k.startswith("unsupported_")}
                if "alias_of" in raw:
                    caps["alias_of"] = raw["alias_of"]
                steps.append(
                    _Base(v.effective_from, raw.get("litellm_provider", ""), raw.get("mode", "chat"), prices, caps, vid)
                )

        per_model: dict[str, list[tuple[datetime, dict[str, Decimal], Mapping[str, Any]]]] = {}
        customs: dict[str, Mapping[str, Any]] = {}
        for ov in overrides:
            model = ov.get("model")
            if not model:
                raise PricingConfigError(f"pricing override without a model: {dict(ov)}")
            if model not in timeline and model not in customs:
                if "input_cost_per_token" not in ov and "output_cost_per_token" not in ov:
                    raise PricingConfigError(
                        f"custom model {model!r} needs input_cost_per_token and output_cost_per_token"
                    )
                customs[model] = ov
            start = to_utc(ov.get("valid_from")) or MIN_TIME
            per_model.setdefault(model, []).append((start, _decimal_prices(ov), ov))

        discount_rules = [_discount_rule(d) for d in discounts]
        entries: list[PriceEntry] = []
        for model in [*timeline, *customs]:
            steps = timeline.get(model, [])
            custom = customs.get(model)
            changes = sorted(per_model.get(model, []), key=lambda c: c[0])
            first = steps[0] if steps else _Base(MIN_TIME, "", "chat", {}, {}, None)
            provider = first.provider if steps else str(custom.get("provider", "custom"))  # type: ignore[union-attr]
            rules = [r for r in discount_rules if r.applies(model, provider)]
            points = sorted(
                {
                    MIN_TIME,
                    *(s.start for s in steps),
                    *(c[0] for c in changes),
                    *(r.start for r in rules),
                    *(r.end for r in rules if r.end is not None),
                }
            )
            for i, start in enumerate(points):
                end = points[i + 1] if i + 1 < len(points) else None
                base = next((s for s in reversed(steps) if s.start <= start), None)
                merged = dict(base.prices) if base else {}
                source = "snapshot" if base else "custom"
                for when, ov_prices, _ in changes:
                    if when <= start:
                        merged.update(ov_prices)
                        source = "override"
                if base is None and not merged:
                    continue  # before the model exists (or a custom model's first valid_from): unpriced, never 0
                factor = Decimal(1)
                for r in rules:
                    if r.start <= start and (r.end is None or start < r.end):
                        factor *= (HUNDRED - r.percent) / HUNDRED
                        source += f"+discount{r.percent}%"
                if factor != 1:
                    merged = {k: v * factor for k, v in merged.items()}
                if base is not None:
                    mode, caps = base.mode, base.caps
                else:
                    mode = str(custom.get("mode", "chat")) if custom else first.mode
                    caps = {k: v for k, v in (custom or {}).items() if k in CAPABILITY_KEYS}
                entries.append(
                    PriceEntry(model, provider, mode, start, end, merged, caps, source, base.version if base else None)
                )
        meta = dict(snapshot.get("_meta") or {})
        meta["versions"] = [v.version_id for v in history]
        meta["version"] = history[-1].version_id if later else meta.get("version")
        return cls(entries, meta=meta)


@dataclass(frozen=True)
class _Base:
    """A model's snapshot prices from one version on."""

    start: datetime
    provider: str
    mode: str
    prices: dict[str, Decimal]
    caps: dict[str, Any]
    version: str | None


@dataclass(frozen=True)
class _Discount:
    percent: Decimal
    provider: str | None
    model: str | None
    start: datetime
    end: datetime | None

    def applies(self, model: str, provider: str) -> bool:
        return (self.model is None or self.model == model) and (self.provider is None or self.provider == provider)


def _discount_rule(raw: Mapping[str, Any]) -> _Discount:
    try:
        percent = Decimal(str(raw["percent"]))
    except (KeyError, ArithmeticError) as exc:
        raise PricingConfigError(f"discount needs a numeric percent: {dict(raw)}") from exc
    if not Decimal(0) <= percent < HUNDRED:
        raise PricingConfigError(f"discount percent must be in [0, 100): {percent}")
    if not raw.get("provider") and not raw.get("model"):
        raise PricingConfigError(f"discount needs a provider or a model: {dict(raw)}")
    return _Discount(
        percent,
        raw.get("provider"),
        raw.get("model"),
        to_utc(raw.get("valid_from")) or MIN_TIME,
        to_utc(raw.get("valid_to")),
    )
