"""Causal check of induction heads (Olsson et al. 2022): ablating the top-k heads should raise the second copy's
loss far more than ablating k random others. Loss = mean next-token cross-entropy over the targets
len − R … len − 1 (the first is not inferable). "ablate" is the generic check (workbench.analyses.ablation).
"""

from __future__ import annotations

import torch

from workbench.analyses.base import Result
from workbench.engine.metrics import Metric


def _repeated_half_loss(logits, ids, meta, tok):
    half = int(meta["half_len"])
    start = len(ids) - half  # first position of the second copy
    target = torch.as_tensor(ids[start:])
    return torch.nn.functional.cross_entropy(logits[start - 1: len(ids) - 1].float(), target)


REPEATED_HALF_LOSS = Metric("repeated_half_loss", _repeated_half_loss, higher_is="worse")


def effect(result: Result) -> dict:
    """The standard effect dict; also of an "ablate" saved before the generic check (summary without the random
    sets' spread: read from its conditions table, whose first row is the top-k condition)."""
    from workbench.analyses.ablation import standard_effect

    if "random_delta_sd" in result.summary:
        return standard_effect(result)
    rand = result.tables["conditions"]["delta"].iloc[1:]
    return {"effect": float(result.summary["top_delta"]), "random_mean": float(rand.mean()),
            "random_sd": float(rand.std(ddof=1)) if len(rand) > 1 else None, "n_random": len(rand),
            "metric": REPEATED_HALF_LOSS.name, "higher_is": REPEATED_HALF_LOSS.higher_is}
