"""The price book source as a resource: the packaged LiteLLM snapshot plus cams.yaml's `pricing` section."""

from dataclasses import dataclass

from sqlalchemy import Engine

from cams.config import PricingConfig
from cams.pricing import store as pricebook_store
from cams.pricing.book import PriceBook


@dataclass(frozen=True)
class PricingSource:
    """cams.yaml `pricing` as parsed (snapshot, overrides, discounts): config as code, read once."""

    pricing: PricingConfig

    def build(self, engine: Engine) -> PriceBook:
        """The book from the warehouse's snapshot versions and cams.yaml, then the Models API's prices."""
        return pricebook_store.current_book(engine, self.pricing)
