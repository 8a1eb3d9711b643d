"""The price book source as a resource: packaged LiteLLM snapshot plus cams.yaml's pricing section."""

import json
from typing import Any

import dagster as dg

from cams import config as cams_config
from cams.pricing.book import PriceBook
from cams.pricing.quote import load_book


class PricingSourceResource(dg.ConfigurableResource):
    """cams.yaml `pricing` (snapshot, overrides, discounts) as JSON, so any deployment can set it."""

    pricing_json: str = "{}"

    @classmethod
    def from_config(cls, cfg: cams_config.CamsConfig) -> "PricingSourceResource":
        return cls(pricing_json=json.dumps(cfg.pricing, default=str, sort_keys=True))

    def build(self, api_overrides: list[dict[str, Any]] | None = None) -> PriceBook:
        """The book from the snapshot and cams.yaml, then the Models API's overrides on top."""
        pricing: dict[str, Any] = json.loads(self.pricing_json)
        return load_book(cams_config.parse({"pricing": pricing}), api_overrides or [])
