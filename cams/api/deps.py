"""What every route depends on (FastAPI `Depends`): the service behind the app, the warehouse, the
caller's API key with a scope, and org scoping. Routers reach the service through the request, so a
router module holds routes only and no route needs a callback handed in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Header, Request
from sqlalchemy import Engine

from cams.api.fast_select import rate_limited
from cams.api.keys import ApiKey, digest


class ApiError(Exception):
    """An error answered in the service's shape: `{"error": {"code", "message", "detail"}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail or {}
        self.headers = headers


def service(request: Request) -> Any:
    """The app's `Service` (cams.api.app): the table, keys, limiter and book the refresher swaps."""
    return request.app.state.service


def engine(request: Request) -> Engine:
    return request.app.state.service.engine


def auth(scope: str) -> Callable[..., ApiKey]:
    """A dependency: the caller's key, which must hold `scope` and be within its rate limit."""

    def check(request: Request, authorization: str | None = Header(default=None)) -> ApiKey:
        svc = request.app.state.service
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <api key>")
        key = svc.keys.get(digest(authorization[7:].strip()))
        if key is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        if not key.allows(scope):
            raise ApiError(403, "forbidden", f"this key lacks the {scope} scope")
        wait = svc.limiter.retry_after(key.id)
        if wait is not None:
            status, content, headers = rate_limited(svc.limiter, key.id, wait)
            raise ApiError(status, content["error"]["code"], content["error"]["message"], headers=headers)
        return key

    return check


def same_org(key: ApiKey, org_id: str | None) -> None:
    """An org-bound key acts only on its own org."""
    if key.org_id is not None and org_id != key.org_id:
        raise ApiError(403, "forbidden", "this key is bound to another org")


def org_filter(key: ApiKey, org: str | None) -> str | None:
    """The org a read is scoped to: the key's own when it is bound (asking for another is 403)."""
    if key.org_id is not None:
        if org not in (None, key.org_id):
            raise ApiError(403, "forbidden", "this key is bound to another org")
        return key.org_id
    return org
