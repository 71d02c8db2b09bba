"""Head attribution on a contrast task: per-head effect by activation patching (exact), attribution
patching (one backward pass) and, with receivers, path patching (see workbench.analyses.circuits.patching for the
formulas; Wang et al. 2022, Merullo et al. 2024). Score = the normalised patching effect
`(M_patched − M_clean) / (M_corrupt − M_clean)` of the chosen method; the other method's score sits in its
own column, and the summary gives their Spearman rank correlation. `per_prompt` holds, per method, each
prompt's share `(M_patched[n] − M_clean)/(M_corrupt − M_clean)` (their mean over prompts is the score), and the
parts `<method>_effect = M_patched[n] − M_clean[n]` and `gap = M_corrupt[n] − M_clean[n]` (one value per prompt, the
same for every patched head), whose ratio of sums `Σ_n effect / Σ_n gap` is the same score: resampling prompts then
resamples the normaliser too (the atlas's bootstrap).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from workbench.analyses.base import Result, per_prompt_table
from workbench.analyses.circuits import AttributionParams as Params
from workbench.core.contrast import ContrastSet, flag_unchanged_answers
from workbench.core.errors import WorkbenchError
from workbench.core.scores import head_label

METHODS = ("activation", "attribution", "both", "path")


def check_layers(layers, n_layers: int) -> list[int] | None:
    """The layers to patch (None = all); fails naming layers the model does not have."""
    bad = sorted(x for x in layers if not 0 <= x < n_layers)
    if bad:
        raise WorkbenchError(f"Layers {bad} do not exist (0..{n_layers - 1}).")
    return sorted(set(layers)) or None


def default_prompts(model, params: Params):
    from workbench.analyses.circuits.tasks import make_task

    return make_task(model, params.task, params.n_prompts, params.seed).as_prompts()


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    from workbench.analyses.circuits import patching
    from workbench.models.loading import model_info

    if params.method not in METHODS:
        raise WorkbenchError(f"Unknown method {params.method!r}; choose one of {', '.join(METHODS)}.")
    if params.receiver_positions not in patching.RECEIVER_POSITIONS:
        raise WorkbenchError(f"receiver_positions must be one of {', '.join(patching.RECEIVER_POSITIONS)}; "
                             f"got {params.receiver_positions!r}.")
    if params.method != "path" and (params.receivers or params.receiver_positions != "all"):
        raise WorkbenchError("receivers and receiver_positions belong to path patching; add method='path' "
                             "(--method path) or leave them out.")
    if params.layers and params.method not in ("activation", "both"):
        raise WorkbenchError(f"layers limits activation patching; method {params.method!r} scores every layer. "
                             "Use method='activation' or leave layers out.")
    info = model_info(model)
    contrast = ContrastSet.from_prompts(prompts)
    base = patching.baseline(model, contrast)
    maps, seconds = {}, {}
    if params.method in ("activation", "both"):
        t = time.perf_counter()
        maps["activation"] = patching.activation_patching(
            model, contrast, base, layers=check_layers(params.layers, info.n_layers), progress=progress,
            per_prompt=True)
        seconds["activation"] = time.perf_counter() - t
    if params.method in ("attribution", "both"):
        t = time.perf_counter()
        maps["attribution"] = patching.attribution_patching(model, contrast, base, per_prompt=True)
        seconds["attribution"] = time.perf_counter() - t
    if params.method == "path":
        t = time.perf_counter()
        maps["path"] = patching.path_patching(model, contrast, params.receivers, base,
                                               receiver_positions=params.receiver_positions, progress=progress,
                                               per_prompt=True)
        seconds["path"] = time.perf_counter() - t
    per_prompt, maps = maps, {k: v.mean(-1) for k, v in maps.items()}  # [L, H, N] → scores [L, H]
    main = "path" if params.method == "path" else "activation" if "activation" in maps else "attribution"
    rows = []
    for layer in range(info.n_layers):
        for head in range(info.n_heads):
            row = {"analysis": "head_attribution", "model": info.spec.name, "prompt_set": prompts.name, "layer": layer,
                   "head": head, "label": head_label(layer, head), "score": float(maps[main][layer, head])}
            row.update({f"{k}_score": float(v[layer, head]) for k, v in maps.items()})
            rows.append(row)
    scores = pd.DataFrame(rows)
    summary = summarize(contrast, base, maps, seconds, params)
    prompt_table = pd.DataFrame({"prompt": range(len(contrast)), "text": [t[-80:] for t in contrast.clean.texts],
                                 "clean_metric": base.clean_metric, "corrupt_metric": base.corrupt_metric,
                                 "corruption_moves_metric": base.corrupt_metric < base.clean_metric})
    return Result("head_attribution", scores, {"prompts": prompt_table}, summary,
                  per_prompt=per_prompt_table(prompt_parts(base, per_prompt))
                  .dropna(subset=["value"]).reset_index(drop=True))  # NaN: heads not patched


def prompt_parts(base, shares: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-prompt `[N, L, H]` values from each method's shares `[L, H, N]`: the share, `<method>_effect` and `gap`
    (see the module docstring)."""
    out, gap = {}, base.corrupt_metric - base.clean_metric
    for method, share in shares.items():
        out[method] = np.moveaxis(share, -1, 0)
        out[f"{method}_effect"] = out[method] * (base.m_corrupt - base.m_clean) + base.m_clean \
            - base.clean_metric[:, None, None]
    scored = ~np.all([np.isnan(out[m]) for m in shares], axis=0)  # heads some method patched
    out["gap"] = np.where(scored, gap[:, None, None], np.nan)
    return out


def summarize(contrast, base, maps, seconds, params) -> dict:
    summary = {"task": params.task, "metric": contrast.metric, "n_prompts": len(contrast),
               "clean_metric": base.m_clean, "corrupt_metric": base.m_corrupt,
               "clean_accuracy": float((base.clean_metric > 0).mean()),
               "corrupt_accuracy": float((base.corrupt_metric > 0).mean()),
               "unchanged_answer_twins": flag_unchanged_answers(contrast),
               "twins_not_lowering_metric": [int(i) for i in np.flatnonzero(base.corrupt_metric >= base.clean_metric)],
               "seconds": seconds}
    if "activation" in maps and "attribution" in maps:
        a, b = maps["activation"].ravel(), maps["attribution"].ravel()
        ok = ~np.isnan(a)
        summary["attribution_vs_activation_spearman"] = float(spearmanr(a[ok], b[ok]).statistic)
    return summary
