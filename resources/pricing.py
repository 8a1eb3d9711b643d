"""The price book source as a resource: packaged LiteLLM snapshot plus cams.yaml's pricing section."""

import json
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from cams import config as cams_config
from cams.pricing import store as pricebook_store
from cams.pricing.book import PriceBook


class PricingSourceResource(dg.ConfigurableResource):
    """cams.yaml `pricing` (snapshot, overrides, discounts) as JSON, so any deployment can set it."""

    pricing_json: str = "{}"

    @classmethod
    def from_config(cls, cfg: cams_config.CamsConfig) -> "PricingSourceResource":
        return cls(pricing_json=json.dumps(cfg.pricing, default=str, sort_keys=True))

    def build(self, engine: Engine) -> PriceBook:
        """The book from the warehouse's snapshot versions and cams.yaml, then the Models API's prices."""
        pricing: dict[str, Any] = json.loads(self.pricing_json)
        return pricebook_store.current_book(engine, cams_config.parse({"pricing": pricing}))
