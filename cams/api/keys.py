"""API keys: stored as SHA-256 hashes, with scopes (read, write, admin) and an optional org binding."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

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


def list_keys(engine: Engine) -> list[dict[str, object]]:
    """Every key's id, label, scopes, org and dates; never a key or its hash."""
    k = t.api_keys
    cols = (k.c.id, k.c.name, k.c.scopes, k.c.org_id, k.c.created_at, k.c.revoked_at)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(*cols).order_by(k.c.created_at, k.c.id)).mappings()]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Mark a key revoked; every `cams serve` refuses it from its next refresh (`--refresh-s`, default 5 s).
    False when no live key has this id."""
    k = t.api_keys
    with engine.begin() as conn:
        done = conn.execute(
            update(k).where(k.c.id == key_id, k.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC))
        )
    return done.rowcount == 1


def rotate_key(engine: Engine, key_id: str) -> str:
    """A new key with the old one's scopes, org and label; the old one is revoked in the same step."""
    k = t.api_keys
    with engine.connect() as conn:
        old = conn.execute(select(k).where(k.c.id == key_id, k.c.revoked_at.is_(None))).mappings().first()
    if old is None:
        raise LookupError(f"no live API key with id {key_id!r} (see `cams keys list`)")
    new = create_key(engine, old["scopes"].split(","), old["org_id"], old["name"])
    revoke_key(engine, key_id)
    return new
