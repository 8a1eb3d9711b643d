"""RelayCore and Auterity as resources: read a window from drop files, the HTTP API or LiteLLM's database
(`cams.sources.reading`)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from cams.config import SourceConfig
from cams.progress import DayProgress
from cams.sources import reading
from cams.sources.batch import IngestResult
from cams.sources.http_client import ApiSpec


class UsageSource(SourceConfig):
    """One usage source (SPEC §2, §8) as cams.yaml describes it (`SourceConfig`, parsed once), plus how to
    read it. Secrets are read from the env var named by api_key_env, only when a read needs them."""

    @classmethod
    def of(cls, cfg: SourceConfig) -> UsageSource:
        return cls(**dataclasses.asdict(cfg))

    def api_spec(self) -> ApiSpec:
        return reading.api_spec(self)

    def collect(
        self,
        start: datetime,
        end: datetime,
        sink: reading.Sink | None = None,
        progress: DayProgress | None = None,
    ) -> tuple[IngestResult, dict[str, Any]]:
        """Every record of [start, end), validated and deduplicated, plus how it was read
        (`cams.sources.reading.read_window`)."""
        return reading.read_window(self, start, end, sink, progress)

    def has_new_rows(self, start: datetime, end: datetime) -> bool:
        """Whether the source holds records in [start, end) (API or LiteLLM database)."""
        return reading.has_new_rows(self, start, end)
