"""Hostile input loses nothing (SPEC §2.4): a corpus of odd bytes landed on SQLite and PostgreSQL, and the
line contracts fuzzed. Every line is accounted for (read = accepted + duplicates + quarantined), the
good lines beside bad ones always land, and what the warehouse cannot store is quarantined with its
reason (its raw text stored safely), never a failed day."""

from __future__ import annotations

import gzip
import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cams.sources.batch import Collector
from cams.sources.files import collect_files, list_drop_files
from cams.sources.landing import Stage, land
from cams.sources.timeutil import day_window
from tests.test_sources import rc

DAY = date(2026, 4, 7)


def span(span_id: str, **attrs: object) -> dict:
    return {
        "trace_id": "t" * 32,
        "span_id": span_id,
        "name": "chat gpt-4o-mini",
        "start_time": "2026-04-07T10:00:00Z",
        "end_time": "2026-04-07T10:00:01Z",
        "status": {"code": "OK"},
        "attributes": {"gen_ai.response.model": "gpt-4o-mini", "relaycore.request_id": "r1", **attrs},
    }


def _line(obj: dict) -> bytes:
    return json.dumps(obj).encode()


# Each entry: (name, bytes of one line, must it be quarantined?)
RELAYCORE_CORPUS: list[tuple[str, bytes, bool]] = [
    ("nul escaped in a string", _line(rc("nul-esc", team_id="t\u00001")), True),
    ("nul escaped in the key", _line(rc("nul\u0000key")), True),
    ("raw nul byte", b'{"request_id": "raw\x00nul", "timestamp": "2026-04-07T10:00:00Z"}', True),
    ("lone surrogate", _line(rc("lone", user_id="u\ud800x")), True),
    ("lone surrogate in model", _line(rc("lone-model", model="gpt\udfff")), True),
    (
        "deep nesting",
        b'{"request_id": "deep", "timestamp": "2026-04-07T10:00:00Z", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        True,
    ),
    ("deep nesting as the record", b"[" * 200_000 + b"]" * 200_000, True),
    ("invalid utf-8", b'{"request_id": "bad\xff\xfeutf", "timestamp": "2026-04-07T10:00:00Z"}', True),
    ("huge integer", _line(rc("huge-int", input_tokens=10**30)), True),
    ("huge exponent", b'{"request_id": "huge-exp", "input_tokens": 1e400, "timestamp": "2026-04-07T10:00:00Z"}', True),
    ("huge money", _line(rc("huge-money", cost_usd="1e30")), True),
    ("negative zero money", _line(rc("neg-zero", cost_usd="-0")), False),
    ("unicode text", _line(rc("uni", team_id="équipe ✓ 🚀", user_id="ユーザー")), False),
    ("escaped unicode", json.dumps(rc("esc-uni", team_id="équipe")).encode(), False),
    ("duplicate of a good line", _line(rc("good-1")), False),
]


def _write_corpus(root: Path) -> tuple[int, int]:
    """The corpus in a plain file and a gzip one, good lines around each bad one; returns (good, bad)."""
    lines: list[bytes] = []
    good = bad = 0
    for i, (_name, raw, is_bad) in enumerate(RELAYCORE_CORPUS):
        lines.append(_line(rc(f"good-{i}")))
        lines.append(raw)
        good += 1
        bad += is_bad
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    extra = [_line(rc("gz-good")), _line(rc("gz-nul", org_id="a\u0000b")), _line(rc("gz-good-2"))]
    (root / "more.jsonl.gz").write_bytes(gzip.compress(b"\n".join(extra) + b"\n"))
    ts = datetime(2026, 4, 7, 12, tzinfo=UTC).timestamp()
    for p in root.iterdir():
        os.utime(p, (ts, ts))
    return good + 2, bad + 1


