"""The registered check "act_search": the ACT head search (act_search.py) on a shipped letter-answer set."""

from __future__ import annotations

import dataclasses

import pandas as pd

from workbench.analyses.attention_sinks import SearchParams
from workbench.analyses.attention_sinks.prompts import mc_prompts
from workbench.analyses.base import Result


def run_act_search(model, params, *, scores: pd.DataFrame | None = None, progress: bool = True) -> Result:
    """Greedy search on `params.dataset`'s calibration split, scored on held-out; tables "trace" and "splits"."""
    from workbench.analyses.attention_sinks.act_search import act_search

    split = {"holdout_every": params.holdout_every, "dataset": params.dataset}
    search = SearchParams(**{f.name: getattr(params, f.name) for f in dataclasses.fields(SearchParams)})
    found = act_search(model, mc_prompts("calibration", **split), mc_prompts("heldout", **split), search,
                       progress=progress)
    summary = {"selected": found.selected, "candidates": found.candidates, "beta": params.beta}
    for row in found.summary.to_dict("records"):
        summary.update({f"{row['split']}_{k}": v for k, v in row.items() if k != "split"})
    return Result("attention_sinks", tables={"trace": found.trace, "splits": found.summary}, summary=summary,
                  kind="act_search")
