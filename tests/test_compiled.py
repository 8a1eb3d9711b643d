"""The compiled contracts agree with the Python ones, and landing in chunks loses and doubles nothing.

The compiled path may only answer "not sure" (None) where the Python contract would accept: it must
never accept what Python quarantines, and what it accepts must be the row Python would make.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cams.progress import DayProgress, parse_line
from cams.simulator.drops import write_drops
from cams.sources.batch import Collector
from cams.sources.contracts import AUTERITY, RELAYCORE, RecordError, loads
from cams.sources.files import collect_files, list_drop_files
from cams.sources.landing import Stage, land
from cams.sources.registry import describe
from cams.sources.timeutil import day_window

USAGE = {
    "request_id": "req-1",
    "timestamp": "2026-04-07T10:00:00.123456Z",
    "org_id": "acme",
    "team_id": "t1",
    "user_id": None,
    "task_type": "chat",
    "model_requested": "gpt-4o",
    "model": "gpt-4o-mini",
    "provider": "openai",
    "input_tokens": 1000,
    "output_tokens": 500,
    "cached_input_tokens": 200,
    "cache_creation_input_tokens": 10,
    "reasoning_tokens": 5,
    "service_tier": "flex",
    "status": "success",
    "latency_ms": 812,
    "cost_usd": "0.000435",
    "steering_rule": None,
    "fallback_from": None,
}
SPAN = {
    "trace_id": "t" * 32,
    "span_id": "s1",
    "name": "chat gpt-4o-mini",
    "start_time": "2026-04-07T10:00:00Z",
    "end_time": "2026-04-07T10:00:01.5+00:00",
    "status": {"code": "OK"},
    "attributes": {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.cache_read.input_tokens": 200,
        "relaycore.request_id": "req-1",
        "cams.org_id": "acme",
        "auterity.quality.score": 0.75,
        "auterity.feedback": -1,
    },
}
ODD_VALUES: list[Any] = [
    None,
    "",
    "   ",
    "\u00a0",
    "x" * 513,
    "é" * 150,
    0,
    -1,
    1.0,
    2.5,
    True,
    10**12,
    10**12 + 1,
    1e400,
    "1e-7",
    "NaN",
    "abc",
    [],
    {},
    {"code": None},
    {"code": "ERROR"},
    "2026-04-07T10:00:00",
    "2026-04-07T12:00:00+02:00",
    "2026-04-07T10:00:00.1234567Z",
    "2026-04-07t10:00:00z",
    " 2026-04-07T10:00:00Z",
    "2026-04-08T00:00:00Z",
    "standard",
    "batch",
    "error",
    "OK",
    1,
    -1,
    0.5,
]


def _python(source: str, raw: bytes) -> tuple[Any, ...] | None:
    try:
        return tuple(describe(source).parse(loads(raw.decode("utf-8"))).values())
    except (RecordError, UnicodeDecodeError):
        return None


def _mutations(base: dict[str, Any], rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    keys = list(base) + [f"attributes.{k}" for k in base.get("attributes", {})] + ["status.code", "extra"]
    for _ in range(n):
        rec = json.loads(json.dumps(base))
        for key in rng.sample(keys, rng.choice([1, 1, 2, 3])):
            value = rng.choice([*ODD_VALUES, "<drop>"])
            parent, _, leaf = key.rpartition(".") if key.startswith(("attributes.", "status.")) else ("", "", key)
            target = rec.get(parent) if parent else rec
            if not isinstance(target, dict):
                continue
            if value == "<drop>":
                target.pop(leaf, None)
            else:
                target[leaf] = value
        out.append(rec)
    return out


def test_compiled_contracts_accept_only_what_python_accepts_and_make_the_same_row() -> None:
    rng = random.Random(7)
    for source, base in ((RELAYCORE, USAGE), (AUTERITY, SPAN)):
        fast = describe(source).decode
        assert fast(json.dumps(base).encode()) == _python(source, json.dumps(base).encode()) is not None
        agreed = unsure = 0
        for rec in _mutations(base, rng, 3000):
            raw = json.dumps(rec).encode()
            mine, theirs = fast(raw), _python(source, raw)
            if mine is None:
                unsure += theirs is not None
                continue
            assert mine == theirs, (source, rec)
            assert [type(v) for v in mine] == [type(v) for v in theirs], (source, rec)
            agreed += 1
        assert agreed > 300 and unsure < agreed, (source, agreed, unsure)
        for raw in (b"{not json", b"[]", b'"text"', b"\xff\xfe", json.dumps(base).encode()[:-1]):
            assert fast(raw) is None
        bad_utf8 = json.dumps({**base, "extra": "X"}).encode().replace(b'"X"', b'"\xff"')
        assert fast(bad_utf8) is None and _python(source, bad_utf8) is None


def test_row_fields_are_the_order_python_parses_in() -> None:
    assert tuple(describe(RELAYCORE).parse(USAGE)) == describe(RELAYCORE).fields
    assert tuple(describe(AUTERITY).parse(SPAN)) == describe(AUTERITY).fields


def _collect(root, source: str, days: list[date], fast: bool, sink=None, chunk_rows: int = 100_000):  # type: ignore[no-untyped-def]
    start, end = day_window(days[0])[0], day_window(days[-1])[1]
    c = Collector(source, start, end, sink, chunk_rows)
    if not fast:
        c._compiled = lambda raw: None  # every line through the Python contract
    collect_files(c, list_drop_files(root / source))
    return c.result


def test_simulated_day_collects_the_same_with_and_without_the_compiled_path(tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    write_drops(small_sim, tmp_path)
    for source in (RELAYCORE, AUTERITY):
        fast, slow = _collect(tmp_path, source, sim_days, True), _collect(tmp_path, source, sim_days, False)
        assert fast.counts() == slow.counts() and fast.accepted > 0
        assert list(fast.rows.items()) == list(slow.rows.items())
        seen = [[(q.ref, q.reason, q.day) for q in r.quarantined] for r in (fast, slow)]
        assert seen[0] == seen[1]


def test_landing_in_small_chunks_keeps_the_latest_copy_and_counts_every_line(  # type: ignore[no-untyped-def]
    tmp_path, engine, small_sim, sim_days
) -> None:
    """Chunks of 7 rows: duplicates meet across chunks and are deduplicated where they are staged."""
    write_drops(small_sim, tmp_path)
    whole = _collect(tmp_path, RELAYCORE, sim_days, True)
    land(engine, whole, "files")
    with engine.connect() as conn:
        expected = conn.execute(sa.text("select request_id, output_tokens, cost_usd from relaycore_usage")).all()
    start, end = day_window(sim_days[0])[0], day_window(sim_days[-1])[1]
    handed: list[set[str]] = []
    with Stage(engine, RELAYCORE, start, end) as stage:

        def sink(rows: list[tuple[Any, ...]], repeated: set[str]) -> None:
            handed.append(set(repeated))
            # keys there without an earlier copy change nothing (two keys sharing a hash): one never
            # seen, and one of the chunk's own rows (the earlier copies go before the chunk goes in)
            stage(rows, repeated | {"never-sent", rows[0][0]})

        chunked = _collect(tmp_path, RELAYCORE, sim_days, True, sink, chunk_rows=7)
        assert chunked.staged > 0 and len(chunked.rows) < 7
        # the keys met again after a copy was handed over are the ones the stage dedupes
        assert 0 < sum(map(len, handed)) <= whole.duplicates - chunked.duplicates
        summary = land(engine, chunked, "files", stage=stage)
    assert summary.counts == whole.counts() and summary.counts["duplicates"] > 0
    assert summary.counts["read"] == sum(summary.counts[k] for k in ("accepted", "duplicates", "quarantined"))
    with engine.connect() as conn:
        got = conn.execute(sa.text("select request_id, output_tokens, cost_usd from relaycore_usage")).all()
        history = conn.execute(sa.text("select accepted, duplicates from cost_sync_history order by id")).all()
    assert sorted(got) == sorted(expected) and len(got) == whole.accepted
    assert history[-1] == history[0] == (whole.accepted, whole.duplicates)


def test_landing_says_which_day_it_has_reached(tmp_path, small_sim, sim_days) -> None:  # type: ignore[no-untyped-def]
    """Each chunk handed to the warehouse reports the day reading has got to, days counted in the window."""
    write_drops(small_sim, tmp_path)
    said: list[str] = []
    progress = DayProgress(said.append, sim_days[0], sim_days[-1] + timedelta(days=1), every_s=3600)
    start, end = day_window(sim_days[0])[0], day_window(sim_days[-1])[1]
    staged: list[int] = []
    c = Collector(RELAYCORE, start, end, lambda rows, _: staged.append(len(rows)), 50, progress=progress)
    collect_files(c, list_drop_files(tmp_path / RELAYCORE))
    # throttled to an hour: only a new day speaks, once each, in order, with the rows staged by then
    assert [line.split(" (")[0] for line in said] == [
        f"progress: day {i} of {len(sim_days)}" for i in range(1, len(sim_days) + 1)
    ]
    assert all(parse_line(line) is not None for line in said)
    rows = [int(line.rsplit(", ", 1)[1].split()[0].replace(",", "")) for line in said]
    assert rows == sorted(rows) and 0 < rows[-1] <= sum(staged)


def test_the_landed_day_is_the_utc_day_whatever_the_offset(tmp_path, engine) -> None:  # type: ignore[no-untyped-def]
    """A row's day is the UTC day of its timestamp, whatever offset the source wrote."""
    lines = [
        {**USAGE, "request_id": "late-west", "timestamp": "2026-04-07T23:30:00-02:00"},  # 04-08 01:30 UTC
        {**USAGE, "request_id": "early-east", "timestamp": "2026-04-08T01:00:00+02:00"},  # 04-07 23:00 UTC
        {**USAGE, "request_id": "midnight", "timestamp": "2026-04-08T00:00:00Z"},
    ]
    (tmp_path / "relaycore").mkdir()
    (tmp_path / "relaycore" / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = _collect(tmp_path, RELAYCORE, [date(2026, 4, 7), date(2026, 4, 8)], True)
    land(engine, result, "files")
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("select request_id, day from relaycore_usage")).all())
    assert {k: str(v) for k, v in got.items()} == {
        "late-west": "2026-04-08",
        "early-east": "2026-04-07",
        "midnight": "2026-04-08",
    }


