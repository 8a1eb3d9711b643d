"""Dagster resources: the warehouse, the usage sources and the pricing source, built from cams.yaml."""

from __future__ import annotations

from typing import Any

from cams import config as cams_config
from resources.pricing import PricingSourceResource
from resources.sources import UsageSourceResource
from resources.warehouse import WarehouseResource


def build_resources(cfg: cams_config.CamsConfig, database_url: str | None = None) -> dict[str, Any]:
    """The one place resources are built for a deployment."""
    return {
        "warehouse": WarehouseResource(database_url=database_url or cams_config.database_url()),
        "relaycore": UsageSourceResource.from_config(cfg.sources["relaycore"]),
        "auterity": UsageSourceResource.from_config(cfg.sources["auterity"]),
        "pricing": PricingSourceResource.from_config(cfg),
    }
