"""Shared fixtures: loopback-only network, a warehouse per backend, a Dagster instance per backend."""

from __future__ import annotations

import os

from tests import netguard

# LiteLLM (the parity reference) must read its bundled price map, never fetch one.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

netguard.install()
