"""Bootstrap intervals and rank stability from the per-prompt (per-trial) values a run stored.

A column's statistic is found, not assumed: the first of (per-prompt metric m, statistic s) that reproduces the
stored column on the full sample (within float32 accumulation error) is the one resampled, with s one of
    ratio       Σ_p x_p / Σ_p g_p                 g = a per-prompt normaliser (one value per prompt, the same for every
                                                  head, e.g. head_attribution's gap M_corrupt[n] − M_clean[n])
    mean        Σ_p x_p / P                       (NaN prompts left out)
    weighted    Σ_p w_p x_p / Σ_p w_p             a ratio of sums, w = another per-prompt metric (e.g. token counts)
    sum         Σ_p x_p
Ratios come first (where one reproduces the column, a mean of normalised values does too, with the normaliser held
at its full-sample value; the ratio resamples it), then metrics named like the column. A column no statistic
reproduces (e.g. sae_circuits.score, a softmax over heads of code-set sizes) gets NaN intervals, and its
description says why.
Resampling (Efron's percentile bootstrap): B seeded draws of P prompts with replacement as counts C [B, P]; every
statistic is then `(C @ (w·x)) / (C @ w)` over all heads at once, [B, P] × [P, heads]; interval = the 2.5 and 97.5
percentiles. Ranks: 1 = strongest, by |value| for a signed metric (one with a value < 0), average ranks for ties.
Top-k (ties at the k-th place all kept): for each of today's top-k heads, the share of resamples whose top-k holds
it; Jaccard: mean over resamples of |top-k_b ∩ top-k| / |top-k_b ∪ top-k|.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from workbench.core.scores import head_ranks as ranks  # noqa: F401 (the one rank rule; bs.ranks for the atlas)
from workbench.core.scores import rank_key

RTOL = 1e-4  # stored columns are float32 means of up to ~1e3 values: relative error ≲ 1e3 · 6e-8


@dataclass(frozen=True)
class Statistic:
    metric: str  # the per-prompt metric resampled
    kind: str  # "ratio" | "mean" | "weighted" | "sum"
    weight: str | None = None  # the per-prompt metric weighting it ("weighted") or dividing it ("ratio")

    def describe(self) -> str:
        if self.kind == "ratio":
            return f"Σ {self.metric} / Σ {self.weight} over prompts"
        if self.kind == "weighted":
            return f"Σ {self.weight}·{self.metric} / Σ {self.weight} over prompts"
        return f"{self.kind} of per-prompt {self.metric}"


def prompt_matrices(per_prompt: pd.DataFrame, n_layers: int, n_heads: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(prompt ids [P], {metric: values [P, n_layers·n_heads]}) from a tidy per_prompt table; NaN where absent."""
    prompts = np.sort(per_prompt["prompt"].unique())
    row = np.searchsorted(prompts, per_prompt["prompt"].to_numpy())
    col = per_prompt["layer"].to_numpy() * n_heads + per_prompt["head"].to_numpy()
    values = per_prompt["value"].to_numpy(dtype=np.float64)
    out = {}
    for metric in per_prompt["metric"].unique():
        mask = (per_prompt["metric"] == metric).to_numpy()
        matrix = np.full((len(prompts), n_layers * n_heads), np.nan)
        matrix[row[mask], col[mask]] = values[mask]
        out[str(metric)] = matrix
    return prompts, out