def _table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_a_later_copy_on_another_day_wins_and_a_failed_landing_leaves_the_days(engine) -> None:  # type: ignore[no-untyped-def]
    """Chunks of two rows over a two-day window: a re-sent copy whose time moved to the next day, in a
    later chunk, takes the place of the first (deleted from the other day's rows, counted as a
    duplicate). Then a landing that fails half-way leaves the landed days exactly as they were, and
    nothing of its own behind."""
    start, end = day_window(date(2026, 4, 7))[0], day_window(date(2026, 4, 8))[1]
    first = [
        {**USAGE, "request_id": "moved", "timestamp": "2026-04-07T23:00:00Z", "output_tokens": 10},
        {**USAGE, "request_id": "stays", "timestamp": "2026-04-07T10:00:00Z"},
        {**USAGE, "request_id": "next-day", "timestamp": "2026-04-08T10:00:00Z"},
        {**USAGE, "request_id": "other", "timestamp": "2026-04-08T11:00:00Z"},
        {**USAGE, "request_id": "moved", "timestamp": "2026-04-08T01:00:00Z", "output_tokens": 20},
    ]

    def feed(records: list[dict[str, Any]], stage: Stage) -> Collector:
        c = Collector(RELAYCORE, start, end, stage, chunk_rows=2)
        for i, r in enumerate(records):
            c.add_line(i + 1, "d.jsonl", json.dumps(r).encode(), None)
        return c

    with Stage(engine, RELAYCORE, start, end) as stage:
        summary = land(engine, feed(first, stage).result, "files", stage=stage)
    assert summary.counts == {"read": 5, "accepted": 4, "duplicates": 1, "quarantined": 0}
    query = sa.text("select request_id, day, output_tokens from relaycore_usage order by request_id")
    with engine.connect() as conn:
        landed = [(r, str(d), o) for r, d, o in conn.execute(query)]
    tables_before = _table_names(engine)
    assert landed == [
        ("moved", "2026-04-08", 20),
        ("next-day", "2026-04-08", 500),
        ("other", "2026-04-08", 500),
        ("stays", "2026-04-07", 500),
    ]
    with pytest.raises(RuntimeError, match="went away"), Stage(engine, RELAYCORE, start, end) as stage:
        feed([{**r, "request_id": f"new-{i}"} for i, r in enumerate(first)], stage)
        stage.wait()
        assert stage.rows == 4  # two chunks were written before the source failed
        raise RuntimeError("the source went away")
    with engine.connect() as conn:
        assert [(r, str(d), o) for r, d, o in conn.execute(query)] == landed
    assert _table_names(engine) == tables_before  # no loading table or new child left
    with Stage(engine, RELAYCORE, start, end) as stage:  # a row of a day outside the window is refused
        row = describe(RELAYCORE).decode(json.dumps({**USAGE, "timestamp": "2026-04-09T00:00:00Z"}).encode())
        assert row is not None
        with pytest.raises(ValueError, match="outside the window"):
            stage([row], set())  # written inline on SQLite, by the writer thread on PostgreSQL
            stage.wait()


