"""Circuit repair (Merullo et al. 2024): IOI's inhibition heads (in IOI, not in Colored Objects) are made to attend
from the final position to the wrong colors, which downstream mover heads suppress (paper: 49.6 % → 93.7 %).

Edit: `FinalQueryBias` (+b on the wrong-color keys); heads chosen greedily on a fit split (≤ `max_heads`, each
must raise the mean logit difference); accuracy and logit difference reported on held-out prompts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.core.contrast import ContrastSet
from workbench.core.errors import PromptError
from workbench.core.heads import HeadRef, parse_heads
from workbench.core.prompts import tokenize
from workbench.edits.apply import run_metric
from workbench.edits.kinds import FinalQueryBias  # noqa: F401  (the repair edit; imported from here too)
from workbench.engine.metrics import get_metric
from workbench.models.loading import model_info


def wrong_color_positions(model, contrast: ContrastSet) -> list[tuple[int, ...]]:
    """Per prompt: positions of the table's wrong colors (lower-case tokens) in the final question."""
    tok = model_info(model).tokenizer
    out = []
    for n, (ids, meta) in enumerate(zip(tokenize(model, contrast.clean), contrast.clean.metadata, strict=True)):
        wanted = {tok(tok.decode([w]).lower(), add_special_tokens=False)["input_ids"][0] for w in meta["wrong_ids"]}
        questions = [i for i, t in enumerate(ids) if tok.decode([t]).strip() == "Q"]
        if not questions:
            raise PromptError(f"prompt {n} has no 'Q:' question; the repair edits Colored Objects prompts "
                              "(workbench.analyses.circuits.tasks.colored_objects).")
        out.append(tuple(i for i in range(questions[-1], len(ids)) if ids[i] in wanted))  # in the last question
    return out


def evaluate(model, contrast: ContrastSet, edit: FinalQueryBias | None) -> tuple[float, float]:
    """(accuracy, mean logit difference) of `contrast.clean` under `edit`."""
    edits = [edit] if edit is not None and edit.heads else []
    values = np.array(run_metric(model, contrast.clean, get_metric("logit_diff"), edits))
    return float((values > 0).mean()), float(values.mean())


def repair(model, fit: ContrastSet, held_out: ContrastSet, candidates: Sequence, *, bias: float = 3.0,
           max_heads: int = 4, progress: bool = True) -> dict:
    """Greedy choice of heads on `fit`; before/after on `held_out`. Returns the chosen heads and a table."""
    candidates = list(parse_heads(candidates))
    fit_keys, held_keys = tuple(wrong_color_positions(model, fit)), tuple(wrong_color_positions(model, held_out))
    chosen: list[HeadRef] = []
    best = evaluate(model, fit, None)[1]
    trials = []
    bar = tqdm(total=max_heads * len(candidates), desc="repair search", unit="trial", disable=not progress)
    for _ in range(max_heads):
        gains = {}
        for head in [c for c in candidates if c not in chosen]:
            acc, ld = evaluate(model, fit, FinalQueryBias(tuple(chosen + [head]), fit_keys, bias))
            gains[head] = ld
            trials.append({"round": len(chosen) + 1, "head": str(head), "fit_accuracy": acc, "fit_logit_diff": ld})
            bar.update()
        if not gains or max(gains.values()) <= best:
            break
        head = max(gains, key=gains.get)
        chosen.append(head)
        best = gains[head]
    bar.close()
    before = evaluate(model, held_out, None)
    after = evaluate(model, held_out, FinalQueryBias(tuple(chosen), held_keys, bias))
    table = pd.DataFrame([{"split": "held-out", "edit": "none", "accuracy": before[0], "logit_diff": before[1]},
                          {"split": "held-out", "edit": f"+{bias:g} attention to wrong colors in "
                           f"{','.join(map(str, chosen)) or '(no head helped)'}", "accuracy": after[0],
                           "logit_diff": after[1]}])
    return {"heads": [str(h) for h in chosen], "bias": bias, "before": before, "after": after, "table": table,
            "trials": pd.DataFrame(trials), "n_fit": len(fit), "n_held_out": len(held_out)}


def random_heads_control(model, held_out: ContrastSet, n_heads: int, *, bias: float = 3.0, seeds: int = 3,
                         layers: Sequence[int] | None = None,
                         exclude: Sequence = ()) -> list[tuple[float, float]]:
    """Held-out (accuracy, logit diff) of the same edit on random heads of `layers` outside `exclude` (a control)."""
    info = model_info(model)
    keys = tuple(wrong_color_positions(model, held_out))
    skip = set(parse_heads(exclude)) if exclude else set()
    pool = [HeadRef(lay, h) for lay in (layers or range(info.n_layers)) for h in range(info.n_heads)
            if HeadRef(lay, h) not in skip]
    out = []
    for seed in range(seeds):
        pick = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n_heads].tolist()
        out.append(evaluate(model, held_out, FinalQueryBias(tuple(pool[i] for i in pick), keys, bias)))
    return out
