"""Overlap of two circuits or two head score maps (torch-free; the app shares it).

Head sets A, B (circuits, or score maps cut by `results.circuits.select_heads`, default top 5 % by |score|):
jaccard = |A∩B|/|A∪B|, overlap_coefficient = |A∩B|/min(|A|,|B|), shared_of_a = |A∩B|/|A|, shared_of_b = |A∩B|/|B|
(Merullo et al. 2024: shared_of_a ≈ 0.78 for IOI vs Colored Objects in GPT-2 medium). The maps' values are
|score| (``selection="abs"``, default) or the signed score (``"signed"``). Same-shape maps:
``spearman`` = ρ over all heads (NaN dropped). Different shapes: per-layer max at depth ``(l + ½) / n_layers``,
binned into 10 bins of [0, 1] (max per bin, empty bins interpolated), ``layer_profile_spearman`` = ρ of the
profiles. :func:`difference_map` = ``pct_A − pct_B``, ``pct = 100 · rank / N`` (average ranks of |score| for a
signed map, of the score otherwise; NaN unranked).
:func:`random_overlap_baseline`: ``|A ∩ B| ~ Hypergeometric(N, a, b)``, mean ``a · b / N``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.errors import WorkbenchError
from workbench.core.scores import is_signed
from workbench.results.circuits import Circuit, select_heads

PROFILE_BINS = 10
DEFAULT_TOP_FRACTION = 0.05


class OverlapError(WorkbenchError):
    """Inputs that cannot be compared; the message says what to do."""


def _check_map(scores: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in ("layer", "head", "score") if c not in scores.columns]
    if missing:
        raise OverlapError(f"score map {name} has no column(s) {missing}; pass a HeadScores frame "
                           "(layer, head, score per head) or a Circuit.")
    if scores.empty:
        raise OverlapError(f"score map {name} is empty; it needs one row per head.")
    return scores


def map_shape(scores: pd.DataFrame) -> tuple[int, int]:
    """(n_layers, n_heads) of a score map: max index + 1."""
    return int(scores["layer"].max()) + 1, int(scores["head"].max()) + 1


def _side(x: Any, name: str, top_fraction: float | None, top_k: int | None, notes: list[str],
          selection: str) -> dict[str, Any]:
    if isinstance(x, Circuit):
        if top_fraction is not None or top_k is not None:
            notes.append(f"{name} is a circuit: top_fraction/top_k apply only to score maps and were ignored for it.")
        return {"heads": set(x.heads), "shape": (x.n_layers, x.n_heads), "scores": None, "model": x.model}
    if isinstance(x, pd.DataFrame):
        scores = _check_map(x, name)
        if top_fraction is None and top_k is None:
            top_fraction = DEFAULT_TOP_FRACTION
        heads = select_heads(scores, top_fraction=top_fraction, top_k=top_k, selection=selection)
        model = str(scores["model"].iloc[0]) if "model" in scores.columns else None
        value = pd.to_numeric(scores["score"], errors="coerce").astype(float)
        keyed = scores.assign(score=value.abs() if selection == "abs" else value)
        return {"heads": set(heads), "shape": map_shape(scores), "scores": keyed, "model": model}
    raise OverlapError(f"{name} must be a Circuit or a HeadScores DataFrame, got {type(x).__name__}.")


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    from scipy.stats import spearmanr

    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    return (None, None) if math.isnan(rho) else (rho, p)


def layer_profile(scores: pd.DataFrame, bins: int = PROFILE_BINS) -> np.ndarray:
    """Per-layer max score resampled to `bins` equal relative-depth bins (max within a bin, gaps interpolated)."""
    n_layers = map_shape(scores)[0]
    values = pd.to_numeric(scores["score"], errors="coerce")
    per_layer = values.groupby(scores["layer"].astype(int)).max().reindex(range(n_layers))
    depth = (np.arange(n_layers) + 0.5) / n_layers
    known = per_layer.notna().to_numpy()
    if not known.any():
        return np.full(bins, np.nan)
    profile = np.full(bins, np.nan)
    index = np.minimum((depth * bins).astype(int), bins - 1)
    for b in range(bins):
        inside = (index == b) & known
        if inside.any():
            profile[b] = per_layer.to_numpy()[inside].max()
    centers = (np.arange(bins) + 0.5) / bins
    gaps = np.isnan(profile)
    profile[gaps] = np.interp(centers[gaps], depth[known], per_layer.to_numpy()[known])
    return profile


def overlap(a: Circuit | pd.DataFrame, b: Circuit | pd.DataFrame, *, top_fraction: float | None = None,
            top_k: int | None = None, selection: str = "abs") -> dict[str, Any]:
    """Set overlap of two circuits or maps (cut at `top_k` / `top_fraction` by `selection`), plus the Spearman
    measures (above) of |score| or the signed score."""
    if top_fraction is not None and top_k is not None:
        raise OverlapError("give at most one of top_fraction and top_k.")
    notes: list[str] = []
    sa, sb = (_side(x, n, top_fraction, top_k, notes, selection) for x, n in ((a, "A"), (b, "B")))
    A, B = sa["heads"], sb["heads"]
    shared = sorted(A & B)
    n_shared = len(shared)
    same_shape = sa["shape"] == sb["shape"]
    out: dict[str, Any] = {
        "n_a": len(A), "n_b": len(B), "shared": [str(h) for h in shared], "n_shared": n_shared,
        "jaccard": _ratio(n_shared, len(A | B)), "overlap_coefficient": _ratio(n_shared, min(len(A), len(B))),
        "shared_of_a": _ratio(n_shared, len(A)), "shared_of_b": _ratio(n_shared, len(B)),
        "same_shape": same_shape, "shape_a": sa["shape"], "shape_b": sb["shape"],
        "spearman": None, "spearman_p": None, "layer_profile_spearman": None, "notes": notes,
    }
    if not A or not B:
        notes.append("a head set is empty (a map with only NaN scores?): the ratios with it in the denominator "
                     "are None.")
    if not same_shape:
        notes.append(f"shapes differ ({sa['shape'][0]}×{sa['shape'][1]} vs {sb['shape'][0]}×{sb['shape'][1]} "
                     "layers × heads): head indices of different models do not correspond, so the set overlap "
                     "by label is only a coincidence count.")
    elif sa["model"] and sb["model"] and sa["model"] != sb["model"]:
        notes.append(f"models differ ({sa['model']} vs {sb['model']}): head indices of different models do not "
                     "correspond even at the same shape.")
    ma, mb = sa["scores"], sb["scores"]
    if ma is None or mb is None:
        which = " and ".join(n for n, m in (("A", ma), ("B", mb)) if m is None)
        notes.append(f"{which} {'is a circuit' if ' and ' not in which else 'are circuits'} without a score map: "
                     "spearman and layer_profile_spearman need two score maps and are None.")
        return out
    rho, _ = _spearman(layer_profile(ma), layer_profile(mb))
    out["layer_profile_spearman"] = rho
    if rho is None:
        notes.append("layer_profile_spearman is None: a layer profile is constant or all NaN.")
    if not same_shape:
        notes.append("spearman over heads is None: the maps have different shapes; see layer_profile_spearman.")
        return out
    merged = ma[["layer", "head", "score"]].merge(mb[["layer", "head", "score"]], on=["layer", "head"],
                                                  suffixes=("_a", "_b"))
    x = pd.to_numeric(merged["score_a"], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(merged["score_b"], errors="coerce").to_numpy(dtype=float)
    out["spearman"], out["spearman_p"] = _spearman(x, y)
    if out["spearman"] is None:
        notes.append("spearman is None: fewer than 3 heads scored in both maps, or a map is constant.")
    return out


def difference_map(a_scores: pd.DataFrame, b_scores: pd.DataFrame) -> pd.DataFrame:
    """HeadScores-shaped frame, ``score = pct_a − pct_b`` (percentile ranks 0–100), for maps of one shape."""
    a, b = _check_map(a_scores, "A"), _check_map(b_scores, "B")
    if map_shape(a) != map_shape(b):
        (la, ha), (lb, hb) = map_shape(a), map_shape(b)
        raise OverlapError(f"difference_map needs maps of one shape, got {la}×{ha} and {lb}×{hb} layers × heads "
                           "(two models?); compare them with overlap(), which reports layer_profile_spearman.")

    def ident(col: str) -> str:
        va = str(a[col].iloc[0]) if col in a.columns else "-"
        vb = str(b[col].iloc[0]) if col in b.columns else "-"
        return va if va == vb else f"{va} − {vb}"

    def pct(scores: pd.DataFrame) -> pd.DataFrame:
        value = pd.to_numeric(scores["score"], errors="coerce").astype(float)
        key = value.abs() if is_signed(value) else value
        return pd.DataFrame({"layer": scores["layer"].astype(int), "head": scores["head"].astype(int),
                             "score": value, "pct": key.rank(pct=True) * 100})

    merged = pct(a).merge(pct(b), on=["layer", "head"], suffixes=("_a", "_b")).sort_values(["layer", "head"])
    return pd.DataFrame({
        "analysis": "difference", "model": ident("model"), "prompt_set": ident("prompt_set"),
        "layer": merged["layer"].to_numpy(), "head": merged["head"].to_numpy(),
        "score": (merged["pct_a"] - merged["pct_b"]).to_numpy(), "score_a": merged["score_a"].to_numpy(),
        "score_b": merged["score_b"].to_numpy(), "pct_a": merged["pct_a"].to_numpy(),
        "pct_b": merged["pct_b"].to_numpy()})


def random_overlap_baseline(n_layers: int, n_heads: int, size_a: int, size_b: int, n: int = 1000,
                            seed: int = 0) -> dict[str, Any]:
    """Chance overlap of uniform random circuits of `size_a`, `size_b` heads (`n` draws), with exact expectations."""
    from scipy.stats import hypergeom

    total = int(n_layers) * int(n_heads)
    if total < 1 or not (1 <= size_a <= total and 1 <= size_b <= total):
        raise OverlapError(f"circuit sizes must be in 1..{total} (= {n_layers}×{n_heads} heads), got "
                           f"{size_a} and {size_b}.")
    if n < 1:
        raise OverlapError(f"n (random draws) must be at least 1, got {n}.")
    rng = np.random.default_rng(seed)
    shared = rng.hypergeometric(ngood=size_a, nbad=total - size_a, nsample=size_b, size=int(n)).astype(float)
    jaccard = shared / (size_a + size_b - shared)
    coef = shared / min(size_a, size_b)
    k = np.arange(max(0, size_a + size_b - total), min(size_a, size_b) + 1)
    pmf = hypergeom(total, size_a, size_b).pmf(k)

    def sd(x: np.ndarray) -> float:
        return float(x.std(ddof=1)) if len(x) > 1 else 0.0

    return {"n": int(n), "n_total_heads": total, "size_a": int(size_a), "size_b": int(size_b),
            "expected_shared": size_a * size_b / total,
            "expected_jaccard": float((pmf * k / (size_a + size_b - k)).sum()),
            "mean_shared": float(shared.mean()), "sd_shared": sd(shared),
            "mean_jaccard": float(jaccard.mean()), "sd_jaccard": sd(jaccard),
            "mean_overlap_coefficient": float(coef.mean()), "sd_overlap_coefficient": sd(coef),
            "mean_shared_of_a": float((shared / size_a).mean()), "mean_shared_of_b": float((shared / size_b).mean()),
            "p95_shared": float(np.quantile(shared, 0.95))}


def chance_p_value(n_layers: int, n_heads: int, size_a: int, size_b: int, n_shared: int) -> float:
    """P(|A ∩ B| >= n_shared) for uniform random sets of these sizes (hypergeometric upper tail)."""
    from scipy.stats import hypergeom

    total = int(n_layers) * int(n_heads)
    return float(hypergeom(total, size_a, size_b).sf(n_shared - 1))


__all__ = ["OverlapError", "overlap", "difference_map", "random_overlap_baseline", "chance_p_value",
           "layer_profile", "map_shape"]
