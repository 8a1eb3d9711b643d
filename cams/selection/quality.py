"""Per-model, per-task quality from Auterity spans, shrunk toward a prior (SPEC §6).

quality = (n × mean score + k × prior) / (n + k): a model with few scored spans stays near its
prior; with many, its observed mean dominates. Success rate counts spans whose status is not ERROR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cams.config import DEFAULT_PRIOR, DEFAULT_SHRINKAGE, SelectionConfig

STATS_COLUMNS = [
    "model",
    "task_type",
    "spans",
    "scored",
    "mean_score",
    "quality",
    "success_rate",
    "p50_latency_ms",
    "p95_latency_ms",
    "median_input_tokens",
    "median_output_tokens",
]


@dataclass(frozen=True)
class QualitySettings:
    priors: dict[str, float]
    default_prior: float = DEFAULT_PRIOR
    shrinkage: float = DEFAULT_SHRINKAGE

    @classmethod
    def from_config(cls, cfg: SelectionConfig) -> QualitySettings:
        return cls(dict(cfg.priors), cfg.default_prior, cfg.shrinkage)

    def prior(self, model: str) -> float:
        return self.priors.get(model, self.priors.get(model.split("/")[-1], self.default_prior))


def quality_stats(spans: pd.DataFrame, settings: QualitySettings) -> pd.DataFrame:
    """spans: response_model, task_type, status_code, quality_score, duration_ms, input_tokens, output_tokens."""
    if spans.empty:
        return pd.DataFrame(columns=STATS_COLUMNS)
    df = spans.dropna(subset=["response_model", "task_type"]).copy()
    df["ok"] = df["status_code"] != "ERROR"
    g = df.groupby(["response_model", "task_type"])
    out = (
        pd.DataFrame(
            {
                "spans": g.size(),
                "scored": g["quality_score"].count(),
                "mean_score": g["quality_score"].mean(),
                "success_rate": g["ok"].mean(),
                "p50_latency_ms": g["duration_ms"].quantile(0.5),
                "p95_latency_ms": g["duration_ms"].quantile(0.95),
                "median_input_tokens": g["input_tokens"].median(),
                "median_output_tokens": g["output_tokens"].median(),
            }
        )
        .reset_index()
        .rename(columns={"response_model": "model"})
    )
    return with_quality(out, settings)


def with_quality(groups: pd.DataFrame, settings: QualitySettings) -> pd.DataFrame:
    """Per-group aggregates (every STATS_COLUMNS column but quality) → the stats, quality shrunk to the prior.

    The aggregates come from each day's kept counts (`quality_days.window_groups`, what the asset uses) or
    from pandas over every span (`quality_stats`: the definitions, which the tests and bench compare with).
    """
    if groups.empty:
        return pd.DataFrame(columns=STATS_COLUMNS)
    out = groups.copy()
    priors = out["model"].map(settings.prior).astype(float)
    k = settings.shrinkage
    scored = out["scored"].astype(float)
    out["quality"] = (scored * out["mean_score"].astype(float).fillna(0) + k * priors) / (scored + k)
    out["success_rate"] = out["success_rate"].astype(float)
    return out[STATS_COLUMNS].replace({np.nan: None})
