"""Per-key rate limits: 429 with Retry-After on both select paths alike, holding across processes through
the Redis the development and CI machines run (127.0.0.1:6379), and per process when none is set."""

from __future__ import annotations

import time

import httpx
from fastapi.testclient import TestClient

from cams.api.app import create_app
from cams.api.keys import create_key
from cams.config import RateLimits, parse

REDIS = "redis://127.0.0.1:6379/15"
BODY = {"org_id": "acme", "task_type": "chat"}


def _post(client: TestClient, key: str, path: str = "/api/v1/models/select") -> httpx.Response:
    return client.post(path, json=BODY, headers={"Authorization": f"Bearer {key}"})


def _fresh_window(window_s: float, need_s: float) -> None:
    """Start where the current window has `need_s` left, so the test never straddles two windows."""
    left = window_s - time.time() % window_s
    if left < need_s:
        time.sleep(left + 0.05)


def test_limits_are_configured_and_checked() -> None:
    cfg = parse({"api": {"rate_limits": {"per_second": 50, "keys": {"abc": 2}, "redis_url": REDIS}}})
    assert cfg.rate_limits.limit("abc") == 2 and cfg.rate_limits.limit("other") == 50
    assert parse({}).rate_limits.active is False
    for bad, says in (
        ({"per_second": -1}, "per_second"),
        ({"window_s": 0}, "window_s"),
        ({"redis_url": "http://x"}, "redis_url"),
        ({"keys": {"k": "lots"}}, "keys.k"),
        ({"per_secnd": 1}, "did you mean 'per_second'"),
    ):
        try:
            parse({"api": {"rate_limits": bad}})
        except ValueError as exc:
            assert says in str(exc), exc
        else:
            raise AssertionError(f"{bad} was accepted")


def test_429_reads_the_same_on_both_select_paths(engine, published) -> None:  # type: ignore[no-untyped-def]
    key = create_key(engine, ["read"])
    limits = RateLimits(keys={key.split("_")[1]: 1 / 3600}, window_s=3600)  # one request an hour
    _fresh_window(3600, 30)
    answers = []
    for fast in (True, False):
        app = create_app(engine, refresh_s=60, fast_select=fast, rate_limits=limits)
        with TestClient(app) as client:
            app.state.service.refresh()
            first, second = _post(client, key), _post(client, key)
            assert first.status_code == 200 and second.status_code == 429, second.text
            assert 1 <= int(second.headers["retry-after"]) <= 3600
            assert second.json()["error"]["code"] == "rate_limited"
            answers.append(second.content)
            # every authenticated route is limited, not only select
            assert _post(client, key, "/api/v1/models/estimate").status_code == 429
    assert answers[0] == answers[1]


def test_a_limit_holds_across_processes_through_redis(engine, published) -> None:  # type: ignore[no-untyped-def]
    key = create_key(engine, ["read"])
    window, per_window = 10.0, 20
    limits = RateLimits(keys={key.split("_")[1]: per_window / window}, window_s=window, redis_url=REDIS)
    apps = [create_app(engine, refresh_s=60, rate_limits=limits) for _ in range(2)]  # two workers' services
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for app in apps:
            app.state.service.refresh()
        assert a.get("/readyz").json()["rate_limits"] == "shared (redis)"
        _fresh_window(window, 6)
        codes = []
        for i in range(30):
            codes.append(_post((a, b)[i % 2], key).status_code)
            # what each process's 50 ms sync does, in step with the requests: the one that served first
            for app in (apps[i % 2], apps[1 - i % 2]):
                app.state.service.limiter.sync()
        assert codes.count(200) == per_window, codes  # counted alone, each process would let 20 through
        assert set(codes[per_window:]) == {429}
        # the sync thread runs on its own too: a process that never synced by hand still hears the count
        limiter = apps[0].state.service.limiter
        deadline = time.monotonic() + 5
        while _post(a, key).status_code != 429 or limiter._shared.get(key.split("_")[1], 0) < per_window:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_without_redis_a_limit_holds_per_process_and_says_so(engine, published) -> None:  # type: ignore[no-untyped-def]
    key = create_key(engine, ["read"])
    limits = RateLimits(keys={key.split("_")[1]: 3 / 3600}, window_s=3600)
    _fresh_window(3600, 30)
    apps = [create_app(engine, refresh_s=60, rate_limits=limits) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for app in apps:
            app.state.service.refresh()
        assert a.get("/readyz").json()["rate_limits"] == "per process"
        codes = [_post(c, key).status_code for c in (a, b) for _ in range(4)]
        assert codes == [200, 200, 200, 429] * 2


def test_the_service_takes_its_limits_from_the_parsed_config(engine, published) -> None:  # type: ignore[no-untyped-def]
    """`cams serve` (one worker or several) hands the service cams.yaml as parsed: its api.rate_limits hold."""
    key = create_key(engine, ["read"])
    config = parse({"api": {"rate_limits": {"keys": {key.split("_")[1]: 1 / 3600}, "window_s": 3600}}})
    _fresh_window(3600, 30)
    app = create_app(engine, refresh_s=60, config=config)
    with TestClient(app) as client:
        app.state.service.refresh()
        assert app.state.service.config is config
        assert [_post(client, key).status_code for _ in range(2)] == [200, 429]
