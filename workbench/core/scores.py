"""The HeadScores schema: head labels and the validation every saved or loaded score table passes."""

from __future__ import annotations

import numbers
import re

import numpy as np
import pandas as pd

from workbench.core.errors import WorkbenchError

REQUIRED_COLUMNS = ("analysis", "model", "prompt_set", "layer", "head", "score")
IDENTITY_COLUMNS = ("analysis", "model", "prompt_set")
_LABEL_RE = re.compile(r"L(\d+)H(\d+)")


class ResultsError(WorkbenchError):
    """Invalid head scores, run record or results directory."""


def head_label(layer: int, head: int) -> str:
    """Format a head as ``L{layer}H{head}``."""
    if not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 0 for x in (layer, head)):
        raise ResultsError(f"head_label needs non-negative integers, got layer={layer!r}, head={head!r}.")
    return f"L{int(layer)}H{int(head)}"


def parse_head_label(label: str) -> tuple[int, int]:
    """Parse ``"L3H5"`` into ``(3, 5)``."""
    match = _LABEL_RE.fullmatch(label) if isinstance(label, str) else None
    if match is None:
        raise ResultsError(f"malformed head label {label!r}; write heads as L{{layer}}H{{head}} with "
                           "non-negative integers, e.g. 'L3H5' for layer 3, head 5.")
    return int(match.group(1)), int(match.group(2))


def _labels(df: pd.DataFrame, mask: pd.Series, limit: int = 5) -> str:
    rows = df.loc[mask, ["layer", "head"]].head(limit)
    return ", ".join(head_label(r.layer, r.head) for r in rows.itertuples(index=False))


def _coerce_index_column(df: pd.DataFrame, col: str, limit: int | None, limit_name: str) -> pd.Series:
    num = pd.to_numeric(df[col], errors="coerce")
    bad = num.isna() | (num % 1 != 0) | (num < 0)
    if bad.any():
        sample = df.loc[bad, col].head(5).tolist()
        raise ResultsError(f"column {col!r} must hold non-negative integers (0-based); bad values: {sample}. "
                           f"Fix them or convert with df[{col!r}].astype(int).")
    num = num.astype("int64")
    if limit is not None and (num >= limit).any():
        sample = sorted(set(num[num >= limit].tolist()))[:5]
        raise ResultsError(f"column {col!r} has values {sample} out of range for {limit_name}={limit}; "
                           f"valid values are 0..{limit - 1}. Check that the scores belong to this model.")
    return num


def validate_head_scores(df: pd.DataFrame, n_layers: int | None = None, n_heads: int | None = None) -> pd.DataFrame:
    """A cleaned copy: analysis, model, prompt_set (str, one value each), unique (layer, head) ints >= 0, score (float,
    no inf); extra columns kept.
    """
    if not isinstance(df, pd.DataFrame):
        raise ResultsError(f"head scores must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"head scores are missing required column(s) {missing}; add them "
                           f"(required: {', '.join(REQUIRED_COLUMNS)}).")
    if df.empty:
        raise ResultsError("head scores frame is empty; an analysis must produce one row per (layer, head). "
                           "Check that the analysis actually ran over at least one head.")
    out = df.copy().reset_index(drop=True)
    for col in IDENTITY_COLUMNS:
        if out[col].isna().any():
            raise ResultsError(f"column {col!r} has missing values; fill it with the {col} name.")
        out[col] = out[col].astype(str)
        values = sorted(out[col].unique().tolist())
        if len(values) != 1:
            raise ResultsError(f"column {col!r} has {len(values)} distinct values {values[:5]}; a run holds "
                               "one (analysis, model, prompt_set). Split the frame, e.g. with "
                               "df.groupby(['analysis', 'model', 'prompt_set']), and save each part.")
    out["layer"] = _coerce_index_column(out, "layer", n_layers, "n_layers")
    out["head"] = _coerce_index_column(out, "head", n_heads, "n_heads")

    score = pd.to_numeric(out["score"], errors="coerce")
    non_numeric = score.isna() & out["score"].notna()
    if non_numeric.any():
        sample = out.loc[non_numeric, "score"].head(5).tolist()
        raise ResultsError(f"column 'score' has non-numeric values {sample} (heads "
                           f"{_labels(out, non_numeric)}); convert scores to float (NaN if undefined).")
    score = score.astype("float64")
    infinite = np.isinf(score)
    if infinite.any():
        raise ResultsError(f"column 'score' has infinite values for heads {_labels(out, infinite)}; replace "
                           "them with finite numbers, or NaN if the score is undefined.")
    out["score"] = score

    dup = out.duplicated(["layer", "head"], keep=False)
    if dup.any():
        ident = tuple(out.loc[0, c] for c in IDENTITY_COLUMNS)
        raise ResultsError(f"duplicate rows for heads {_labels(out, dup)} in (analysis, model, prompt_set)="
                           f"{ident}; each head must appear once. Aggregate (e.g. groupby(['layer', 'head'])"
                           ".mean()) or drop duplicates first.")
    return out


# ---- ranks: one rule for every map, table, top-k and atlas ----------------------------------------------
def is_signed(values) -> bool:
    """A score column is signed when it holds a value < 0; signed columns are ranked by |score|."""
    v = np.asarray(values, dtype=float)
    return bool(np.nanmin(v) < 0) if np.isfinite(v).any() else False


def rank_key(values, signed: bool | None = None) -> np.ndarray:
    """Smaller = stronger: −|v| for a signed column (`signed` None = :func:`is_signed`), −v otherwise; NaN last."""
    v = np.asarray(values, dtype=float)
    key = -np.abs(v) if (is_signed(v) if signed is None else signed) else -v
    return np.where(np.isnan(key), np.inf, key)


def head_ranks(values, signed: bool | None = None) -> np.ndarray:
    """Average ranks along the last axis, 1 = strongest by :func:`rank_key` (ties share the mean of their ranks)."""
    from scipy.stats import rankdata

    return rankdata(rank_key(values, signed), method="average", axis=-1)


def ranked(scores: pd.DataFrame, column: str = "score", n: int | None = None) -> pd.DataFrame:
    """`scores` strongest first by `column` (|value| where signed), with `label` and average `rank` columns;
    `attrs["by"]` says 'score' or '|score|'. Ties keep (layer, head) order."""
    signed = is_signed(scores[column])
    out = scores.assign(rank=head_ranks(scores[column], signed))
    out = out.sort_values(["rank", "layer", "head"], kind="mergesort")
    out = out if n is None else out.head(n)
    if "label" not in out.columns:
        out.insert(0, "label", [head_label(int(a), int(b)) for a, b in zip(out["layer"], out["head"], strict=True)])
    out.attrs["by"] = f"|{column}|" if signed else column
    return out
