"""One estimate of a request's tokens and where each number came from (SPEC §7 estimate)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cams.estimation.calibration import model_family
from cams.estimation.tokens import EstimateCache

DEFAULT_OUTPUT_TOKENS = 400


@dataclass(frozen=True)
class Estimate:
    model: str
    input_tokens: int
    raw_input_tokens: int
    output_tokens: int
    output_source: str
    encoding: str
    cached: bool
    family: str
    calibration_ratio: float | None

    def response(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "encoding": self.encoding,
            "cached": self.cached,
            "raw_input_tokens": self.raw_input_tokens,
            "calibration": {"family": self.family, "ratio": self.calibration_ratio},
            "output_source": self.output_source,
        }


@dataclass
class Learnt:
    """What the warehouse has learnt; replaced whole by a refresher, never mutated in place."""

    calibration: Mapping[tuple[str, str], float] = field(default_factory=dict)
    output_medians: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (model, task) → tokens
    task_output: Mapping[str, int] = field(default_factory=dict)  # task → median over its models


class Estimator:
    def __init__(self, cache: EstimateCache | None = None, learnt: Learnt | None = None):
        self.cache = cache or EstimateCache()
        self.learnt = learnt or Learnt()

    def input_tokens(
        self, model: str, prompt: str | None = None, messages: list[dict[str, Any]] | None = None
    ) -> tuple[int, int, str, bool, float | None]:
        """(calibrated, raw, encoding, cached, ratio)."""
        if messages is not None:
            raw, enc, cached = self.cache.messages(model, messages)
        else:
            raw, enc, cached = self.cache.count(model, prompt or "")
        ratio = self.learnt.calibration.get((model_family(model), enc))
        return (raw if ratio is None else max(1, round(raw * ratio))), raw, enc, cached, ratio

    def output_tokens(self, model: str, task_type: str | None, max_output_tokens: int | None) -> tuple[int, str]:
        """The observed median for this model and task, else the task's, capped by max_output_tokens."""
        observed, source = None, "default"
        if task_type:
            observed = self.learnt.output_medians.get((model, task_type))
            source = "observed_model_task"
            if observed is None:
                observed, source = self.learnt.task_output.get(task_type), "observed_task"
        if observed is None:
            if max_output_tokens is not None:
                return max_output_tokens, "max_output_tokens"
            return DEFAULT_OUTPUT_TOKENS, "default"
        if max_output_tokens is not None and max_output_tokens < observed:
            return max_output_tokens, "max_output_tokens"
        return int(observed), source

    def estimate(
        self,
        model: str,
        prompt: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        max_output_tokens: int | None = None,
        task_type: str | None = None,
    ) -> Estimate:
        n, raw, enc, cached, ratio = self.input_tokens(model, prompt, messages)
        out, source = self.output_tokens(model, task_type, max_output_tokens)
        return Estimate(model, n, raw, out, source, enc, cached, model_family(model), ratio)
