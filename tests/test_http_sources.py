"""RelayCore / Auterity API clients against the fake servers over real loopback HTTP."""

from __future__ import annotations

import pytest

from cams.simulator.scenario import api_records
from cams.simulator.servers import FakeApi, FaultPlan
from cams.sources.batch import Collector
from cams.sources.http_client import ApiSpec, SourceApiError, fetch_window, retry_after_seconds
from cams.sources.timeutil import day_window


def _fetch(api: FakeApi, kind: str, day, key: str = "k", **spec_kw):  # type: ignore[no-untyped-def]
    start, end = day_window(day)
    c = Collector(kind, start, end)
    waits: list[float] = []
    spec = ApiSpec(kind, api.base_url, key, **{"page_size": 50, "backoff_base_s": 0.01, **spec_kw})
    stats = fetch_window(spec, start, end, c, sleep=waits.append)
    c.result.check_balance()
    return c.result, stats, waits


def test_faults_mid_pagination_land_each_record_once(small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    rc, spans = api_records(small_sim)
    faults = FaultPlan(too_many_every=3, retry_after_s=2, server_error_every=5, overlap=4, fail_requests={2})
    day = sim_days[0]
    truth = small_sim.faults.day(day)
    with FakeApi("relaycore", rc, key="k", faults=faults) as api:
        res, stats, waits = _fetch(api, "relaycore", day)
    assert res.accepted == truth["requests"]
    assert len(res.quarantined) == 2  # the simulator's malformed records that are still JSON
    assert stats.retries >= 3 and "HTTP 429" in stats.errors and "HTTP 503" in stats.errors
    assert 2.0 in waits  # Retry-After honoured
    assert res.duplicates == truth["duplicates"] + 4 * (stats.pages - 1)  # repeats across pages counted
    with FakeApi("auterity", spans, key="k", faults=faults) as api:
        sres, _, _ = _fetch(api, "auterity", day)
    assert sres.accepted == truth["requests"] - truth["missing_span"] + truth["orphan_span"]


def test_slow_answers_time_out_and_are_retried(small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    rc, _ = api_records(small_sim)
    with FakeApi("relaycore", rc, key="k", faults=FaultPlan(slow_every=2, slow_s=1.0)) as api:
        res, stats, _ = _fetch(api, "relaycore", sim_days[1], timeout_s=0.3, page_size=200)
    assert "ReadTimeout" in stats.errors
    assert res.accepted == small_sim.faults.day(sim_days[1])["requests"]


def test_bad_key_fails_fast_with_a_clear_error(small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    with (
        FakeApi("relaycore", small_sim.relaycore, key="right") as api,
        pytest.raises(SourceApiError, match="refused the API key"),
    ):
        _fetch(api, "relaycore", sim_days[0], key="wrong")
        assert api.requests == 1


def test_persistent_failure_gives_up(small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    with (
        FakeApi("relaycore", small_sim.relaycore, key="k", faults=FaultPlan(server_error_every=1)) as api,
        pytest.raises(SourceApiError, match="giving up after 3 attempts"),
    ):
        _fetch(api, "relaycore", sim_days[0], max_retries=2)


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
