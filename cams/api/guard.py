"""The API's front door: what no route should have to think about (SPEC §7 "no input yields a 500").

A pure ASGI middleware, so the hot path pays one bytes search, not a framework layer:
* a body over the configured limit answers 413 as soon as its `Content-Length` (or the bytes read so
  far) says so: it is never read whole;
* a NUL, or a percent-escape that is not UTF-8, in the path or query answers 400: PostgreSQL cannot
  compare or store such text, so it would otherwise surface as a 500;
* a JSON body carrying `\\u0000` or a lone UTF-16 surrogate escape answers 422, except on the webhook
  routes, which store the body as it came (its records are quarantined line by line at landing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
_NUL_ESCAPE = re.compile(rb"%00|\x00")
# \u0000, a high surrogate escape not followed by a low one, or a low one not preceded by a high one
_BAD_JSON_TEXT = re.compile(
    rb"\\u0000"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
RAW_BODY_PREFIXES = ("/api/v1/webhooks/", "/v1/traces")


class InputGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        query: bytes = scope.get("query_string") or b""
        if _NUL_ESCAPE.search(raw_path) or _NUL_ESCAPE.search(query) or not _utf8(raw_path) or not _utf8(query):
            await _reply(send, 400, "invalid_request", "paths and parameters must be UTF-8 text without NUL")
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await _reply(send, 413, "too_large", f"a request body is at most {self.max_body_bytes} bytes")
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _reply(send, 413, "too_large", f"a request body is at most {self.max_body_bytes} bytes")
                return
            body.append(chunk)
            more = message.get("more_body", False)
        whole = b"".join(body)
        if not scope["path"].startswith(RAW_BODY_PREFIXES) and b"\\u" in whole and _BAD_JSON_TEXT.search(whole):
            await _reply(
                send, 422, "invalid_text", "text with NUL characters or lone UTF-16 surrogates is not accepted"
            )
            return
        await self.app(scope, _replay([{"type": "http.request", "body": whole, "more_body": False}], receive), send)


def _utf8(raw: bytes) -> bool:
    if b"%" not in raw and raw.isascii():
        return True
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(messages: list[Message], then: Receive) -> Receive:
    """The messages already read, then the connection's own (which waits for a real disconnect)."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        return await then()

    return receive


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
