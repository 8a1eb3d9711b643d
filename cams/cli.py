"""The `cams` command (SPEC §8). Only `run` and `demo` import Dagster; everything else starts fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class CliError(Exception):
    """An error reported as one clear line and exit status 2."""


def _book_for_quotes() -> Any:
    """The book the warehouse's next run prices with (its dated versions and API prices), or the
    configured one when there is no warehouse yet."""
    from cams import config as cfg
    from cams.pricing.quote import load_book

    config = cfg.load()
    url = cfg.database_url()
    if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists():
        return load_book(config.pricing)
    try:
        from sqlalchemy.exc import SQLAlchemyError

        from cams.pricing import store as pricebook_store
        from cams.warehouse.db import make_engine

        return pricebook_store.current_book(make_engine(url), config.pricing)
    except (SQLAlchemyError, OSError):  # not reachable or not migrated yet: the configured book
        return load_book(config.pricing)


def _cmd_price(args: argparse.Namespace) -> int:
    from cams.pricing.quote import QuoteError, quote

    book = _book_for_quotes()
    if args.batch:
        failures = 0
        for lineno, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise QuoteError("each line must be a JSON object")
                result = quote(book, request)
            except (json.JSONDecodeError, QuoteError) as exc:
                failures += 1
                result = {"line": lineno, "error": str(exc)}
            print(json.dumps(result))
        return 1 if failures else 0
    if not args.model or args.input_tokens is None or args.output_tokens is None:
        raise CliError("cams price needs MODEL --input-tokens N --output-tokens N (or --batch)")
    request = {
        "model": args.model,
        "input_tokens": args.input_tokens,
        "output_tokens": args.output_tokens,
        "cached_input_tokens": args.cached_input_tokens,
        "cache_creation_input_tokens": args.cache_creation_input_tokens,
        "reasoning_tokens": args.reasoning_tokens,
        "service_tier": args.service_tier,
        "at": args.at,
    }
    try:
        print(json.dumps(quote(book, request), indent=2))
    except QuoteError as exc:
        raise CliError(str(exc)) from None
    return 0


def _learnt_from_warehouse() -> Any:
    """Calibration and output medians when the warehouse has them; an estimate never needs them."""
    from cams import config as cfg
    from cams.estimation.estimator import Learnt

    url = cfg.database_url()
    if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists():
        return Learnt()
    try:
        from cams.estimation import store
        from cams.warehouse.db import make_engine

        return store.load_learnt(make_engine(url))
    except Exception:  # no warehouse yet, or not reachable: plain tokenizer counts
        return Learnt()


def _cmd_estimate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from cams.estimation.estimator import Estimator
    from cams.pricing.cost import TokenUsage, request_cost

    text = args.prompt if args.prompt is not None else sys.stdin.read()
    messages = None
    if args.messages:
        try:
            messages = json.loads(text)
            assert isinstance(messages, list) and all(isinstance(m, dict) for m in messages)
        except (ValueError, AssertionError):
            raise CliError("--messages expects a JSON list of {role, content} on stdin or --prompt") from None
    entry = _book_for_quotes().lookup(args.model, datetime.now(UTC))
    if entry is None:
        raise CliError(f"unknown model {args.model!r}")
    estimator = Estimator(learnt=_learnt_from_warehouse())
    est = estimator.estimate(args.model, None if messages else text, messages, args.max_output_tokens, args.task_type)
    cost = request_cost(entry.rates("standard", est.input_tokens), TokenUsage(est.input_tokens, est.output_tokens))
    print(json.dumps({**est.response(), "estimated_cost_usd": f"{cost:f}"}))
    return 0


def _cmd_export_focus(args: argparse.Namespace) -> int:
    from datetime import date

    from cams import focus
    from cams.pricing import store as pricebook_store

    try:
        first, last = date.fromisoformat(args.start), date.fromisoformat(args.end)
    except ValueError:
        raise CliError("--start and --end are dates, YYYY-MM-DD") from None
    if last < first:
        raise CliError(f"--end {last} is before --start {first}")
    fmt = args.format or ("parquet" if args.out.endswith(".parquet") else "csv")
    engine = _warehouse()
    try:
        book = pricebook_store.load(engine)
    except pricebook_store.PriceBookMissing as exc:
        raise CliError(str(exc)) from None
    rows = focus.export(engine, first, last, book, billing_account=args.billing_account, issuer=args.issuer)
    problems = focus.violations(rows)
    if problems:
        raise CliError("FOCUS rules broken: " + "; ".join(problems))
    n = focus.write(rows, args.out, fmt)
    print(json.dumps({"rows": n, "format": fmt, "out": args.out, "billed_usd": f"{sum(rows['BilledCost'], 0):f}"}))
    return 0


def _cmd_pricing_refresh(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from cams import config as cfg
    from cams.pricing import refresh
    from cams.pricing import store as pricebook_store
    from cams.pricing.book import to_utc

    try:
        snap = refresh.read_snapshot(args.source)
    except refresh.RefreshError as exc:
        raise CliError(str(exc)) from None
    if args.out:
        refresh.write_snapshot(snap, Path(args.out))
        print(json.dumps({"wrote": args.out, **snap["_meta"]}, indent=2))
        return 0
    now = datetime.now(UTC)
    try:
        effective = to_utc(args.effective_from) if args.effective_from else now
    except ValueError:
        raise CliError(f"--effective-from is not an RFC 3339 time: {args.effective_from!r}") from None
    assert effective is not None
    config = cfg.load()
    engine = _warehouse()
    pricebook_store.versions(engine, _committed_snapshot(config))  # the first load records the committed one
    added = pricebook_store.add_version(engine, snap, effective, f"cams pricing refresh --source {args.source}")
    if added is None:
        print(json.dumps({"status": "unchanged", "note": "the version in force then has these prices"}, indent=2))
        return 0
    book = pricebook_store.current_book(engine, config.pricing)
    pricebook_store.store(engine, book)
    out = {"status": "added", "version": added.version_id, "effective_from": effective.isoformat(), **snap["_meta"]}
    if effective < now:
        out["warning"] = (
            "dated into the past: re-running days from effective_from on reprices them, "
            "and cost_recomputations records each changed day"
        )
    print(json.dumps(out, indent=2))
    return 0


def _committed_snapshot(config: Any) -> dict[str, Any]:
    from cams.pricing import snapshot

    return snapshot.load(config.pricing.snapshot)


RESTART_WAIT_S = 60  # how long a command waits for a warehouse that is restarting before it gives up
RESTARTING = ("shutting down", "starting up", "in recovery", "not yet accepting connections")


def _warehouse() -> Any:
    """The configured warehouse, migrated to the newest schema; one line naming the fix when it cannot
    be opened (a missing folder or database, a wrong host or password), never a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from cams import config as cfg
    from cams.warehouse.db import make_engine, migrate, normalize_url

    url = cfg.database_url()
    try:
        shown = make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:
        raise CliError(f"CAMS_DATABASE_URL is not a database URL: {url!r}") from None
    if url.startswith("sqlite") and "///" in url and ":memory:" not in url:
        folder = Path(url.split("///", 1)[1].split("?", 1)[0]).parent
        if not folder.is_dir():
            raise CliError(f"the warehouse's folder {folder} does not exist: create it or fix CAMS_DATABASE_URL")
    engine = make_engine(url)
    deadline, restarting = time.monotonic() + RESTART_WAIT_S, False
    while True:
        try:
            with engine.connect():
                pass
            break
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
            cause = next((line.split("FATAL:", 1)[1].strip() for line in reason if "FATAL:" in line), reason[0])
            # a server shutting down or starting up is back in seconds (and refuses connections in between)
            restarting = any(w in cause for w in RESTARTING) or (restarting and "refused" in cause)
            if restarting and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            if restarting:
                raise CliError(f"the warehouse {shown} did not come back within {RESTART_WAIT_S} s: {cause}") from None
            raise CliError(f"cannot open the warehouse {shown}: {cause} (check CAMS_DATABASE_URL)") from None
    migrate(engine)
    return engine


