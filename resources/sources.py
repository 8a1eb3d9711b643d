"""RelayCore and Auterity as resources: read a window from drop files, the HTTP API or LiteLLM's database."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cams.config import SourceConfig
from cams.progress import DayProgress
from cams.sources.batch import Collector, IngestResult
from cams.sources.files import collect_files, list_drop_files
from cams.sources.gcpolicy import fewer_collections
from cams.sources.http_client import ApiSpec, fetch_window, has_records
from cams.sources.litellm_spendlogs import collect_spendlogs, has_rows


class UsageSource(SourceConfig):
    """One usage source (SPEC §2, §8) as cams.yaml describes it (`SourceConfig`, parsed once), plus how to
    read it. Secrets are read from the env var named by api_key_env, only when a read needs them."""

    @classmethod
    def of(cls, cfg: SourceConfig) -> UsageSource:
        return cls(**dataclasses.asdict(cfg))

    def api_spec(self) -> ApiSpec:
        return ApiSpec(
            self.name,
            self.base_url or "",
            self.api_key(),
            page_size=self.page_size,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
        )

    def collect(
        self,
        start: datetime,
        end: datetime,
        sink: Callable[[list[tuple[Any, ...]], set[str]], None] | None = None,
        progress: DayProgress | None = None,
    ) -> tuple[IngestResult, dict[str, Any]]:
        """Every record of [start, end), validated and deduplicated, plus how it was read.

        With a sink (`cams.sources.landing.Stage`), accepted rows go there in chunks as they are read,
        and `progress` hears which day the reading has reached.
        """
        with fewer_collections():
            return self._collect(Collector(self.name, start, end, sink, progress=progress), start, end)

    def _collect(self, collector: Collector, start: datetime, end: datetime) -> tuple[IngestResult, dict[str, Any]]:
        if self.mode == "files":
            files = list_drop_files(self.drop_dir or "")
            collect_files(collector, files)
            inbox = self._inbox(collector) if self.inbox_dir and self.inbox_dir != self.drop_dir else {}
            return collector.result, {"files": len(files), "drop_dir": self.drop_dir, **inbox}
        if self.mode == "litellm":
            rows = collect_spendlogs(collector, self.dsn(), self.default_org, self.default_task)
            return collector.result, {
                "litellm_spendlog_rows": rows,
                "table": "LiteLLM_SpendLogs",
                **self._inbox(collector),
            }
        stats = fetch_window(self.api_spec(), start, end, collector)
        return collector.result, {
            "pages": stats.pages,
            "retries": stats.retries,
            "waited_s": round(stats.waited_s, 2),
            "base_url": self.base_url,
            **self._inbox(collector),
        }

    def _inbox(self, collector: Collector) -> dict[str, Any]:
        """Records pushed to the service for this source (webhooks, OTLP exports), read after the API's:
        the same contract, and a record also served by the API counts once (a duplicate)."""
        files = list_drop_files(self.inbox_dir) if self.inbox_dir else []
        collect_files(collector, files)
        return {"inbox_files": len(files)} if files else {}

    def has_new_rows(self, start: datetime, end: datetime) -> bool:
        """Whether the source holds records in [start, end) (API or LiteLLM database)."""
        if self.mode == "litellm":
            return has_rows(self.dsn(), start, end)
        return has_records(self.api_spec(), start, end)
