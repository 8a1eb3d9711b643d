"""The embedded client answers as the service does (from the service, the warehouse or an exported file),
follows new budget states through ETags, and API keys can be listed, revoked and rotated."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cams.api.app import create_app
from cams.api.keys import create_key, list_keys, revoke_key, rotate_key
from cams.selection.client import SCHEMA, Client
from cams.selection.select import SelectionError
from tests.test_fast_select import CAMS


def _requests() -> list[dict]:
    out = []
    for org in ("acme", "globex", "initech", "never-seen", "hooli"):
        for tier in ("economy", "standard", "premium"):
            out.append({"org_id": org, "task_type": "chat", "quality_tier": tier})
            out.append({"org_id": org, "task_type": "chat", "quality_tier": tier, "team_id": "t1", "user_id": "u1"})
    for team in ("search", "closed"):  # hooli's preferences (tests/conftest.py PREFERENCES)
        for tier in ("economy", "standard", "premium"):
            out.append({"org_id": "hooli", "team_id": team, "task_type": "chat", "quality_tier": tier})
    base = {"org_id": "acme", "task_type": "chat"}
    for extra in (
        {"max_latency_ms": 1000.0},
        {"max_latency_ms": 1.0},
        {"required_capabilities": ["vision"]},
        {"required_capabilities": ["teleportation"]},
        {"input_tokens": 120_000},
        {"input_tokens": 10_000_000},
        {"task_type": "poetry"},
    ):
        out.append({**base, **extra})
    return out


def _client_answer(client: Client, req: dict) -> tuple[int, dict]:
    kw = {**req}
    kw["required_capabilities"] = tuple(kw.get("required_capabilities", ()))
    try:
        c = client.select(**kw)
    except SelectionError as exc:
        return exc.status, {"code": exc.code}
    return 200, {
        "model": c.model,
        "provider": c.provider,
        "estimated_cost_usd": c.estimated_cost_usd,
        "fallback_chain": list(c.fallback_chain),
        "budget_state": c.budget_state,
        "table_version": c.table_version,
    }


def _service_answer(http: TestClient, key: str, req: dict) -> tuple[int, dict]:
    r = http.post("/api/v1/models/select", json=req, headers={"Authorization": f"Bearer {key}"})
    body = r.json()
    if r.status_code != 200:
        return r.status_code, {"code": body["error"]["code"]}
    return 200, {
        k: body[k]
        for k in ("model", "provider", "estimated_cost_usd", "fallback_chain", "budget_state", "table_version")
    }


def test_embedded_client_equals_the_service(engine, published, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(engine, refresh_s=60)
    with TestClient(app) as http:
        svc = app.state.service
        svc.refresh()
        admin = published["admin"]
        from_service = Client.from_service("http://testserver", admin, http=http)
        assert (
            subprocess.run(
                [CAMS, "export-table", "--out", str(tmp_path / "table.json")],
                env={
                    **__import__("os").environ,
                    "CAMS_DATABASE_URL": str(engine.url.render_as_string(hide_password=False)),
                },
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        doc = json.loads((tmp_path / "table.json").read_text())
        assert doc["schema"] == SCHEMA and doc["schema_version"] == 1 and doc["version"] == svc.table.version
        clients = {
            "service": from_service,
            "warehouse": Client.from_warehouse(engine),
            "file": Client.from_file(tmp_path / "table.json"),
        }
        statuses = set()
        for req in _requests():
            want = _service_answer(http, admin, req)
            statuses.add(want[0])
            for name, client in clients.items():
                for _ in range(2):  # the first answer computed, the second from the memo
                    assert _client_answer(client, req) == want, (name, req)
        assert {200, 402, 404, 422} <= statuses
        # an explanation id names the published row explanation, which the explainer serves
        choice = from_service.select("acme", "chat", "premium")
        got = http.get(f"/api/v1/explainer/{choice.explanation_id}", headers={"Authorization": f"Bearer {admin}"})
        assert got.status_code == 200 and got.json()["explanation"]["chosen"] is not None

        # nothing changed: 304, nothing reloaded; a budget's state changes: the next refresh follows it
        assert from_service.refresh() is False
        before = from_service.select("acme", "chat").budget_state
        with engine.begin() as conn:
            conn.execute(
                sa.text("update budget_status set org_id = 'acme', scope_id = 'acme' where budget_id = 'initech-cap'")
            )
        svc.refresh()
        assert from_service.refresh() is True
        after = from_service.select("acme", "chat")
        assert (before, after.budget_state) == ("ok", "critical")
        assert _client_answer(from_service, {"org_id": "acme", "task_type": "chat"}) == _service_answer(
            http, admin, {"org_id": "acme", "task_type": "chat"}
        )

        # an org-bound key sees its own org's budgets only
        mine = http.get("/api/v1/models/table", headers={"Authorization": f"Bearer {published['acme']}"})
        assert mine.status_code == 200 and {b["org_id"] for b in mine.json()["budgets"]} == {"acme"}


def test_embedded_client_is_fast(engine, published) -> None:  # type: ignore[no-untyped-def]
    """Not a timing assertion (bench/ has the figures): the memo answers plain requests without deciding again."""
    client = Client.from_warehouse(engine)
    first = client.select("acme", "chat")
    assert client.select("acme", "chat") is first
    assert client.select("acme", "chat", input_tokens=10) is not first  # constrained requests are decided


def test_keys_list_revoke_rotate(engine, published) -> None:  # type: ignore[no-untyped-def]
    app = create_app(engine, refresh_s=0.2)
    body = {"org_id": "acme", "task_type": "chat"}
    with TestClient(app) as http:
        app.state.service.refresh()
        key = create_key(engine, ["read"], org_id="acme", name="gateway")
        key_id = key.split("_")[1]
        listed = {r["id"]: r for r in list_keys(engine)}
        assert listed[key_id]["name"] == "gateway" and listed[key_id]["revoked_at"] is None
        assert all("hash" not in k and "key" not in k for k in listed[key_id])

        def status(k: str) -> int:
            return http.post("/api/v1/models/select", json=body, headers={"Authorization": f"Bearer {k}"}).status_code

        def until(k: str, want: int) -> None:
            deadline = time.monotonic() + 5  # the refresh interval is 0.2 s
            while status(k) != want:
                assert time.monotonic() < deadline, f"still not {want}"
                time.sleep(0.05)

        until(key, 200)
        new = rotate_key(engine, key_id)
        until(key, 401)  # the rotated key is refused from the next refresh
        until(new, 200)
        new_id = new.split("_")[1]
        assert {r["id"]: r for r in list_keys(engine)}[new_id]["org_id"] == "acme"
        assert revoke_key(engine, new_id) is True and revoke_key(engine, new_id) is False
        until(new, 401)
        with pytest.raises(LookupError):
            rotate_key(engine, new_id)
