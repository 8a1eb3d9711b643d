"""cams.yaml: a typo is an error with its path and a guess, never a silent default (SPEC §8)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cams import config as cams_config

CAMS = str(Path(sys.executable).with_name("cams"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"budget": []}, "cams.yaml.budget: unknown key (did you mean 'budgets'?)"),
        (
            {"sources": {"relaycore": {"drop_dri": "x"}}},
            "sources.relaycore.drop_dri: unknown key (did you mean 'drop_dir'?)",
        ),
        ({"alerts": {"smtp": {"hots": "x"}}}, "alerts.smtp.hots: unknown key (did you mean 'host'?)"),
        (
            {"pricing": {"overrides": [{"model": "m", "input_cost_per_tokn": 1}]}},
            "pricing.overrides[0].input_cost_per_tokn: unknown key (did you mean 'input_cost_per_token'?)",
        ),
        (
            {
                "budgets": [
                    {
                        "id": "b",
                        "scope": "org",
                        "scope_id": "a",
                        "period": "daily",
                        "amount_usd": 1,
                        "thresholds": [{"percnt": 5}],
                    }
                ]
            },
            "budgets[0].thresholds[0].percnt: unknown key (did you mean 'percent'?)",
        ),
        ({"selection": {"succes_floor": 0.9}}, "selection.succes_floor: unknown key (did you mean 'success_floor'?)"),
        ({"reconciliation": {"nope": 1}}, "reconciliation.nope: unknown key"),
        ({"partitions": {"start": "2026-01-01"}}, "partitions.start: unknown key (did you mean 'start_date'?)"),
    ],
)
def test_unknown_keys_name_their_path_and_a_guess(data: dict, message: str) -> None:
    with pytest.raises(cams_config.ConfigError) as err:
        cams_config.parse(data)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"selection": {"success_floor": 2}}, "selection.success_floor must be a number from 0 to 1, not 2"),
        ({"selection": {"priors": {"m": "high"}}}, "selection.priors.m must be a number from 0 to 1"),
        ({"selection": {"candidates": "gpt-4o"}}, None),  # one name is a list of one
        ({"alerts": {"max_attempts": "three"}}, "alerts.max_attempts must be a whole number from 1 to 100"),
        ({"alerts": {"sensor_interval_s": 0}}, "alerts.sensor_interval_s must be a whole number from 1 to 86400"),
        ({"reconciliation": {"trailing_days": 90}}, "reconciliation.trailing_days must be a whole number from 1 to 60"),
        ({"pricing": {"overrides": {"model": "m"}}}, "pricing.overrides must be a list of mappings"),
        ({"budgets": {"id": "b"}}, "budgets must be a list of budgets"),
    ],
)
def test_sections_are_typed_once(data: dict, message: str | None) -> None:
    """A wrong value stops at parse time with its path, not in the middle of a run."""
    if message is None:
        assert cams_config.parse(data).selection.candidates == ("gpt-4o",)
        return
    with pytest.raises(cams_config.ConfigError) as err:
        cams_config.parse(data)
    assert message in str(err.value)


def test_parsed_sections_are_what_downstream_takes() -> None:
    cfg = cams_config.parse(
        {
            "budgets": [{"id": "b", "scope": "org", "scope_id": "a", "period": "daily", "amount_usd": 5}],
            "alerts": {"allowed_hosts": ["Hooks.Example"], "max_attempts": 2},
            "reconciliation": {"trailing_days": 5},
            "pricing": {"discounts": [{"provider": "openai", "percent": 10}]},
        }
    )
    from cams.budgets.model import Budget

    assert isinstance(cfg.budgets[0], Budget) and cfg.budgets[0].amount_usd == 5
    assert cfg.alerts.allowed_hosts == ("hooks.example",) and cfg.alerts.max_attempts == 2
    assert cfg.reconciliation.trailing_days == 5 and cfg.reconciliation.rel_tolerance == 0.01
    assert cfg.pricing.discounts == ({"provider": "openai", "percent": 10},) and cfg.pricing.snapshot is None
    assert cfg.selection.task_types == ("chat",) and cfg.selection.success_floor == 0.95


def test_user_named_keys_and_price_keys_pass() -> None:
    cfg = cams_config.parse(
        {
            "selection": {"priors": {"acme-finetune": 0.8}, "tiers": {"premium": 0.9}},
            "pricing": {
                "overrides": [
                    {
                        "model": "m",
                        "provider": "custom",
                        "input_cost_per_token": 1e-6,
                        "output_cost_per_token_batches": 1e-6,
                        "input_cost_per_token_above_200k_tokens": 2e-6,
                        "max_input_tokens": 1000,
                    }
                ]
            },
            "alerts": {"allowed_hosts": ["ops.internal"], "secret_envs": ["X"]},
        }
    )
    assert cfg.selection.priors == {"acme-finetune": 0.8}


def test_a_typo_stops_cams_run_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "cams.yaml").write_text("budget:\n  - id: x\n")
    proc = subprocess.run(
        [CAMS, "price", "gpt-4o-mini", "--input-tokens", "1", "--output-tokens", "1"],
        env={"PATH": "/usr/bin:/bin", "CAMS_CONFIG": str(tmp_path / "cams.yaml"), "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["cams: error: cams.yaml.budget: unknown key (did you mean 'budgets'?)"]


def test_run_as_of_takes_the_tag_the_range_end_or_the_tick() -> None:
    """The evaluation time of a run: its cams/as_of tag, else its partition range's end, else its tick."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    import dagster as dg

    from assets.as_of import run_as_of

    def ctx(tags: dict[str, str], window: tuple[datetime, datetime] | None = None):  # type: ignore[no-untyped-def]
        return SimpleNamespace(
            run=SimpleNamespace(tags=tags),
            has_partition_key_range=window is not None,
            partition_time_window=dg.TimeWindow(*window) if window else None,
        )

    may = (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 8, tzinfo=UTC))
    tick = {".dagster/scheduled_execution_time": "2026-06-01T01:30:00+00:00"}
    assert run_as_of(ctx({"cams/as_of": "2026-05-03T12:00:00Z"}, may)) == datetime(2026, 5, 3, 12, tzinfo=UTC)
    assert run_as_of(ctx({}, may)) == datetime(2026, 5, 7, 23, 59, 59, 999999, tzinfo=UTC)
    assert run_as_of(ctx(tick)) == datetime(2026, 6, 1, 1, 30, tzinfo=UTC)
    before = datetime.now(UTC)
    assert before <= run_as_of(ctx({})) <= datetime.now(UTC)
    future = (datetime(2999, 1, 1, tzinfo=UTC), datetime(2999, 1, 2, tzinfo=UTC))
    assert run_as_of(ctx({}, future)) <= datetime.now(UTC)  # a range reaching past today: now


