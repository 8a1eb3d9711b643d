"""`cams run`: materialize the price book, then every partitioned asset for a range of days in one
single-run backfill (usage, costs, reconciliation, the FOCUS export), headless, in a Dagster instance;
then budgets and selection as of the run's as-of; then summarize from the warehouse."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import Engine, Integer, and_, func, select

from assets.as_of import AS_OF_TAG, end_of_days
from cams import config as cams_config
from cams.reconcile import CATEGORIES
from cams.sources.timeutil import parse_rfc3339
from cams.warehouse import schema as t
from pipelines.definitions import BACKFILL_JOB, BUDGET_JOB, PRICE_BOOK_JOB, SELECTION_JOB, build_definitions
from pipelines.schedules import RANGE_END_TAG, RANGE_START_TAG

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class RunError(RuntimeError):
    """A run that did not succeed, with what failed."""


def instance_for(home: str | Path | None = None) -> dg.DagsterInstance:
    """DAGSTER_HOME if set, else .cams/dagster_home (created), so `dagster dev` can browse the runs."""
    if home is None and os.environ.get("DAGSTER_HOME"):
        given = Path(os.environ["DAGSTER_HOME"])
        if not given.is_dir():
            from pipelines.cli import CliError

            raise CliError(f"DAGSTER_HOME {given} is not a folder: create it (mkdir -p) or unset DAGSTER_HOME")
        return dg.DagsterInstance.get()
    path = Path(home or ".cams/dagster_home").resolve()
    path.mkdir(parents=True, exist_ok=True)
    settings = path / "dagster.yaml"
    if not settings.exists():  # a local home: no telemetry, nothing leaves the machine
        settings.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(path)
    return dg.DagsterInstance.get()


PID_TAG, HOST_TAG = "cams/pid", "cams/host"


def _process_tags() -> dict[str, str]:
    """Who runs this `cams run`: so the next one can tell a run whose process died from a live one."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs an earlier `cams run` on this host left STARTED when it was killed.

    `execute_in_process` runs have no run worker for Dagster's run monitoring to watch, so a killed
    `cams run` left them STARTED for ever: the UI showed them running and sensors waited on them.
    """
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    ):
        pid = run.tags.get(PID_TAG)
        if run.tags.get(HOST_TAG) != host or not (pid or "").isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, f"the cams run process ({pid} on {host}) ended before this run finished")
        failed.append(run.run_id)
    return failed


def _money(value: Any) -> str:
    return f"{Decimal(str(value or 0)).quantize(Decimal('0.0000000001')):f}"


def run_range(
    start: date,
    end: date,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    progress: Callable[[str], None] = lambda _m: None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Materialize [start, end] (inclusive days); returns the SPEC §8 `--json` summary.

    Budgets and selection are evaluated as of `as_of`, default the end of the range (now when the
    range reaches today), so a backfill of May gives May's answers whenever it runs."""
    if end < start:
        raise RunError(f"--end {end} is before --start {start}")
    for run_id in fail_abandoned_runs(instance):
        progress(f"marked run {run_id} failed: the cams run that started it was killed")
    progress("loading the price book")
    price_job = defs.resolve_job_def(PRICE_BOOK_JOB)
    result = price_job.execute_in_process(
        instance=instance, run_config=QUIET, tags={"cams/trigger": "cams run", **_process_tags()}, raise_on_error=False
    )
    if not result.success:
        raise RunError(f"price_book failed: {_failure(result)}")
    as_of = as_of or end_of_days(end)
    range_tags = {
        RANGE_START_TAG: start.isoformat(),
        RANGE_END_TAG: end.isoformat(),
        "cams/trigger": "cams run",
        **_process_tags(),
    }
    progress(f"ingesting, costing, rolling up, reconciling and exporting {start} .. {end}")
    result = defs.resolve_job_def(BACKFILL_JOB).execute_in_process(
        instance=instance, run_config=QUIET, tags=range_tags, raise_on_error=False
    )
    if not result.success:
        raise RunError(f"{BACKFILL_JOB} failed: {_failure(result)}")
    usage_run = result.run_id
    as_of_tags = {AS_OF_TAG: as_of.isoformat(), "cams/trigger": "cams run", **_process_tags()}
    progress(f"evaluating budgets as of {as_of.isoformat()} and delivering alerts")
    result = defs.resolve_job_def(BUDGET_JOB).execute_in_process(
        instance=instance, run_config=QUIET, tags=as_of_tags, raise_on_error=False
    )
    if not result.success:
        raise RunError(f"{BUDGET_JOB} failed: {_failure(result)}")
    progress(f"publishing model quality and a new selection table version as of {as_of.isoformat()}")
    sel = defs.resolve_job_def(SELECTION_JOB).execute_in_process(
        instance=instance, run_config=QUIET, tags=as_of_tags, raise_on_error=False
    )
    warnings: list[str] = []
    if not sel.success:
        refused = [
            e for e in sel.get_asset_check_evaluations() if e.check_name == "no_task_tier_goes_dark" and not e.passed
        ]
        if not refused:
            raise RunError(f"{SELECTION_JOB} failed: {_failure(sel)}")
        rows = refused[0].metadata["refused_for"].value
        warnings.append(f"selection table refused, the served version stays: would go dark for {rows}")
        progress(f"warning: {warnings[-1]}")
    fired = 0
    for mat in result.asset_materializations_for_node("budget_alerts"):
        fired += int(mat.metadata["alerts_fired"].value)
    engine = defs.resources["warehouse"].engine()
    summary = summarize(engine, start, end, usage_run, alerts_fired=fired)
    for source, counts in summary["records"].items():
        if counts["read"] == 0:  # a wrong folder or URL looks exactly like a quiet day
            warnings.append(
                f"{source} read nothing for {start}..{end}: check sources.{source} in cams.yaml "
                "(its drop_dir, base_url or database)"
            )
            progress(f"warning: {warnings[-1]}")
    return {**summary, "warnings": warnings}


