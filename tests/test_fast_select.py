"""The lean select path answers exactly as the FastAPI route does, and every selection served at full
speed by a real `cams serve --workers 2` reaches the warehouse with its explanation."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cams.api.app import create_app

CAMS = str(Path(sys.executable).with_name("cams"))
_ID = re.compile(rb'"(selection_id|explanation_id)":"[0-9a-f]{32}"')


def _matrix() -> list[tuple[str, object, dict[str, str]]]:
    """(key name, body, extra headers): tiers, budget states, constraints, prompt sizes, errors, auth failures."""
    cases: list[tuple[str, object, dict[str, str]]] = []
    for org in ("acme", "globex", "initech", "never-seen", "hooli"):
        for tier in ("economy", "standard", "premium"):
            cases.append(("admin", {"org_id": org, "task_type": "chat", "quality_tier": tier}, {}))
    for team in ("search", "closed", "other"):  # preferences: the org's, a team's on top, none of its own
        for tier in ("economy", "standard", "premium"):
            cases.append(("admin", {"org_id": "hooli", "team_id": team, "task_type": "chat", "quality_tier": tier}, {}))
        cases.append(("admin", {"org_id": "hooli", "team_id": team, "task_type": "chat", "max_latency_ms": 1000}, {}))
    base = {"org_id": "acme", "task_type": "chat"}
    for extra in (
        {"max_latency_ms": 1000},
        {"max_latency_ms": 1000.5},
        {"max_latency_ms": 1},
        {"max_latency_ms": 0},
        {"max_latency_ms": "900"},
        {"required_capabilities": ["vision"]},
        {"required_capabilities": ["teleportation"]},
        {"required_capabilities": "vision"},
        {"input_tokens": 120_000},
        {"input_tokens": 10_000_000},
        {"input_tokens": 5.0},
        {"input_tokens": -1},
        {"input_tokens": True},
        {"prompt": "hello world " * 40, "request_id": "rq-prompt"},
        {"prompt": "héllo wörld ✓ " * 10},
        {"prompt": "x " * 15_000},
        {"team_id": "t1", "user_id": "u1", "request_id": "r-1"},
        {"team_id": None},
        {"team_id": 7},
        {"quality_tier": "platinum"},
        {"task_type": "poetry"},
        {"task_type": ""},
        {"org_id": ""},
        {"org_id": "a" * 201},
        {"unknown_field": 1},
        {"prompt": "nul \u0000 inside"},
    ):
        cases.append(("admin", {**base, **extra}, {}))
    cases += [
        ("admin", {"task_type": "chat"}, {}),
        ("admin", [base], {}),
        ("admin", "not json", {}),
        ("acme", base, {}),
        ("acme", {**base, "org_id": "globex"}, {}),
        ("writer", base, {}),
        ("none", base, {}),
        ("", base, {}),
        ("admin", base, {"content-type": "text/plain"}),
    ]
    return cases


def _send(client: TestClient, keys: dict[str, str], name: str, body: object, extra: dict[str, str]) -> httpx.Response:
    headers = {"content-type": "application/json", **extra}
    if name:
        headers["authorization"] = f"Bearer {keys[name]}"
    content = body.encode() if isinstance(body, str) else httpx.Request("POST", "/", json=body).content
    return client.post("/api/v1/models/select", content=content, headers=headers)


def test_lean_path_answers_byte_for_byte_like_fastapi(engine, published) -> None:  # type: ignore[no-untyped-def]
    lean_app, ref_app = create_app(engine, refresh_s=60), create_app(engine, refresh_s=60, fast_select=False)
    with TestClient(lean_app) as lean, TestClient(ref_app) as ref:
        lean_app.state.service.refresh()
        ref_app.state.service.refresh()
        mismatches, statuses, pairs = [], set(), []
        for name, body, extra in _matrix():
            a, b = _send(lean, published, name, body, extra), _send(ref, published, name, body, extra)
            statuses.add(a.status_code)
            if a.status_code == 200 and b.status_code == 200:
                pairs.append((a.json()["selection_id"], b.json()["selection_id"]))
            if (a.status_code, _ID.sub(rb'"\1":"-"', a.content)) != (b.status_code, _ID.sub(rb'"\1":"-"', b.content)):
                mismatches.append((name, body, a.status_code, a.text[:300], b.status_code, b.text[:300]))
        fast = _fast_path(lean_app)
        assert not mismatches, mismatches[:3]
        assert {200, 401, 402, 403, 404, 422} <= statuses
        # the lean path answered the plain requests itself (and handed on what FastAPI must judge)
        assert fast.answered >= 20
        assert _fast_path(ref_app).answered == 0
        lean_app.state.service.flush()
        ref_app.state.service.flush()  # each app writes its own history: both must have landed
        with engine.connect() as conn:
            served = conn.execute(sa.text("select count(*) from model_selection_history")).scalar()
            explained = conn.execute(
                sa.text("select count(*) from model_selection_explanations where kind = 'selection'")
            ).scalar()
        assert served == explained and served >= 2 * 20  # both apps' selections, each with its explanation
        # and what each path recorded is the same: history columns and explanation, apart from ids and time
        with engine.connect() as conn:

            def recorded(sid: str) -> tuple:
                row = (
                    conn.execute(sa.text("select * from model_selection_history where selection_id = :s"), {"s": sid})
                    .mappings()
                    .one()
                )
                why = conn.execute(
                    sa.text("select explanation_json from model_selection_explanations where id = :s"), {"s": sid}
                ).scalar_one()
                kept = {k: v for k, v in row.items() if k not in ("selection_id", "selected_at")}
                return kept, json.loads(why)

            assert len(pairs) >= 15
            for lean_id, ref_id in pairs:
                assert recorded(lean_id) == recorded(ref_id)


def _fast_path(app):  # type: ignore[no-untyped-def]
    return app.fast


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_selection_served_at_full_speed_reaches_the_warehouse(db_url, engine, published, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    env = {**os.environ, "CAMS_DATABASE_URL": db_url, "CAMS_SPOOL_DIR": str(tmp_path / "spool")}
    args = [CAMS, "serve", "--port", str(port), "--workers", "2", "--refresh-s", "0.5"]
    server = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "cams serve did not become ready"
            time.sleep(0.2)
        n = 2000
        headers = {"authorization": f"Bearer {published['admin']}"}

        async def fire() -> list[str]:
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
                sem = asyncio.Semaphore(32)

                async def one(i: int) -> str:
                    body = {"org_id": f"org-{i % 7}", "task_type": "chat", "request_id": f"rq-{i}"}
                    async with sem:
                        r = await client.post("/api/v1/models/select", json=body)
                    assert r.status_code == 200, r.text
                    return r.json()["selection_id"]

                return await asyncio.gather(*(one(i) for i in range(n)))

        ids = asyncio.run(fire())
        assert len(set(ids)) == n
        deadline = time.monotonic() + 60
        while (history := httpx.get(f"{base}/readyz").json()["history"])["waiting_bytes"]:
            assert time.monotonic() < deadline, history
            time.sleep(0.2)
        assert history["writer"] == "process"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    with engine.connect() as conn:
        kept = set(conn.execute(sa.text("select selection_id from model_selection_history")).scalars())
        explained = set(
            conn.execute(sa.text("select id from model_selection_explanations where kind = 'selection'")).scalars()
        )
    assert kept == set(ids) and explained == set(ids)
    # what is left of the spool is fully written (segments of the stopped workers are removed)
    from cams.api.spool import backlog

    spools = {p.parent for p in tmp_path.rglob("*.spool") if p.is_file()}
    assert all(backlog(d)["waiting_bytes"] == 0 for d in spools)


def test_a_spool_replayed_after_a_crash_lands_once(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The offset is saved after the commit: a crash in between replays the batch, which must not
    duplicate rows nor set them aside as refused."""
    from cams.api.spool import Spool, drain
    from tests.test_hostile import _decision

    spool = Spool(tmp_path / "spool")
    for i in range(50):
        spool.append(_decision(i, "acme"))
    assert drain(engine, spool.directory) == 50
    for off in (tmp_path / "spool").glob("*.off"):
        off.write_text("0")  # as if the process died before saving how far it had written
    spool.append(_decision(50, "acme"))
    assert drain(engine, spool.directory) == 51  # the replayed 50 and the new one, each once
    with engine.connect() as conn:
        kept = conn.execute(sa.text("select count(*) from model_selection_history")).scalar()
        explained = conn.execute(sa.text("select count(*) from model_selection_explanations")).scalar()
        aside = conn.execute(sa.text("select count(*) from quarantine")).scalar()
    assert (kept, explained, aside) == (51, 51, 0)
