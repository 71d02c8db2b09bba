"""Causal check of induction heads (Olsson et al. 2022): ablating the top-k heads by induction score should raise
the loss on the second copy of repeated random tokens far more than ablating k random other heads.

Loss on the repeated half: mean next-token cross-entropy over the targets of the second copy (positions
len − R … len − 1, predicted from the logits one position earlier); the first target of the copy cannot be
inferred, the other R − 1 can be copied. The check "ablate" is the generic one (workbench.analyses.ablation) with
this metric, on repeated tokens built from its own params.
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
