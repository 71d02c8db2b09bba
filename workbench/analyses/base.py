"""The Analysis contract: typed frozen Params, default prompts, `run -> Result`, named checks -> Result, views.
A spec is torch-free; its functions may be "module:function" strings, imported on first use (`resolve`).

    run(model, prompts, params, *, progress) -> Result                 the analysis itself
    check.run(model, params, *, scores, progress[, prompts][, run_params]) -> Result
                                                                       a causal check of a run's HeadScores
    check.effect(result) -> dict                                       a saved check as the atlas's causal column
    views(result) -> dict[str, plotly Figure]                          figures of a Result
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pandas as pd

PER_PROMPT_COLUMNS = ("prompt", "layer", "head", "metric", "value")


@dataclass
class Result:
    """What a run or a check returns and the catalog stores: HeadScores (None for a check without per-head
    values), named tables, a JSON-able summary, per-prompt (per-trial) head values (PER_PROMPT_COLUMNS, for
    intervals without the model), kind ("run" or the check's name) and the RunRecord once saved."""

    analysis: str
    scores: pd.DataFrame | None = None
    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    per_prompt: pd.DataFrame | None = None
    kind: str = "run"
    record: Any = None


def resolve(ref: str | Callable) -> Callable:
    """A callable, or the one a "package.module:function" string names (imported now)."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def as_result(name: str, output: Any, kind: str = "run") -> Result:
    """A run's return value, checked to be a Result."""
    if isinstance(output, Result):
        return output
    raise TypeError(f"{name}: {kind} returned {type(output).__name__}; return a Result.")


def make_params(owner: str, params_type: type, overrides: dict[str, Any] | None = None):
    """Params from string/typed overrides: unknown names, wrong types (16.5 for an int, a list) and numbers
    out of range (workbench.core.validation) fail with one clear line."""
    from workbench.core.errors import WorkbenchError
    from workbench.core.validation import coerce_param

    if overrides is not None and not isinstance(overrides, dict):
        raise WorkbenchError(f"{owner}: parameters must be a table of name = value; got {overrides!r}.")
    overrides = dict(overrides or {})
    known = {f.name: f for f in dataclasses.fields(params_type)}
    unknown = sorted(set(overrides) - set(known), key=str)
    if unknown:
        raise WorkbenchError(f"{owner} has no parameter {', '.join(map(str, unknown))}; "
                             f"its parameters are {', '.join(known)}.")
    hints = typing.get_type_hints(params_type)
    typed = {key: coerce_param(owner, key, value, hints[key]) for key, value in overrides.items()}
    return params_type(**typed)


@dataclass(frozen=True)
class CheckSpec:
    """A named causal check of an analysis: its own Params, and a run that reads the analysis's HeadScores."""

    name: str
    summary: str
    params_type: type
    run: str | Callable  # (model, params, *, scores: pd.DataFrame | None, progress: bool[, prompts]) -> Result
    needs_scores: bool = True  # True: checks a saved run of the analysis (the latest, unless one is named)
    tables: tuple[str, ...] = ()  # display hint: the tables `workbench <analysis> <check>` prints (() = all)
    effect: str | Callable | None = None  # (Result) -> the standard effect dict; None: the summary is standard
    #                                       (workbench.analyses.ablation.standard_effect)

    def make_params(self, overrides: dict[str, Any] | None = None):
        return make_params(self.name, self.params_type, overrides)


@dataclass(frozen=True)
class Column:
    """What a HeadScores column is: its definition, unit and direction (what a larger value means)."""

    definition: str
    unit: str = ""
    direction: str = ""

    def text(self) -> str:
        return "; ".join(part for part in (self.definition, self.unit and f"unit: {self.unit}", self.direction)
                         if part)


@dataclass(frozen=True)
class AnalysisSpec:
    name: str
    summary: str
    params_type: type
    default_prompts: str | Callable  # (model, params) -> PromptSet
    run: str | Callable  # (model, prompts, params, *, progress) -> Result
    checks: tuple[CheckSpec, ...] = ()
    views: str | Callable | None = None  # (Result) -> dict[str, Figure]
    causal: str = ""  # the check whose saved Results give the atlas's causal column ("" = none)
    columns: dict[str, Column] = dataclasses.field(default_factory=dict, hash=False)  # what each score column is
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict, hash=False)
    #   named parameter sets (`--preset NAME`); explicit overrides win over a preset's values
    tables: tuple[str, ...] = ()  # display hint: the tables `workbench <analysis> run` prints (() = none)

    def make_params(self, overrides: dict[str, Any] | None = None, preset: str | None = None):
        """Params from the preset's values (if named), then `overrides` on top."""
        if preset is not None and isinstance(overrides, (dict, type(None))):
            overrides = {**self.preset(preset), **(overrides or {})}
        return make_params(self.name, self.params_type, overrides)

    def preset(self, name: str | None) -> dict[str, Any]:
        """The values of preset `name` ({} for None); an unknown name lists the known ones."""
        from workbench.core.errors import WorkbenchError

        if name is None:
            return {}
        if name not in self.presets:
            known = ", ".join(self.presets) or "none"
            raise WorkbenchError(f"{self.name} has no preset {name!r}; its presets: {known}.")
        return dict(self.presets[name])

    def describe(self, column: str = "score") -> str:
        """The definition, unit and direction of a HeadScores column ("" when the spec does not say)."""
        return self.columns[column].text() if column in self.columns else ""

    def check(self, name: str) -> CheckSpec:
        from workbench.core.errors import WorkbenchError

        for check in self.checks:
            if check.name == name:
                return check
        names = ", ".join(c.name for c in self.checks) or "none"
        raise WorkbenchError(f"{self.name} has no check {name!r}; its checks: {names}.")


def head_frame(analysis: str, info: Any, prompt_set: str, row: Callable[[int, int], dict]) -> pd.DataFrame:
    """HeadScores, one row per head: analysis, model, prompt_set, layer, head, label, then `row(layer, head)`."""
    from workbench.core.scores import head_label

    return pd.DataFrame([{"analysis": analysis, "model": info.spec.name, "prompt_set": prompt_set, "layer": layer,
                          "head": head, "label": head_label(layer, head), **row(layer, head)}
                         for layer in range(info.n_layers) for head in range(info.n_heads)])


def per_prompt_table(values: dict[str, Any], prompts: Any = None) -> pd.DataFrame:
    """Tidy PER_PROMPT_COLUMNS from `{metric: array [P, L, H]}` (numpy or CPU torch); `prompts[p]` is the
    prompt index (or trial id) of row p (default 0 … P−1). Values are stored as float64."""
    import numpy as np

    frames = []
    for metric, array in values.items():
        a = np.asarray(array, dtype=np.float64)
        ids = np.arange(a.shape[0]) if prompts is None else np.asarray(prompts, dtype=np.int64)
        p, layer, head = np.indices(a.shape).reshape(3, -1)
        frames.append(pd.DataFrame({"prompt": ids[p], "layer": layer, "head": head, "metric": metric,
                                    "value": a.reshape(-1)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(PER_PROMPT_COLUMNS))
