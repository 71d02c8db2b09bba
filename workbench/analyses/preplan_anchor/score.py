"""Preplan and anchor tokens in reasoning traces (Li et al. 2025, "Attention Illuminates LLM Reasoning").

Per head: score `D = mean_t Σ_s A[t,s]·(t−s)` tokens; heads below the split quantile (default median) are
local, the rest global. Per trace token, from streaming statistics:
- `WAAD_t = Σ_{s≤t} A[t,s]·min(t−s, W)` averaged over local heads (W = 10);
- `FAI_s = mean_{t>s} A[t,s] = (Σ_t A[t,s] − A[s,s]) / (T−1−s)` averaged over global heads.
Preplan tokens: local WAAD maxima ≥ its `peak_quantile`; anchors: FAI ≥ its `anchor_quantile` (last
`min_future` tokens excluded). Coupling: share of preplans followed within 0..k tokens by an anchor, vs the
same share with anchors shuffled (`n_shuffles`, seeded); p = share of draws ≥ observed. Per prompt:
`mean_distance`, `n_tokens`; the score is their token-weighted mean. Departures: split and thresholds are
settings; only generated tokens are scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from workbench.analyses.base import Result, per_prompt_table
from workbench.analyses.preplan_anchor import Params
from workbench.analyses.preplan_anchor.prompts import generate_traces, problem_prompts, score_traces
from workbench.core.scores import head_label
from workbench.engine.reducers import AttentionStats, ReducerRequest
from workbench.engine.store import ActivationStore
from workbench.models.loading import model_info


def head_split(mean_distance: torch.Tensor, quantile: float = 0.5) -> torch.Tensor:
    """`[L, H]` mean distances → bool `[L, H]`, True for global heads (distance above the quantile)."""
    return mean_distance > torch.quantile(mean_distance.flatten(), quantile)


def waad_trace(windowed_distance: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """`[L, H, T]` windowed distances, local mask `[L, H]` → WAAD per token `[T]` (mean over local heads)."""
    return windowed_distance[local].mean(0)


def fai_trace(col_sum: torch.Tensor, self_attention: torch.Tensor, global_heads: torch.Tensor) -> torch.Tensor:
    """`[L, H, T]` column sums and diagonal `A[s,s]` → FAI per key `[T]` (mean over global heads; last = nan)."""
    t = col_sum.shape[-1]
    later = torch.arange(t - 1, -1, -1, dtype=col_sum.dtype)  # number of queries t > s
    fai = (col_sum - self_attention)[global_heads] / later.clamp(min=1)
    fai = fai.mean(0)
    fai[later == 0] = float("nan")
    return fai


def preplan_tokens(waad: np.ndarray, quantile: float) -> np.ndarray:
    """Indices of local maxima of `waad` (strictly above the left neighbour) at or above its quantile."""
    if len(waad) < 3:
        return np.array([], dtype=int)
    threshold = np.quantile(waad, quantile)
    inner = np.arange(1, len(waad) - 1)
    peaks = inner[(waad[inner] > waad[inner - 1]) & (waad[inner] >= waad[inner + 1]) & (waad[inner] >= threshold)]
    return peaks


def anchor_tokens(fai: np.ndarray, quantile: float) -> np.ndarray:
    """Indices whose FAI is at or above its quantile (nan entries never count)."""
    valid = ~np.isnan(fai)
    if not valid.any():
        return np.array([], dtype=int)
    return np.flatnonzero(valid & (fai >= np.quantile(fai[valid], quantile)))


def coupling_rate(preplans: np.ndarray, anchors: np.ndarray, k: int) -> float:
    """Share of preplan tokens p with an anchor in [p, p + k] (nan without preplan tokens)."""
    if len(preplans) == 0:
        return float("nan")
    anchor_set = set(int(a) for a in anchors)
    return float(np.mean([any(p + d in anchor_set for d in range(k + 1)) for p in preplans]))


def coupling_vs_chance(traces: list[tuple[np.ndarray, np.ndarray, int]], k: int, n_shuffles: int,
                       seed: int) -> dict[str, float]:
    """Pooled coupling over traces `(preplans, anchors, n_positions)` vs anchors shuffled per trace."""
    def pooled(anchor_sets) -> float:
        hits = total = 0
        for (pre, _, _), anchors in zip(traces, anchor_sets, strict=True):
            if len(pre):
                hits += coupling_rate(pre, anchors, k) * len(pre)
                total += len(pre)
        return hits / total if total else float("nan")

    observed = pooled([a for _, a, _ in traces])
    rng = np.random.default_rng(seed)
    draws = np.array([pooled([rng.choice(n, size=len(a), replace=False) if len(a) else a for _, a, n in traces])
                      for _ in range(n_shuffles)])
    return {"coupling": observed, "chance_mean": float(np.nanmean(draws)), "chance_sd": float(np.nanstd(draws)),
            "p_value": float((np.sum(draws >= observed) + 1) / (len(draws) + 1)),
            "n_preplan": int(sum(len(p) for p, _, _ in traces)), "n_anchor": int(sum(len(a) for _, a, _ in traces))}


REQUEST_GLOBAL = ReducerRequest(row_argmax=False, column_sums=True, distance=True, offsets=(0,))


def request_windowed(window: int) -> ReducerRequest:
    return ReducerRequest(row_argmax=False, column_sums=False, distance=True, distance_window=window)


def trace_tables(model, traces, params: Params, *, progress: bool = True):
    """Stream every trace twice (unclipped and windowed); return (head table, token table, coupling, per_prompt)."""
    info = model_info(model)
    store = ActivationStore()
    plain, _ = store.ensure_stats(model, traces, REQUEST_GLOBAL, progress=progress)
    windowed, _ = store.ensure_stats(model, traces, request_windowed(params.window), progress=progress)
    sums, n_tokens = _trace_distances(plain, [m["prompt_len"] for m in traces.metadata])
    mean_distance = sums.sum(0) / n_tokens.sum(0)
    global_heads = head_split(mean_distance, params.split_quantile)
    tok = info.tokenizer
    rows, pooled = [], []
    for i, (full, win) in enumerate(zip(plain, windowed, strict=True)):
        start = traces.metadata[i]["prompt_len"]
        ids = traces.token_ids[i]
        waad = waad_trace(win.distance[0], ~global_heads).numpy()[start:]
        fai = fai_trace(full.col_sum[0], full.offset_mass[0][0], global_heads).numpy()[start:]
        eligible = max(0, len(fai) - params.min_future)
        fai[eligible:] = np.nan
        pre, anchors = preplan_tokens(waad, params.peak_quantile), anchor_tokens(fai, params.anchor_quantile)
        pooled.append((pre, anchors, max(eligible, len(anchors))))
        pre_set, anchor_set = set(pre.tolist()), set(anchors.tolist())
        for j in range(len(waad)):
            rows.append({"trace": i, "position": start + j, "step": j, "token": tok.decode([ids[start + j]]),
                         "waad": float(waad[j]), "fai": float(fai[j]), "preplan": j in pre_set,
                         "anchor": j in anchor_set})
    coupling = coupling_vs_chance(pooled, params.coupling_k, params.n_shuffles, params.seed)
    heads = pd.DataFrame([{"layer": layer, "head": head, "label": head_label(layer, head),
                           "score": float(mean_distance[layer, head]),
                           "kind": "global" if bool(global_heads[layer, head]) else "local"}
                          for layer in range(info.n_layers) for head in range(info.n_heads)])
    per_prompt = per_prompt_table({"mean_distance": sums / n_tokens, "n_tokens": n_tokens})
    return heads, pd.DataFrame(rows), coupling, per_prompt


def _trace_distances(stats: list[AttentionStats], starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per trace: summed unclipped distances over its generated tokens `[N, L, H]` (float64), and their count."""
    parts = [s.distance[0, :, :, start:].double() for s, start in zip(stats, starts, strict=True)]
    return (torch.stack([p.sum(-1) for p in parts]),
            torch.stack([torch.full(p.shape[:2], p.shape[-1], dtype=torch.float64) for p in parts]))


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    traces = prompts if prompts.token_ids is not None else generate_traces(model, prompts, params.max_new_tokens,
                                                                           progress=progress)
    heads, tokens, coupling, per_prompt = trace_tables(model, traces, params, progress=progress)
    answers = pd.DataFrame(score_traces(model, traces))
    heads.insert(0, "prompt_set", traces.name)
    heads.insert(0, "model", model_info(model).spec.name)
    heads.insert(0, "analysis", "preplan_anchor")
    summary = {**coupling, "accuracy": float(answers["correct"].mean()), "n_traces": len(answers),
               "n_global_heads": int((heads["kind"] == "global").sum())}
    return Result("preplan_anchor", heads, {"tokens": tokens, "answers": answers}, summary, per_prompt=per_prompt)


def default_prompts(model, params: Params):
    return problem_prompts(model, params.n_problems)