def _failure(result: Any) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            return f"{event.step_key}: {err.message.strip() if err else 'failed'}"
    return "failed"


def summarize(
    engine: Engine, start: date, end: date, run_id: str | None = None, alerts_fired: int = 0
) -> dict[str, Any]:
    """Counts, spend and unpriced requests for the days, read back from the warehouse."""
    last = end + timedelta(days=1)
    ct, sh = t.cost_tracking, t.cost_sync_history
    records: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for source in ("relaycore", "auterity"):
            q = select(
                func.sum(sh.c.read), func.sum(sh.c.accepted), func.sum(sh.c.duplicates), func.sum(sh.c.quarantined)
            ).where(sh.c.source == source, sh.c.status == "success")
            q = q.where(sh.c.run_id == run_id) if run_id else q
            row = conn.execute(q).one()
            records[source] = dict(
                zip(("read", "accepted", "duplicates", "quarantined"), (int(v or 0) for v in row), strict=True)
            )
        in_range = and_(ct.c.day >= start, ct.c.day < last)
        cost, charged, unpriced = conn.execute(
            select(
                func.sum(ct.c.cost_usd), func.sum(ct.c.charged_usd), func.sum(func.cast(ct.c.unpriced, Integer))
            ).where(in_range)
        ).one()
        rs = t.cost_reconciliation_summary
        recon = dict.fromkeys(CATEGORIES, 0)
        rows = conn.execute(
            select(rs.c.category, func.sum(rs.c.requests))
            .where(rs.c.day >= start, rs.c.day < last)
            .group_by(rs.c.category)
        ).all()
        recon.update({c: int(n) for c, n in rows})
        bs = t.budget_status
        budgets = [
            {"budget_id": b, "state": st, "spent_usd": _money(sp), "forecast_usd": _money(fc)}
            for b, st, sp, fc in conn.execute(
                select(bs.c.budget_id, bs.c.state, bs.c.spent_usd, bs.c.forecast_usd).order_by(bs.c.budget_id)
            )
        ]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "records": records,
        "cost_usd": _money(cost),
        "relaycore_charged_usd": _money(charged),
        "unpriced_requests": int(unpriced or 0),
        "reconciliation": recon,
        "alerts_fired": alerts_fired,
        "budgets": budgets,
    }


def cli_run(args: Any) -> int:
    from pipelines.cli import CliError

    try:
        start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    except ValueError as exc:
        raise CliError(f"dates must be YYYY-MM-DD: {exc}") from None
    cfg = cams_config.load()
    if end < start:
        raise CliError(f"--end {end} is before --start {start}")
    first = date.fromisoformat(cfg.partitions_start)
    if start < first:
        raise CliError(
            f"--start {start} is before the first daily partition {first}: "
            "start later, or move partitions.start_date in cams.yaml"
        )
    from pipelines.cli import _warehouse

    _warehouse().dispose()  # a warehouse that cannot be opened is one line here, not a failed run
    defs = build_definitions(cfg)
    instance = instance_for()

    def progress(msg: str) -> None:
        print(f"cams run: {msg}", file=sys.stderr, flush=True)

    try:
        as_of = parse_rfc3339(args.as_of, "--as-of") if args.as_of else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        summary = run_range(start, end, instance, defs, progress, as_of)
    except RunError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(summary))
    else:
        print(human_summary(summary))
    return 0


def human_summary(summary: dict[str, Any]) -> str:
    """The run summary for a terminal: one line per source, money as people read it."""
    from cams.money import usd

    lines = [f"{summary['start']} .. {summary['end']}"]
    for source, c in summary["records"].items():
        lines.append(
            f"  {source + ':':10} read {c['read']:,}, accepted {c['accepted']:,}, "
            f"duplicates {c['duplicates']:,}, quarantined {c['quarantined']:,}"
        )
    lines.append(
        f"  cost {usd(summary['cost_usd'])} (RelayCore charged {usd(summary['relaycore_charged_usd'])}), "
        f"unpriced requests {summary['unpriced_requests']:,}, alerts fired {summary['alerts_fired']}"
    )
    for b in summary["budgets"]:
        lines.append(
            f"  budget {b['budget_id']}: {b['state']}, spent {usd(b['spent_usd'])}, forecast {usd(b['forecast_usd'])}"
        )
    lines += [f"  warning: {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)
