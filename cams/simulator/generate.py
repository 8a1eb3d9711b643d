"""Generate usage for a set of days: orgs, teams, users, tasks, a realistic model mix, and faults.

Same seed, same days, same output, byte for byte. Every injected fault is counted in `Faults`, so
tests can assert exact numbers downstream (quarantined lines, duplicates, missing spans, drift).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cams.pricing.book import PriceBook
from cams.pricing.cost import TokenUsage, request_cost
from cams.pricing.snapshot import load_default
from cams.reconcile import Tolerances

ORGS: dict[str, dict[str, int]] = {
    "acme": {"search": 4, "support": 5, "platform": 3},
    "globex": {"ml": 4, "ops": 3},
    "initech": {"core": 4},
}
ORG_WEIGHT = {"acme": 5, "globex": 3, "initech": 2}
# task -> (mean input tokens, mean output tokens, cache share of input)
TASKS: dict[str, tuple[int, int, float]] = {
    "chat": (1800, 450, 0.35),
    "summarize": (6000, 350, 0.2),
    "code": (3500, 900, 0.4),
    "extract": (2500, 200, 0.1),
    "classify": (700, 20, 0.05),
}
TASK_WEIGHT = {"chat": 40, "summarize": 20, "code": 20, "extract": 12, "classify": 8}
# model -> (provider, weight, base quality, error rate, base latency ms)
MODELS: dict[str, tuple[str, int, float, float, int]] = {
    "gpt-4o-mini": ("openai", 30, 0.74, 0.010, 700),
    "gpt-4.1": ("openai", 8, 0.86, 0.010, 1500),
    "o4-mini": ("openai", 6, 0.84, 0.015, 2500),
    "claude-sonnet-4-5": ("anthropic", 14, 0.90, 0.012, 1800),
    "claude-haiku-4-5": ("anthropic", 12, 0.80, 0.008, 800),
    "gemini/gemini-2.5-flash": ("gemini", 18, 0.79, 0.020, 900),
    "gemini/gemini-2.5-pro": ("gemini", 5, 0.88, 0.020, 2600),
    "mistral/mistral-small-latest": ("mistral", 5, 0.70, 0.015, 600),
    "acme-finetune-v2": ("custom", 2, 0.78, 0.010, 500),  # not in the price book: unpriced
}
REASONING_MODELS = {"o4-mini", "claude-sonnet-4-5", "gemini/gemini-2.5-pro"}
FALLBACK = {
    "claude-sonnet-4-5": "gpt-4.1",
    "gemini/gemini-2.5-flash": "gpt-4o-mini",
    "gpt-4o-mini": "claude-haiku-4-5",
    "gpt-4.1": "claude-sonnet-4-5",
}
DRIFT_MODEL = "gemini/gemini-2.5-flash"  # RelayCore over-charges this model from day 4 on
DRIFT_FACTOR = Decimal("1.08")
TOLERANCES = Tolerances()


@dataclass
class Faults:
    """Counts of every fault injected, per day (ISO date) and kind."""

    by_day: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, day: date, kind: str, n: int = 1) -> None:
        self.by_day.setdefault(day.isoformat(), Counter())[kind] += n

    def total(self, kind: str) -> int:
        return sum(c[kind] for c in self.by_day.values())

    def day(self, day: date) -> Counter[str]:
        return self.by_day.get(day.isoformat(), Counter())


@dataclass
class SimConfig:
    days: list[date]
    seed: int = 7
    requests_per_day: int = 2000
    duplicate_rate: float = 0.01
    missing_span_rate: float = 0.02
    token_mismatch_rate: float = 0.005
    model_mismatch_rate: float = 0.004
    orphan_span_rate: float = 0.003
    late_rate: float = 0.01
    malformed_per_day: int = 3


@dataclass
class SimData:
    relaycore: list[dict[str, Any]]  # clean records (one per request) in time order
    auterity: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]  # extra copies of relaycore records (same request_id)
    late: set[str]  # request_ids whose records arrive in a later file
    malformed: dict[str, list[str]]  # ISO day -> bad relaycore lines
    malformed_spans: dict[str, list[str]]
    faults: Faults
    config: SimConfig


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _users() -> list[tuple[str, str, str]]:
    return [
        (org, team, f"{org}-{team}-u{i}")
        for org, teams in ORGS.items()
        for team, n in teams.items()
        for i in range(1, n + 1)
    ]


def generate(cfg: SimConfig, book: PriceBook | None = None) -> SimData:
    """Simulate `cfg.days`; RelayCore's charge is the book's price (with drift on DRIFT_MODEL)."""
    book = book or PriceBook.build(load_default())
    rng = random.Random(cfg.seed)
    users = _users()
    user_w = [ORG_WEIGHT[o] for o, _, _ in users]
    tasks, task_w = list(TASKS), list(TASK_WEIGHT.values())
    models, model_w = list(MODELS), [m[1] for m in MODELS.values()]
    faults = Faults()
    rc: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    dups: list[dict[str, Any]] = []
    late: set[str] = set()
    malformed: dict[str, list[str]] = {}
    malformed_spans: dict[str, list[str]] = {}

    for day_index, day in enumerate(cfg.days):
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        weekday_factor = 0.55 if day.weekday() >= 5 else 1.0
        n = max(1, int(cfg.requests_per_day * weekday_factor * rng.uniform(0.9, 1.1)))
        offsets = sorted(rng.uniform(0, 86_399.0) for _ in range(n))
        for off in offsets:
            org, team, user = rng.choices(users, weights=user_w)[0]
            task = rng.choices(tasks, weights=task_w)[0]
            model = rng.choices(models, weights=model_w)[0]
            provider, _, quality, err_rate, base_lat = MODELS[model]
            ts = day_start + timedelta(seconds=off)
            mean_in, mean_out, cache_share = TASKS[task]
            inp = max(1, int(rng.lognormvariate(0, 0.5) * mean_in))
            cached = int(inp * cache_share * rng.random()) if rng.random() < 0.6 else 0
            creation = int((inp - cached) * 0.3) if provider == "anthropic" and rng.random() < 0.2 else 0
            status = "error" if rng.random() < err_rate else "success"
            out = 0 if status == "error" else max(1, int(rng.lognormvariate(0, 0.6) * mean_out))
            reasoning = int(out * rng.uniform(0.2, 0.6)) if model in REASONING_MODELS and out else 0
            tier = rng.choices(("standard", "batch", "flex", "priority"), weights=(90, 6, 2, 2))[0]
            fallback_from = None
            if model in FALLBACK.values() and rng.random() < 0.02:
                fallback_from = next(k for k, v in FALLBACK.items() if v == model)
            usage = TokenUsage(inp, out, cached, creation, reasoning)
            entry = book.lookup(model, ts)
            if entry is None:
                charged = Decimal(inp + out) * Decimal("0.000001")  # RelayCore's own guess
            else:
                charged = request_cost(entry.rates(tier, inp), usage)
                if model == DRIFT_MODEL and day_index >= 3:
                    charged = (charged * DRIFT_FACTOR).quantize(Decimal("0.0000000001"))
                    faults.add(day, "cost_drift")
            latency = int(base_lat * rng.lognormvariate(0, 0.35) + out * 4)
            request_id = f"req-{_uid(rng)}"
            rec = {
                "request_id": request_id,
                "timestamp": ts.isoformat().replace("+00:00", "Z"),
                "org_id": org,
                "team_id": team,
                "user_id": user,
                "task_type": task,
                "model_requested": fallback_from or model,
                "model": model,
                "provider": provider,
                "input_tokens": inp,
                "output_tokens": out,
                "cached_input_tokens": cached,
                "cache_creation_input_tokens": creation,
                "reasoning_tokens": reasoning,
                "service_tier": tier,
                "status": status,
                "latency_ms": latency,
                "cost_usd": f"{charged:f}",
                "steering_rule": rng.choice([None, "cheapest-ok", "latency-slo", f"{org}-default"]),
                "fallback_from": fallback_from,
            }
            rc.append(rec)
            faults.add(day, "requests")
            if entry is None:
                faults.add(day, "unpriced")
            if rng.random() < cfg.duplicate_rate:
                dups.append(dict(rec))
                faults.add(day, "duplicates")
            if rng.random() < cfg.late_rate:
                late.add(request_id)
                faults.add(day, "late")
            missing = rng.random() < cfg.missing_span_rate
            model_mm = token_mm = False
            if missing:
                faults.add(day, "missing_span")
            else:
                span = _span(rng, rec, quality, ts, latency)
                attrs = span["attributes"]
                r = rng.random()
                if r < cfg.token_mismatch_rate:
                    attrs["gen_ai.usage.input_tokens"] = inp + rng.randint(5, 500)
                    token_mm = True
                    faults.add(day, "token_mismatch")
                elif r < cfg.token_mismatch_rate + cfg.model_mismatch_rate:
                    attrs["gen_ai.response.model"] = FALLBACK.get(model, "gpt-4o-mini")
                    model_mm = True
                    faults.add(day, "model_mismatch")
                spans.append(span)
            # the category reconciliation must find, with the same precedence and default tolerances
            if entry is None:
                category = "unpriced"
            elif missing:
                category = "missing_in_auterity"
            elif model_mm:
                category = "model_mismatch"
            elif token_mm:
                category = "token_mismatch"
            elif TOLERANCES.exceeded(float(charged), float(request_cost(entry.rates(tier, inp), usage))):
                category = "cost_mismatch"
            else:
                category = "matched"
            faults.add(day, f"expect_{category}")
        n_orphans = sum(1 for _ in range(n) if rng.random() < cfg.orphan_span_rate)
        for _ in range(n_orphans):
            org, team, user = rng.choices(users, weights=user_w)[0]
            ts = day_start + timedelta(seconds=rng.uniform(0, 86_399.0))
            fake = {
                "request_id": f"req-{_uid(rng)}",
                "org_id": org,
                "team_id": team,
                "user_id": user,
                "task_type": "chat",
                "model": "gpt-4o-mini",
                "provider": "openai",
                "input_tokens": 100,
                "output_tokens": 10,
                "cached_input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "reasoning_tokens": 0,
                "status": "success",
            }
            spans.append(_span(rng, fake, 0.7, ts, 400))
            faults.add(day, "orphan_span")
            faults.add(day, "expect_missing_in_relaycore")
        malformed[day.isoformat()] = _malformed_relaycore(rng, day_start, cfg.malformed_per_day)
        malformed_spans[day.isoformat()] = _malformed_spans(rng, day_start, max(1, cfg.malformed_per_day // 2))
        faults.add(day, "malformed", len(malformed[day.isoformat()]))
        faults.add(day, "malformed_spans", len(malformed_spans[day.isoformat()]))
    spans.sort(key=lambda s: s["start_time"])
    return SimData(rc, spans, dups, late, malformed, malformed_spans, faults, cfg)


def _span(rng: random.Random, rec: dict[str, Any], quality: float, ts: datetime, latency: int) -> dict[str, Any]:
    end = ts + timedelta(milliseconds=latency)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": rec["provider"],
        "gen_ai.request.model": rec["model"],
        "gen_ai.response.model": rec["model"],
        "gen_ai.response.id": f"resp-{rng.getrandbits(48):012x}",
        "gen_ai.usage.input_tokens": rec["input_tokens"],
        "gen_ai.usage.output_tokens": rec["output_tokens"],
        "gen_ai.usage.cache_read.input_tokens": rec["cached_input_tokens"],
        "gen_ai.usage.cache_creation.input_tokens": rec["cache_creation_input_tokens"],
        "gen_ai.usage.reasoning.output_tokens": rec["reasoning_tokens"],
        "relaycore.request_id": rec["request_id"],
        "cams.org_id": rec["org_id"],
        "cams.team_id": rec["team_id"],
        "cams.user_id": rec["user_id"],
        "cams.task_type": rec["task_type"],
    }
    if rec["status"] == "error":
        attrs["error.type"] = rng.choice(["timeout", "rate_limited", "server_error"])
    elif rng.random() < 0.5:
        attrs["auterity.quality.score"] = round(min(1.0, max(0.0, rng.gauss(quality, 0.08))), 3)
    if rng.random() < 0.1:
        attrs["auterity.feedback"] = 1 if rng.random() < quality else -1
    return {
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "name": f"chat {rec['model']}",
        "start_time": ts.isoformat().replace("+00:00", "Z"),
        "end_time": end.isoformat().replace("+00:00", "Z"),
        "status": {"code": "ERROR" if rec["status"] == "error" else "OK"},
        "attributes": attrs,
    }


def _malformed_relaycore(rng: random.Random, day_start: datetime, n: int) -> list[str]:
    ts = (day_start + timedelta(hours=rng.randint(0, 23))).isoformat().replace("+00:00", "Z")
    kinds = [
        f'{{"request_id": "bad-{rng.getrandbits(32):08x}", "timestamp": "{ts}", "org_id": "acme", ',  # truncated
        f'{{"request_id": "bad-{rng.getrandbits(32):08x}", "timestamp": "{ts}", "org_id": "acme", "task_type": '
        f'"chat", "model": "gpt-4o-mini", "provider": "openai", "input_tokens": -5, "output_tokens": 3, '
        f'"status": "success", "cost_usd": "0.1"}}',
        f'{{"request_id": "bad-{rng.getrandbits(32):08x}", "timestamp": "{ts}", "org_id": "acme", "task_type": '
        f'"chat", "provider": "openai", "input_tokens": 5, "output_tokens": 3, "status": "success"}}',
        f'{{"request_id": "bad-{rng.getrandbits(32):08x}", "timestamp": "{ts}", "org_id": "acme", "task_type": '
        f'"chat", "model": "gpt-4o-mini", "provider": "openai", "input_tokens": 5, "output_tokens": 3, '
        f'"cached_input_tokens": 9, "status": "success"}}',
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def _malformed_spans(rng: random.Random, day_start: datetime, n: int) -> list[str]:
    ts = (day_start + timedelta(hours=rng.randint(0, 23))).isoformat().replace("+00:00", "Z")
    kinds = [
        f'{{"trace_id": "t", "span_id": "bad-{rng.getrandbits(32):08x}", "start_time": "{ts}", '
        f'"end_time": "{ts}", "attributes": {{"auterity.quality.score": 7}}}}',
        f'{{"trace_id": "t", "span_id": "bad-{rng.getrandbits(32):08x}", "start_time": "{ts}", "end_',
    ]
    return [kinds[i % len(kinds)] for i in range(n)]