def test_the_corpus_lands_on_both_backends(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good, bad = _write_corpus(tmp_path / "drop")
    assert good > bad
    start, end = day_window(DAY)
    with Stage(engine, "relaycore", start, end) as stage:
        c = Collector("relaycore", start, end, sink=stage, chunk_rows=3)
        collect_files(c, list_drop_files(tmp_path / "drop"))
        c.flush()
        summary = land(engine, c.result, "files", "run-1", stage=stage)
    counts = summary.counts
    assert counts["read"] == counts["accepted"] + counts["duplicates"] + counts["quarantined"]
    assert counts["quarantined"] == bad, summary.quarantine_reasons
    with engine.connect() as conn:
        landed = set(conn.execute(sa.text("select request_id from relaycore_usage")).scalars())
        kept = conn.execute(sa.text("select raw, reason from quarantine where source = 'relaycore'")).all()
    # every good line landed, including the odd but storable ones
    assert {f"good-{i}" for i in range(len(RELAYCORE_CORPUS))} | {"gz-good", "gz-good-2", "uni", "esc-uni"} <= landed
    assert "neg-zero" in landed
    assert not any("nul" in r or "lone" in r or r.startswith("huge") for r in landed)
    assert len(kept) == bad
    reasons = " | ".join(r.reason for r in kept)
    assert "NUL" in reasons and "surrogate" in reasons and "nest" in reasons and "UTF-8" in reasons
    # quarantined raw text is stored safely (no NUL, valid UTF-8) and still says what it was
    assert all("\x00" not in r.raw and r.raw.encode("utf-8") for r in kept)
    assert any("\\u0000" in r.raw for r in kept)


_text = st.text(st.characters(codec="utf-16", exclude_categories=()), max_size=12)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [
                "request_id",
                "org_id",
                "team_id",
                "user_id",
                "task_type",
                "model",
                "provider",
                "input_tokens",
                "output_tokens",
                "cached_input_tokens",
                "reasoning_tokens",
                "service_tier",
                "status",
                "latency_ms",
                "cost_usd",
                "steering_rule",
            ]
        ),
        _values,
        max_size=4,
    ),
    junk=st.binary(max_size=40),
)
def test_fuzzed_lines_keep_the_books_and_good_lines_land(changes: dict, junk: bytes) -> None:
    """Whatever a line holds, it is read once and either accepted or quarantined; its neighbours land."""
    start, end = day_window(DAY)
    c = Collector("relaycore", start, end)
    odd = {**rc("odd"), **changes}
    try:
        raw = json.dumps(odd, allow_nan=True).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        raw = repr(odd).encode("utf-8", "surrogatepass")
    for i, line in enumerate([_line(rc("before")), raw, junk, _line(rc("after"))]):
        if line.strip():
            c.add_line(i + 1, "fuzz.jsonl", line, DAY)
    res = c.result
    res.check_balance()
    assert {"before", "after"} <= set(res.rows)
    for key, row in res.rows.items():
        assert all(not (isinstance(v, str) and ("\x00" in v or not _storable(v))) for v in row), (key, row)
    for q in res.quarantined:
        assert q.reason


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("source", ["relaycore", "auterity"])
def test_symlinks_out_of_the_drop_dir_are_refused_and_counted(tmp_path, source) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "x.jsonl").write_text(json.dumps(rc("leak") if source == "relaycore" else span("leak")) + "\n")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "ok.jsonl").write_text(json.dumps(rc("inside") if source == "relaycore" else span("inside")) + "\n")
    (drop / "link.jsonl").symlink_to(outside / "x.jsonl")
    (drop / "dirlink").symlink_to(outside, target_is_directory=True)
    ts = datetime(2026, 4, 7, 12, tzinfo=UTC).timestamp()
    for p in drop.iterdir():
        os.utime(p, (ts, ts), follow_symlinks=False)
    start, end = day_window(DAY)
    c = Collector(source, start, end)
    collect_files(c, list_drop_files(drop))
    res = c.result
    res.check_balance()
    assert set(res.rows) == {"inside"}
    refused = [q for q in res.quarantined if "symlink" in q.reason]
    assert refused and all("outside the drop dir" in q.reason for q in refused)
    assert len(res.quarantined) == len(refused)


def _decision(i: int, org: str, **over: object) -> dict:
    row = {
        "selection_id": f"sel-{i:04d}",
        "request_id": f"req-{i}",
        "org_id": org,
        "team_id": "t1",
        "user_id": None,
        "task_type": "chat",
        "quality_tier": "standard",
        "served_tier": "standard",
        "model": "gpt-4o-mini",
        "estimated_cost_usd": 0.0001,
        "budget_state": "ok",
        "binding_constraint": "cost",
        "table_version": "v1",
        "selected_at": datetime(2026, 4, 7, 12, tzinfo=UTC),
        "explanation": {"chosen": "gpt-4o-mini"},
    }
    row.update(over)
    return row


