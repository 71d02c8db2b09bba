"""The saved runs an atlas reads: for one model and one model fingerprint, the newest run of every registered
analysis (one per task where its Params have a `task`), the newest check of each kind linked to it (parent_run),
and the analyses or tasks that have no run (with the command that fills them).

Runs of another fingerprint (other weights or library versions) are never mixed in: the atlas reads the
fingerprint of the model's newest run unless one is named, and asking for runs of two fingerprints is an error.
Metric names: `<analysis>.<column>` (`@<task>` when the run has a task) for every numeric per-head column of the
run's HeadScores except the identity and bookkeeping columns, bools, columns constant over heads, and a `score`
column that repeats another column (e.g. attention_sinks.score is its sink_rate).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.errors import WorkbenchError

BOOKKEEPING = ("layer", "head", "rank", "sd", "n_trials")  # per-head columns that are not a head's measurement


@dataclass
class SourceRun:
    """One saved run the atlas reads: its Result (scores, per_prompt, record), task, metrics and linked checks."""

    analysis: str
    task: str | None
    result: Any  # workbench.analyses.base.Result
    columns: dict[str, str]  # metric name -> HeadScores column
    checks: dict[str, Any] = field(default_factory=dict)  # check name -> newest saved check Result of this run

    @property
    def run_id(self) -> str:
        return self.result.record.run_id


@dataclass
class ModelRuns:
    model: str
    fingerprint: str
    runs: list[SourceRun]
    missing: pd.DataFrame  # analysis, task, command
    other_fingerprints: tuple[str, ...] = ()


def metric_name(analysis: str, column: str, task: str | None) -> str:
    return f"{analysis}.{column}" + (f"@{task}" if task else "")


def metric_columns(analysis: str, scores: pd.DataFrame, task: str | None) -> dict[str, str]:
    """Metric name -> column for the per-head measurements of a HeadScores table (see the module docstring)."""
    from workbench.core.scores import IDENTITY_COLUMNS

    skip = {*IDENTITY_COLUMNS, *BOOKKEEPING, "label"}
    numeric = [c for c in scores.columns if c not in skip and pd.api.types.is_numeric_dtype(scores[c])
               and not pd.api.types.is_bool_dtype(scores[c])]
    kept = [c for c in numeric if scores[c].nunique(dropna=True) > 1]
    if "score" in kept and any(np.allclose(scores["score"], scores[c], equal_nan=True) for c in kept if c != "score"):
        kept.remove("score")
    return {metric_name(analysis, c, task): c for c in kept}


def command(analysis: str, model: str, task: str | None) -> str:
    return f"workbench {analysis} run -m {model}" + (f" --task {task}" if task else "")


def _task_field(spec) -> str | None:
    """The default task of a spec whose Params have a `task` field, else None."""
    fields = {f.name: f for f in dataclasses.fields(spec.params_type)}
    return fields["task"].default if "task" in fields else None


def expected_tasks(spec, model: str, circuit_dir=None) -> list[str]:
    """Tasks an analysis with a task field should have run: its default task and the tasks of this model's saved
    circuit files (circuits/)."""
    from workbench.results.circuits import list_circuits

    default = _task_field(spec)
    if default is None:
        return []
    listed = list_circuits(circuit_dir)
    tasks = listed.loc[(listed["model"] == model) & listed["error"].isna(), "task"].dropna().tolist()
    return sorted({default, *tasks})


def no_runs_error(model: str, results_dir) -> WorkbenchError:
    from workbench.analyses import REGISTRY

    where = f" under {results_dir}" if results_dir else ""
    commands = "; ".join(command(s.name, model, _task_field(s)) for s in REGISTRY)
    return WorkbenchError(f"no saved runs of {model}{where}; run the analyses first: {commands} "
                          f"(or `workbench atlas build -m {model} --fill`).")


def model_runs(model: str, *, results_dir: Path | None = None, fingerprint: str | None = None,
               run_ids: list[str] | None = None, circuit_dir=None) -> ModelRuns:
    """The runs an atlas of `model` reads (see the module docstring); `run_ids` restricts them to these runs."""
    from workbench.analyses import REGISTRY
    from workbench.models.loading import resolve_spec
    from workbench.results.runs import find_runs, load_result

    model = resolve_spec(model).name  # an unknown name: the one-line list of known models, not "no runs"
    catalog = find_runs(results_dir, model=model)
    names = {s.name for s in REGISTRY}
    runs = catalog[(catalog["kind"] == "run") & catalog["analysis"].isin(names)]
    if runs.empty:
        raise no_runs_error(model, results_dir)
    if run_ids is not None:
        runs = runs[runs["run_id"].isin(run_ids)]
        unknown = sorted(set(run_ids) - set(runs["run_id"]))
        if unknown:
            raise WorkbenchError(f"{', '.join(unknown)}: no saved run of {model} with that id; list them with "
                                 f"`workbench results ls -m {model}`.")
        _one_fingerprint(runs, model)
    prints = list(dict.fromkeys(runs["model_fingerprint"]))  # newest first
    fingerprint = fingerprint or prints[0]
    if fingerprint not in prints:
        raise WorkbenchError(f"no runs of {model} with fingerprint {fingerprint}; its runs have "
                             f"{', '.join(prints)} (`workbench results ls -m {model}`).")
    runs = runs[runs["model_fingerprint"] == fingerprint]
    checks = catalog[(catalog["kind"] != "run") & catalog["parent_run"].isin(runs["run_id"])]
    newest: dict[tuple[str, str | None], Any] = {}
    for row in runs.itertuples():  # newest first: keep the first of each (analysis, task)
        result = load_result(row.path)
        key = (row.analysis, result.record.params.get("task"))
        if key not in newest:
            newest[key] = result
    sources = []
    for (analysis, task), result in newest.items():
        linked = {}
        for check in checks[checks["parent_run"] == result.record.run_id].itertuples():
            if check.kind not in linked:
                linked[check.kind] = load_result(check.path)
        sources.append(SourceRun(analysis, task, result, metric_columns(analysis, result.scores, task), linked))
    order = {name: i for i, name in enumerate(s.name for s in REGISTRY)}
    sources.sort(key=lambda s: (order[s.analysis], s.task or ""))
    missing = [{"analysis": s.name, "task": t, "command": command(s.name, model, t)}
               for s in REGISTRY for t in (expected_tasks(s, model, circuit_dir) or [None])
               if (s.name, t) not in newest]
    missing = pd.DataFrame(missing, columns=["analysis", "task", "command"])
    return ModelRuns(model, fingerprint, sources, missing, tuple(p for p in prints if p != fingerprint))


def _one_fingerprint(runs: pd.DataFrame, model: str) -> None:
    prints = runs.groupby("model_fingerprint")["run_id"].apply(list)
    if len(prints) > 1:
        listed = "; ".join(f"{fp}: {', '.join(ids)}" for fp, ids in prints.items())
        raise WorkbenchError(f"these runs of {model} come from {len(prints)} model fingerprints ({listed}); an atlas "
                             "never mixes fingerprints: pick runs of one (re-run the others on the current model).")
