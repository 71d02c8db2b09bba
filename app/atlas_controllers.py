"""The Atlas and head-profile pages' logic, as pure functions (no dash import): the head × metric rank matrix,
the metric and profile tables, the worker results of one head's probe and ablation, and links to profiles."""

from __future__ import annotations

import math
from typing import Any, Mapping
from urllib.parse import urlencode

import pandas as pd

import workbench.api as wb
from workbench_app.controllers import AppInputError

ABLATION_MODES = ("mean", "zero")


def build_commands(model: str) -> str:
    return (f"`workbench atlas build -m {model} --fill` runs the missing analyses and builds it; "
            f"`workbench atlas build -m {model}` builds it from the runs already saved.")


def profile_href(model: str, head: str) -> str:
    return "/head?" + urlencode({"model": model, "head": head})


def check_model(model: Any, known: list[str]) -> str:
    if not isinstance(model, str) or model not in known:
        raise AppInputError(f"No atlas of {str(model)[:60]!r} here; pick one of: {', '.join(known)}.")
    return model


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def role_options(atlas) -> list[str]:
    return sorted(atlas.roles["role"].unique()) if not atlas.roles.empty else []


def head_roles(atlas) -> pd.Series:
    """Each head label's roles, comma-joined ('' for none)."""
    if atlas.roles.empty:
        return pd.Series(dtype=str)
    return atlas.roles.groupby("label")["role"].agg(lambda r: ", ".join(sorted(set(r))))


def rank_matrix(atlas, roles: Any = None) -> pd.DataFrame:
    """One row per head: head, layer, roles, best rank, then each metric's rank (1 = strongest); only heads holding
    one of `roles` when given (an unknown role is an AppInputError naming the known ones)."""
    ranks = atlas.wide("rank")
    table = pd.DataFrame({"head": ranks.index, "layer": [int(h[1:].split("H")[0]) for h in ranks.index]})
    roles_of = head_roles(atlas)
    table["roles"] = [roles_of.get(head, "") for head in table["head"]]
    table["best rank"] = ranks.min(axis=1).to_numpy()
    for metric in ranks.columns:
        table[metric] = ranks[metric].to_numpy()
    wanted = [roles] if isinstance(roles, str) else list(roles or [])
    if wanted:
        unknown = sorted(set(wanted) - set(role_options(atlas)))
        if unknown:
            raise AppInputError(f"No role {', '.join(unknown)} in this atlas; roles held: "
                                f"{', '.join(role_options(atlas)) or 'none'}.")
        holders = set(atlas.roles.loc[atlas.roles["role"].isin(wanted), "label"])
        table = table[table["head"].isin(holders)]
    return table.reset_index(drop=True)


def metrics_table(atlas) -> pd.DataFrame:
    """One row per metric: where it comes from, its prompts, top-k stability and causal verdict (with numbers)."""
    m = atlas.metrics
    k = int(atlas.params.get("top_k", 10))

    def causal(row) -> str:
        if row["causal_verdict"] == "not run":
            return "not run"
        return (f"{row['causal_verdict']}: top-k {_fmt(row['causal_effect'])} vs random "
                f"{_fmt(row['causal_random_mean'])} ± {_fmt(row['causal_random_sd'])} "
                f"(n={_fmt(row['causal_n_random'])})")
    return pd.DataFrame({
        "metric": m["metric"], "task": m["task"].fillna("–"),
        "signed": m["signed"].map(lambda v: "|value|" if str(v) == "True" else ""),
        "prompts": m["n_prompts"], f"top-{k} stability": m["topk_stability"].astype(float).round(3).map(_fmt),
        f"top-{k} Jaccard": m["topk_jaccard"].astype(float).round(3).map(_fmt),
        "causal check": [causal(r) for _, r in m.iterrows()]})


def heatmap_frame(matrix: pd.DataFrame, metrics: list[str], limit: int = 40) -> pd.DataFrame:
    """The `limit` heads with the best rank in any metric (rows) × metrics (columns) of ranks, for the heatmap."""
    top = matrix.sort_values(["best rank", "layer"]).head(limit)
    return top.set_index("head")[metrics]