def test_one_bad_row_never_costs_another_tenants_history(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The service's flush: the rows the warehouse refuses are set aside with their reason, the rest land."""
    from cams.api.app import Service

    svc = Service(engine, spool_dir=tmp_path / "spool")
    rows = [_decision(i, "acme" if i % 2 else "globex") for i in range(40)]
    rows[7] = _decision(7, None)  # type: ignore[arg-type]  # refused by every warehouse (org_id NOT NULL)
    rows[23] = _decision(23, "initech", team_id="t\x001")  # PostgreSQL refuses NUL; SQLite stores it
    for r in rows:
        svc.spool.append(r)
    svc.spool.append({"selection_id": "torn"})  # a line cut short by a crash: no org, refused, set aside
    svc.flush()
    with engine.connect() as conn:
        kept = set(conn.execute(sa.text("select selection_id from model_selection_history")).scalars())
        explained = set(conn.execute(sa.text("select id from model_selection_explanations")).scalars())
        aside = conn.execute(
            sa.text("select ref, reason, raw from quarantine where source = 'model_selection_history'")
        ).all()
    refused = {"sel-0007", "torn"} | ({"sel-0023"} if engine.dialect.name == "postgresql" else set())
    assert kept == {r["selection_id"] for r in rows} - refused
    assert explained == kept  # a selection and its explanation land together
    assert {a.ref for a in aside} == refused
    assert all(a.reason.startswith("refused by the warehouse") and "\x00" not in a.raw for a in aside)
    assert svc.backlog()["waiting_bytes"] == 0
    assert svc.flush() == 0  # drained once: nothing is written twice


def test_an_unreachable_warehouse_keeps_the_spool_for_the_next_flush(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cams.api.app import Service
    from cams.warehouse.db import make_engine

    dead = make_engine("postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=1")
    svc = Service(dead, spool_dir=tmp_path / "spool")
    for i in range(5):
        svc.spool.append(_decision(i, "acme"))
    assert svc.flush() == 0
    assert svc.backlog()["waiting_bytes"] > 0  # nothing dropped: the lines wait on disk
    back = Service(engine, spool_dir=tmp_path / "spool")  # the warehouse is back (here: another one)
    assert back.flush() == 5 and back.backlog()["waiting_bytes"] == 0


@pytest.fixture
def api(engine, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from cams.api.app import create_app
    from cams.api.keys import create_key

    monkeypatch.setenv("CAMS_WEBHOOK_SECRET", "whsec")
    (tmp_path / "cams.yaml").write_text(
        "alerts:\n  allowed_hosts: [alerts.example.internal]\n  secret_envs: [ACME_ALERT_SECRET]\n"
    )
    monkeypatch.setenv("CAMS_CONFIG", str(tmp_path / "cams.yaml"))
    app = create_app(engine, refresh_s=3600, flush_s=3600, max_body_bytes=64 * 1024)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.admin = create_key(engine, ["admin"])  # type: ignore[attr-defined]
        c.acme = create_key(engine, ["read", "write"], org_id="acme")  # type: ignore[attr-defined]
        c.globex = create_key(engine, ["read", "write"], org_id="globex")  # type: ignore[attr-defined]
        app.state.service.refresh()
        yield c


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


NUL_PATHS = [
    "/api/v1/budgets/a%00b",
    "/api/v1/budgets/a%00b/status",
    "/api/v1/budgets?org_id=a%00b",
    "/api/v1/explainer/x%00y",
    "/api/v1/explainer/request/x%00y",
    "/api/v1/models/gpt%00x",
    "/api/v1/models?q=a%00b",
    "/api/v1/models/fallbacks/gpt%00x",
    "/api/v1/cost-analysis/summary?org_id=a%00b",
    "/api/v1/cost-analysis/by-model?team_id=%00",
    "/dashboard?org_id=a%00b",
    "/api/v1/budgets/%ff%fe",
]


@pytest.mark.parametrize("path", NUL_PATHS)
def test_nul_and_broken_text_in_paths_and_queries_are_4xx(api, path) -> None:  # type: ignore[no-untyped-def]
    r = api.get(path, headers=_auth(api.admin))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", (path, r.status_code, r.text)


BAD_BUDGETS = [
    ({"channels": 5}, "channels must be a list"),
    ({"thresholds": "x"}, "thresholds must be a list"),
    ({"amount_usd": "1e30"}, "less than"),
    ({"id": "x" * 300}, "longer than 200"),
    ({"name": "n" * 600}, "longer than 512"),
    ({"scope_id": ["acme"]}, "must be text"),
    ({"channels": [{"type": "webhook", "url": "http://169.254.169.254/latest"}]}, "not allowed"),
    (
        {"channels": [{"type": "webhook", "url": "http://alerts.example.internal/x", "secret_env": "HOME"}]},
        "not allowed",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_BUDGETS)
def test_bad_budget_bodies_are_422_with_the_field(api, change, message) -> None:  # type: ignore[no-untyped-def]
    body = {"id": "acme-b", "scope": "org", "scope_id": "acme", "period": "monthly", "amount_usd": 100, **change}
    r = api.post("/api/v1/budgets", json=body, headers=_auth(api.acme))
    assert r.status_code == 422 and message in r.json()["error"]["message"], r.text


def test_budget_channels_to_allowed_hosts_and_other_orgs_learn_nothing(api) -> None:  # type: ignore[no-untyped-def]
    ok = {
        "id": "acme-b",
        "scope": "org",
        "scope_id": "acme",
        "period": "monthly",
        "amount_usd": 100,
        "channels": [
            {"type": "webhook", "url": "https://alerts.example.internal/hook", "secret_env": "ACME_ALERT_SECRET"}
        ],
    }
    assert api.post("/api/v1/budgets", json=ok, headers=_auth(api.acme)).status_code == 201
    assert api.post("/api/v1/budgets", json=ok, headers=_auth(api.acme)).status_code == 409  # its own: a conflict
    theirs = {**ok, "scope_id": "globex", "channels": []}
    other = api.post("/api/v1/budgets", json=theirs, headers=_auth(api.globex))
    assert other.status_code == 404 and "exists" not in other.text  # another org's id: nothing revealed
    assert api.get("/api/v1/budgets/acme-b", headers=_auth(api.globex)).status_code == 404


def test_webhooks_answer_4xx_and_never_lose_an_acknowledged_event(api, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cams import signing
    from cams.sources.webhooks import webhook_events_to_drops

    def post(raw: bytes, sig: str | bytes | None = None, kind: str = "cost-data"):  # type: ignore[no-untyped-def]
        h = {"Content-Type": "application/json", "X-CAMS-Signature": sig or signing.sign("whsec", raw)}
        return api.post(f"/api/v1/webhooks/{kind}", content=raw, headers=h)

    body = json.dumps({"event_id": "e", "records": []}).encode()
    assert post(body, sig=f"t={int(time.time())},v1=üé".encode()).status_code == 401  # non-ASCII signature header
    deep = b'{"event_id": "deep", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert post(deep).status_code in (413, 422)
    assert post(b'{"event_id": "d", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}").status_code == 422
    big = json.dumps({"event_id": "big", "pad": "x" * 100_000}).encode()
    assert post(big).status_code == 413
    assert post(json.dumps({"event_id": "e" * 300, "records": []}).encode()).status_code == 422
    assert post(json.dumps({"event_id": "nul\u0000", "records": []}).encode()).status_code == 422
    # distinct ids whose sanitized forms collide each keep their own file and records
    ids = ["evt:1", "evt_1", "evt/1", "p" * 150 + "a", "p" * 150 + "b"]
    for n, event_id in enumerate(ids):
        rec = rc(f"wh-{n}", org_id=f"org\u0000{n}" if n == 2 else "acme")
        r = post(json.dumps({"event_id": event_id, "records": [rec, rc(f"wh-ok-{n}")]}).encode())
        assert r.status_code == 200 and r.json()["status"] == "stored", r.text
    drops = webhook_events_to_drops(engine, str(tmp_path / "drop"))
    assert len(drops) == len(ids)
    files = sorted((tmp_path / "drop").glob("webhook-*.jsonl"))
    assert len(files) == len(ids)
    start, end = day_window(DAY)
    c = Collector("relaycore", start, end)
    for f in files:
        os.utime(f, (start.timestamp() + 60, start.timestamp() + 60))
    collect_files(c, list_drop_files(tmp_path / "drop"))
    c.result.check_balance()
    assert set(c.result.rows) == {f"wh-{n}" for n in range(5) if n != 2} | {f"wh-ok-{n}" for n in range(5)}
    assert [q.reason for q in c.result.quarantined] == [
        "org_id holds a NUL character, which the warehouse cannot store"
    ]
    assert webhook_events_to_drops(engine, str(tmp_path / "drop")) == []  # processed by id, exactly once


def test_a_gzip_bomb_is_read_no_further_than_its_limit(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cams.sources import files

    monkeypatch.setattr(files, "GZIP_FLOOR_BYTES", 1024 * 1024)
    drop = tmp_path / "drop"
    drop.mkdir()
    lines = [_line(rc("before-bomb"))] + [b"x" * 1000] * 50_000  # 50 MB of bad lines from ~100 kB
    (drop / "bomb.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=9))
    (drop / "wide.jsonl.gz").write_bytes(gzip.compress(b"x" * (64 * 1024 * 1024), compresslevel=9))  # one line
    ts = datetime(2026, 4, 7, 12, tzinfo=UTC).timestamp()
    for p in drop.iterdir():
        os.utime(p, (ts, ts))
    assert all(p.stat().st_size < 200_000 for p in drop.iterdir())
    start, end = day_window(DAY)
    c = Collector("relaycore", start, end)
    collect_files(c, list_drop_files(drop))
    res = c.result
    res.check_balance()
    assert "before-bomb" in res.rows
    bombs = [q for q in res.quarantined if "gzip bomb" in q.reason]
    assert len(bombs) == 2
    limit = max(files.GZIP_FLOOR_BYTES, files.GZIP_MAX_RATIO * (drop / "bomb.jsonl.gz").stat().st_size)
    assert len(res.quarantined) <= limit // 1001 + 3 < 50_000  # stopped at its limit, not at the end
