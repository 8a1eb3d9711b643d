"""Token estimation in the warehouse: the shared cache, estimates by request id, learnt calibration."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Float, and_, case, cast, func, select, true

from cams.estimation.calibration import GROUP_COLUMNS, learn_from_groups, ratio_groups
from cams.estimation.estimator import Learnt
from cams.warehouse import schema as t
from cams.warehouse.db import insert_new_rows, replace_rows, tune_for_a_day

if TYPE_CHECKING:  # `cams estimate` reads this module and must start without pandas
    import pandas as pd

CALIBRATION_WINDOW_DAYS = 30


def save_cache(engine: Engine, entries: Iterable[tuple[str, str, int]]) -> int:
    now = datetime.now(UTC)
    rows = [{"encoding": e, "text_hash": h, "tokens": n, "created_at": now} for e, h, n in entries]
    if rows:
        with engine.begin() as conn:
            insert_new_rows(conn, t.token_estimation_cache, rows)
    return len(rows)


def load_cache(engine: Engine, limit: int) -> list[tuple[str, str, int]]:
    """The newest `limit` entries, oldest first, so an LRU warmed with them evicts the oldest first."""
    c = t.token_estimation_cache.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.encoding, c.text_hash, c.tokens).order_by(c.created_at.desc()).limit(limit)).all()
    return [(r[0], r[1], int(r[2])) for r in reversed(rows)]


def record_estimates(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Estimates for known request ids; the first estimate of a request id is the one kept."""
    if rows:
        with engine.begin() as conn:
            insert_new_rows(conn, t.token_estimates, rows)
    return len(rows)


def estimate_pairs(engine: Engine, since: datetime, until: datetime | None = None) -> pd.DataFrame:
    """Each estimate in [since, until] next to the input tokens RelayCore reported for the same request."""
    import pandas as pd

    te, ct = t.token_estimates, t.cost_tracking
    q = (
        select(te.c.family, te.c.encoding, te.c.raw_input_tokens, ct.c.input_tokens.label("actual_input_tokens"))
        .join(ct, ct.c.request_id == te.c.request_id)
        .where(te.c.estimated_at >= since, ct.c.day >= (since - timedelta(days=1)).date())
    )
    if until is not None:
        q = q.where(te.c.estimated_at <= until, ct.c.day <= (until + timedelta(days=1)).date())
    with engine.connect() as conn:
        result = conn.execute(q)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def calibration_groups(engine: Engine, since: datetime, until: datetime) -> tuple[pd.DataFrame, int]:
    """`calibration.ratio_groups` of the estimates in [since, until] matched to their requests, and how many
    matched. On PostgreSQL the database groups them, so one row per family and encoding comes back: every
    estimate of 30 days read into pandas took 74 s and 4.9 GiB for 7.6M matches (bench day, eight days of
    requests), and a service that estimates every request makes 30M a month. SQLite groups in pandas."""
    import pandas as pd

    if engine.dialect.name != "postgresql":
        pairs = estimate_pairs(engine, since, until)
        return ratio_groups(pairs), len(pairs)
    te, ct = t.token_estimates, t.cost_tracking
    both = and_(te.c.raw_input_tokens > 0, ct.c.input_tokens > 0)  # a zero count is no sample (NULL: not counted)
    ratio = case((both, cast(ct.c.input_tokens, Float) / cast(te.c.raw_input_tokens, Float)))
    matched = (
        select(te.c.family, te.c.encoding, ratio.label("r"))
        .join(ct, ct.c.request_id == te.c.request_id)
        .where(
            te.c.estimated_at >= since,
            te.c.estimated_at <= until,
            ct.c.day >= (since - timedelta(days=1)).date(),
            ct.c.day <= (until + timedelta(days=1)).date(),
        )
        .subquery()
    )

    def pct(q: float) -> Any:
        return func.percentile_cont(q).within_group(matched.c.r)

    query = (
        select(
            matched.c.family,
            matched.c.encoding,
            func.count().label("matched"),
            func.count(matched.c.r).label("samples"),
            pct(0.5).label("median"),
            pct(0.1).label("p10"),
            pct(0.9).label("p90"),
        )
        .group_by(matched.c.family, matched.c.encoding)
        .order_by(matched.c.family, matched.c.encoding)
    )
    with engine.connect() as conn:
        tune_for_a_day(conn)
        rows = conn.execute(query).all()
    groups = pd.DataFrame([r[:2] + r[3:] for r in rows], columns=GROUP_COLUMNS)
    return groups[groups["samples"] > 0].reset_index(drop=True), sum(int(r[2]) for r in rows)


def calibrate(
    engine: Engine, as_of: datetime | None = None, min_samples: int | None = None
) -> tuple[pd.DataFrame, int]:
    """Learn ratios from the last 30 days of matched estimates and replace `token_calibration`.

    Returns the ratios and how many estimates were matched to actual usage."""
    as_of = as_of or datetime.now(UTC)
    groups, matched = calibration_groups(engine, as_of - timedelta(days=CALIBRATION_WINDOW_DAYS), as_of)
    ratios = learn_from_groups(groups) if min_samples is None else learn_from_groups(groups, min_samples)
    rows = [{**r, "computed_at": as_of} for r in ratios.to_dict("records")]
    with engine.begin() as conn:
        replace_rows(conn, t.token_calibration, true(), rows)
    return ratios, matched


def load_learnt(engine: Engine) -> Learnt:
    """Calibration ratios and observed output-token medians, for an Estimator."""
    cal, qs = t.token_calibration.c, t.model_quality_stats.c
    with engine.connect() as conn:
        ratios = {(r[0], r[1]): float(r[2]) for r in conn.execute(select(cal.family, cal.encoding, cal.ratio))}
        medians = conn.execute(
            select(qs.model, qs.task_type, qs.median_output_tokens).where(qs.median_output_tokens.is_not(None))
        ).all()
    per_model = {(m, task): round(v) for m, task, v in medians}
    by_task: dict[str, list[float]] = {}
    for _m, task, v in medians:
        by_task.setdefault(task, []).append(float(v))
    per_task = {task: round(statistics.median(vs)) for task, vs in by_task.items()}
    return Learnt(ratios, per_model, per_task)
