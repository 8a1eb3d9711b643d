"""Source contracts and drop files: exact counts, clear reasons, nothing lost (SPEC §2, §2.4)."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, date, datetime

import pytest

from cams.sources.batch import Collector
from cams.sources.contracts import RecordError, parse_auterity, parse_relaycore
from cams.sources.files import MAX_LINE_BYTES, collect_files, days_touched, list_drop_files
from cams.sources.timeutil import day_window

DAY = date(2026, 4, 7)


def rc(request_id: str, ts: str = "2026-04-07T10:00:00Z", **over: object) -> dict:
    rec = {
        "request_id": request_id,
        "timestamp": ts,
        "org_id": "acme",
        "team_id": "t1",
        "user_id": "u1",
        "task_type": "chat",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 1000,
        "output_tokens": 500,
        "cached_input_tokens": 200,
        "status": "success",
        "cost_usd": "0.000435",
    }
    rec.update(over)
    return rec


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"request_id": None}, "missing required field request_id"),
        ({"timestamp": "2026-04-07 10:00"}, "no UTC offset"),
        ({"timestamp": "yesterday"}, "not RFC 3339"),
        ({"input_tokens": -1}, ">= 0"),
        ({"input_tokens": 1.5}, "whole number"),
        ({"input_tokens": True}, "whole number"),
        ({"cached_input_tokens": 2000}, "cached_input_tokens exceeds"),
        ({"cache_creation_input_tokens": 900}, "cache_creation_input_tokens exceeds"),
        ({"reasoning_tokens": 600}, "reasoning_tokens exceeds"),
        ({"status": "ok"}, "status must be"),
        ({"service_tier": "gold"}, "service_tier"),
        ({"cost_usd": "-1"}, "cost_usd"),
        ({"cost_usd": "NaN"}, "cost_usd"),
        ({"model": ""}, "model must not be empty"),
        ({"org_id": 5}, "org_id must be a string"),
    ],
)
def test_relaycore_contract_names_the_problem(change: dict, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        parse_relaycore({**rc("r1"), **change})


def test_relaycore_defaults_and_utc() -> None:
    row = parse_relaycore(rc("r1", ts="2026-04-07T05:00:00-05:00"))
    assert row["timestamp"] == datetime(2026, 4, 7, 10, tzinfo=UTC)
    assert row["service_tier"] == "standard" and row["reasoning_tokens"] == 0


def test_auterity_contract() -> None:
    span = {
        "trace_id": "t",
        "span_id": "s",
        "start_time": "2026-04-07T10:00:00Z",
        "end_time": "2026-04-07T10:00:01.5Z",
        "status": {"code": "OK"},
        "attributes": {
            "gen_ai.usage.input_tokens": 10,
            "auterity.quality.score": 0.8,
            "auterity.feedback": -1,
            "relaycore.request_id": "r1",
        },
    }
    row = parse_auterity(span)
    assert row["duration_ms"] == 1500 and row["relaycore_request_id"] == "r1" and row["feedback"] == -1
    for attrs, reason in [
        ({"auterity.quality.score": 1.5}, "quality"),
        ({"auterity.feedback": 0}, "feedback"),
        ({"gen_ai.usage.input_tokens": 1, "gen_ai.usage.cache_read.input_tokens": 2}, "exceeds"),
    ]:
        with pytest.raises(RecordError, match=reason):
            parse_auterity({**span, "attributes": attrs})
    with pytest.raises(RecordError, match="before start_time"):
        parse_auterity({**span, "end_time": "2026-04-07T09:00:00Z"})


def _collect(drop_dir, day: date = DAY, source: str = "relaycore"):  # type: ignore[no-untyped-def]
    start, end = day_window(day)
    c = Collector(source, start, end)
    collect_files(c, list_drop_files(drop_dir))
    c.result.check_balance()
    return c.result


def test_hand_made_drop_dir_gives_exact_counts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = [
        json.dumps(rc("a")),
        json.dumps(rc("b", input_tokens=2000, cached_input_tokens=0)),
        json.dumps(rc("a", output_tokens=600)),  # duplicate: the later copy wins
        '{"request_id": "c", "timestamp": "2026-04-07T11:00:00Z", "org_id": ',  # truncated
        json.dumps(rc("d", input_tokens=-3)),  # invalid
        json.dumps(rc("e", ts="2026-04-08T01:00:00Z")),  # another day: not this partition's
        "",
        "[1, 2, 3]",  # not an object, no day hint: the day of the readable line before it (April 8)
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    day_ts = datetime(2026, 4, 7, 12, tzinfo=UTC).timestamp()
    os.utime(tmp_path / "a.jsonl", (day_ts, day_ts))
    res = _collect(tmp_path)
    assert res.counts() == {"read": 5, "accepted": 2, "duplicates": 1, "quarantined": 2}
    assert res.row("a")["output_tokens"] == 600
    reasons = sorted(q.reason.split(":")[0] for q in res.quarantined)
    assert reasons == ["input_tokens must be >= 0", "not valid JSON"]
    nxt = _collect(tmp_path, date(2026, 4, 8))
    assert nxt.counts() == {"read": 2, "accepted": 1, "duplicates": 0, "quarantined": 1}
    assert nxt.quarantined[0].reason.startswith("a record must be a JSON object")


def test_bad_lines_count_in_the_run_for_their_datas_day(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file of April 7 records dropped today: its unreadable lines belong to April 7, not to today,
    so the run for April 7 reports them (and the sensor asks for April 7 only)."""
    lines = [json.dumps(rc("a")), "garbage without any date", b"\xff\xfe".decode("latin-1"), json.dumps(rc("b"))]
    (tmp_path / "late.jsonl").write_text("\n".join(lines) + "\n")  # modified now, not on April 7
    res = _collect(tmp_path)
    assert res.counts() == {"read": 4, "accepted": 2, "duplicates": 0, "quarantined": 2}
    assert {q.day for q in res.quarantined} == {DAY}
    (f,) = list_drop_files(tmp_path)
    assert days_touched(f, "relaycore") == {DAY}