def _cmd_simulate(args: argparse.Namespace) -> int:
    from cams.simulator import cli as sim_cli

    return sim_cli.main(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cams import config as cfg
    from cams.api.app import create_app

    config = cfg.load()  # a cams.yaml mistake stops here, before the server starts
    engine = _warehouse()
    if args.max_body_bytes < 1024:
        raise CliError("--max-body-bytes must be at least 1024")
    # uvloop and httptools measured fastest here (docs/benchmarks.md); one access-log line per request
    # cost a quarter of the throughput, so it is off unless asked for
    server = {"loop": "uvloop", "http": "httptools", "access_log": args.access_log, "log_level": "info"}
    if args.workers <= 1:
        app = create_app(
            engine, refresh_s=args.refresh_s, max_body_bytes=args.max_body_bytes, writer_process=True, config=config
        )
        uvicorn.run(app, host=args.host, port=args.port, **server)
        return 0
    engine.dispose()  # each worker process opens its own
    os.environ["CAMS_REFRESH_S"] = str(args.refresh_s)
    os.environ["CAMS_MAX_BODY_BYTES"] = str(args.max_body_bytes)
    factory = "cams.api.app:app_from_env"
    uvicorn.run(factory, factory=True, workers=args.workers, host=args.host, port=args.port, **server)
    return 0


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from cams.api.keys import create_key

    engine = _warehouse()
    try:
        key = create_key(engine, [s.strip() for s in args.scopes.split(",") if s.strip()], args.org, args.name)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(key)
    print("store it now: only its hash is kept", file=sys.stderr)
    return 0


def _cmd_keys_list(args: argparse.Namespace) -> int:
    from cams.api.keys import list_keys

    rows = list_keys(_warehouse())
    if args.json:
        print(json.dumps(rows, default=str, indent=1))
        return 0
    print(f"{'id':14} {'scopes':18} {'org':14} {'created':20} {'revoked':20} name")
    for r in rows:
        created = f"{r['created_at']:%Y-%m-%d %H:%M:%S}" if r["created_at"] else ""
        revoked = f"{r['revoked_at']:%Y-%m-%d %H:%M:%S}" if r["revoked_at"] else "-"
        print(f"{r['id']:14} {r['scopes']:18} {r['org_id'] or '(any)':14} {created:20} {revoked:20} {r['name'] or ''}")
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from cams.api.keys import revoke_key

    if not revoke_key(_warehouse(), args.key_id):
        raise CliError(f"no live API key with id {args.key_id!r} (see `cams keys list`)")
    print(f"revoked {args.key_id}; servers refuse it from their next refresh (--refresh-s)", file=sys.stderr)
    return 0


def _cmd_keys_rotate(args: argparse.Namespace) -> int:
    from cams.api.keys import rotate_key

    try:
        key = rotate_key(_warehouse(), args.key_id)
    except LookupError as exc:
        raise CliError(str(exc)) from None
    print(key)
    print(f"store it now: only its hash is kept; {args.key_id} is revoked", file=sys.stderr)
    return 0


def _cmd_export_table(args: argparse.Namespace) -> int:
    from cams.selection.client import export

    try:
        doc = export(_warehouse(), Path(args.out))
    except LookupError as exc:
        raise CliError(str(exc)) from None
    print(f"wrote {args.out}: table {doc['version']}, {len(doc['table']['rows'])} rows", file=sys.stderr)
    return 0


def _code_location() -> None:
    """Make the Dagster code location (`pipelines/`, `assets/`, `resources/`) importable.

    Those folders are not installed as packages (names that generic would collide with other projects'
    modules); they live beside `workspace.yaml` in the project folder (a checkout, the image's /app).
    `CAMS_PROJECT_DIR` names that folder; by default it is the one holding this `cams` package (an
    editable install, the image) or else the working directory."""
    given = os.environ.get("CAMS_PROJECT_DIR")
    candidates = [Path(given)] if given else [Path(__file__).resolve().parent.parent, Path.cwd()]
    for root in candidates:
        if (root / "pipelines" / "definitions.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            # and for the processes a run's steps execute in (the multiprocess executor's children)
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            if str(root) not in paths:
                os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *paths])
            return
    where = f"CAMS_PROJECT_DIR={given}" if given else "this folder"
    raise CliError(
        f"no CAMS code location (pipelines/definitions.py) in {where}: run from the project folder "
        "or set CAMS_PROJECT_DIR to it"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from datetime import date

    from cams import config as cfg
    from cams import report
    from cams.sources.timeutil import parse_rfc3339

    try:
        start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    except ValueError as exc:
        raise CliError(f"dates must be YYYY-MM-DD: {exc}") from None
    config = cfg.load()
    if end < start:
        raise CliError(f"--end {end} is before --start {start}")
    first = date.fromisoformat(config.partitions_start)
    if start < first:
        raise CliError(
            f"--start {start} is before the first daily partition {first}: "
            "start later, or move partitions.start_date in cams.yaml"
        )
    try:
        as_of = parse_rfc3339(args.as_of, "--as-of") if args.as_of else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    _warehouse().dispose()  # a warehouse that cannot be opened is one line here, not a failed run
    _code_location()
    from pipelines.definitions import build_definitions
    from pipelines.runner import RunError, RunFailed, instance_for, run_range

    def progress(msg: str) -> None:
        print(f"cams run: {msg}", file=sys.stderr, flush=True)

    try:
        summary = run_range(start, end, instance_for(), build_definitions(config), progress, as_of)
    except RunFailed as exc:  # the run itself failed: status 1 (2 is for what the command was asked)
        print(f"cams: error: {exc}", file=sys.stderr)
        return 1
    except RunError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(summary) if args.json else report.as_text(summary))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _code_location()
    from pipelines import demo

    return demo.main(args)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cams")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cams", description="Cost-Aware Model Switching")
    parser.add_argument("--version", action="version", version=f"cams {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="materialize every partitioned asset for the days, then downstream")
    p.add_argument("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", required=True, help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--as-of", help="evaluation time, RFC 3339 (default now)")
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("demo", help="simulate 14 days, run the whole graph on SQLite, print a summary")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--home", default=".cams/demo", help="folder for the demo's warehouse and Dagster home")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="fake RelayCore and Auterity servers on loopback (or write files)")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--end", help="last simulated day, YYYY-MM-DD (default yesterday UTC)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--requests-per-day", type=int, default=2000)
    p.add_argument("--write-files", metavar="DIR", help="write JSONL drops under DIR instead of serving")
    p.add_argument(
        "--otlp-spans-per-line", type=int, metavar="N", help="with --write-files: Auterity as OTLP JSON, N spans a line"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--relaycore-port", type=int, default=8701)
    p.add_argument("--auterity-port", type=int, default=8702)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("serve", help="the lookup service (FastAPI) on the warehouse's published table")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--refresh-s", type=float, default=5.0, help="how often to look for a new table version")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each with the table in memory")
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=10 * 1024 * 1024,
        help="larger request bodies get 413 before they are read (default 10 MiB)",
    )
    p.add_argument("--access-log", action="store_true", help="log one line per request (off: it costs throughput)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("keys", help="API keys of the lookup service")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    k = ksub.add_parser("create", help="print a new API key once (only its hash is stored)")
    k.add_argument("--scopes", default="read", help="comma-separated: read, write, admin")
    k.add_argument("--org", help="bind the key to one org")
    k.add_argument("--name", help="a label for the key")
    k.set_defaults(func=_cmd_keys_create)
    k = ksub.add_parser("list", help="every key's id, scopes, org and dates (never the key)")
    k.add_argument("--json", action="store_true", help="as JSON")
    k.set_defaults(func=_cmd_keys_list)
    k = ksub.add_parser("revoke", help="refuse a key from the servers' next refresh")
    k.add_argument("key_id", help="the id `cams keys list` shows (the part after cams_ in the key)")
    k.set_defaults(func=_cmd_keys_revoke)
    k = ksub.add_parser("rotate", help="print a new key with the same scopes and org; revoke the old one")
    k.add_argument("key_id")
    k.set_defaults(func=_cmd_keys_rotate)

    p = sub.add_parser("export-table", help="the published selection table as a versioned JSON file for gateways")
    p.add_argument("--out", required=True, help="file to write (docs/selection-table.md describes it)")
    p.set_defaults(func=_cmd_export_table)

    p = sub.add_parser("price", help="cost of one request (or --batch: JSON lines on stdin)")
    p.add_argument("model", nargs="?")
    p.add_argument("--input-tokens", type=int)
    p.add_argument("--output-tokens", type=int)
    p.add_argument("--cached-input-tokens", type=int, default=0)
    p.add_argument("--cache-creation-input-tokens", type=int, default=0)
    p.add_argument("--reasoning-tokens", type=int, default=0)
    p.add_argument("--service-tier", default="standard")
    p.add_argument("--at", help="price in force at this RFC 3339 time (default now)")
    p.add_argument("--batch", action="store_true")
    p.set_defaults(func=_cmd_price)

    p = sub.add_parser("estimate", help="tokens and cost of a prompt (stdin unless --prompt), offline")
    p.add_argument("model")
    p.add_argument("--prompt")
    p.add_argument("--messages", action="store_true", help="the input is a JSON list of chat messages")
    p.add_argument("--max-output-tokens", type=int, help="cap on output tokens (default: the observed median)")
    p.add_argument("--task-type", help="use the observed output-token median of this task")
    p.set_defaults(func=_cmd_estimate)

    p = sub.add_parser("export-focus", help="cost tracking as FinOps FOCUS 1.2 rows (CSV or Parquet)")
    p.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--end", required=True, help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--out", required=True, help="file to write (.csv or .parquet)")
    p.add_argument("--format", choices=["csv", "parquet"], help="default: from --out's extension")
    p.add_argument("--billing-account", default="relaycore", help="FOCUS BillingAccountId")
    p.add_argument("--issuer", default="RelayCore", help="FOCUS InvoiceIssuerName")
    p.set_defaults(func=_cmd_export_focus)

    p = sub.add_parser("pricing", help="price book maintenance")
    psub = p.add_subparsers(dest="pricing_command", required=True)
    r = psub.add_parser(
        "refresh", help="add a dated price version to the warehouse from a file, a URL or installed litellm"
    )
    r.add_argument("--source", default="litellm", help="'litellm', a path to a LiteLLM JSON, or an http(s) URL")
    r.add_argument(
        "--effective-from",
        help="RFC 3339 time the new prices take effect (default now; a past time reprices days re-run after it)",
    )
    r.add_argument("--out", help="write the snapshot to this file instead (to update a committed snapshot)")
    r.set_defaults(func=_cmd_pricing_refresh)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"cams: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cams: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cams price --batch | head`: the reader had enough, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except Exception as exc:  # one clear line, never a stack trace, for errors we know how to name
        from cams.config import ConfigError
        from cams.pricing.book import PricingConfigError

        if isinstance(exc, ConfigError | PricingConfigError | OSError):
            print(f"cams: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