def _parts(stat: Statistic, mats: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(numerator terms [P, heads], denominator terms or None for a sum)."""
    x = mats[stat.metric]
    present = ~np.isnan(x)
    if stat.kind == "sum":
        return np.where(present, x, 0.0), None
    if stat.kind == "ratio":
        return np.where(present, x, 0.0), np.where(present, np.broadcast_to(mats[stat.weight], x.shape), 0.0)
    w = np.ones_like(x) if stat.kind == "mean" else np.nan_to_num(np.broadcast_to(mats[stat.weight], x.shape))
    w = np.where(present, w, 0.0)
    return np.where(present, w * x, 0.0), w


def evaluate(stat: Statistic, mats: dict[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """The statistic under prompt counts [B, P] (all ones: the full sample) -> [B, heads]."""
    num, den = _parts(stat, mats)
    top = counts @ num
    if den is None:
        return top
    bottom = counts @ den
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom != 0, top / np.where(bottom != 0, bottom, 1.0), np.nan)


def _per_prompt_constant(matrix: np.ndarray) -> bool:
    """One value per prompt, the same for every head (NaN heads aside), and never zero: a normaliser."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        first = np.nanmax(matrix, axis=1)
        return bool(np.all(np.isfinite(first)) and np.all(first != 0)
                    and np.allclose(np.nanmin(matrix, axis=1), first, rtol=1e-12, atol=0))


def _candidates(column: str, mats: dict[str, np.ndarray]):
    metrics = sorted(mats)
    for g in [m for m in metrics if _per_prompt_constant(mats[m])]:
        yield from (Statistic(m, "ratio", g) for m in metrics if m != g)
    base = column.removesuffix("_score")
    named = sorted(metrics, key=lambda m: (m not in (column, base), m != "score"))
    for m in named:
        yield Statistic(m, "mean")
        for w in metrics:
            if w != m:
                yield Statistic(m, "weighted", w)
        yield Statistic(m, "sum")


def reproduces(full: np.ndarray, stored: np.ndarray) -> bool:
    scale = np.nanmax(np.abs(stored)) if np.isfinite(stored).any() else 1.0
    return bool(np.allclose(full, stored, rtol=RTOL, atol=RTOL * max(scale, 1e-12), equal_nan=True))


def find_statistic(column: str, stored: np.ndarray, mats: dict[str, np.ndarray]) -> Statistic | None:
    """The first candidate statistic (module docstring) whose full-sample value equals the stored column."""
    ones = {m: np.ones((1, len(x))) for m, x in mats.items()}
    for stat in _candidates(column, mats):
        if reproduces(evaluate(stat, mats, ones[stat.metric])[0], stored):
            return stat
    return None


def resample_counts(n_prompts: int, n_boot: int, seed: int) -> np.ndarray:
    """[B, P] multiplicities of B seeded bootstrap draws of P prompts with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_prompts, np.full(n_prompts, 1.0 / n_prompts), size=n_boot).astype(np.float64)


def top_mask(values: np.ndarray, signed: bool, k: int) -> np.ndarray:
    """Bool [..., heads]: the top-k heads, those with fewer than k heads strictly stronger (a tie at the k-th place
    keeps every tied head; NaN heads only when fewer than k heads are defined)."""
    return rankdata(rank_key(values, signed), method="min", axis=-1) <= k


def percentiles(boot: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """np.nanpercentile(boot, q, axis=0) (linear interpolation) for each q, vectorised over heads: sorted columns
    (NaN last) indexed at q/100 · (n_valid − 1); NaN for a head with no valid resample."""
    ordered = np.sort(boot, axis=0)
    n = (~np.isnan(boot)).sum(0)
    out = []
    for q in qs:
        pos = np.maximum(n - 1, 0) * q / 100.0
        below = np.floor(pos).astype(int)
        above = np.minimum(below + 1, np.maximum(n - 1, 0))
        a = np.take_along_axis(ordered, below[None], 0)[0]
        b = np.take_along_axis(ordered, above[None], 0)[0]
        out.append(np.where(n > 0, a + (b - a) * (pos - below), np.nan))
    return out


@dataclass
class Bootstrap:
    lo: np.ndarray  # [heads]
    hi: np.ndarray
    boot: np.ndarray  # [B, heads] resampled statistic
    share_in_topk: np.ndarray  # [heads]: share of resamples whose top-k holds the head
    topk: np.ndarray  # bool [heads]: today's top-k
    jaccard: float


def bootstrap(stat: Statistic, mats: dict[str, np.ndarray], value: np.ndarray, *, signed: bool, n_boot: int = 200,
              seed: int = 0, top_k: int = 10) -> Bootstrap:
    """Percentile interval, top-k shares and Jaccard of a statistic over B prompt resamples (module docstring)."""
    counts = resample_counts(mats[stat.metric].shape[0], n_boot, seed)
    boot = evaluate(stat, mats, counts)
    lo, hi = percentiles(boot, (2.5, 97.5))
    k = min(top_k, value.shape[-1])
    today, resampled = top_mask(value, signed, k), top_mask(boot, signed, k)
    inter = (resampled & today).sum(-1)
    jaccard = float(np.mean(inter / (resampled | today).sum(-1)))
    return Bootstrap(lo, hi, boot, resampled.mean(0), today, jaccard)

