"""The §2.3 signature scheme: `X-CAMS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-CAMS-Signature"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """Why a signature was rejected."""


def sign(secret: str, body: bytes, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str | None, now: float | None = None) -> None:
    """Raise SignatureError unless `header` signs `body` within ±300 s of now."""
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    if len(header) > 1000:
        raise SignatureError(f"malformed {HEADER} header")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise SignatureError(f"malformed {HEADER} header") from None
    if abs((time.time() if now is None else now) - t) > TOLERANCE_S:
        raise SignatureError("signature timestamp is more than 300 s from now")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    # bytes, not str: compare_digest raises on non-ASCII text, and a header is whatever a client sent
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape")):
        raise SignatureError("signature does not match")
