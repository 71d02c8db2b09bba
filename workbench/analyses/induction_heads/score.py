"""Induction and previous-token heads on repeated random tokens (Olsson et al. 2022; TransformerLens `induction_score`).

On `[BOS] + r + r` (R random ids), over the second copy's queries t, from the streaming offset reducer:
score = `induction = mean_t A[t, t−R+1]` in [0, 1] (chance ≈ 1/t); `prev_token_random = mean_t A[t, t−1]`.
"""

from __future__ import annotations

import torch

from workbench.analyses.base import Result, head_frame, per_prompt_table
from workbench.analyses.induction_heads import Params
from workbench.analyses.induction_heads.prompts import repeated_tokens
from workbench.core.errors import PromptError
from workbench.engine.reducers import AttentionStats, ReducerRequest
from workbench.engine.store import ActivationStore
from workbench.models.loading import model_info


def request_for(half_len: int) -> ReducerRequest:
    return ReducerRequest(row_argmax=False, column_sums=False, distance=False, offsets=tuple(sorted({1, half_len - 1})))


def induction_profile(stats: list[AttentionStats], half_len: int) -> tuple[dict, dict]:
    """(Per-head `[L, H]`, per-prompt `[P, L, H]`) means of A[t, t−R+1] and A[t, t−1] over the last R queries."""
    ind, prev, count = 0, 0, 0
    per_prompt: dict[str, list] = {"induction": [], "prev_token_random": []}
    for s in stats:
        rows = slice(s.q_pos.shape[0] - half_len, None)
        ind_p, prev_p = (s.offset_mass[o][0, :, :, rows].sum(-1) for o in (half_len - 1, 1))
        ind, prev, count = ind + ind_p, prev + prev_p, count + half_len
        per_prompt["induction"].append(ind_p / half_len)
        per_prompt["prev_token_random"].append(prev_p / half_len)
    means = {"induction": ind / max(count, 1), "prev_token_random": prev / max(count, 1)}
    return means, {k: torch.stack(v) for k, v in per_prompt.items()}


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    """HeadScores (score = induction) and per_prompt: "score" and "prev_token_random" per prompt."""
    info = model_info(model)
    half_len = {int(m.get("half_len", -1)) for m in prompts.metadata}
    if len(half_len) != 1 or min(half_len) < 2:
        raise PromptError(f"induction_heads needs repeated-token prompts with one half_len >= 2 in their metadata "
                          f"(workbench.analyses.induction_heads.prompts); {prompts.name!r} has {sorted(half_len)}.")
    half_len = half_len.pop()
    stats, _ = ActivationStore().ensure_stats(model, prompts, request_for(half_len), progress=progress)
    means, per_prompt = induction_profile(stats, half_len)
    df = head_frame("induction_heads", info, prompts.name, lambda layer, head: {
        "score": float(means["induction"][layer, head]), "induction": float(means["induction"][layer, head]),
        "prev_token_random": float(means["prev_token_random"][layer, head])})
    return Result("induction_heads", df, per_prompt=per_prompt_table(
        {"score": per_prompt["induction"], "prev_token_random": per_prompt["prev_token_random"]}))


def default_prompts(model, params: Params):
    return repeated_tokens(model, params.n_prompts, params.half_len, params.seed)
