"""Head divergence: which heads read the context (He et al. 2024, VHD, adapted to text).

With `o_t = z_t · W_O[h]` the head's write at aligned position t (the last `n_positions` tokens):
`D[l,h] = mean_n mean_t ‖o_t(passage + question) − o_t(question only)‖₂` (`metric="cosine"`: `1 − cos`).
Higher = more context-aware (the paper's "vision-aware heads"). `divergence_between` compares any two
(model, prompt set) pairs of one shape. Departures: text passages instead of images; answer positions are the
prompt's last tokens (teacher forcing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from workbench.analyses.base import Result, head_frame, per_prompt_table
from workbench.analyses.head_divergence import Params
from workbench.analyses.head_divergence.prompts import known_facts, load_facts, prompt_set, split
from workbench.core.errors import WorkbenchError
from workbench.core.prompts import PromptSet
from workbench.core.scores import head_label
from workbench.edits.intervene import run_metric
from workbench.engine.metrics import LOGIT_DIFF
from workbench.engine.reducers import ReducerRequest
from workbench.engine.store import ActivationStore
from workbench.models.loading import model_info


def divergence(out_a: torch.Tensor, out_b: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    """Head outputs `[N, L, P, H, d]` of two runs → per-prompt, per-head divergence `[N, L, H]` (mean over P)."""
    if out_a.shape != out_b.shape:
        raise WorkbenchError(f"Head outputs differ in shape {tuple(out_a.shape)} vs {tuple(out_b.shape)}: compare "
                             "models with the same layers, heads and width, on prompt sets of the same size.")
    if metric == "l2":
        per_position = (out_a - out_b).norm(dim=-1)
    elif metric == "cosine":
        per_position = 1 - torch.nn.functional.cosine_similarity(out_a, out_b, dim=-1, eps=1e-12)
    else:
        raise WorkbenchError(f"Unknown divergence metric {metric!r}; use 'l2' or 'cosine'.")
    return per_position.mean(dim=2)


def aggregate(per_prompt: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Per-prompt divergence `[N, L, H]` averaged over the heads selected by the bool mask `[L, H]` → `[N]`."""
    return per_prompt[:, heads].mean(-1)


def head_outputs(model, prompts, n_positions: int, *, progress: bool = True) -> torch.Tensor:
    """`[N, L, P, H, d]` head writes z·W_O at each prompt's last `n_positions` tokens (streaming, cached)."""
    if n_positions < 1:
        raise WorkbenchError("n_positions must be at least 1.")
    request = ReducerRequest(row_argmax=False, column_sums=False, distance=False,
                             output_positions=tuple(range(-n_positions, 0)))
    stats, _ = ActivationStore().ensure_stats(model, prompts, request, progress=progress)
    return torch.cat([s.head_out for s in stats], dim=0)


def divergence_between(model_a, prompts_a, model_b, prompts_b, *, n_positions: int = 1, metric: str = "l2",
                       progress: bool = True) -> torch.Tensor:
    """Per-prompt, per-head divergence `[N, L, H]` between two (model, prompt set) runs, aligned at the end."""
    if len(prompts_a) != len(prompts_b):
        raise WorkbenchError(f"Prompt sets differ in size ({len(prompts_a)} vs {len(prompts_b)}); pair them 1:1.")
    out_a = head_outputs(model_a, prompts_a, n_positions, progress=progress)
    out_b = head_outputs(model_b, prompts_b, n_positions, progress=progress)
    return divergence(out_a, out_b, metric)


def follows_passage(model, prompts) -> np.ndarray:
    """Per prompt: logit(passage's answer) − logit(true answer) at the last position (> 0: follows)."""
    return np.array(run_metric(model, prompts, LOGIT_DIFF))


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    facts = prompts.extra.get("facts")
    if not facts:
        raise WorkbenchError("head_divergence needs a counterfactual QA prompt set built by its default_prompts.")
    closed = prompt_set(facts, "none", f"{prompts.name}-closed")
    per_prompt = divergence_between(model, prompts, model, closed, n_positions=params.n_positions,
                                    metric=params.metric, progress=progress).double()
    mean = per_prompt.mean(0)
    info = model_info(model)
    order = torch.argsort(mean.flatten(), descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    top = torch.zeros(info.n_layers * info.n_heads, dtype=torch.bool)
    top[order[: params.top_k]] = True
    top = top.view(info.n_layers, info.n_heads)
    margin = follows_passage(model, prompts)
    agg = aggregate(per_prompt, top).numpy()
    questions = [m["question"] for m in prompts.metadata]
    prompt_table = pd.DataFrame({"prompt": range(len(prompts)), "question": questions,
                                 "follow_margin": margin, "follows": margin > 0, "aggregate_divergence": agg})
    scores = head_frame("head_divergence", info, prompts.name, lambda layer, head: {
        "score": float(mean[layer, head]), "sd": float(per_prompt[:, layer, head].std()) if len(prompts) > 1 else 0.0,
        "rank": int(rank[layer * info.n_heads + head]) + 1})
    summary = {"follow_rate": float((margin > 0).mean()), "n_prompts": len(prompts),
               "top_heads": [head_label(int(i) // info.n_heads, int(i) % info.n_heads) for i in order[: params.top_k]],
               **_correlation(agg, margin > 0), "n_neutral_passages": len(load_facts()[1])}
    return Result("head_divergence", scores, {"prompts": prompt_table}, summary,
                  per_prompt=per_prompt_table({"divergence": per_prompt}))


def _correlation(aggregate_divergence: np.ndarray, follows: np.ndarray) -> dict[str, float | None]:
    """Do prompts where the model ignores the passage come with lower aggregate divergence?"""
    out: dict[str, float | None] = {"divergence_when_following": None, "divergence_when_ignoring": None,
                                    "point_biserial_r": None}
    if follows.any():
        out["divergence_when_following"] = float(aggregate_divergence[follows].mean())
    if (~follows).any():
        out["divergence_when_ignoring"] = float(aggregate_divergence[~follows].mean())
    if follows.any() and (~follows).any():
        out["point_biserial_r"] = float(np.corrcoef(aggregate_divergence, follows.astype(float))[0, 1])
    return out


def default_prompts(model, params: Params):
    """Counterfactual prompts for the scoring half of the facts the model knows closed-book."""
    facts, _ = load_facts()
    kept, _ = known_facts(model, facts)
    scoring, _ = split(kept, params.held_out, params.seed)
    base = prompt_set(scoring, "counterfactual", f"counterfactual-qa-{len(scoring)}")
    return PromptSet(name=base.name, texts=base.texts, metadata=base.metadata, description=base.description,
                     extra={"facts": scoring})
