"""Evaluate a budget as of a time: spent, forecast, percent used, state, action, crossed thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from cams.budgets.forecast import forecast
from cams.budgets.model import ACTION_RANK, Budget, Threshold

MONEY = Decimal("0.0000000001")


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime
    as_of: datetime
    spent_usd: Decimal
    forecast_usd: Decimal
    percent_used: float
    forecast_percent: float
    state: str  # ok | warning | critical | exceeded
    action: str  # none | notify | downgrade | block
    projected_exhaustion_at: datetime | None
    crossed: tuple[Threshold, ...]
    daily_rate_usd: float


def crossed_thresholds(budget: Budget, percent_used: float, forecast_percent: float) -> tuple[Threshold, ...]:
    """The thresholds at or past their percent: actual ones against spend, forecast ones against the
    forecast. The one rule for evaluating a budget and for reading back a published status."""
    return tuple(
        t for t in budget.thresholds if (percent_used if t.basis == "actual" else forecast_percent) >= float(t.percent)
    )


def evaluate(
    budget: Budget,
    period: tuple[datetime, datetime],
    as_of: datetime,
    spent: float,
    history: dict[date, float],
    today_spent: float,
) -> BudgetStatus:
    amount = float(budget.amount_usd)
    fc = forecast(spent, amount, history, today_spent, as_of, period[1], budget.timezone)
    pct = spent / amount * 100
    fpct = fc.forecast_usd / amount * 100
    crossed = crossed_thresholds(budget, pct, fpct)
    if spent >= amount:
        state = "exceeded"
    elif any(t.basis == "actual" and t.level == "critical" for t in crossed):
        state = "critical"
    elif any(t.basis == "actual" for t in crossed):
        state = "warning"
    else:
        state = "ok"
    action = max((t.action for t in crossed), key=lambda a: ACTION_RANK[a], default="none")
    return BudgetStatus(
        budget=budget,
        period_start=period[0],
        period_end=period[1],
        as_of=as_of,
        spent_usd=Decimal(str(spent)).quantize(MONEY),
        forecast_usd=Decimal(str(fc.forecast_usd)).quantize(MONEY),
        percent_used=round(pct, 4),
        forecast_percent=round(fpct, 4),
        state=state,
        action=action,
        projected_exhaustion_at=None if spent >= amount else fc.projected_exhaustion_at,
        crossed=crossed,
        daily_rate_usd=fc.daily_rate_usd,
    )
