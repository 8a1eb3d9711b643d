"""API keys: stored as SHA-256 hashes, with scopes (read, write, admin) and an optional org binding."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class ApiKey:
    id: str
    scopes: frozenset[str]
    org_id: str | None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes or (scope == "read" and "write" in self.scopes)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, scopes: list[str], org_id: str | None = None, name: str | None = None) -> str:
    """A new key, returned once; only its hash is stored."""
    bad = set(scopes) - set(SCOPES)
    if not scopes or bad:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}")
    key_id = secrets.token_hex(6)
    key = f"cams_{key_id}_{secrets.token_urlsafe(24)}"
    with engine.begin() as conn:
        insert_rows(
            conn,
            t.api_keys,
            [
                {
                    "id": key_id,
                    "key_hash": digest(key),
                    "scopes": ",".join(sorted(set(scopes))),
                    "org_id": org_id,
                    "name": name,
                    "created_at": datetime.now(UTC),
                    "revoked_at": None,
                }
            ],
        )
    return key


def load_keys(engine: Engine) -> dict[str, ApiKey]:
    """hash -> key, for lookups in memory."""
    k = t.api_keys
    with engine.connect() as conn:
        rows = conn.execute(select(k.c.id, k.c.key_hash, k.c.scopes, k.c.org_id).where(k.c.revoked_at.is_(None))).all()
    return {r.key_hash: ApiKey(r.id, frozenset(r.scopes.split(",")), r.org_id) for r in rows}
