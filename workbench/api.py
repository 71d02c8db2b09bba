"""The facade: everything the CLI, notebooks, the app and batch runs call.

    import workbench.api as wb
    model = wb.load_model("smollm2-135m")
    scores, run = wb.run_analysis("attention_profile", model)
    table = wb.intervene(model, prompts, wb.ScaleHead(("L3H5",), alpha=0.0), metric="loss")
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from workbench.core.prompts import PromptSet
from workbench.edits.intervene import (
    AblateHead,
    AttentionEdit,
    PatchHead,
    ScaleHead,
    UniformAttention,
    summarize,
)
from workbench.models.loading import DEFAULT_MODEL
from workbench.results import runs as results

__all__ = ["load_model", "list_models", "run_analysis", "intervene", "load_result", "find_results",
           "list_analyses", "PromptSet", "AblateHead", "ScaleHead", "UniformAttention", "AttentionEdit",
           "PatchHead", "summarize", "DEFAULT_MODEL", "text_prompts", "plot_heads", "top_heads",
           "load_table", "load_summary", "contrast_task", "load_circuit", "list_circuits", "circuit_overlap",
           "circuit_faithfulness", "plot_circuit_overlap", "repeated_tokens", "induction_ablation_check"]

_MODELS: dict[str, Any] = {}


def load_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "float32"):
    """A TransformerBridge for `name` on `device` (auto | cpu | cuda | cuda:N | mps | map) in `dtype`
    (float32 | bfloat16 | float16), loaded once per process for each (name, device, dtype)."""
    from workbench.engine.devices import resolve_device, resolve_dtype
    from workbench.models import loading as models

    resolve_dtype(dtype)
    key = (models.resolve_spec(name).name, resolve_device(device), dtype)
    if key not in _MODELS:
        _MODELS[key] = models.load_model(name, device=key[1], dtype=dtype)
    return _MODELS[key]


def _as_model(model):
    return load_model(model) if isinstance(model, str) else model


def list_models() -> pd.DataFrame:
    """Bundled and test models with their architecture and offline availability."""
    from workbench.models import loading as models

    return pd.DataFrame([models.describe(s) for s in [*models.BUNDLED.values(), *models.TINY.values()]])


def list_analyses() -> pd.DataFrame:
    from workbench.analyses import REGISTRY

    return pd.DataFrame([{"analysis": s.name, "summary": s.summary} for s in REGISTRY])


def run_analysis(analysis: str, model=DEFAULT_MODEL, prompts: PromptSet | None = None,
                 params: Any = None, *, save: bool = True, progress: bool = True,
                 results_dir=None) -> tuple[pd.DataFrame, results.RunRecord | None]:
    """Run a registered analysis; returns its HeadScores and (if saved) the catalog record."""
    import dataclasses

    from workbench.analyses import get_analysis
    from workbench.analyses.base import as_result, resolve
    from workbench.models.loading import model_info

    spec = get_analysis(analysis)
    model = _as_model(model)
    if params is None or isinstance(params, dict):
        params = spec.make_params(params)
    started = time.perf_counter()
    prompts = prompts if prompts is not None else resolve(spec.default_prompts)(model, params)
    output = as_result(spec.name, resolve(spec.run)(model, prompts, params, progress=progress))
    scores, tables, summary = output.scores, output.tables, output.summary
    info = model_info(model)
    scores = results.validate_head_scores(scores, n_layers=info.n_layers, n_heads=info.n_heads)
    elapsed = {"total": time.perf_counter() - started}
    scores.attrs["summary"] = summary  # extra tables are saved with the run (results.load_table)
    if not save:
        return scores, None
    record = results.save_run(scores, params=dataclasses.asdict(params), model_fingerprint=info.fingerprint,
                              prompts_fingerprint=prompts.fingerprint, timings=elapsed, results_dir=results_dir,
                              tables=tables, summary=summary)
    return scores, record


def intervene(model, prompts: PromptSet, edits, metric: str = "loss", *, batch_size: int = 8) -> pd.DataFrame:
    """Before/after table of `metric` per prompt under `edits` (see workbench.edits.intervene)."""
    from workbench.edits.intervene import intervene as _intervene

    return _intervene(_as_model(model), prompts, edits, metric, batch_size=batch_size)


def text_prompts(model=DEFAULT_MODEL, n_prompts: int = 4, n_tokens: int = 256) -> PromptSet:
    """Natural-text prompts: windows of Python's bundled documentation (public domain, offline)."""
    from workbench.core.natural_text import text_chunks

    return text_chunks(_as_model(model), n_prompts, n_tokens)


