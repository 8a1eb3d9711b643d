"""The price book source as a resource: packaged LiteLLM snapshot plus cams.yaml overrides."""

from __future__ import annotations

import dagster as dg

from cams import config as cams_config
from cams.pricing.book import PriceBook
from cams.pricing.quote import load_book


class PricingSourceResource(dg.ConfigurableResource):
    """Where prices come from: `config_path` (cams.yaml; empty means defaults only)."""

    config_path: str = ""

    def build(self) -> PriceBook:
        cfg = cams_config.load(self.config_path) if self.config_path else cams_config.parse({})
        return load_book(cfg)
