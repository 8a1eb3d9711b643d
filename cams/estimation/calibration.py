"""Calibration: how far an offline tokenizer's count is from what the provider bills, per model family.

The offline fallback is cl100k_base, so a Claude or Gemini prompt is counted with OpenAI's
tokenizer; those vendors' own tokenizers produce more (or fewer) tokens for the same text. Matching
each estimate made for a known request id with the usage RelayCore later reports for that id gives
a ratio per family and encoding; the median is robust to the odd request with a huge system prompt
added downstream, and the ratio is only used once enough requests back it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the estimate path imports model_family and must start fast, without pandas
    import pandas as pd

MIN_SAMPLES = 20
RATIO_BOUNDS = (0.25, 4.0)
_ALIASES = {"o": "gpt", "chatgpt": "gpt", "ft": "gpt", "meta": "llama", "codestral": "mistral", "mixtral": "mistral"}
_REGION = re.compile(r"^(us|eu|apac|global|jp|au)\.")


def model_family(model: str) -> str:
    """The vendor family whose tokenizer a model uses: 'gpt', 'claude', 'gemini', 'llama', …"""
    base = model.lower().rsplit("/", 1)[-1]
    base = _REGION.sub("", base)
    head, _, rest = base.partition(".")
    if rest and head.isalpha() and not rest[:1].isdigit():  # bedrock ids: anthropic.claude-…
        base = rest
    m = re.match(r"[a-z]+", base)
    family = m.group(0) if m else "other"
    return _ALIASES.get(family, family)


GROUP_COLUMNS = ["family", "encoding", "samples", "median", "p10", "p90"]


def ratio_groups(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (family, encoding): samples, and the median, 10th and 90th percentiles of actual / raw, from rows
    of family, encoding, raw_input_tokens, actual_input_tokens (pairs with a zero count left out).

    `store.calibration_groups` computes the same groups in PostgreSQL, so the pairs never reach Python."""
    import pandas as pd

    if pairs.empty:
        return pd.DataFrame(columns=GROUP_COLUMNS)
    p = pairs[(pairs["raw_input_tokens"] > 0) & (pairs["actual_input_tokens"] > 0)]
    p = p.assign(r=p["actual_input_tokens"].astype(float) / p["raw_input_tokens"].astype(float))
    g = p.groupby(["family", "encoding"])["r"]
    out = pd.DataFrame(
        {"samples": g.size(), "median": g.median(), "p10": g.quantile(0.1), "p90": g.quantile(0.9)}
    ).reset_index()
    return out[GROUP_COLUMNS]


def learn_from_groups(groups: pd.DataFrame, min_samples: int = MIN_SAMPLES) -> pd.DataFrame:
    """Ratios per (family, encoding) from `ratio_groups`: the median clipped, only groups with enough samples."""
    cols = ["family", "encoding", "samples", "ratio", "p10_ratio", "p90_ratio"]
    kept = groups[(groups["samples"] >= max(min_samples, 1))]
    out = kept.assign(
        samples=kept["samples"].astype("int64"),
        ratio=kept["median"].astype(float).clip(*RATIO_BOUNDS),
        p10_ratio=kept["p10"].astype(float),
        p90_ratio=kept["p90"].astype(float),
    )
    return out[cols].reset_index(drop=True)


def learn(pairs: pd.DataFrame, min_samples: int = MIN_SAMPLES) -> pd.DataFrame:
    """Ratios per (family, encoding) from rows of family, encoding, raw_input_tokens, actual_input_tokens."""
    return learn_from_groups(ratio_groups(pairs), min_samples)