def test_hostile_files_are_quarantined_line_by_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = json.dumps(rc("ok1")).encode()
    huge = b'{"request_id": "big", "timestamp": "2026-04-07T10:00:00Z", "pad": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}'
    (tmp_path / "mixed.jsonl").write_bytes(
        b"\n".join([good, huge, b"\xff\xfe\x00garbage", good.replace(b"ok1", b"ok2")])
    )
    payload = gzip.compress((json.dumps(rc("gz1")) + "\n" + json.dumps(rc("gz2")) + "\n").encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(payload[: len(payload) - 12])  # truncated stream
    for p in tmp_path.iterdir():
        ts = datetime(2026, 4, 7, 12, tzinfo=UTC).timestamp()
        os.utime(p, (ts, ts))
    res = _collect(tmp_path)
    assert {"ok1", "ok2"} <= set(res.rows)
    reasons = " | ".join(q.reason for q in res.quarantined)
    assert "longer than" in reasons and "not UTF-8" in reasons
    assert "unreadable file" in reasons or "not valid JSON" in reasons
    big = next(q for q in res.quarantined if "longer than" in q.reason)
    assert len(big.raw) < 70_000  # the enormous line is kept as a bounded excerpt, not in full
    assert res.read == res.accepted + res.duplicates + len(res.quarantined)


def test_days_touched_and_timezones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.jsonl").write_text(
        json.dumps(rc("a", ts="2026-04-07T23:30:00-05:00"))
        + "\n"
        + json.dumps(rc("b", ts="2026-04-06T10:00:00Z"))
        + "\n"
    )
    (f,) = list_drop_files(tmp_path)
    assert days_touched(f, "relaycore") == {date(2026, 4, 8), date(2026, 4, 6)}


def test_simulated_drops_match_injected_faults(tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    from cams.simulator.drops import write_drops

    dirs = write_drops(small_sim, tmp_path)
    for day in sim_days:
        truth = small_sim.faults.day(day)
        res = _collect(dirs["relaycore"], day)
        assert res.accepted == truth["requests"]
        assert res.duplicates == truth["duplicates"]
        assert len(res.quarantined) == truth["malformed"]
        spans = _collect(dirs["auterity"], day, "auterity")
        assert spans.accepted == truth["requests"] - truth["missing_span"] + truth["orphan_span"]
        assert len(spans.quarantined) == truth["malformed_spans"]


def test_plain_and_gzip_files_read_the_same_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Plain files are split a block at a time, gzip ones a line at a time: same lines, numbers, errors."""
    from cams.sources.files import BLOCK_BYTES, raw_lines

    big = b"x" * (MAX_LINE_BYTES + 5)
    body = b"".join(
        [b'{"a": 1}\n', b"\n", b"  \r\n", big + b"\n", b'{"b": 2}\r\n', b"y" * (BLOCK_BYTES - 3) + b"\n", b"z\n", big]
    )
    (tmp_path / "d.jsonl").write_bytes(body)
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(body))
    plain = [(n, c.rstrip(b"\r\n"), e) for n, c, e in raw_lines(tmp_path / "d.jsonl")]
    zipped = [(n, c.rstrip(b"\r\n"), e) for n, c, e in raw_lines(tmp_path / "d.jsonl.gz")]
    assert plain == zipped
    assert [n for n, _, _ in plain] == [1, 4, 5, 6, 7, 8]
    assert plain[1][2] == f"line longer than {MAX_LINE_BYTES} bytes ({MAX_LINE_BYTES + 6} bytes)"
    assert plain[-1][2] == f"line longer than {MAX_LINE_BYTES} bytes ({MAX_LINE_BYTES + 5} bytes)"
    assert len(plain[1][1]) == 4096 and plain[4][1] == b"z" and len(plain[3][1]) == BLOCK_BYTES - 3