def test_a_key_sent_three_times_across_chunks_keeps_its_latest_copy(engine) -> None:  # type: ignore[no-untyped-def]
    """Re-sent copies wait in their own table and replace their key's earlier copies when the day is
    swapped in: the third copy of a key wins over the first (in the stage) and the second (among the
    re-sent), both counted as duplicates, and a second landing on the same connections does the same."""
    start, end = day_window(date(2026, 4, 7))

    def record(rid: str, hour: int, out: int) -> bytes:
        return json.dumps(
            {**USAGE, "request_id": rid, "timestamp": f"2026-04-07T{hour:02d}:00:00Z", "output_tokens": out}
        ).encode()

    lines = [record("a", 1, 10), record("b", 2, 50), record("c", 3, 50), record("a", 4, 20)]
    lines += [record("d", 5, 50), record("a", 6, 30), record("e", 7, 50)]
    after: list[set[str]] = []
    for _ in range(2):  # the second replaces the first, on connections the first returned to the pool
        with Stage(engine, RELAYCORE, start, end) as stage:
            c = Collector(RELAYCORE, start, end, stage, chunk_rows=2)
            for i, raw in enumerate(lines):
                c.add_line(i + 1, "d.jsonl", raw, None)
            summary = land(engine, c.result, "files", stage=stage)
        assert summary.counts == {"read": 7, "accepted": 5, "duplicates": 2, "quarantined": 0}
        with engine.connect() as conn:
            landed = conn.execute(sa.text("select request_id, output_tokens from relaycore_usage order by 1")).all()
        assert [tuple(r) for r in landed] == [("a", 30), ("b", 50), ("c", 50), ("d", 50), ("e", 50)]
        after.append(_table_names(engine))
    assert after[0] == after[1]  # the day's child replaced, nothing left behind
