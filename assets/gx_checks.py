"""Great Expectations 1.x, called directly (dagster-ge does not support GX 1.x), for asset checks."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@functools.cache
def _batch_definition() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = ctx.data_sources.add_pandas("cams")
    return source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")


def validate(frame: pd.DataFrame, expectations: Sequence[Any]) -> tuple[bool, dict[str, Any]]:
    """Run expectations on a frame; (success, per-expectation unexpected counts)."""
    import great_expectations as gx

    if frame.empty:
        return True, {"rows": 0}
    suite = gx.ExpectationSuite(name="cams", expectations=list(expectations))
    result = _batch_definition().get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    detail: dict[str, Any] = {"rows": len(frame)}
    for r in result.results:
        cfg = r.expectation_config
        label = f"{cfg.type}({cfg.kwargs.get('column', cfg.kwargs.get('column_list', ''))})"
        detail[label] = "ok" if r.success else f"{r.result.get('unexpected_count', '?')} unexpected"
    return bool(result.success), detail


def check_result(
    name: str,
    frame: pd.DataFrame,
    expectations: Sequence[Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    ok, detail = validate(frame, expectations)
    return dg.AssetCheckResult(
        check_name=name,
        passed=ok,
        severity=severity,
        metadata={k: dg.MetadataValue.text(str(v)) for k, v in detail.items()},
    )
