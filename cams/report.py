"""What a run did, read back from the warehouse: the `cams run` summary (its `--json` form) and the
demo's breakdowns. The SQL lives here so the shell (`cams run`, `cams demo`) only formats."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine, Integer, and_, func, select

from cams.money import exact, usd
from cams.reconcile import CATEGORIES
from cams.sources.registry import SOURCES
from cams.warehouse import schema as t


def summarize(
    engine: Engine, start: date, end: date, run_id: str | None = None, alerts_fired: int = 0
) -> dict[str, Any]:
    """Counts, spend and unpriced requests for the days [start, end], read back from the warehouse."""
    last = end + timedelta(days=1)
    ct, sh = t.cost_tracking, t.cost_sync_history
    records: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for source in SOURCES:
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
            {"budget_id": b, "state": st, "spent_usd": exact(sp), "forecast_usd": exact(fc)}
            for b, st, sp, fc in conn.execute(
                select(bs.c.budget_id, bs.c.state, bs.c.spent_usd, bs.c.forecast_usd).order_by(bs.c.budget_id)
            )
        ]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "records": records,
        "cost_usd": exact(cost),
        "relaycore_charged_usd": exact(charged),
        "unpriced_requests": int(unpriced or 0),
        "reconciliation": recon,
        "alerts_fired": alerts_fired,
        "budgets": budgets,
    }


def empty_sources(summary: dict[str, Any]) -> list[str]:
    """The warning for each source that read nothing: a wrong folder or URL looks exactly like a quiet day."""
    return [
        f"{source} read nothing for {summary['start']}..{summary['end']}: check sources.{source} in cams.yaml "
        "(its drop_dir, base_url or database)"
        for source, counts in summary["records"].items()
        if counts["read"] == 0
    ]


def as_text(summary: dict[str, Any]) -> str:
    """The run summary for a terminal: one line per source, money as people read it."""
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


def breakdowns(engine: Engine, first: date, last: date) -> dict[str, list[tuple[Any, ...]]]:
    """The demo's tables for the days [first, last): spend by org and by model, reconciliation
    categories, the savings report by counterfactual and its top recommendations, and quarantined lines
    by reason (most first)."""
    r = t.cost_daily_rollups
    days = (r.c.day >= first) & (r.c.day < last)
    rs, q, sv, rc = t.cost_reconciliation_summary, t.quarantine, t.savings_report, t.savings_recommendations
    with engine.connect() as conn:
        return {
            "by_org": conn.execute(
                select(r.c.org_id, func.sum(r.c.requests), func.sum(r.c.cost_usd))
                .where(days)
                .group_by(r.c.org_id)
                .order_by(func.sum(r.c.cost_usd).desc())
            ).all(),
            "by_model": conn.execute(
                select(
                    r.c.model,
                    func.sum(r.c.requests),
                    func.sum(r.c.cost_usd),
                    func.sum(r.c.charged_usd),
                    func.sum(r.c.unpriced_requests),
                )
                .where(days)
                .group_by(r.c.model)
                .order_by(func.sum(r.c.cost_usd).desc())
            ).all(),
            "reconciliation": conn.execute(
                select(rs.c.category, func.sum(rs.c.requests), func.sum(rs.c.at_risk_usd))
                .where((rs.c.day >= first) & (rs.c.day < last))
                .group_by(rs.c.category)
                .order_by(func.sum(rs.c.requests).desc())
            ).all(),
            "savings": conn.execute(
                select(
                    sv.c.counterfactual,
                    func.sum(sv.c.requests),
                    func.sum(sv.c.actual_usd),
                    func.sum(sv.c.counterfactual_usd),
                )
                .group_by(sv.c.counterfactual)
                .order_by(sv.c.counterfactual.desc())
            ).all(),
            "recommendations": conn.execute(
                select(
                    rc.c.org_id, rc.c.team_id, rc.c.task_type, rc.c.from_model, rc.c.to_model, rc.c.monthly_savings_usd
                )
                .order_by(rc.c.monthly_savings_usd.desc())
                .limit(3)
            ).all(),
            "quarantine": conn.execute(
                select(q.c.source, q.c.reason, func.count())
                .where(q.c.day >= first, q.c.day < last)
                .group_by(q.c.source, q.c.reason)
                .order_by(func.count().desc())
            ).all(),
        }
