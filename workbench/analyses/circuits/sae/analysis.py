"""SAE circuit discovery on a contrast task (O'Neill & Bui 2024), measured against patching circuits.

Positives: clean prompts; negatives: their corrupted twins. One vector per (prompt, head): the head's write
`o[h] = z[h] · W_O[h]`, mean over positions (`positions="mean"`, the official code) or the last one.
`SAECircuitFinder` trains one SAE for all heads (300 latents, MSE + 0.02·L1, Adam 1e-3, 500 epochs), codes
each vector by its largest latent and scores h by `|C+ \\ C−|` (softmax over heads). Evaluation: ROC-AUC and
best F1 against a reference circuit; baseline `|mean‖o+‖ − mean‖o−‖|`. `per_prompt`: `code_clean`,
`code_corrupt`, `norm_clean`, `norm_corrupt` per head.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from workbench.analyses.base import Result, per_prompt_table
from workbench.analyses.circuits import SAEParams as Params
from workbench.analyses.circuits.sae import SAECircuitFinder, best_f1, norm_difference_baseline, roc_auc
from workbench.analyses.circuits.sae.autoencoder import one_thread
from workbench.analyses.circuits.tasks import make_task
from workbench.core.contrast import ContrastSet, aligned_ids
from workbench.core.errors import WorkbenchError
from workbench.core.scores import head_label
from workbench.engine.head_io import capture_z, output_weights
from workbench.models.loading import model_info
from workbench.results.circuits import list_circuits, load_circuit


def head_outputs(model, ids: list[list[int]], positions: str = "mean", batch_size: int = 32) -> torch.Tensor:
    """`[N, L, H, d_model]`: each head's write z·W_O, averaged over real positions or at the last one."""
    if positions not in ("mean", "last"):
        raise WorkbenchError(f"positions must be 'mean' or 'last', got {positions!r}.")
    info = model_info(model)
    w_o = output_weights(model).view(info.n_layers, info.d_model, info.n_heads, info.d_head)
    out = torch.zeros(len(ids), info.n_layers, info.n_heads, info.d_model)
    for s in range(0, len(ids), batch_size):
        batch = ids[s:s + batch_size]
        _, z = capture_z(model, batch)  # [L, B, T, H, d]
        lengths = torch.tensor([len(x) for x in batch])
        if positions == "mean":
            valid = (torch.arange(z.shape[2])[None] < lengths[:, None]).float()  # [B, T]
            pooled = (z * valid[None, :, :, None, None]).sum(2) / lengths[None, :, None, None]
        else:
            pooled = z[:, torch.arange(len(batch)), lengths - 1]  # [L, B, H, d]
        out[s:s + len(batch)] = torch.einsum("lbhd,lmhd->blhm", pooled, w_o)
    return out


def collect(model, contrast: ContrastSet, positions: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """(positives, negatives) head outputs, on one thread (SAE turns 1e-6 summation-order noise into other codes)."""
    clean, corrupt = aligned_ids(model, contrast)
    with one_thread():
        return head_outputs(model, clean, positions), head_outputs(model, corrupt, positions)


def reference_mask(name: str, n_layers: int, n_heads: int) -> np.ndarray:
    """Boolean `[L, H]` of a saved circuit; fails if its shape is not the model's."""
    circuit = load_circuit(name)
    if (circuit.n_layers, circuit.n_heads) != (n_layers, n_heads):
        raise WorkbenchError(f"Reference circuit {name!r} is for a {circuit.n_layers}×{circuit.n_heads} model "
                             f"({circuit.model}); this model is {n_layers}×{n_heads}.")
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    for h in circuit.heads:
        mask[h.layer, h.head] = True
    return mask


def default_reference(model_name: str, task: str) -> str | None:
    """The saved circuit for (model, task): `<model>_<task>`, else the first whose file names this model and task."""
    listed = list_circuits()
    if listed.empty:
        return None
    name = f"{model_name}_{task}"
    if name in set(listed["name"]):
        return name
    match = listed[(listed["model"] == model_name) & (listed["task"] == task)].sort_values("name")
    return str(match["name"].iloc[0]) if len(match) else None


def default_prompts(model, params: Params):
    return make_task(model, params.task, params.n_examples, params.seed + 1000).as_prompts()


def evaluate(scores: np.ndarray, mask: np.ndarray | None) -> dict:
    if mask is None:
        return {}
    return {"roc_auc": float(roc_auc(scores, mask)), "best_f1": float(best_f1(scores, mask)[0])}


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    info = model_info(model)
    contrast = ContrastSet.from_prompts(prompts)
    t = time.perf_counter()
    pos, neg = collect(model, contrast, params.positions)
    collect_s = time.perf_counter() - t
    finder = SAECircuitFinder(n_latents=params.n_latents, l1=params.l1, epochs=params.epochs, seed=params.seed,
                              discretiser=params.discretiser, top_fraction=params.top_fraction).fit(pos, neg)
    baseline = norm_difference_baseline(pos, neg).numpy()
    ref = params.reference or default_reference(info.spec.name, params.task)
    mask = reference_mask(ref, info.n_layers, info.n_heads) if ref else None
    in_circuit = set(finder.circuit_)
    rows = [{"analysis": "sae_circuits", "model": info.spec.name, "prompt_set": prompts.name, "layer": lay, "head": h,
             "label": head_label(lay, h), "score": float(finder.node_scores_[lay, h]),
             "raw_score": float(finder.raw_node_scores_[lay, h]), "baseline_score": float(baseline[lay, h]),
             "in_circuit": (lay, h) in in_circuit,
             "in_reference": bool(mask[lay, h]) if mask is not None else False}
            for lay in range(info.n_layers) for h in range(info.n_heads)]
    summary = {"task": params.task, "n_examples": len(contrast), "reference": ref, "discretiser": params.discretiser,
               "collect_s": collect_s, "fit_s": finder.fit_seconds_,
               "n_distinct_codes": int(torch.unique(torch.cat([finder.codes_pos_.ravel(),
                                                               finder.codes_neg_.ravel()])).numel()),
               "circuit": [head_label(*x) for x in finder.circuit_],
               "sae": evaluate(finder.raw_node_scores_, mask), "baseline": evaluate(baseline, mask)}
    edges = finder.edge_scores_
    top = np.argsort(-edges.ravel())[:20]
    n = info.n_heads
    edge_table = pd.DataFrame([{"from": head_label(int(i) // edges.shape[1] // n, int(i) // edges.shape[1] % n),
                                "to": head_label(int(i) % edges.shape[1] // n, int(i) % edges.shape[1] % n),
                                "score": float(edges.ravel()[i])} for i in top if edges.ravel()[i] > 0],
                              columns=["from", "to", "score"])
    per_prompt = per_prompt_table({"code_clean": finder.codes_pos_, "code_corrupt": finder.codes_neg_,
                                   "norm_clean": pos.norm(dim=-1), "norm_corrupt": neg.norm(dim=-1)})
    return Result("sae_circuits", pd.DataFrame(rows), {"edges": edge_table}, summary, per_prompt=per_prompt)
