"""Token estimation in the warehouse: the shared cache, estimates by request id, learnt calibration."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, true

from cams.estimation.calibration import learn
from cams.estimation.estimator import Learnt
from cams.warehouse import schema as t
from cams.warehouse.db import insert_new_rows, replace_rows

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


def calibrate(
    engine: Engine, as_of: datetime | None = None, min_samples: int | None = None
) -> tuple[pd.DataFrame, int]:
    """Learn ratios from the last 30 days of matched estimates and replace `token_calibration`.

    Returns the ratios and how many estimates were matched to actual usage."""
    as_of = as_of or datetime.now(UTC)
    pairs = estimate_pairs(engine, as_of - timedelta(days=CALIBRATION_WINDOW_DAYS), as_of)
    ratios = learn(pairs) if min_samples is None else learn(pairs, min_samples)
    rows = [{**r, "computed_at": as_of} for r in ratios.to_dict("records")]
    with engine.begin() as conn:
        replace_rows(conn, t.token_calibration, true(), rows)
    return ratios, len(pairs)


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
