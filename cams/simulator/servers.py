"""Fake RelayCore and Auterity HTTP APIs on loopback (SPEC §2.1, §2.2) with injectable faults.

Faults are deterministic by request number: 429 with Retry-After, 5xx, slow answers, and pages
that repeat the tail of the previous page. The servers never bind anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from cams.sources.timeutil import parse_rfc3339


@dataclass
class FaultPlan:
    """Which request numbers (1-based, per server) fail and how."""

    too_many_every: int = 0  # every Nth request answers 429
    retry_after_s: int = 1
    server_error_every: int = 0  # every Nth request answers 503
    slow_every: int = 0  # every Nth request sleeps slow_s before answering
    slow_s: float = 0.0
    overlap: int = 0  # each page after the first repeats this many records of the previous page
    fail_requests: set[int] = field(default_factory=set)  # these request numbers answer 500


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_cursor(token: str) -> int:
    raw = base64.urlsafe_b64decode(token.encode()).decode()
    if not raw.startswith("o:"):
        raise ValueError("bad cursor")
    return int(raw[2:])


class _Api:
    """One fake API: its records, auth, paging and fault plan."""

    def __init__(self, kind: str, records: list[dict[str, Any]], key: str, faults: FaultPlan):
        self.kind = kind
        self.time_field = "timestamp" if kind == "relaycore" else "start_time"
        self.records = sorted(records, key=lambda r: str(r.get(self.time_field, "")))
        self._times = [self._time(r) for r in self.records]
        self.key = key
        self.faults = faults
        self.requests = 0
        self.lock = threading.Lock()
        self.log: list[tuple[int, int]] = []  # (request number, status)

    def _time(self, rec: dict[str, Any]) -> datetime | None:
        try:
            return parse_rfc3339(rec.get(self.time_field), self.time_field)
        except ValueError:
            return None

    def add(self, records: list[dict[str, Any]]) -> None:
        with self.lock:
            self.records = sorted([*self.records, *records], key=lambda r: str(r.get(self.time_field, "")))
            self._times = [self._time(r) for r in self.records]

    def authorized(self, headers: Any) -> bool:
        if self.kind == "relaycore":
            return headers.get("Authorization") == f"Bearer {self.key}"
        return headers.get("X-API-Key") == self.key

    def page(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        names = (
            ("cursor", "limit", "data", "next_cursor")
            if self.kind == "relaycore"
            else ("page_token", "page_size", "spans", "next_page_token")
        )
        token_name, size_name, data_name, next_name = names
        try:
            start = parse_rfc3339(query["start"][0], "start")
            end = parse_rfc3339(query["end"][0], "end")
            size = int(query.get(size_name, ["100"])[0])
            offset = _decode_cursor(query[token_name][0]) if query.get(token_name) else 0
            if not 1 <= size <= 5000 or offset < 0:
                raise ValueError
        except (KeyError, ValueError, TypeError):
            return 400, {"error": {"code": "bad_request", "message": "start, end (RFC 3339) required"}}, {}
        with self.lock:
            window = [r for r, t in zip(self.records, self._times, strict=True) if t is not None and start <= t < end]
        begin = max(0, offset - self.faults.overlap) if offset else 0
        chunk = window[begin : offset + size]
        nxt = offset + size
        body = {data_name: chunk, next_name: _encode_cursor(nxt) if nxt < len(window) else None}
        return 200, body, {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): that is the fault being tested

    def do_GET(self) -> None:
        api = self.server.api
        url = urlparse(self.path)
        if url.path != self.server.path:
            self._send(404, {"error": {"code": "not_found", "message": url.path}})
            return
        with api.lock:
            api.requests += 1
            n = api.requests
        f = api.faults
        status: int
        if not api.authorized(self.headers):
            status, body, headers = 401, {"error": {"code": "unauthorized", "message": "bad credentials"}}, {}
        elif n in f.fail_requests:
            status, body, headers = 500, {"error": {"code": "internal", "message": "injected"}}, {}
        elif f.too_many_every and n % f.too_many_every == 0:
            status, body = 429, {"error": {"code": "rate_limited", "message": "slow down"}}
            headers = {"Retry-After": str(f.retry_after_s)}
        elif f.server_error_every and n % f.server_error_every == 0:
            status, body, headers = 503, {"error": {"code": "unavailable", "message": "injected"}}, {}
        else:
            if f.slow_every and n % f.slow_every == 0:
                time.sleep(f.slow_s)
            status, body, headers = api.page(parse_qs(url.query))
        api.log.append((n, status))
        self._send(status, body, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, api: _Api, path: str):
        self.api = api
        self.path = path
        super().__init__(("127.0.0.1", port), _Handler)


class FakeApi:
    """A running fake API; use as a context manager or call stop()."""

    def __init__(
        self,
        kind: str,
        records: list[dict[str, Any]],
        key: str = "test-key",
        faults: FaultPlan | None = None,
        port: int = 0,
    ):
        path = "/v1/usage" if kind == "relaycore" else "/api/v1/spans"
        self.api = _Api(kind, records, key, faults or FaultPlan())
        self._server = _Server(port, self.api, path)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name=f"fake-{kind}")
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> int:
        return self.api.requests

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(servers: list[FakeApi], on_ready: Callable[[], None] | None = None) -> None:
    """Block until interrupted (the `cams simulate` foreground)."""
    if on_ready:
        on_ready()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.stop()
