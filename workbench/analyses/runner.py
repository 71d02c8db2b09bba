"""The one place that runs analysis specs and their checks, and saves each Result in the catalog.

A check that needs scores and gets none checks the named run, else the newest run of the analysis on the same
model fingerprint, else a new default run (saved first, when saving). A saved check records its parent run's
prompt set and prompts fingerprint; a check that takes `run_params` gets the checked run's params.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Any

from workbench.analyses import get_analysis
from workbench.analyses.base import AnalysisSpec, CheckSpec, Result, as_result, resolve
from workbench.core.errors import WorkbenchError
from workbench.models.loading import load_model, model_info
from workbench.results import runs


def spec_of(analysis: str | AnalysisSpec) -> AnalysisSpec:
    return analysis if isinstance(analysis, AnalysisSpec) else get_analysis(analysis)


def _loaded(model):
    return load_model(model) if isinstance(model, str) else model


def _typed(owner: AnalysisSpec | CheckSpec, params: Any):
    return owner.make_params(params) if params is None or isinstance(params, dict) else params


def run_analysis(analysis, model, prompts=None, params=None, *, save: bool = True, progress: bool = True,
                 results_dir=None) -> Result:
    """Run an analysis (default prompts from its params unless given); its Result, saved unless save=False."""
    from workbench.results.runs import validate_head_scores

    spec, model = spec_of(analysis), _loaded(model)
    params = _typed(spec, params)
    started = time.perf_counter()
    prompts = prompts if prompts is not None else resolve(spec.default_prompts)(model, params)
    result = as_result(spec.name, resolve(spec.run)(model, prompts, params, progress=progress))
    info = model_info(model)
    result.scores = validate_head_scores(result.scores, n_layers=info.n_layers, n_heads=info.n_heads)
    elapsed = {"total": time.perf_counter() - started}
    if save:
        _save(spec, result, params, info, prompts.name, prompts.fingerprint, elapsed, results_dir)
    return result


def run_check(analysis, check, model, params=None, *, run_id: str | None = None, scores=None, prompts=None,
              save: bool = True, progress: bool = True, results_dir=None) -> Result:
    """Run a check on a run's HeadScores (which run: see the module docstring); `prompts` replaces its own."""
    from workbench.results.runs import validate_head_scores

    spec, model = spec_of(analysis), _loaded(model)
    check = check if isinstance(check, CheckSpec) else spec.check(check)
    params = _typed(check, params)
    info = model_info(model)
    parent = _parent_run(spec, model, info, run_id, save, progress, results_dir) \
        if check.needs_scores and (scores is None or run_id is not None) else None
    if scores is None and parent is not None:
        scores = parent.scores
    started = time.perf_counter()
    function = resolve(check.run)
    given = {}
    if prompts is not None:
        if "prompts" not in inspect.signature(function).parameters:
            raise WorkbenchError(f"check {check.name} of {spec.name} builds its own prompts from its parameters; "
                                 "it takes no prompts.")
        given = {"prompts": prompts}
    if "run_params" in inspect.signature(function).parameters:  # checks that rebuild the run's own prompts
        given["run_params"] = parent.record.params if parent is not None else None
    result = as_result(spec.name, function(model, params, scores=scores, progress=progress, **given), check.name)
    result.kind = check.name
    if result.scores is not None:
        result.scores = validate_head_scores(result.scores.assign(analysis=spec.name), n_layers=info.n_layers,
                                             n_heads=info.n_heads)
    elapsed = {"total": time.perf_counter() - started}
    if save:
        record = parent.record if parent is not None else None
        prompt_set = record.prompt_set if record else str(scores["prompt_set"].iloc[0]) if scores is not None else ""
        _save(spec, result, params, info, prompt_set, record.prompts_fingerprint if record else "", elapsed,
              results_dir, parent_run=record.run_id if record else None)
    return result


def _parent_run(spec: AnalysisSpec, model, info, run_id, save, progress, results_dir) -> Result:
    """The run a check reads: the named one, the newest on this model, or a new one with default params."""
    if run_id is None:
        found = runs.find_runs(results_dir, analysis=spec.name, model=info.spec.name, kind="run")
        found = found[found["model_fingerprint"] == info.fingerprint]
        if found.empty:
            return run_analysis(spec, model, save=save, progress=progress, results_dir=results_dir)
        run_id = found["run_id"].iloc[0]
    result = runs.load_result(run_id, results_dir)
    record = result.record
    if record.analysis != spec.name or record.kind != "run":
        raise WorkbenchError(f"run {run_id} is a {record.kind} of {record.analysis}, not a run of {spec.name}; "
                             f"pass the id of a {spec.name} run (`workbench results ls --analysis {spec.name}`).")
    if record.model_fingerprint != info.fingerprint:
        raise WorkbenchError(f"run {run_id} was computed on {record.model} (fingerprint {record.model_fingerprint}), "
                             f"not on the model checked now ({info.spec.name}, {info.fingerprint}); "
                             "pass a run of this model or check with --model " + record.model + ".")
    return result


def save_result(analysis, result: Result, model, prompts, params, *, seconds: float, results_dir=None) -> Result:
    """Save a Result computed outside `run_analysis` (a report command: kind "report") on `prompts` with `params`."""
    spec, info = spec_of(analysis), model_info(model)
    if result.scores is not None:
        result.scores = runs.validate_head_scores(result.scores, n_layers=info.n_layers, n_heads=info.n_heads)
    _save(spec, result, params, info, prompts.name, prompts.fingerprint, {"total": seconds}, results_dir)
    return result


def _save(spec, result: Result, params, info, prompt_set: str, prompts_fingerprint: str, timings: dict, results_dir,
          parent_run: str | None = None) -> None:
    from workbench.results.runs import save_run

    result.record = save_run(result.scores, params=dataclasses.asdict(params), model_fingerprint=info.fingerprint,
                             prompts_fingerprint=prompts_fingerprint, timings=timings, results_dir=results_dir,
                             tables=result.tables, summary=result.summary, per_prompt=result.per_prompt,
                             kind=result.kind, parent_run=parent_run, analysis=spec.name, model=info.spec.name,
                             prompt_set=prompt_set)
