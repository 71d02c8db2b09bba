"""The facade: everything the CLI, notebooks, the app and batch runs call. Torch-free (and pandas-free) at import:
model code, tables and figures are imported on first use, re-exported names through `__getattr__` (PEP 562).

    result = wb.run("attention_profile", wb.load_model())          # a Result, saved in the catalog
    checked = wb.check("induction_heads", "ablate", wb.load_model())  # a check of its newest run -> Result
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from workbench.core.errors import WorkbenchError
from workbench.models import DEFAULT_MODEL

if TYPE_CHECKING:
    import pandas as pd

    from workbench.analyses.base import Result
    from workbench.core.prompts import PromptSet
    from workbench.results.runs import RunRecord

# name -> "module" (same name there) or "module:name"; imported on first access.
_LAZY = {
    **dict.fromkeys(("AblateHead", "ScaleHead", "UniformAttention", "AttentionEdit", "PatchHead", "summarize"),
                    "workbench.edits.intervene"),
    **dict.fromkeys(("MAX_PROMPTS", "MAX_PROMPT_CHARS", "MAX_EDIT_TOKENS", "BUDGET_TEXT", "refuse_paths"),
                    "workbench.core.budget"),
    "check_budget": "workbench.core.budget:check_analysis", "EDIT_KINDS": "workbench.edits.vocabulary:KINDS",
    "PromptSet": "workbench.core.prompts", "Result": "workbench.analyses.base",
    "HeadRef": "workbench.core.heads", "parse_heads": "workbench.core.heads",
    "default_results_dir": "workbench.results.runs", "public_domain_text": "workbench.core.natural_text",
    "format_duration": "workbench.core.durations",
    "compare_circuits": "workbench.analyses.circuits.report",
    "score_difference": "workbench.analyses.circuits.overlap:difference_map",
    "plot_heads": "workbench.viz.heads:head_heatmap", "plot_pattern": "workbench.viz.heads:pattern_heatmap",
    "plot_head_marker": "workbench.viz.heads:head_marker",
    "plot_difference": "workbench.viz.heads:difference_map", "plot_placeholder": "workbench.viz.heads:placeholder",
    "DIVERGING": "workbench.viz.heads", "plot_token_traces": "workbench.viz.tokens:token_traces_figure",
    "plot_before_after": "workbench.viz.interventions:before_after_figure",
    **dict.fromkeys(("load_atlas", "export_atlas"), "workbench.atlas.store"),
    "compare_atlases": "workbench.atlas.compare",
    **dict.fromkeys(("head_probe", "ablate_everywhere"), "workbench.atlas.probe"),
    "plot_ranks": "workbench.viz.atlas:rank_heatmap",
}

__all__ = ["DEFAULT_MODEL", "WorkbenchError", "load_model", "list_models", "describe_model", "list_analyses", "run",
           "check", "run_analysis", "intervene", "text_prompts", "top_heads", "load_result", "load_scores",
           "load_table", "load_summary", "find_results", "head_pattern", "token_traces", "load_circuit",
           "list_circuits", "circuit_overlap", "plot_circuit_overlap", "build_atlas", "head_profile", "rank_heads",
           "is_signed", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'workbench.api' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    value = globals()[name] = getattr(importlib.import_module(module), attr or name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "float32"):
    """A TransformerBridge for `name` on `device` (auto | cpu | cuda | cuda:N | mps | map) in `dtype`
    (float32 | bfloat16 | float16), loaded once per process for each (name, device, dtype)."""
    from workbench.models.loading import loaded_model

    return loaded_model(name, device=device, dtype=dtype)


def _as_model(model):
    return load_model(model) if isinstance(model, str) else model


def list_models() -> pd.DataFrame:
    """Bundled and test models with their architecture and offline availability."""
    import pandas as pd

    from workbench.models import loading as models

    return pd.DataFrame([models.describe(s) for s in [*models.BUNDLED.values(), *models.TINY.values()]])


def describe_model(name: str) -> dict:
    """A model's facts (layers, heads, context, availability …) without loading it."""
    from workbench.models import loading as models

    return models.describe(models.resolve_spec(name))


def list_analyses() -> pd.DataFrame:
    import pandas as pd

    from workbench.analyses import REGISTRY

    return pd.DataFrame([{"analysis": s.name, "summary": s.summary} for s in REGISTRY])


def run(analysis: str, model=DEFAULT_MODEL, prompts: PromptSet | None = None, params: Any = None, *,
        save: bool = True, progress: bool = True, results_dir=None) -> Result:
    """Run a registered analysis (params: its Params, a dict of overrides or None); its Result (scores, tables,
    summary, per_prompt, and the catalog record once saved)."""
    from workbench.analyses.runner import run_analysis as run_spec

    return run_spec(analysis, _as_model(model), prompts, params, save=save, progress=progress,
                    results_dir=results_dir)


