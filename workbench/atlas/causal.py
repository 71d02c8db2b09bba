"""The atlas's causal column: for each metric, the newest saved causal check of the metric's run (the check named by
`AnalysisSpec.causal`, linked by parent_run), read through its `CheckSpec.effect` into
effect, random_mean, random_sd, n_random, metric, higher_is.

A check ranks heads by one HeadScores column (the generic "ablate": its `column` param; the others: "score"), so
it answers for the metrics whose column holds the same values; the run's other metrics are "not run".

`causal_verdict` (the rule): with E the top-k heads' effect, μ and σ the mean and sd over n ≥ 2 random sets,
"matters" when the top heads hurt the check's metric more than random heads by more than two random SDs:
E − μ > 2σ where higher is worse (loss), μ − E > 2σ where higher is better (logit_diff, accuracy, log-prob);
"no larger than random" otherwise (also with fewer than two random sets, where σ is unknown); "not run" without
a saved check.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

COLUMNS = ("metric", "causal_check", "causal_run_id", "causal_effect", "causal_random_mean", "causal_random_sd",
           "causal_n_random", "causal_metric", "causal_higher_is", "causal_verdict")


def causal_verdict(effect: dict | None) -> str:
    """"matters" | "no larger than random" | "not run" for an effect dict (see the module docstring)."""
    if not effect:
        return "not run"
    sd, n = effect.get("random_sd"), int(effect.get("n_random") or 0)
    if sd is None or n < 2 or not all(math.isfinite(float(x)) for x in (effect["effect"], effect["random_mean"], sd)):
        return "no larger than random"
    harm = effect["effect"] - effect["random_mean"]
    harm = harm if effect["higher_is"] == "worse" else -harm
    return "matters" if harm > 2 * float(sd) else "no larger than random"


def read_effect(analysis: str, result) -> dict:
    """The standard effect dict of a saved check Result of `analysis` (its CheckSpec.effect, or the standard one)."""
    from workbench.analyses import get_analysis
    from workbench.analyses.ablation import standard_effect
    from workbench.analyses.base import resolve

    check = get_analysis(analysis).check(result.kind)
    return resolve(check.effect or standard_effect)(result)


def checked_metrics(source, result) -> list[str]:
    """The metrics of a SourceRun whose column holds the values the check ranked by."""
    scores = source.result.scores
    column = result.summary.get("column", "score") if isinstance(result.summary, dict) else "score"
    if column not in scores:
        return []
    ranked = scores[column].to_numpy(dtype=float)
    return [m for m, c in source.columns.items()
            if np.allclose(scores[c].to_numpy(dtype=float), ranked, equal_nan=True)]


def causal_columns(model_runs) -> pd.DataFrame:
    """COLUMNS, one row per metric of `model_runs` (workbench.atlas.sources.ModelRuns: its `runs`, each with
    `analysis`, `columns` {metric: column} and `checks` {check name: newest saved Result})."""
    from workbench.analyses import get_analysis

    rows = []
    for source in model_runs.runs:
        name = get_analysis(source.analysis).causal
        result = source.checks.get(name) if name else None
        covered = set(checked_metrics(source, result)) if result is not None else set()
        effect = read_effect(source.analysis, result) if covered else None
        for metric in source.columns:
            row = {"metric": metric, "causal_check": name if metric in covered else None,
                   "causal_verdict": causal_verdict(effect if metric in covered else None)}
            if metric in covered:
                row.update(causal_run_id=result.record.run_id, causal_effect=effect["effect"],
                           causal_random_mean=effect["random_mean"], causal_random_sd=effect["random_sd"],
                           causal_n_random=effect["n_random"], causal_metric=effect["metric"],
                           causal_higher_is=effect["higher_is"])
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))
