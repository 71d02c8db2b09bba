"""Causal check of induction heads (Olsson et al. 2022): ablating the top-k heads should raise the second copy's
loss far more than ablating k random others. Loss = mean next-token cross-entropy over the targets
len − R … len − 1 (the first is not inferable). "ablate" is the generic check (workbench.analyses.ablation).
"""

from __future__ import annotations

import torch

from workbench.engine.metrics import Metric


def _repeated_half_loss(logits, ids, meta, tok):
    half = int(meta["half_len"])
    start = len(ids) - half  # first position of the second copy
    target = torch.as_tensor(ids[start:])
    return torch.nn.functional.cross_entropy(logits[start - 1: len(ids) - 1].float(), target)


REPEATED_HALF_LOSS = Metric("repeated_half_loss", _repeated_half_loss, higher_is="worse")