def check(analysis: str, check: str, model=DEFAULT_MODEL, params: Any = None, *, run_id: str | None = None,
          scores: pd.DataFrame | None = None, save: bool = True, progress: bool = True, results_dir=None) -> Result:
    """Run a named check of an analysis on `scores`, or on the saved run `run_id` (default: this model's latest)."""
    from workbench.analyses.runner import run_check

    return run_check(analysis, check, _as_model(model), params, run_id=run_id, scores=scores, save=save,
                     progress=progress, results_dir=results_dir)


def run_analysis(analysis: str, model=DEFAULT_MODEL, prompts: PromptSet | None = None, params: Any = None, *,
                 save: bool = True, progress: bool = True, results_dir=None) -> tuple[pd.DataFrame, RunRecord | None]:
    """`run`, as (HeadScores, catalog record or None): the shape notebooks and older callers use."""
    result = run(analysis, model, prompts, params, save=save, progress=progress, results_dir=results_dir)
    result.scores.attrs["summary"] = result.summary
    return result.scores, result.record


def intervene(model, prompts: PromptSet, edits, metric: str = "loss", *, batch_size: int = 8) -> pd.DataFrame:
    """Before/after table of `metric` per prompt under `edits` (see workbench.edits.intervene)."""
    from workbench.edits.intervene import intervene as _intervene

    return _intervene(_as_model(model), prompts, edits, metric, batch_size=batch_size)


def text_prompts(model=DEFAULT_MODEL, n_prompts: int = 4, n_tokens: int = 256) -> PromptSet:
    """Natural-text prompts: windows of Python's bundled documentation (public domain, offline)."""
    from workbench.core.natural_text import text_chunks

    return text_chunks(_as_model(model), n_prompts, n_tokens)


def top_heads(scores: pd.DataFrame, k: int = 10, column: str = "score") -> list[str]:
    """Labels L{l}H{h} of the k strongest heads by `column`: by |value| where it is signed (has a value < 0)."""
    from workbench.core.scores import ranked

    return [str(label) for label in ranked(scores, column, k)["label"]]


def load_result(run_id: str, results_dir=None) -> tuple[pd.DataFrame, RunRecord]:
    """A saved run (id or directory): (HeadScores, RunRecord); sizes and checksums are verified."""
    from workbench.results.runs import load_run

    return load_run(run_id, results_dir)


def load_scores(run_id: str, results_dir=None) -> pd.DataFrame:
    """The HeadScores of a saved run (id or directory)."""
    return load_result(run_id, results_dir)[0]


def load_table(run_id: str, name: str, results_dir=None) -> pd.DataFrame:
    """An extra table saved with a run (e.g. preplan_anchor's per-token 'tokens')."""
    from workbench.results.runs import load_table as _load_table

    return _load_table(run_id, name, results_dir)


def load_summary(run_id: str, results_dir=None) -> dict:
    """The JSON summary saved with a run (e.g. coupling vs chance, follow rate)."""
    from workbench.results.runs import load_summary as _load_summary

    return _load_summary(run_id, results_dir)


def find_results(analysis: str | None = None, model: str | None = None, prompt_set: str | None = None,
                 results_dir=None, kind: str | None = None) -> pd.DataFrame:
    """The catalog of saved runs and checks, newest first, filtered by analysis / model / prompt set / kind."""
    from workbench.results.runs import find_runs

    return find_runs(results_dir, analysis=analysis, model=model, prompt_set=prompt_set, kind=kind)


def head_pattern(model, text: str, layer: int, head: int, max_tokens: int = 256) -> dict:
    """Tokens + attention pattern of head L{layer}H{head} on `text` (BOS + last window if long)."""
    from workbench.engine import probe

    return probe.head_pattern(_as_model(model), text, layer, head, max_tokens=max_tokens)


def token_traces(model, text: str, *, window: int = 10, quantile: float = 0.9, head: str | None = None,
                 max_tokens: int = 2048) -> dict:
    """Per-token sink score, BOS mass, WAAD and FAI traces with preplan/anchor marks (analyses.preplan_anchor)."""
    from workbench.analyses.preplan_anchor import traces

    return traces.token_traces(_as_model(model), text, window=window, quantile=quantile, head=head,
                              max_tokens=max_tokens)


# ---- circuits ------------------------------------------------------------------------------------------
def load_circuit(name: str, directory=None):
    """A saved circuit (circuits/<name>.toml) and its score map (None if saved without one)."""
    from workbench.results.circuit_maps import load_with_scores

    return load_with_scores(name, directory)


def list_circuits(directory=None) -> pd.DataFrame:
    """Saved circuits (name, model, task, size, method …; `error` names a file that does not load)."""
    from workbench.results.circuits import list_circuits as _list

    return _list(directory)


def circuit_overlap(a, b, **kwargs) -> dict:
    """Shared heads, Jaccard, overlap coefficient, Spearman of score maps (analyses.circuits.overlap)."""
    from workbench.analyses.circuits.overlap import overlap

    return overlap(a, b, **kwargs)


