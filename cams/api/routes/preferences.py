"""Selection preferences through the API: list, read, replace, delete, per org and per team.
Preferences from cams.yaml are listed beside them and are changed in cams.yaml. A write is applied by
the replica that took it at once, by the others at their next refresh."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import Engine

from cams.api.deps import ApiError, auth, engine, org_filter, same_org, service
from cams.api.keys import ApiKey
from cams.api.rows import jsonable
from cams.selection import store
from cams.selection.preferences import RULES, OwnedByConfig, Preference, PreferenceError, parse_preference

router = APIRouter(tags=["preferences"])


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "scope": "team" if row["team_id"] is not None else "org",
        **json.loads(row["preference_json"]),
        "source": row["source"],
        **jsonable({"created_at": row["created_at"], "updated_at": row["updated_at"]}),
    }


def _key(org_id: str, team_id: str | None) -> str:
    return Preference(org_id, team_id).key


def _found(db: Engine, key: ApiKey, org_id: str, team_id: str | None) -> dict[str, Any]:
    same_org(key, org_id)
    wanted = _key(org_id, team_id)
    row = next((r for r in store.preference_rows(db, org_id) if r["id"] == wanted), None)
    if row is None:
        raise ApiError(404, "not_found", f"no preference for {wanted}")
    return row


def _put(db: Engine, svc: Any, key: ApiKey, org_id: str, team_id: str | None, body: Any) -> dict[str, Any]:
    same_org(key, org_id)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_preference", f"a preference is a JSON object with some of {', '.join(RULES)}")
    for field, value in (("org_id", org_id), ("team_id", team_id)):
        if field in body and body[field] != value:
            raise ApiError(422, "invalid_preference", f"{field} {body[field]!r} differs from the path's {value!r}")
    try:
        pref = parse_preference({**body, "org_id": org_id, "team_id": team_id}, "preference")
        row = store.put_preference(db, pref)
    except OwnedByConfig as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except PreferenceError as exc:
        raise ApiError(422, "invalid_preference", str(exc)) from None
    svc.refresh()  # this replica answers with it from the next request
    return _out(row)


def _delete(db: Engine, svc: Any, key: ApiKey, org_id: str, team_id: str | None) -> None:
    same_org(key, org_id)
    done = store.delete_preference(db, _key(org_id, team_id))
    if done is None:
        raise ApiError(409, "conflict", "this preference is managed in cams.yaml; remove it there")
    if not done:
        raise ApiError(404, "not_found", f"no preference for {_key(org_id, team_id)}")
    svc.refresh()


@router.get("/api/v1/preferences")
def list_preferences(
    org_id: str | None = None, key: ApiKey = Depends(auth("read")), db: Engine = Depends(engine)
) -> list[dict[str, Any]]:
    """Every preference (an org-bound key: its org's), from cams.yaml and the API, in scope order."""
    return [_out(r) for r in store.preference_rows(db, org_filter(key, org_id))]


@router.get("/api/v1/preferences/{org_id}")
def get_org_preference(
    org_id: str, key: ApiKey = Depends(auth("read")), db: Engine = Depends(engine)
) -> dict[str, Any]:
    return _out(_found(db, key, org_id, None))


@router.put("/api/v1/preferences/{org_id}")
def put_org_preference(
    org_id: str,
    body: dict[str, Any],
    key: ApiKey = Depends(auth("write")),
    db: Engine = Depends(engine),
    svc: Any = Depends(service),
) -> dict[str, Any]:
    """Create or replace an org's preference whole (its teams' apply on top of it)."""
    return _put(db, svc, key, org_id, None, body)


@router.delete("/api/v1/preferences/{org_id}", status_code=204)
def delete_org_preference(
    org_id: str, key: ApiKey = Depends(auth("write")), db: Engine = Depends(engine), svc: Any = Depends(service)
) -> None:
    _delete(db, svc, key, org_id, None)


@router.get("/api/v1/preferences/{org_id}/teams/{team_id}")
def get_team_preference(
    org_id: str, team_id: str, key: ApiKey = Depends(auth("read")), db: Engine = Depends(engine)
) -> dict[str, Any]:
    return _out(_found(db, key, org_id, team_id))


@router.put("/api/v1/preferences/{org_id}/teams/{team_id}")
def put_team_preference(
    org_id: str,
    team_id: str,
    body: dict[str, Any],
    key: ApiKey = Depends(auth("write")),
    db: Engine = Depends(engine),
    svc: Any = Depends(service),
) -> dict[str, Any]:
    """Create or replace a team's preference whole (applied on top of its org's)."""
    return _put(db, svc, key, org_id, team_id, body)


@router.delete("/api/v1/preferences/{org_id}/teams/{team_id}", status_code=204)
def delete_team_preference(
    org_id: str,
    team_id: str,
    key: ApiKey = Depends(auth("write")),
    db: Engine = Depends(engine),
    svc: Any = Depends(service),
) -> None:
    _delete(db, svc, key, org_id, team_id)
