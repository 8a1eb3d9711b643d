"""Reading one usage source's window (SPEC §2, §8): drop files, the HTTP API or LiteLLM's database, then
the records pushed to the service for it. Plain Python, so a landing can run in the run's process (the
`UsageSource` resource) or in a process of its own (`cams.sources.landing_process`) the same way."""

from __future__ import annotations

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

Sink = Callable[[list[tuple[Any, ...]], set[str]], None]


def api_spec(cfg: SourceConfig) -> ApiSpec:
    return ApiSpec(
        cfg.name,
        cfg.base_url or "",
        cfg.api_key(),
        page_size=cfg.page_size,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
    )


def read_window(
    cfg: SourceConfig,
    start: datetime,
    end: datetime,
    sink: Sink | None = None,
    progress: DayProgress | None = None,
) -> tuple[IngestResult, dict[str, Any]]:
    """Every record of [start, end), validated and deduplicated, plus how it was read.

    With a sink (`cams.sources.landing.Stage`), accepted rows go there in chunks as they are read,
    and `progress` hears which day the reading has reached.
    """
    with fewer_collections():
        return _read(cfg, Collector(cfg.name, start, end, sink, progress=progress), start, end)


def _read(
    cfg: SourceConfig, collector: Collector, start: datetime, end: datetime
) -> tuple[IngestResult, dict[str, Any]]:
    if cfg.mode == "files":
        files = list_drop_files(cfg.drop_dir or "")
        collect_files(collector, files)
        inbox = _inbox(cfg, collector) if cfg.inbox_dir and cfg.inbox_dir != cfg.drop_dir else {}
        return collector.result, {"files": len(files), "drop_dir": cfg.drop_dir, **inbox}
    if cfg.mode == "litellm":
        rows = collect_spendlogs(collector, cfg.dsn(), cfg.default_org, cfg.default_task)
        return collector.result, {
            "litellm_spendlog_rows": rows,
            "table": "LiteLLM_SpendLogs",
            **_inbox(cfg, collector),
        }
    stats = fetch_window(api_spec(cfg), start, end, collector)
    return collector.result, {
        "pages": stats.pages,
        "retries": stats.retries,
        "waited_s": round(stats.waited_s, 2),
        "base_url": cfg.base_url,
        **_inbox(cfg, collector),
    }


def _inbox(cfg: SourceConfig, collector: Collector) -> dict[str, Any]:
    """Records pushed to the service for this source (webhooks, OTLP exports), read after the API's:
    the same contract, and a record also served by the API counts once (a duplicate)."""
    files = list_drop_files(cfg.inbox_dir) if cfg.inbox_dir else []
    collect_files(collector, files)
    return {"inbox_files": len(files)} if files else {}


def has_new_rows(cfg: SourceConfig, start: datetime, end: datetime) -> bool:
    """Whether the source holds records in [start, end) (API or LiteLLM database)."""
    if cfg.mode == "litellm":
        return has_rows(cfg.dsn(), start, end)
    return has_records(api_spec(cfg), start, end)