def test_cams_version() -> None:
    proc = subprocess.run([CAMS, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().startswith("cams 0.")


def test_every_command_and_config_key_is_documented() -> None:
    """docs/configuration.md lists every `cams` command; every cams.yaml key appears somewhere in docs/."""
    import argparse

    from cams.cli import build_parser
    from cams.config_keys import ANY_KEYS, SCHEMA, Leaf

    repo = Path(__file__).resolve().parents[1]
    table = (repo / "docs" / "configuration.md").read_text()

    def commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        out = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    nested = commands(sub, f"{prefix} {name}")
                    out += nested or [f"{prefix} {name}"]
        return out

    lines = table.replace("\\|", "|").splitlines()
    missing = [
        c
        for c in commands(build_parser(), "cams")
        if not any(c.rsplit(" ", 1)[0] in line and c.rsplit(" ", 1)[1] in line for line in lines if "`cams" in line)
    ]
    assert not missing, f"commands missing from docs/configuration.md: {missing}"

    def keys(schema: object) -> list[str]:
        if schema is Leaf or schema == ANY_KEYS:
            return []
        if isinstance(schema, list):
            return keys(schema[0])
        if isinstance(schema, tuple):
            schema = schema[0]
        assert isinstance(schema, dict)
        return [k for name, sub in schema.items() for k in (name, *keys(sub))]

    reference = table[table.index("## Every key") :]
    undocumented = sorted({k for k in keys(SCHEMA) if not re.search(rf"[`.<|]{re.escape(k)}[`.>\\\[|]", reference)})
    assert not undocumented, f"cams.yaml keys missing from docs/configuration.md#every-key: {undocumented}"


def _cams(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAMS, *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_warehouse_and_range_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    from tests.conftest import PG_URL

    cases = [
        (["keys", "list"], {"CAMS_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/folder/w.db"}, "does not exist"),
        (["run", "--start", "2026-11-01", "--end", "2026-11-01"], {"CAMS_DATABASE_URL": "nonsense"}, "not a database"),
        (["run", "--start", "2025-03-01", "--end", "2025-03-01"], {}, "before the first daily partition 2026-01-01"),
        (["run", "--start", "2026-03-02", "--end", "2026-03-01"], {}, "is before --start"),
        (["run", "--start", "2026-03-02", "--end", "2026-03-02"], {"DAGSTER_HOME": "/no/such/home"}, "DAGSTER_HOME"),
    ]
    if PG_URL:
        missing = PG_URL.rsplit("/", 1)[0] + "/no_such_database_here"
        cases.append((["export-table", "--out", "t.json"], {"CAMS_DATABASE_URL": missing}, 'database "no_such'))
        cases.append((["serve"], {"CAMS_DATABASE_URL": "postgresql://postgres:pw@127.0.0.1:1/x"}, "Connection refused"))
    for args, env, says in cases:
        proc = _cams(args, tmp_path, **env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and says in lines[0], (args, proc.returncode, lines[-3:])
        assert "pw@" not in lines[0]  # a password never reaches the terminal
    assert not (tmp_path / "no").exists()  # nothing was created for the mistaken URL


def test_a_run_whose_sources_read_nothing_says_so(tmp_path: Path) -> None:
    proc = _cams(["run", "--start", "2026-03-02", "--end", "2026-03-02", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [w.split(" read nothing")[0] for w in summary["warnings"]] == ["relaycore", "auterity"]
    human = _cams(["run", "--start", "2026-03-02", "--end", "2026-03-02"], tmp_path)
    assert "  warning: relaycore read nothing" in human.stdout and "{'read'" not in human.stdout
    assert "cost $0.00" in human.stdout


def test_a_restarting_warehouse_is_waited_for_and_a_wrong_one_is_not(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`the database system is starting up` (and the refusals between shutdown and start) is a restart: a
    command waits for it; a refusal out of the blue is a wrong URL, said at once."""
    import sqlalchemy as sa

    from cams import cli

    said = iter(["the database system is shutting down", "Connection refused", "the database system is starting up"])
    real_connect = sa.engine.Engine.connect

    def flaky(self):  # type: ignore[no-untyped-def]
        reason = next(said, None)
        if reason is not None:
            raise sa.exc.OperationalError("connect", {}, Exception(f"FATAL:  {reason}"))
        return real_connect(self)

    slept: list[float] = []
    monkeypatch.setenv("CAMS_DATABASE_URL", f"sqlite:///{tmp_path}/w.db")
    monkeypatch.setattr(sa.engine.Engine, "connect", flaky)
    monkeypatch.setattr(cli.time, "sleep", slept.append)
    cli._warehouse().dispose()
    assert slept == [1.0, 1.0, 1.0]  # three failures waited out, then migrated and opened
    said = iter(["Connection refused"])
    with pytest.raises(cli.CliError, match="check CAMS_DATABASE_URL"):
        cli._warehouse()
    said = iter(["the database system is starting up"] * 1000)
    monkeypatch.setattr(cli, "RESTART_WAIT_S", 0)
    with pytest.raises(cli.CliError, match="did not come back within 0 s"):
        cli._warehouse()
