"""Paginated, retrying clients for the RelayCore and Auterity HTTP APIs (SPEC §2.1, §2.2).

Retries 429 (honouring Retry-After), 5xx, timeouts and dropped connections with capped
exponential backoff; fails fast and clearly on auth and other 4xx answers. Pages may repeat
records: the collector counts repeats as duplicates, so every record lands once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime

import httpx

from cams.sources.batch import Collector


class SourceApiError(RuntimeError):
    """The API could not be read after retries, or refused us."""


@dataclass(frozen=True)
class ApiSpec:
    kind: str  # relaycore | auterity
    base_url: str
    api_key: str | None
    page_size: int = 500
    timeout_s: float = 10.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0

    @property
    def path(self) -> str:
        return "/v1/usage" if self.kind == "relaycore" else "/api/v1/spans"

    def headers(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        if self.kind == "relaycore":
            return {"Authorization": f"Bearer {self.api_key}"}
        return {"X-API-Key": self.api_key}

    def params(self, start: datetime, end: datetime, token: str | None) -> dict[str, str]:
        p = {"start": start.isoformat().replace("+00:00", "Z"), "end": end.isoformat().replace("+00:00", "Z")}
        if self.kind == "relaycore":
            p["limit"] = str(self.page_size)
            if token:
                p["cursor"] = token
        else:
            p["page_size"] = str(self.page_size)
            if token:
                p["page_token"] = token
        return p


@dataclass
class FetchStats:
    pages: int = 0
    retries: int = 0
    waited_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP-date), or None when absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def fetch_window(
    spec: ApiSpec,
    start: datetime,
    end: datetime,
    collector: Collector,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchStats:
    """Read every page of [start, end) into the collector."""
    stats = FetchStats()
    own = client is None
    client = client or httpx.Client(timeout=spec.timeout_s)
    data_key, next_key = ("data", "next_cursor") if spec.kind == "relaycore" else ("spans", "next_page_token")
    token: str | None = None
    try:
        while True:
            body = _get_page(spec, client, spec.params(start, end, token), stats, sleep)
            stats.pages += 1
            items = body.get(data_key)
            if not isinstance(items, list):
                raise SourceApiError(f"{spec.kind}: page {stats.pages} has no '{data_key}' list")
            for i, obj in enumerate(items):
                collector.add_record(f"page{stats.pages}:{i + 1}", obj, json.dumps(obj, default=str))
            token = body.get(next_key)
            if not token:
                return stats
    finally:
        if own:
            client.close()


def _get_page(
    spec: ApiSpec, client: httpx.Client, params: dict[str, str], stats: FetchStats, sleep: Callable[[float], None]
) -> dict:
    url = spec.base_url.rstrip("/") + spec.path
    for attempt in range(spec.max_retries + 1):
        delay = min(spec.backoff_cap_s, spec.backoff_base_s * (2**attempt))
        try:
            resp = client.get(url, params=params, headers=spec.headers(), timeout=spec.timeout_s)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            reason = f"{type(exc).__name__}"
        else:
            if resp.status_code == 200:
                try:
                    body = json.loads(resp.content, parse_float=Decimal)
                except (ValueError, RecursionError) as exc:
                    raise SourceApiError(f"{spec.kind}: page is not JSON: {str(exc)[:200]}") from None
                if not isinstance(body, dict):
                    raise SourceApiError(f"{spec.kind}: page is not a JSON object")
                return body
            if resp.status_code in (401, 403):
                raise SourceApiError(f"{spec.kind} refused the API key ({resp.status_code}); check api_key_env")
            if resp.status_code != 429 and resp.status_code < 500:
                raise SourceApiError(f"{spec.kind} answered {resp.status_code}: {resp.text[:200]}")
            reason = f"HTTP {resp.status_code}"
            if resp.status_code == 429:
                hinted = retry_after_seconds(resp.headers.get("Retry-After"))
                if hinted is not None:
                    delay = min(60.0, hinted)
        if attempt == spec.max_retries:
            raise SourceApiError(f"{spec.kind}: giving up after {attempt + 1} attempts ({reason})")
        stats.retries += 1
        stats.errors.append(reason)
        stats.waited_s += delay
        sleep(delay)
    raise AssertionError("unreachable")


def has_records(
    spec: ApiSpec,
    start: datetime,
    end: datetime,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Whether the API holds any record in [start, end): one page of size 1 (the poll sensor's probe)."""
    probe = ApiSpec(
        spec.kind,
        spec.base_url,
        spec.api_key,
        page_size=1,
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        backoff_base_s=spec.backoff_base_s,
    )
    own = client is None
    client = client or httpx.Client(timeout=spec.timeout_s)
    try:
        body = _get_page(probe, client, probe.params(start, end, None), FetchStats(), sleep)
    finally:
        if own:
            client.close()
    items = body.get("data" if spec.kind == "relaycore" else "spans")
    return bool(items)