def plot_circuit_overlap(a, b, names=("A", "B")):
    """Layer × head map of two circuits: only A, only B, both."""
    from workbench.analyses.circuits.views import circuit_overlap_map

    return circuit_overlap_map(a.n_layers, a.n_heads, a.heads, b.heads, names=names)


# ---- the head atlas ------------------------------------------------------------------------------------
def build_atlas(model: str = DEFAULT_MODEL, *, fill: bool = False, n_boot: int = 200, seed: int = 0, top_k: int = 10,
                thresholds: dict[str, float] | None = None, results_dir=None, save: bool = True):
    """The head atlas of `model` from its saved runs (workbench.atlas): values with bootstrap intervals and ranks,
    top-k stability, agreement, roles (`thresholds` change their rules), circuits, causal column, missing runs.
    fill=True first runs what is missing (workbench.atlas.fill)."""
    from workbench.atlas.build import build_atlas as _build

    return _build(model, fill=fill, n_boot=n_boot, seed=seed, top_k=top_k, thresholds=thresholds,
                  results_dir=results_dir, save=save)


def head_profile(atlas, head: str) -> dict:
    """One head of an atlas ("L17H4"): every metric with value, interval and rank, its roles and circuits."""
    return atlas.head(head)


# ---- the catalog: labels and deletion ------------------------------------------------------------------
def label_run(run_id: str, text: str, results_dir=None) -> RunRecord:
    """Give a saved run a short label (≤ 60 printable characters on one line; "" clears it), stored in its run.json."""
    from workbench.results.runs import label_run as _label

    return _label(run_id, text, results_dir)


def delete_run(run_id: str, results_dir=None) -> list[str]:
    """Delete a saved run (also a damaged one) and its checks: moved to <results_dir>/.trash; the ids removed."""
    from workbench.results.runs import delete_run as _delete

    return _delete(run_id, results_dir)


def damaged_runs(results_dir=None) -> pd.DataFrame:
    """Run directories the catalog skips (run_id, analysis, path, problem); `delete_run` removes them."""
    from workbench.results.catalog import damaged_runs as _damaged

    return _damaged(results_dir)


def describe_score(analysis: str, column: str = "score") -> str:
    """What a HeadScores column of an analysis is (definition; unit; direction), from its spec ("" if unstated)."""
    from workbench.analyses import get_analysis

    return get_analysis(analysis).describe(column)


_LAZY["LABEL_MAX_CHARS"] = "workbench.results.runs"
__all__ += ["label_run", "delete_run", "damaged_runs", "describe_score"]
# ---- interventions: prompt sets with answers and corrupted twins, saved intervention runs ----------------
_INTERVENTIONS = {"INTERVENTION_SOURCES": "workbench.edits.sources:SOURCES", "parse_typed": "workbench.edits.sources",
                  "check_intervention_metric": "workbench.edits.sources:check_metric",
                  "NIAH_MIN_TOKENS": "workbench.edits.sources", "intervention_prompts": "workbench.edits.sources:build",
                  "save_intervention": "workbench.edits.intervene",
                  "task_texts": "workbench.analyses.circuits.tasks"}
_LAZY.update(_INTERVENTIONS)
__all__ += [*_INTERVENTIONS, "find_interventions"]


def find_interventions(model: str | None = None, results_dir=None) -> pd.DataFrame:
    """Saved intervention runs (heads, edit, alpha, metric, prompt set, n in `params`), newest first."""
    from workbench.edits.sources import ANALYSIS, KIND

    return find_results(ANALYSIS, model=model, kind=KIND, results_dir=results_dir)
# ---- ranks (issue 18: signed scores by |score|, average ranks for ties) --------------------------------
def rank_heads(scores: pd.DataFrame, column: str = "score", n: int | None = None) -> pd.DataFrame:
    """`scores` strongest first with `label` and average `rank` (1 = strongest, by |value| where the column is
    signed, i.e. has a value < 0); `attrs["by"]` is 'score' or '|score|' (workbench.core.scores.ranked)."""
    from workbench.core.scores import ranked

    return ranked(scores, column, n)


def is_signed(values) -> bool:
    """A score column is signed (ranked by |score|, drawn on a diverging scale) when it holds a value < 0."""
    from workbench.core.scores import is_signed as _signed

    return _signed(values)
# ---- attention text view (paging to the full context) ------------------------------------------------------
def attention_window(model, text: str, layer: int, page: int = 0, size: int = 512) -> dict:
    """Every head of `layer` for query tokens page·size .. +size of `text` (up to the model's context): window
    tokens, rows over the window's keys (base64 uint16, lower triangle), BOS and before-window mass per row.
    One prefill caches post-rotary q and k in an LRU, so a page turn is one matmul per head (engine.window)."""
    from workbench.engine.probe import window_payload

    return window_payload(_as_model(model), text, layer, page, size)
