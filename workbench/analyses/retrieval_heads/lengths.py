"""Retrieval heads across context lengths: are the heads found at 8k the heads found at 2k? (torch-free)

From the per-trial head scores (`per_prompt`, metric "score", counted trials only) and the trials table:
per length L, `score_L[l, h]` = mean over L's counted trials; NIAH accuracy = share of L's decoded trials
with ROUGE-1 recall > 0.5; retrieval heads = heads with `score_L > threshold`. Between two lengths:
Spearman ρ of the head scores (Pearson on average ranks, so the many heads tied at 0 share one rank), and
the top-k overlap |top_k(L_long) ∩ top_k(L_short)| / k for k = 10 and k = 5 % of the heads (ties at the
cut broken by layer, then head).
"""

from __future__ import annotations

import itertools

import pandas as pd

from workbench.core.scores import head_label

TOP_SHOWN = 10


def top_k_count(n_heads_total: int, share: float = 0.05) -> int:
    """k for "the top `share` of the heads": round(share · heads), at least 1 (5 % of 270 SmolLM2 heads: 14)."""
    return max(1, round(share * n_heads_total))


def scores_by_length(per_prompt: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Head scores per length: index (layer, head), one column per context length with counted trials."""
    values = per_prompt[per_prompt["metric"] == "score"]
    length = trials.set_index("trial")["context_length"]
    values = values.assign(context_length=values["prompt"].map(length).astype(int))
    wide = values.pivot_table(index=["layer", "head"], columns="context_length", values="value", aggfunc="mean")
    return wide.sort_index().rename_axis(columns=None)


def top_heads(scores: pd.Series, k: int) -> pd.Series:
    """The k best heads of `scores` (index (layer, head)), relabelled L{l}H{h}; ties in (layer, head) order."""
    best = scores.sort_index().sort_values(ascending=False, kind="stable").iloc[:k]
    return pd.Series(best.to_numpy(), index=[head_label(int(layer), int(head)) for layer, head in best.index])


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman ρ with average ranks for ties (NaN if either side is constant)."""
    return float(a.rank().corr(b.rank()))


def length_tables(per_prompt: pd.DataFrame, trials: pd.DataFrame, threshold: float) -> dict[str, pd.DataFrame]:
    """"lengths" (accuracy, counted trials, retrieval heads per length), "top_by_length" (the top 10 per length),
    and with two or more scored lengths "length_pairs" (ρ per pair) and "top_overlap" (longest vs shortest)."""
    wide = scores_by_length(per_prompt, trials)
    decoded = trials[trials["skipped"] == ""]
    counted = per_prompt.loc[per_prompt["metric"] == "score", "prompt"].unique()
    rows = []
    for length, group in trials.groupby("context_length", sort=True):
        done = decoded[decoded["context_length"] == length]
        scored = wide[length] if length in wide else None
        rows.append({"context_length": int(length), "trials": len(group), "decoded": len(done),
                     "accuracy": float(done["correct"].astype(bool).mean()) if len(done) else float("nan"),
                     "counted": int(group["trial"].isin(counted).sum()),
                     "retrieval_heads": int((scored > threshold).sum()) if scored is not None else 0,
                     "max_score": float(scored.max()) if scored is not None else float("nan")})
    tables = {"lengths": pd.DataFrame(rows)}
    shown = min(TOP_SHOWN, len(wide))
    tables["top_by_length"] = pd.DataFrame({"rank": range(1, shown + 1), **{
        str(length): [f"{label} {value:.3f}" for label, value in top_heads(wide[length], shown).items()]
        for length in wide.columns}})
    if len(wide.columns) >= 2:
        tables["length_pairs"] = pd.DataFrame([{"length_a": int(a), "length_b": int(b),
                                                "spearman": spearman(wide[a], wide[b]), "heads": len(wide)}
                                               for a, b in itertools.combinations(wide.columns, 2)])
        tables["top_overlap"] = top_overlap(wide, int(wide.columns.max()), int(wide.columns.min()))
    return tables


def top_overlap(wide: pd.DataFrame, long: int, short: int) -> pd.DataFrame:
    """|top_k(long) ∩ top_k(short)| / k for k = 10 and k = 5 % of the heads, with the shared heads."""
    rows = []
    for name, k in ((f"top {TOP_SHOWN}", TOP_SHOWN), ("top 5 %", top_k_count(len(wide)))):
        k = min(k, len(wide))
        a, b = list(top_heads(wide[long], k).index), list(top_heads(wide[short], k).index)
        shared = [h for h in a if h in b]
        rows.append({"k": name, "n": k, "long": long, "short": short, "overlap": len(shared) / k,
                     "shared": " ".join(shared), f"only_{long}": " ".join(h for h in a if h not in b),
                     f"only_{short}": " ".join(h for h in b if h not in a)})
    return pd.DataFrame(rows)


def length_summary(tables: dict[str, pd.DataFrame]) -> dict:
    """The JSON-able headline of `length_tables`: per-length accuracy and retrieval-head counts, ρ, overlaps."""
    lengths = tables["lengths"].set_index("context_length")
    out = {"accuracy_by_length": {str(k): float(v) for k, v in lengths["accuracy"].items()},
           "retrieval_heads_by_length": {str(k): int(v) for k, v in lengths["retrieval_heads"].items()}}
    if "length_pairs" in tables:
        out["spearman_by_pair"] = {f"{r.length_a}~{r.length_b}": float(r.spearman)
                                   for r in tables["length_pairs"].itertuples()}
        for r in tables["top_overlap"].itertuples():
            out[f"{r.k.replace(' ', '').replace('%', 'pct')}_overlap_{r.long}_vs_{r.short}"] = float(r.overlap)
    return out

