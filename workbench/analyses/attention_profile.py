"""Attention profile: where each head looks, from streaming statistics on natural text.

Per head (l, h), averaged over the real query tokens t ≥ 1 of every prompt:
- score = mean attention distance  `D = mean_t Σ_s A[t,s]·(t−s)` in tokens (higher: looks further back);
- `bos_mass = mean_t A[t,0]`: the share of attention parked on the first token (attention-sink behaviour);
- `max_attention = mean_t max_s A[t,s]`: how peaked the head is (1: one key per query);
- `prev_token = mean_t A[t,t−1]`: previous-token behaviour.
The local/global split of Li et al. (2025) thresholds D; here `kind` is "global" for heads whose D is
above the median over heads, else "local". Query 0 is skipped (it can only attend to itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from workbench.analyses.base import AnalysisSpec
from workbench.engine.reducers import AttentionStats, ReducerRequest
from workbench.results import head_label


@dataclass(frozen=True)
class Params:
    n_prompts: int = 4
    n_tokens: int = 256


def profile(stats: list[AttentionStats]) -> dict[str, torch.Tensor]:
    """Per-head means `[L, H]` over the queries t ≥ 1 of every prompt (stats with batch dim 1)."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for s in stats:
        rows = slice(1, None)
        parts = {
            "score": s.distance[0, :, :, rows],
            "bos_mass": s.key_mass["bos"][0, :, :, rows],
            "max_attention": s.argmax_val[0, :, :, rows],
            "prev_token": s.offset_mass[1][0, :, :, rows],
        }
        for key, value in parts.items():
            sums[key] = sums.get(key, 0) + value.sum(-1)
        count += s.distance.shape[-1] - 1
    return {k: v / max(count, 1) for k, v in sums.items()}


def run(model, prompts, params: Params, *, progress: bool = True) -> pd.DataFrame:
    from workbench.engine.store import ActivationStore
    from workbench.models import model_info

    info = model_info(model)
    request = ReducerRequest(row_argmax=True, column_sums=False, distance=True, key_sets={"bos": [0]},
                             offsets=(1,))
    stats, _ = ActivationStore().ensure_stats(model, prompts, request, progress=progress)
    means = profile(stats)
    rows = []
    for layer in range(info.n_layers):
        for head in range(info.n_heads):
            rows.append({"layer": layer, "head": head, "label": head_label(layer, head),
                         "score": float(means["score"][layer, head]),
                         "bos_mass": float(means["bos_mass"][layer, head]),
                         "max_attention": float(means["max_attention"][layer, head]),
                         "prev_token": float(means["prev_token"][layer, head])})
    df = pd.DataFrame(rows)
    df["kind"] = (df["score"] > df["score"].median()).map({True: "global", False: "local"})
    df.insert(0, "prompt_set", prompts.name)
    df.insert(0, "model", info.spec.name)
    df.insert(0, "analysis", SPEC.name)
    return df


def default_prompts(model, params: Params):
    from workbench.tasks.natural_text import text_chunks

    return text_chunks(model, params.n_prompts, params.n_tokens)


SPEC = AnalysisSpec(name="attention_profile", summary="mean attention distance, BOS mass, peakedness per head",
                    params_type=Params, default_prompts=default_prompts, run=run)
