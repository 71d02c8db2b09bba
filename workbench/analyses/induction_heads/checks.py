"""Causal check of induction heads (Olsson et al. 2022): ablating the top-k heads (AblateHead, zero or mean)
should raise the second copy's loss far more than ablating k random others. Loss = mean next-token
cross-entropy over the targets len − R … len − 1 (the first is not inferable).
"""

from __future__ import annotations

import random
from typing import Sequence

import pandas as pd
import torch

from workbench.analyses.base import Result
from workbench.analyses.induction_heads.prompts import repeated_tokens
from workbench.analyses.induction_heads.score import Params, default_prompts
from workbench.analyses.induction_heads.score import run as score_run
from workbench.core.errors import InterventionError
from workbench.core.heads import HeadRef
from workbench.core.validation import check_number
from workbench.edits.intervene import AblateHead, intervene
from workbench.engine.metrics import Metric
from workbench.models.loading import model_info


def _repeated_half_loss(logits, ids, meta, tok):
    half = int(meta["half_len"])
    start = len(ids) - half  # first position of the second copy
    target = torch.as_tensor(ids[start:])
    return torch.nn.functional.cross_entropy(logits[start - 1: len(ids) - 1].float(), target)


REPEATED_HALF_LOSS = Metric("repeated_half_loss", _repeated_half_loss, higher_is="worse")


def induction_ablation_check(model, prompts=None, scores: pd.DataFrame | None = None, *, k: int = 5,
                             seeds: Sequence[int] = (0, 1, 2), mode: str = "mean", batch_size: int = 8,
                             progress: bool = False) -> pd.DataFrame:
    """Rows per condition ('top-k induction', 'random' per seed): heads, loss_before/after, delta; scores default
    to induction_heads on `prompts`."""
    check_number("k", k, int, label="k")
    if mode not in ("zero", "mean"):
        raise InterventionError(f"Ablation mode must be 'zero' or 'mean', got {mode!r}.")
    info = model_info(model)
    prompts = prompts if prompts is not None else default_prompts(model, Params())
    scores = scores if scores is not None else score_run(model, prompts, Params(), progress=progress).scores
    total = info.n_layers * info.n_heads
    if 2 * k > total:
        raise InterventionError(f"k={k} top heads plus {k} random others need {2 * k} heads; the model has {total}.")
    ranked = scores.sort_values(["score", "layer", "head"], ascending=[False, True, True])
    top = [HeadRef(int(r.layer), int(r.head)) for r in ranked.head(k).itertuples()]
    pool = sorted({HeadRef(x, h) for x in range(info.n_layers) for h in range(info.n_heads)} - set(top))
    conditions = [("top-k induction", None, top)]
    conditions += [("random", int(s), sorted(random.Random(int(s)).sample(pool, k))) for s in seeds]
    induction = {(int(r.layer), int(r.head)): float(r.score) for r in scores.itertuples()}
    rows = []
    for name, seed, heads in conditions:
        table = intervene(model, prompts, AblateHead(tuple(heads), mode), REPEATED_HALF_LOSS, batch_size=batch_size)
        rows.append({"condition": name, "seed": seed, "mode": mode, "k": k,
                     "heads": ",".join(str(h) for h in heads),
                     "mean_induction": sum(induction[(h.layer, h.head)] for h in heads) / k,
                     "loss_before": float(table["before"].mean()), "loss_after": float(table["after"].mean()),
                     "delta": float(table["delta"].mean()), "n_prompts": len(table)})
    return pd.DataFrame(rows)


def run_ablate(model, params, *, scores: pd.DataFrame, progress: bool = True) -> Result:
    """The "ablate" check (AblateParams): table "conditions"; summary: Δloss of top-k and random sets, loss before."""
    prompts = repeated_tokens(model, params.n_prompts, params.half_len, params.seed)
    table = induction_ablation_check(model, prompts, scores, k=params.k, seeds=tuple(range(params.seeds)),
                                     mode=params.mode, batch_size=params.batch_size, progress=progress)
    top, rand = table.iloc[0], table.iloc[1:]
    summary = {"k": params.k, "mode": params.mode, "loss_before": float(top["loss_before"]),
               "top_delta": float(top["delta"]), "random_delta_mean": float(rand["delta"].mean()),
               "random_delta_max": float(rand["delta"].max()), "n_prompts": len(prompts)}
    return Result("induction_heads", tables={"conditions": table}, summary=summary, kind="ablate")
