"""The generic causal check "ablate": the top-k heads of a HeadScores column against k random other heads.

The top-k heads of column c (ranked by |c| when c takes negative values, i.e. a signed score; NaN last; ties by
layer, head) and, for each seed s in 0 … seeds−1, k heads drawn by `random.Random(s)` from the other heads, are
ablated together on the analysis's own prompts with the edit that fits the metric: `AblateHead` "mean" (z ← its
mean over every token of a reference set: the prompts, or a contrast task's corrupted twins as in Wang et al.
2022) or "zero", or "uniform" (`UniformAttention`, Wu et al. 2024's masking of retrieval heads). Per condition:
the metric's mean over prompts before and after, and `delta = mean_n(after_n − before_n)`. Olsson et al. (2022)
test induction heads this way; whether the top heads matter is decided in workbench.atlas.causal.
Metrics (workbench.engine.metrics): "loss" on natural text, "logit_diff", "contrast" (a contrast task's own metric
at the last position: logit_diff or prob_diff), or any Metric named "module:NAME".
Torch-free at import: the analyses' specs build their "ablate" CheckSpec with `ablate_check`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Sequence

import pandas as pd

from workbench.analyses.base import CheckSpec, Result, resolve
from workbench.core.errors import InterventionError, WorkbenchError
from workbench.core.scores import is_signed, ranked

MODES = ("mean", "zero", "uniform")


@dataclass(frozen=True)
class AblateParams:
    """The k top heads of `column` vs k random other heads (one set per seed 0 … seeds−1), ablated by `mode`."""

    k: int = 10
    seeds: int = 3
    mode: str = "mean"  # "mean" or "zero" ablation of the head output z, or "uniform" attention
    column: str = "score"  # the HeadScores column ranked (by |value| when it is signed)
    batch_size: int = 8


def ranking_key(scores: pd.DataFrame, column: str = "score") -> pd.Series:
    """The value heads are ranked by: `column`, or |column| if it has negative values (a signed score)."""
    numeric = [c for c in scores.columns if pd.api.types.is_numeric_dtype(scores[c]) and c not in ("layer", "head")]
    if column not in numeric:
        raise WorkbenchError(f"No numeric column {column!r} in these scores; rank by one of {', '.join(numeric)}.")
    values = scores[column].astype(float)
    return values.abs() if is_signed(values) else values


def ranked_heads(scores: pd.DataFrame, column: str = "score") -> list:
    """HeadRefs of `scores` strongest first by `ranking_key` (NaN last; ties by layer, head)."""
    from workbench.core.heads import HeadRef

    ranking_key(scores, column)  # a numeric column, or a clear error
    return [HeadRef(int(r.layer), int(r.head)) for r in ranked(scores, column).itertuples()]


def tied_at_k(scores: pd.DataFrame, column: str, k: int) -> int:
    """How many heads share the k-th head's value (more than the ties inside the top k: the top k is one pick)."""
    key = ranking_key(scores, column).sort_values(ascending=False, na_position="last")
    return int((key == key.iloc[k - 1]).sum())


def ablation_conditions(model, prompts, scores: pd.DataFrame, metric, *, k: int = 10, seeds: Sequence[int] = (0, 1, 2),
                        mode: str = "mean", column: str = "score", reference=None, batch_size: int = 8,
                        progress: bool = False) -> pd.DataFrame:
    """One row per condition ("top-k", then "random" per seed): condition, seed, heads, before, after, delta,
    n_prompts (means over prompts of `metric`, a Metric or its name)."""
    import numpy as np
    from tqdm.auto import tqdm

    from workbench.core.validation import check_number
    from workbench.edits import apply
    from workbench.edits.kinds import AblateHead, UniformAttention
    from workbench.engine.metrics import get_metric

    check_number("k", k, int, label="k")
    if mode not in MODES:
        raise InterventionError(f"Ablation mode must be 'mean', 'zero' or 'uniform'; got {mode!r}.")
    heads = ranked_heads(scores, column)
    if 2 * k > len(heads):
        raise InterventionError(f"k={k} top heads plus {k} random others need {2 * k} heads; the model has "
                                f"{len(heads)}.")
    top, metric = heads[:k], get_metric(metric)
    pool = sorted(set(heads) - set(top))
    conditions = [("top-k", None, top)] + [("random", int(s), sorted(random.Random(int(s)).sample(pool, k)))
                                           for s in seeds]
    before = np.array(apply.run_metric(model, prompts, metric, batch_size=batch_size))
    every = AblateHead(tuple(heads), mode, reference)  # mean z of every head, captured once for all conditions
    context = apply.prepare(model, prompts, apply.resolve([every], prompts), batch_size=batch_size) \
        if mode == "mean" else None
    rows = []
    for name, seed, chosen in tqdm(conditions, desc="ablate", unit="condition", disable=not progress):
        edit = UniformAttention(tuple(chosen)) if mode == "uniform" else AblateHead(tuple(chosen), mode, reference)
        after = np.array(apply.run_metric(model, prompts, metric, [edit], batch_size=batch_size, context=context))
        rows.append({"condition": name, "seed": seed, "heads": ",".join(map(str, chosen)),
                     "before": float(before.mean()), "after": float(after.mean()),
                     "delta": float((after - before).mean()), "n_prompts": len(before)})
    table = pd.DataFrame(rows)
    table["seed"] = table["seed"].astype("Int64")  # none for the top-k row: nullable integers, not floats
    return table


