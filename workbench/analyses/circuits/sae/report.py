"""SAE circuit discovery vs patching: ROC-AUC / best F1 against a reference circuit over example counts and seeds,
the norm baseline, and runtime vs activation patching (O'Neill & Bui 2024: hours → seconds against ACDC).
"""

from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
from tqdm.auto import tqdm

from workbench.analyses.circuits import patching
from workbench.analyses.circuits.sae import SAECircuitFinder, norm_difference_baseline
from workbench.analyses.circuits.sae.analysis import collect, evaluate, reference_mask
from workbench.analyses.circuits.tasks import make_task
from workbench.models.loading import model_info

SEED_OFFSET = 1000  # prompts drawn apart from the seed-0 prompts that found the reference circuits


def sweep(model, task: str, reference: str, *, sizes: Sequence[int] = (5, 10, 20, 50), seeds: int = 5,
          discretisers: Sequence[str] = ("sae", "kmeans"), n_latents: int = 300, l1: float = 0.02,
          epochs: int = 500, positions: str = "mean", progress: bool = True) -> pd.DataFrame:
    """One row per (n_examples, seed, method): roc_auc, best_f1, seconds. Seed s draws its own prompts."""
    info = model_info(model)
    mask = reference_mask(reference, info.n_layers, info.n_heads)
    rows = []
    bar = tqdm(total=len(sizes) * seeds, desc="SAE sweep", unit="fit", disable=not progress)
    for n in sizes:
        for seed in range(seeds):
            contrast = make_task(model, task, n, SEED_OFFSET + seed)
            t = time.perf_counter()
            pos, neg = collect(model, contrast, positions)
            collect_s = time.perf_counter() - t
            base = norm_difference_baseline(pos, neg)
            rows.append({"n_examples": n, "seed": seed, "method": "norm-difference baseline",
                         **evaluate(base.numpy(), mask), "seconds": collect_s})
            for disc in discretisers:
                finder = SAECircuitFinder(n_latents=n_latents, l1=l1, epochs=epochs, seed=seed,
                                          discretiser=disc).fit(pos, neg)
                rows.append({"n_examples": n, "seed": seed, "method": f"{disc} codes",
                             **evaluate(finder.raw_node_scores_, mask), "seconds": collect_s + finder.fit_seconds_})
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds per (n_examples, method)."""
    agg = table.groupby(["n_examples", "method"]).agg(
        roc_auc_mean=("roc_auc", "mean"), roc_auc_sd=("roc_auc", "std"), best_f1_mean=("best_f1", "mean"),
        best_f1_sd=("best_f1", "std"), seconds_mean=("seconds", "mean"), runs=("seed", "count"))
    return agg.reset_index()


def patching_seconds(model, task: str, n: int, seed: int = SEED_OFFSET) -> float:
    """Wall time of activation patching of every head on the same prompts the sweep's seed 0 uses."""
    contrast = make_task(model, task, n, seed)
    t = time.perf_counter()
    patching.activation_patching(model, contrast, progress=False)
    return time.perf_counter() - t
