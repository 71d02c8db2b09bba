"""Two models' atlases side by side: how each role spreads over normalised depth, and the roles only one has.

Depth of a head in layer l of an L-layer model: `l / (L − 1)` (0 = first layer, 1 = last), binned into `n_bins`
equal bins [0, 1/n), …, [(n−1)/n, 1]. Per (role, bin, model): the number of heads holding the role and their share of
that model's heads in the bin (models differ in heads per layer). Roles are compared by name with the task kept
(`attribution@ioi`); a role a model "lacks" is held by none of its heads (or its analysis never ran: see `missing`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.atlas.table import Atlas


def depth_bins(atlas: Atlas, n_bins: int = 5) -> pd.DataFrame:
    """role, bin, depth_lo, depth_hi, n_heads, share for one atlas."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    depth = atlas.roles["layer"].astype(float) / max(atlas.n_layers - 1, 1)
    binned = atlas.roles.assign(bin=np.minimum((depth * n_bins).astype(int), n_bins - 1))
    layers_in_bin = np.bincount(np.minimum((np.arange(atlas.n_layers) / max(atlas.n_layers - 1, 1) * n_bins)
                                           .astype(int), n_bins - 1), minlength=n_bins)
    counts = binned.groupby(["role", "bin"])["label"].nunique().rename("n_heads").reset_index()
    counts["depth_lo"], counts["depth_hi"] = edges[counts["bin"]], edges[counts["bin"] + 1]
    counts["share"] = counts["n_heads"] / (layers_in_bin[counts["bin"]] * atlas.n_heads)
    return counts[["role", "bin", "depth_lo", "depth_hi", "n_heads", "share"]]


def compare_atlases(a: Atlas, b: Atlas, n_bins: int = 5) -> dict[str, pd.DataFrame]:
    """{"depth": role × bin counts and shares of both models, "only_a"/"only_b": roles one model lacks,
    "summary": per role, heads and mean depth in each model}."""
    da, db = depth_bins(a, n_bins), depth_bins(b, n_bins)
    depth = da.merge(db, on=["role", "bin", "depth_lo", "depth_hi"], how="outer", suffixes=(f"_{a.model}",
                                                                                             f"_{b.model}"))
    depth = depth.fillna({c: 0 for c in depth.columns if c.startswith(("n_heads", "share"))}).sort_values(
        ["role", "bin"], ignore_index=True)
    roles_a, roles_b = set(a.roles["role"]), set(b.roles["role"])

    def per_role(atlas: Atlas) -> pd.DataFrame:
        depth = atlas.roles["layer"] / max(atlas.n_layers - 1, 1)
        return atlas.roles.assign(depth=depth).groupby("role").agg(n_heads=("label", "nunique"),
                                                                  mean_depth=("depth", "mean"))

    summary = per_role(a).merge(per_role(b), on="role", how="outer", suffixes=(f"_{a.model}", f"_{b.model}"))
    summary = summary.reset_index()
    only = {f"only_{key}": pd.DataFrame({"role": sorted(mine - theirs), "model": model})
            for key, mine, theirs, model in (("a", roles_a, roles_b, a.model), ("b", roles_b, roles_a, b.model))}
    return {"depth": depth, "summary": summary, **only}
