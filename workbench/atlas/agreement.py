"""Agreement between metrics: Spearman's ρ over heads for every metric pair, with permutation p-values.

ρ is Pearson's correlation of the average ranks of the two metrics' ranking keys (|value| for a signed metric, as
the atlas ranks it), over the heads where both are defined. p-value (two-sided, seeded): the share of
`n_perm` random permutations of one metric's ranks whose |ρ| reaches the observed |ρ|, counting the observed
one: `(1 + #{|ρ_perm| ≥ |ρ|}) / (1 + n_perm)` (so p ≥ 1/(1 + n_perm)); all permutations of a pair in one
[n_perm, n] gather and product. The pairs with the same number of common heads share one seeded set of
permutations (each p-value is exact for its pair; they are not independent of each other). NaN for a pair with
fewer than 3 common heads or a constant metric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from workbench.atlas.table import AGREEMENT


def _standardised(ranks: np.ndarray) -> np.ndarray | None:
    centred = ranks - ranks.mean(-1, keepdims=True)
    norm = np.sqrt((centred ** 2).sum(-1, keepdims=True))
    return None if np.any(norm == 0) else centred / norm


def spearman_permutation(a: np.ndarray, b: np.ndarray, *, n_perm: int = 1000,
                         rng: np.random.Generator | None = None, perms: dict[int, np.ndarray] | None = None
                         ) -> tuple[float, float, int]:
    """(ρ, permutation p-value, n heads) of two per-head vectors (NaN entries dropped pairwise); `perms` caches
    the [n_perm, n] permutation indices per n, drawn from `rng`."""
    rng = rng if rng is not None else np.random.default_rng(0)
    perms = {} if perms is None else perms
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    za = _standardised(rankdata(a[ok])) if n >= 3 else None
    zb = _standardised(rankdata(b[ok])) if n >= 3 else None
    if za is None or zb is None:
        return float("nan"), float("nan"), n
    rho = float(np.clip(za @ zb, -1.0, 1.0))
    if n not in perms:
        perms[n] = np.argsort(rng.random((n_perm, n)), axis=1)
    null = zb[perms[n]] @ za  # [n_perm]
    p = (1 + int((np.abs(null) >= abs(rho) - 1e-12).sum())) / (1 + n_perm)
    return rho, p, n


def agreement(keys: pd.DataFrame, *, n_perm: int = 1000, seed: int = 0) -> pd.DataFrame:
    """AGREEMENT rows for every pair of columns of `keys` (heads × metrics ranking keys, larger = stronger)."""
    rng, perms = np.random.default_rng(seed), {}
    names = list(keys.columns)
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            rho, p, n = spearman_permutation(keys[first].to_numpy(float), keys[second].to_numpy(float),
                                             n_perm=n_perm, rng=rng, perms=perms)
            rows.append({"metric_a": first, "metric_b": second, "spearman": rho, "p_value": p, "n_heads": n})
    return pd.DataFrame(rows, columns=list(AGREEMENT))


def matrix(table: pd.DataFrame, column: str = "spearman") -> pd.DataFrame:
    """The symmetric metric × metric matrix of an agreement table (1 on the diagonal for ρ)."""
    names = list(dict.fromkeys([*table["metric_a"], *table["metric_b"]]))
    where = {name: i for i, name in enumerate(names)}
    out = np.full((len(names), len(names)), 1.0 if column == "spearman" else np.nan)
    if column != "spearman":
        np.fill_diagonal(out, np.nan)
    i, j = table["metric_a"].map(where).to_numpy(int), table["metric_b"].map(where).to_numpy(int)
    out[i, j] = out[j, i] = table[column].to_numpy(float)
    return pd.DataFrame(out, index=names, columns=names)