def plot_heads(scores: pd.DataFrame, column: str = "score", title: str | None = None):
    """Layer × head heatmap of a HeadScores column (plotly Figure; hover shows L{l}H{h} and extras)."""
    from workbench.viz.heads import head_heatmap

    return head_heatmap(scores, column, title=title)


def top_heads(scores: pd.DataFrame, k: int = 10, column: str = "score") -> list[str]:
    """Labels L{l}H{h} of the k heads with the highest `column`."""
    best = scores.sort_values(column, ascending=False).head(k)
    return [results.head_label(int(r.layer), int(r.head)) for r in best.itertuples()]


def load_result(run_id: str, results_dir=None) -> tuple[pd.DataFrame, results.RunRecord]:
    return results.load_run(run_id, results_dir)


def load_table(run_id: str, name: str, results_dir=None) -> pd.DataFrame:
    """An extra table saved with a run (e.g. preplan_anchor's per-token 'tokens')."""
    return results.load_table(run_id, name, results_dir)


def load_summary(run_id: str, results_dir=None) -> dict:
    """The JSON summary saved with a run (e.g. coupling vs chance, follow rate)."""
    return results.load_summary(run_id, results_dir)


def find_results(analysis: str | None = None, model: str | None = None, prompt_set: str | None = None,
                 results_dir=None) -> pd.DataFrame:
    return results.find_runs(results_dir, analysis=analysis, model=model, prompt_set=prompt_set)


def head_pattern(model, text: str, layer: int, head: int, max_tokens: int = 256) -> dict:
    """Tokens + attention pattern of head L{layer}H{head} on `text` (BOS + last window if long)."""
    from workbench.engine import probe

    return probe.head_pattern(_as_model(model), text, layer, head, max_tokens=max_tokens)


def token_traces(model, text: str, *, window: int = 10, quantile: float = 0.9, head: str | None = None,
                 max_tokens: int = 2048) -> dict:
    """Per-token sink score, BOS mass, WAAD and FAI traces with preplan/anchor marks (workbench.engine.probe)."""
    from workbench.engine import probe

    return probe.token_traces(_as_model(model), text, window=window, quantile=quantile, head=head,
                              max_tokens=max_tokens)


def retrieval_scores(model, prompts: PromptSet | None = None, params: Any = None, *, save: bool = True,
                     progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, results.RunRecord | None]:
    """Retrieval-head scores (Wu et al.) on NIAH trials: (HeadScores, per-trial table, catalog record)."""
    scores, record = run_analysis("retrieval_heads", model, prompts, params, save=save, progress=progress)
    return scores, pd.DataFrame(scores.attrs.get("trials", [])), record


def retrieval_mask_check(model, prompts: PromptSet, scores: pd.DataFrame, **kwargs):
    """NIAH accuracy with the top-k retrieval heads vs k random heads made uniform (retrieval_heads.checks)."""
    from workbench.analyses.retrieval_heads.checks import mask_check

    return mask_check(_as_model(model), prompts, scores, **kwargs)


def retrieval_budget_check(model, prompts: PromptSet, scores: pd.DataFrame, **kwargs):
    """DuoAttention-style KV budget: retrieval-chosen vs random full KV heads (retrieval_heads.checks)."""
    from workbench.analyses.retrieval_heads.checks import budget_check

    return budget_check(_as_model(model), prompts, scores, **kwargs)


