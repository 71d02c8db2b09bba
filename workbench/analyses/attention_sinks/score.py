"""Attention sinks per head: column importance, sink rate, first-token share, hidden sinks.

From the streaming column sums, per prompt and head:
- column importance `α[k] = Σ_{q≥k} A[q,k] / (T − k)` (0–1), first-token share `α[0]`;
- score = sink rate = share of prompts with `α[0] > ε`, ε = 0.3 (Gu et al., "When Attention Sink Emerges":
  their model-level rate is the share over (prompt, layer, head) on 64-token natural prompts);
- hidden sinks (ACT, Yu et al. 2024): keys with `α > 0.1` except the first such key (normally BOS).
Departures: keys seen by fewer than `min_queries` later queries are never hidden sinks, and a hidden sink
needs `uniform_ratio` × the uniform-attention value `α_unif[k] = Σ_{q≥k} 1/(q+1) / (T−k)` (so early keys of
short prompts are not flagged for being early).
"""

from __future__ import annotations

import torch

from workbench.analyses.attention_sinks import EPSILON, HIDDEN_THRESHOLD, Params  # noqa: F401
from workbench.analyses.base import Result, head_frame, per_prompt_table
from workbench.core.natural_text import text_chunks
from workbench.engine.reducers import ReducerRequest
from workbench.engine.store import ActivationStore
from workbench.models.loading import model_info


def column_importance(col_sum: torch.Tensor) -> torch.Tensor:
    """`α[..., k] = col_sum[..., k] / (T − k)` for column sums `[..., T]` of one unpadded prompt."""
    t = col_sum.shape[-1]
    seen_by = torch.arange(t, 0, -1, dtype=col_sum.dtype, device=col_sum.device)  # T − k
    return col_sum / seen_by


def sink_mask(alpha: torch.Tensor, epsilon: float = EPSILON) -> torch.Tensor:
    """`[...]` bool: the first token is a sink (`α[..., 0] > ε`)."""
    return alpha[..., 0] > epsilon


def sink_rate(alphas: list[torch.Tensor], epsilon: float = EPSILON) -> float:
    """Share of (prompt, layer, head) whose first-token α exceeds ε (alphas: one `[L, H, T]` per prompt)."""
    flags = torch.stack([sink_mask(a, epsilon) for a in alphas])
    return float(flags.float().mean())


def uniform_alpha(t: int) -> torch.Tensor:
    """`α_unif[k] = Σ_{q≥k} 1/(q+1) / (T−k)`: column importance under uniform causal attention."""
    inv = 1.0 / torch.arange(1, t + 1, dtype=torch.float64)
    tail = torch.flip(torch.cumsum(torch.flip(inv, [0]), 0), [0])
    return (tail / torch.arange(t, 0, -1, dtype=torch.float64)).float()


def hidden_sinks(alpha: torch.Tensor, threshold: float = HIDDEN_THRESHOLD, min_queries: int = 1,
                 uniform_ratio: float = 0.0) -> torch.Tensor:
    """`[..., T]` bool hidden sinks: `α > threshold`, ≥ `min_queries` queries, > `uniform_ratio`·α_unif, not first."""
    t = alpha.shape[-1]
    seen_by = torch.arange(t, 0, -1, device=alpha.device)
    sink = (alpha > threshold) & (seen_by >= min_queries)
    first = sink & (torch.cumsum(sink.long(), dim=-1) == 1)  # the first sink found (normally BOS)
    return sink & ~first & (alpha > uniform_ratio * uniform_alpha(t).to(alpha))


def prompt_summary(alphas: list[torch.Tensor], params: Params) -> dict[str, torch.Tensor]:
    """Per-prompt `[P, L, H]` values averaging to `head_summary` (sink flag, α[0], hidden sinks: flag, count, max α)."""
    first = torch.stack([a[..., 0] for a in alphas])  # [P, L, H]
    hidden = [hidden_sinks(a, params.hidden_threshold, params.min_queries, params.uniform_ratio) for a in alphas]
    n_hidden = torch.stack([h.sum(-1).float() for h in hidden])
    max_hidden = torch.stack([torch.where(h, a, torch.zeros_like(a)).amax(-1)
                              for h, a in zip(hidden, alphas, strict=True)])
    return {"sink_rate": (first > params.epsilon).float(), "first_token_share": first,
            "hidden_sink_rate": (n_hidden > 0).float(), "n_hidden_sinks": n_hidden, "max_hidden_alpha": max_hidden}


def head_summary(alphas: list[torch.Tensor], params: Params) -> dict[str, torch.Tensor]:
    """Per-head `[L, H]` aggregates over prompts (one `α [L, H, T]` per prompt)."""
    return {key: value.mean(0) for key, value in prompt_summary(alphas, params).items()}


def prompt_alphas(model, prompts, *, progress: bool = True) -> list[torch.Tensor]:
    """`α [L, H, T]` per prompt from streaming column sums (cached by the activation store)."""
    request = ReducerRequest(row_argmax=False, column_sums=True, distance=False)
    stats, _ = ActivationStore().ensure_stats(model, prompts, request, progress=progress)
    return [column_importance(s.col_sum[0].float()) for s in stats]


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    """HeadScores and per_prompt (`prompt_summary`; "score" = the sink flag); a column is its per-prompt mean."""
    info = model_info(model)
    per_prompt = prompt_summary(prompt_alphas(model, prompts, progress=progress), params)
    summary = {key: value.mean(0) for key, value in per_prompt.items()}
    df = head_frame("attention_sinks", info, prompts.name, lambda layer, head: {
        **{k: float(v[layer, head]) for k, v in summary.items()}, "score": float(summary["sink_rate"][layer, head])})
    per_prompt["score"] = per_prompt.pop("sink_rate")
    return Result("attention_sinks", df, per_prompt=per_prompt_table(per_prompt))


def default_prompts(model, params: Params):
    return text_chunks(model, params.n_prompts, params.n_tokens, name=f"pydoc-{params.n_prompts}x{params.n_tokens}")
