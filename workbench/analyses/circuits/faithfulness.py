"""Circuit faithfulness (Wang et al. 2022; Merullo et al. 2024): mean-ablate every head outside the circuit.

`kept = M_circuit / M_clean`, `normalised = (M_circuit − M_none) / (M_clean − M_none)` (M_none: all ablated).
Mean ablation = `AblateHead(mode="mean", reference=corrupted prompts, per_position=True)`, as Wang et al.
Chance: random circuits of the same size, on the normalised share (meaningful when M_clean is near 0).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from workbench.analyses.circuits.patching import by_length
from workbench.core.contrast import ContrastSet, aligned_ids
from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef, check_heads, parse_heads
from workbench.core.prompts import PromptSet
from workbench.edits.apply import forward, prepare
from workbench.edits.kinds import AblateHead, Batch
from workbench.engine.metrics import metric_values
from workbench.models.loading import model_info
from workbench.results.circuits import random_circuits


class MeanAblation:
    """Per length group: the clean ids, and the corrupted prompts as the per-position mean-ablation reference."""

    def __init__(self, model, contrast: ContrastSet, batch_size: int = 64):
        clean, corrupt = aligned_ids(model, contrast)
        info = model_info(model)
        self.model, self.contrast, self.clean_ids = model, contrast, clean
        self.groups = by_length(clean)
        self.every = tuple(HeadRef(lay, h) for lay in range(info.n_layers) for h in range(info.n_heads))
        self.references = [PromptSet(f"{contrast.corrupt.name}-len{len(clean[rows[0]])}",
                                     tuple(contrast.corrupt.texts[i] for i in rows),
                                     token_ids=tuple(tuple(corrupt[i]) for i in rows)) for rows in self.groups]
        self.context = {"mean_z": {}}
        for ref in self.references:
            ablate = AblateHead(self.every, "mean", ref, per_position=True)
            self.context["mean_z"].update(prepare(model, ref, [ablate], batch_size=batch_size)["mean_z"])

    def metric(self, keep: Sequence | None) -> float:
        """Mean metric with every head outside `keep` mean-ablated (`keep=None`: the clean model)."""
        info = model_info(self.model)
        kept = set(parse_heads(keep)) if keep else set()
        check_heads(kept, info.n_layers, info.n_heads)
        outside = () if keep is None else tuple(h for h in self.every if h not in kept)
        total = 0.0
        for rows, ref in zip(self.groups, self.references, strict=True):
            edits = [AblateHead(outside, "mean", ref, per_position=True)] if outside else []
            ids = tuple(tuple(self.clean_ids[i]) for i in rows)
            logits = forward(self.model, ids, edits, Batch(tuple(rows), ids, self.context), backend="twin", last=True)
            meta = [self.contrast.clean.metadata[i] for i in rows]
            total += float(metric_values(logits, meta, self.contrast.metric).sum())
        return total / len(self.contrast)


def faithfulness(model, contrast: ContrastSet, heads: Sequence, *, n_random: int = 10, seed: int = 0) -> dict:
    """Share of the clean metric the circuit keeps, against `n_random` random circuits of the same size."""
    if n_random < 1:
        raise WorkbenchError(f"n_random must be ≥ 1 (random circuits to compare with); got {n_random}.")
    info = model_info(model)
    heads = parse_heads(heads)
    ablation = MeanAblation(model, contrast)
    m_clean, m_none, m_circuit = ablation.metric(None), ablation.metric(()), ablation.metric(heads)
    randoms = [ablation.metric(c) for c in random_circuits(info.n_layers, info.n_heads, len(heads), n_random, seed)]
    kept = lambda m: m / m_clean if abs(m_clean) > 1e-9 else float("nan")  # noqa: E731
    norm = lambda m: (m - m_none) / (m_clean - m_none) if abs(m_clean - m_none) > 1e-9 else float("nan")  # noqa: E731
    random_kept = np.array([kept(m) for m in randoms])
    random_norm = np.array([norm(m) for m in randoms])
    return {"n_heads": len(heads), "metric": contrast.metric, "clean": m_clean, "all_ablated": m_none,
            "circuit": m_circuit, "kept": kept(m_circuit), "normalised": norm(m_circuit),
            "random_kept_mean": float(random_kept.mean()), "random_kept_sd": float(random_kept.std(ddof=1))
            if n_random > 1 else 0.0, "random_normalised_mean": float(random_norm.mean()),
            "random_normalised_sd": float(random_norm.std(ddof=1)) if n_random > 1 else 0.0,
            "random_above_circuit": int((random_norm >= norm(m_circuit)).sum()), "n_random": n_random}
