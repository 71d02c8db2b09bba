"""Synthetic saved runs on the tiny model's shape (2 layers × 4 heads) for the atlas tests: per-prompt values with
a planted head, saved through the real catalog (save_run) under a registered analysis name."""

from __future__ import annotations

import numpy as np

from workbench.analyses.base import per_prompt_table
from workbench.core.scores import head_label
from workbench.results.runs import save_run

N_LAYERS, N_HEADS = 2, 4


def planted(n_prompts: int = 40, planted_at: tuple[int, int] = (1, 2), high: float = 1.0, low: float = 0.2,
            noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """[P, L, H] per-prompt values: N(low, noise) for every head, N(high, noise) for the planted one."""
    rng = np.random.default_rng(seed)
    values = rng.normal(low, noise, size=(n_prompts, N_LAYERS, N_HEADS))
    values[:, planted_at[0], planted_at[1]] = rng.normal(high, noise, size=n_prompts)
    return values


def save_synthetic(results_dir, analysis: str, per_prompt: dict[str, np.ndarray], columns: dict[str, str], *,
                   fingerprint: str = "fp-a", model: str = "tiny", params: dict | None = None):
    """Save a run whose HeadScores `columns` (column -> per-prompt metric) are the per-prompt means."""
    rows = []
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            row = {"analysis": analysis, "model": model, "prompt_set": "synthetic", "layer": layer, "head": head,
                   "label": head_label(layer, head)}
            row |= {column: float(per_prompt[metric][:, layer, head].mean()) for column, metric in columns.items()}
            rows.append(row)
    import pandas as pd

    return save_run(pd.DataFrame(rows), params=params or {}, model_fingerprint=fingerprint, prompts_fingerprint="p",
                    timings={}, results_dir=results_dir, per_prompt=per_prompt_table(per_prompt))