def head_from_heatmap(click: Mapping[str, Any] | None) -> str | None:
    try:
        return str(wb.HeadRef.parse(str(click["points"][0]["y"])))
    except (TypeError, KeyError, IndexError, ValueError, wb.WorkbenchError):
        return None


def profile(atlas, head: Any) -> dict[str, Any]:
    """The head's profile tables for display: metrics (value, interval, rank of N, stability, causal), roles,
    circuits. A head the model does not have is an AppInputError with the model's range."""
    if not isinstance(head, str) or not head.strip() or len(head) > 20:
        raise AppInputError("Name one head, like L3H5.")
    try:
        found = wb.head_profile(atlas, head.strip())
    except wb.WorkbenchError as exc:
        raise AppInputError(str(exc)) from None
    n, k = atlas.n_layers * atlas.n_heads, int(atlas.params.get("top_k", 10))
    rows = found["metrics"]
    metrics = pd.DataFrame({
        "metric": rows["metric"], "value": rows["value"].map(_fmt),
        "interval": [f"[{_fmt(lo)}, {_fmt(hi)}]" if not (math.isnan(lo) or math.isnan(hi)) else "–"
                     for lo, hi in zip(rows["lo"].astype(float), rows["hi"].astype(float), strict=True)],
        "rank": [f"{_fmt(r)} / {n}" for r in rows["rank"]],
        f"kept in the top-{k} (share of resamples)": rows["share_in_topk"].astype(float).map(_fmt),
        f"metric's top-{k} stability": rows["topk_stability"].astype(float).round(3).map(_fmt),
        "causal check": rows["causal_verdict"]})
    roles = found["roles"][["role", "metric", "value", "threshold"]].copy()
    roles["value"], roles["threshold"] = roles["value"].map(_fmt), roles["threshold"].map(_fmt)
    return {"label": found["label"], "depth": found["depth"], "metrics": metrics, "roles": roles,
            "circuits": found["circuits"][["circuit", "task"]]}


def ablation_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """The worker's `ablate_everywhere` answer as a table: task, metric, prompts, before, after, Δ, worse by."""
    rows = pd.DataFrame(result["rows"], columns=["label", "metric", "higher_is", "n_prompts", "before", "after",
                                                 "delta", "worse_by"])
    table = rows.rename(columns={"label": "task", "n_prompts": "prompts", "higher_is": "higher is",
                                 "delta": "Δ (after − before)", "worse_by": "worse by"})
    for column in ("before", "after", "Δ (after − before)", "worse by"):
        table[column] = table[column].astype(float).round(4)
    return table


def attention_tokens(task: Mapping[str, Any], query: Any = None) -> tuple[list[dict[str, Any]], str]:
    """Per token of one task's probe {text, alpha, title, kind ∈ query|key|future} for the attention of token `query`
    (default: the scored position), and a caption. alpha = weight / the largest weight on a non-BOS key, so a sink
    on BOS does not wash out the rest; BOS's own share is in the caption."""
    tokens, rows = list(task["tokens"]), task["rows"]
    q = int(task["query"]) if query is None else int(query)
    if not 0 <= q < len(tokens):
        raise AppInputError(f"Query position {q} is outside this prompt of {len(tokens)} tokens.")
    row = rows[q]
    first = 1 if task.get("bos") and q > 0 else 0
    scale = max(row[first:], default=0.0) or 1.0
    out = []
    for i, text in enumerate(tokens):
        weight = row[i] if i <= q else None
        kind = "query" if i == q else ("future" if i > q else "key")
        out.append({"text": text, "alpha": 0.0 if weight is None else min(1.0, weight / scale), "kind": kind,
                    "title": f"token {i} {text!r}" + ("" if weight is None else f" · attention {weight:.3f}")})
    bos = f"BOS gets {row[0]:.2f} of it; " if task.get("bos") else ""
    cut = f" (the last {len(tokens)} of {task['n_tokens']} tokens)" if task.get("offset") else ""
    return out, (f"Attention from token {q} {tokens[q]!r}{cut}: {bos}shade = weight / {scale:.2f}, the largest "
                 "weight on another token. Click a token to make it the query.")