def repeated_tokens(model=DEFAULT_MODEL, n_prompts: int = 8, half_len: int = 64, seed: int = 0) -> PromptSet:
    """`[BOS] + r + r` with r = half_len random non-special token ids, seeded (induction_heads.prompts)."""
    from workbench.analyses.induction_heads.prompts import repeated_tokens as build

    return build(_as_model(model), n_prompts, half_len, seed)


def induction_ablation_check(model, prompts: PromptSet | None = None, scores: pd.DataFrame | None = None,
                             **kwargs) -> pd.DataFrame:
    """Repeated-half loss with the top-k induction heads vs k random heads ablated (induction_heads.checks)."""
    from workbench.analyses.induction_heads.checks import induction_ablation_check as check

    return check(_as_model(model), prompts, scores, **kwargs)


def sink_report(model, prompts: PromptSet | None = None, *, n_prompts: int = 16, n_tokens: int = 64,
                progress: bool = True) -> dict[str, pd.DataFrame]:
    """Attention-sink tables (heads, layers, hidden/secondary sinks, tokens, massive activations)."""
    from workbench.analyses.attention_sinks.report import ReportParams
    from workbench.analyses.attention_sinks.report import sink_report as _report
    from workbench.core.natural_text import text_chunks

    model = _as_model(model)
    prompts = prompts if prompts is not None else text_chunks(model, n_prompts, n_tokens)
    return _report(model, prompts, ReportParams(n_prompts=len(prompts), n_tokens=n_tokens), progress=progress)


def act_search(model, calibration: PromptSet | None = None, heldout: PromptSet | None = None, **params):
    """ACT head search (greedy β-calibration of hidden sinks) on the shipped multiple-choice set by default."""
    from workbench.analyses.attention_sinks.act_search import SearchParams
    from workbench.analyses.attention_sinks.act_search import act_search as _search
    from workbench.analyses.attention_sinks.prompts import mc_prompts

    return _search(_as_model(model), calibration or mc_prompts("calibration"), heldout or mc_prompts("heldout"),
                   SearchParams(**params))


# ---- circuits ------------------------------------------------------------------------------------------
def contrast_task(model, task: str = "ioi", n: int = 50, seed: int = 0):
    """A contrast set (clean prompts + corrupted twins): ioi, colored_objects, greater_than or docstring."""
    from workbench.analyses.circuits.tasks import make_task

    return make_task(_as_model(model), task, n, seed)


def load_circuit(name: str, directory=None):
    """A saved circuit (circuits/<name>.toml) and its score map (None if saved without one)."""
    from workbench.results.circuit_maps import load_with_scores

    return load_with_scores(name, directory)


def list_circuits(directory=None) -> pd.DataFrame:
    from workbench.results.circuits import list_circuits as _list

    return _list(directory)


def circuit_overlap(a, b, **kwargs) -> dict:
    """Shared heads, Jaccard, overlap coefficient, Spearman of score maps (analyses.circuits.overlap)."""
    from workbench.analyses.circuits.overlap import overlap

    return overlap(a, b, **kwargs)


def circuit_faithfulness(model, contrast, heads, *, n_random: int = 10, seed: int = 0) -> dict:
    """Share of the clean metric a circuit keeps with every other head mean-ablated, vs random circuits."""
    from workbench.analyses.circuits.faithfulness import faithfulness

    return faithfulness(_as_model(model), contrast, heads, n_random=n_random, seed=seed)


def plot_circuit_overlap(a, b, names=("A", "B")):
    """Layer × head map of two circuits: only A, only B, both."""
    from workbench.analyses.circuits.views import circuit_overlap_map

    return circuit_overlap_map(a.n_layers, a.n_heads, a.heads, b.heads, names=names)
