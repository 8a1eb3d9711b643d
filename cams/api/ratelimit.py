"""Per-key request limits that cost the request path a dictionary update, not a network round trip.

Each process counts what it admits in the current window and, every `sync_s`, adds those counts to
shared counters in Redis (`INCRBY` on `cams:rl:<key id>:<window>`, pipelined) and reads back the
fleet's totals of every limited key it served this window; a request is refused once the fleet's
last known total plus this process's own new admissions reach the limit. Across N processes a key
can overshoot by at most what the others admit in one `sync_s` (50 ms). Without `redis_url` (or
while Redis is unreachable) each process counts alone: the limit holds per process, and `/readyz`
says so.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from cams.config import RateLimits

log = logging.getLogger("cams.api")


class Limiter:
    def __init__(self, settings: RateLimits, sync_s: float = 0.05) -> None:
        self.settings = settings
        self.sync_s = sync_s
        self._window = -1
        self._local: dict[str, int] = {}  # admitted here, not yet added to the shared counters
        self._inflight: dict[str, int] = {}  # being added right now
        self._shared: dict[str, int] = {}  # the fleet's totals at the last sync (this process's included)
        self._seen: set[str] = set()  # limited keys asked for this window: their totals are read at each sync
        self._redis: Any = None
        self._limits: dict[str, int] = {}
        self.shared_ok = False
        if settings.redis_url:
            import redis

            self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    @property
    def scope(self) -> str:
        """What the limits hold across: `none`, `per process`, or `shared (redis)`."""
        if not self.settings.active:
            return "none"
        return "shared (redis)" if self._redis is not None and self.shared_ok else "per process"

    def retry_after(self, key_id: str) -> float | None:
        """None when the request may go ahead (and counts it); else seconds until the window ends."""
        limit = self._limits.get(key_id)
        if limit is None:
            limit = self._limits[key_id] = self.settings.limit(key_id)
        if not limit:
            return None
        now = time.time()
        window = int(now // self.settings.window_s)
        if window != self._window:
            self._window, self._local, self._inflight, self._shared, self._seen = window, {}, {}, {}, set()
        self._seen.add(key_id)
        local = self._local
        if self._shared.get(key_id, 0) + self._inflight.get(key_id, 0) + local.get(key_id, 0) >= limit:
            return (window + 1) * self.settings.window_s - now
        local[key_id] = local.get(key_id, 0) + 1
        return None

    def sync(self) -> None:
        """Add this process's admissions to the shared counters and read the fleet's totals back."""
        window = self._window
        pending, self._local = self._local, {}
        if not pending and (self._redis is None or not self._seen):
            return
        self._inflight = pending
        try:
            totals = self._add(window, pending, set(self._seen) - set(pending))
        finally:
            self._inflight = {}
        if window == self._window:  # the window did not roll while the counts were on their way
            self._shared.update(totals)

    def _add(self, window: int, pending: dict[str, int], others: set[str]) -> dict[str, int]:
        """The fleet's totals of the pending keys (after adding them) and of the other keys seen."""
        if self._redis is None:
            return {k: self._shared.get(k, 0) + n for k, n in pending.items()}
        try:
            pipe = self._redis.pipeline(transaction=False)
            ttl = math.ceil(self.settings.window_s * 2) + 1
            for key_id, n in pending.items():
                name = f"cams:rl:{key_id}:{window}"
                pipe.incrby(name, n)
                pipe.expire(name, ttl)
            read = sorted(others)
            for key_id in read:
                pipe.get(f"cams:rl:{key_id}:{window}")
            results = pipe.execute()
            self.shared_ok = True
            totals = {k: int(results[2 * i]) for i, k in enumerate(pending)}
            base = 2 * len(pending)
            totals.update({k: int(results[base + i] or 0) for i, k in enumerate(read)})
            return totals
        except Exception as exc:  # Redis away: count alone until it is back, never fail a request
            if self.shared_ok:
                log.warning("rate limits: Redis unreachable, limits hold per process until it is back: %s", exc)
            self.shared_ok = False
            return {k: self._shared.get(k, 0) + n for k, n in pending.items()}

    def start(self, stop: threading.Event) -> threading.Thread | None:
        if not self.settings.active:
            return None
        if self._redis is not None:
            try:
                self._redis.ping()
                self.shared_ok = True
            except Exception as exc:
                log.warning(
                    "rate limits: Redis at %s unreachable, limits hold per process: %s", self.settings.redis_url, exc
                )
        else:
            log.warning("rate limits: no api.rate_limits.redis_url, so limits hold per process, not across workers")

        def loop() -> None:
            while not stop.wait(self.sync_s):
                try:
                    self.sync()
                except Exception as exc:
                    log.warning("rate limit sync failed: %s", exc)

        th = threading.Thread(target=loop, name="cams-rate-limits", daemon=True)
        th.start()
        return th
