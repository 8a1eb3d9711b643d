"""Dated versions of the LiteLLM price snapshot (SPEC §3 "Versions").

The committed snapshot is the first version, in force from the beginning of time; each refresh or
price-update adds a version with its own effective time. A model's price changes only where a
version's prices for it differ from the version before, so re-running a day before a version's
start prices every request exactly as it was priced before that version existed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def content_digest(snapshot: Mapping[str, Any]) -> str:
    """Hash of what prices requests (models and aliases), not of the provenance in `_meta`."""
    blob = json.dumps({"models": snapshot["models"], "aliases": snapshot.get("aliases") or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class PriceVersion:
    """One snapshot and the instant its prices take effect."""

    effective_from: datetime
    snapshot: Mapping[str, Any]

    @cached_property
    def digest(self) -> str:
        return content_digest(self.snapshot)

    @property
    def version_id(self) -> str:
        """What a cost row's price says it came from: `litellm==1.110.2@2026-12-01T00:00:00Z#1a2b3c4d`."""
        label = str(self.snapshot.get("_meta", {}).get("version") or "snapshot")[:80]
        when = "origin" if self.effective_from <= MIN_TIME else f"{self.effective_from:%Y-%m-%dT%H:%M:%SZ}"
        return f"{label}@{when}#{self.digest[:8]}"

    def aliased_models(self) -> dict[str, Mapping[str, Any]]:
        """The version's models with each `alias_of` name priced as its target (LiteLLM's rule)."""
        models = dict(self.snapshot["models"])
        for alias, target in (self.snapshot.get("aliases") or {}).items():
            if target in models and alias not in models:
                models[alias] = {**models[target], "alias_of": target}
        return models
