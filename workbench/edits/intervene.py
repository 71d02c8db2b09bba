"""Head interventions as a tidy before/after table of a metric, one row per prompt (edits: workbench.edits.kinds,
applied by workbench.edits.apply)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from workbench.core.errors import InterventionError
from workbench.core.prompts import PromptSet
from workbench.edits.apply import as_list, check, prepare, resolve, run_metric
from workbench.edits.kinds import (  # noqa: F401  (the edits, re-exported for the callers of this module)
    AblateHead,
    AttentionEdit,
    Edit,
    PatchHead,
    ScaleHead,
    UniformAttention,
    describe,
)
from workbench.edits.sources import ANALYSIS, KIND
from workbench.engine.metrics import Metric, get_metric


def intervene(model, prompts: PromptSet, edits: "Edit | Sequence[Edit]", metric: "str | Metric" = "loss",
              *, batch_size: int = 8, backend: str = "bridge") -> pd.DataFrame:
    """Run `prompts` clean and edited; one row per prompt: prompt, metric, before, after, delta."""
    edits = resolve(as_list(edits), prompts)
    if not edits:
        raise InterventionError("No edits given.")
    check(model, edits, len(prompts))  # fail before any forward pass
    metric = get_metric(metric)
    context = prepare(model, prompts, edits)
    before = run_metric(model, prompts, metric, batch_size=batch_size, backend=backend)
    after = run_metric(model, prompts, metric, edits, batch_size=batch_size, context=context, backend=backend)
    table = pd.DataFrame({"prompt": range(len(prompts)), "text": [t[:80] for t in prompts.texts],
                          "metric": metric.name, "before": before, "after": after})
    table["delta"] = table["after"] - table["before"]
    table.attrs["edits"] = [describe(e) for e in edits]
    return table


def summarize(table: pd.DataFrame) -> dict:
    """Aggregate of a before/after table: means and the share of prompts whose metric rose."""
    return {"metric": table["metric"].iloc[0], "n": len(table), "before": float(table["before"].mean()),
            "after": float(table["after"].mean()), "delta": float(table["delta"].mean()),
            "share_increased": float((table["delta"] > 0).mean())}


def save_intervention(model, prompts: PromptSet, table: pd.DataFrame, params: dict, *, seconds: float = 0.0,
                      results_dir=None):
    """File a before/after table as a run of the catalog (analysis "interventions", kind "intervention"): the
    table as `tables/per_prompt`, `summarize(table)` (+ the edits) as its summary, `params` (heads, edit, alpha,
    metric, prompt set, n …) as its parameters. Returns the RunRecord."""
    from workbench.models.loading import model_info
    from workbench.results.runs import save_run

    info = model_info(model)
    summary = {**summarize(table), "edits": "; ".join(table.attrs.get("edits", []))}
    return save_run(None, params=params, model_fingerprint=info.fingerprint, prompts_fingerprint=prompts.fingerprint,
                    timings={"total": seconds}, results_dir=results_dir, tables={"per_prompt": table},
                    summary=summary, kind=KIND, analysis=ANALYSIS, model=info.spec.name, prompt_set=prompts.name)
