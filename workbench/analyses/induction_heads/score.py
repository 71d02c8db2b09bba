"""Induction and previous-token heads on repeated random tokens (Olsson et al. 2022; TransformerLens
`induction_score`).

On `[BOS] + r + r` (r: R uniformly random ordinary token ids; see prompts.py), per head (l, h),
averaged over the query positions t of the second copy of every sequence:
- score = `induction = mean_t A[t, t−R+1]`: attention to the token after the previous occurrence of the
  current token, in [0, 1] (higher: more induction; chance ≈ 1/t);
- `prev_token_random = mean_t A[t, t−1]`: previous-token attention on the same queries, in [0, 1].
Both come from the streaming offset-mass reducer (offsets 1 and R−1), never from a T×T pattern. Random tokens
remove n-gram and semantic cues, so attention to t−R+1 is the copying mechanism itself. The causal check
(workbench.analyses.induction_heads.checks) ablates the top heads and measures the loss on the second copy.
"""

from __future__ import annotations

import pandas as pd
import torch

from workbench.analyses.induction_heads import Params
from workbench.core.scores import head_label
from workbench.engine.reducers import AttentionStats, ReducerRequest


def request_for(half_len: int) -> ReducerRequest:
    return ReducerRequest(row_argmax=False, column_sums=False, distance=False, offsets=tuple(sorted({1, half_len - 1})))


def induction_profile(stats: list[AttentionStats], half_len: int) -> dict[str, torch.Tensor]:
    """Per-head means `[L, H]` of A[t, t−R+1] and A[t, t−1] over the second-copy queries (the last R rows)."""
    ind, prev, count = 0, 0, 0
    for s in stats:
        rows = slice(s.q_pos.shape[0] - half_len, None)
        ind = ind + s.offset_mass[half_len - 1][0, :, :, rows].sum(-1)
        prev = prev + s.offset_mass[1][0, :, :, rows].sum(-1)
        count += half_len
    return {"induction": ind / max(count, 1), "prev_token_random": prev / max(count, 1)}


def run(model, prompts, params: Params, *, progress: bool = True) -> pd.DataFrame:
    from workbench.core.errors import PromptError
    from workbench.engine.store import ActivationStore
    from workbench.models.loading import model_info

    info = model_info(model)
    half_len = {int(m.get("half_len", -1)) for m in prompts.metadata}
    if len(half_len) != 1 or min(half_len) < 2:
        raise PromptError(f"induction_heads needs repeated-token prompts with one half_len >= 2 in their metadata "
                          f"(workbench.analyses.induction_heads.prompts); {prompts.name!r} has {sorted(half_len)}.")
    half_len = half_len.pop()
    stats, _ = ActivationStore().ensure_stats(model, prompts, request_for(half_len), progress=progress)
    means = induction_profile(stats, half_len)
    rows = [{"layer": layer, "head": head, "label": head_label(layer, head),
             "score": float(means["induction"][layer, head]), "induction": float(means["induction"][layer, head]),
             "prev_token_random": float(means["prev_token_random"][layer, head])}
            for layer in range(info.n_layers) for head in range(info.n_heads)]
    df = pd.DataFrame(rows)
    df.insert(0, "prompt_set", prompts.name)
    df.insert(0, "model", info.spec.name)
    df.insert(0, "analysis", "induction_heads")
    return df


def default_prompts(model, params: Params):
    from workbench.analyses.induction_heads.prompts import repeated_tokens

    return repeated_tokens(model, params.n_prompts, params.half_len, params.seed)
