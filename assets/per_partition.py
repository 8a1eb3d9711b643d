"""Each partition's own truth on range runs (SPEC §4, DAGSTER-NOTES "Range runs").

One range run's materialization carries the same metadata to every partition it covers, which
would stamp range totals on each day and make the UI's plots over partitions flat and false. So
every partitioned asset reports its per-day figures as one `AssetObservation` per day (the UI's
Plots tab and each partition's events show them), and its materialization holds the day's figures
only on a one-day run; on a range run it holds the range and a per-day table instead of totals.
"""

from typing import Any

import dagster as dg

from cams.progress import DayProgress


def report(
    context: dg.AssetExecutionContext,
    per_day: dict[str, dict[str, float | int]],
    common: dict[str, Any] | None = None,
    observe: bool = True,
    totals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Log the day observations; return the materialization's metadata (see the module docstring).

    `common` holds what is true of every day (mode, paths); `totals` what sums the run's days (tables by
    category, models): the day's own on a one-day run, prefixed `range_` on a range run so nobody
    reads a range's figure as a day's. `observe=False` keeps only the per-day table: for assets whose
    days another asset already plots (rollups, the FOCUS files), since each observation is an
    event-log write (~20 ms on SQLite).
    """
    keys = list(context.partition_keys)
    names: list[str] = sorted({n for figures in per_day.values() for n in figures})
    for key in keys if observe else ():
        figures = {n: per_day.get(key, {}).get(n, 0) for n in names}
        context.log_event(
            dg.AssetObservation(asset_key=context.asset_key, partition=key, metadata={**figures, "day": key})
        )
    if len(keys) == 1:
        return {**{n: per_day.get(keys[0], {}).get(n, 0) for n in names}, **(common or {}), **(totals or {})}
    lines = ["| day | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(per_day.get(key, {}).get(n, 0)) for n in names) + " |")
    return {
        "range": f"{keys[0]} .. {keys[-1]}",
        "days": len(keys),
        "per_day": dg.MetadataValue.md("\n".join(lines)),
        **(common or {}),
        **{f"range_{k}": v for k, v in (totals or {}).items()},
    }


def day_progress(context: dg.AssetExecutionContext) -> DayProgress:
    """The step's progress through its window's days, written to the run's log (`cams run` prints it)."""
    window = context.partition_time_window
    return DayProgress(context.log.info, window.start.date(), window.end.date())


def _fmt(value: float | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4f}"