def summarize(table: pd.DataFrame, params, metric) -> dict:
    """The standard summary of an ablation (random_delta_sd: None with fewer than two random sets)."""
    top, rand = table.iloc[0], table["delta"].iloc[1:]
    return {"k": int(params.k), "mode": params.mode, "column": params.column, "metric": metric.name,
            "higher_is": metric.higher_is, "before": float(top["before"]), "top_delta": float(top["delta"]),
            "random_delta_mean": float(rand.mean()),
            "random_delta_sd": float(rand.std(ddof=1)) if len(rand) > 1 else None,
            "random_delta_max": float(rand.max()), "n_random": len(rand), "n_prompts": int(top["n_prompts"]),
            "heads": top["heads"].split(",")}


def standard_effect(result: Result) -> dict:
    """A saved ablation read as the atlas's causal column (the default `CheckSpec.effect`)."""
    s = result.summary
    return {"effect": s["top_delta"], "random_mean": s["random_delta_mean"], "random_sd": s["random_delta_sd"],
            "n_random": s["n_random"], "metric": s["metric"], "higher_is": s["higher_is"]}


def effect_against(effect: float, random, metric: str, higher_is: str) -> dict:
    """The standard effect dict from a check's top-k effect and its random sets' effects (a sequence)."""
    rand = [float(x) for x in random]
    mean = sum(rand) / len(rand) if rand else float("nan")
    sd = (sum((x - mean) ** 2 for x in rand) / (len(rand) - 1)) ** 0.5 if len(rand) > 1 else None
    return {"effect": float(effect), "random_mean": mean, "random_sd": sd, "n_random": len(rand), "metric": metric,
            "higher_is": higher_is}


def metric_for(name: str, prompts):
    """The Metric named `name` ("contrast": the task's own metric of a contrast prompt set)."""
    from workbench.engine.metrics import Metric, get_metric, metric_values

    if name == "contrast":
        contrast = dict(prompts.extra).get("contrast")
        if not contrast:
            raise WorkbenchError(f"Prompt set {prompts.name!r} is not a contrast task; give a task's prompts "
                                 "(workbench.analyses.circuits.tasks).")
        task_metric = contrast["metric"]
        return Metric(task_metric, lambda logits, ids, meta, tok: metric_values(logits[len(ids) - 1][None], [meta],
                                                                                 task_metric)[0])
    return resolve(name) if ":" in name else get_metric(name)


@dataclass(frozen=True)
class Ablate:
    """The "ablate" check of one analysis (a CheckSpec's run). prompts: "run" = the analysis's default prompts
    from the checked run's params (its defaults when there is no run), "check" = from the check's own params
    (which then carry the analysis's fields); reference: "" = the prompts, "corrupt" = a contrast task's twins."""

    analysis: str
    metric: str = "loss"
    prompts: str = "run"
    reference: str = ""

    def __call__(self, model, params, *, scores: pd.DataFrame, progress: bool = True, prompts=None,
                 run_params: dict | None = None) -> Result:
        from workbench.analyses import get_analysis
        from workbench.core.contrast import ContrastSet

        spec = get_analysis(self.analysis)
        if prompts is None:
            known = {f.name for f in fields(spec.params_type)}
            source = params if self.prompts == "check" else \
                spec.make_params({k: v for k, v in (run_params or {}).items() if k in known})
            prompts = resolve(spec.default_prompts)(model, source)
        metric = metric_for(self.metric, prompts)
        reference = ContrastSet.from_prompts(prompts).corrupt if self.reference == "corrupt" else None
        table = ablation_conditions(model, prompts, scores, metric, k=params.k, seeds=range(params.seeds),
                                    mode=params.mode, column=params.column, reference=reference,
                                    batch_size=params.batch_size, progress=progress)
        summary = {**summarize(table, params, metric), "tied_at_k": tied_at_k(scores, params.column, params.k)}
        return Result(self.analysis, tables={"conditions": table}, summary=summary, kind="ablate")


def ablate_check(analysis: str, what: str, *, metric: str = "loss", prompts: str = "run", reference: str = "",
                 params_type: type = AblateParams, effect: str | None = None) -> CheckSpec:
    """The "ablate" CheckSpec of `analysis`: `what` (the metric, in words) with the top-k heads vs k random ones."""
    return CheckSpec("ablate", f"{what} with the top-k heads of a column (by |value| if signed) vs k random heads "
                     "ablated", params_type, Ablate(analysis, metric, prompts, reference), tables=("conditions",),
                     effect=effect)
