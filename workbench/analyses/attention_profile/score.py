"""Attention profile: where each head looks, from streaming statistics on natural text.

Per head, averaged over real queries t ≥ 1 (query 0 skipped):
- `distance = mean_t D_t`, `D_t = Σ_s A[t,s]·(t−s)` tokens (a sink head has D ≈ t);
- score = `distance_non_sink = mean_t (D_t − t·A[t,0]) / (1 − A[t,0])`: distance once the first-token sink is
  removed, over t ≥ 2 with `1 − A[t,0] ≥ MIN_NON_SINK`; NaN if none; `non_sink_queries` = share qualifying;
- `bos_mass = mean_t A[t,0]`, `max_attention = mean_t max_s A[t,s]`, `prev_token = mean_t A[t,t−1]`;
- `kind`: "global" if `distance` > median over heads, else "local" (Li et al. 2025, as preplan_anchor).
Per prompt: each column's mean over the prompt's queries; aggregates weight prompts by T_p − 1, the score by
`non_sink_queries_p · (T_p − 2)`.
"""

from __future__ import annotations

import torch

from workbench.analyses.attention_profile import Params
from workbench.analyses.base import Result, head_frame, per_prompt_table
from workbench.core.natural_text import text_chunks
from workbench.engine.reducers import AttentionStats, ReducerRequest
from workbench.engine.store import ActivationStore
from workbench.models.loading import model_info

MIN_NON_SINK = 0.01  # queries with less attention off key 0 are left out of distance_non_sink
COLUMNS = ("distance_non_sink", "non_sink_queries", "distance", "bos_mass", "max_attention", "prev_token")


def non_sink_distance(distance: torch.Tensor, sink_mass: torch.Tensor, q_pos: torch.Tensor,
                      min_mass: float = MIN_NON_SINK) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query `(D_t − t·A[t,0]) / (1 − A[t,0])` → (value, valid); invalid (0) if `1 − A[t,0] < min_mass` or t < 2."""
    rest = 1.0 - sink_mass
    valid = (rest >= min_mass) & (q_pos >= 2)
    value = (distance - q_pos.to(distance.dtype) * sink_mass) / rest.clamp_min(min_mass)
    return torch.where(valid, value, torch.zeros_like(value)), valid


def profile(stats: list[AttentionStats]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(per-head `[L, H]`, per-prompt `[P, L, H]`) means over queries t ≥ 1 (batch-1 stats; see module docstring)."""
    sums: dict[str, torch.Tensor] = {}
    per_prompt: dict[str, list[torch.Tensor]] = {key: [] for key in COLUMNS}
    count = 0
    non_sink, non_sink_n, n_eligible = 0, 0, 0
    for s in stats:
        rows = slice(1, None)
        parts = {"distance": s.distance[0, :, :, rows], "bos_mass": s.key_mass["bos"][0, :, :, rows],
                 "max_attention": s.argmax_val[0, :, :, rows], "prev_token": s.offset_mass[1][0, :, :, rows]}
        for key, value in parts.items():
            sums[key] = sums.get(key, 0) + value.sum(-1)
            per_prompt[key].append(value.sum(-1) / max(value.shape[-1], 1))
        count += s.distance.shape[-1] - 1
        value, valid = non_sink_distance(s.distance[0], s.key_mass["bos"][0], s.q_pos)
        non_sink = non_sink + value.sum(-1)
        non_sink_n = non_sink_n + valid.sum(-1)
        n_eligible += int((s.q_pos >= 2).sum())
        per_prompt["distance_non_sink"].append(value.sum(-1) / valid.sum(-1))  # NaN: no valid query
        per_prompt["non_sink_queries"].append(valid.sum(-1).float() / max(int((s.q_pos >= 2).sum()), 1))
    out = {k: v / max(count, 1) for k, v in sums.items()}
    out["distance_non_sink"] = torch.where(non_sink_n > 0, non_sink / torch.as_tensor(non_sink_n).clamp_min(1),
                                           torch.full_like(out["distance"], float("nan")))
    out["non_sink_queries"] = torch.as_tensor(non_sink_n).float() / max(n_eligible, 1)
    return out, {k: torch.stack(v) for k, v in per_prompt.items()}


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    """HeadScores and per_prompt: "score" (distance_non_sink) and the other COLUMNS (see the module docstring)."""
    info = model_info(model)
    request = ReducerRequest(row_argmax=True, column_sums=False, distance=True, key_sets={"bos": [0]},
                             offsets=(1,))
    stats, _ = ActivationStore().ensure_stats(model, prompts, request, progress=progress)
    means, per_prompt = profile(stats)
    df = head_frame("attention_profile", info, prompts.name, lambda layer, head: {
        "score": float(means["distance_non_sink"][layer, head]),
        **{key: float(means[key][layer, head]) for key in COLUMNS}})
    df["kind"] = (df["distance"] > df["distance"].median()).map({True: "global", False: "local"})
    per_prompt["score"] = per_prompt.pop("distance_non_sink")
    return Result("attention_profile", df, per_prompt=per_prompt_table(per_prompt))


def default_prompts(model, params: Params):
    return text_chunks(model, params.n_prompts, params.n_tokens)
