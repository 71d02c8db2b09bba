"""Causal checks of head_attribution's HeadScores (mechanics in faithfulness.py, repair.py; Merullo et al. 2024).

- faithfulness: top `top_fraction` heads (by |score|; selection="signed": by the score) kept, the rest
  mean-ablated on fresh prompts, vs `n_random` random circuits of that size (Wang et al. 2022).
- repair: IOI heads outside the Colored Objects circuit get `+bias` on the final query's wrong-color keys,
  chosen greedily on a fit half; held-out accuracy vs random heads of those layers.
`prompts=` (a ContrastSet or its `as_prompts()`) overrides the task's prompts.
"""

from __future__ import annotations

import pandas as pd

from workbench.analyses.base import Result
from workbench.analyses.circuits import FaithfulnessParams, RepairParams
from workbench.core.errors import WorkbenchError
from workbench.models.loading import model_info
from workbench.results.circuits import default_circuit_name, load_circuit, select_heads

_MEASURES = {"clean": "clean model", "all_ablated": "every head mean-ablated",
             "circuit": "circuit only (others mean-ablated)", "kept": "share of the clean metric kept",
             "normalised": "normalised (M_circuit − M_none)/(M_clean − M_none)",
             "random_kept_mean": "random circuits: kept (mean)", "random_kept_sd": "random circuits: kept (sd)",
             "random_normalised_mean": "random circuits: normalised (mean)",
             "random_normalised_sd": "random circuits: normalised (sd)",
             "random_above_circuit": "random circuits at least as faithful (normalised)"}


def task_of(scores: pd.DataFrame, task: str = "") -> str:
    """`task`, or the task of the run whose scores these are (from its prompt set name, e.g. 'ioi-50-s0')."""
    from workbench.analyses.circuits.tasks import TASKS

    if task:
        return task
    name = str(scores["prompt_set"].iloc[0]) if "prompt_set" in scores else ""
    found = [t for t in TASKS if name.replace("-", "_").startswith(f"{t}_")]
    if not found:
        raise WorkbenchError(f"Cannot tell the task of prompt set {name!r}; pass task= (one of {', '.join(TASKS)}).")
    return found[0]


def as_contrast(prompts):
    """A ContrastSet from a ContrastSet, a PromptSet that carries its twins (`as_prompts()`), or None."""
    from workbench.core.contrast import ContrastSet

    return prompts if prompts is None or isinstance(prompts, ContrastSet) else ContrastSet.from_prompts(prompts)


def faithfulness_table(f: dict) -> pd.DataFrame:
    """The faithfulness numbers as (key, measure, value) rows."""
    rows = [(key, label, float(f[key])) for key, label in _MEASURES.items()]
    return pd.DataFrame(rows, columns=["key", "measure", "value"])


def run_faithfulness(model, params: FaithfulnessParams, *, scores: pd.DataFrame, progress: bool = True,
                     prompts=None) -> Result:
    """Faithfulness of the top-`top_fraction` circuit of `scores` on `n_prompts` fresh prompts (seed `seed`)."""
    from workbench.analyses.circuits.faithfulness import faithfulness
    from workbench.analyses.circuits.tasks import make_task

    heads = select_heads(scores, top_fraction=params.top_fraction, selection=params.selection)
    contrast = as_contrast(prompts)
    if contrast is None:
        contrast = make_task(model, task_of(scores, params.task), params.n_prompts, params.seed)
    f = faithfulness(model, contrast, heads, n_random=params.n_random)
    summary = {**f, "prompt_set": contrast.name, "heads": [str(h) for h in heads]}
    return Result("head_attribution", None, {"faithfulness": faithfulness_table(f)}, summary, kind="faithfulness")


def repair_check(model, ioi_heads, colored, params: RepairParams, *, progress: bool = True,
                 contrast=None) -> Result:
    """Repair with the IOI heads outside the Colored Objects circuit `colored`; the Result of the `repair` check."""
    from workbench.analyses.circuits.repair import random_heads_control, repair
    from workbench.analyses.circuits.tasks import make_task

    if colored.task != "colored_objects":
        raise WorkbenchError(f"repair needs a Colored Objects circuit; {colored.name} is for {colored.task!r}.")
    candidates = sorted(set(ioi_heads) - set(colored.heads))
    if not candidates:
        raise WorkbenchError("Every IOI circuit head is also in the Colored Objects circuit; nothing to repair with.")
    contrast = contrast if contrast is not None else make_task(model, "colored_objects", params.n_prompts,
                                                               params.seed)
    fit, held = contrast.split(0.5, params.seed)
    out = repair(model, fit, held, candidates, bias=params.bias, max_heads=params.max_heads, progress=progress)
    summary = {"candidates": [str(h) for h in candidates], "heads": out["heads"], "bias": params.bias,
               "colored_circuit": colored.name, "n_fit": out["n_fit"], "n_held_out": out["n_held_out"],
               "accuracy_before": out["before"][0], "logit_diff_before": out["before"][1],
               "accuracy_after": out["after"][0], "logit_diff_after": out["after"][1]}
    tables = {"held_out": out["table"], "trials": out["trials"]}
    if out["heads"]:
        layers = sorted({h.layer for h in candidates})
        control = random_heads_control(model, held, len(out["heads"]), bias=params.bias, layers=layers,
                                       exclude=out["heads"])
        tables["control"] = pd.DataFrame([{"seed": s, "layers": ",".join(map(str, layers)), "accuracy": acc,
                                           "logit_diff": ld} for s, (acc, ld) in enumerate(control)])
        summary["control_accuracy_mean"] = float(tables["control"]["accuracy"].mean())
    return Result("head_attribution", None, tables, summary, kind="repair")


def run_repair(model, params: RepairParams, *, scores: pd.DataFrame, progress: bool = True,
               prompts=None) -> Result:
    """Repair Colored Objects with the top-`top_fraction` heads of an IOI run's `scores`."""
    contrast = as_contrast(prompts)
    if contrast is None and task_of(scores) != "ioi":
        raise WorkbenchError(f"repair checks an IOI run; these scores are from {scores['prompt_set'].iloc[0]!r}. "
                             "Run head_attribution with task=ioi.")
    colored = load_circuit(params.colored or default_circuit_name(model_info(model).spec.name, "colored_objects"))
    ioi = select_heads(scores, top_fraction=params.top_fraction, selection=params.selection)
    return repair_check(model, ioi, colored, params, progress=progress, contrast=contrast)
