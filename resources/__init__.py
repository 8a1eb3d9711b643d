"""Dagster resources: the warehouse, the usage sources and the pricing source, built from cams.yaml."""

from __future__ import annotations

from typing import Any

from cams import config as cams_config
from resources.pricing import PricingSource
from resources.sources import UsageSource
from resources.warehouse import WarehouseResource


def build_resources(cfg: cams_config.CamsConfig, database_url: str | None = None) -> dict[str, Any]:
    """The one place resources are built for a deployment."""
    return {
        "warehouse": WarehouseResource.from_env(database_url),
        "relaycore": UsageSource.of(cfg.sources["relaycore"]),
        "auterity": UsageSource.of(cfg.sources["auterity"]),
        "pricing": PricingSource(cfg.pricing),
    }
