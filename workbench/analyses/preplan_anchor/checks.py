"""Causal check for anchors (Li et al. 2025): scale global heads' attention to anchors and measure the trace.

Teacher-forced on the model's greedy trace: `logprob` = mean log p(token_t | tokens_<t), `agreement` = share
still argmax. Edit: `AttentionEdit(global heads, keys=anchors, scale=s)` (s = 0.1) via bridge hooks, vs the
same number of random trace tokens (`n_random` seeds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.analyses.base import Result
from workbench.analyses.preplan_anchor import AnchorParams, Params
from workbench.analyses.preplan_anchor.prompts import generate_traces, problem_prompts
from workbench.analyses.preplan_anchor.score import trace_tables
from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef
from workbench.core.validation import check_number
from workbench.edits.apply import bridge_hooks
from workbench.edits.kinds import AttentionEdit, Batch


@torch.inference_mode()
def _trace_metrics(model, ids: list[int], start: int, edit: AttentionEdit | None) -> tuple[float, float]:
    tokens = torch.tensor([ids])
    if edit is None:
        logits = model(tokens)
    else:
        with model.hooks(fwd_hooks=bridge_hooks(model, [edit], Batch((0,), (tuple(ids),)))):
            logits = model(tokens)
    logp = torch.log_softmax(logits[0, start - 1:-1].float(), -1)
    target = tokens[0, start:]
    chosen = logp.gather(-1, target[:, None])[:, 0]
    return float(chosen.mean()), float((logp.argmax(-1) == target).float().mean())


def anchor_intervention(model, traces, tokens: pd.DataFrame, heads: pd.DataFrame, *, scale: float = 0.1,
                        n_random: int = 3, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """One row per (trace, condition): condition is 'anchors' or 'random-<seed>'; deltas vs the clean run."""
    check_number("scale", scale, float, label="scale")
    check_number("n_random", n_random, int, label="n_random")
    global_heads = tuple(HeadRef(int(r.layer), int(r.head)) for r in heads.itertuples() if r.kind == "global")
    rng = np.random.default_rng(seed)
    rows = []
    for i in tqdm(range(len(traces)), desc="anchor intervention", unit="trace", disable=not progress):
        ids, start = list(traces.token_ids[i]), int(traces.metadata[i]["prompt_len"])
        mine = tokens[tokens["trace"] == i]
        anchors = mine.loc[mine["anchor"], "position"].astype(int).tolist()
        if not anchors:
            continue
        clean = _trace_metrics(model, ids, start, None)
        others = sorted(set(mine["position"].astype(int)) - set(anchors))
        conditions = [("anchors", anchors)] + [
            (f"random-{r}", sorted(rng.choice(others, size=min(len(anchors), len(others)), replace=False).tolist()))
            for r in range(n_random)]
        for name, keys in conditions:
            edited = _trace_metrics(model, ids, start, AttentionEdit(global_heads, tuple(keys), scale=scale))
            rows.append({"trace": i, "condition": name, "n_keys": len(keys),
                         "logprob_before": clean[0], "logprob_after": edited[0], "delta_logprob": edited[0] - clean[0],
                         "agreement_before": clean[1], "agreement_after": edited[1],
                         "delta_agreement": edited[1] - clean[1]})
    return pd.DataFrame(rows, columns=_COLUMNS)


_COLUMNS = ["trace", "condition", "n_keys", "logprob_before", "logprob_after", "delta_logprob", "agreement_before",
            "agreement_after", "delta_agreement"]


def run_anchor_intervention(model, params: AnchorParams, *, scores: pd.DataFrame, progress: bool = True) -> Result:
    """The check: the global heads of `scores` (column kind), anchors of the traces of `n_problems` problems
    (generated or cached, marked with the analysis's default thresholds)."""
    traces = generate_traces(model, problem_prompts(model, params.n_problems), params.max_new_tokens,
                             progress=progress)
    marks = Params(n_problems=params.n_problems, max_new_tokens=params.max_new_tokens, window=params.window,
                   n_shuffles=1)  # only the token marks are used, not the coupling
    _, tokens, _, _ = trace_tables(model, traces, marks, progress=progress)
    table = anchor_intervention(model, traces, tokens, scores, scale=params.scale, n_random=params.n_random,
                                seed=params.seed, progress=progress)
    means = summarize_intervention(table, decimals=None).xs("mean", axis=1, level=1)
    summary = {f"{kind}_{column}": float(means.loc[kind, column]) for kind in means.index
               for column in ("delta_logprob", "delta_agreement")}
    summary.update(n_traces=int(table["trace"].nunique()), scale=params.scale,
                   n_global_heads=int((scores["kind"] == "global").sum()))
    return Result("preplan_anchor", None, {"intervention": table}, summary, kind="anchor_intervention")




def summarize_intervention(table: pd.DataFrame, decimals: int | None = 4) -> pd.DataFrame:
    """Mean deltas for anchors vs the random controls (pooled over seeds), rounded to `decimals`."""
    if table.empty:
        raise WorkbenchError("No trace has an anchor token to lower attention to; use more problems (--n-problems) "
                             "or longer traces (--max-new-tokens).")
    kind = table["condition"].where(table["condition"] == "anchors", "random")
    out = table.assign(kind=kind).groupby("kind")[["delta_logprob", "delta_agreement", "n_keys"]].agg(
        ["mean", "std", "count"])
    return out if decimals is None else out.round(decimals)
