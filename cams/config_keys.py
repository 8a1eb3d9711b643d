"""Every key cams.yaml may hold, per section: an unknown key is an error with its path and a guess.

A typo must not pass silently (a top-level `budget:` used to leave no budgets and exit 0).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from cams.pricing.snapshot import CAPABILITY_KEYS
from cams.selection.preferences import RULES as PREFERENCE_RULES

Leaf = None
ANY_KEYS = "any"  # a mapping of user-chosen names (priors per model, tiers)


# the price keys CAMS bills with (pricing/rates.py): a base rate, an above-threshold tier, a service tier
PRICE_KEY = re.compile(
    r"(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost"
    r"|output_cost_per_reasoning_token)(_above_\d+k?_tokens)?(_batches|_flex|_priority)?"
)


def _price_or_capability(key: str) -> bool:
    return key in CAPABILITY_KEYS or PRICE_KEY.fullmatch(key) is not None


SOURCE = {
    k: Leaf
    for k in (
        "mode",
        "drop_dir",
        "base_url",
        "api_key_env",
        "page_size",
        "timeout_s",
        "max_retries",
        "poll_lag_s",
        "dsn_env",
        "default_org",
        "default_task",
        "inbox_dir",
    )
}
THRESHOLD = dict.fromkeys(("level", "percent", "basis", "action"), Leaf)
CHANNEL = dict.fromkeys(("type", "url", "secret_env", "to"), Leaf)
BUDGET = {
    **dict.fromkeys(("id", "name", "scope", "scope_id", "org_id", "period", "amount_usd", "timezone"), Leaf),
    "thresholds": [THRESHOLD],
    "channels": [CHANNEL],
}
OVERRIDE: tuple[dict[str, Any], Callable[[str], bool]] = (
    dict.fromkeys(("model", "provider", "mode", "valid_from"), Leaf),
    _price_or_capability,
)
# names a misspelt override key is compared with, beside the fixed ones
OVERRIDE_HINTS = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
    *CAPABILITY_KEYS,
]
DISCOUNT = dict.fromkeys(("percent", "provider", "model", "valid_from", "valid_to"), Leaf)
SCHEMA: dict[str, Any] = {
    "sources": {"relaycore": SOURCE, "auterity": SOURCE},
    "partitions": {"start_date": Leaf},
    "budgets": [BUDGET],
    "pricing": {"snapshot": Leaf, "overrides": [OVERRIDE], "discounts": [DISCOUNT]},
    "selection": {
        "candidates": Leaf,
        "task_types": Leaf,
        "tiers": ANY_KEYS,
        "success_floor": Leaf,
        "default_prior": Leaf,
        "priors": ANY_KEYS,
        "shrinkage": Leaf,
    },
    "alerts": {
        "max_attempts": Leaf,
        "backoff_s": Leaf,
        "timeout_s": Leaf,
        "sensor_interval_s": Leaf,
        "allowed_hosts": Leaf,
        "secret_envs": Leaf,
        "smtp": dict.fromkeys(("host", "port", "starttls", "from", "username_env", "password_env"), Leaf),
    },
    "api": {"rate_limits": {"per_second": Leaf, "keys": ANY_KEYS, "window_s": Leaf, "redis_url": Leaf}},
    "preferences": [dict.fromkeys(("org_id", "team_id", *PREFERENCE_RULES), Leaf)],
    "retention": {"days": Leaf},
    "execution": {"executor": Leaf, "max_concurrent": Leaf, "celery": {"broker": Leaf, "backend": Leaf}},
    "reconciliation": dict.fromkeys(
        ("abs_tolerance_usd", "rel_tolerance", "trailing_days", "at_risk_warn_share"), Leaf
    ),
}


def check_keys(node: Any, schema: Any = SCHEMA, path: str = "cams.yaml") -> list[str]:
    """Every unknown key under `node`, as `path.key: unknown key (did you mean X?)`."""
    problems: list[str] = []
    if schema is Leaf or schema == ANY_KEYS:
        return problems
    if isinstance(schema, list):
        if isinstance(node, list):
            for i, item in enumerate(node):
                problems += check_keys(item, schema[0], f"{path}[{i}]")
        return problems
    extra: Callable[[str], bool] = lambda _k: False  # noqa: E731
    if isinstance(schema, tuple):
        schema, extra = schema
    if not isinstance(node, Mapping):
        return problems  # the section's own parser names a wrong type
    for key, value in node.items():
        name = str(key)
        if name in schema:
            problems += check_keys(value, schema[name], f"{path}.{name}")
        elif not extra(name):
            hints = [*schema, *(OVERRIDE_HINTS if extra is _price_or_capability else [])]
            guess = difflib.get_close_matches(name, hints, n=1, cutoff=0.6)
            hint = f" (did you mean {guess[0]!r}?)" if guess else f" (known: {', '.join(sorted(schema))})"
            problems.append(f"{path}.{name}: unknown key{hint}")
    return problems
