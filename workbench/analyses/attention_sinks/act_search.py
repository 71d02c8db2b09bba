"""ACT-style head search (Yu et al. 2024): which heads to calibrate, chosen greedily on a calibration split.

Calibrating a head = `SinkCalibration` (β = 0.4) on its hidden sinks (`score.hidden_sinks`). Candidates: the
`max_candidates` heads with the most hidden-sink mass; one is kept if it raises calibration accuracy; the
kept set is scored on the held-out split. Metric: `logit[right] − max logit[other letters]` > 0.
Departure: the candidate pool is limited (the paper searches every head, on GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.analyses.attention_sinks import SearchParams
from workbench.analyses.attention_sinks.prompts import LETTERS
from workbench.analyses.attention_sinks.score import hidden_sinks, prompt_alphas
from workbench.core.errors import PromptError
from workbench.core.prompts import single_token_id
from workbench.core.scores import head_label
from workbench.edits.apply import run_metric
from workbench.edits.kinds import SinkCalibration
from workbench.engine.metrics import Metric, logit_diff


@dataclass
class SearchResult:
    selected: list[str]
    trace: pd.DataFrame  # one row per candidate: head, accuracy with it, kept?
    summary: pd.DataFrame  # split × (baseline, calibrated) accuracy and margin
    candidates: list[str] = field(default_factory=list)


def _letter_id(model, letter: str) -> int:
    try:
        return single_token_id(model, f" {letter}")
    except PromptError:  # byte-level tokenizers (the tiny test models): the letter after its own space token
        return single_token_id(model, letter)


def letter_margin_metric(model) -> Metric:
    ids = {letter: _letter_id(model, letter) for letter in LETTERS}

    def margin(logits, seq, meta, tok):
        wrong = [i for letter, i in ids.items() if letter != meta["answer_letter"]]
        return logit_diff(logits[len(seq) - 1], ids[meta["answer_letter"]], wrong)
    return Metric("letter_margin", margin)


def sink_keys(alphas: list[torch.Tensor], params: SearchParams) -> list[dict[tuple[int, int], list[int]]]:
    """Per prompt: {(layer, head): hidden-sink key positions}."""
    out = []
    for alpha in alphas:
        mask = hidden_sinks(alpha, params.threshold, params.min_queries, params.uniform_ratio)
        keys: dict[tuple[int, int], list[int]] = {}
        for lay, h, k in mask.nonzero().tolist():
            keys.setdefault((lay, h), []).append(k)
        out.append(keys)
    return out


def rank_candidates(alphas: list[torch.Tensor], params: SearchParams) -> list[tuple[int, int]]:
    """Heads by mean hidden-sink mass Σ_k∈sinks α[k] over prompts (heads with none are left out)."""
    mass = torch.stack([torch.where(hidden_sinks(a, params.threshold, params.min_queries, params.uniform_ratio), a,
                                    torch.zeros_like(a)).sum(-1) for a in alphas]).mean(0)  # [L, H]
    order = torch.argsort(mass.flatten(), descending=True)
    n_heads = mass.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads) for i in order if mass.flatten()[i] > 0][: params.max_candidates]


def _score(model, prompts, heads, keys, params, metric) -> tuple[float, float]:
    edits = [SinkCalibration(tuple(heads), tuple(keys), params.beta)] if heads else []
    margins = torch.tensor(run_metric(model, prompts, metric, edits, batch_size=params.batch_size))
    return float((margins > 0).float().mean()), float(margins.mean())


def act_search(model, calibration, heldout, params: SearchParams = SearchParams(), *,
               progress: bool = True) -> SearchResult:
    """Greedy head selection on `calibration`, then baseline vs calibrated accuracy on both splits."""
    metric = letter_margin_metric(model)
    cal_alpha = prompt_alphas(model, calibration, progress=progress)
    held_alpha = prompt_alphas(model, heldout, progress=progress)
    cal_keys, held_keys = sink_keys(cal_alpha, params), sink_keys(held_alpha, params)
    candidates = rank_candidates(cal_alpha, params)
    base_acc, base_margin = _score(model, calibration, [], cal_keys, params, metric)
    best, selected, trace = base_acc, [], []
    for head in tqdm(candidates, desc="ACT head search", unit="head", disable=not progress):
        acc, margin = _score(model, calibration, [*selected, head], cal_keys, params, metric)
        kept = acc > best
        trace.append({"head": head_label(*head), "calibration_accuracy": acc, "calibration_margin": margin,
                      "kept": kept})
        if kept:
            best, selected = acc, [*selected, head]
    rows = [{"split": "calibration", "n": len(calibration), "baseline_accuracy": base_acc,
             "calibrated_accuracy": best, "baseline_margin": base_margin,
             "calibrated_margin": _score(model, calibration, selected, cal_keys, params, metric)[1]
             if selected else base_margin}]
    h_acc, h_margin = _score(model, heldout, [], held_keys, params, metric)
    c_acc, c_margin = _score(model, heldout, selected, held_keys, params, metric) if selected else (h_acc, h_margin)
    rows.append({"split": "heldout", "n": len(heldout), "baseline_accuracy": h_acc, "calibrated_accuracy": c_acc,
                 "baseline_margin": h_margin, "calibrated_margin": c_margin})
    return SearchResult(selected=[head_label(*h) for h in selected],
                        trace=pd.DataFrame(trace, columns=["head", "calibration_accuracy", "calibration_margin",
                                                           "kept"]),
                        summary=pd.DataFrame(rows), candidates=[head_label(*h) for h in candidates])
