"""The committed LiteLLM price snapshot: what it keeps, where it came from, how it is refreshed.

Kept: models whose mode is chat, responses or embedding, with their token prices and the
capability fields selection needs, and LiteLLM's `alias_of` names whose target is kept (under
`aliases`: LiteLLM prices an alias as its target, so does CAMS). The file records its source and
date under `_meta`. The committed file is the price book's first version; later versions live in
the warehouse (`cams.pricing.store`), never in the installed package.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

SNAPSHOT_FILE = "litellm_prices.json"
KEPT_MODES = ("chat", "responses", "embedding")
CAPABILITY_KEYS = (
    "litellm_provider",
    "mode",
    "max_input_tokens",
    "max_output_tokens",
    "max_tokens",
    "supports_vision",
    "supports_function_calling",
    "supports_tool_choice",
    "supports_reasoning",
    "supports_prompt_caching",
    "supports_response_schema",
    "deprecation_date",
)


def _is_price_key(key: str, value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and ("cost_per" in key or key.endswith("_token_cost") or "_token_cost_" in key)
    )


def slim(raw: dict[str, Any], source: str, version: str, as_of: str | None = None) -> dict[str, Any]:
    """Reduce a LiteLLM price JSON to what CAMS uses, with provenance."""
    models: dict[str, Any] = {}
    for name, entry in sorted(raw.items()):
        if name == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in KEPT_MODES:
            continue
        kept = {k: v for k, v in entry.items() if k in CAPABILITY_KEYS or _is_price_key(k, v)}
        for key in ("tiered_pricing", "off_peak_pricing"):
            if key in entry:
                kept["unsupported_" + key] = True
        models[name] = kept
    aliases = {
        name: entry["alias_of"]
        for name, entry in sorted(raw.items())
        if isinstance(entry, dict) and isinstance(entry.get("alias_of"), str) and entry["alias_of"] in models
    }
    return {
        "_meta": {
            "source": source,
            "version": version,
            "date": as_of or datetime.now(UTC).date().isoformat(),
            "modes": list(KEPT_MODES),
            "models": len(models),
            "aliases": len(aliases),
        },
        "models": models,
        "aliases": aliases,
    }


def load_default() -> dict[str, Any]:
    """The snapshot shipped in the package."""
    return json.loads(resources.files("cams.data").joinpath(SNAPSHOT_FILE).read_text())


def load(path: str | Path | None) -> dict[str, Any]:
    """A snapshot from `path`, or the shipped one when path is None or 'default'."""
    if path in (None, "", "default"):
        return load_default()
    data = json.loads(Path(path).read_text())
    return data if "_meta" in data else slim(data, source=str(path), version="file")
