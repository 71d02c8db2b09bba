"""Head attribution on a contrast task: per-head effect by activation patching (exact), attribution
patching (one backward pass) and, with receivers, path patching (see workbench.analyses.circuits.patching for the
formulas; Wang et al. 2022, Merullo et al. 2024). Score = the normalised patching effect
`(M_patched − M_clean) / (M_corrupt − M_clean)` of the chosen method; the other method's score sits in its
own column, and the summary gives their Spearman rank correlation.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from workbench.analyses.base import AnalysisOutput
from workbench.analyses.circuits import AttributionParams as Params
from workbench.core.contrast import ContrastSet, flag_unchanged_answers
from workbench.core.errors import WorkbenchError
from workbench.core.scores import head_label

METHODS = ("activation", "attribution", "both", "path")


def parse_layers(text: str, n_layers: int) -> list[int] | None:
    if not text.strip():
        return None
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            lo, hi = int(lo), int(hi or lo)
            if hi < lo:
                raise ValueError
            out.update(range(lo, hi + 1))
    except ValueError:
        raise WorkbenchError(f"layers must look like '0-5,20' (ranges low-high); got {text!r}.") from None
    bad = sorted(x for x in out if not 0 <= x < n_layers)
    if bad:
        raise WorkbenchError(f"Layers {bad} do not exist (0..{n_layers - 1}).")
    return sorted(out)


def default_prompts(model, params: Params):
    from workbench.analyses.circuits.tasks import make_task

    return make_task(model, params.task, params.n_prompts, params.seed).as_prompts()


def run(model, prompts, params: Params, *, progress: bool = True) -> AnalysisOutput:
    from workbench.analyses.circuits import patching
    from workbench.models.loading import model_info

    if params.method not in METHODS:
        raise WorkbenchError(f"Unknown method {params.method!r}; choose one of {', '.join(METHODS)}.")
    if params.receiver_positions not in patching.RECEIVER_POSITIONS:
        raise WorkbenchError(f"receiver_positions must be one of {', '.join(patching.RECEIVER_POSITIONS)}; "
                             f"got {params.receiver_positions!r}.")
    if params.method != "path" and (params.receivers.strip() or params.receiver_positions != "all"):
        raise WorkbenchError("receivers and receiver_positions belong to path patching; add method='path' "
                             "(--method path) or leave them out.")
    if params.layers.strip() and params.method not in ("activation", "both"):
        raise WorkbenchError(f"layers limits activation patching; method {params.method!r} scores every layer. "
                             "Use method='activation' or leave layers out.")
    info = model_info(model)
    contrast = ContrastSet.from_prompts(prompts)
    base = patching.baseline(model, contrast)
    maps, seconds = {}, {}
    if params.method in ("activation", "both"):
        t = time.perf_counter()
        maps["activation"] = patching.activation_patching(
            model, contrast, base, layers=parse_layers(params.layers, info.n_layers), progress=progress)
        seconds["activation"] = time.perf_counter() - t
    if params.method in ("attribution", "both"):
        t = time.perf_counter()
        maps["attribution"] = patching.attribution_patching(model, contrast, base)
        seconds["attribution"] = time.perf_counter() - t
    if params.method == "path":
        t = time.perf_counter()
        maps["path"] = patching.path_patching(model, contrast, params.receivers, base,
                                               receiver_positions=params.receiver_positions, progress=progress)
        seconds["path"] = time.perf_counter() - t
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
    per_prompt = pd.DataFrame({"prompt": range(len(contrast)), "text": [t[-80:] for t in contrast.clean.texts],
                               "clean_metric": base.clean_metric, "corrupt_metric": base.corrupt_metric,
                               "corruption_moves_metric": base.corrupt_metric < base.clean_metric})
    return AnalysisOutput(scores, {"prompts": per_prompt}, summary)


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
